"""(d) Depth 3 vs depth 4: SGD from random starts at each depth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from jumpsim import stats

import suite
from .fmt import NotRun, fmt_hist, fmt_rate, not_run
from analysis import down_rate

NAME = "d_depth"


class DFacts(NamedTuple):
    lr: float
    steps: int
    hists: list[tuple[int, int, pd.Series]]  # (depth, seeds, final ranks of the non-diverged)
    levels: dict  # level -> {k3, n3, k4, n4, diff, logrank}: P(rank <= level), depth 4 against depth 3
    start: int | None  # the start rank of the log-rank tests
    downs: list[tuple[int, int, tuple]]  # (depth, rank, down_rate after the burn-in)
    down3: dict  # depth -> down_rate out of rank 3 after the burn-in


def compute(out: Path) -> DFacts | NotRun:
    data = suite.load(out, NAME)
    if data is None or data["runs"].empty:
        return not_run(NAME, data)
    r, pas, ev, exps = data["runs"], data["passages"], data["events"], data["experiments"]
    cfgs = {cid: json.loads(c) for cid, c in zip(exps.config_id, exps.config)}
    ids = {c["model"]["depth"]: cid for cid, c in cfgs.items() if (r.config_id == cid).any()}
    c0, T = next(iter(cfgs.values())), int(r.horizon.max())
    fp = stats.first_passage(r, pas)
    hists = []
    for d, cid in sorted(ids.items()):
        rr = r[r.config_id == cid]
        hists.append((d, len(rr), rr[rr.status == "ok"].final_rank.value_counts().sort_index()))
    levels, downs, down3, start = {}, [], {}, None
    if 3 in ids and 4 in ids:
        start = int(r[r.config_id == ids[3]].initial_rank.mode().iloc[0])
        levels = _levels(r, pas, ev, fp, ids, start)
        burn = T // 2
        exp_, counts = stats.exposure(r, ev, burn_in=burn)
        for d in (3, 4):
            for rk in (4, 3):
                q = down_rate(exp_, counts, ids[d], rk)
                downs.append((d, rk, q))
                if rk == 3:
                    down3[d] = q
        rows = [
            {"level": lv, **{k: x[k] for k in ("k3", "n3", "k4", "n4")}}
            | {k: x["diff"][k] for k in ("difference", "low", "high")}
            | {"logrank_p": x["logrank"]}
            for lv, x in levels.items()
        ]
        pd.DataFrame(rows).to_parquet(out / "d_depth.parquet")
    return DFacts(c0["train"]["lr"], T, hists, levels, start, downs, down3)


def _levels(r, pas, ev, fp, ids: dict, start: int) -> dict:
    """Per level 3, 2: P(rank <= level within T) at depth 4 and 3, their difference and the log-rank test of
    the time to it (where both depths have seeds starting at ``start``)."""
    levels = {}
    for level in (3, 2):

        def pk(cid, level=level):
            g = fp[(fp.config_id == cid) & (fp.level == level)]
            return int(g.k.sum()), int(g.n.sum())

        (k3, n3), (k4, n4) = pk(ids[3]), pk(ids[4])
        diff = stats.proportion_difference(k4, n4, k3, n3)
        lp = None
        if all((r[r.config_id == ids[d]].initial_rank == start).any() for d in (3, 4)):
            lp = stats.compare(r, pas, ev, ids[4], ids[3], start, level)["logrank_p_value"]
        levels[level] = {"k3": k3, "n3": n3, "k4": k4, "n4": n4, "diff": diff, "logrank": lp}
    return levels


def render(d: DFacts | NotRun) -> list[str]:
    if isinstance(d, NotRun):
        return ["## (d) Depth 3 vs depth 4", ""] + d.lines()
    T = d.steps
    lines = [f"## (d) Depth 3 vs depth 4 (SGD from random starts, eta {d.lr:g}, {T // 1000}k steps)", ""]
    for depth, seeds, hist in d.hists:
        lines.append(f"- depth {depth}: {seeds} seeds, final ranks {fmt_hist(hist)}")
    for level, x in d.levels.items():
        diff = x["diff"]
        line = (
            f"- P(rank <= {level} within {T // 1000}k steps): depth 4 {x['k4']}/{x['n4']}, depth 3 "
            f"{x['k3']}/{x['n3']}; difference (4 - 3) {diff['difference']:+.3f} [{diff['low']:+.3f}, "
            f"{diff['high']:+.3f}]"
        )
        if x["logrank"] is not None:
            line += (
                f"; log-rank test of the time to rank <= {level} (seeds starting at rank {d.start}): "
                f"p = {x['logrank']:.3g}"
            )
        lines.append(line)
    for depth, rk, q in d.downs:
        if q[1]:
            lines.append(f"- depth {depth}: down-jumps out of rank {rk} after step {T // 2 // 1000}k: {fmt_rate(*q)}")
    return lines + [""]
