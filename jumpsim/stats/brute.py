"""Brute-force jump statistics from the tables alone (no re-simulation), with confidence intervals.

All functions take pandas DataFrames in the dataset layout (``dataset.read_dataset``) and group
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

import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..intervals import poisson_rate_ci, proportion_ci


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


def _through(pt: pd.DataFrame, cid: str, start_rank: int, level_rank: int) -> pd.DataFrame:
    """Passage rows of config `cid` from rank <= `start_rank` to rank <= `level_rank` for the seeds that started
    above `start_rank` and reached it: time from the first step at <= start_rank (reached / censored as above)."""
    g = pt[(pt.config_id == cid) & (pt.start_rank > start_rank)]
    t0 = g[(g.level == start_rank) & g.reached].set_index("seed").time
    end = g[g.level == level_rank].set_index("seed")
    end = end[end.index.isin(t0.index)]
    return end.assign(time=end.time - t0.reindex(end.index)).reset_index()


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
    and the ratio of the jump rates out of ``start_rank`` downwards. Seeds that start at ``start_rank`` are
    timed from step 0; where none of one experiment does, its seeds are timed from their first passage to rank
    <= ``start_rank`` (``from`` says which: "start" or "passage")."""
    pt = _passage_times(runs, passages)
    sel = lambda cid: pt[(pt.config_id == cid) & (pt.start_rank == start_rank) & (pt.level == level_rank)]
    ga, gb = sel(a), sel(b)
    frm = "start"
    if ga.empty or gb.empty:
        ga, gb, frm = _through(pt, a, start_rank, level_rank), _through(pt, b, start_rank, level_rank), "passage"
    if ga.empty or gb.empty:
        raise ValueError(
            f"no seeds start at or pass through rank {start_rank} on their way to <= {level_rank} in both {a} and {b}"
        )
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
        "from": frm,
        "start_rank": start_rank,
        "level": level_rank,
        "p_a": int(ga.reached.sum()) / len(ga),
        "p_b": int(gb.reached.sum()) / len(gb),
        "p_difference": diff,
        "logrank_p_value": logrank_p,
        "down_rate_ratio": rr,
    }
