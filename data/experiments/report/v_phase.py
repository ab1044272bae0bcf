"""(v) Where SGD leaves a stuck minimum: gradient descent's final rank and SGD's escapes over (lambda, eta)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from jumpsim import stats

import suite
from .fmt import NotRun, fmt_hist, not_run, pyplot
from analysis import configs_with_runs, gd_stops, passage

NAME, GD = "v_phase", "v_gd"
SMALL_ETA = 0.08  # "small eta": at most this


class VFacts(NamedTuple):
    cells: pd.DataFrame  # per (ridge, lr): start rank, P(rank below the start within T), diverged (v_phase.parquet)
    gd: pd.DataFrame  # per ridge: GD from random starts, final ranks and runs stopped above r* (v_gd)
    steps: int
    small: pd.DataFrame  # cells with eta <= SMALL_ETA whose start is above r* and where a seed escaped
    figure: bool


def compute(out: Path) -> VFacts | NotRun:
    data = suite.load(out, NAME)
    if data is None or data["runs"].empty:
        return not_run(NAME, data)
    r, pas = data["runs"], data["passages"]
    fp = stats.first_passage(r, pas)
    rows = []
    for cid, c, rr in configs_with_runs(data):
        start = int(rr.initial_rank.iloc[0])
        f = passage(fp, cid, start - 1) if start > 0 else None
        k = 0 if f is None else int(f.k)
        lo, hi = stats.proportion_ci(k, len(rr))
        rows.append(
            {
                "ridge": c["train"]["ridge"],
                "lr": c["train"]["lr"],
                "start_rank": start,
                "seeds": len(rr),
                "escaped": k,
                "p": k / len(rr),
                "p_low": lo,
                "p_high": hi,
                "diverged": float((rr.status == "diverged").mean()),
            }
        )
    cells = pd.DataFrame(rows).sort_values(["ridge", "lr"]).reset_index(drop=True)
    cells.to_parquet(out / "v_phase.parquet")
    gd = _gd(out)
    r_star = suite.base_config().problem.rank
    small = cells[(cells.lr <= SMALL_ETA) & (cells.start_rank > r_star) & (cells.escaped > 0)]
    return VFacts(cells, gd, int(r.horizon.max()), small, figure(out, cells))


def _gd(out: Path) -> pd.DataFrame:
    data = suite.load(out, GD)
    if data is None or data["runs"].empty:
        return pd.DataFrame()
    rows = []
    for _, c, rr, fin, held in gd_stops(data):
        rows.append(
            {
                "ridge": c["train"]["ridge"],
                "runs": len(rr),
                "final": fmt_hist(fin.final_rank.value_counts().sort_index()),
                "stuck": int((held.final_rank > c["problem"]["rank"]).sum()),
                "moving": len(fin) - len(held),
            }
        )
    return pd.DataFrame(rows).sort_values("ridge")


def render(v: VFacts | NotRun) -> list[str]:
    head = ["## (v) Where SGD leaves a stuck minimum: ridge against learning rate", ""]
    if isinstance(v, NotRun):
        return head + v.lines()
    ridges, lrs = sorted(v.cells.ridge.unique()), sorted(v.cells.lr.unique())
    lines = head + [
        "Each cell starts from the gradient-descent minimum of its ridge (400k full-batch steps from the gaussian "
        f"start of model.seed; its rank in brackets) and runs SGD (batch 1) for {v.steps:,} steps, "
        f"{int(v.cells.seeds.iloc[0])} seeds (`v_phase.toml`): P(rank below the start within T) [95 %] / fraction "
        "diverged. Where gradient descent reaches r* = 2 (start r2), a fall below the start is a fall below the true "
        "rank.",
        "",
        "| eta \\ lambda | " + " | ".join(f"{x:g}" for x in ridges) + " |",
        "|---" * (len(ridges) + 1) + "|",
    ]
    for lr in lrs:
        cells = []
        for rd in ridges:
            q = v.cells[(v.cells.lr == lr) & (v.cells.ridge == rd)]
            if q.empty:
                cells.append("-")
                continue
            q = q.iloc[0]
            cells.append(f"{q.p:.3f} [{q.p_low:.3f}, {q.p_high:.3f}] / {q.diverged:.2f} (r{int(q.start_rank)})")
        lines.append(f"| {lr:g} | " + " | ".join(cells) + " |")
    if len(v.gd):
        lines += [
            "",
            "Gradient descent from 16 gaussian starts per ridge (400k steps, `v_gd.toml`): does it stop above r* = 2?",
            "",
            "| lambda | final ranks | stopped above r* | rank still changing |",
            "|---|---|---|---|",
        ]
        for q in v.gd.itertuples():
            lines.append(f"| {q.ridge:g} | {q.final} | {q.stuck}/{q.runs} | {q.moving} |")
    above = v.cells[v.cells.start_rank > 2]
    lines += [
        "",
        (
            f"At eta <= {SMALL_ETA:g}, SGD left a minimum above r* in {len(v.small)} cell(s)"
            + (
                ": "
                + ", ".join(f"lambda {q.ridge:g}, eta {q.lr:g} ({q.escaped}/{q.seeds})" for q in v.small.itertuples())
                if len(v.small)
                else f" (of {int((above.lr <= SMALL_ETA).sum())} with such a start; none escaped: each "
                f"cell's P is below its upper end, at most {above[above.lr <= SMALL_ETA].p_high.max():.3f})"
            )
            + "."
        ),
        "",
    ]
    return lines + (["![phase diagram](v_phase.png)", ""] if v.figure else [])


def figure(out: Path, cells: pd.DataFrame) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    ridges, lrs = sorted(cells.ridge.unique()), sorted(cells.lr.unique())
    grid = np.full((len(lrs), len(ridges)), np.nan)
    for q in cells.itertuples():
        grid[lrs.index(q.lr), ridges.index(q.ridge)] = q.p
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=max(0.05, np.nanmax(grid)))
    for q in cells.itertuples():
        ax.text(
            ridges.index(q.ridge),
            lrs.index(q.lr),
            f"r{q.start_rank}\n{q.p:.2f}",
            ha="center",
            va="center",
            fontsize=7,
            color="w",
        )
    ax.set_xticks(range(len(ridges)), [f"{x:g}" for x in ridges])
    ax.set_yticks(range(len(lrs)), [f"{x:g}" for x in lrs])
    ax.set_xlabel("ridge lambda")
    ax.set_ylabel("learning rate eta")
    fig.colorbar(im, label="P(rank below the start within T)")
    fig.tight_layout()
    fig.savefig(out / "v_phase.png", dpi=110)
    plt.close(fig)
    return True
