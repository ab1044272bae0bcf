"""(q) The collapse hazard: how far one SGD step can pull sigma_3 down, at three ridges, against (j)'s rates."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from jumpsim import stats
from jumpsim.hazard import HAZARD_FALLS
from jumpsim.stats.traces import BASIN

import suite
from . import o_escape_paths
from .fmt import NotRun
from analysis import start_facts

HAZARD = suite.HAZARD


class QRow(NamedTuple):
    ridge: float
    eta: float
    bf: tuple | None  # brute force: (escaped, seeds) within T
    states: int
    median: float  # the largest one-step fall: median state, 99.9 %, largest
    q999: float
    largest: float
    p: list[tuple[float, float, float]]  # per factor of HAZARD_FALLS: P(one step falls more) per step, interval
    k: tuple | None  # the escape curve at the same ridge and eta: (count, exposure, rate_low, rate_high)
    conversion: float | None  # k / P(> 10x)


class Split(NamedTuple):
    by: str  # held fixed: "eta" or "ridge"
    value: float
    across: str  # varied
    low: float  # the varied parameter's smallest and largest value
    high: float
    rate: float  # factors from low to high: escape rate, > 10x hazard, escapes per > 10x step
    hazard: float
    conversion: float

    @property
    def by_hazard(self) -> bool:
        """Whether the hazard changes more than the escapes per collapse (on the log scale)."""
        return abs(np.log(self.hazard)) > abs(np.log(self.conversion))


class QFacts(NamedTuple):
    seeds: int
    entries: int  # observed entries: the choices of a batch-1 step
    table: list[QRow]
    rows: pd.DataFrame  # q_collapse_hazard.parquet
    o_falls: tuple | None  # (o)'s falls > 10x between checks: (eta, every, falls, checks, low, high)
    by_ridge: list[Split]  # the ridge at equal eta
    by_eta: list[Split]  # eta at equal ridge

    @property
    def split_clean(self) -> bool:
        """Whether both splits exist and the ridge acts through what follows a collapse, eta through the hazard,
        everywhere."""
        ok = all(not x.by_hazard for x in self.by_ridge) and all(x.by_hazard for x in self.by_eta)
        return bool(self.by_ridge and self.by_eta) and ok


def compute(out: Path, cv: pd.DataFrame, o: o_escape_paths.OFacts | NotRun, base) -> QFacts | NotRun:
    """The hazard tables of the q_* datasets (suite.run_hazard) in the basin of each ridge's start, beside the
    escape curve ``cv`` and (o)'s observed falls (writes q_collapse_hazard.parquet)."""
    frames, passages = [], []
    for name in HAZARD:
        data = suite.load(out, name)
        if data is not None and (out / name / "hazard.parquet").exists():
            frames.append(pd.read_parquet(out / name / "hazard.parquet"))
            passages.append(stats.first_passage(data["runs"], data["passages"]))
    if not frames:
        return NotRun(HAZARD[0])
    h, fp = pd.concat(frames, ignore_index=True), pd.concat(passages, ignore_index=True)
    # basin states only, as in (o): sigma_3 at least BASIN x that of the ridge's start (after a collapse or an
    # escape sigma_3 is tiny, and ratios of tiny values count spurious "falls")
    start_s3 = {
        r: float(start_facts(suite.start_path(r), base, ridge=r)["singular_values"][2]) for r in h.ridge.unique()
    }
    h = h[h.s3 >= BASIN * h.ridge.map(start_s3)]
    n_e = int(h.entries.iloc[0])
    table, rows = _hazard_table(h, fp, cv, n_e)
    tab = pd.DataFrame(rows)
    tab.to_parquet(out / "q_collapse_hazard.parquet")
    by_ridge, by_eta = _ridge_split(tab)
    return QFacts(h.seed.nunique(), n_e, table, tab, _o_falls(o), by_ridge, by_eta)


def _hazard_table(h: pd.DataFrame, fp: pd.DataFrame, cv: pd.DataFrame, n_e: int) -> tuple[list[QRow], list[dict]]:
    """Per (ridge, eta): the one-step falls' quantiles, P(fall > c) per step (Student-t over the seeds' averages)
    and the escape rate of the curve ``cv`` with the escapes per > 10x step."""
    table, rows = [], []
    for (ridge, eta), g in h.groupby(["ridge", "eta"]):
        f = fp[(fp.config_id == g.config_id.iloc[0]) & (fp.start_rank == 3) & (fp.level == 2)]
        q50, q999, top = np.quantile(g.max_fall, [0.5, 0.999]).tolist() + [float(g.max_fall.max())]
        row = {"ridge": ridge, "eta": eta, "states": len(g), "median": q50, "q999": q999, "largest": top}
        ps = []
        for c in HAZARD_FALLS:
            per_seed = (g[f"over_{c:g}"] / n_e).groupby(g.seed).mean()
            m, lo, hi = stats.mean_interval(per_seed.to_numpy())
            row |= {f"p_{c:g}": m, f"p_{c:g}_low": lo, f"p_{c:g}_high": hi}
            ps.append((m, lo, hi))
        j = cv[np.isclose(cv.ridge, ridge) & np.isclose(cv.eta, eta)] if len(cv) else cv
        k = None
        if len(j):
            c, e = int(j["count"].iloc[0]), float(j.exposure.iloc[0])
            k = (c, e, j.rate_low.iloc[0], j.rate_high.iloc[0])
            if row["p_10"] > 0 and c > 0:
                row["k"] = c / e
                row["conversion"] = row["k"] / row["p_10"]
        bf = (int(f.k.iloc[0]), int(f.n.iloc[0])) if len(f) else None
        table.append(QRow(ridge, eta, bf, len(g), q50, q999, top, ps, k, row.get("conversion")))
        rows.append(row)
    return table, rows


def _o_falls(o: o_escape_paths.OFacts | NotRun) -> tuple | None:
    """(o)'s observed falls > 10x between checks, for comparison: (eta, every, falls, checks, Wilson interval)."""
    if isinstance(o, NotRun) or not o.pre.checks.sum():
        return None
    k, n = int(o.pre.falls.sum()), int(o.pre.checks.sum())
    lo, hi = stats.proportion_ci(k, n)
    return o.eta, o.every, k, n, lo, hi


def _ridge_split(tab: pd.DataFrame) -> tuple[list[Split], list[Split]]:
    """How the ridge (at equal eta) and eta (at equal ridge) act: the factors by which they multiply the escape
    rate, the collapse hazard and what follows a collapse (escapes per > 10x step). Empty unless both vary."""
    if "conversion" not in tab:
        return [], []
    t = tab[tab.conversion.notna()]

    def split(by: str, across: str) -> list[Split]:
        out = []
        for v, g in t.groupby(by):
            if g[across].nunique() < 2:
                continue
            g = g.sort_values(across)
            lo, hi = g.iloc[0], g.iloc[-1]
            hazard, conversion = hi.p_10 / lo.p_10, hi.conversion / lo.conversion
            out.append(Split(by, v, across, lo[across], hi[across], hi.k / lo.k, hazard, conversion))
        return out

    by_ridge, by_eta = split("eta", "ridge"), split("ridge", "eta")
    if not by_ridge or not by_eta:
        return [], []
    return by_ridge, by_eta


def render(q: QFacts | NotRun) -> list[str]:
    head = ["## (q) The collapse hazard: how far one SGD step can pull sigma_3 down", ""]
    if isinstance(q, NotRun):
        return head + q.lines()
    n_e = q.entries
    lines = head + [
        f"The seeds of `{'`, `'.join(f'{n}.toml' for n in HAZARD)}` (brute force from each ridge's rank-3 "
        f"minimum, {q.seeds} seeds, 20,000 steps) followed again, and at every check after the first 10 % "
        f"in the basin (sigma_3 at least {BASIN:g} of its start, as in (o)) the fall of sigma_3 that one SGD step "
        f"on each of the {n_e} observed entries would make (batch 1: the next step is one of them, each with "
        f"chance 1/{n_e}). The per-step chance of a fall by more than c is then the state's share of entries "
        "that make it, averaged over the states: a collapse's chance measured without waiting for one "
        "(interval: Student-t over the seeds' averages; states are correlated along a seed's path, so where no "
        "state had such an entry the table says so and gives no bound). Beside it, the escape rate k that (j) "
        "measured on a GPU at the same ridge and eta, and k / P(> 10x): escapes per > 10x step.",
        "",
        "| ridge | eta | escaped / seeds within T | states | largest one-step fall: median state / 99.9 % / largest | "
        + " | ".join(f"P(one step falls > {c:g}x) per step [95 %]" for c in HAZARD_FALLS)
        + " | escape rate k per step ((j), GPU) | k / P(> 10x) |",
        "|---|---|---|---|---|" + "---|" * len(HAZARD_FALLS) + "---|---|",
    ]
    for r in q.table:
        bf = f"{r.bf[0]} / {r.bf[1]}" if r.bf is not None else "-"
        cells = [f"{m:.2g} [{lo:.2g}, {hi:.2g}]" if m > 0 else "0 (no state)" for m, lo, hi in r.p]
        k = conv = "-"
        if r.k is not None:
            c, e, lo, hi = r.k
            k = f"{c / e:.3g} [{lo:.3g}, {hi:.3g}] ({c} escapes)"
            if r.conversion is not None:
                conv = f"{r.conversion:.2g}"
        lines.append(
            f"| {r.ridge:g} | {r.eta:g} | {bf} | {r.states:,} | {r.median:.4f}x / {r.q999:.3f}x / {r.largest:.3f}x | "
            + " | ".join(cells)
            + f" | {k} | {conv} |"
        )
    return lines + [""] + _render_base_ridge(q) + ["", *_render_split(q), ""]


def _render_base_ridge(q: QFacts) -> list[str]:
    """Where at ridge 1e-3 a > 10x step is available, and where none is."""
    base = q.rows[np.isclose(q.rows.ridge, 1e-3)]
    live, calm = base[base.p_10 > 0], base[base.p_10 == 0]
    if not len(live):
        return []
    none = "; ".join(
        f"at eta {r.eta:g} none of {int(r.states):,} states had an entry that would divide sigma_3 by more than "
        f"{r.largest:.3f} (the typical state's largest one-step fall: {100 * (r.median - 1):.2f} %)"
        for r in calm.sort_values("eta", ascending=False).itertuples()
    )
    o_falls = ""
    if q.o_falls is not None:
        eta, every, k, n, lo, hi = q.o_falls
        o_falls = (
            f"; report (o), at eta {eta:g}, counted {k} falls > 10x between checks {every} steps apart at {n:,} "
            f"basin checks: {k / n / every:.2g} [{lo / every:.2g}, {hi / every:.2g}] per step, the same order "
            "(another eta, and a fall within a period may take more than one step), and most escapes begin with one"
        )
    first = live.sort_values("eta").iloc[0]
    return [
        f"At ridge 0.001 and eta {first.eta:g} a step that divides sigma_3 by more than 10 is available from some "
        f"states: {first['p_10']:.2g} per step on average{o_falls}."
        + (f" Below, {none}." if none else "")
        + " There the collapse is not a rare draw of the sampled entry from ordinary states: it needs states far "
        "outside what the noise visits (report (i): sigma_3 itself moves by a few percent). This is why "
        "splitting on sigma_3 finds no path at small eta, and what a score for it would have to measure: the "
        "distance to states from which one step collapses."
    ]


def _render_split(q: QFacts) -> list[str]:
    if not q.by_ridge or not q.by_eta:
        return []

    def say(x: Split) -> str:
        where = "the hazard" if x.by_hazard else "what follows a collapse"
        return (
            f"at {x.by} {x.value:g}, {x.across} {x.low:g} -> {x.high:g} multiplies the escape rate by "
            f"{x.rate:.2g}, the > 10x hazard by {x.hazard:.2g} and the escapes per such step by "
            f"{x.conversion:.2g} (mostly {where})"
        )

    return [
        "Splitting each escape rate of (j) into the hazard of a > 10x step and the escapes per such step (the last "
        "column; an approximation where not every escape begins with one, report (o)). The ridge at equal eta: "
        + "; ".join(say(x) for x in q.by_ridge)
        + ". The learning rate at equal ridge: "
        + "; ".join(say(x) for x in q.by_eta)
        + ". "
        + (
            "So, on this problem, eta sets how often SGD collapses sigma_3 in one step, and the ridge sets how "
            "often a collapse is carried through tau (its pull on the collapsed direction against the data's pull "
            "back) before sigma_3 grows back."
            if q.split_clean
            else "The two factors do not separate by parameter here."
        )
    ]
