"""Fixed-horizon TAMS: P(max_{t<=T} score >= 1) and the curve p(T') for T' = 0..T, from R independent replicas
of N particles (the engine of ``ams`` with no basin)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from . import keys
from .ams import Spec, check_sizes, iterate, start
from .results import EngineState, TamsResult, tams_result_of
from .slots import MAX_BATCH, SlotMeter, batch_cap


def estimate(
    init,
    advance,
    score,
    *,
    horizon: int,
    particles: int,
    replicas: int,
    kill_fraction: float = 0.2,
    seed: int = 0,
    level: float = 0.95,
    max_iterations: int = 10_000,
    state: EngineState | None = None,
    on_iteration: Callable[[EngineState], Any] | None = None,
    replica_offset: int = 0,
    max_batch: int = MAX_BATCH,
    meter: SlotMeter | None = None,
    weight: Callable | None = None,
    _naive_ties: bool = False,
) -> TamsResult:
    """Fixed-horizon TAMS estimate of P(max_{t=0..horizon} score(x_t) >= 1), x_0 = init(key).

    `replicas` independent replicas of `particles` particles (global ids replica_offset + r); `state`
    resumes from an ``EngineState`` given to `on_iteration` (same arguments required). `max_batch`
    bounds the particles simulated at once (memory: ~3 states per batch slot); `meter` (a ``SlotMeter``) records
    where the slot table's time goes. ``weight(state)``: the log likelihood ratio a particle carries when its
    dynamics is a proposal, not the chain itself (importance sampling inside TAMS; clones inherit it with the
    state): p = w * mean(ratio x 1{reached}), and no level curve. See ``ams`` for the method and ``slots`` for how
    particles run.
    """
    k = check_sizes(particles, replicas, kill_fraction)
    spec = fixed_horizon(advance, score, horizon, particles, k, seed, max_iterations, max_batch, weight, meter)
    spec = spec._replace(naive_ties=_naive_ties)
    if state is None:
        state = population(spec, init, replicas, replica_offset, on_iteration)
    st = iterate(spec, state, on_iteration)
    return tams_result_of(st, horizon, level)


def fixed_horizon(advance, score, horizon, particles, k, seed, max_iterations, max_batch, weight, meter) -> Spec:
    """The engine's settings for runs from ``init`` to a fixed horizon (no basin): TAMS and plain IS."""
    return Spec(
        advance=advance,
        score=score,
        horizon=int(horizon),
        basin=-math.inf,
        n=particles,
        k=k,
        seed=seed,
        max_iterations=max_iterations,
        max_batch=batch_cap(max_batch),
        naive_ties=False,
        weight=weight,
        meter=meter,
    )


def population(spec: Spec, init, replicas: int, replica_offset: int, on_iteration, done: bool = False) -> EngineState:
    """The engine state after the initial population of replicas replica_offset.. (each ``spec.n`` particles from
    ``init``) ran; ``done`` marks every replica finished (no kill steps: plain IS). Handed to `on_iteration`."""
    ids = np.arange(replica_offset, replica_offset + replicas, dtype=np.int32)
    states, kd = keys.init_population(init, jnp.int32(spec.seed), jnp.asarray(ids), spec.n)
    state = start(spec, states, kd, ids)
    if done:
        state = state._replace(done=np.ones(replicas, bool))
    if on_iteration is not None:
        on_iteration(state)
    return state
