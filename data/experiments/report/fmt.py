"""Formatting helpers shared by the report's sections, and the marker of a section without data."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


def fmt_p(r) -> str:
    """k/n = p [low, high] of a first_passage row."""
    return f"{r.k}/{r.n} = {r.p:.3f} [{r.p_low:.3f}, {r.p_high:.3f}]"


def fmt_rate(c, e, lo, hi) -> str:
    return f"{c} in {e:,} steps: {c / e if e else float('nan'):.3g} [{lo:.3g}, {hi:.3g}] per step"


def fmt_hist(s: pd.Series, prefix: str = "") -> str:
    return ", ".join(f"{prefix}{k}: {v}" for k, v in s.items()) or "none"


def fmt_sched(v) -> str:
    """A schedule value as it reads in a sentence."""
    if not isinstance(v, dict):
        return f"{v:g}"
    if v["kind"] == "piecewise":
        parts = [f"{x:g}" for x in v["values"]]
        return " then ".join(f"{x} to step {b:,}" for x, b in zip(parts, v["boundaries"])) + f" then {parts[-1]}"
    return f"{v['shape']} {v['low']:g}-{v['high']:g} (period {v['period']:,})"


def pct(x: float) -> str:
    return f"{100 * x:.0f} %"


@dataclass(frozen=True)
class NotRun:
    """What a section has when its dataset is missing (``started`` False) or has no finished chunk yet;
    ``how``: what to run instead of the default ``run.py --only`` command."""

    name: str
    started: bool = False
    how: str | None = None

    def lines(self) -> list[str]:
        why = "no finished runs yet" if self.started else "not run"
        how = self.how or f"`python data/experiments/run.py --only {self.name.split('_')[0]}`"
        return [f"{why}: {how}", ""]


def not_run(name: str, data: dict | None = None) -> NotRun:
    """The NotRun of experiment ``name`` whose dataset is ``data`` (None: absent)."""
    return NotRun(name, data is not None)


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None where matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt
