"""(i) Small learning rate: the level bounds of splitting, and how far the noise moves sigma_3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from jumpsim import stats

import suite
from .fmt import NotRun, not_run
from analysis import level_bound_row, level_wide, splitting_rows

NAME = "i_small_eta"
NOISE_MAX_SPREAD = 0.5  # level-curve rows shown where the replicas' log10 sd is at most this (intervals trustworthy)


class IRow(NamedTuple):
    eta: float
    horizon: int
    s: object  # the row of analysis.splitting_rows
    bf: tuple | None  # brute force from rank 3: (escaped, seeds, upper end of P)
    bound: stats.LevelBound | None  # the level bound
    spread: float  # the replicas' log10 sd at the bound's level


class NoiseLevel(NamedTuple):
    eta: float
    horizon: int
    z: float  # score level
    fall: float  # the fall of sigma_3 it means
    p: float  # P(reach within T) with its interval
    low: float
    high: float
    spread: float


class NoiseReach(NamedTuple):
    sig0: float  # sigma_3 of the start
    tau: float
    shown: list[NoiseLevel]  # every other level of each eta's curve, the deepest included
    deepest: list[tuple[float, float, float, float]]  # (eta, fall, P, decades of P per percent of fall)
    stalled: float  # the largest median stall level of the estimates


class IFacts(NamedTuple):
    table: list[IRow]
    bounds: list[dict]  # per estimate: eta, method, p_bound, horizon, k_bound (the rate form's bound on k)
    noise: NoiseReach | None


def compute(out: Path, start: dict) -> IFacts | NotRun:
    """The splitting estimates of i_small_eta with their level bounds, and the TAMS level curves as falls of
    sigma_3 from the start file's (``start``: analysis.start_facts)."""
    data = suite.load(out, NAME)
    if data is None or data["rare"].empty:
        return not_run(NAME, data)
    sp = splitting_rows(data)
    fp = stats.first_passage(data["runs"], data["passages"]) if not data["runs"].empty else pd.DataFrame()
    cfgs = {c: json.loads(j) for c, j in zip(data["experiments"].config_id, data["experiments"].config)}
    table, bounds = [], []
    for r in sp.sort_values(["config_id", "method"]).itertuples():
        cfg = cfgs[r.config_id]
        eta, T = cfg["train"]["lr"], int(r.horizon)
        f = fp[(fp.config_id == r.config_id) & (fp.start_rank == 3) & (fp.level == 2)] if len(fp) else fp
        bf = (int(f.k.iloc[0]), int(f.n.iloc[0]), f.p_high.iloc[0]) if len(f) else None
        lb, spread = level_bound_row(data, r)
        table.append(IRow(eta, T, r, bf, lb, spread))
        k_bound = float(r.rate_bound) if r.method == "rate" else float("nan")
        bounds.append({"eta": eta, "method": r.method, "p_bound": float(r.p_bound), "horizon": T, "k_bound": k_bound})
    return IFacts(table, bounds, _noise_reach(data, sp, cfgs, start))


def _noise_reach(data: dict, sp: pd.DataFrame, cfgs: dict, start: dict) -> NoiseReach | None:
    """How far the noise pushes sigma_3 down within T: the TAMS level curve, P(max score >= z within T), at the
    levels every replica passed with a modest spread, as the fall of sigma_3 it means."""
    sig0 = float(start["singular_values"][2])
    tau = float(next(iter(cfgs.values()))["detect"]["threshold"])
    rows = []
    for r in sp[sp.method == "tams"].itertuples():
        wide = level_wide(data, r)[1]
        if wide is None:
            continue
        for z in wide.columns:
            x = wide[z].to_numpy()
            if not np.all(x > 0) or x.min() == 1:
                continue
            spread = float(np.log10(x).std(ddof=1))
            if spread > NOISE_MAX_SPREAD:
                break
            m, lo, hi = stats.replica_interval(x)  # the engine's interval for a replica mean
            fall = 1 - (tau / sig0) ** z
            rows.append(NoiseLevel(cfgs[r.config_id]["train"]["lr"], int(r.horizon), z, fall, m, lo, hi, spread))
    if not rows:
        return None
    shown, deepest = [], []
    for eta in sorted({t.eta for t in rows}, reverse=True):
        curve = sorted((t for t in rows if t.eta == eta and t.p < 0.99), key=lambda t: t.z)
        shown += curve[len(curve) % 2 == 0 :: 2]  # every other level, the deepest included
        a, b = curve[-3], curve[-1]  # decades of P per percent of fall, over the deepest levels shown
        slope = (np.log10(a.p) - np.log10(b.p)) / (100 * (b.fall - a.fall))
        deepest.append((eta, b.fall, b.p, slope))
    return NoiseReach(sig0, tau, shown, deepest, sp.stalled_level.max())


def render(i: IFacts | NotRun) -> list[str]:
    head = ["## (i) Small learning rate: what splitting can still say", ""]
    if isinstance(i, NotRun):
        return head + i.lines()
    lines = head + [
        "From the rank-3 minimum, where brute force sees no escape, each learning rate runs the rate form (first "
        "interface low, inside the fluctuations, for many crossings) and TAMS within 1e5 steps. Both go extinct on "
        "the way down with the sigma score (README, small eta); what they still give is the level bound (README): "
        "the estimate, with its 95 % interval, of reaching a score level every replica passed (the one with the "
        "smallest upper end), which every escape must pass. Its upper end bounds the escape probability (TAMS) "
        "or rate (rate form).",
        "",
        "| eta | brute force: escaped / seeds within T | method | replicas x particles | extinct | stall level "
        "(median) | bound level | P(reach it) or rate [95 %] | replicas' log10 sd there | bound on P(escape within T) "
        "| bound on k per step | SGD steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in i.table:
        r, lb = x.s, x.bound
        bf = f"{x.bf[0]} / {x.bf[1]} (p <= {x.bf[2]:.2g})" if x.bf is not None else "-"
        if r.method == "tams":
            what = f"P = {lb.value:.2g} [{lb.low:.2g}, {lb.high:.2g}]" if lb else "-"
            k_bound = "-"
        else:
            what = f"k = {lb.value:.2g} [{lb.low:.2g}, {lb.high:.2g}]" if lb else "-"
            k_bound = f"{r.rate_bound:.2g}" if r.rate_bound == r.rate_bound else "-"
        lines.append(
            f"| {x.eta} | {bf} | {r.method} | {r.replicas} x {r.particles} | {r.extinct} | "
            f"{r.stalled_level:.3g} | {r.bound_level:.3g} | {what} | {x.spread:.2f} | {r.p_bound:.2g} "
            f"(T = {x.horizon:,}) | {k_bound} | {r.seed_steps:,} |"
        )
    lines += [
        "",
        "The bounds are honest and loose: they are the chance of getting as far down as every replica got, not of "
        "escaping (at the bound level sigma_3 has fallen by a factor (sigma_3(start)/tau)^z, a few percent), and "
        "the replicas' spread (log10 sd of their estimates, in the table) widens them: with the sigma score the "
        "replica estimates spread over decades at the higher levels, so the mean there may rest on a few of them. "
        "What would make splitting reach the target at small eta: a score that ranks states by their chance of the "
        "collapsing SGD step (report (o)), or importance sampling of the sampled entries.",
        "",
    ]
    return lines + ([] if i.noise is None else _render_noise(i.noise))


def _render_noise(n: NoiseReach) -> list[str]:
    lines = [
        "How far the noise pushes sigma_3 down: the TAMS level curve, P(sigma_3 falls by at least this much within "
        "T), at the levels every replica passed with a log10 sd of the replicas' estimates of at most "
        f"{NOISE_MAX_SPREAD} (two-sided intervals, from the same runs as the table above; sigma_3 of the start "
        f"{n.sig0:.3g}, tau {n.tau:g}):",
        "",
        "| eta | T | score level z | sigma_3 down by | P(reach within T) [95 %] | replicas' log10 sd |",
        "|---|---|---|---|---|---|",
    ]
    for t in n.shown:
        lines.append(
            f"| {t.eta} | {t.horizon:,} | {t.z:.3g} | {t.fall:.1%} | {t.p:.2g} [{t.low:.2g}, {t.high:.2g}] | "
            f"{t.spread:.2f} |"
        )
    say = [
        f"at eta {eta} a fall of {fall:.1%} has P = {p:.2g}, {slope:.1f} decades less per percent more"
        for eta, fall, p, slope in n.deepest
    ]
    tau, sig0, stalled = n.tau, n.sig0, n.stalled
    lines += [
        "",
        f"The deepest falls resolved: {'; '.join(say)}. An escape needs sigma_3 to fall by {1 - tau / sig0:.1%} "
        "(to tau) and stay there: the noise alone moves sigma_3 by a few percent within T, so at these learning "
        "rates an escape cannot be a slow diffusion down the sigma_3 direction. It can only come through the "
        f"collapsing SGD step of (o), which none of the runs above came near (their replicas stalled at median score "
        f"levels up to {stalled:.3g}: sigma_3 about {1 - (tau / sig0) ** stalled:.0%} down).",
        "",
    ]
    return lines
