"""(a) Gradient descent gets stuck above the true rank: GD from random starts, and the committed start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

import suite
from .fmt import NotRun, fmt_hist, not_run

NAME = "a_gd_stuck"


class GdRuns(NamedTuple):
    n: int  # runs
    rstar: int  # the problem's rank
    above: int  # runs that ended above rstar
    hist: pd.Series  # final rank -> runs
    steps: int  # horizon T
    moved: int  # runs that still changed rank over the second half
    lr: float
    late_down: int  # events over the second half, by direction
    late_up: int
    late_steps: str  # their step range
    by_rank: pd.DataFrame  # median train / test MSE by final rank


class AFacts(NamedTuple):
    start: dict  # analysis.start_facts of rank3_start.npz
    model_seed: int
    gd: GdRuns | NotRun


def compute(out: Path, start: dict, base) -> AFacts:
    """The GD runs of a_gd_stuck (writes a_final_ranks.parquet), beside the start file's ``start`` facts."""
    data = suite.load(out, NAME)
    if data is None or data["runs"].empty:
        return AFacts(start, base.model.seed, not_run(NAME, data))
    r, ev = data["runs"], data["events"]
    cfg = json.loads(data["experiments"].config.iloc[0])
    rstar, T = cfg["problem"]["rank"], int(r.horizon.max())
    late = ev[ev.step > T // 2]
    hist = r.final_rank.value_counts().sort_index()
    steps = f"{int(late.step.min()):,}-{int(late.step.max()):,}" if len(late) else "-"
    by = r.groupby("final_rank").agg(train=("final_loss", "median"), test=("final_test_error", "median"))
    hist.rename("seeds").reset_index().to_parquet(out / "a_final_ranks.parquet")
    gd = GdRuns(
        n=len(r),
        rstar=rstar,
        above=int((r.final_rank > rstar).sum()),
        hist=hist,
        steps=T,
        moved=late.seed.nunique(),
        lr=cfg["train"]["lr"],
        late_down=int((late.direction == "down").sum()),
        late_up=int((late.direction == "up").sum()),
        late_steps=steps,
        by_rank=by,
    )
    return AFacts(start, base.model.seed, gd)


def render(a: AFacts) -> list[str]:
    lines = ["## (a) Gradient descent gets stuck above the true rank", ""]
    sf = a.start
    sv = sf["singular_values"]
    start_line = (
        f"The start used below (`rank3_start.npz`, GD from model.seed {a.model_seed}; numpy float64 "
        f"from the file): rank {sf['rank']} (threshold {sf['threshold']:g}), residual gradient "
        f"{sf['grad_norm']:.1e}, singular values {np.round(sv[: sf['rank'] + 1], 3).tolist()}, train / test "
        f"MSE {sf['train_mse']:.2e} / {sf['test_mse']:.3f}."
    )
    g = a.gd
    if isinstance(g, NotRun):
        return lines + g.lines() + [start_line, ""]
    lines.append(
        f"Full-batch GD (eta {g.lr:g}, {g.steps:,} steps) from {g.n} random gaussian starts: final ranks "
        f"{fmt_hist(g.hist, 'rank ')}. {g.n - g.moved} of {g.n} runs kept their rank over the second half of the "
        "run; "
        f"{g.moved} still changed rank there ({g.late_down} down and "
        f"{g.late_up} up events, at steps {g.late_steps})."
    )
    lines.append(
        "Median train / test MSE by final rank: "
        + "; ".join(f"rank {k}: {v.train:.2e} / {v.test:.3f}" for k, v in g.by_rank.iterrows())
        + "."
    )
    return lines + [start_line, ""]
