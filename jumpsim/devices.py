"""Where jumpsim's computations run: one XLA host device per CPU core, the 16-lane padding, the 1-D mesh.

Every batch of seeds or particles is split over the local devices along one mesh axis, ``AXIS``, and padded to
a multiple of ``LANES`` per device. XLA's CPU code vectorises the vmapped matrix-vector products across seeds,
and seeds in a partial vector (the loop remainder) are rounded differently in the last bit; with full vectors
only, a seed's trajectory is bit for bit the same whatever the batch size or the number of devices. 16 float32
lanes is the widest vector (AVX-512); padding costs at most 15 extra seeds per device.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np

LANES = 16
AXIS = "seeds"


def use_cpu_devices(n: int | None = None) -> None:
    """Ask XLA for ``n`` host devices (default ``JUMPSIM_CPU_DEVICES``, else one per usable core), so that
    seeds are split over the cores as over GPUs. Call it before JAX starts its backend (before the first
    computation); an explicit ``--xla_force_host_platform_device_count`` in XLA_FLAGS is left alone. On a GPU
    machine this only adds idle CPU devices: the seeds go to the GPUs."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return
    n = n or os.environ.get("JUMPSIM_CPU_DEVICES") or len(os.sched_getaffinity(0))
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


def mesh(devices=None) -> jax.sharding.Mesh:
    """1-D mesh ``AXIS`` over the given devices (default: all local devices, i.e. the GPUs, or the host
    devices of ``use_cpu_devices`` on a CPU)."""
    return jax.sharding.Mesh(np.array(jax.local_devices() if devices is None else devices), (AXIS,))


@functools.cache
def local_mesh() -> jax.sharding.Mesh:
    """``mesh()`` over all local devices, made once (the splitting engine's batches are split over it)."""
    return mesh()


def lanes() -> int:
    """Batch sizes of the splitting engine are multiples of this: LANES particles per local device."""
    return LANES * local_mesh().size
