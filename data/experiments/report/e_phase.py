"""(e) Phase map over the learning rate and the ridge: P(a jump below the start rank) and divergence."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from jumpsim import stats

import suite
from .fmt import NotRun, not_run, pyplot
from analysis import configs_with_runs, passage

NAME = "e_phase"
HEAD = "## (e) Phase map: P(at least one rank lower than the start{}) / fraction diverged"


class EFacts(NamedTuple):
    ph: pd.DataFrame  # one row per (lr, ridge): start rank, P(jump) with interval, fraction diverged
    steps: int
    ridges: list
    lrs: list
    figure: bool  # e_phase.png written


def compute(out: Path) -> EFacts | NotRun:
    data = suite.load(out, NAME)
    if data is None or data["runs"].empty:
        return not_run(NAME, data)
    r, pas = data["runs"], data["passages"]
    T = int(r.horizon.max())
    fp = stats.first_passage(r, pas)
    rows = []
    for cid, c, rr in configs_with_runs(data):
        start = int(rr.initial_rank.iloc[0])
        f = passage(fp, cid, start - 1)
        nan = float("nan")
        rows.append(
            {
                "lr": c["train"]["lr"],
                "ridge": c["train"]["ridge"],
                "start_rank": start,
                "p_jump": nan if f is None else float(f.p),
                "p_low": nan if f is None else float(f.p_low),
                "p_high": nan if f is None else float(f.p_high),
                "diverged": float((rr.status == "diverged").mean()),
            }
        )
    ph = pd.DataFrame(rows)
    ph.to_parquet(out / "e_phase.parquet")
    ridges, lrs = sorted(ph.ridge.unique()), sorted(ph.lr.unique())
    return EFacts(ph, T, ridges, lrs, figure(out, ph, ridges, lrs, T))


def render(e: EFacts | NotRun) -> list[str]:
    if isinstance(e, NotRun):
        return [HEAD.format(""), ""] + e.lines()
    ph, ridges = e.ph, e.ridges
    lines = [
        HEAD.format(f" within {e.steps // 1000}k steps"),
        "",
        "Each cell starts from the gradient-descent minimum at its own ridge (start rank in brackets).",
        "",
    ]
    lines.append("| eta \\ lambda | " + " | ".join(f"{x:g}" for x in ridges) + " |")
    lines.append("|---" * (len(ridges) + 1) + "|")
    for lr in e.lrs:
        cells = []
        for rd in ridges:
            q = ph[(ph.lr == lr) & (ph.ridge == rd)]
            if q.empty:
                cells.append("-")
                continue
            q = q.iloc[0]
            cells.append(f"{q.p_jump:.2f} [{q.p_low:.2f}, {q.p_high:.2f}] / {q.diverged:.2f} (r{int(q.start_rank)})")
        lines.append(f"| {lr:g} | " + " | ".join(cells) + " |")
    lines += [""]
    return lines + (["![phase map](e_phase.png)", ""] if e.figure else ["(matplotlib not installed: no heat map)", ""])


def figure(out: Path, ph: pd.DataFrame, ridges: list, lrs: list, T: int) -> bool:
    """e_phase.png: heat maps of P(jump) and of the fraction diverged (False: no matplotlib)."""
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, col, title in (
        (axes[0], "p_jump", f"P(jump down within {T // 1000}k)"),
        (axes[1], "diverged", "fraction diverged"),
    ):
        grid = np.full((len(lrs), len(ridges)), np.nan)
        for q in ph.itertuples():
            grid[lrs.index(q.lr), ridges.index(q.ridge)] = getattr(q, col)
        im = ax.imshow(grid, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set(
            xticks=range(len(ridges)),
            xticklabels=[f"{x:g}" for x in ridges],
            yticks=range(len(lrs)),
            yticklabels=[f"{x:g}" for x in lrs],
            xlabel="ridge lambda",
            ylabel="learning rate eta",
            title=title,
        )
        for i in range(len(lrs)):
            for j in range(len(ridges)):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.2f}",
                    ha="center",
                    va="center",
                    color="w" if grid[i, j] < 0.5 else "k",
                    fontsize=8,
                )
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(out / "e_phase.png", dpi=110)
    plt.close(fig)
    return True
