"""(g) Width and batch size, each from its own gradient-descent minimum."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from jumpsim import stats

import suite
from .fmt import NotRun, fmt_p, fmt_rate, fmt_sched, not_run
from analysis import configs_with_runs, down_rate, n_div, passage

NAME = "g_width_batch"


class GRow(NamedTuple):
    width: int
    batch: object
    start: int  # start rank
    diverged: int
    passage: pd.Series | None  # first passage below the start rank
    rate: tuple  # down_rate out of the start rank


class GFacts(NamedTuple):
    lr: object  # the schedule value of train.lr
    seeds: list
    steps: int
    table: list[GRow]
    rows: pd.DataFrame  # width, batch, start_rank, count, exposure, rate_low, rate_high, k, n, p_low, p_high


def compute(out: Path) -> GFacts | NotRun:
    data = suite.load(out, NAME)
    if data is None or data["runs"].empty:
        return not_run(NAME, data)
    r, pas, ev, exps = data["runs"], data["passages"], data["events"], data["experiments"]
    c0, T = json.loads(exps.config.iloc[0]), int(r.horizon.max())
    exp_, counts = stats.exposure(r, ev)
    fp = stats.first_passage(r, pas)
    seeds = sorted(r.groupby("config_id", observed=True).size().unique())
    table, rows = [], []
    for cid, c, rr in configs_with_runs(data):
        start = int(rr.initial_rank.iloc[0])
        f = passage(fp, cid, start - 1)
        cnt, e, lo, hi = down_rate(exp_, counts, cid, start)
        table.append(GRow(c["model"]["width"], c["train"]["batch"], start, n_div(rr), f, (cnt, e, lo, hi)))
        rows.append(
            {
                "width": c["model"]["width"],
                "batch": c["train"]["batch"],
                "start_rank": start,
                "count": cnt,
                "exposure": e,
                "rate_low": lo,
                "rate_high": hi,
                "k": int(f.k) if f is not None else 0,
                "n": len(rr),
                "p_low": float(f.p_low) if f is not None else float("nan"),
                "p_high": float(f.p_high) if f is not None else float("nan"),
            }
        )
    g = pd.DataFrame(rows)
    g[["width", "batch", "start_rank", "count", "exposure", "rate_low", "rate_high"]].to_parquet(
        out / "g_width_batch.parquet"
    )
    return GFacts(c0["train"]["lr"], seeds, T, table, g)


def render(g: GFacts | NotRun) -> list[str]:
    if isinstance(g, NotRun):
        return ["## (g) Width and batch size", ""] + g.lines()
    lines = [
        (
            f"## (g) Width and batch size (eta {fmt_sched(g.lr)}, {'/'.join(map(str, g.seeds))} seeds, "
            f"{g.steps // 1000}k steps, each from its own GD minimum)"
        ),
        "",
        "| width | batch | start rank | diverged | P(rank below start) | down-rate out of the start rank |",
        "|---|---|---|---|---|---|",
    ]
    for q in g.table:
        lines.append(
            f"| {q.width} | {q.batch} | {q.start} | {q.diverged} | "
            f"{fmt_p(q.passage) if q.passage is not None else '-'} | {fmt_rate(*q.rate)} |"
        )
    return lines + [""]
