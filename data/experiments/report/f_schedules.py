"""(f) Schedules of the learning rate and the ridge from the same rank-3 minimum."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from jumpsim import stats

import suite
from .fmt import NotRun, fmt_hist, fmt_p, not_run
from analysis import configs_with_runs, n_div, passage

NAME = "f_schedules"


class FRow(NamedTuple):
    lr: str  # the schedules as JSON
    ridge: str
    diverged: int
    hist: pd.Series  # final ranks of the non-diverged
    passage: pd.Series  # first passage 3 -> <= 2
    median: float | None  # median steps to rank <= 2 (None: no row; NaN: not reached by half)


class FFacts(NamedTuple):
    seeds: list  # the seed counts of the configs
    steps: int
    table: list[FRow]
    rows: pd.DataFrame  # config_id, lr, ridge, k, n, p, p_low, p_high, diverged


def compute(out: Path) -> FFacts | NotRun:
    data = suite.load(out, NAME)
    if data is None or data["runs"].empty:
        return not_run(NAME, data)
    r, pas = data["runs"], data["passages"]
    T = int(r.horizon.max())
    fp = stats.first_passage(r, pas)
    md = stats.median_passage(r, pas)
    seeds = sorted(r.groupby("config_id", observed=True).size().unique())
    table, rows = [], []
    for cid, c, rr in configs_with_runs(data):
        f = passage(fp, cid, 2, 3)
        m = md[(md.config_id == cid) & (md.level == 2)]
        hist = rr[rr.status == "ok"].final_rank.value_counts().sort_index()
        lr, rd = json.dumps(c["train"]["lr"]), json.dumps(c["train"]["ridge"])
        table.append(FRow(lr, rd, n_div(rr), hist, f, m["median"].iloc[0] if len(m) else None))
        rows.append(
            {
                "config_id": cid,
                "lr": lr,
                "ridge": rd,
                "k": int(f.k),
                "n": int(f.n),
                "p": f.p,
                "p_low": f.p_low,
                "p_high": f.p_high,
                "diverged": n_div(rr),
            }
        )
    fs = pd.DataFrame(rows)
    fs[["config_id", "lr", "ridge", "p", "p_low", "p_high"]].to_parquet(out / "f_schedules.parquet")
    return FFacts(seeds, T, table, fs)


def render(f: FFacts | NotRun) -> list[str]:
    if isinstance(f, NotRun):
        return ["## (f) Schedules from the same rank-3 minimum", ""] + f.lines()
    lines = [
        f"## (f) Schedules from the same rank-3 minimum ({'/'.join(map(str, f.seeds))} seeds, {f.steps // 1000}k "
        "steps)",
        "",
        "| lr | ridge | diverged | final ranks (non-diverged) | P(rank <= 2) | median steps to rank <= 2 |",
        "|---|---|---|---|---|---|",
    ]
    for q in f.table:
        med = "not reached by half" if q.median is None or np.isnan(q.median) else f"{q.median:,.0f}"
        lines.append(f"| {q.lr} | {q.ridge} | {q.diverged} | {fmt_hist(q.hist)} | {fmt_p(q.passage)} | {med} |")
    return lines + [""]
