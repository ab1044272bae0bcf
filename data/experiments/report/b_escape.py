"""(b) SGD escapes from the rank-3 minimum: constant learning rates from the start file."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from jumpsim import stats

import suite
from .fmt import NotRun, fmt_p, fmt_rate, fmt_sched, not_run
from analysis import configs_with_runs, down_rate, n_div, passage

NAME = "b_escape"


class BRow(NamedTuple):
    lr: object  # the schedule value of train.lr
    seeds: int
    diverged: int
    passage: pd.Series  # first passage 3 -> <= 2
    count: int  # down-jumps out of rank 3
    exposure: int  # steps at rank 3
    low: float
    high: float


class BFacts(NamedTuple):
    table: list[BRow]  # in the dataset's config order
    rows: pd.DataFrame  # the same, sorted by lr (b_escape.parquet)
    steps: int


def compute(out: Path) -> BFacts | NotRun:
    data = suite.load(out, NAME)
    if data is None or data["runs"].empty:
        return not_run(NAME, data)
    r, pas, ev = data["runs"], data["passages"], data["events"]
    T = int(r.horizon.max())
    fp = stats.first_passage(r, pas)
    exp_, counts = stats.exposure(r, ev)
    table, rows = [], []
    for cid, c, rr in configs_with_runs(data):
        f = passage(fp, cid, 2, 3)
        cnt, e, lo, hi = down_rate(exp_, counts, cid, 3)
        table.append(BRow(c["train"]["lr"], len(rr), n_div(rr), f, cnt, e, lo, hi))
        rows.append(
            {
                "config_id": cid,
                "setting": f"lr={c['train']['lr']}",
                "lr": c["train"]["lr"],
                "seeds": len(rr),
                "k": int(f.k),
                "p": f.p,
                "p_low": f.p_low,
                "p_high": f.p_high,
                "diverged": n_div(rr),
                "count": cnt,
                "exposure": e,
                "rate_low": lo,
                "rate_high": hi,
            }
        )
    b = pd.DataFrame(rows).sort_values("lr")
    b.to_parquet(out / "b_escape.parquet")
    return BFacts(table, b, T)


def render(b: BFacts | NotRun) -> list[str]:
    lines = ["## (b) SGD escapes from the rank-3 minimum", ""]
    if isinstance(b, NotRun):
        return lines + b.lines()
    lines += [
        (
            f"| eta | seeds | diverged | P(rank <= 2 within {b.steps // 1000}k steps) | down-jumps out of rank 3 / "
            "steps at rank 3 |"
        ),
        "|---|---|---|---|---|",
    ]
    for q in b.table:
        lines.append(
            f"| {fmt_sched(q.lr)} | {q.seeds} | {q.diverged} | {fmt_p(q.passage)} | "
            f"{fmt_rate(q.count, q.exposure, q.low, q.high)} |"
        )
    return lines + [""]
