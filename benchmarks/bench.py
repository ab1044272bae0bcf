"""Seed-steps per second of jumpsim and of the per-seed loops a researcher writes first.

    python benchmarks/bench.py                  # CPU sweep, about 5 minutes on 2 cores
    python benchmarks/bench.py --quick          # a smoke run (seconds)
    python benchmarks/bench.py --sweep gpu      # the GPU sweep (benchmarks/gpu.sh)

All numbers of one invocation are measured in the same process on the same machine: jumpsim
(compile time reported apart), a numpy loop with the hand-written structured gradient, and a
PyTorch loop with autograd and torch.optim.SGD (skipped with a note without torch). Every
loop does the same work per seed-step: sample B observed entries with replacement, gradient of
the minibatch squared error, ridge step, and an SVD rank check every K steps. Results go to
benchmarks/results/<device>-<date>.{json,md} (or --out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    from jumpsim.cli import use_all_cpu_cores  # one host device per core, as `jumpsim run` does

    use_all_cpu_cores()

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jumpsim  # noqa: E402
from jumpsim import kernel, model, runner
from jumpsim import problem as problem_lib  # noqa: E402


def config(n=20, width=20, depth=3, batch=1, every=100, steps=2000, seeds=1024, dtype="float32"):
    return jumpsim.load_config(None, [
        f"problem.n={n}", f"problem.m={n}", f"model.width={width}", f"model.depth={depth}", f"train.batch={batch}",
        f"detect.every={every}", f"train.steps={steps}", f"run.seeds={seeds}", f"run.chunk={seeds}", f'run.dtype="{dtype}"',
        "train.ridge=1e-3",
    ])


def state_bytes_per_seed(states) -> float:
    leaves = [x for x in jax.tree.leaves(states) if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)]
    n = leaves[0].shape[0]
    keys = 8  # a threefry key is two uint32
    return sum(x.nbytes for x in leaves) / n + keys


def bench_jumpsim(cfg, repeats=1) -> dict:
    """Seed-steps/s of one chunk after compilation; compile time = first run - steady run."""
    k = kernel.build(cfg)
    seeds = np.arange(cfg.run.seeds)
    t = time.perf_counter()
    res = runner.run_chunk(k, cfg, seeds)
    first = time.perf_counter() - t
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        runner.run_chunk(k, cfg, seeds)
        best = min(best, time.perf_counter() - t)
    work = cfg.run.seeds * cfg.train.steps
    return {"seed_steps_per_s": work / best, "wall_s": best, "compile_s": max(first - best, 0.0), "bytes_per_seed": state_bytes_per_seed(res.state)}


# ------------------------------------------------------------------------------------------
# baselines: one seed at a time


def numpy_loop(cfg, n_seeds: int, steps: int) -> dict:
    """Per-seed numpy loop with the hand-written rank-one gradient (what a careful researcher
    writes without JAX). float32 like jumpsim's default."""
    prob = problem_lib.make(cfg)
    n, m = prob.shape
    rows, cols, vals = prob.rows, prob.cols, prob.values.astype(np.float32)
    lr, ridge, B, K, L = cfg.train.lr.values[0], cfg.train.ridge.values[0], cfg.train.batch, cfg.detect.every, cfg.model.depth
    shapes = model.layer_shapes(n, m, L, cfg.model.width)
    t = time.perf_counter()
    for s in range(n_seeds):
        rng = np.random.default_rng(s)
        ws = [(rng.standard_normal(sh) / np.sqrt(sh[1])).astype(np.float32) for sh in shapes]
        for step in range(steps):
            idx = rng.integers(0, len(rows), B)
            i, j, y = rows[idx], cols[idx], vals[idx]
            vs = [None] * L
            x = ws[0][:, j]  # (w, B)
            vs[1] = x
            for l in range(1, L - 1):
                x = ws[l] @ x
                vs[l + 1] = x
            us = [None] * L
            u = ws[-1][i, :].T  # (w, B)
            us[L - 2] = u
            for l in range(L - 2, 0, -1):
                u = ws[l].T @ u
                us[l - 1] = u
            rho = np.sum(us[L - 2] * vs[L - 1], axis=0) - y
            c = (2.0 / B) * rho
            grads = [None] * L
            g0 = np.zeros_like(ws[0])
            np.add.at(g0.T, j, (us[0] * c).T)
            grads[0] = g0
            gl = np.zeros_like(ws[-1])
            np.add.at(gl, i, (vs[L - 1] * c).T)
            grads[-1] = gl
            for l in range(1, L - 1):
                grads[l] = (us[l] * c) @ vs[l].T
            for l in range(L):
                ws[l] -= lr * (grads[l] + 2 * ridge * ws[l])
            if (step + 1) % K == 0:
                a = ws[-1]
                for w in ws[-2::-1]:
                    a = a @ w
                np.linalg.svd(a, compute_uv=False)
    dt = time.perf_counter() - t
    return {"seed_steps_per_s": n_seeds * steps / dt, "wall_s": dt}


def torch_loop(cfg, n_seeds: int, steps: int) -> dict | None:
    """Per-seed PyTorch loop with autograd and torch.optim.SGD on the full-product loss (the
    loop a researcher writes first). None without torch."""
    try:
        import torch
    except ImportError:
        return None
    prob = problem_lib.make(cfg)
    n, m = prob.shape
    rows, cols = torch.as_tensor(prob.rows, dtype=torch.long), torch.as_tensor(prob.cols, dtype=torch.long)
    vals = torch.as_tensor(prob.values, dtype=torch.float32)
    lr, ridge, B, K, L = cfg.train.lr.values[0], cfg.train.ridge.values[0], cfg.train.batch, cfg.detect.every, cfg.model.depth
    shapes = model.layer_shapes(n, m, L, cfg.model.width)
    t = time.perf_counter()
    for s in range(n_seeds):
        g = torch.Generator().manual_seed(s)
        ws = [torch.nn.Parameter(torch.randn(sh, generator=g) / sh[1] ** 0.5) for sh in shapes]
        opt = torch.optim.SGD(ws, lr=lr, weight_decay=2 * ridge)  # W - lr (g + 2 ridge W)
        for step in range(steps):
            idx = torch.randint(0, len(rows), (B,), generator=g)
            a = ws[-1]
            for w in ws[-2::-1]:
                a = a @ w
            loss = ((a[rows[idx], cols[idx]] - vals[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if (step + 1) % K == 0:
                with torch.no_grad():
                    torch.linalg.svdvals(a.detach())
    dt = time.perf_counter() - t
    return {"seed_steps_per_s": n_seeds * steps / dt, "wall_s": dt, "torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}


# ------------------------------------------------------------------------------------------


def device_info() -> dict:
    d = jax.devices()[0]
    info = {
        "backend": jax.default_backend(),
        "device": d.device_kind,
        "n_devices": jax.device_count(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "jumpsim": jumpsim.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


SWEEPS = {
    # (label, config kwargs); steps are chosen to keep each measurement to a few seconds
    "quick": [("default", dict(seeds=64, steps=200))],
    "cpu": (
        [("seeds", dict(seeds=s, steps=st)) for s, st in [(1, 20000), (64, 10000), (1024, 4000), (4096, 2000), (16384, 500)]]
        + [("batch", dict(batch=10, seeds=1024, steps=2000)), ("depth", dict(depth=4, seeds=1024, steps=2000))]
        + [("size", dict(n=50, width=50, seeds=1024, steps=500)), ("size", dict(n=100, width=100, seeds=256, steps=200))]
    ),
    "gpu": (
        [("seeds", dict(seeds=s, steps=st)) for s, st in [(1024, 20000), (16384, 10000), (65536, 10000), (262144, 4000)]]
        + [("batch", dict(batch=10, seeds=65536, steps=4000)), ("depth", dict(depth=4, seeds=65536, steps=4000))]
        + [("size", dict(n=50, width=50, seeds=65536, steps=1000)), ("size", dict(n=100, width=100, seeds=16384, steps=500))]
    ),
}


def fmt(x):
    return "-" if x is None else f"{x:,.0f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", choices=sorted(SWEEPS), default="cpu")
    p.add_argument("--quick", action="store_true", help="same as --sweep quick, tiny baselines")
    p.add_argument("--out", type=Path, default=HERE / "results", help="directory for JSON and markdown")
    p.add_argument("--baseline-seeds", type=int, default=2, help="seeds per baseline loop")
    p.add_argument("--baseline-steps", type=int, default=2000, help="steps per seed in the baseline loops")
    args = p.parse_args(argv)
    sweep = "quick" if args.quick else args.sweep
    bsteps = 200 if args.quick else args.baseline_steps
    info = device_info()
    print(f"# jumpsim benchmark ({sweep}) on {info['device']} x{info['n_devices']} ({info['backend']}), jax {info['jax']}, torch {info['torch']}", flush=True)

    rows = []
    base_cfg = config(steps=bsteps - bsteps % 100 or 100)
    numpy_loop(base_cfg, 1, 100), torch_loop(base_cfg, 1, 100)  # warm-up (library start-up, allocator)
    np_res = numpy_loop(base_cfg, args.baseline_seeds, bsteps)
    print(f"numpy loop (per seed, hand-written gradient): {fmt(np_res['seed_steps_per_s'])} seed-steps/s", flush=True)
    th_res = torch_loop(base_cfg, args.baseline_seeds, bsteps)
    print(f"torch loop (per seed, autograd + optim.SGD):  {fmt(th_res and th_res['seed_steps_per_s'])} seed-steps/s" + ("" if th_res else "  (torch not installed: pip install 'jumpsim[torch]')"), flush=True)

    for label, kw in SWEEPS[sweep]:
        cfg = config(**kw)
        r = bench_jumpsim(cfg)
        row = {"sweep": label, "n": cfg.problem.n, "width": cfg.model.width, "depth": cfg.model.depth, "batch": cfg.train.batch,
               "seeds": cfg.run.seeds, "steps": cfg.train.steps, "every": cfg.detect.every, **r}
        rows.append(row)
        print(f"jumpsim {label:6s} n=w={row['n']:<3d} L={row['depth']} B={row['batch']:<2d} seeds={row['seeds']:<6d}: "
              f"{fmt(r['seed_steps_per_s'])} seed-steps/s (compile {r['compile_s']:.1f} s, {r['bytes_per_seed']:,.0f} B/seed)", flush=True)

    # rank-check share at the default size: K = 100 against a single check at the end
    share = None
    if sweep != "quick":
        steps = 2000 if info["backend"] == "cpu" else 20000
        seeds = 1024 if info["backend"] == "cpu" else 65536
        with_check = bench_jumpsim(config(seeds=seeds, steps=steps))["seed_steps_per_s"]
        without = bench_jumpsim(config(seeds=seeds, steps=steps, every=steps))["seed_steps_per_s"]
        share = 1 - with_check / without
        print(f"rank check share at K=100, {seeds} seeds: {share:.1%} ({fmt(with_check)} vs {fmt(without)} seed-steps/s with one check)", flush=True)

    ref = next((r for r in rows if r["n"] == 20 and r["depth"] == 3 and r["batch"] == 1 and r["seeds"] == (64 if sweep == "quick" else 1024 if info["backend"] == "cpu" else 65536)), rows[0])
    speedups = {"vs_numpy": ref["seed_steps_per_s"] / np_res["seed_steps_per_s"], "vs_torch": th_res and ref["seed_steps_per_s"] / th_res["seed_steps_per_s"]}
    print(f"speed-up at {ref['seeds']} seeds: {speedups['vs_numpy']:.0f}x numpy loop" + (f", {speedups['vs_torch']:.0f}x torch loop" if th_res else ""), flush=True)

    result = {"info": info, "sweep": sweep, "jumpsim": rows, "numpy_loop": np_res, "torch_loop": th_res, "rank_check_share": share, "reference": ref, "speedups": speedups}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{info['device'].replace(' ', '_').lower()}-x{info['n_devices']}-{sweep}-{info['date'][:10]}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    md = [f"# {info['device']} x{info['n_devices']} ({info['backend']}), {info['cpu_cores']} cores; jax {info['jax']}, torch {info['torch']}, {info['date']}", "",
          "| sweep | n=w | L | B | seeds | steps | seed-steps/s | compile s | bytes/seed |", "|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['sweep']} | {r['n']} | {r['depth']} | {r['batch']} | {r['seeds']} | {r['steps']} | {fmt(r['seed_steps_per_s'])} | {r['compile_s']:.1f} | {r['bytes_per_seed']:,.0f} |" for r in rows]
    md += ["", f"- numpy loop (per seed, hand-written gradient, float32): {fmt(np_res['seed_steps_per_s'])} seed-steps/s",
           f"- torch loop (per seed, autograd + torch.optim.SGD): {fmt(th_res and th_res['seed_steps_per_s'])} seed-steps/s" + (f" ({th_res['torch_threads']} threads)" if th_res else " (torch not installed)"),
           f"- speed-up of jumpsim at {ref['seeds']} seeds: {speedups['vs_numpy']:.0f}x numpy" + (f", {speedups['vs_torch']:.0f}x torch" if th_res else "")]
    if share is not None:
        md.append(f"- rank check share of the time at K = 100: {share:.1%}")
    (args.out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {args.out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
