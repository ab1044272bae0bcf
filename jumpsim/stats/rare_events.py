"""Splitting estimates from the tables alone: one row per estimate (its shards pooled), the level bound where
no replica resolved p, and the ratio of two estimates."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy import stats as sps

from .. import methods


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
    return lv if has[methods.get(method).owes_levels(reps)].all() else None


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
        "proposal",
        "ess",
        "max_weight_share",
        "log10_w_sd",
        "resolved",
        "hits",
        "p_lower_bound",
        "log10_p_lower_bound",
        "lower_bound_draws",
        "lower_bound_keep",
    ]
    out = []
    for (cid, eid), g in rare.groupby(["config_id", "estimate_id"], sort=True):
        reps = replicas[(replicas.config_id == cid) & (replicas.estimate_id == eid)].sort_values("replica")
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
            "replicas": len(reps),
            "extinct": int(g.extinct.sum()),
            "seed_steps": int(g.seed_steps.sum()),
            **_stalled(reps, iterations, cid, eid, int(r0.particles)),
        }
        lv = level_table(levels, reps, r0.method) if levels is not None and not levels.empty else None
        rec.update(bound_level=np.nan, p_bound=np.nan, rate_bound=np.nan)
        rec["proposal"] = g.proposal.dropna().iloc[0] if "proposal" in g and g.proposal.notna().any() else "uniform"
        rec.update(methods.get(r0.method).summarize(g, reps, lv, level))
        rec["resolved"] = not methods.base.carried_by_few(rec)
        if not rec["resolved"]:  # no interval: the weights say a few paths carry the estimate
            rec.update(p_low=np.nan, p_high=np.nan, rate_low=np.nan, rate_high=np.nan)
        rec.update(_lower_bound(g))
        out.append(rec)
    return pd.DataFrame(out, columns=cols)


def _lower_bound(g: pd.DataFrame) -> dict:
    """The path lower bound of the bracket (``jumpsim.bracket``) from an estimate's shard rows (the shard of
    replica 0 computes it; NaN where none did, as before schema 5)."""
    nan = dict.fromkeys(("p_lower_bound", "log10_p_lower_bound", "lower_bound_draws", "lower_bound_keep"), np.nan)
    if "log10_p_lower_bound" not in g or g.log10_p_lower_bound.isna().all():
        return nan
    row = g.loc[g.log10_p_lower_bound.idxmax()]
    return {
        "p_lower_bound": float(row.p_lower_bound),
        "log10_p_lower_bound": float(row.log10_p_lower_bound),
        "lower_bound_draws": int(row.lower_bound_draws),
        # the share of the entries its prefix drew among (before rare.bracket_keep: one greedy path, NaN)
        "lower_bound_keep": float(json.loads(row.settings).get("bracket_keep", np.nan)),
    }


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
    ma, mb = methods.get(a["method"]), methods.get(b["method"])
    kind = "rate" if ma.estimates_rate and mb.estimates_rate else "p"
    (va, sa), (vb, sb) = ma.log_se(a, kind, z), mb.log_se(b, kind, z)
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
