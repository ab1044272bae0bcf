"""Compiled brute-force simulation: the per-seed functions of ``dynamics`` vmapped over a batch of
seeds, split over the local devices with ``shard_map`` and jitted. Nothing here does math of its own.

Loop shape: ``advance`` runs ``n_checks`` check periods as an outer ``scan`` whose body is the inner
fixed-length ``scan`` of K SGD steps followed by the check; no ``cond``, no data-dependent loop.
The state buffers are donated.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import dynamics, fused, lanes, model, spectrum
from . import problem as problem_lib
from .config import Config
from .devices import AXIS, LANES
from .devices import mesh as seed_mesh
from .errors import ConfigError
from .setup import Setup, init_seed, setup


class Kernel(NamedTuple):
    """Compiled pieces of one experiment (each call runs in jumpsim's float64 scope).

    ``init(seed_ids (S,) int32) -> states``; ``advance(states, t0, n_checks, trace) -> (states,
    observations (n_checks, S, ...) or None)``; ``final(states) -> (singular values (S, min(n, m)),
    balancedness gap (S,), |theta|^2 (S,))`` at each seed's last finite check. S must be a multiple of ``pad_to``."""

    init: Callable
    advance: Callable
    final: Callable
    setup: Setup
    pad_to: int
    step: str  # which code runs the SGD steps: a key of ``STEPS`` (``step_kind``)

    @property
    def start_params(self) -> model.Params | None:
        return self.setup.start

    @property
    def info(self) -> dict:
        return self.setup.info


@dynamics.with_float64
def build(cfg: Config, prob: problem_lib.Problem | None = None, devices=None) -> Kernel:
    """Compile-ready functions for one experiment, with the seed axis split over ``devices``."""
    su = setup(cfg, prob)
    data, dyn, detection = su.data, su.dynamics, su.detection
    mesh = seed_mesh(devices)
    step = step_kind(cfg, su, mesh.devices.flat[0].platform)
    if step in FUSED:
        steps = _fused_steps(cfg, su, mesh, interpret=step == "pallas-interpret")
    elif step == "lanes":
        steps = _lanes_steps(su, lanes.BLOCK)
    else:
        steps = jax.vmap(partial(dynamics.advance, data=data, dyn=dyn), in_axes=(0, None))

    def advance_local(states, t0, n_checks: int, trace: bool):
        check = jax.vmap(partial(dynamics.check, data=data, detection=detection, trace=trace), in_axes=(0, None))

        def body(states, c):
            t = t0 + c * dyn.every
            states, obs = check(steps(states, t), t + dyn.every)
            return states, (obs if trace else None)

        return jax.lax.scan(body, states, np.arange(n_checks, dtype=np.int32))

    seeds, rep = jax.sharding.PartitionSpec(AXIS), jax.sharding.PartitionSpec()

    @partial(jax.jit, static_argnames=("n_checks", "trace"), donate_argnums=0)
    def advance(states: dynamics.SeedState, t0, n_checks: int, trace: bool = False):
        """``n_checks`` check periods from step ``t0`` for every seed of the batch; the seed axis is
        split over the devices (no communication: seeds are independent)."""
        local = partial(advance_local, n_checks=n_checks, trace=trace)
        out_specs = (seeds, jax.sharding.PartitionSpec(None, AXIS) if trace else None)
        # pallas_call outputs carry no varying-axis type: shard_map's check is off for the fused path
        check_vma = step not in FUSED
        return jax.shard_map(local, mesh=mesh, in_specs=(seeds, rep), out_specs=out_specs, check_vma=check_vma)(
            states, t0
        )

    init = jax.jit(jax.vmap(partial(init_seed, su=su)), out_shardings=jax.sharding.NamedSharding(mesh, seeds))

    def final_local(states):
        def one(p):
            return (spectrum.singular_values(model.end_to_end(p)), *dynamics.balance(p))

        return jax.vmap(one)(states.last_params)

    final = jax.jit(jax.shard_map(final_local, mesh=mesh, in_specs=(seeds,), out_specs=seeds))
    wrap = dynamics.with_float64
    pad = (lanes.BLOCK if step == "lanes" else LANES) * mesh.size
    return Kernel(wrap(init), wrap(advance), wrap(final), su, pad, step)


FUSED = ("pallas", "pallas-interpret")
STEPS = {  # what each step kind is, as a run prints it
    "pallas": "the fused Pallas kernel (GPU)",
    "pallas-interpret": "the fused Pallas kernel in interpret mode (slow: for tests)",
    "lanes": "XLA, seeds innermost (CPU)",
    "vmap": "XLA, the per-seed step vmapped",
}


def step_kind(cfg: Config, su: Setup, platform: str) -> str:
    """Which code runs the K SGD steps of a period on ``platform`` ("cpu", "gpu", ...), a key of ``STEPS``.

    ``run.backend = "auto"`` (the default): the fused Pallas kernel where it runs (GPU, plain SGD with a
    minibatch, float32, the sizes it holds on chip; 1.3-1.5x the XLA step on an H200), else the XLA step;
    ``"xla"`` the XLA step always; ``"pallas"`` / ``"pallas-interpret"`` the kernel (an error where it cannot
    run). The XLA step on a CPU runs seeds innermost (``jumpsim.lanes``) for plain SGD with a minibatch and
    layers up to ``lanes.MAX_DIM`` wide; elsewhere (other optimizers, full-batch descent, wider layers, GPUs)
    it is the per-seed step under ``vmap``."""
    backend = cfg.run.backend
    if backend in FUSED:
        return backend
    if backend == "auto" and _fused_unsupported(cfg, su, platform, False) is None:
        return "pallas"
    small = max(max(shape) for shape in su.shapes) <= lanes.MAX_DIM
    plain = cfg.train.optimizer == "sgd" and cfg.train.batch is not None
    return "lanes" if platform == "cpu" and small and plain else "vmap"


def _fused_unsupported(cfg: Config, su: Setup, platform: str, interpret: bool) -> str | None:
    (width, m), n = su.shapes[0], su.shapes[-1][0]
    return fused.unsupported_reason(
        n, m, width, len(su.shapes), cfg.train.batch, cfg.run.dtype, cfg.train.optimizer, platform, interpret
    )


def _period_draws(states: dynamics.SeedState, t0, su: Setup, dtype):
    """What the K steps of a period from ``t0`` take for a batch of seeds: the drawn entries (S, K, B), the
    schedule's lr and ridge (K,) in ``dtype``, and the seeds' epoch orders after them (``SeedState.order``), as
    the per-seed step draws and evaluates them."""
    dyn, k_obs = su.dynamics, su.data.n_observed
    idx, order = jax.vmap(lambda o, key: dynamics.period_entries(o, key, t0, dyn, k_obs))(states.order, states.key)
    t = t0 + jnp.arange(dyn.every, dtype=jnp.int32)
    lr, ridge = (jnp.asarray(jax.vmap(f)(t), dtype) for f in (dyn.lr, dyn.ridge))
    return idx, lr, ridge, order


def _lanes_steps(su: Setup, block: int) -> Callable:
    """``(states, t0) -> states``: the K SGD steps of a period for a batch of seeds, seeds innermost."""
    data, dyn = su.data, su.dynamics

    def steps(states: dynamics.SeedState, t0) -> dynamics.SeedState:
        idx, lr, ridge, order = _period_draws(states, t0, su, jnp.dtype(dyn.dtype))
        params = lanes.sgd_steps(states.params, data.rows, data.cols, data.values, idx, lr, ridge, dyn.scale, block)
        return states._replace(params=params, order=order)

    return steps


def _fused_steps(cfg: Config, su: Setup, mesh: jax.sharding.Mesh, interpret: bool) -> Callable:
    """``(states, t0) -> states``: the K SGD steps of a period for a batch of seeds by the fused Pallas
    kernel, with the same keyed draws and schedule values as the XLA path. Raises ConfigError naming
    run.backend where it cannot run."""
    why = _fused_unsupported(cfg, su, mesh.devices.flat[0].platform, interpret)
    if why:
        raise ConfigError("run.backend", why)
    data, dyn = su.data, su.dynamics

    def steps(states: dynamics.SeedState, t0) -> dynamics.SeedState:
        idx, lr, ridge, order = _period_draws(states, t0, su, jnp.float32)
        params = fused.sgd_steps_pallas(
            states.params, data.rows, data.cols, data.values, idx, lr, ridge, dyn.scale, interpret=interpret
        )
        return states._replace(params=params, order=order)

    return steps
