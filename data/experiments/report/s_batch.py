"""(s) Batch size: the escape curve k(eta) for B = 1, 2, 3, 4 and the slope of log k in 1 / eta per B."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as sps

from jumpsim import stats

import suite
from .fmt import NotRun, fmt_rate, pct, pyplot
from analysis import escape_rows

NAMES = ("s_batch2", "s_batch3", "s_batch4")
MAX_DIVERGED = 0.5  # the learning rates a batch size's fit uses: fewer than half the seeds diverged


class SFacts(NamedTuple):
    curve: pd.DataFrame  # escape_rows per (batch, eta): B = 1 from (j)'s GPU curve at ridge 1e-3, B > 1 here
    fits: dict  # batch -> stats.arrhenius_fit (quasi) over its etas with < MAX_DIVERGED diverged, and "etas"
    ratios: dict  # batch > 1 -> (b_B / b_1, low, high): delta method on the log, the fits independent
    joint: dict | None  # log k = a_B - c B / eta with one c: c, its interval, and the test against one slope per B
    figure: bool


def compute(out: Path, cv: pd.DataFrame) -> SFacts | NotRun:
    parts = [suite.load(out, n) for n in NAMES]
    if all(d is None or d["runs"].empty for d in parts):
        return NotRun("s_batch")
    rows = [r for d in parts if d is not None and not d["runs"].empty for r in escape_rows(d)]
    one = cv[cv.ridge == 1e-3].assign(batch=1) if len(cv) else pd.DataFrame()
    curve = pd.concat([one, pd.DataFrame(rows)], ignore_index=True).sort_values(["batch", "eta"])
    curve = curve.reset_index(drop=True)
    curve.drop(columns=[c for c in ("ridge",) if c in curve], errors="ignore").to_parquet(out / "s_batch.parquet")
    use = curve[curve.diverged / curve.seeds < MAX_DIVERGED]
    fits = {}
    for b, g in use.groupby("batch"):
        if len(g) >= 2 and (g["count"] > 0).sum() >= 2:
            fits[int(b)] = {
                **stats.arrhenius_fit(1 / g.eta, g["count"], g.exposure, quasi=True),
                "etas": g.eta.tolist(),
            }
    ratios = {}
    if 1 in fits:
        f1 = fits[1]
        se1 = (f1["b_high"] - f1["b_low"]) / (2 * 1.96)
        for b, f in fits.items():
            if b > 1:
                se = (f["b_high"] - f["b_low"]) / (2 * 1.96)
                r = f["b"] / f1["b"]
                sl = np.sqrt((se / f["b"]) ** 2 + (se1 / f1["b"]) ** 2)
                ratios[b] = (r, r * np.exp(-1.96 * sl), r * np.exp(1.96 * sl))
    return SFacts(curve, fits, ratios, _joint(use[use.batch.isin(list(fits))]), figure(out, curve, fits))


def _joint(use: pd.DataFrame) -> dict | None:
    """The diffusion theories' form log k = a_B - c B / eta (one c for every batch size) against a slope per B:
    Poisson regressions, likelihood-ratio test on (number of B - 1) degrees of freedom."""
    bs = sorted(use.batch.unique())
    if len(bs) < 2:
        return None
    ind = np.column_stack([(use.batch == b).to_numpy(float) for b in bs])
    x = (use.batch / use.eta).to_numpy()
    common = stats.poisson_glm(np.column_stack([ind, -x]), use["count"], use.exposure)
    per_b = stats.poisson_glm(
        np.column_stack([ind, -ind * (1 / use.eta.to_numpy())[:, None]]), use["count"], use.exposure
    )
    c, se = float(common["beta"][-1]), float(np.sqrt(common["cov"][-1, -1]))
    lr = common["deviance"] - per_b["deviance"]
    return {
        "c": c,
        "low": c - 1.96 * se,
        "high": c + 1.96 * se,
        "lr": lr,
        "dof": len(bs) - 1,
        "p_value": float(sps.chi2.sf(lr, len(bs) - 1)),
        "fit_p": common["p_value"],
    }


def render(s: SFacts | NotRun) -> list[str]:
    head = ["## (s) Batch size: the escape curve for B = 1, 2, 3, 4", ""]
    if isinstance(s, NotRun):
        return head + s.lines()
    lines = head + [
        "From the rank-3 minimum at ridge 1e-3 (`rank3_start.npz`), T = 20,000 steps; B = 1 is the GPU curve of (j), "
        "B = 2, 3 and 4 brute force on the CPU (`s_batch2.toml`, `s_batch3.toml`, `s_batch4.toml`, 4,096 seeds per "
        "learning rate; 1,024-seed pilots found no escape at B = 2 up to eta 0.19 and at B = 3 up to 0.31, and at "
        "B = 4 escapes from 0.39 with divergence rising from 3 % at 0.39 to 43 % at 0.45).",
        "",
        "| B | eta | B / eta | seeds | diverged | P(rank <= 2 within T) | escape rate k |",
        "|---|---|---|---|---|---|---|",
    ]
    for q in s.curve.itertuples():
        lines.append(
            f"| {q.batch} | {q.eta:g} | {q.batch / q.eta:.2f} | {q.seeds:,} | {pct(q.diverged / q.seeds)} | "
            f"{q.reached:,}/{q.seeds:,} = {q.p:.3g} [{q.p_low:.3g}, {q.p_high:.3g}] | "
            f"{fmt_rate(q.count, q.exposure, q.rate_low, q.rate_high)} |"
        )
    lines += [
        "",
        f"Arrhenius fit log k = a - b / eta per batch size over the learning rates where fewer than "
        f"{pct(MAX_DIVERGED)} diverged (quasi-Poisson), and b over B = 1's (the diffusion and large-deviation "
        "theories predict b proportional to B: a ratio of B):",
        "",
        "| B | learning rates | b [95 %] | fit p | b_B / b_1 [95 %] |",
        "|---|---|---|---|---|",
    ]
    for b, f in s.fits.items():
        r = s.ratios.get(b)
        rs = "1" if b == 1 else ("-" if r is None else f"{r[0]:.2f} [{r[1]:.2f}, {r[2]:.2f}]")
        lines.append(
            f"| {b} | {', '.join(f'{e:g}' for e in f['etas'])} | {f['b']:.2f} [{f['b_low']:.2f}, "
            f"{f['b_high']:.2f}] | {f['p_value']:.2g} | {rs} |"
        )
    if s.joint:
        j = s.joint
        lines += [
            "",
            f"One slope in B / eta for every batch size (log k = a_B - c B / eta): c = {j['c']:.2f} "
            f"[{j['low']:.2f}, {j['high']:.2f}]; against a slope per B, likelihood ratio {j['lr']:.1f} on "
            f"{j['dof']} degrees of freedom, p = {j['p_value']:.2g} ("
            + (
                "the common slope in B / eta is rejected"
                if j["p_value"] < 0.01
                else "the data do not reject one slope in B / eta"
            )
            + ").",
        ]
    return lines + [""] + (["![escape curve per batch size](s_batch.png)", ""] if s.figure else [])


def figure(out: Path, curve: pd.DataFrame, fits: dict) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for b, g in curve.groupby("batch"):
        g = g[g["count"] > 0]
        for ax, x in zip(axes, (1 / g.eta, g.batch / g.eta)):
            err = [np.log10(g.rate) - np.log10(g.rate_low), np.log10(g.rate_high) - np.log10(g.rate)]
            ax.errorbar(x, np.log10(g.rate), yerr=err, marker="o", ls="-", label=f"B = {b}")
    axes[0].set_xlabel("1 / eta")
    axes[1].set_xlabel("B / eta")
    for ax in axes:
        ax.set_ylabel("log10 k per step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "s_batch.png", dpi=110)
    plt.close(fig)
    return True
