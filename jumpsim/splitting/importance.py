"""Plain importance sampling over independent trajectories: every particle runs from ``init`` to the horizon under
a proposal and carries its log likelihood ratio; P = mean(ratio x 1{reached}). R replicas of N particles, run
through the same slot table as splitting (no kill steps), so the interval and diagnostics match TAMS's."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from . import keys
from .ams import Spec, check_sizes, start
from .results import EngineState, TamsResult, tams_result_of
from .slots import MAX_BATCH, SlotMeter, batch_cap


def estimate_is(
    init,
    advance,
    score,
    weight: Callable,
    *,
    horizon: int,
    particles: int,
    replicas: int,
    seed: int = 0,
    level: float = 0.95,
    state: EngineState | None = None,
    on_iteration: Callable[[EngineState], Any] | None = None,
    replica_offset: int = 0,
    max_batch: int = MAX_BATCH,
    meter: SlotMeter | None = None,
) -> TamsResult:
    """Importance-sampling estimate of P(max_{t=0..horizon} score(x_t) >= 1) for the chain whose likelihood
    ratio against ``advance``'s proposal is exp(``weight(state)``), from `replicas` replicas of `particles`
    independent trajectories (keys as TAMS's initial population; `state` resumes after it). A ``TamsResult``
    with no iterations (and no level curve); ``replica_weight_sq`` / ``replica_weight_max`` say how many paths
    carry each replica's estimate."""
    check_sizes(particles, replicas, 0.5)
    spec = Spec(
        advance=advance,
        score=score,
        horizon=int(horizon),
        basin=-math.inf,
        n=particles,
        k=1,
        seed=seed,
        max_iterations=0,
        max_batch=batch_cap(max_batch),
        naive_ties=False,
        weight=weight,
        meter=meter,
    )
    if state is None:
        ids = np.arange(replica_offset, replica_offset + replicas, dtype=np.int32)
        states, kd = keys.init_population(init, jnp.int32(seed), jnp.asarray(ids), particles)
        state = start(spec, states, kd, ids)
        state = state._replace(done=np.ones(replicas, bool))
        if on_iteration is not None:
            on_iteration(state)
    return tams_result_of(state, horizon, level)
