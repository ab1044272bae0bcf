"""(r) Sampling with and without replacement from the same rank-3 minimum: escape probability and rate."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from jumpsim import stats

import suite
from .fmt import NotRun, fmt_rate, not_run, pct
from analysis import escape_rows

NAME = "r_sampling"


class RFacts(NamedTuple):
    rows: pd.DataFrame  # analysis.escape_rows per (sampling, eta) (r_sampling.parquet)
    ratios: list[dict]  # per eta: stats.rate_ratio without / with replacement, with the counts
    gpu: pd.DataFrame  # the escape curve of (j) at ridge 1e-3 at the same learning rates (with replacement)


def compute(out: Path, cv: pd.DataFrame) -> RFacts | NotRun:
    data = suite.load(out, NAME)
    if data is None or data["runs"].empty:
        return not_run(NAME, data)
    rows = pd.DataFrame(escape_rows(data)).sort_values(["sampling", "eta"]).reset_index(drop=True)
    rows.to_parquet(out / "r_sampling.parquet")
    wr, wor = (rows[rows.sampling == s].set_index("eta") for s in ("with_replacement", "without_replacement"))
    ratios = []
    for eta in sorted(set(wr.index) & set(wor.index)):
        a, b = wor.loc[eta], wr.loc[eta]
        rr = stats.rate_ratio(int(a["count"]), a.exposure, int(b["count"]), b.exposure)
        ratios.append({"eta": eta, **rr, "without": int(a["count"]), "with": int(b["count"])})
    gpu = cv[(cv.ridge == 1e-3) & cv.eta.isin(rows.eta)] if len(cv) else pd.DataFrame()
    return RFacts(rows, ratios, gpu)


def render(r: RFacts | NotRun) -> list[str]:
    head = ["## (r) Sampling with and without replacement", ""]
    if isinstance(r, NotRun):
        return head + r.lines()
    q0 = r.rows.iloc[0]
    lines = head + [
        "The paper's SGD draws each step's entry uniformly with replacement; `train.sampling = "
        '"without_replacement"` runs epochs, each a fresh keyed order of the 80 observed entries (batch 1). Both '
        f"arms from the rank-3 minimum (`rank3_start.npz`, ridge 1e-3), {int(q0.horizon):,} steps, the same "
        f"{int(q0.seeds):,} seed ids per learning rate, on the CPU (`r_sampling.toml`).",
        "",
        "| eta | sampling | diverged | P(rank <= 2 within T) | escape rate k: first escapes / steps before them |",
        "|---|---|---|---|---|",
    ]
    for q in r.rows.sort_values(["eta", "sampling"]).itertuples():
        lines.append(
            f"| {q.eta:g} | {q.sampling.replace('_', ' ')} | {pct(q.diverged / q.seeds)} | {q.reached:,}/{q.seeds:,} "
            f"= {q.p:.3g} [{q.p_low:.3g}, {q.p_high:.3g}] | {fmt_rate(q.count, q.exposure, q.rate_low, q.rate_high)} |"
        )
    lines += [
        "",
        "Rate without replacement over the rate with replacement (exact conditional interval; the GPU's "
        "rate of (j) with replacement at the same eta beside it):",
        "",
    ]
    lines += [
        "| eta | escapes without / with | ratio [95 %] | p (equal rates) | (j) GPU rate with replacement |",
        "|---|---|---|---|---|",
    ]
    gpu = r.gpu.set_index("eta") if len(r.gpu) else None
    for x in r.ratios:
        g = "-" if gpu is None or x["eta"] not in gpu.index else f"{gpu.loc[x['eta']].rate:.3g}"
        lines.append(
            f"| {x['eta']:g} | {x['without']} / {x['with']} | {x['ratio']:.3g} [{x['low']:.3g}, {x['high']:.3g}] | "
            f"{x['p_value']:.2g} | {g} |"
        )
    sig = [x for x in r.ratios if x["high"] < 1]
    if sig:
        lo = min(1 / x["high"] for x in sig)
        lines += [
            "",
            f"Without replacement SGD escapes less often at {len(sig)} of {len(r.ratios)} learning rates "
            f"(intervals below 1; at least {lo:.2g}x less): an epoch visits every entry once, so its steps sum "
            "to a gradient step up to O(eta^2) (tests/test_dynamics.py): less noise over any 80 steps.",
        ]
    return lines + [""]
