"""(p) Depth 4 against depth 3: the depth-4 escape curve and the rate ratio at equal eta."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from jumpsim import stats

import suite
from .fmt import NotRun, fmt_rate, not_run, pct, pyplot
from analysis import FIT_MAX_DIVERGED, escape_rows, start_facts

NAME = "p_depth4_curve"


class PFacts(NamedTuple):
    curve: pd.DataFrame  # depth 4: analysis.escape_rows per eta (p_depth4_curve.parquet)
    s3_4: float  # sigma_3 of the depth-4 and the depth-3 start
    s3_3: float
    fitted: list  # the etas of the depth-4 fit (fewer than FIT_MAX_DIVERGED diverged)
    fit: dict | None  # the depth-4 Arrhenius fit
    fit3: dict | None  # depth 3's, from the escape curve at ridge 1e-3
    ratios: list[dict]  # per eta in both curves: stats.rate_ratio depth 4 / depth 3 with the counts
    edge4: float  # the smallest eta where >= 50 % diverged, at depth 4 and depth 3
    edge3: float
    figure: bool  # p_depth4_curve.png written


def compute(out: Path, cv: pd.DataFrame, fit3: dict | None, start: dict, base) -> PFacts | NotRun:
    """The depth-4 curve of p_depth4_curve against the escape curve ``cv`` at ridge 1e-3 and its fit ``fit3``;
    ``start``: the depth-3 start's analysis.start_facts, ``base``: the base config (for the depth-4 start's)."""
    data = suite.load(out, NAME)
    if data is None or data["runs"].empty:
        return not_run(NAME, data)
    d4 = pd.DataFrame(escape_rows(data, depth=4)).sort_values("eta").reset_index(drop=True)
    d3 = cv[cv.ridge == 1e-3].assign(depth=3) if len(cv) else pd.DataFrame()
    s3_4 = start_facts(suite.start_path(depth=4), base)["singular_values"][2]
    small = d4[d4.diverged / d4.seeds < FIT_MAX_DIVERGED]
    fit4 = None
    if len(small) >= 3 and small["count"].sum() > 0:
        fit4 = stats.arrhenius_fit(1 / small.eta, small["count"], small.exposure, quasi=True)
    # equal eta: the ratio of the 3 -> 2 rates, exact conditional interval (stats.rate_ratio)
    ratios = []
    if len(d3):
        both = d4.merge(d3, on="eta", suffixes=("_4", "_3"))
        for q in both.itertuples():
            rr = stats.rate_ratio(int(q.count_4), q.exposure_4, int(q.count_3), q.exposure_3)
            ratios.append({"eta": q.eta, **rr, "count_4": int(q.count_4), "count_3": int(q.count_3)})
    lo_edge = d4[d4.diverged / d4.seeds >= 0.5].eta.min()
    edge3 = d3[d3.diverged / d3.seeds >= 0.5].eta.min() if len(d3) else float("nan")
    fig = figure(out, d4, fit4, d3, fit3)
    d4.to_parquet(out / "p_depth4_curve.parquet")
    return PFacts(d4, s3_4, start["singular_values"][2], small.eta.tolist(), fit4, fit3, ratios, lo_edge, edge3, fig)


def render(p: PFacts | NotRun) -> list[str]:
    head = ["## (p) Depth 4 against depth 3: the escape curve and the rate ratio at equal eta", ""]
    if isinstance(p, NotRun):
        return head + p.lines()
    d4 = p.curve
    lines = head + [
        f"Brute force on the CPU from the depth-4 rank-3 minimum of the same problem (`rank3_start_depth4.npz`: "
        f"GD at depth 4 from the gaussian start of model.seed, sigma_3 = {p.s3_4:.3g} against {p.s3_3:.3g} at depth "
        f"3), ridge 1e-3, {int(d4.horizon.max()):,} steps, "
        f"{int(d4.seeds.iloc[0]):,} seeds per learning rate (`p_depth4_curve.toml`).",
        "",
        "| eta | seeds | diverged | P(rank <= 2 within T) | escape rate k: first escapes / steps before them | "
        "3 -> 2 jumps in all |",
        "|---|---|---|---|---|---|",
    ]
    for q in d4.itertuples():
        lines.append(
            f"| {q.eta:g} | {q.seeds:,} | {pct(q.diverged / q.seeds)} | {q.reached:,}/{q.seeds:,} = {q.p:.3g} "
            f"[{q.p_low:.3g}, {q.p_high:.3g}] | {fmt_rate(q.count, q.exposure, q.rate_low, q.rate_high)} | "
            f"{q.jumps:,} |"
        )
    if p.fit is not None:
        f4 = p.fit
        lines += [
            "",
            f"Arrhenius fit at depth 4 (learning rates {', '.join(f'{e:g}' for e in p.fitted)}, fewer than "
            f"{pct(FIT_MAX_DIVERGED)} diverged): b = {f4['b']:.2f} [{f4['b_low']:.2f}, {f4['b_high']:.2f}], "
            f"goodness of fit p = {f4['p_value']:.2g}"
            + (f"; at depth 3 (j): b = {p.fit3['b']:.2f}." if p.fit3 is not None else "."),
        ]
    lines += [
        "",
        "Escape-rate ratio depth 4 / depth 3 at equal eta and ridge 1e-3 (first escapes; exact conditional interval):",
        "",
    ]
    ratios = p.ratios
    if ratios:
        lines += ["| eta | depth 4 escapes | depth 3 escapes | ratio [95 %] |", "|---|---|---|---|"]
        for q in ratios:
            lines.append(
                f"| {q['eta']:g} | {q['count_4']:,} | {q['count_3']:,} | {q['ratio']:.3g} [{q['low']:.3g}, "
                f"{q['high']:.3g}] |"
            )
    else:
        lines.append("no learning rate is in both curves.")
    lines += [
        "",
        (
            f"At every learning rate in both curves ({', '.join(format(q['eta'], 'g') for q in ratios)}) depth 4's "
            f"escape rate is at least {min(q['low'] for q in ratios):.3g}x depth 3's (lower ends of the intervals)"
            if ratios and all(q["low"] > 1 for q in ratios)
            else "At equal eta the two depths' escape rates are not resolved apart"
        )
        + "; but depth 4's edge of divergence is lower too "
        f"(>= 50 % diverge from eta {p.edge4:g} at depth 4, {p.edge3:g} at depth 3): the escape window moves down "
        "with the edge of stability rather than opening at small eta.",
        "",
    ]
    return lines + (["![depth 4 vs depth 3](p_depth4_curve.png)", ""] if p.figure else _NO_FIGURE)


_NO_FIGURE = ["(matplotlib not installed: no figure of the depth comparison)", ""]


def figure(out: Path, d4: pd.DataFrame, fit4, d3: pd.DataFrame, fit3) -> bool:
    """p_depth4_curve.png: log rate against 1 / eta at both depths with their fits (False: no matplotlib)."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for g, fit, label, col in ((d3, fit3, "depth 3", "tab:orange"), (d4, fit4, "depth 4", "tab:purple")):
        if g is None or not len(g):
            continue
        ok = g["count"] > 0
        y = np.log10(g.rate[ok])
        ax.errorbar(
            1 / g.eta[ok],
            y,
            yerr=[y - np.log10(g.rate_low[ok]), np.log10(g.rate_high[ok]) - y],
            fmt="o",
            color=col,
            capsize=2,
            label=f"{label}, ridge 0.001",
        )
        z = g[~ok]
        ax.scatter(1 / z.eta, np.log10(z.rate_high), marker="v", color=col)
        if fit is not None:
            xs = np.linspace(1 / g.eta.max(), 1 / g.eta[ok].min() + 1.5, 50)
            ax.plot(xs, fit["log_k"](xs) / np.log(10), "--", color=col)
    ax.set(xlabel="1 / eta", ylabel="log10 jump rate 3 -> 2 per step", title="depth 4 vs depth 3 (v: upper bounds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "p_depth4_curve.png", dpi=110)
    plt.close(fig)
    return True
