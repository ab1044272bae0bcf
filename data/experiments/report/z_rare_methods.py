"""(z) Below brute force's reach: importance sampling of the drawn entries against (j)'s brute force, and the bracket
at small learning rates, from the committed benchmark results (``benchmarks/importance_dln.py``,
``benchmarks/small_eta_brackets.py``: the newest JSON of each under benchmarks/results; nothing is simulated here)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from jumpsim.text import fmt

import suite
from .fmt import NotRun

NAME = "z_rare_methods"
BENCH = suite.ROOT / "benchmarks" / "results"


class ZFacts(NamedTuple):
    dln: pd.DataFrame  # importance_dln rows: eta, method, proposal, p, interval, resolved, extinct, steps, brute force
    dln_file: str
    brackets: pd.DataFrame  # small_eta_brackets rows: eta, horizon, log10 lower bound, upper bound, prefix, steps
    brackets_file: str


def _newest(pattern: str) -> Path | None:
    """The file of the newest date in its name (YYYY-MM-DD), whatever device tag precedes it."""
    dated = [(m.group(0), p.name, p) for p in BENCH.glob(pattern) if (m := re.search(r"\d{4}-\d{2}-\d{2}", p.name))]
    return max(dated)[2] if dated else None


def compute() -> ZFacts | NotRun:
    d, b = _newest("importance-dln-*.json"), _newest("small-eta-brackets-*.json")
    if d is None or b is None:
        how = "`python benchmarks/importance_dln.py --json ...`, `python benchmarks/small_eta_brackets.py --json ...`"
        return NotRun(NAME, how=how)
    dln = pd.DataFrame(json.loads(d.read_text())["rows"])
    brackets = pd.DataFrame(json.loads(b.read_text())["rows"])
    return ZFacts(dln, d.name, brackets, b.name)


def render(z: ZFacts) -> list[str]:
    out = [
        "## (z) Below brute force's reach: importance sampling against (j), and the bracket at small eta",
        "",
        f"From the committed benchmark results (`benchmarks/results/{z.dln_file}`, `{z.brackets_file}`; the "
        f"scripts are named in benchmarks/README.md). First, fixed-horizon TAMS from the rank-3 minimum at ridge "
        f"{fmt(z.dln.ridge.iloc[0], '-')} (T = {int(z.dln.horizon.iloc[0]):,}, the {z.dln.score.iloc[0]} score) under "
        "each proposal for the drawn entries, against (j)'s brute force on the GPU: an estimate whose weights say a "
        "few paths carry it gets no interval (not resolved).",
        "",
        "| eta | proposal | replicas x particles | extinct | P(rank <= 2 within T) [95 %] | brute force (j) "
        "| SGD steps | brute force's steps for 20 % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in z.dln.iterrows():
        bf = r.brute_force
        if not r.resolved:
            est = f"{fmt(r.p, '-')} (not resolved)"
        elif r.p_low is None or r.p_low != r.p_low:
            est = f"{fmt(r.p, '-')} (no interval)"
        else:
            est = f"{fmt(r.p, '-')} [{fmt(r.p_low, '-')}, {fmt(r.p_high, '-')}]"
        ref = f"{fmt(bf['p'])} [{fmt(bf['p_low'])}, {fmt(bf['p_high'])}]" if isinstance(bf, dict) else "-"
        need = r.get("brute_steps_20pct")
        out.append(
            f"| {r.lr:g} | {r.proposal} | {r.replicas} x {r.particles} | {r.extinct} | {est} | {ref} | "
            f"{r.seed_steps:.3g} | {fmt(need, '-')} |"
        )
    tilted = z.dln[z.dln.proposal != "uniform"]
    below = sum(isinstance(r.brute_force, dict) and r.p < r.brute_force["p_low"] for _, r in tilted.iterrows())
    plain = z.dln[z.dln.proposal == "uniform"]
    ok = [r.lr for _, r in plain.iterrows() if r.get("agrees") is True]
    agree = ", ".join(f"{x:g}" for x in sorted(ok, reverse=True)) or "-"
    size = f"{int(plain.replicas.max())} x {int(plain.particles.max())}" if len(plain) else "-"
    out += [
        "",
        f"Under a tilt of the drawn entries {int((~tilted.resolved).sum())} of {len(tilted)} estimates are not "
        f"resolved and {below} lie below brute force's interval; without a proposal "
        f"({size} particles) TAMS agrees with brute force at eta {agree} (where its interval is two-sided). "
        "Where an escape's rarity lies is measured in "
        "`benchmarks/results/collapse-anatomy-cpu-2026-12-02.md`: there SGD took a collapsing draw one time in 6-9, "
        "and whether an escape followed was decided by the state the collapse landed in, which no score used here "
        "ranks.",
        "",
        "Below the curve, where nothing escapes, the bracket (`rare.bracket`): a valid 95 % lower bound from "
        "prefixes of m0 steps that draw only among the entries raising the score most (SGD does that with "
        "probability exactly (s/K)^m0), then plain SGD; the upper bound from the rate form's flux phase "
        "(k <= its 95 % end; (i) bounds k more tightly with longer flux phases).",
        "",
        "| eta | T | 95 % lower bound | upper bound | width (decades) | prefix m0 (steps) | SGD steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in z.brackets.iterrows():
        out.append(
            f"| {r.lr:g} | {int(r.horizon):,} | 10^{r.log10_lower:.1f} | {fmt(r.upper, '-')} | "
            f"{r.width_decades:,.0f} | {int(r.prefix_steps):,} | {r.seed_steps:.3g} |"
        )
    out += [
        "",
        f"The brackets are {z.brackets.width_decades.min():,.0f} to {z.brackets.width_decades.max():,.0f} decades "
        "wide. A lower bound found along a path that starves the entries holding sigma_3 up (what the prefixes do) "
        "is not SGD's own way out; where the bracket spans hundreds of decades it says only that the escape "
        "probability is not zero, not how it falls with eta.",
        "",
    ]
    return out
