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
    columns(result, every, basin, interface) -> Columns.
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
    return f"    {event(r)} = {fmt(r['p'])} [{fmt(r['p_low'])}, {fmt(r['p_high'])}] ({pct})"


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
