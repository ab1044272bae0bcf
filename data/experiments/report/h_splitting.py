"""(h) Splitting (TAMS and the rate form) against brute force from the rank-3 minimum."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from jumpsim import stats

import suite
from .fmt import NotRun, fmt_rate, not_run
from analysis import configs_with_runs, down_rate, log_rel_error, n_div, overlap, passage, splitting_rows

NAME = "h_splitting"


class HEstimate(NamedTuple):
    s: object  # the row of analysis.splitting_rows
    agree: bool  # its intervals overlap the reference brute force's
    need: float  # SGD steps it would need for a 20 % relative error


class HConfig(NamedTuple):
    eta: float
    seeds: int
    diverged: int
    horizon: int
    passage: pd.Series  # CPU brute force: first passage 3 -> <= 2
    rate: tuple  # CPU brute force: down_rate out of rank 3
    bf_need: float  # steps brute force would need for a 20 % relative error
    gpu: pd.Series | None  # the same config on the GPU (an escape-curve row), the reference where present
    estimates: list[HEstimate]


class HFacts(NamedTuple):
    table: list[HConfig]
    rows: pd.DataFrame  # one row per splitting estimate (h_splitting.parquet)


def compute(out: Path, cv: pd.DataFrame) -> HFacts | NotRun:
    """Brute force, the GPU's escape curve ``cv`` at ridge 1e-3 where it holds the same config, and the
    splitting estimates of h_splitting (writes h_splitting.parquet)."""
    data = suite.load(out, NAME)
    if data is None or data["runs"].empty or data["rare"].empty:
        return not_run(NAME, data)
    r, pas, ev = data["runs"], data["passages"], data["events"]
    fp = stats.first_passage(r, pas)
    exp_, counts = stats.exposure(r, ev)
    sp = splitting_rows(data)
    gpu = cv[cv.ridge == 1e-3] if len(cv) else pd.DataFrame({"config_id": []})
    table, rows = [], []
    for cid, c, rr in configs_with_runs(data):
        eta, T = c["train"]["lr"], int(rr.horizon.max())
        f = passage(fp, cid, 2, 3)
        cnt, e, lo, hi = down_rate(exp_, counts, cid, 3)
        bf_p, bf_k = (float(f.p_low), float(f.p_high)), (lo, hi)
        bf_need = (1 - f.p) / (0.04 * f.p) * T if f.p > 0 else float("nan")
        g = gpu[gpu.config_id == cid]
        q = g.iloc[0] if len(g) else None
        table.append(HConfig(eta, len(rr), n_div(rr), T, f, (cnt, e, lo, hi), bf_need, q, []))
        if q is not None:  # the same config on the GPU (j): many more seeds, the reference for agreement
            bf_p, bf_k = (q.p_low, q.p_high), (q.rate_low, q.rate_high)
            cnt, e, f = int(q["count"]), int(q.exposure), q
        for s_ in sp[sp.config_id == cid].itertuples():
            p_iv, k_iv = (s_.p_low, s_.p_high), (s_.rate_low, s_.rate_high)
            agree = overlap(p_iv, bf_p) and (s_.method == "tams" or overlap(k_iv, bf_k))
            rel = (
                log_rel_error(s_.p_low, s_.p_high) if s_.method == "tams" else log_rel_error(s_.rate_low, s_.rate_high)
            )
            need = s_.seed_steps * (rel / 0.2) ** 2
            table[-1].estimates.append(HEstimate(s_, agree, need))
            rows.append(
                {
                    "eta": eta,
                    "method": s_.method,
                    "p": s_.p,
                    "p_low": s_.p_low,
                    "p_high": s_.p_high,
                    "rate": s_.rate,
                    "rate_low": s_.rate_low,
                    "rate_high": s_.rate_high,
                    "agree": agree,
                    "particles": s_.particles,
                    "seed_steps": s_.seed_steps,
                    "steps_for_20pct": need,
                    "bf_steps_for_20pct": bf_need,
                    "bf_p": float(f.p),
                    "bf_rate": cnt / e if e else float("nan"),
                }
            )
    h = pd.DataFrame(rows)
    h.to_parquet(out / "h_splitting.parquet")
    return HFacts(table, h)


INTRO = [
    "Brute force (all seeds from the start, 95 % Wilson / exact Poisson; where the GPU's runs of (j) hold the "
    "same config, they are the reference for agreement) beside fixed-horizon TAMS (mean of "
    "replica estimates; delta-log-normal interval: positive replicas log-normal, extinct ones zeros) and the "
    "rate form (k = flux x P(target before basin); every replica runs its "
    "own flux trajectories and AMS from its own crossings, k = sum C_r p_r / sum E_r with a Student-t interval "
    "over replicas; P = 1 - exp(-kT)), each with the SGD steps it simulated.",
    "",
    "The last column projects the SGD steps each estimator needs for a 20 % relative standard error of P from the "
    "error it achieved (brute force: (1 - p) / (0.04 p) seeds x T; splitting: steps used x (relative error / "
    "0.2)^2, its relative error the one its 95 % interval admits, half the interval's log width / 1.96: the "
    "replicas' standard error, which their skew makes too small, would flatter it).",
    "",
    "| eta | estimator | P(rank <= 2 within T) | rate 3 -> 2 per step | SGD steps | agrees with brute force | "
    "steps for 20 % |",
    "|---|---|---|---|---|---|---|",
]


def render(h: HFacts | NotRun) -> list[str]:
    lines = ["## (h) Splitting against brute force from the rank-3 minimum", ""]
    if isinstance(h, NotRun):
        return lines + h.lines()
    lines += INTRO
    for c in h.table:
        f = c.passage
        lines.append(
            f"| {c.eta} | brute force, {c.seeds} seeds ({c.diverged} diverged) | "
            f"{f.k}/{f.n} = {f.p:.3g} [{f.p_low:.3g}, {f.p_high:.3g}] | "
            f"{fmt_rate(*c.rate)} | {c.seeds * c.horizon:,} | - | {c.bf_need:,.3g} |"
        )
        if c.gpu is not None:
            q = c.gpu
            lines.append(
                f"| {c.eta} | brute force on the GPU (j), {q.seeds:,} seeds ({q.diverged:,} diverged) | "
                f"{q.reached:,}/{q.seeds:,} = {q.p:.3g} [{q.p_low:.3g}, {q.p_high:.3g}] | "
                f"{fmt_rate(int(q['count']), int(q.exposure), q.rate_low, q.rate_high)} | {q.seed_steps:,} | - | - |"
            )
        for x in c.estimates:
            s_ = x.s
            rate = "-" if s_.method == "tams" else f"{s_.rate:.3g} [{s_.rate_low:.3g}, {s_.rate_high:.3g}]"
            how = (
                s_.method
                if s_.method == "tams"
                else f"rate (interface {s_.interface:.3g}, {s_.flux_crossings} crossings)"
            )
            lines.append(
                f"| {c.eta} | {how}, {s_.replicas} replicas x {s_.particles} ({s_.extinct} extinct) | "
                f"{s_.p:.3g} [{s_.p_low:.3g}, {s_.p_high:.3g}] | {rate} | {s_.seed_steps:,} | "
                f"{'yes' if x.agree else 'NO'} | {x.need:,.3g} |"
            )
    return lines + [""]
