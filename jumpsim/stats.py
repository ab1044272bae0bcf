"""Jump statistics from the tables alone (no re-simulation), with confidence intervals.

All functions take pandas DataFrames in the dataset layout (``tables.read_dataset``) and group
by ``config_id`` (and by the starting rank where it matters). They lean on scipy:
``binomtest`` for proportions, ``ecdf`` on ``CensoredData`` for Kaplan-Meier, chi-square
quantiles for exact Poisson intervals, ``logrank`` for comparing curves.

Conventions:
- A seed that diverged is censored at its divergence step (``runs.steps``); for the
  first-passage probability within the horizon it counts as "not reached" (divergence is a
  competing outcome, reported in ``n_diverged``).
- Exposure at rank r is the number of steps a seed's persistent rank was r, from step
  ``burn_in`` to the end of its run (horizon or divergence). A seed whose event buffer
  overflowed is cut at its last recorded event, so its counts and exposure stay consistent.
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as sps

# --------------------------------------------------------------------------------------
# intervals


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


# --------------------------------------------------------------------------------------
# per-config facts


def run_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Seeds, diverged seeds and horizon per config_id."""
    g = runs.groupby("config_id", sort=True)
    return pd.DataFrame(
        {
            "seeds": g.size(),
            "diverged": g["status"].apply(lambda s: int((s == "diverged").sum())),
            "horizon": g["horizon"].max(),
        }
    ).reset_index()


def first_passage(runs: pd.DataFrame, passages: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """P(persistent rank <= level within the horizon), per (config_id, start_rank, level):
    k of n seeds, p = k/n with Wilson (p_low, p_high) and exact (p_low_exact, p_high_exact)
    intervals, and how many of the seeds that did not reach it diverged."""
    cols = [
        "config_id",
        "start_rank",
        "level",
        "n",
        "k",
        "n_diverged",
        "horizon",
        "p",
        "p_low",
        "p_high",
        "p_low_exact",
        "p_high_exact",
    ]
    if passages.empty:
        return pd.DataFrame(columns=cols)
    df = passages.merge(runs[["config_id", "seed", "status", "horizon"]], on=["config_id", "seed"], how="left")
    df["reached"] = df["step"].notna() & (df["step"] <= df["horizon"])
    df["div_unreached"] = ~df["reached"] & (df["status"] == "diverged")
    g = df.groupby(["config_id", "start_rank", "level"], sort=True)
    out = g.agg(
        n=("seed", "size"), k=("reached", "sum"), n_diverged=("div_unreached", "sum"), horizon=("horizon", "max")
    ).reset_index()
    out["p"] = out["k"] / out["n"]
    w = [proportion_ci(int(k), int(n), level, "wilson") for k, n in zip(out["k"], out["n"])]
    e = [proportion_ci(int(k), int(n), level, "exact") for k, n in zip(out["k"], out["n"])]
    out["p_low"], out["p_high"] = [x[0] for x in w], [x[1] for x in w]
    out["p_low_exact"], out["p_high_exact"] = [x[0] for x in e], [x[1] for x in e]
    return out.sort_values(["config_id", "start_rank", "level"], ascending=[True, True, False])[cols].reset_index(
        drop=True
    )


def first_passage_rate(runs: pd.DataFrame, passages: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Rate of first passage to persistent rank <= level per step, per (config_id, start_rank, level): the
    constant-hazard (exponential) estimate count / exposure, where count is the seeds that reached it and
    exposure the steps each seed spent before reaching it (or before its run ended: horizon or divergence),
    with the exact Poisson interval. Unlike ``rates`` it counts each seed at most once, so repeated jumps
    of one seed (down, back up, down again) do not weigh as independent events."""
    cols = ["config_id", "start_rank", "level", "count", "exposure_steps", "rate", "rate_low", "rate_high"]
    if passages.empty:
        return pd.DataFrame(columns=cols)
    df = _passage_times(runs, passages)
    g = df.groupby(["config_id", "start_rank", "level"], sort=True)
    out = g.agg(count=("reached", "sum"), exposure_steps=("time", "sum")).reset_index()
    out["count"] = out["count"].astype(int)
    out["exposure_steps"] = out["exposure_steps"].astype(np.int64)
    out["rate"] = out["count"] / out["exposure_steps"]
    out["rate_low"], out["rate_high"] = poisson_rate_ci(
        out["count"].to_numpy(), out["exposure_steps"].to_numpy(), level
    )
    return out[cols]


def _passage_times(runs: pd.DataFrame, passages: pd.DataFrame) -> pd.DataFrame:
    """Per passage row: time (step reached, or censoring step) and whether it was reached within
    the seed's run (a passage dated after the run's end is censored there)."""
    df = passages.merge(runs[["config_id", "seed", "steps"]], on=["config_id", "seed"], how="left")
    df["reached"] = df["step"].notna() & (df["step"] <= df["steps"])
    df["time"] = np.where(df["reached"], df["step"], df["steps"]).astype(float)
    return df


def _km(times: np.ndarray, reached: np.ndarray, level: float):
    """scipy Kaplan-Meier fit (survival = not yet reached) and its log-log band, or None
    when nothing was reached."""
    if not reached.any():
        return None
    data = sps.CensoredData(uncensored=times[reached], right=times[~reached])
    res = sps.ecdf(data)
    with warnings.catch_warnings():  # the log-log band is undefined (NaN) where S is 0 or 1
        warnings.simplefilter("ignore", RuntimeWarning)
        band = res.sf.confidence_interval(confidence_level=level, method="log-log")
    return res.sf, band


def survival_curves(runs: pd.DataFrame, passages: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Kaplan-Meier curves of first-passage time: per (config_id, start_rank, level), the
    survival S(step) = P(not yet at rank <= level) at each step where it drops, with the
    log-log band. Right-censored at each seed's end (horizon or divergence)."""
    rows = []
    for (cid, start, lv), g in _passage_times(runs, passages).groupby(["config_id", "start_rank", "level"], sort=True):
        fit = _km(g["time"].to_numpy(), g["reached"].to_numpy(), level)
        rows.append(
            pd.DataFrame(
                {
                    "config_id": cid,
                    "start_rank": start,
                    "level": lv,
                    "step": [0.0],
                    "survival": [1.0],
                    "low": [1.0],
                    "high": [1.0],
                }
            )
        )
        if fit is None:
            continue
        sf, band = fit
        q = sf.quantiles
        rows.append(
            pd.DataFrame(
                {
                    "config_id": cid,
                    "start_rank": start,
                    "level": lv,
                    "step": q,
                    "survival": sf.probabilities,
                    "low": band.low.probabilities,
                    "high": band.high.probabilities,
                }
            )
        )
    cols = ["config_id", "start_rank", "level", "step", "survival", "low", "high"]
    return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)


def _first_below(steps: np.ndarray, values: np.ndarray, q: float) -> float:
    hit = np.nonzero(values <= q)[0]
    return float(steps[hit[0]]) if len(hit) else float("nan")


def median_passage(runs: pd.DataFrame, passages: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Median first-passage step (Kaplan-Meier) with the interval read off the log-log band;
    NaN where the curve (or a band) never drops to 1/2 within the horizon."""
    out = []
    curves = survival_curves(runs, passages, level)
    for (cid, start, lv), c in curves.groupby(["config_id", "start_rank", "level"], sort=True):
        s = c["step"].to_numpy()
        out.append(
            {
                "config_id": cid,
                "start_rank": int(start),
                "level": int(lv),
                "median": _first_below(s, c["survival"].to_numpy(), 0.5),
                "median_low": _first_below(s, c["low"].to_numpy(), 0.5),
                "median_high": _first_below(s, c["high"].to_numpy(), 0.5),
            }
        )
    cols = ["config_id", "start_rank", "level", "median", "median_low", "median_high"]
    return pd.DataFrame(out, columns=cols)


def exposure(runs: pd.DataFrame, events: pd.DataFrame, burn_in: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(exposure per (config_id, rank) in steps, event counts per (config_id, from, to)),
    counting only time and events at or after ``burn_in``."""
    r = runs[["config_id", "seed", "initial_rank", "steps", "events_overflow"]]
    ev = events.merge(r[["config_id", "seed", "steps"]], on=["config_id", "seed"])
    ev = ev[ev["step"] <= ev["steps"]]
    # seeds with an overflowed buffer: cut at their last recorded event
    last = ev.groupby(["config_id", "seed"])["step"].max().rename("last_event")
    r = r.merge(last, on=["config_id", "seed"], how="left")
    end = np.where(r["events_overflow"] > 0, r["last_event"].fillna(0), r["steps"])
    r = r.assign(end=end)
    seg = pd.concat(
        [
            r[["config_id", "seed"]].assign(step=0, rank=r["initial_rank"]),
            ev[["config_id", "seed", "step"]].assign(rank=ev["rank_after"]),
        ],
        ignore_index=True,
    ).merge(r[["config_id", "seed", "end"]], on=["config_id", "seed"])
    seg = seg.sort_values(["config_id", "seed", "step"], kind="stable")
    nxt = seg.groupby(["config_id", "seed"])["step"].shift(-1)
    stop = np.minimum(np.where(nxt.isna(), seg["end"], nxt), seg["end"])
    seg["time"] = np.maximum(0, stop - np.maximum(seg["step"], burn_in))
    exp = seg.groupby(["config_id", "rank"], sort=True)["time"].sum().rename("exposure_steps").reset_index()
    ev = ev.merge(r[["config_id", "seed", "end"]], on=["config_id", "seed"])
    ev = ev[(ev["step"] >= burn_in) & (ev["step"] <= ev["end"])]
    counts = ev.groupby(["config_id", "rank_before", "rank_after"], sort=True).size().rename("count").reset_index()
    return exp, counts


def rates(runs: pd.DataFrame, events: pd.DataFrame, level: float = 0.95, burn_in: int = 0) -> pd.DataFrame:
    """Jump rates r -> r' (events per step at rank r) with exact Poisson intervals: every
    observed transition, plus r -> r+1 for every rank visited even with zero events (its
    upper bound is the one-way claim in numbers). The rates between rank levels are the
    continuous-time Markov chain estimate. Use ``burn_in`` to skip a transient."""
    cols = ["config_id", "from_rank", "to_rank", "count", "exposure_steps", "rate", "rate_low", "rate_high"]
    exp, counts = exposure(runs, events, burn_in)
    exp = exp[exp["exposure_steps"] > 0]
    ups = (
        exp[["config_id", "rank"]]
        .rename(columns={"rank": "rank_before"})
        .assign(rank_after=lambda d: d["rank_before"] + 1)
    )
    trans = pd.concat([counts[["config_id", "rank_before", "rank_after"]], ups]).drop_duplicates()
    df = trans.merge(counts, on=["config_id", "rank_before", "rank_after"], how="left").fillna({"count": 0})
    df = df.merge(exp.rename(columns={"rank": "rank_before"}), on=["config_id", "rank_before"], how="left").fillna(
        {"exposure_steps": 0}
    )
    df = df.rename(columns={"rank_before": "from_rank", "rank_after": "to_rank"})
    df["count"] = df["count"].astype(np.int64)
    df["exposure_steps"] = df["exposure_steps"].astype(np.int64)
    df["rate"] = np.where(df["exposure_steps"] > 0, df["count"] / df["exposure_steps"].clip(lower=1), np.nan)
    df["rate_low"], df["rate_high"] = poisson_rate_ci(df["count"].to_numpy(), df["exposure_steps"].to_numpy(), level)
    return df.sort_values(["config_id", "from_rank", "to_rank"], ascending=[True, False, True])[cols].reset_index(
        drop=True
    )


# --------------------------------------------------------------------------------------
# comparing two experiments


def rate_ratio(count_a: int, exposure_a: float, count_b: int, exposure_b: float, level: float = 0.95) -> dict:
    """Ratio of two Poisson rates a/b with the exact conditional interval: given the total,
    count_a is binomial with p = E_a r_a / (E_a r_a + E_b r_b). Also the two-sided p-value of
    equal rates."""
    n = count_a + count_b
    ratio = (
        (count_a / exposure_a) / (count_b / exposure_b)
        if count_b > 0
        else float("inf")
        if count_a > 0
        else float("nan")
    )
    if n == 0:
        return {"ratio": float("nan"), "low": 0.0, "high": float("inf"), "p_value": 1.0}
    t = sps.binomtest(count_a, n, exposure_a / (exposure_a + exposure_b))
    ci = t.proportion_ci(confidence_level=level, method="exact")
    conv = lambda p: float("inf") if p >= 1 else p / (1 - p) * exposure_b / exposure_a
    return {"ratio": ratio, "low": conv(ci.low), "high": conv(ci.high), "p_value": float(t.pvalue)}


def proportion_difference(k_a: int, n_a: int, k_b: int, n_b: int, level: float = 0.95) -> dict:
    """p_a - p_b with Newcombe's hybrid score interval (built from the two Wilson intervals)."""
    pa, pb = k_a / n_a, k_b / n_b
    la, ua = proportion_ci(int(k_a), int(n_a), level)
    lb, ub = proportion_ci(int(k_b), int(n_b), level)
    d = pa - pb
    return {"difference": d, "low": d - np.hypot(pa - la, ub - pb), "high": d + np.hypot(ua - pa, pb - lb)}


def compare(
    runs: pd.DataFrame,
    passages: pd.DataFrame,
    events: pd.DataFrame,
    a: str,
    b: str,
    start_rank: int,
    level_rank: int,
    level: float = 0.95,
    burn_in: int = 0,
) -> dict:
    """Config a vs config b for first passage from ``start_rank`` to rank <= ``level_rank``:
    difference of probabilities within the horizon, log-rank test of the passage-time curves,
    and the ratio of the jump rates out of ``start_rank`` downwards."""
    pt = _passage_times(runs, passages)
    sel = lambda cid: pt[(pt.config_id == cid) & (pt.start_rank == start_rank) & (pt.level == level_rank)]
    ga, gb = sel(a), sel(b)
    if ga.empty or gb.empty:
        raise ValueError(f"no seeds start at rank {start_rank} with level {level_rank} in both {a} and {b}")
    diff = proportion_difference(int(ga.reached.sum()), len(ga), int(gb.reached.sum()), len(gb), level)
    data = lambda g: sps.CensoredData(uncensored=g.time[g.reached].to_numpy(), right=g.time[~g.reached].to_numpy())
    logrank_p = float(sps.logrank(data(ga), data(gb)).pvalue) if (ga.reached.any() or gb.reached.any()) else 1.0
    exp, counts = exposure(runs, events, burn_in)
    down = lambda cid: int(
        counts[(counts.config_id == cid) & (counts.rank_before == start_rank) & (counts.rank_after < start_rank)][
            "count"
        ].sum()
    )
    ex = lambda cid: float(exp[(exp.config_id == cid) & (exp["rank"] == start_rank)]["exposure_steps"].sum())
    rr = rate_ratio(down(a), ex(a), down(b), ex(b), level) if ex(a) > 0 and ex(b) > 0 else None
    return {
        "a": a,
        "b": b,
        "start_rank": start_rank,
        "level": level_rank,
        "p_a": int(ga.reached.sum()) / len(ga),
        "p_b": int(gb.reached.sum()) / len(gb),
        "p_difference": diff,
        "logrank_p_value": logrank_p,
        "down_rate_ratio": rr,
    }


# --------------------------------------------------------------------------------------
# splitting estimates


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


def level_table(levels: pd.DataFrame, reps: pd.DataFrame, method: str) -> pd.DataFrame | None:
    """The level curves (``rare_levels`` rows) of the estimate whose replica rows are `reps`, as a (replica x z)
    table of p in the order of `reps`; None if a replica that should have them (rate form: one with crossings)
    has none, as in shards written before schema 4: a bound from the others would be a partial one."""
    if reps.empty:
        return None
    key = reps.iloc[0]
    lv = levels[(levels.config_id == key.config_id) & (levels.estimate_id == key.estimate_id)]
    if lv.empty:
        return None
    # (pivot_table: a replica written twice by overlapping shards must not crash the summary)
    lv = lv.pivot_table(index="replica", columns="z", values="p", aggfunc="first").reindex(reps.replica)
    has = lv.notna().any(axis=1).to_numpy()
    owes = np.ones(len(has), bool) if method == "tams" else (reps.flux_crossings.fillna(0) > 0).to_numpy()
    return lv if has[owes].all() else None


def splitting(
    rare: pd.DataFrame,
    replicas: pd.DataFrame,
    level: float = 0.95,
    iterations: pd.DataFrame | None = None,
    levels: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per splitting estimate (config_id, estimate_id), its shards pooled: p = P(target within
    the horizon) with its interval (tams: mean of replica estimates; rate: 1 - exp(-k T)), and for the
    rate form k per step with its interval. Extinct replicas count as 0 (never dropped).

    With the per-iteration table (``rare_iterations``): where replicas went extinct, ``stalled_level`` is
    the median over them of the score level at which all their particles tied (1 = target) and
    ``stalled_log10_w`` the median log10 of their weight prod(1 - K/N) before it: how far the levels got,
    and at what estimated probability, before the score stopped making progress (NaN if none extinct).

    With the level curves (``rare_levels``, schema 4; every replica needs its rows, else none is given):
    ``bound_level`` z, the intermediate level of the tightest bound among those every replica passed, and the
    upper bounds there (``level_bound``): ``p_bound`` on P(target within the horizon) (rate form:
    1 - exp(-rate_bound T)) and ``rate_bound`` on k (rate form only). They hold with an interval where p itself
    has none (every replica extinct; rate form: no replica reached the target)."""
    cols = [
        "config_id",
        "estimate_id",
        "method",
        "score",
        "start_rank",
        "level",
        "direction",
        "horizon",
        "p",
        "p_low",
        "p_high",
        "p_rel_se",
        "rate",
        "rate_low",
        "rate_high",
        "p_ab",
        "flux",
        "flux_crossings",
        "particles",
        "replicas",
        "extinct",
        "seed_steps",
        "stalled_level",
        "stalled_log10_w",
        "bound_level",
        "p_bound",
        "rate_bound",
    ]
    out = []
    for (cid, eid), g in rare.groupby(["config_id", "estimate_id"], sort=True):
        reps = replicas[(replicas.config_id == cid) & (replicas.estimate_id == eid)].sort_values("replica")
        rp = reps["p"].to_numpy()
        r0 = g.iloc[0]
        rec = {
            "config_id": cid,
            "estimate_id": eid,
            "method": r0.method,
            "score": r0.score,
            "start_rank": int(r0.start_rank),
            "level": int(r0.level),
            "direction": r0.direction,
            "horizon": int(r0.horizon),
            "particles": int(r0.particles),
            "replicas": len(rp),
            "extinct": int(g.extinct.sum()),
            "seed_steps": int(g.seed_steps.sum()),
            **_stalled(reps, iterations, cid, eid, int(r0.particles)),
        }
        lv = level_table(levels, reps, r0.method) if levels is not None and not levels.empty else None
        rec.update(bound_level=np.nan, p_bound=np.nan, rate_bound=np.nan)
        if r0.method == "tams":
            if lv is not None:
                b = level_bound(lv.columns, lv.to_numpy(), level)
                rec.update(bound_level=b.z, p_bound=b.high)
            p, lo, hi = replica_interval(rp, level)
            rec.update(
                p=p,
                p_low=lo,
                p_high=hi,
                p_rel_se=relative_se(rp),
                rate=np.nan,
                rate_low=np.nan,
                rate_high=np.nan,
                p_ab=np.nan,
                flux=np.nan,
                flux_crossings=0,
            )
        else:
            c, e = int(g.flux_crossings.sum()), float(g.flux_exposure_steps.sum())
            if reps.get("flux_crossings") is not None and reps.flux_crossings.notna().all():
                est = rate_estimate(reps.flux_crossings, reps.flux_exposure_steps, rp, level)
            else:  # written before schema 3 (replicas shared one pool of crossings): no honest interval
                p, flux = float(np.nanmean(rp)), c / e if e else np.nan
                est = RateEstimate(flux * p, np.nan, np.nan, p, np.nan, np.nan, flux)
            within = lambda x: -np.expm1(-x * rec["horizon"]) if np.isfinite(x) else np.nan
            if lv is not None and reps.get("flux_crossings") is not None:
                b = level_bound(lv.columns, lv.to_numpy(), level, reps.flux_crossings, reps.flux_exposure_steps)
                rec.update(bound_level=b.z, rate_bound=b.high, p_bound=within(b.high))
            rec.update(
                p_rel_se=np.nan,
                rate=est.rate,
                rate_low=est.rate_low,
                rate_high=est.rate_high,
                p=within(est.rate),
                p_low=within(est.rate_low),
                p_high=within(est.rate_high),
                p_ab=est.p_ab,
                flux=est.flux,
                flux_crossings=c,
            )
        out.append(rec)
    return pd.DataFrame(out, columns=cols)


def _stalled(reps, iterations, cid, eid, n: int) -> dict:
    """Median stall level and log10 weight of the extinct replicas of one estimate (`reps`: its replica rows;
    see ``splitting``)."""
    nan = {"stalled_level": np.nan, "stalled_log10_w": np.nan}
    if iterations is None or iterations.empty:
        return nan
    dead = reps[reps.extinct].replica
    it = iterations[(iterations.config_id == cid) & (iterations.estimate_id == eid)]
    it = it[it.replica.isin(dead)].sort_values(["replica", "iteration"])
    if it.empty:
        return nan
    last = it.groupby("replica").tail(1)
    alive = it.drop(last.index)
    w = np.log10(1 - np.minimum(alive.killed.to_numpy(), n - 1) / n)
    lw = pd.Series(w, index=alive.replica.to_numpy()).groupby(level=0).sum().reindex(last.replica, fill_value=0.0)
    return {"stalled_level": float(last.z.median()), "stalled_log10_w": float(lw.median())}


def splitting_ratio(a: dict, b: dict, level: float = 0.95) -> dict | None:
    """Ratio A/B of two splitting estimates (rows of ``splitting``): of the escape rates when both are
    rate-form estimates, else of P(target within the horizon). The interval is normal on the log
    ratio, each side's standard error of the log: rate, read off its interval (delta method on log k, so
    (log high - log low) / 2z); tams, the replicas' relative standard error (``p_rel_se``); a rate-form row
    compared by P reads it off its P interval like the rate. None if either is 0 or NaN."""
    z = sps.norm.ppf((1 + level) / 2)
    kind = "rate" if a["method"] == b["method"] == "rate" else "p"

    def log_se(r: dict) -> tuple[float, float]:
        """(value, standard error of its log)."""
        if kind == "rate":
            return r["rate"], (np.log(r["rate_high"]) - np.log(r["rate_low"])) / (2 * z)
        if r["method"] == "tams":
            return r["p"], r.get("p_rel_se", np.nan)
        with np.errstate(divide="ignore"):
            return r["p"], (np.log(r["p_high"]) - np.log(r["p_low"])) / (2 * z)

    (va, sa), (vb, sb) = log_se(a), log_se(b)
    if not (va > 0 and vb > 0 and np.isfinite(sa) and np.isfinite(sb)):
        return None
    ratio, half = va / vb, z * float(np.hypot(sa, sb))
    return {
        "of": kind,
        "ratio": float(ratio),
        "low": float(ratio * np.exp(-half)),
        "high": float(ratio * np.exp(half)),
        "a": a["estimate_id"],
        "b": b["estimate_id"],
    }


# --------------------------------------------------------------------------------------
# laws and recipes built on the counts


def arrhenius_fit(inv_eta, counts, exposure, level: float = 0.95, quasi: bool = False) -> dict:
    """Fit the Freidlin-Wentzell / Arrhenius form k(eta) = exp(a - b / eta) to jump counts.

    ``inv_eta`` (P,) = 1 / eta of each setting, ``counts`` (P,) jumps seen there, ``exposure`` (P,)
    steps observed there. The counts are Poisson with mean exposure * k (a Poisson GLM with log link,
    fitted by Newton's method; zero counts take part). Returns a, b with Wald intervals from the
    observed information, the deviance and its chi-square goodness-of-fit p-value on P - 2 degrees of
    freedom (a small p-value says the data do not follow the form), ``log_k(inv_eta)`` to draw or
    extrapolate the fit and ``log_k_interval(inv_eta) -> (low, high)``, its Wald interval there. With
    ``quasi`` the covariance is scaled by max(1, deviance / dof) (quasi-Poisson): the intervals widen by
    the scatter the form does not explain, instead of trusting it (``scale`` says by how much)."""
    x = np.asarray(inv_eta, float)
    y = np.asarray(counts, float)
    e = np.asarray(exposure, float)
    if len(np.unique(x[y > 0])) < 2:
        # with jumps at one learning rate only, the likelihood keeps rising as b -> +-inf: no fit exists
        raise ValueError("arrhenius_fit needs jumps at two or more learning rates")
    x0 = float(x.mean())
    X = np.column_stack([np.ones_like(x), -(x - x0)])  # log k = c - b (x - x0)
    beta = np.array([np.log(y.sum() / e.sum()), 0.0])
    for _ in range(200):
        mu = e * np.exp(X @ beta)
        info = X.T @ (mu[:, None] * X)
        step = np.linalg.solve(info, X.T @ (y - mu))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10 * (1 + np.max(np.abs(beta))):
            break
    else:
        raise ValueError("arrhenius_fit: Newton's method did not converge")
    mu = e * np.exp(X @ beta)
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = float(2 * np.sum(np.where(y > 0, y * np.log(y / mu), 0.0) - (y - mu)))
    dof = len(x) - 2
    scale = max(1.0, dev / dof) if quasi and dof > 0 else 1.0
    cov = np.linalg.inv(X.T @ (mu[:, None] * X)) * scale
    c, b = float(beta[0]), float(beta[1])
    a = c + b * x0
    var_a = cov[0, 0] + x0 * x0 * cov[1, 1] + 2 * x0 * cov[0, 1]
    z = sps.norm.ppf((1 + level) / 2)
    return {
        "a": a,
        "a_low": a - z * np.sqrt(var_a),
        "a_high": a + z * np.sqrt(var_a),
        "b": b,
        "b_low": b - z * np.sqrt(cov[1, 1]),
        "b_high": b + z * np.sqrt(cov[1, 1]),
        "deviance": dev,
        "dof": dof,
        "p_value": float(sps.chi2.sf(dev, dof)) if dof > 0 else float("nan"),
        "points": len(x),
        "scale": scale,
        "log_k": lambda inv: a - b * np.asarray(inv, float),
        "log_k_interval": lambda inv: _wald_line(c, b, x0, cov, np.asarray(inv, float), z),
    }


def _wald_line(c, b, x0, cov, inv, z):
    """(low, high) of c - b (inv - x0) from the covariance of (c, b)."""
    u = -(inv - x0)
    se = np.sqrt(cov[0, 0] + u * u * cov[1, 1] + 2 * u * cov[0, 1])
    mid = c + b * u
    return mid - z * se, mid + z * se


def restart_time(cost, success, level: float = 0.95) -> tuple[float, float, float]:
    """Expected steps to success when every failed attempt restarts from the same start (renewal).

    ``cost`` (N,) steps each independent attempt used (its first-passage step if it succeeded; else the
    step it diverged or the horizon), ``success`` (N,) bool. The expected total is E[cost] / P(success)
    (Wald's identity); the interval is the delta method on the log of the ratio of sums. For a
    memoryless escape at rate k with a competing divergence, the answer is 1 / k whatever the horizon.
    No success gives (inf, sum(cost) / upper bound of the successes, inf)."""
    c = np.asarray(cost, float)
    s = np.asarray(success, bool).astype(float)
    n, k = len(c), float(s.sum())
    if k == 0:
        hi = proportion_ci(0, n, level)[1] * n
        return float("inf"), float(c.sum() / hi) if hi > 0 else float("nan"), float("inf")
    r = c.sum() / k
    se_log = np.sqrt(np.sum((c - r * s) ** 2)) / (r * k)
    z = sps.norm.ppf((1 + level) / 2)
    return float(r), float(r * np.exp(-z * se_log)), float(r * np.exp(z * se_log))
