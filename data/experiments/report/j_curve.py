"""(j) The escape curve: the GPU's brute-force escape rate against the learning rate at three ridges."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

import suite
from . import l_splitting_low
from .fmt import NotRun, fmt_rate, pct, pyplot
from analysis import FIT_MAX_DIVERGED, curve_fits

COLORS = {5e-4: "tab:blue", 1e-3: "tab:orange", 2e-3: "tab:green"}


class JFacts(NamedTuple):
    curve: pd.DataFrame  # suite.curve_rows: one row per (ridge, eta)
    device: str
    fits: dict  # analysis.curve_fits of the curve
    slopes: list[tuple[float, list[tuple]]]  # per ridge: (eta_1, eta_2, b, its standard error) of neighbours
    onset: list[tuple[float, float | None, float, float | None]]  # per ridge: eta of >= 1 % diverged, max eta, >= 50 %
    escaped_then_diverged: float  # the fraction of the seeds that reached rank <= 2 and diverged later
    low: l_splitting_low.LFacts | NotRun  # the splitting estimates below brute force's reach
    figure: bool  # j_curve.png written


def base_fit(j: JFacts | NotRun) -> dict | None:
    """The Arrhenius fit at the base's ridge 1e-3, None without one."""
    return None if isinstance(j, NotRun) else j.fits.get(1e-3, {}).get("fit")


def compute(out: Path, cv: pd.DataFrame) -> JFacts | NotRun:
    """The escape curve ``cv`` (suite.curve_rows), its fits, and (l) beside it (writes j_curve.parquet and
    j_curve.png)."""
    if cv.empty:
        how = f"`bash data/experiments/gpu_runs.sh OUT` on a GPU, then unpack OUT/*.tar into {out.name}/{suite.GPU}/"
        return NotRun("j_curve", how=how)
    fits = curve_fits(cv)
    low = l_splitting_low.compute(out, cv, fits)
    esc_div = cv[cv.reached > 0]
    frac = esc_div.escaped_then_diverged.sum() / max(esc_div.reached.sum(), 1)
    fig = figure(out, cv, fits, low.rows if isinstance(low, l_splitting_low.LFacts) else pd.DataFrame())
    cv.to_parquet(out / "j_curve.parquet")
    return JFacts(cv, suite.pack_device(out), fits, _slopes(cv), _onset(cv), frac, low, fig)


def _slopes(cv: pd.DataFrame) -> list:
    """Local slopes b = ln(k_2 / k_1) / (1/eta_1 - 1/eta_2) between neighbouring learning rates with >= 3 first
    escapes and few divergences, with the delta method's standard error."""
    slopes = []
    for ridge, g in cv[cv["count"] >= 3].groupby("ridge"):
        g = g[g.diverged / g.seeds < FIT_MAX_DIVERGED].sort_values("eta")
        parts = []
        for (_, lo_), (_, hi_) in zip(g.iterrows(), g.iloc[1:].iterrows()):
            d = 1 / lo_.eta - 1 / hi_.eta
            b = np.log(hi_.rate / lo_.rate) / d
            se = np.sqrt(1 / lo_["count"] + 1 / hi_["count"]) / d
            parts.append((lo_.eta, hi_.eta, b, se))
        if parts:
            slopes.append((ridge, parts))
    return slopes


def _onset(cv: pd.DataFrame) -> list:
    """Per ridge: the smallest eta where >= 1 % of the seeds diverged (None: none), the largest eta, and the
    smallest where >= 50 % did (None: none)."""
    onset = []
    for ridge, g in cv.groupby("ridge"):
        d = g[g.diverged / g.seeds >= 0.01]
        half = g[g.diverged / g.seeds >= 0.5]
        onset.append((ridge, d.eta.min() if len(d) else None, g.eta.max(), half.eta.min() if len(half) else None))
    return onset


def render(j: JFacts | NotRun) -> list[str]:
    head = ["## (j) The escape curve: jump rate against the learning rate, three ridges", ""]
    if isinstance(j, NotRun):
        return head + j.lines()
    cv = j.curve
    T = int(cv.horizon.max())
    lines = head + [
        f"Brute force on {j.device} (`data/experiments/gpu_runs.sh`, {cv.seed_steps.sum():,} seed-steps): "
        "every "
        f"seed starts at its ridge's own gradient-descent minimum of rank 3 (`rank3_start*.npz`) and runs {T:,} SGD "
        "steps. P is the probability of rank <= 2 within T (Wilson); the escape rate k counts each seed's first "
        "passage to rank <= 2 per step spent before it (exact Poisson; a seed that jumps down, back up and down "
        "again counts once: repeats are not independent events; the last column has every 3 -> 2 jump). Pooled "
        "from more than one pack (other seeds, `run.seed_offset`): "
        + (
            ", ".join(f"eta {q.eta:g} at ridge {q.ridge:g} ({q.packs} packs)" for q in cv[cv.packs > 1].itertuples())
            or "none"
        )
        + ".",
        "",
        "| ridge | eta | seeds | diverged | escaped, then diverged | P(rank <= 2 within T) | escape rate k: first "
        "escapes / steps before them | 3 -> 2 jumps in all |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for q in cv.itertuples():
        lines.append(
            f"| {q.ridge:g} | {q.eta:g} | {q.seeds:,} | {pct(q.diverged / q.seeds)} | {q.escaped_then_diverged:,} | "
            f"{q.reached:,}/{q.seeds:,} = {q.p:.3g} [{q.p_low:.3g}, {q.p_high:.3g}] | "
            f"{fmt_rate(q.count, q.exposure, q.rate_low, q.rate_high)} | {q.jumps:,} |"
        )
    lines += _render_fits(j.fits) + _render_slopes(j.slopes) + _render_divergence(j)
    lines += l_splitting_low.render(j.low)
    return lines + (["![escape curve](j_curve.png)", ""] if j.figure else _NO_FIGURE)


_NO_FIGURE = ["(matplotlib not installed: no figure of the escape curve)", ""]


def _render_fits(fits: dict) -> list[str]:
    lines = [
        "",
        f"**Arrhenius fit** log k = a - b / eta (Poisson regression of the first-escape counts on the steps before "
        "them; Wald 95 % intervals, widened by sqrt(deviance / dof) where the scatter exceeds Poisson's, "
        f"quasi-Poisson) over the learning rates where fewer than {pct(FIT_MAX_DIVERGED)} of the seeds diverged; the "
        "goodness-of-fit p-value is the deviance's chi-square tail (small: the data do not follow the form). The same "
        "fit over every learning rate, up to the edge of divergence, is beside it for contrast.",
        "",
        "| ridge | learning rates fitted | b | a | deviance / dof (p) | all learning rates: b, p |",
        "|---|---|---|---|---|---|",
    ]
    for ridge, f_ in fits.items():
        f, fa = f_["fit"], f_["all"]
        allcol = f"{fa['b']:.2f}, p = {fa['p_value']:.2g}" if fa else "-"
        lines.append(
            f"| {ridge:g} | {', '.join(f'{e:g}' for e in f_['etas'])} | {f['b']:.2f} [{f['b_low']:.2f}, "
            f"{f['b_high']:.2f}] | {f['a']:.1f} [{f['a_low']:.1f}, {f['a_high']:.1f}] | {f['deviance']:.1f} / "
            f"{f['dof']} ({f['p_value']:.2g}) | {allcol} |"
        )
    return lines


def _render_slopes(slopes: list) -> list[str]:
    if not slopes:
        return []
    said = [
        f"ridge {ridge:g}: "
        + ", ".join(f"{e1:g}-{e2:g}: {b:.1f} [{b - 1.96 * se:.1f}, {b + 1.96 * se:.1f}]" for e1, e2, b, se in parts)
        for ridge, parts in slopes
    ]
    return [
        "",
        "Local slopes b = ln(k_2 / k_1) / (1/eta_1 - 1/eta_2) between neighbouring learning rates (each with at "
        "least "
        "3 first escapes; 95 % delta-method intervals): "
        + "; ".join(said)
        + ". Where the fit is rejected, the slope changes along the curve, and an extrapolation of the straight "
        "line to small eta is not a measurement.",
    ]


def _render_divergence(j: JFacts) -> list[str]:
    onset = []
    for ridge, first, top, half in j.onset:
        onset.append(
            f"ridge {ridge:g}: >= 1 % of seeds diverge from eta {first:g}"
            if first is not None
            else f"ridge {ridge:g}: fewer than 1 % diverge up to eta {top:g}"
        )
        if half is not None:
            onset[-1] += f", >= 50 % from {half:g}"
    return [
        "",
        "**Divergence.** " + "; ".join(onset) + ". It interferes twice: a seed that diverges before it jumps stops "
        "counting (its exposure ends there, and P counts it as not reached), and near the edge the jumps themselves "
        f"ride on the same large excursions: {pct(j.escaped_then_diverged)} of the seeds that reached rank <= 2 "
        "diverged later in the run.",
        "",
    ]


def figure(out: Path, cv: pd.DataFrame, fits: dict, sl: pd.DataFrame) -> bool:
    """j_curve.png: log rate and log P against 1 / eta per ridge, with the fits and the TAMS estimates of (l)
    (False: no matplotlib)."""
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ridge, g in cv.groupby("ridge"):
        _plot_ridge(axes, ridge, g, fits)
    if not sl.empty:
        for score, g in sl[sl.p > 0].groupby("score"):
            y = np.log10(g.p)
            axes[1].errorbar(
                1 / g.eta + (0.03 if score == "layers" else 0),
                y,
                yerr=[y - np.log10(np.maximum(g.p_low, g.p / 100)), np.log10(g.p_high) - y],
                fmt="s",
                mfc="none",
                color="k" if score == "sigma" else "tab:red",
                label=f"TAMS ({score}), ridge 0.001",
                capsize=2,
            )
    if 1e-3 in fits:
        f, T = fits[1e-3]["fit"], float(cv.horizon.max())
        xs = np.linspace(1 / cv.eta.max(), 1 / 0.105, 50)
        axes[1].plot(
            xs,
            np.log10(-np.expm1(-np.exp(f["log_k"](xs)) * T)),
            "--",
            color=COLORS[1e-3],
            label="1 - exp(-k T), Arrhenius fit, ridge 0.001",
        )
    axes[0].set(xlabel="1 / eta", ylabel="log10 jump rate 3 -> 2 per step", title="rate (dashed: Arrhenius fit)")
    axes[1].set(xlabel="1 / eta", ylabel="log10 P(rank <= 2 within T)", title="probability within T")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "j_curve.png", dpi=110)
    plt.close(fig)
    return True


def _plot_ridge(axes, ridge: float, g: pd.DataFrame, fits: dict) -> None:
    """One ridge's rates (upper bounds where no seed escaped) and probabilities, and its fit's line."""
    col = COLORS.get(ridge, "k")
    ok = g["count"] > 0
    x = 1 / g.eta[ok]
    y = np.log10(g.rate[ok])
    axes[0].errorbar(
        x,
        y,
        yerr=[y - np.log10(g.rate_low[ok]), np.log10(g.rate_high[ok]) - y],
        fmt="o",
        color=col,
        label=f"ridge {ridge:g}",
        capsize=2,
    )
    z = g[~ok]
    axes[0].scatter(1 / z.eta, np.log10(z.rate_high), marker="v", color=col)
    okp = g.reached > 0
    yp = np.log10(g.p[okp])
    axes[1].errorbar(
        1 / g.eta[okp],
        yp,
        yerr=[yp - np.log10(g.p_low[okp]), np.log10(g.p_high[okp]) - yp],
        fmt="o",
        color=col,
        label=f"brute force, ridge {ridge:g}",
        capsize=2,
    )
    if ridge in fits:
        f = fits[ridge]["fit"]
        xs = np.linspace(1 / g.eta.max(), 1 / 0.10, 50)
        axes[0].plot(xs, f["log_k"](xs) / np.log(10), "--", color=col)
