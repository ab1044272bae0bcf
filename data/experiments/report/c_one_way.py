"""(c) One way: a kick at large eta, then small eta; up-jumps after the kick."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from jumpsim import stats

import suite
from .fmt import NotRun, fmt_p, not_run, pyplot
from analysis import n_div

NAME = "c_one_way"


class CFacts(NamedTuple):
    lr: dict  # the piecewise schedule
    b: int  # end of the kick
    horizon: int
    seeds: int
    diverged: int
    p: pd.Series  # first passage 3 -> <= 2
    k_kick: int  # of n seeds, reached rank <= 2 by the end of the kick
    n: int
    kick_low: float
    kick_high: float
    down_after: int  # down-jumps after the kick
    ups: pd.DataFrame  # up-jump rates from the end of the kick (c_up_rates.parquet)
    up_kick: int  # up-jumps during / after the kick
    up_after: int
    exposure_after: int
    rate_high: list  # [from, to, upper end of the rate] per up-jump kind
    figure: bool  # c_one_way.png written


def compute(out: Path) -> CFacts | NotRun:
    data = suite.load(out, NAME)
    if data is None or data["runs"].empty:
        return not_run(NAME, data)
    r, pas, ev = data["runs"], data["passages"], data["events"]
    lr = json.loads(data["experiments"].config.iloc[0])["train"]["lr"]
    b = lr["boundaries"][0]
    fp = stats.first_passage(r, pas)
    f = fp[(fp.start_rank == 3) & (fp.level == 2)].iloc[0]
    p3 = pas[(pas.start_rank == 3) & (pas.level == 2)]
    k_kick = int((p3.step < b).sum())
    lo_k, hi_k = stats.proportion_ci(k_kick, len(p3))
    rt = stats.rates(r, ev, burn_in=b)
    ups = rt[rt.to_rank > rt.from_rank]
    all_up, down = ev[ev.direction == "up"], ev[ev.direction == "down"]
    ups.to_parquet(out / "c_up_rates.parquet")
    return CFacts(
        lr=lr,
        b=b,
        horizon=int(r.horizon.max()),
        seeds=len(r),
        diverged=n_div(r),
        p=f,
        k_kick=k_kick,
        n=len(p3),
        kick_low=lo_k,
        kick_high=hi_k,
        down_after=int((down.step >= b).sum()),
        ups=ups,
        up_kick=int((all_up.step < b).sum()),
        up_after=int((all_up.step >= b).sum()),
        exposure_after=int(ups.exposure_steps.sum()),
        rate_high=ups[["from_rank", "to_rank", "rate_high"]].values.tolist(),
        figure=figure(out, data),
    )


def render(c: CFacts | NotRun) -> list[str]:
    lines = ["## (c) One way: up-jumps after the kick", ""]
    if isinstance(c, NotRun):
        return lines + c.lines()
    lr, b = c.lr, c.b
    lines += [
        (
            f"eta = {lr['values'][0]} for {b:,} steps, then {lr['values'][1]} to {c.horizon:,}; "
            f"{c.seeds} seeds, {c.diverged} diverged. Reached rank <= 2: {fmt_p(c.p)}; by the end of the kick (step "
            f"{b:,}): {c.k_kick}/{c.n} = {c.k_kick / c.n:.3f} [{c.kick_low:.3f}, {c.kick_high:.3f}]. Down-jumps "
            f"after the kick: {c.down_after}."
        ),
        "",
        f"Up-jumps counted from step {b:,} (the small-eta phase), with the seed-steps observed at each rank:",
        "",
        "| from -> to | count | seed-steps at the lower rank | rate [95 % interval] |",
        "|---|---|---|---|",
    ]
    for q in c.ups.itertuples():
        lines.append(
            f"| {q.from_rank} -> {q.to_rank} | {q.count} | {q.exposure_steps:,} | "
            f"{q.rate:.3g} [{q.rate_low:.3g}, {q.rate_high:.3g}] |"
        )
    lines += ["", f"Up-jumps during the kick (steps < {b:,}): {c.up_kick}; after it: {c.up_after}.", ""]
    if not c.figure:
        return lines + ["(matplotlib not installed: no figure of the kick experiment)", ""]
    return lines + [
        (
            "First passage from rank 3 to rank <= 2 (Kaplan-Meier), rank and singular values of the traced seeds "
            f"(dotted: end of the kick at step {b:,}):"
        ),
        "",
        "![kick then small eta](c_one_way.png)",
        "",
    ]


def figure(out: Path, data: dict) -> bool:
    """c_one_way.png: first passage 3 -> <= 2 (Kaplan-Meier), rank and singular values of the traced seeds
    (False: no matplotlib)."""
    plt = pyplot()
    if plt is None:
        return False
    r, pas, tr, exps = data["runs"], data["passages"], data["traces"], data["experiments"]
    cfg = json.loads(exps.config.iloc[0])
    b = cfg["train"]["lr"]["boundaries"][0]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    curve = stats.survival_curves(r, pas)
    g = curve[(curve.start_rank == 3) & (curve.level == 2)]
    axes[0].step(g.step, 1 - g.survival, where="post", label="3 -> <= 2")
    axes[0].fill_between(g.step, 1 - g.low, 1 - g.high, step="post", alpha=0.25)
    axes[0].set(xlabel="step", ylabel="P(reached rank <= 2)", title="first passage (Kaplan-Meier, 95 % log-log band)")
    for i, (seed, t) in enumerate(tr.groupby("seed")):
        axes[1].step(t.step, t["rank"], where="post", lw=1, label=f"seed {seed}")
        sv = np.stack(t.singular_values.to_numpy())
        axes[2].semilogy(t.step, np.maximum(sv, 1e-12), lw=0.7, color=f"C{i}")
    axes[1].set(xlabel="step", ylabel="numerical rank (-1: diverged)", title="rank of traced seeds")
    axes[1].yaxis.get_major_locator().set_params(integer=True)
    axes[2].axhline(exps.threshold.iloc[0], color="k", ls="--", lw=0.8, label=f"threshold {exps.threshold.iloc[0]:g}")
    axes[2].set(xlabel="step", ylabel="singular values of A", title="singular values of traced seeds")
    for ax in axes:
        ax.axvline(b, color="gray", ls=":", lw=1)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "c_one_way.png", dpi=110)
    plt.close(fig)
    return True
