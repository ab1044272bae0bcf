"""The anatomy of an escape from the rank-3 minimum, measured where it bounds importance sampling of the draws.

    python benchmarks/collapse_anatomy.py [--lr 0.13] [--json PATH] [--quick]

Two measurements from the start of ``data/experiments/h_splitting.toml`` (the rank-3 minimum, ridge 1e-3):

1. Windows (``hazard.collapse_windows``): the seeds followed again with a check every ``--every`` steps, and at
   each check the fall of sigma_3 one step on each observed entry would make (``hazard.collapse_hazard``). A
   window is a run of checks where some entry would divide sigma_3 by more than a factor; ``p_draw`` is the
   chance SGD draws that entry before the window closes. A proposal that acts on the collapsing draw can make at
   most 1 / p_draw times more collapses.
2. Carry-through: brute force from the start (``--seeds`` seeds) until each seed's first check with score
   >= ``--level`` (the splitting score: 0 at the start, 1 at the confirmed target), then ``--continuations``
   plain continuations from each such crossing state until the target or back in the basin (score <= 0.1) or
   ``--periods`` checks: c(y), each crossing's chance to carry through. How c spreads over the crossings says
   whether the escape is decided at the collapse (a few crossings carry all of it) or after it, and the train
   loss at the crossing beside it (a candidate feature of the crossings that carry through).
3. Forced collapses: plain importance sampling under a proposal that tilts only the collapsing draw. Each step
   evaluates the step on ONE watched entry (the last drawn, or the watched one while it stays capable); where it
   would raise the score by at least ``--gate``, that entry is drawn with probability ``--rho`` (the others
   uniformly), at most ``--budget`` times per path; the log likelihood ratio is carried exactly. Cost: two steps
   per step. If escapes were decided by the draw at the collapse, hits would multiply by up to 1 / p_draw.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jumpsim import dynamics, hazard, rare, runner
from jumpsim.config import load_one
from jumpsim.setup import setup

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "data" / "experiments" / "h_splitting.toml"
FALLS = (2.0, 4.0, 10.0)
BASIN = 0.1  # a continuation is back in the basin at score <= BASIN
LOW_LOSS = 0.1  # crossings whose train loss (at the crossing's check) is below this, counted apart


def windows(lr: float, seeds: int, steps: int, every: int, burn_in: int) -> tuple[list[dict], float]:
    over = [f"train.lr={lr}", f"detect.every={every}", f"train.steps={steps}", f"run.seeds={seeds}"]
    cfg = load_one(CONFIG, [*over, f"run.chunk={seeds}"])
    t0 = time.perf_counter()
    states = hazard.collapse_hazard([cfg], falls=FALLS)
    return [hazard.collapse_windows(states, f, burn_in) for f in FALLS], time.perf_counter() - t0


def carry_through(lr: float, seeds: int, level: float, continuations: int, periods: int, seed: int = 7):
    """Per crossing: the seed, its check and step, its score and train loss, and the continuations' outcomes
    (hits, back, open)."""
    cfg = load_one(CONFIG, [f"train.lr={lr}"])
    p = rare.particles(cfg)
    horizon = cfg.train.steps // p.period_steps
    root = jax.random.key(seed)
    adv = jax.jit(jax.vmap(p.advance, in_axes=(0, 0, None)))
    score = jax.jit(jax.vmap(p.score))
    fold = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))
    keys = jax.random.split(root, seeds)
    xs, found, crossings = jax.vmap(p.init)(keys), np.zeros(seeds, bool), []
    for t in range(horizon):
        xs = adv(xs, fold(keys, t), t)
        s = np.asarray(score(xs))
        for i in np.flatnonzero((s >= level) & ~found & np.isfinite(s)):
            crossings.append((int(i), t + 1, float(s[i]), jax.tree.map(lambda a, i=i: a[i], xs)))
        found |= s >= level
    rows = []
    for j, (i, t, s0, y) in enumerate(crossings):
        ys = jax.tree.map(lambda a: jnp.broadcast_to(a, (continuations,) + a.shape), y)
        kk = jax.random.split(jax.random.fold_in(root, 1000 + j), continuations)
        done = np.zeros(continuations, int)  # 1 target, -1 back in the basin (or diverged), 0 open
        for u in range(periods):
            ys = adv(ys, fold(kk, u), t + u)
            s = np.asarray(score(ys))
            done = np.where((done == 0) & (s >= 1), 1, done)
            done = np.where((done == 0) & ((s <= BASIN) | ~np.isfinite(s)), -1, done)
            if (done != 0).all():
                break
        rows.append({"seed": i, "check": t, "step": t * p.period_steps, "score": s0, "loss": float(y.loss),
                     "hits": int((done == 1).sum()), "back": int((done == -1).sum()),
                     "open": int((done == 0).sum())})  # fmt: skip
    return pd.DataFrame(rows, columns=["seed", "check", "step", "score", "loss", "hits", "back", "open"])


def forced_collapses(
    lr: float, paths: int, gate: float, rho: float, budget: int, steps: int | None = None, seed: int = 1
) -> dict:
    """Plain IS over `paths` paths of `steps` (default train.steps) under the watched-entry tilt (module doc)."""
    cfg = load_one(CONFIG, [f"train.lr={lr}"] + ([f"train.steps={steps}"] if steps else []))
    su = setup(cfg)
    data, dyn, det = su.data, su.dynamics, su.detection
    p = rare.particles(cfg, su)
    k, every, horizon = data.n_observed, dyn.every, cfg.train.steps // dyn.every
    tilted = jnp.log(jnp.full(k, (1 - rho) / (k - 1)))

    def period(c, t):
        def step(cc, s):
            x, lw, watch, used = cc
            moved, _ = dynamics.entries_step(x.params, x.opt_state, watch[None], s, data, dyn)
            on = (p.progress(x._replace(params=moved)) - p.progress(x) >= gate) & (used < budget)
            log_q = jnp.where(on, tilted.at[watch].set(math.log(rho)), -math.log(k))
            e = jax.random.categorical(jax.random.fold_in(c[4], s), log_q).astype(jnp.int32)
            params, opt = dynamics.entries_step(x.params, x.opt_state, e[None], s, data, dyn)
            watch = jnp.where(on & (e != watch), watch, e)  # a capable watch is kept until drawn
            return (x._replace(params=params, opt_state=opt), lw - math.log(k) - log_q[e], watch, used + on), None

        steps = t * every + jnp.arange(every, dtype=jnp.int32)
        (x, lw, watch, used), _ = jax.lax.scan(step, c[:4], steps)
        return (dynamics.check(x, (t + 1) * every, data, det)[0], lw, watch, used, c[4])

    @jax.jit
    def run(keys):
        def path(key):
            c = (p.init(key), jnp.float32(0.0), jnp.int32(0), jnp.int32(0), key)

            def body(c, t):
                stop = c[0].diverged | (p.score(c[0]) >= 1)
                return jax.lax.cond(stop, lambda c, t: c, period, c, t), None

            (x, lw, _, used, _), _ = jax.lax.scan(body, c, jnp.arange(horizon, dtype=jnp.int32))
            return p.score(x) >= 1, lw, used

        return jax.vmap(path)(keys)

    t0 = time.perf_counter()
    hits, lw, used = (np.asarray(v) for v in run(jax.random.split(jax.random.key(seed), paths)))
    w = np.where(hits, np.exp(lw.astype(np.float64)), 0.0)
    return {
        "paths": paths, "gate": gate, "rho": rho, "budget": budget, "hits": int(hits.sum()),
        "p": float(w.mean()), "se": float(w.std(ddof=1) / math.sqrt(paths)) if paths > 1 else float("nan"),
        "ess": float(w.sum() ** 2 / (w**2).sum()) if w.sum() > 0 else 0.0,
        "log10_w_hits": sorted((lw[hits] / math.log(10)).round(2).tolist()),
        "tilted_steps_mean": float(used.mean()), "sgd_steps": 2 * paths * cfg.train.steps,
        "wall_s": time.perf_counter() - t0,
    }  # fmt: skip


def summary(df: pd.DataFrame, continuations: int, seeds: int) -> dict:
    c = np.sort(df.hits.to_numpy() / continuations)[::-1]
    top = float(c[: max(1, len(c) // 10)].sum() / c.sum()) if c.sum() > 0 else float("nan")
    early = df.step <= 2000
    low = df.loss < LOW_LOSS
    return {
        "crossings": len(df),
        "crossings_per_seed": len(df) / seeds,
        "carry_mean": float(c.mean()) if len(c) else float("nan"),
        "carry_max": float(c.max()) if len(c) else float("nan"),
        "crossings_with_hits": int((c > 0).sum()),
        "top_tenth_share": top,
        "early_share_of_carry": float((df.hits[early].sum()) / max(df.hits.sum(), 1)),
        "early_crossings": int(early.sum()),
        f"share_of_carry_loss_below_{LOW_LOSS:g}": float(df.hits[low].sum() / max(df.hits.sum(), 1)),
        f"crossings_loss_below_{LOW_LOSS:g}": int(low.sum()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lr", type=float, default=0.13)
    ap.add_argument("--window-seeds", type=int, default=128)
    ap.add_argument("--window-steps", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--burn-in", type=int, default=5_000)
    ap.add_argument("--seeds", type=int, default=2048)
    ap.add_argument("--level", type=float, default=0.4)
    ap.add_argument("--continuations", type=int, default=128)
    ap.add_argument("--periods", type=int, default=100)
    ap.add_argument("--paths", type=int, default=512, help="forced collapses: paths of plain IS")
    ap.add_argument("--gate", type=float, default=0.45, help="forced collapses: the watched step's score gain")
    ap.add_argument("--rho", type=float, default=0.5, help="forced collapses: the tilted entry's probability")
    ap.add_argument("--budget", type=int, default=20, help="forced collapses: tilted steps per path at most")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true", help="a tiny run (the test's)")
    a = ap.parse_args(argv)
    if a.quick:
        a.window_seeds, a.window_steps, a.every, a.burn_in = 4, 200, 10, 0
        a.seeds, a.continuations, a.periods, a.level, a.paths, a.gate = 32, 4, 5, 0.02, 4, 0.0
    win, win_s = windows(a.lr, a.window_seeds, a.window_steps, a.every, a.burn_in)
    t0 = time.perf_counter()
    df = carry_through(a.lr, a.seeds, a.level, a.continuations, a.periods)
    carry = summary(df, a.continuations, a.seeds)
    carry_s = time.perf_counter() - t0
    forced = forced_collapses(a.lr, a.paths, a.gate, a.rho, a.budget, 500 if a.quick else None)
    res = {"info": runner.versions(), "args": vars(a) | {"json": str(a.json)}, "windows": win, "windows_s": win_s,
           "carry": carry, "carry_s": carry_s, "crossings": df.to_dict("records"), "forced": forced}  # fmt: skip
    print(f"eta {a.lr}: windows ({a.window_seeds} seeds x {a.window_steps} steps, a check every {a.every}, "
          f"after step {a.burn_in}; {win_s:.0f} s)")  # fmt: skip
    print("| fall > | capable share | windows per step | length (steps): median, mean | p_draw | 1 / p_draw | taken |")
    print("|---|---|---|---|---|---|---|")
    for w in win:
        inv = f"{1 / w['p_draw']:.1f}" if w["p_draw"] > 0 else "-"
        print(f"| {w['fall']:g}x | {w['capable_share']:.2e} | {w['windows_per_step']:.2e} | {w['length_median']:.0f}, "
              f"{w['length_mean']:.1f} | {w['p_draw']:.3f} | {inv} | {w['taken']:.3f} |")  # fmt: skip
    print(f"carry-through from score >= {a.level} ({a.seeds} seeds, {a.continuations} continuations of up to "
          f"{a.periods} checks each; {carry_s:.0f} s): {json.dumps(carry)}")  # fmt: skip
    print(f"forced collapses (plain IS, {a.paths} paths of T): {json.dumps(forced)}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
