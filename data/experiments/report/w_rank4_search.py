"""(w) Rank against time: a search for a rank-4 minimum by gradient descent, and SGD from the one it found
(x_rank_time): the jumps 4 -> 3 and 3 -> 2, their rates per step at the rank they leave."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from jumpsim import stats

import analysis
import suite
from .fmt import NotRun, fmt_hist, fmt_rate, not_run, pct
from analysis import configs_with_runs, gd_stops, passage

NAME, RUNS = "w_rank4_search", "x_rank_time"


class WFacts(NamedTuple):
    rows: pd.DataFrame  # per (ridge, init_scale): final ranks, runs that stop at rank >= 4 (w_rank4_search.parquet)
    found: int  # runs that stopped at rank 4 or more, over all settings
    runs: int
    steps: int
    start: dict | None  # rank4_start.npz: analysis.start_facts
    time: pd.DataFrame  # per eta of x_rank_time: P(rank <= 3), P(rank <= 2) within T, rates 4 -> 3, 3 -> 2, 3 -> 4
    curve: pd.DataFrame  # (j)'s escape curve at the same ridge (first escapes from the rank-3 minimum)


def compute(out: Path, cv: pd.DataFrame) -> WFacts | NotRun:
    data = suite.load(out, NAME)
    if data is None or data["runs"].empty:
        return not_run(NAME, data)
    rows = []
    for _, c, rr, fin, held in gd_stops(data):
        rows.append(
            {
                "ridge": c["train"]["ridge"],
                "init_scale": c["model"]["init_scale"],
                "runs": len(rr),
                "final": fmt_hist(fin.final_rank.value_counts().sort_index()),
                "rank4": int((held.final_rank >= 4).sum()),
                "moving": len(fin) - len(held),
                "diverged": len(rr) - len(fin),
            }
        )
    w = pd.DataFrame(rows).sort_values(["ridge", "init_scale"])
    w.to_parquet(out / "w_rank4_search.parquet")
    start = analysis.start_facts(suite.RANK4, suite.base_config(), suite.RANK4_RIDGE) if suite.RANK4.exists() else None
    curve = cv[cv.ridge == suite.RANK4_RIDGE] if len(cv) else pd.DataFrame()
    return WFacts(w, int(w.rank4.sum()), int(w.runs.sum()), int(data["runs"].horizon.max()), start, _time(out), curve)


def _time(out: Path) -> pd.DataFrame:
    data = suite.load(out, RUNS)
    if data is None or data["runs"].empty:
        return pd.DataFrame()
    r = data["runs"]
    fp = stats.first_passage(r, data["passages"])
    exp_, counts = stats.exposure(r, data["events"])
    rows = []
    for cid, c, rr in configs_with_runs(data):
        row = {
            "eta": c["train"]["lr"],
            "seeds": len(rr),
            "horizon": int(rr.horizon.max()),
            "diverged": int((rr.status == "diverged").sum()),
        }
        for lvl in (3, 2):
            f = passage(fp, cid, lvl, 4)
            row[f"p{lvl}"] = (
                (0, 0.0, 0.0, 0.0) if f is None else (int(f.k), float(f.p), float(f.p_low), float(f.p_high))
            )
        for a, b in ((4, 3), (3, 2), (3, 4)):
            e = int(exp_[(exp_.config_id == cid) & (exp_["rank"] == a)].exposure_steps.sum())
            sel = (counts.config_id == cid) & (counts.rank_before == a) & (counts.rank_after == b)
            n = int(counts[sel]["count"].sum())
            row[f"r{a}{b}"] = (n, e, *stats.poisson_rate_ci(n, e))
        (c43, e43), (c32, e32) = row["r43"][:2], row["r32"][:2]
        row["ratio"] = stats.rate_ratio(c32, e32, c43, e43) if e32 > 0 and e43 > 0 else None
        rows.append(row)
    return pd.DataFrame(rows).sort_values("eta")


def render(w: WFacts | NotRun) -> list[str]:
    head = ["## (w) Rank against time: a rank-4 minimum, and SGD from it", ""]
    if isinstance(w, NotRun):
        return head + w.lines()
    lines = head + [
        "The paper's first open question (the times 4 -> 3 and 3 -> 2, and whether a step's rate depends on the rank "
        "it leaves) needs a minimum of rank 4 on this problem. Full-batch gradient descent from 16 gaussian starts "
        f"per setting, {w.steps:,} steps, smaller ridges and larger starts than (a) (`w_rank4_search.toml`); a run "
        "stops at a rank when it ends there with no rank change over the second half.",
        "",
        "| lambda | init scale | final ranks | stopped at rank >= 4 | rank still changing | diverged |",
        "|---|---|---|---|---|---|",
    ]
    for q in w.rows.itertuples():
        lines.append(f"| {q.ridge:g} | {q.init_scale:g} | {q.final} | {q.rank4}/{q.runs} | {q.moving} | {q.diverged} |")
    lines += [
        "",
        (
            f"{w.found} of {w.runs} runs stopped at rank 4 or more"
            + (
                ": the search found starts for a rank-against-time run."
                if w.found
                else ": on this problem (20 x 20, rank 2, 20 % observed) gradient descent finds no rank-4 minimum "
                "from these starts, so the question cannot be asked here; a problem of higher true rank (or more "
                "layers) would be the place to look."
            )
        ),
        "",
    ]
    if w.start is not None:
        sv = ", ".join(f"{x:.3g}" for x in w.start["singular_values"][:5])
        lines += [
            f"The start (`rank4_start.npz`, `run.py --make-rank4-start`): seed {suite.RANK4_SEED} of the search at "
            f"lambda {suite.RANK4_RIDGE:g}, gradient descent continued in float64 to a critical point of rank "
            f"{w.start['rank']} (residual gradient {w.start['grad_norm']:.1e}; singular values {sv}).",
            "",
        ]
    if len(w.time):
        lines += [
            f"SGD from it at lambda {suite.RANK4_RIDGE:g}, {int(w.time.horizon.iloc[0]):,} steps, "
            f"{int(w.time.seeds.iloc[0]):,} seeds per learning rate (`x_rank_time.toml`). Rates per step at the rank a "
            "jump leaves (every jump over the steps spent at that rank, exact Poisson; the chain estimate), the ratio "
            "3 -> 2 over 4 -> 3 (exact conditional interval), and beside them (j)'s escape rate from the rank-3 "
            "minimum of the same ridge:",
            "",
            "| eta | diverged | P(rank <= 3 within T) | P(rank <= 2 within T) | 4 -> 3 | 3 -> 2 | 3 -> 4 | "
            "(3 -> 2) / (4 -> 3) [95 %] | (j): from the rank-3 minimum |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        cv = w.curve.set_index("eta") if len(w.curve) else None
        for q in w.time.itertuples():
            p = [f"{k:,}/{q.seeds:,} = {x:.3g} [{lo:.3g}, {hi:.3g}]" for k, x, lo, hi in (q.p3, q.p2)]
            r = [fmt_rate(*x) for x in (q.r43, q.r32, q.r34)]
            ratio = "-" if q.ratio is None else f"{q.ratio['ratio']:.3g} [{q.ratio['low']:.3g}, {q.ratio['high']:.3g}]"
            j = "-" if cv is None or q.eta not in cv.index else f"{cv.loc[q.eta].rate:.3g}"
            lines.append(
                f"| {q.eta:g} | {pct(q.diverged / q.seeds)} | {p[0]} | {p[1]} | {r[0]} | {r[1]} | {r[2]} | "
                f"{ratio} | {j} |"
            )
        lines += [""]
    return lines
