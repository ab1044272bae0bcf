"""(l) Splitting below brute force's reach: TAMS at small eta against the GPU's brute force (part of (j))."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

import suite
from .fmt import NotRun
from analysis import log_rel_error, overlap, splitting_rows

NAMES = ("l_splitting_low", "l_splitting_layers")


class LRow(NamedTuple):
    q: object  # the estimate (a row of LFacts.rows)
    bf: pd.Series | None  # the escape curve's brute force at the same eta (ridge 1e-3)
    fit: tuple | None  # the Arrhenius fit's P = 1 - exp(-k T) there, with its interval
    agree: str  # "yes", "NO", "-" (no brute force)
    rel: float  # the relative error the estimate's interval admits
    ratio: float  # brute force's steps for that error over splitting's


class LFacts(NamedTuple):
    rows: pd.DataFrame  # one row per estimate, by eta and score (l_splitting_low.parquet)
    table: list[LRow]


def compute(out: Path, cv: pd.DataFrame, fits: dict) -> LFacts | NotRun:
    """The TAMS estimates of l_splitting_*, each beside the escape curve ``cv`` and its fit at ridge 1e-3
    (``fits``: analysis.curve_fits) at the same eta (writes l_splitting_low.parquet)."""
    rows = []
    for name in NAMES:
        data = suite.load(out, name)
        if data is None or data["rare"].empty:
            continue
        sp = splitting_rows(data)
        cfgs = {cid: json.loads(c) for cid, c in zip(data["experiments"].config_id, data["experiments"].config)}
        for s_ in sp.itertuples():
            c = cfgs[s_.config_id]
            rows.append(
                {
                    "eta": float(c["train"]["lr"]),
                    "score": c["rare"]["score"],
                    "p": s_.p,
                    "p_low": s_.p_low,
                    "p_high": s_.p_high,
                    "p_rel_se": s_.p_rel_se,
                    "replicas": s_.replicas,
                    "particles": s_.particles,
                    "extinct": s_.extinct,
                    "seed_steps": s_.seed_steps,
                    "horizon": int(c["train"]["steps"]),
                }
            )
    if not rows:
        return NotRun(NAMES[0])
    sl = pd.DataFrame(rows).sort_values(["eta", "score"])
    fit = fits.get(1e-3, {}).get("fit")
    bf = cv[cv.ridge == 1e-3].set_index("eta")
    table, agree_all = [], []
    for q in sl.itertuples():
        b = bf.loc[q.eta] if q.eta in bf.index else None
        pred = None
        if fit is not None:
            lo, hi = fit["log_k_interval"](1 / q.eta)
            pk = lambda lk: -np.expm1(-np.exp(lk) * q.horizon)  # noqa: E731
            pred = (pk(fit["log_k"](1 / q.eta)), pk(lo), pk(hi))
        agree = "-" if b is None else ("yes" if overlap((q.p_low, q.p_high), (b.p_low, b.p_high)) else "NO")
        if b is not None:
            agree_all.append(agree == "yes")
        rel = log_rel_error(q.p_low, q.p_high)
        ratio = (1 - q.p) / (q.p * rel * rel) * q.horizon / q.seed_steps if q.p > 0 else float("nan")
        table.append(LRow(q, b, pred, agree, rel, ratio))
    sl["agree_all"] = all(agree_all) if agree_all else None
    sl.to_parquet(out / "l_splitting_low.parquet")
    return LFacts(sl, table)


def render(lf: LFacts | NotRun) -> list[str]:
    head = ["### (l) Splitting below brute force's reach, against the GPU's brute force", ""]
    if isinstance(lf, NotRun):
        return head + lf.lines()
    lines = head + [
        "Fixed-horizon TAMS from the rank-3 minimum at ridge 1e-3 (CPU, `l_splitting_*.toml`), the brute force of the "
        "table above at the same eta, and the Arrhenius fit's prediction P = 1 - exp(-k T) (divergence ignored; it is "
        "below 1 % there). The last column is the SGD steps brute force would need for the same relative error as "
        "splitting achieved (the one its 95 % interval admits, half its log width / 1.96), (1 - p) / (p rel^2) x T, "
        "over the steps splitting used.",
        "",
        "| eta | estimator | P(rank <= 2 within T) | SGD steps | agrees with brute force | brute force / splitting "
        "steps "
        "for this error |",
        "|---|---|---|---|---|---|",
    ]
    for x in lf.table:
        q, b = x.q, x.bf
        if b is not None and not any(r.startswith(f"| {q.eta:g} | brute") for r in lines):
            lines.append(
                f"| {q.eta:g} | brute force, {b.seeds:,} seeds | {b.reached:,}/{b.seeds:,} = {b.p:.3g} [{b.p_low:.3g}, "
                f"{b.p_high:.3g}] | {b.seed_steps:,} | - | - |"
            )
        if x.fit is not None and not any(r.startswith(f"| {q.eta:g} | Arrhenius") for r in lines):
            lines.append(
                f"| {q.eta:g} | Arrhenius fit (ridge 1e-3) | {x.fit[0]:.3g} [{x.fit[1]:.3g}, {x.fit[2]:.3g}] | - | - "
                "| - |"
            )
        ratio = (
            "- (the estimate is off)"
            if x.agree == "NO"
            else "- (its interval spans more than a decade)"
            if x.rel > 0.6
            else f"{x.ratio:.3g}"
            if x.agree == "yes"
            else "-"
        )
        p_txt = f"{q.p:.3g} [{q.p_low:.3g}, {q.p_high:.3g}]" if q.p > 0 else "0 (every replica extinct)"
        lines.append(
            f"| {q.eta:g} | tams ({q.score}), {q.replicas} x {q.particles} ({q.extinct} extinct) | {p_txt} | "
            f"{q.seed_steps:,} | {x.agree} | {ratio} |"
        )
    return lines + [""]
