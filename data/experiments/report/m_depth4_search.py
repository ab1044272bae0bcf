"""(m) Depth 4: a search for a rank-overestimating gradient-descent minimum over problems."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

import suite
from .fmt import NotRun, fmt_hist, not_run
from analysis import gd_stops

NAME = "m_depth4_search"


class MFacts(NamedTuple):
    rows: pd.DataFrame  # one row per problem (m_depth4_search.parquet)
    own_stuck: int  # on the suite's own problem: starts that stop above r*, of own_runs
    own_runs: int


def compute(out: Path, base) -> MFacts | NotRun:
    """Per problem of m_depth4_search: final ranks, runs stuck above r*, at r*, still moving; and the suite's
    own problem (that of the base config ``base``)."""
    data = suite.load(out, NAME)
    if data is None or data["runs"].empty:
        return not_run(NAME, data)
    rows = []
    for cid, c, rr, fin, held in gd_stops(data):
        T = int(rr.horizon.max())
        rows.append(
            {
                "observed": c["problem"]["observed"],
                "problem_seed": c["problem"]["seed"],
                "ridge": c["train"]["ridge"],
                "runs": len(rr),
                "final_ranks": fmt_hist(fin.final_rank.value_counts().sort_index()),
                "stuck_above": int((held.final_rank > c["problem"]["rank"]).sum()),
                "at_true_rank": int((held.final_rank == c["problem"]["rank"]).sum()),
                "still_moving": len(fin) - len(held),
                "steps": T,
            }
        )
    m = pd.DataFrame(rows)
    own = m[(m.observed == base.problem.observed) & (m.problem_seed == base.problem.seed)]
    m.to_parquet(out / "m_depth4_search.parquet")
    return MFacts(m, int(own.stuck_above.sum()), int(own.runs.sum()))


def render(mf: MFacts | NotRun) -> list[str]:
    head = ["## (m) Depth 4: is there a rank-overestimating minimum?", ""]
    if isinstance(mf, NotRun):
        return head + mf.lines()
    m = mf.rows
    found = m[m.stuck_above > 0]
    lines = head + [
        f"Full-batch gradient descent at depth 4 ({int(m.steps.iloc[0]):,} steps, lr 0.05, ridge 1e-3, 32 gaussian "
        "starts per problem) over the observed fraction and the problem's seed (`m_depth4_search.toml`). "
        '"Stuck above" '
        "counts runs that end above r* = 2 with no rank change over the second half.",
        "",
        "| observed | problem seed | final ranks | stuck above r* | at r* | rank still changing |",
        "|---|---|---|---|---|---|",
    ]
    for q in m.itertuples():
        lines.append(
            f"| {q.observed:g} | {q.problem_seed} | {q.final_ranks} | {q.stuck_above} | {q.at_true_rank} | "
            f"{q.still_moving} |"
        )
    lines += [
        "",
        (
            f"Depth-4 minima above the true rank exist on {len(found)} of {len(m)} problems searched; on the suite's "
            f"own problem {mf.own_stuck} of {mf.own_runs} starts stop at rank 3, so section (p) "
            "runs the depth-4 escape curve from one of them (`rank3_start_depth4.npz`, the start of model.seed)."
            if len(found)
            else f"No depth-4 rank-overestimating minimum in {len(m)} problems x 32 starts: on these problems gradient "
            "descent at depth 4 ends at the true rank (or is still moving), so the depth-4 escape curve has no "
            "start, and the depth question is answered by (d): depth 4 removes the stuck minimum here."
        ),
        "",
    ]
    return lines
