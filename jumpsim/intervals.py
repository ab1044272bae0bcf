"""Interval maths of jumpsim's estimates, on numpy arrays (numpy and scipy only, so that the splitting engine
and the estimators can use it without the DataFrame side of ``stats``, which re-exports it).

Binomial proportions (Wilson, Clopper-Pearson), exact Poisson rates (Garwood), the mean of independent replica
estimates (Student-t, delta-log-normal), the rate form's ratio estimator, and the level bound of a splitting
estimate.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from scipy import stats as sps


@functools.lru_cache(maxsize=65536)  # many groups share (k, n): binomtest once per pair
def proportion_ci(k: int, n: int, level: float = 0.95, method: str = "wilson") -> tuple[float, float]:
    """Interval for a binomial proportion: ``method`` "wilson" or "exact" (Clopper-Pearson)."""
    if n == 0:
        return float("nan"), float("nan")
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method=method)
    return float(ci.low), float(ci.high)


def poisson_rate_ci(count, exposure, level: float = 0.95):
    """Exact (Garwood) two-sided interval for a Poisson rate count/exposure (scalars or
    arrays). Zero events give 0 and a finite upper bound, chi2_{1-a/2}(2)/2 / exposure (about
    3.69/exposure at 95%); non-positive exposure gives NaN."""
    count = np.asarray(count, dtype=float)
    exposure = np.asarray(exposure, dtype=float)
    a = 1 - level
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(count > 0, sps.chi2.ppf(a / 2, 2 * np.maximum(count, 1)) / 2, 0.0) / exposure
        high = sps.chi2.ppf(1 - a / 2, 2 * count + 2) / 2 / exposure
    bad = exposure <= 0
    low, high = np.where(bad, np.nan, low), np.where(bad, np.nan, high)
    return (float(low), float(high)) if low.ndim == 0 else (low, high)


def mean_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of replica estimates with a Student-t interval, clipped at 0 (NaN with one replica or all zero)."""
    x = np.asarray(x, float)
    m = float(x.mean()) if len(x) else float("nan")
    if len(x) < 2 or not np.any(x > 0):
        return m, float("nan"), float("nan")
    half = sps.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return m, max(m - half, 0.0), m + half


MIN_CROSSING_REPLICAS = 10  # rate form: replicas holding crossings needed for the Student-t interval


class RateEstimate(NamedTuple):
    rate: float  # per unit of exposure
    rate_low: float
    rate_high: float
    p_ab: float
    p_ab_low: float
    p_ab_high: float
    flux: float


def flux_bound_only(crossings, replica_p) -> bool:
    """Whether ``rate_estimate`` gives only [0, the flux's upper bound] for these replicas: fewer than
    MIN_CROSSING_REPLICAS of them hold a crossing, or none reached the target (False with no replica)."""
    c = np.asarray(crossings, float)
    a = np.where(c > 0, c * np.nan_to_num(np.asarray(replica_p, float)), 0.0)
    return bool(len(c)) and bool((c > 0).sum() < MIN_CROSSING_REPLICAS or a.sum() == 0)


def rate_estimate(crossings, exposure, replica_p, level: float = 0.95) -> RateEstimate:
    """Escape rate k = flux x P(target before basin) from R independent replicas, each with its own flux
    trajectories (C_r crossings in E_r exposure) and its own AMS from those crossings (p_r; NaN or
    anything where C_r = 0: unused).

    Ratio estimators over replicas: k = sum_r C_r p_r / sum_r E_r, p_ab = sum_r C_r p_r / sum_r C_r,
    flux = sum C / sum E. Intervals: Student-t (R - 1 dof) on the log, with the ratio's linearised
    variance var(a_r - k E_r) / (R mean(E)^2), a_r = C_r p_r. Because every replica draws its own
    crossings, the replica spread holds all three noises: the Poisson count of crossings, the spread of
    the committor over crossing states (large when the score misses what drives the escape) and the
    AMS noise. (A shared pool of crossings would leave the middle one out: intervals too narrow.)
    Coverage of k on chains with an exact k (benchmarks/results/splitting-validation.md): 0.91 where the
    replicas' AMS noise is large (sd of log10 C_r p_r ~0.4; misses low: right-skewed replicas), within the
    binomial band of 0.95 at sd ~0.2 and where the score misses the escape channel. The delta-log-normal
    interval of ``replica_interval`` would cover 0.96 in the first case but about half the runs in the last,
    whose replica estimates are bimodal over decades, so it is not used here.

    Fewer than MIN_CROSSING_REPLICAS replicas with a crossing (none at all included), or an estimate of 0
    (every replica extinct): the t-interval would rest on a handful of values, or have zero width, so the
    interval is [0, the flux's exact Poisson upper bound] instead: every escape from the basin crosses the
    interface first, so k <= flux (p_ab <= 1)."""
    c = np.asarray(crossings, float)
    e = np.asarray(exposure, float)
    a = np.where(c > 0, c * np.nan_to_num(np.asarray(replica_p, float)), 0.0)
    r = len(c)
    flux = c.sum() / e.sum() if r and e.sum() > 0 else float("nan")
    k = a.sum() / e.sum() if r and e.sum() > 0 else float("nan")
    p = a.sum() / c.sum() if r and c.sum() > 0 else float("nan")
    if flux_bound_only(c, replica_p) and e.sum() > 0:
        upper = poisson_rate_ci(c.sum(), e.sum(), level)[1]
        return RateEstimate(float(k), 0.0, upper, float(p), np.nan, np.nan, float(flux))
    t = sps.t.ppf((1 + level) / 2, max(r - 1, 1))

    def interval(v, d):
        if not v > 0 or r < 2:
            return float("nan"), float("nan")
        half = t * np.sqrt(np.var(a - v * d, ddof=1) / r) / d.mean() / v
        return v * float(np.exp(-half)), v * float(np.exp(half))

    return RateEstimate(float(k), *interval(k, e), float(p), *interval(p, c), float(flux))


def lognormal_mean_interval(x, level: float = 0.95, draws: int = 20_000) -> tuple[float, float]:
    """Interval for the mean of non-negative, right-skewed estimates x (R,): zeros (extinct replicas) as a point
    mass, the positive values as log-normal (a delta-log-normal model). The generalized confidence interval
    (Krishnamoorthy & Mathew 2003; Tian 2005 for the zeros): quantiles of d exp(m - Z s sqrt((n-1)/(n U)) +
    (n-1) s^2 / (2U)) over `draws` fixed-seed draws of Z ~ N(0, 1), U ~ chi2(n-1), d ~ Beta(n + 1/2, R - n + 1/2)
    (d = 1 without zeros); m, s^2: mean and variance of log x over the n positive values.

    Why: splitting replica estimates are products of many factors, close to log-normal, and the Student-t
    interval misses their mean on the high side: on chains with exact answers it covered 85 % of runs
    (65 % at p = 1e-12) where this one covers 92.5-97 % (benchmarks/results/splitting-validation.md); on
    synthetic log-normal replicas (log sd 0.5-2, R = 8-32) its upper end held in 97-98.5 % (nominal 97.5 %),
    Cox's method in 91 % at sd 2. NaN with fewer than two positive values."""
    x = np.asarray(x, float)
    pos = x[x > 0]
    n, r = len(pos), len(x)
    if n < 2 or np.isnan(x).any():
        return float("nan"), float("nan")
    lx = np.log(pos)
    m, s2 = lx.mean(), lx.var(ddof=1)
    rng = np.random.default_rng(20030101)
    z, u = rng.standard_normal(draws), rng.chisquare(n - 1, draws)
    g = m - z * np.sqrt(s2 / n * (n - 1) / u) + (n - 1) * s2 / (2 * u)
    if n < r:
        g = g + np.log(rng.beta(n + 0.5, r - n + 0.5, draws))
    lo, hi = np.quantile(g, [(1 - level) / 2, (1 + level) / 2])
    with np.errstate(over="ignore"):  # (two replicas a few decades apart: an infinite upper end, honestly)
        return float(np.exp(lo)), float(np.exp(hi))


def replica_interval(x, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of splitting replica estimates of a probability (extinct ones as 0) with the delta-log-normal
    interval of ``lognormal_mean_interval``, clipped to [0, 1] and widened to hold the mean: (mean, low, high);
    NaN ends with fewer than two positive replicas. (The log-normal model may put the whole interval above the
    sample mean, which heavy right tails pull low; the mean stays the estimate, unbiased.)"""
    x = np.asarray(x, float)
    if not len(x) or np.isnan(x).any():
        return float("nan"), float("nan"), float("nan")
    m = float(x.mean())
    lo, hi = lognormal_mean_interval(x, level)
    if lo == lo:
        lo, hi = min(lo, m), min(max(hi, m), 1.0)
    return m, lo, hi


def relative_se(x) -> float:
    """Relative standard error of the mean of replica estimates x (R,): sd / sqrt(R) / mean (NaN if undefined)."""
    x = np.asarray(x, float)
    if len(x) < 2 or not x.mean() > 0:
        return float("nan")
    return float(x.std(ddof=1) / np.sqrt(len(x)) / x.mean())


class LevelBound(NamedTuple):
    z: float  # the level of the bound (see ``level_bound``); NaN if no level qualifies
    value: float  # estimate there: P(max score >= z) (tams: replica mean) or the rate of reaching z (rate form)
    low: float
    high: float  # upper end at `level`: an upper bound on p (or k), since every path to the target passes z


def level_bound(grid, replica_level_p, level: float = 0.95, crossings=None, exposure=None) -> LevelBound:
    """Upper bound on a splitting estimate from its level curve: every replica's estimate of
    P(max score >= z) at the intermediate levels z = `grid` (G,) (`replica_level_p` (R, G); NaN: no
    estimate, e.g. a rate-form replica without crossings). Every path to the target passes every level,
    so p <= P(max score >= z) for each z, and the upper end of an interval for P(max score >= z) bounds p.

    Only levels that every replica passed (estimate > 0; rate form: every replica with crossings) are used:
    the replica mean is unbiased at every level, but above them a few replicas carry it and no interval has a
    footing (taken where 90 % of the replicas had passed, the upper end held in only 86-89 % of validation
    runs where 97.5 % is nominal). Levels where the positive estimates do not spread at all (below the rate
    form's interface, or every replica exactly 1) or whose interval is not finite say nothing and are
    skipped. Among the rest the smallest upper end is the bound (not necessarily at the highest level): the
    statements are nested and strongly correlated, and where the target lies far beyond the level (what the
    bound is for) p is far below P(max score >= z) anyway. This is what a replica set that went extinct, or
    reached the target only rarely, can still say with an interval.

    tams: the replica mean with the log-normal interval (``lognormal_mean_interval``; the replicas' log spread
    widens it fast, as it should: a few replicas may carry the mean). rate form (pass the replicas' `crossings`
    C_r and `exposure` E_r): the rate of reaching z from the basin, k(z) = sum C_r p_r(z) / sum E_r, the mean of
    x_r = C_r p_r(z) / mean(E) with the same interval (replicas without crossings are its zeros;
    ``rate_estimate``'s linearised interval is a Student-t on these skewed x_r)."""
    grid = np.asarray(grid, float)
    lp = np.asarray(replica_level_p, float)
    if crossings is None:
        x, need = lp, ~np.isnan(lp).all(1)  # (a replica without any estimate, e.g. R = 0 rows, is not used)
        use = need
    else:
        c, e = np.asarray(crossings, float), np.asarray(exposure, float)
        x, need, use = np.nan_to_num(lp) * (c / e.mean())[:, None], c > 0, np.ones(len(c), bool)
    best = LevelBound(float("nan"), float("nan"), float("nan"), float("nan"))
    for g in np.flatnonzero((x[need] > 0).all(0)) if need.any() else ():
        xs = x[use, g]
        v, (lo, hi) = float(xs.mean()), lognormal_mean_interval(xs, level)
        if not np.isfinite(hi) or np.ptp(xs[xs > 0]) == 0:
            continue
        lo, hi = min(lo, v), max(hi, v)  # holding the estimate (see ``replica_interval``)
        if crossings is None:
            lo, hi = min(lo, 1.0), min(hi, 1.0)  # a probability
        if np.isnan(best.z) or hi <= best.high:  # (ties: the higher level)
            best = LevelBound(float(grid[g]), float(v), float(lo), float(hi))
    return best
