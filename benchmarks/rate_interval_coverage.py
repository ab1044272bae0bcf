"""Coverage of the rate form's interval on k (and p_ab) on chains with an exact k = 1/MFPT: the engine's Student-t
against the delta-log-normal interval.

    python benchmarks/rate_interval_coverage.py walk --runs 400   # birth-death walk, 20 and 10 replicas per run
    python benchmarks/rate_interval_coverage.py lane --runs 400   # hidden-lane walk, 32 and 16 replicas per run

Replicas are independent (keys fold_in(seed, global replica id)), so one pool of runs x R replicas, drawn in
chunks with ``replica_offset``, cut into groups of R is exactly `runs` independent runs (and into groups of R/2
it is 2 x runs runs with half the replicas). The chains and settings are those of
benchmarks/splitting_validation.py (rate_case, lane_case). Per run and interval: covered, missed low (k above
the interval), missed high (k below it), relative width (high - low) / k_hat.

Intervals: "t" is the engine's, Student-t on log k with the ratio's linearised variance (``stats.rate_estimate``);
"dln" is the delta-log-normal generalized interval (``stats.lognormal_mean_interval``) on x_r = C_r p_r / mean(E)
(mean: k) and y_r = C_r p_r / mean(C) (mean: p_ab), widened to hold the estimate, as ``level_bound`` does for the
rate of reaching a level. The fallback (fewer than MIN_CROSSING_REPLICAS replicas with crossings, or k = 0:
[0, flux upper bound]) is the same for both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_splitting import LANE, lane_mfpt, lane_walk, ruin, walk, walk_mfpt  # noqa: E402

from jumpsim import splitting, stats  # noqa: E402

LEVEL = 0.95


def t_interval(c, e, p, level=LEVEL):
    """The engine's interval (``stats.rate_estimate``): (k, lo, hi, p_ab, plo, phi)."""
    return stats.rate_estimate(c, e, p, level)[:6]


def dln_interval(c, e, p, level=LEVEL):
    """Delta-log-normal GCI on x_r = a_r / mean(E) and y_r = a_r / mean(C), widened to hold the estimate."""
    c, e = np.asarray(c, float), np.asarray(e, float)
    a = np.where(c > 0, c * np.nan_to_num(np.asarray(p, float)), 0.0)
    out = []
    for d in (e, c):
        x = a / d.mean()
        v = x.mean()
        lo, hi = stats.lognormal_mean_interval(x, level)
        out += [v, min(lo, v), max(hi, v)]
    out[5] = min(out[5], 1.0)  # p_ab is a probability
    return tuple(out)


def fallback(c, e, p, level=LEVEL):
    """rate_estimate's documented fallback ([0, the flux's upper bound], no p_AB interval), or None where the
    interval proper applies (``stats.flux_bound_only``)."""
    if not stats.flux_bound_only(c, p):
        return None
    est = stats.rate_estimate(c, e, p, level)
    return (est.rate, est.rate_low, est.rate_high, np.nan, np.nan, np.nan)


def draw(case, total, chunk, particles, seed):
    """Per-replica (C_r, E_r, p_r) of `total` independent replicas."""
    cs, es, ps = [], [], []
    for off in range(0, total, chunk):
        m = min(chunk, total - off)
        if case == "walk":  # splitting_validation.rate_case
            q, size, basin, interface = 0.25, 16, 1, 3
            res = splitting.estimate_rate(
                *walk(q, size),
                basin=basin / size,
                interface=interface / size,
                flux_trajectories=2,
                flux_periods=3000,
                particles=particles,
                replicas=m,
                seed=seed,
                max_periods=5000,
                replica_offset=off,
            )
        else:  # test_splitting.lane_rate
            res = splitting.estimate_rate(
                *lane_walk(**LANE),
                basin=0.0,
                interface=3 / LANE["size"],
                flux_trajectories=1,
                flux_periods=800,
                particles=particles,
                replicas=m,
                seed=seed,
                replica_offset=off,
            )
        cs.append(res.replica_crossings)
        es.append(res.replica_exposure)
        ps.append(res.replica_p_ab)
        print(f"  {off + m}/{total} replicas", flush=True)
    return np.concatenate(cs), np.concatenate(es), np.concatenate(ps)


def binom_ci(k, n):
    return stats.proportion_ci(int(k), int(n), LEVEL, "exact")


def evaluate(c, e, p, r, k_exact, p_exact):
    runs = len(c) // r
    res = {}
    for name, fn in (("t", t_interval), ("dln", dln_interval)):
        rows = []
        for i in range(runs):
            s = slice(i * r, (i + 1) * r)
            rows.append(fallback(c[s], e[s], p[s]) or fn(c[s], e[s], p[s]))
        a = np.array(rows)
        for q, (v, lo, hi), exact in (("k", a[:, 0:3].T, k_exact), ("p_ab", a[:, 3:6].T, p_exact)):
            if exact is None:  # (the lane walk's p_ab has no exact value here)
                continue
            cov = int(np.sum((lo <= exact) & (exact <= hi)))
            res[f"{q}_{name}"] = {
                "runs": runs,
                "covered": cov,
                "coverage": cov / runs,
                "coverage_ci": binom_ci(cov, runs),
                "miss_low": int(np.sum(exact > hi)),  # interval below the exact value
                "miss_high": int(np.sum(exact < lo)),  # interval above it
                "nan": int(np.sum(np.isnan(lo) | np.isnan(hi))),
                "inf": int(np.sum(np.isinf(hi))),
                "median_rel_width": float(np.nanmedian((hi - lo) / v)),
            }
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=["walk", "lane"])
    ap.add_argument("--runs", type=int, default=400, help="runs at the full replica count")
    ap.add_argument("--particles", type=int, default=None)
    ap.add_argument("--chunk", type=int, default=None, help="replicas per engine call")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=None, help="write the summary to OUT.json")
    ap.add_argument("--raw", action="store_true", help="also the per-replica (C, E, p) arrays to OUT.npz")
    args = ap.parse_args()
    if args.case == "walk":
        r, n, chunk = 20, args.particles or 32, args.chunk or 2000
        k_exact, p_exact = 1 / walk_mfpt(0.25, 16), ruin(0.25, 3, 1, 16)
    else:
        r, n, chunk = 32, args.particles or 256, args.chunk or 640
        k_exact, p_exact = 1 / lane_mfpt(**LANE), None
    t0 = time.time()
    c, e, p = draw(args.case, args.runs * r, chunk, n, args.seed)
    wall = time.time() - t0
    out = {
        "case": args.case,
        "particles": n,
        "seed": args.seed,
        "k_exact": k_exact,
        "p_ab_exact": p_exact,
        "replicas": len(c),
        "draw_wall_s": round(wall, 1),
    }
    for rr in (r, r // 2):
        out[f"R={rr}"] = evaluate(c, e, p, rr, k_exact, p_exact)
    print(table(out))
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(out, indent=1) + "\n")
        if args.raw:
            np.savez(args.out + ".npz", c=c, e=e, p=p)


TABLE_HEAD = [
    "| case | R | quantity_interval | runs | coverage [95 % CI] | miss low / high | median rel. width |",
    "|---|---|---|---|---|---|---|",
]


def table(out) -> str:
    """Markdown rows of one summary (``TABLE_HEAD`` above them): coverage with its exact binomial interval, runs
    whose interval lies below / above the exact value, median (high - low) / estimate."""
    rows, case = [], {"walk": "birth-death walk", "lane": "hidden-lane walk"}[out["case"]]
    for key in (k for k in out if k.startswith("R=")):
        for name, v in out[key].items():
            lo, hi = v["coverage_ci"]
            rows.append(
                f"| {case}, N = {out['particles']} | {key[2:]} | {name} | {v['runs']} | {v['coverage']:.3f} "
                f"[{lo:.3f}, {hi:.3f}] | {v['miss_low']} / {v['miss_high']} | {v['median_rel_width']:.3g} |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
