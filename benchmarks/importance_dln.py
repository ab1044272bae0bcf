"""Importance sampling on the network itself, against the GPU's brute force: agreement and efficiency.

    python benchmarks/importance_dln.py [--lrs 0.14 0.13 0.125 0.12 0.115] [--methods tams:static tams:lookahead]
        [--particles 32] [--replicas 8] [--set KEY=VALUE ...] [--json PATH] [--quick]

For each learning rate and method (estimator:proposal), ``jumpsim rare`` on ``data/experiments/h_splitting.toml``
(the rank-3 minimum of ``rank3_start.npz``, ridge 1e-3, T = 2e4, event rank <= 2) and its ``summarize --json``
row: the estimate, its 95 % interval (withheld where the weights' diagnostics say a few paths carry it), the
diagnostics, and the SGD steps it simulated (the issue's cost: every SGD step, each entry a lookahead evaluates
as one, the cross-entropy fit's steps included). Beside it, brute force at the same ridge, start and horizon from
``data/results/j_curve.parquet`` (REPORT (j): 65,536 to 1,114,112 seeds on a GPU):

* agrees: the two 95 % intervals overlap (where the method gives a two-sided interval; else "-");
* relative error: the half-width of the method's own interval in log space over 1.96 (the interval the summary
  prints, not a replica standard error it does not use);
* efficiency: brute force's SGD steps for that relative error, (1 - p) / (p rel^2) x T at brute force's p, over
  the method's steps (> 1: the method is cheaper).

``--quick``: one learning rate, 8 particles x 2 replicas, T = 2e3 (what the suite runs; no brute force at that T).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from jumpsim import cli, runner, summary

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


def log_rel_error(p: float, low: float, high: float) -> float:
    """Half the interval's width in log space over 1.96 (NaN without a two-sided interval)."""
    if not (p > 0 and low is not None and high is not None and low > 0 and high > low):
        return math.nan
    return 0.5 * math.log(high / low) / 1.96


def one(lr: float, method: str, proposal: str, extra: list[str], out: Path) -> dict:
    sets = [f"train.lr={lr}", *extra]
    t0 = time.perf_counter()
    args = ["rare", str(CONFIG), "--out", str(out), "--quiet", "--method", method, "--proposal", proposal]
    if cli.main(args + [a for s in sets for a in ("--set", s)]) != 0:
        raise SystemExit(f"jumpsim rare failed for lr = {lr}, {method}:{proposal}")
    wall = time.perf_counter() - t0
    (r,) = summary.summarize_json(out)["splitting"]
    rec = {
        "lr": lr,
        "method": method,
        "proposal": proposal,
        "horizon": r["horizon"],
        "replicas": r["replicas"],
        "particles": r["particles"],
        "p": r["p"],
        "p_low": r["p_low"],
        "p_high": r["p_high"],
        "resolved": r["resolved"],
        "extinct": r["extinct"],
        "ess": r["ess"],
        "max_weight_share": r["max_weight_share"],
        "p_bound": r.get("p_bound"),
        "seed_steps": r["seed_steps"],
        "wall_s": round(wall, 1),
    }
    rel = log_rel_error(r["p"], r["p_low"], r["p_high"]) if r["resolved"] else math.nan
    rec["rel_error"] = None if math.isnan(rel) else rel
    bf = brute_force(lr, r["horizon"])
    rec["brute_force"] = bf
    if bf is not None:
        two_sided = rec["rel_error"] is not None
        rec["agrees"] = bool(r["p_low"] <= bf["p_high"] and bf["p_low"] <= r["p_high"]) if two_sided else None
        q = bf["p"]
        rec["brute_steps_20pct"] = (1 - q) / (0.04 * q) * r["horizon"]
        rec["efficiency"] = (1 - q) / (q * rel**2) * r["horizon"] / r["seed_steps"] if rel == rel else None
    return rec


def fmt(x, spec=".3g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


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
        rel = r["rel_error"]
        need = (1 - bf["p"]) / (bf["p"] * rel**2) * r["horizon"] if bf and rel else None
        out.append(
            f"| {r['lr']} | {r['method']}, {r['proposal']} | {r['replicas']} x {r['particles']} | {ci} | "
            f"{r['extinct']} | {fmt(r['ess'])}, {fmt(r['max_weight_share'])} | "
            + (f"{fmt(bf['p'])} [{fmt(bf['p_low'])}, {fmt(bf['p_high'])}]" if bf else "-")
            + f" | {'-' if r.get('agrees') is None else ('yes' if r['agrees'] else 'no')} | {r['seed_steps']:.3g} | "
            f"{fmt(need)} | "
            f"{fmt(r.get('efficiency'), '.2f')} | {r['wall_s']:.0f} s |"
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
                f"{r['seed_steps']:,} steps, efficiency {fmt(r.get('efficiency'), '.2f')}, {r['wall_s']} s",
                flush=True,
            )
    print(table(rows))
    if a.json:
        a.json.write_text(json.dumps({"info": info, "args": vars(a) | {"json": str(a.json)}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
