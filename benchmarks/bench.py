"""Seed-steps per second of jumpsim and of the per-seed loops a researcher writes first.

    python benchmarks/bench.py                  # CPU sweep, about 5 minutes on 2 cores
    python benchmarks/bench.py --quick          # a smoke run (seconds)
    python benchmarks/bench.py --sweep gpu      # the GPU sweep (benchmarks/gpu.sh)

All numbers of one invocation are measured in the same process on the same machine: jumpsim
(compile time reported apart), a numpy loop with the hand-written structured gradient, and a
PyTorch loop with autograd and torch.optim.SGD, and the batched PyTorch baselines that a
competent user writes (all seeds on one axis, the structured rank-one gradient, eager and
torch.compile'd; on CUDA in the gpu sweep), measured in turns with jumpsim (skipped with a note
without torch). Every loop does the same work per seed-step: sample B observed entries with
replacement, gradient of the minibatch squared error, ridge step, and an SVD rank check every K
steps. Each run first checks that the batched torch step is jumpsim's math (float64, 1e-12).
Results go to benchmarks/results/<device>-<date>.{json,md} (or --out).
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

from jumpsim.devices import use_cpu_devices  # noqa: E402

use_cpu_devices()  # one host device per core, as `jumpsim run` does (an explicit count in XLA_FLAGS wins)

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jumpsim  # noqa: E402
from jumpsim import dynamics, kernel, model, runner
from jumpsim import problem as problem_lib  # noqa: E402


def config(n=20, width=20, depth=3, batch=1, every=100, steps=2000, seeds=1024, dtype="float32"):
    return jumpsim.load_config(
        None,
        [
            f"problem.n={n}",
            f"problem.m={n}",
            f"model.width={width}",
            f"model.depth={depth}",
            f"train.batch={batch}",
            f"detect.every={every}",
            f"train.steps={steps}",
            f"run.seeds={seeds}",
            f"run.chunk={seeds}",
            f'run.dtype="{dtype}"',
            "train.ridge=1e-3",
        ],
    )


def state_bytes_per_seed(states) -> float:
    leaves = [x for x in jax.tree.leaves(states) if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)]
    n = leaves[0].shape[0]
    keys = 8  # a threefry key is two uint32
    return sum(x.nbytes for x in leaves) / n + keys


def jumpsim_runner(cfg):
    """(run, first, result): run() times one chunk of cfg.run.seeds seeds x cfg.train.steps;
    first is the wall time of the first (compiling) run."""
    k = kernel.build(cfg)
    seeds = np.arange(cfg.run.seeds)
    t = time.perf_counter()
    res = runner.run_chunk(k, cfg, seeds)
    first = time.perf_counter() - t

    def run() -> float:
        t = time.perf_counter()
        runner.run_chunk(k, cfg, seeds)
        return time.perf_counter() - t

    return run, first, res


def bench_jumpsim(cfg, repeats=1) -> dict:
    """Seed-steps/s of one chunk after compilation; compile time = first run - steady run."""
    run, first, res = jumpsim_runner(cfg)
    best = min(run() for _ in range(repeats))
    work = cfg.run.seeds * cfg.train.steps
    return {
        "seed_steps_per_s": work / best,
        "wall_s": best,
        "compile_s": max(first - best, 0.0),
        "bytes_per_seed": state_bytes_per_seed(res.state),
    }


# ------------------------------------------------------------------------------------------
# baselines: one seed at a time


def baseline_settings(cfg):
    """What every baseline reads from a config: (problem, layer shapes (W_1 first), lr, ridge, batch, K),
    with constant lr and ridge."""
    prob = problem_lib.make(cfg)
    n, m = prob.shape
    shapes = model.layer_shapes(n, m, cfg.model.depth, cfg.model.width)
    tc = cfg.train
    return prob, shapes, tc.lr.values[0], tc.ridge.values[0], tc.batch, cfg.detect.every


def numpy_loop(cfg, n_seeds: int, steps: int) -> dict:
    """Per-seed numpy loop with the hand-written rank-one gradient (what a careful researcher
    writes without JAX). float32 like jumpsim's default."""
    prob, shapes, lr, ridge, B, K = baseline_settings(cfg)
    L = len(shapes)
    rows, cols, vals = prob.rows, prob.cols, prob.values.astype(np.float32)
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
    prob, shapes, lr, ridge, B, K = baseline_settings(cfg)
    rows, cols = torch.as_tensor(prob.rows, dtype=torch.long), torch.as_tensor(prob.cols, dtype=torch.long)
    vals = torch.as_tensor(prob.values, dtype=torch.float32)
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
    return {
        "seed_steps_per_s": n_seeds * steps / dt,
        "wall_s": dt,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


# ------------------------------------------------------------------------------------------
# baselines: all seeds at once in PyTorch (what a competent PyTorch user writes)


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_sgd_step(ws, i, j, y, lr, ridge, scale):
    """One minibatch SGD step of every seed, in place; the math of ``model.minibatch_grads`` +
    ``model.sgd_update`` on a seed axis. ws: [W_1, ..., W_L] of shape (S, d_out, d_in);
    i, j: (S, B) sampled rows and columns; y: (S, B) their values. Call under torch.no_grad."""
    import torch

    S, B = i.shape
    L = len(ws)
    sid = torch.arange(S, device=i.device)[:, None]
    vs = [None, ws[0][sid, :, j]]  # v_l: input of layer l, (S, B, d_l); v_2 = W_1 e_j (v_1 = e_j is implicit)
    for l in range(1, L - 1):
        vs.append(torch.bmm(vs[-1], ws[l].transpose(1, 2)))
    us = [None] * L  # u_l = (W_L ... W_{l+1})^T e_i, (S, B, d_{l+1}); u_L = e_i is implicit
    us[L - 2] = ws[-1][sid, i, :]
    for l in range(L - 2, 0, -1):
        us[l - 1] = torch.bmm(us[l], ws[l])
    rho = (us[L - 2] * vs[L - 1]).sum(-1) - y  # residual, (S, B)
    c = ((2.0 * scale / B) * rho)[..., None]  # (S, B, 1)
    grads = [
        torch.zeros_like(ws[0]).scatter_add_(
            2, j[:, None, :].expand(-1, ws[0].shape[1], -1), (c * us[0]).transpose(1, 2)
        )
    ]
    grads += [torch.bmm((c * us[l]).transpose(1, 2), vs[l]) for l in range(1, L - 1)]
    grads.append(torch.zeros_like(ws[-1]).scatter_add_(1, i[:, :, None].expand(-1, -1, ws[-1].shape[2]), c * vs[L - 1]))
    for w, g in zip(ws, grads):
        w.sub_(lr * (g + 2.0 * ridge * w))  # W - lr (G + 2 ridge W), as model.sgd_update


def torch_rank(ws, threshold):
    """#{sigma > threshold} of every seed's end-to-end matrix (batched svdvals), (S,)."""
    import torch

    a = ws[0]
    for w in ws[1:]:
        a = torch.bmm(w, a)
    return (torch.linalg.svdvals(a) > threshold).sum(-1)


def torch_batched_runner(
    cfg, n_seeds: int, compile: bool = False, device: str = "cpu", unroll: int | None = None, threads: int | None = None
):
    """Set up the batched PyTorch baseline; returns (run, info) where run(steps) advances every
    seed by ``steps`` (a multiple of K) and returns the wall time; info["compile_s"] is the
    first K-step block minus a steady one (0 in eager mode). None without torch.

    The compiled unit is a block of ``unroll`` SGD steps (a divisor of K; Python loops are
    unrolled by torch.compile, and at unroll = K = 100 Inductor took 6 minutes on the 2-core
    CPU), called K / unroll times, then the compiled rank check."""
    torch = _import_torch()
    if torch is None:
        return None
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    dev = torch.device(device)
    prob, shapes, lr, ridge, B, K = baseline_settings(cfg)
    rows = torch.as_tensor(prob.rows, dtype=torch.long, device=dev)
    cols = torch.as_tensor(prob.cols, dtype=torch.long, device=dev)
    vals = torch.as_tensor(prob.values, dtype=torch.float32, device=dev)
    scale, thr = model.loss_scale(cfg.train.loss, prob.n_observed), cfg.detect.threshold
    torch.manual_seed(0)
    ws = [torch.randn((n_seeds, *sh), device=dev) / sh[1] ** 0.5 for sh in shapes]
    k_obs = rows.shape[0]

    unroll = K if unroll is None else unroll
    assert K % unroll == 0, (K, unroll)

    def block(ws):  # `unroll` SGD steps of every seed
        for _ in range(unroll):
            idx = torch.randint(0, k_obs, (n_seeds, B), device=dev)
            torch_sgd_step(ws, rows[idx], cols[idx], vals[idx], lr, ridge, scale)

    def check(ws):
        return torch_rank(ws, thr)

    cuda = dev.type == "cuda"
    if compile:
        if cuda:
            for w in ws:  # in-place updates of static addresses keep CUDA graphs on
                torch._dynamo.mark_static_address(w)
        opts = dict(mode="reduce-overhead" if cuda else None, dynamic=False)
        block, check = torch.compile(block, **opts), torch.compile(check, **opts)

    def k_steps(ws):  # K steps of every seed, then the rank check
        for _ in range(K // unroll):
            if compile and cuda:
                torch.compiler.cudagraph_mark_step_begin()
            block(ws)
        if compile and cuda:
            torch.compiler.cudagraph_mark_step_begin()
        return check(ws)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def run(steps: int) -> float:
        assert steps % K == 0, (steps, K)
        sync()
        t = time.perf_counter()
        with torch.no_grad():
            for _ in range(steps // K):
                ranks = k_steps(ws)
            int(ranks.sum())  # wait for the last check (and keep it live)
        sync()
        return time.perf_counter() - t

    first = run(K)
    if compile and cuda:
        first += run(K)  # cudagraph trees record on the second call
    steady = min(run(K) for _ in range(2))
    info = {
        "seeds": n_seeds,
        "compiled": compile,
        "unroll": unroll if compile else None,
        "device": str(dev),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "compile_s": max(first - (2 if compile and cuda else 1) * steady, 0.0) if compile else 0.0,
        "s_per_check": steady,
    }
    return run, info


def torch_batched(cfg, n_seeds: int, steps: int, compile: bool = False, device: str = "cpu") -> dict | None:
    """Seed-steps/s of the batched PyTorch baseline (all seeds on one axis, float32, structured
    rank-one gradient, in-place ``W - lr (G + 2 ridge W)``, batched svdvals every K steps),
    eager or torch.compile'd (CUDA graphs on a GPU). Timed after warm-up; compile time apart."""
    r = torch_batched_runner(cfg, n_seeds, compile, device)
    if r is None:
        return None
    run, info = r
    dt = run(steps)
    return {"seed_steps_per_s": n_seeds * steps / dt, "wall_s": dt, **info}


@dynamics.with_float64  # float64 references, whatever the program's x64 setting
def check_torch_step(tol: float = 1e-12) -> float | None:
    """One float64 step of ``torch_sgd_step`` from the same weights and sampled entries equals
    ``model.minibatch_grads`` + ``model.sgd_update`` seed by seed (depths 2-4, B = 1 and 5,
    sum and mean loss). Returns the largest absolute difference; None without torch."""
    torch = _import_torch()
    if torch is None:
        return None
    import jax.numpy as jnp

    worst = 0.0
    rng = np.random.default_rng(0)
    for depth, B, n, m, width, scale in [
        (3, 1, 20, 20, 20, 1.0),
        (3, 5, 7, 9, 6, 1.0),
        (2, 4, 5, 6, 3, 80.0),
        (4, 3, 6, 5, 8, 1.0),
    ]:
        S, k = 6, 30
        rows, cols, vals = rng.integers(0, n, k), rng.integers(0, m, k), rng.standard_normal(k)
        shapes = model.layer_shapes(n, m, depth, width)
        ws = [rng.standard_normal((S, *sh)) / np.sqrt(sh[1]) for sh in shapes]
        idx = rng.integers(0, k, (S, B))
        idx[0, :] = idx[0, 0]  # a repeated entry
        lr, ridge = 0.05, 3e-3
        tw = [torch.tensor(w, dtype=torch.float64) for w in ws]
        ti = torch.as_tensor(idx)
        with torch.no_grad():
            torch_sgd_step(
                tw,
                torch.as_tensor(rows)[ti],
                torch.as_tensor(cols)[ti],
                torch.tensor(vals, dtype=torch.float64)[ti],
                lr,
                ridge,
                scale,
            )
        for s in range(S):
            p = tuple(jnp.asarray(w[s], jnp.float64) for w in ws)
            g, _ = model.minibatch_grads(
                p, jnp.asarray(rows[idx[s]]), jnp.asarray(cols[idx[s]]), jnp.asarray(vals[idx[s]], jnp.float64), scale
            )
            new = model.sgd_update(p, g, jnp.asarray(lr, jnp.float64), jnp.asarray(ridge, jnp.float64))
            for a, b in zip(new, tw):
                assert a.dtype == jnp.float64 and b.dtype == torch.float64
                worst = max(worst, float(np.max(np.abs(np.asarray(a) - b[s].numpy()))))
    assert worst <= tol, (
        f"batched torch step differs from jumpsim's minibatch_grads + sgd_update by {worst:.3g} > {tol:g}"
    )
    return worst


# ------------------------------------------------------------------------------------------


def compare_batched(
    cfg, torch_seeds, compile: bool, device: str, rounds: int, seconds: float, unroll: int | None, threads: int | None
) -> dict:
    """jumpsim at cfg (cfg.run.seeds seeds) and the batched PyTorch baselines (eager and, if
    ``compile``, torch.compile'd, at each seed count), measured in turns for ``rounds`` rounds
    of about ``seconds`` each so that machine noise hits all of them alike; best round kept."""
    torch = _import_torch()
    if torch is None:
        return {"note": "torch not installed: pip install 'jumpsim[torch]'"}
    K = cfg.detect.every
    runners, notes = {}, []
    for mode in ["eager"] + (["compiled"] if compile else []):
        for S in torch_seeds:
            name = f"torch {mode} {S}"
            try:
                run, info = torch_batched_runner(
                    cfg, S, compile=mode == "compiled", device=device, unroll=unroll, threads=threads
                )
            except Exception as e:  # e.g. no C++ compiler or Triton for torch.compile: note it, keep the rest
                notes.append(f"{name}: {e.__class__.__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
                print(f"{name}: failed ({notes[-1]})", flush=True)
                continue
            steps = K * max(1, round(seconds / info["s_per_check"]))
            runners[name] = (lambda run=run, steps=steps, S=S: S * steps / run(steps), info)
            print(f"{name}: set up ({info['torch_threads']} threads, compile {info['compile_s']:.1f} s)", flush=True)
    jrun, jfirst, _ = jumpsim_runner(cfg)
    runners["jumpsim"] = (lambda: cfg.run.seeds * cfg.train.steps / jrun(), {"seeds": cfg.run.seeds})
    rates = {name: [] for name in runners}
    for r in range(rounds):
        for name, (fn, _) in runners.items():
            rates[name].append(fn())
            print(f"  round {r + 1}: {name:22s} {fmt(rates[name][-1])} seed-steps/s", flush=True)
    entries = [
        {"name": name, **info, "seed_steps_per_s": max(rates[name]), "rounds": rates[name]}
        for name, (_, info) in runners.items()
        if name != "jumpsim"
    ]
    best = max(entries, key=lambda e: e["seed_steps_per_s"], default=None)
    j = {
        "seeds": cfg.run.seeds,
        "seed_steps_per_s": max(rates["jumpsim"]),
        "rounds": rates["jumpsim"],
        "compile_s": max(jfirst - cfg.run.seeds * cfg.train.steps / max(rates["jumpsim"]), 0.0),
    }
    return {
        "jumpsim": j,
        "baselines": entries,
        "best": best and best["name"],
        "ratio_jumpsim_over_best": best and j["seed_steps_per_s"] / best["seed_steps_per_s"],
        "device": device,
        "rounds": rounds,
        "notes": notes,
    }


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
        [
            ("seeds", dict(seeds=s, steps=st))
            for s, st in [(1, 20000), (64, 10000), (1024, 4000), (4096, 2000), (16384, 500)]
        ]
        + [("batch", dict(batch=10, seeds=1024, steps=2000)), ("depth", dict(depth=4, seeds=1024, steps=2000))]
        + [
            ("size", dict(n=50, width=50, seeds=1024, steps=500)),
            ("size", dict(n=100, width=100, seeds=256, steps=200)),
        ]
    ),
    "gpu": (
        [
            ("seeds", dict(seeds=s, steps=st))
            for s, st in [(1024, 20000), (16384, 10000), (65536, 10000), (262144, 4000)]
        ]
        + [("batch", dict(batch=10, seeds=65536, steps=4000)), ("depth", dict(depth=4, seeds=65536, steps=4000))]
        + [
            ("size", dict(n=50, width=50, seeds=65536, steps=1000)),
            ("size", dict(n=100, width=100, seeds=16384, steps=500)),
        ]
    ),
}


def fmt(x):
    return "-" if x is None else f"{x:,.0f}"


def batched_md(batched: dict, err) -> list[str]:
    """Markdown lines for the jumpsim vs batched-PyTorch comparison."""
    if "note" in batched:
        return [f"Batched PyTorch baselines: {batched['note']}."]
    j = batched["jumpsim"]
    md = [
        f"Batched PyTorch baselines ({batched['device']}), measured in {batched['rounds']} turn(s) with jumpsim "
        "(best turn; all turns in the JSON):",
        "",
        "| what | seeds | threads | seed-steps/s | compile s | turns |",
        "|---|---|---|---|---|---|",
        f"| jumpsim | {j['seeds']} | - | {fmt(j['seed_steps_per_s'])} | {j['compile_s']:.1f} | "
        f"{' / '.join(fmt(x) for x in j['rounds'])} |",
    ]
    md += [
        f"| {e['name'].rsplit(' ', 1)[0]}"
        + (f" (unroll {e['unroll']})" if e["compiled"] else "")
        + (
            f" | {e['seeds']} | {e['torch_threads']} | {fmt(e['seed_steps_per_s'])} | {e['compile_s']:.1f} | "
            f"{' / '.join(fmt(x) for x in e['rounds'])} |"
        )
        for e in batched["baselines"]
    ]
    md.append("")
    if batched["best"]:
        md.append(f"- jumpsim / best batched baseline ({batched['best']}): {batched['ratio_jumpsim_over_best']:.2f}x")
    md += [f"- not run: {n}" for n in batched["notes"]]
    if err is not None:
        md.append(f"- batched torch step = jumpsim minibatch_grads + sgd_update in float64: max |diff| {err:.2g}")
    return md


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", choices=sorted(SWEEPS), default="cpu")
    p.add_argument("--quick", action="store_true", help="same as --sweep quick, tiny baselines")
    p.add_argument("--out", type=Path, default=HERE / "results", help="directory for JSON and markdown")
    p.add_argument("--baseline-seeds", type=int, default=2, help="seeds per baseline loop")
    p.add_argument("--baseline-steps", type=int, default=2000, help="steps per seed in the baseline loops")
    p.add_argument(
        "--torch-seeds",
        default=None,
        help=(
            "seed counts of the batched PyTorch baselines, comma-separated (default: cpu 1024,4096; gpu "
            "65536,262144; quick 64)"
        ),
    )
    p.add_argument(
        "--torch-compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run the torch.compile'd baseline (default: on, except --quick)",
    )
    p.add_argument(
        "--torch-unroll", type=int, default=None, help="SGD steps per compiled call (default: 1 on CPU, 10 on CUDA)"
    )
    p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: the usable cores)")
    p.add_argument(
        "--rounds", type=int, default=None, help="turns of jumpsim vs the batched baselines (default 2, quick 1)"
    )
    p.add_argument(
        "--round-seconds", type=float, default=None, help="seconds per baseline per round (default 4, quick 0.2)"
    )
    p.add_argument(
        "--only-batched",
        action="store_true",
        help="only the correctness check and the jumpsim vs batched-PyTorch comparison",
    )
    p.add_argument(
        "--no-batched",
        action="store_true",
        help="skip the batched PyTorch baselines (the correctness check still runs)",
    )
    args = p.parse_args(argv)
    sweep = "quick" if args.quick else args.sweep
    bsteps = 200 if args.quick else args.baseline_steps
    info = device_info()
    print(
        f"# jumpsim benchmark ({sweep}) on {info['device']} x{info['n_devices']} ({info['backend']}), jax "
        f"{info['jax']}, torch {info['torch']}",
        flush=True,
    )

    err = check_torch_step()
    print(
        "batched torch step vs jumpsim minibatch_grads + sgd_update (float64): "
        + ("torch not installed" if err is None else f"max |diff| {err:.2g} <= 1e-12"),
        flush=True,
    )

    # jumpsim against the batched PyTorch baselines, in turns, at the reference problem
    th = _import_torch()
    cuda = sweep == "gpu" and th is not None and th.cuda.is_available()
    ref_seeds = 64 if sweep == "quick" else 1024 if info["backend"] == "cpu" else 65536
    tseeds = [
        int(x)
        for x in (args.torch_seeds or {"quick": "64", "cpu": "1024,4096", "gpu": "65536,262144"}[sweep]).split(",")
    ]
    ref_cfg = config(seeds=ref_seeds, steps=200 if sweep == "quick" else 2000 if info["backend"] == "cpu" else 20000)
    if args.no_batched:
        batched = {"note": "not run (--no-batched)"}
    elif sweep == "gpu" and th is not None and not cuda:
        batched = {"note": f"torch {th.__version__} has no CUDA device here: batched baselines not run"}
    else:
        batched = compare_batched(
            ref_cfg,
            tseeds,
            compile=args.torch_compile if args.torch_compile is not None else sweep != "quick",
            device="cuda" if cuda else "cpu",
            rounds=args.rounds or (1 if sweep == "quick" else 2),
            seconds=args.round_seconds or (0.2 if sweep == "quick" else 4.0),
            unroll=args.torch_unroll or (10 if cuda else 1),
            threads=args.torch_threads,
        )
    if "note" in batched:
        print(f"batched PyTorch baselines: {batched['note']}", flush=True)
    elif batched["best"]:
        print(
            f"jumpsim {fmt(batched['jumpsim']['seed_steps_per_s'])} seed-steps/s at {ref_seeds} seeds = "
            f"{batched['ratio_jumpsim_over_best']:.2f}x the best batched baseline ({batched['best']})",
            flush=True,
        )
    if args.only_batched:
        result = {"info": info, "sweep": sweep, "torch_step_check_max_abs_diff": err, "torch_batched": batched}
        args.out.mkdir(parents=True, exist_ok=True)
        stem = f"{info['device'].replace(' ', '_').lower()}-x{info['n_devices']}-{sweep}-batched-{info['date'][:10]}"
        (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
        (args.out / f"{stem}.md").write_text(
            "\n".join(
                [
                    f"# {info['device']} x{info['n_devices']} ({info['backend']}), {info['cpu_cores']} cores; jax "
                    f"{info['jax']}, torch {info['torch']}, {info['date']}",
                    "",
                ]
                + batched_md(batched, err)
            )
            + "\n"
        )
        print(f"wrote {args.out / stem}.json and .md")
        return 0

    rows = []
    base_cfg = config(steps=bsteps - bsteps % 100 or 100)
    numpy_loop(base_cfg, 1, 100), torch_loop(base_cfg, 1, 100)  # warm-up (library start-up, allocator)
    np_res = numpy_loop(base_cfg, args.baseline_seeds, bsteps)
    print(f"numpy loop (per seed, hand-written gradient): {fmt(np_res['seed_steps_per_s'])} seed-steps/s", flush=True)
    th_res = torch_loop(base_cfg, args.baseline_seeds, bsteps)
    print(
        f"torch loop (per seed, autograd + optim.SGD):  {fmt(th_res and th_res['seed_steps_per_s'])} seed-steps/s"
        + ("" if th_res else "  (torch not installed: pip install 'jumpsim[torch]')"),
        flush=True,
    )

    for label, kw in SWEEPS[sweep]:
        cfg = config(**kw)
        r = bench_jumpsim(cfg)
        row = {
            "sweep": label,
            "n": cfg.problem.n,
            "width": cfg.model.width,
            "depth": cfg.model.depth,
            "batch": cfg.train.batch,
            "seeds": cfg.run.seeds,
            "steps": cfg.train.steps,
            "every": cfg.detect.every,
            **r,
        }
        rows.append(row)
        print(
            f"jumpsim {label:6s} n=w={row['n']:<3d} L={row['depth']} B={row['batch']:<2d} seeds={row['seeds']:<6d}: "
            f"{fmt(r['seed_steps_per_s'])} seed-steps/s (compile {r['compile_s']:.1f} s, {r['bytes_per_seed']:,.0f} "
            "B/seed)",
            flush=True,
        )

    # rank-check share at the default size: K = 100 against a single check at the end
    share = None
    if sweep != "quick":
        steps = 2000 if info["backend"] == "cpu" else 20000
        seeds = 1024 if info["backend"] == "cpu" else 65536
        with_check = bench_jumpsim(config(seeds=seeds, steps=steps))["seed_steps_per_s"]
        without = bench_jumpsim(config(seeds=seeds, steps=steps, every=steps))["seed_steps_per_s"]
        share = 1 - with_check / without
        print(
            f"rank check share at K=100, {seeds} seeds: {share:.1%} ({fmt(with_check)} vs {fmt(without)} "
            "seed-steps/s with one check)",
            flush=True,
        )

    ref = next(
        (
            r
            for r in rows
            if r["n"] == 20
            and r["depth"] == 3
            and r["batch"] == 1
            and r["seeds"] == (64 if sweep == "quick" else 1024 if info["backend"] == "cpu" else 65536)
        ),
        rows[0],
    )
    speedups = {
        "vs_numpy": ref["seed_steps_per_s"] / np_res["seed_steps_per_s"],
        "vs_torch": th_res and ref["seed_steps_per_s"] / th_res["seed_steps_per_s"],
        "vs_torch_batched_best": batched.get("ratio_jumpsim_over_best"),
    }  # measured in turns with jumpsim, see torch_batched
    print(
        f"speed-up at {ref['seeds']} seeds: {speedups['vs_numpy']:.0f}x numpy loop"
        + (f", {speedups['vs_torch']:.0f}x torch loop" if th_res else ""),
        flush=True,
    )

    result = {
        "info": info,
        "sweep": sweep,
        "jumpsim": rows,
        "numpy_loop": np_res,
        "torch_loop": th_res,
        "torch_batched": batched,
        "torch_step_check_max_abs_diff": err,
        "rank_check_share": share,
        "reference": ref,
        "speedups": speedups,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{info['device'].replace(' ', '_').lower()}-x{info['n_devices']}-{sweep}-{info['date'][:10]}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    md = [
        f"# {info['device']} x{info['n_devices']} ({info['backend']}), {info['cpu_cores']} cores; jax "
        f"{info['jax']}, torch {info['torch']}, {info['date']}",
        "",
        "| sweep | n=w | L | B | seeds | steps | seed-steps/s | compile s | bytes/seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    md += [
        f"| {r['sweep']} | {r['n']} | {r['depth']} | {r['batch']} | {r['seeds']} | {r['steps']} | "
        f"{fmt(r['seed_steps_per_s'])} | {r['compile_s']:.1f} | {r['bytes_per_seed']:,.0f} |"
        for r in rows
    ]
    md += [
        "",
        f"- numpy loop (per seed, hand-written gradient, float32): {fmt(np_res['seed_steps_per_s'])} seed-steps/s",
        f"- torch loop (per seed, autograd + torch.optim.SGD): {fmt(th_res and th_res['seed_steps_per_s'])} "
        "seed-steps/s" + (f" ({th_res['torch_threads']} threads)" if th_res else " (torch not installed)"),
        f"- speed-up of jumpsim at {ref['seeds']} seeds: {speedups['vs_numpy']:.0f}x numpy"
        + (f", {speedups['vs_torch']:.0f}x torch" if th_res else ""),
    ]
    if share is not None:
        md.append(f"- rank check share of the time at K = 100: {share:.1%}")
    md += [""] + batched_md(batched, err)
    (args.out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {args.out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
