"""Importance sampling on the network itself, against the GPU's brute force: agreement and efficiency.

    python benchmarks/importance_dln.py [--lrs 0.14 0.13 0.125 0.12 0.115] [--methods tams:static tams:lookahead]
        [--particles 32] [--replicas 8] [--set KEY=VALUE ...] [--json PATH] [--quick]

For each learning rate and method (estimator:proposal), ``jumpsim rare`` on ``data/experiments/h_splitting.toml``
(the rank-3 minimum of ``rank3_start.npz``, ridge 1e-3, T = 2e4, event rank <= 2) and its ``summarize --json``
row: the estimate, its 95 % interval (withheld where the weights' diagnostics say a few paths carry it), the
diagnostics, and the SGD steps it simulated (the cost counted: every SGD step, each entry a lookahead evaluates
as one, the cross-entropy fit's steps included). Beside it, brute force at the same ridge, start and horizon from
``data/results/j_curve.parquet`` (REPORT (j): 65,536 to 1,114,112 seeds on a GPU); ``compare`` says:

* agrees: the two 95 % intervals overlap (only where the method's interval is two-sided: a low end above 0 and
  below the estimate, a high end below 1; else None);
* relative error: the half-width of that interval in log space over 1.96 (the interval the summary prints, not
  a replica standard error it does not use);
* efficiency: brute force's SGD steps for that relative error, (1 - p) / (p rel^2) x T at brute force's p, over
  the method's steps (> 1: the method is cheaper).

``--quick``: one learning rate, 8 particles x 2 replicas, T = 2e3 (what the suite runs; no brute force at that T).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import pandas as pd
from rare_cli import rare_row, write_json

from jumpsim import runner
from jumpsim.text import fmt

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "data" / "experiments" / "h_splitting.toml"
BRUTE = ROOT / "data" / "results" / "j_curve.parquet"
RIDGE = 1e-3


def brute_force(lr: float, horizon: int) -> dict | None:
    """REPORT (j)'s brute force at ridge 1e-3 and this learning rate and horizon, or None."""
    if not BRUTE.exists():
        return None
    t = pd.read_parquet(BRUTE)
    row = t[(t.ridge == RIDGE) & ((t.eta - lr).abs() < 1e-9) & (t.horizon == horizon)]
    if row.empty:
        return None
    r = row.iloc[0]
    return {k: float(r[k]) for k in ("p", "p_low", "p_high", "seeds", "reached", "seed_steps")}


def log_rel_error(p, low, high) -> float:
    """Half the interval's width in log space over 1.96; NaN unless low < p < high and the ends are finite."""
    if p is None or low is None or high is None or not 0 < low < p < high < math.inf:
        return math.nan
    return 0.5 * math.log(high / low) / 1.96


def brute_steps(p: float, rel: float, horizon: int) -> float:
    """Brute force's SGD steps for relative error `rel` at probability p: (1 - p) / (p rel^2) seeds of T steps."""
    return (1 - p) / (p * rel**2) * horizon if p > 0 and rel > 0 else math.nan


def compare(r: dict, bf: dict | None) -> dict:
    """A summary row `r` (p, p_low, p_high, resolved, seed_steps, horizon) against brute force `bf` (or None):
    rel_error, agrees, brute_steps_20pct, efficiency (None where not defined; see the module's docstring)."""
    two_sided = r["resolved"] and r["p_high"] is not None and r["p_high"] < 1
    rel = log_rel_error(r["p"], r["p_low"], r["p_high"]) if two_sided else math.nan
    rel = None if math.isnan(rel) else rel
    out = {"rel_error": rel, "agrees": None, "brute_steps_20pct": None, "efficiency": None}
    if bf is not None and bf["p"] > 0:
        out["brute_steps_20pct"] = brute_steps(bf["p"], 0.2, r["horizon"])
        if rel is not None:
            out["agrees"] = bool(r["p_low"] <= bf["p_high"] and bf["p_low"] <= r["p_high"])
            out["efficiency"] = brute_steps(bf["p"], rel, r["horizon"]) / r["seed_steps"]
    return out


def one(lr: float, method: str, proposal: str, extra: list[str], out: Path) -> dict:
    """One ``jumpsim rare`` run at learning rate `lr` and its row against brute force."""
    r, wall = rare_row(CONFIG, out, [f"train.lr={lr}", *extra], ["--method", method, "--proposal", proposal])
    keys = ("horizon", "score", "replicas", "particles", "p", "p_low", "p_high", "resolved", "extinct")
    rec = {"lr": lr, "method": method, "proposal": proposal, "ridge": RIDGE} | {k: r[k] for k in keys}
    keys = ("ess", "max_weight_share", "log10_w_sd", "p_bound", "seed_steps")
    rec |= {k: r.get(k) for k in keys} | {"wall_s": round(wall, 1)}
    bf = brute_force(lr, r["horizon"])
    return rec | {"brute_force": bf} | compare(rec, bf)


def _times(x) -> str:
    """An efficiency (a ratio, 2 decimals), "-" where there is none."""
    return "-" if x is None else f"{x:.2f}"


def table(rows: list[dict]) -> str:
    head = (
        "| eta | method | replicas x particles | p [95 %] | extinct | ESS, top share | brute force p [95 %] | agrees "
        "| SGD steps | brute force's steps for this error | efficiency | wall |\n|" + "---|" * 12
    )
    out = [head]
    for r in rows:
        bf = r["brute_force"]
        ci = f"{fmt(r['p'])} (" + ("no interval)" if r["resolved"] else "not resolved: no interval)")
        if r["resolved"] and r["p_low"] is not None and r["p_high"] is not None:
            ci = f"{fmt(r['p'])} [{fmt(r['p_low'])}, {fmt(r['p_high'])}]"
        need = r["efficiency"] * r["seed_steps"] if r["efficiency"] is not None else None
        agrees = "-" if r["agrees"] is None else ("yes" if r["agrees"] else "no")
        out.append(
            f"| {r['lr']} | {r['method']}, {r['proposal']} | {r['replicas']} x {r['particles']} | {ci} | "
            f"{r['extinct']} | {fmt(r['ess'], '-')}, {fmt(r['max_weight_share'], '-')} | "
            + (f"{fmt(bf['p'])} [{fmt(bf['p_low'])}, {fmt(bf['p_high'])}]" if bf else "-")
            + f" | {agrees} | {r['seed_steps']:.3g} | {fmt(need, '-')} | {_times(r['efficiency'])} | "
            f"{r['wall_s']:.0f} s |"
        )
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.14, 0.13, 0.125, 0.12, 0.115])
    ap.add_argument("--methods", nargs="+", default=["tams:static", "tams:lookahead"])
    ap.add_argument("--particles", type=int, default=32)
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more settings for every run")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    size = [f"rare.particles={a.particles}", f"rare.replicas={a.replicas}", *a.set]
    extra = ["train.steps=2000", "rare.particles=8", "rare.replicas=2", "rare.cem_rounds=1"] if a.quick else size
    lrs = a.lrs[:1] if a.quick else a.lrs
    info = runner.versions()
    print(f"{info['devices']}, jax {info['jax_version']}, jumpsim {info['jumpsim_version']}", flush=True)
    rows = []
    for lr in lrs:
        for m in a.methods:
            method, proposal = m.split(":")
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(one(lr, method, proposal, extra, Path(tmp) / "out"))
            r = rows[-1]
            print(
                f"eta {lr} {m}: p = {fmt(r['p'])} [{fmt(r['p_low'])}, {fmt(r['p_high'])}] resolved {r['resolved']}, "
                f"{r['seed_steps']:,} steps, efficiency {_times(r['efficiency'])}, {r['wall_s']} s",
                flush=True,
            )
    print(table(rows))
    if a.json:
        write_json(a.json, a, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
