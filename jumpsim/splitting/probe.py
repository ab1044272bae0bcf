"""The engine's lockstep speed at a given width: what the time estimate printed before a run is based on."""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from .. import devices
from . import keys


def lockstep_speed(init, advance, width: int, sharded: bool, calls: int = 3) -> float:
    """Particle periods per second of ``width`` particles advanced one period in lockstep (``advance``
    vmapped and jitted; split over the local devices like the slot table when ``sharded``, on one device
    like the flux phase otherwise), the fastest of up to ``calls`` timed calls after a compiling one (one if
    it takes over 0.5 s): the best case of the engine at that width, for the time estimate before a run."""
    kd = jax.vmap(lambda i: keys.key_data(jnp.int32(0), keys.FLUX_REPLICA, i, jnp.int32(0)))(
        jnp.arange(width, dtype=jnp.int32)
    )
    xs = jax.vmap(lambda k: init(keys.wrap(k)))(kd)
    step = jax.vmap(lambda x, k: advance(x, keys.wrap(k), jnp.int32(0)))
    mesh = devices.local_mesh()
    if sharded and mesh.size > 1 and width % mesh.size == 0:
        step = jax.shard_map(
            step, mesh=mesh, in_specs=(P(devices.AXIS), P(devices.AXIS)), out_specs=P(devices.AXIS), check_vma=False
        )
        xs, kd = jax.device_put((xs, kd), jax.sharding.NamedSharding(mesh, P(devices.AXIS)))
    step = jax.jit(step)
    jax.block_until_ready(step(xs, kd))
    best = math.inf
    for _ in range(calls):
        t0 = time.perf_counter()
        jax.block_until_ready(step(xs, kd))
        best = min(best, time.perf_counter() - t0)
        if best > 0.5:  # a wide table: one timed call is long enough to be steady
            break
    return width / max(best, 1e-9)
