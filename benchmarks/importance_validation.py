"""Importance sampling against exact answers: bias and interval coverage over many independent runs.

    PYTHONPATH=.:tests python benchmarks/importance_validation.py [--runs 200] [--json PATH] [--only NAME ...]

Chains: the choice walk of tests/test_importance.py (one of 10 moves per step: +1, 0 x3, -1 x6, reflected at 0)
at three sizes with exact P by dynamic programming (see CASES): 1.8e-6, 6.5e-16 and
5e-35. Each case is one estimator (plain IS, TAMS with a proposal, TAMS plain) with one proposal; per run: the
estimate, its 95 % interval (the replica mean's delta-log-normal interval, ``stats.replica_interval``), the
weights' diagnostics and whether the summary's rule calls it resolved. Reported per case: mean / exact with the
standard error of the mean over runs (bias), coverage of the interval among all runs and among the resolved ones,
the share of runs resolved, the median relative error and the particle steps per run.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_importance import choice_exact, choice_walk  # noqa: E402

from jumpsim import splitting  # noqa: E402
from jumpsim.methods import base  # noqa: E402

# name: (size, horizon, estimator, proposal, strength, eps, gate, particles, replicas)
CASES = {
    "is-static-1e-6": (8, 20, "is", "static", 1.2, 0.05, 0.0, 200, 10),
    "is-static-1e-15": (19, 30, "is", "static", 2.0, 0.05, 0.0, 200, 10),
    "is-static-5e-35": (40, 50, "is", "static", 3.0, 0.05, 0.0, 200, 10),
    "tams-lookahead-1e-6": (8, 20, "tams", "lookahead", 0.5, 0.05, 0.01, 16, 10),
    "tams-lookahead-1e-15": (19, 30, "tams", "lookahead", 0.5, 0.05, 0.01, 16, 10),
    "tams-static-1e-15": (19, 30, "tams", "static", 1.6, 0.05, 0.0, 16, 10),
    "tams-uniform-1e-15": (19, 30, "tams", "uniform", 0.0, 0.0, 0.0, 16, 10),
    "is-static-bad-4.6e-5": (8, 200, "is", "static", 1.0, 0.05, 0.0, 200, 10),
}


def one(case: str, seed: int) -> dict:
    size, horizon, est, proposal, strength, eps, gate, n, r = CASES[case]
    init, advance, score, weight = choice_walk(size, proposal, strength, eps, gate)
    if est == "is":
        res = splitting.estimate_is(init, advance, score, weight, horizon=horizon, particles=n, replicas=r, seed=seed)
    else:
        res = splitting.estimate(
            init, advance, score, horizon=horizon, particles=n, replicas=r, seed=seed, weight=weight
        )
    tot = res.replica_p.sum()
    rec = {
        "proposal": proposal,
        "p": res.p,
        "ess": tot**2 / res.replica_weight_sq.sum() if tot > 0 else 0.0,
        "max_weight_share": res.replica_weight_max.max() / tot if tot > 0 else float("nan"),
        "hits": float(res.reached.sum()),
    }
    return {
        "p": float(res.p),
        "low": float(res.p_low),
        "high": float(res.p_high),
        "resolved": not base.carried_by_few(rec),
        "ess": float(rec["ess"]),
        "steps": int(res.particle_steps),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    out = {}
    for case in a.only or CASES:
        size, horizon = CASES[case][:2]
        exact = choice_exact(size, horizon)
        t = time.perf_counter()
        runs = [one(case, 1000 + i) for i in range(a.runs)]
        p = np.array([x["p"] for x in runs])
        cover = np.array([x["low"] <= exact <= x["high"] for x in runs])
        res = np.array([x["resolved"] for x in runs])
        rel = np.array([(x["high"] - x["low"]) / (2 * 1.96 * x["p"]) if x["p"] > 0 else np.nan for x in runs])
        out[case] = {
            "exact": exact,
            "runs": a.runs,
            "mean_over_exact": float(p.mean() / exact),
            "se_of_mean_over_exact": float(p.std(ddof=1) / np.sqrt(len(p)) / exact),
            "coverage": float(cover.mean()),
            "resolved": float(res.mean()),
            "coverage_when_resolved": float(cover[res].mean()) if res.any() else None,
            "median_rel_error": float(np.nanmedian(rel)),
            "steps_per_run": float(np.mean([x["steps"] for x in runs])),
            "wall_s": round(time.perf_counter() - t, 1),
        }
        print(case, json.dumps(out[case]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
