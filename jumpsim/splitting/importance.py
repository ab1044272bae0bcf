"""Plain importance sampling over independent trajectories: every particle runs from ``init`` to the horizon under
a proposal and carries its log likelihood ratio; P = mean(ratio x 1{reached}). R replicas of N particles, run
through the same slot table as splitting (no kill steps), so the interval and diagnostics match TAMS's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .ams import check_sizes
from .results import EngineState, TamsResult, tams_result_of
from .slots import MAX_BATCH, SlotMeter
from .tams import fixed_horizon, population


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
    spec = fixed_horizon(advance, score, horizon, particles, 1, seed, 0, max_batch, weight, meter)
    if state is None:
        state = population(spec, init, replicas, replica_offset, on_iteration, done=True)
    return tams_result_of(state, horizon, level)
