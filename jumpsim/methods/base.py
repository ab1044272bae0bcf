"""What every estimator of ``jumpsim rare`` provides (``Method``), and the pieces they share.

An estimator is one object: how it runs on the particles (``run``), what its work is (``work``), the
columns it adds to the rare tables (``columns``), the row ``summarize`` gives for it from those tables, and the
lines a summary prints (``lines``). Nothing else in jumpsim looks at ``rare.method``: adding an estimator is a
module of this package and its entry in ``METHODS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ..text import fmt


class Work(NamedTuple):
    """The first phase of an estimate, for the plan printed before it runs: "work: <phase> <steps> SGD steps
    (time)<rest>"; the time comes from a lockstep probe of `width` particles (split over the devices if
    `sharded`)."""

    phase: str
    steps: int
    rest: str
    width: int
    sharded: bool


class Estimate(NamedTuple):
    """What ``Method.run`` returns: the engine's result and the levels it used (NaN where it has none)."""

    result: Any
    basin: float
    interface: float


class Columns(NamedTuple):
    """The method's part of one shard's rare tables: values of the ``rare`` row, columns of ``rare_replicas``
    (each (R,)), and the ``rare_curve`` columns (or None: no curve)."""

    row: dict
    replicas: dict
    curve: dict | None


class Method(NamedTuple):
    """One estimator (see the module docstring); every function is pure apart from the engine it drives.

    check(cfg): raise ConfigError for settings it cannot honour.
    work(particles, cfg, replicas, slots) -> Work.
    run(particles, cfg, engine_kwargs, on_flux) -> Estimate: engine_kwargs are the settings every estimator
        passes to the splitting engine (particles, replicas, seed, state, on_iteration, ...).
    columns(result, particles, basin, interface) -> Columns (the row's ``seed_steps``: what the work cost).
    owes_levels(replica_rows) -> (R,) bool: replicas that must have level-curve rows for a bound.
    summarize(rows, replica_rows, level_table, level) -> dict: the method's fields of a summary row.
    log_se(summary_row, of, z) -> (value, standard error of its log) for ratios of two estimates; `of` is "p" or
        "rate" (rate only when both estimates are rates).
    lines(summary_row, pct) -> Markdown-free text lines for ``jumpsim summarize``.
    """

    name: str
    estimates_rate: bool
    check: Callable
    work: Callable
    run: Callable
    columns: Callable
    owes_levels: Callable
    summarize: Callable
    log_se: Callable
    lines: Callable


def weight_columns(res) -> dict:
    """The replicas' weight diagnostics (``rare_replicas`` columns of schema 5)."""
    return {
        "weight_sq_sum": np.asarray(res.replica_weight_sq, np.float64),
        "weight_max": np.asarray(res.replica_weight_max, np.float64),
        "log10_w_sd": np.asarray(res.replica_log10_w_sd, np.float64),
    }


# a weighted estimate is "not resolved" (its interval withheld) when its hits' weights say a few paths carry it:
# effective sample size below MIN_ESS, one contribution above MAX_SHARE of the total, or an effective sample
# size below MIN_ESS_FRACTION of the hits (weights spread over decades: the heavy paths are the ones rarely drawn,
# and the estimate is typically low). Checked on exact chains with deliberately bad proposals
# (tests/test_importance.py); no rule sees paths a proposal never draws: two proposals should agree.
MIN_ESS = 30.0
MAX_SHARE = 0.1
MIN_ESS_FRACTION = 0.01
MARKOV_LEVEL = 0.05  # p >= 0.05 x a non-negative unbiased estimate, with probability >= 95 % (Markov's inequality)


def weight_diagnostics(reps, scale) -> dict:
    """Effective sample size and largest share of the hits' contributions to an estimate pooled over its replicas
    with weights `scale` (R,) (TAMS: 1 each; rate form: the replicas' crossings), and the median spread of log10
    likelihood ratio; NaN where the replicas have no weight columns (written before schema 5)."""
    p = reps["p"].to_numpy(float)
    hits = float(reps.reached.sum()) if "reached" in reps else np.nan  # (the rate form does not count them: 0)
    if "weight_sq_sum" not in reps or reps.weight_sq_sum.isna().all():
        return {"ess": np.nan, "max_weight_share": np.nan, "log10_w_sd": np.nan, "hits": hits}
    a = np.asarray(scale, float)
    use = ~np.isnan(p) & (a > 0)
    tot = float((a * p)[use].sum())
    sq = float((a**2 * reps.weight_sq_sum.to_numpy(float))[use].sum())
    top = float((a * reps.weight_max.to_numpy(float))[use].max()) if use.any() else np.nan
    sd = reps.log10_w_sd.to_numpy(float)[use]
    return {
        "ess": tot**2 / sq if sq > 0 else 0.0,
        "max_weight_share": top / tot if tot > 0 else np.nan,
        "log10_w_sd": float(np.nanmedian(sd)) if np.isfinite(sd).any() else np.nan,
        "hits": hits,
    }


def carried_by_few(rec: dict) -> bool:
    """A weighted estimate's weights say a few paths carry it (see MIN_ESS, MAX_SHARE, MIN_ESS_FRACTION)."""
    hits = rec.get("hits", np.nan)
    spread = hits > 0 and rec["ess"] < MIN_ESS_FRACTION * hits
    few = not (rec["ess"] >= MIN_ESS and rec["max_weight_share"] <= MAX_SHARE)
    return rec.get("proposal", "uniform") != "uniform" and rec["p"] > 0 and (spread or few)


def proposal_of(p) -> str:
    """The proposal particles `p` ran: "uniform" without a likelihood ratio."""
    return "uniform" if p.weight is None else p.proposal


# --------------------------------------------------------------------------------------------- summary text


def event(r: dict) -> str:
    arrow = "<=" if r["direction"] == "down" else ">="
    return f"P(rank {arrow} {r['level']} within {r['horizon']:,} steps)"


def head_line(r: dict) -> str:
    arrow = "<=" if r["direction"] == "down" else ">="
    return (
        f"  splitting [{r['estimate_id']}] {r['method']}, score {r['score']}: rank {r['start_rank']} -> {arrow} "
        f"{r['level']}, "
        f"{r['replicas']} replicas x {r['particles']} particles, {r['extinct']} extinct, {r['seed_steps']:,} "
        "SGD steps"
    )


def p_line(r: dict, pct: str) -> str:
    if r.get("resolved") is False:
        return (
            f"    {event(r)} = {fmt(r['p'])} not resolved: carried by a few paths (effective sample size "
            f"{fmt(r['ess'])}, largest weight {fmt(r['max_weight_share'])} of the total); what it does give: "
            f"p >= {fmt(MARKOV_LEVEL * r['p'])} with probability >= {1 - MARKOV_LEVEL:.0%} (Markov's inequality)"
        )
    return f"    {event(r)} = {fmt(r['p'])} [{fmt(r['p_low'])}, {fmt(r['p_high'])}] ({pct})"


def weight_line(r: dict) -> list[str]:
    """The weights' diagnostics of an estimate whose particles ran a proposal (nothing for plain SGD)."""
    if r.get("proposal", "uniform") == "uniform":
        return []
    return [
        f"    proposal {r['proposal']}: effective sample size {fmt(r['ess'])}, largest weight share "
        f"{fmt(r['max_weight_share'])}, log10 likelihood ratio spread {fmt(r['log10_w_sd'])} (median over replicas)"
    ]


def bracket_line(r: dict, pct: str) -> list[str]:
    """[path lower bound, level-curve upper bound] where no two-sided estimate exists."""
    lg, hi, upper = r.get("log10_p_lower_bound"), r.get("p_bound"), "the level curve"
    if lg is None or not (unresolved(r) or r["p_low"] is None or r.get("resolved") is False):
        return []
    if hi is None and r.get("p_high") is not None:  # rate form, no crossing: no level curve, the flux's bound
        hi, upper = r["p_high"], "the flux's bound on the rate"
    lo = fmt(r["p_lower_bound"]) if r["p_lower_bound"] else f"10^{lg:.0f}"
    width = f", {np.log10(hi) - lg:.1f} decades wide" if hi is not None and hi > 0 else ""
    keep = r.get("lower_bound_keep")
    path = (
        f"a path of {r['lower_bound_draws']:,} draws and plain runs from its end"
        if keep is None or not np.isfinite(keep)
        else f"{r['lower_bound_draws']:,} steps drawing among the {keep:.0%} of entries that raise the score most, "
        "then plain runs"
    )
    return [f"    bracket: {lo} <= {event(r)} <= {fmt(hi)} (lower: {path}; upper: {upper}; each {pct}{width})"]


def unresolved(r: dict) -> bool:
    """p == 0: no replica reached the target; a 0 with a degenerate interval is no answer (p missing: no
    replica rows or a NaN replica, printed as "?")."""
    return r["p"] == 0


def bound_lines(r: dict, pct: str, weak: bool, k: str = "") -> list[str]:
    """The level curve's bound, where the estimate itself is `weak` (or replicas went extinct)."""
    if not (weak or r["extinct"] or unresolved(r) or r["p_low"] is None) or r.get("p_bound") is None:
        return []
    return [
        f"    bound from the level curve: {k}{event(r)} <= {fmt(r['p_bound'])} (upper end of the {pct} interval "
        f"of the estimate at score level {r['bound_level']:.3g}, the tightest over the levels every replica "
        "passed; every path to the target passes them)"
    ]


def extinct_lines(r: dict) -> list[str]:
    if not r["extinct"] or r.get("stalled_level") is None:
        return []
    return [
        f"    {r['extinct']} extinct replica(s): their particles all tied at score {r['stalled_level']:.3g} "
        f"(median; 1 = target) after a weight of 10^{r['stalled_log10_w']:.1f}; "
        + (
            "to resolve p: more particles, another score, or the README's advice for small eta"
            if r["extinct"] == r["replicas"]
            else "extinct replicas count as 0 (the estimate is skewed low if many are)"
        )
    ]


def log_se_of_interval(value: float, low: float, high: float, z: float) -> tuple[float, float]:
    """(value, standard error of its log) read off a two-sided interval on the log scale."""
    with np.errstate(divide="ignore"):
        return value, (np.log(high) - np.log(low)) / (2 * z)
