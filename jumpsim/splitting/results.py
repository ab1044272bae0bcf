"""What the splitting engine hands out: its resumable state and the results of both estimators, built by
keyword from the per-replica numbers (numpy; intervals from ``stats.intervals``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ..intervals import LevelBound, level_bound, rate_estimate, replica_interval

NOHIT = np.int32(2**31 - 1)  # first-hit period of a particle that never reached the target
# intermediate levels z at which every replica also estimates P(max score >= z) (its "level curve"): 48 levels
# from 1e-3 to 0.87, a factor 10^(1/16) apart. Every path to the target passes all of them, so each value is
# an upper bound on p, with an interval even where no replica reaches the target (``stats.level_bound``).
LEVEL_GRID = np.geomspace(1e-3, 1.0, 49)[:-1].astype(np.float32)


class EngineState(NamedTuple):
    """Whole engine state between iterations (R replicas x N particles). Device arrays: ``origin``,
    ``origin_t``, ``key``; the rest are host numpy arrays."""

    origin: Any  # pytree, leaves (R, N, ...): state where each particle was created (its branch point)
    origin_t: Any  # (R, N) int32: period of that state
    key: Any  # (R, N, 2) uint32: key data of the particle's own randomness
    level: np.ndarray  # (R, N) float32: max score from the origin on (-inf if diverged at once)
    hit: np.ndarray  # (R, N) int32: first check with score >= 1, NOHIT if none
    hit_log_w: np.ndarray  # (R, N) float32: log weight (likelihood ratio) at that check; 0 without weights
    log_w: np.ndarray  # (R,) float64: log of the product of (1 - K/N)
    iteration: np.ndarray  # (R,) int32: kill steps done
    done: np.ndarray  # (R,) bool
    extinct: np.ndarray  # (R,) bool
    capped: np.ndarray  # (R,) bool: stopped by max_iterations (biased estimate, reported)
    steps: np.ndarray  # (R,) int64: periods simulated, replays included
    period_capped: np.ndarray  # (R,) int64: particles stopped by the horizon (rate form: max_periods)
    log_z: np.ndarray  # (R, I) float32: Z of each iteration (NaN after the last)
    log_k: np.ndarray  # (R, I) int32: K of each iteration (-1 after the last)
    replica: np.ndarray  # (R,) int32: global replica ids
    level_log_p: np.ndarray  # (R, G) float64: log p(max score >= LEVEL_GRID[g]) once fixed, NaN before


class TamsLog(NamedTuple):
    z: np.ndarray  # (R, I) float32, NaN-padded
    killed: np.ndarray  # (R, I) int32, -1-padded


class Log10(NamedTuple):
    mean: float  # mean of log10 p over replicas with p > 0
    sd: float


class TamsResult(NamedTuple):
    p: float  # mean of replica estimates (extinct count as 0)
    p_low: float  # delta-log-normal interval on the mean at `level` (stats.replica_interval); NaN if < 2 replicas > 0
    p_high: float
    replica_p: np.ndarray  # (R,)
    extinct: int
    iterations: np.ndarray  # (R,)
    particle_steps: int  # periods simulated in total, replays and clones included
    reached: np.ndarray  # (R,) particles at or above the target at the end
    p_curve: np.ndarray  # (T+1,) mean over replicas of p(T'), T' = 0..T
    replica_p_curve: np.ndarray  # (R, T+1)
    log: TamsLog
    log10: Log10
    capped: int  # replicas stopped by max_iterations
    replica_ids: np.ndarray  # (R,) global ids
    level: float  # confidence level of the intervals
    replica_level_p: np.ndarray  # (R, G) each replica's estimate of P(max score >= LEVEL_GRID[g])
    replica_weight_sq: np.ndarray  # (R,) sum over the replica's hits of their contribution to its p, squared
    replica_weight_max: np.ndarray  # (R,) the largest contribution (diagnostics of weighted particles)
    replica_log10_w_sd: np.ndarray  # (R,) standard deviation of log10 likelihood ratio over the replica's hits

    def level_bound(self) -> LevelBound:
        """Upper bound on p from the level curve, with an interval also where replicas went extinct
        (``stats.level_bound``): z, P(max score >= z) and its interval, at the level with the smallest upper end
        among those every replica passed."""
        return level_bound(LEVEL_GRID, self.replica_level_p, self.level)


class RateResult(NamedTuple):
    rate: float  # per period; ratio estimator over replicas (see ``stats.rate_estimate``)
    rate_low: float  # Student-t on log k over the R independent replicas (flux, crossings and AMS noise)
    rate_high: float
    flux: float  # crossings per period of exposure, all replicas
    flux_crossings: int
    flux_exposure: int  # periods before reaching the target, summed over flux trajectories
    flux_overflow: int  # crossings not recorded (buffer full); counted in the flux, not used as starts
    p_ab: float  # crossing-weighted: sum_r C_r p_r / sum_r C_r
    p_ab_low: float
    p_ab_high: float
    replica_p_ab: np.ndarray  # (R,) P(target before basin) from the replica's own crossings (NaN: it had none)
    replica_crossings: np.ndarray  # (R,) C_r, crossings of the replica's own flux trajectories
    replica_exposure: np.ndarray  # (R,) E_r, their periods of exposure
    extinct: int
    particle_steps: int  # flux + AMS periods, replays included
    period_capped: int  # AMS particles stopped by max_periods (biased low if > 0)
    capped: int  # replicas stopped by max_iterations
    iterations: np.ndarray  # (R,)
    log: TamsLog
    replica_ids: np.ndarray
    level: float
    replica_level_p: np.ndarray  # (R, G) P(max score >= LEVEL_GRID[g] before the basin | own crossings); NaN: none
    replica_weight_sq: np.ndarray  # (R,) sum of the squared contributions of the replica's hits to its p_ab
    replica_weight_max: np.ndarray  # (R,) the largest contribution
    replica_log10_w_sd: np.ndarray  # (R,) standard deviation of log10 likelihood ratio over the replica's hits

    def level_bound(self) -> LevelBound:
        """Upper bound on k: the rate of reaching LEVEL_GRID[g] from the basin, with its interval, at the level with
        the smallest upper end among those every replica with crossings passed (``stats.level_bound``)."""
        return level_bound(LEVEL_GRID, self.replica_level_p, self.level, self.replica_crossings, self.replica_exposure)

    def p_within(self, periods) -> tuple[float, float, float]:
        """P(reach the target within `periods` periods) = 1 - exp(-k T) with its interval."""
        f = lambda k: -math.expm1(-k * periods) if np.isfinite(k) else float("nan")
        return f(self.rate), f(self.rate_low), f(self.rate_high)


# --------------------------------------------------------------------------------------------- building results


def hit_weights(st: EngineState) -> np.ndarray:
    """(R, N) each particle's likelihood ratio at its first hit, 0 where it did not reach the target (without
    weights: 1 at a hit, so every estimate below is the unweighted one exactly)."""
    return np.where(st.level >= 1, np.exp(st.hit_log_w.astype(np.float64)), 0.0)


def replica_p(st: EngineState) -> np.ndarray:
    """(R,) each replica's estimate: w * mean(likelihood ratio x 1{reached}), 0 if extinct."""
    return np.where(st.extinct, 0.0, np.exp(st.log_w) * hit_weights(st).mean(1))


def weight_spread(st: EngineState) -> dict:
    """Per replica (R,): sums of squares and maxima of the hits' contributions w * ratio / N to its estimate (with
    the estimates, their sums, they give the effective sample size and the largest weight's share), and the
    standard deviation of log10 ratio over its hits (NaN with fewer than two)."""
    c = np.where(st.extinct[:, None], 0.0, np.exp(st.log_w)[:, None] * hit_weights(st) / st.level.shape[1])
    lw = np.where(st.level >= 1, st.hit_log_w.astype(np.float64) / np.log(10), np.nan)
    n_hit = (st.level >= 1).sum(1)
    with np.errstate(invalid="ignore"):
        sd = np.where(n_hit >= 2, np.nanstd(np.where(n_hit[:, None] >= 2, lw, 0.0), axis=1), np.nan)
    return {"replica_weight_sq": (c**2).sum(1), "replica_weight_max": c.max(1), "replica_log10_w_sd": sd}


def iteration_log(st: EngineState) -> TamsLog:
    return TamsLog(st.log_z.copy(), st.log_k.copy())


def tams_result(
    *,
    replica_p,
    curve,
    extinct,
    iterations,
    particle_steps: int,
    reached,
    log: TamsLog,
    capped: int,
    replica_ids,
    level: float,
    replica_level_p,
    replica_weight_sq,
    replica_weight_max,
    replica_log10_w_sd,
) -> TamsResult:
    """A ``TamsResult`` from the per-replica numbers (R,) and curves (R, T+1): the replica mean with its
    delta-log-normal interval (``stats.replica_interval``) and the log10 spread of the positive replicas."""
    m, lo, hi = replica_interval(replica_p, level)
    pos = replica_p[replica_p > 0]
    l10 = np.log10(pos) if len(pos) else np.array([np.nan])
    return TamsResult(
        p=m,
        p_low=lo,
        p_high=hi,
        replica_p=replica_p,
        extinct=int(np.sum(extinct)),
        iterations=np.asarray(iterations),
        particle_steps=particle_steps,
        reached=np.asarray(reached),
        p_curve=curve.mean(0),
        replica_p_curve=curve,
        log=log,
        log10=Log10(mean=float(l10.mean()), sd=float(l10.std(ddof=1)) if len(l10) > 1 else float("nan")),
        capped=capped,
        replica_ids=np.asarray(replica_ids),
        level=level,
        replica_level_p=np.asarray(replica_level_p),
        replica_weight_sq=np.asarray(replica_weight_sq, np.float64),
        replica_weight_max=np.asarray(replica_weight_max, np.float64),
        replica_log10_w_sd=np.asarray(replica_log10_w_sd, np.float64),
    )


def tams_result_of(st: EngineState, horizon: int, level: float) -> TamsResult:
    """The TAMS result of a finished engine state, with the curve p(T') for T' = 0..horizon periods."""
    rp = replica_p(st)
    ts, w = np.arange(horizon + 1), hit_weights(st)
    hit_by = np.stack([(w[r, :, None] * (st.hit[r, :, None] <= ts)).mean(0) for r in range(len(rp))])  # (R, T+1)
    curve = np.where(st.extinct[:, None], 0.0, np.exp(st.log_w)[:, None] * hit_by.reshape(len(rp), -1))
    return tams_result(
        replica_p=rp,
        curve=curve,
        extinct=st.extinct,
        iterations=st.iteration,
        particle_steps=int(st.steps.sum()),
        reached=(st.level >= 1).sum(1),
        log=iteration_log(st),
        capped=int(st.capped.sum()),
        replica_ids=st.replica,
        level=level,
        replica_level_p=np.exp(st.level_log_p),
        **weight_spread(st),
    )


def rate_result(
    *,
    crossings,
    exposure,
    overflow: int,
    replica_p,
    extinct: int,
    particle_steps: int,
    period_capped: int,
    capped: int,
    iterations,
    log: TamsLog,
    replica_ids,
    level: float,
    replica_level_p,
    replica_weight_sq,
    replica_weight_max,
    replica_log10_w_sd,
) -> RateResult:
    """A ``RateResult`` from the per-replica crossings C_r, exposures E_r and p_r (R,) and level curves (R, G):
    k = sum C_r p_r / sum E_r with its interval (``stats.rate_estimate``); particle_steps: flux + AMS periods."""
    crossings, exposure = np.asarray(crossings, np.int64), np.asarray(exposure, np.int64)
    rp = np.where(crossings > 0, np.asarray(replica_p, np.float64), np.nan)
    e = rate_estimate(crossings, exposure, rp, level)
    return RateResult(
        rate=e.rate,
        rate_low=e.rate_low,
        rate_high=e.rate_high,
        flux=e.flux,
        flux_crossings=int(crossings.sum()),
        flux_exposure=int(exposure.sum()),
        flux_overflow=int(overflow),
        p_ab=e.p_ab,
        p_ab_low=e.p_ab_low,
        p_ab_high=e.p_ab_high,
        replica_p_ab=rp,
        replica_crossings=crossings,
        replica_exposure=exposure,
        extinct=int(extinct),
        particle_steps=int(particle_steps),
        period_capped=int(period_capped),
        capped=int(capped),
        iterations=np.asarray(iterations),
        log=log,
        replica_ids=np.asarray(replica_ids),
        level=level,
        replica_level_p=np.where(crossings[:, None] > 0, np.asarray(replica_level_p, np.float64), np.nan),
        replica_weight_sq=np.where(crossings > 0, np.asarray(replica_weight_sq, np.float64), np.nan),
        replica_weight_max=np.where(crossings > 0, np.asarray(replica_weight_max, np.float64), np.nan),
        replica_log10_w_sd=np.where(crossings > 0, np.asarray(replica_log10_w_sd, np.float64), np.nan),
    )


def _pad_logs(logs: Sequence[TamsLog]) -> TamsLog:
    w = max(lg.z.shape[1] for lg in logs)
    z = np.concatenate([np.pad(lg.z, ((0, 0), (0, w - lg.z.shape[1])), constant_values=np.nan) for lg in logs])
    kk = np.concatenate([np.pad(lg.killed, ((0, 0), (0, w - lg.killed.shape[1])), constant_values=-1) for lg in logs])
    return TamsLog(z, kk)


def combine(results):
    """Pool replica estimates of several runs (e.g. replica shards run as separate batch tasks) into one
    result, as if the replicas had been run together. Works for ``TamsResult`` and ``RateResult`` (each
    rate-form replica runs its own flux trajectories, keyed by its global id, so they pool the same way)."""
    results = list(results)
    r0 = results[0]
    cat = lambda f: np.concatenate([getattr(r, f) for r in results])
    total = lambda f: sum(getattr(r, f) for r in results)
    common = dict(
        iterations=cat("iterations"),
        particle_steps=total("particle_steps"),
        log=_pad_logs([r.log for r in results]),
        capped=total("capped"),
        replica_ids=cat("replica_ids"),
        level=r0.level,
        replica_level_p=cat("replica_level_p"),
        replica_weight_sq=cat("replica_weight_sq"),
        replica_weight_max=cat("replica_weight_max"),
        replica_log10_w_sd=cat("replica_log10_w_sd"),
    )
    if isinstance(r0, TamsResult):
        return tams_result(
            replica_p=cat("replica_p"),
            curve=cat("replica_p_curve"),
            extinct=total("extinct"),
            reached=cat("reached"),
            **common,
        )
    return rate_result(
        crossings=cat("replica_crossings"),
        exposure=cat("replica_exposure"),
        overflow=total("flux_overflow"),
        replica_p=cat("replica_p_ab"),
        extinct=total("extinct"),
        period_capped=total("period_capped"),
        **common,
    )
