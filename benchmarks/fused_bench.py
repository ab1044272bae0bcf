"""Micro-benchmark of the fused Pallas SGD kernel against the XLA step on the same inputs (for a GPU; interpret
mode on a CPU runs but is not a timing).

    PYTHONPATH=. python benchmarks/fused_bench.py 65536 100 [--batch 10] [--depth 4] [--n 50 --width 50]

``bench(S, K, ...)`` is also importable (benchmarks/ on sys.path), as the GPU scripts do.
"""

import argparse
import math
import time

import jax
import jax.numpy as jnp

from jumpsim import model
from jumpsim.fused import F32, I32, draw_indices, sgd_steps_pallas, sgd_steps_xla


def bench(
    S: int,
    K: int,
    n: int = 20,
    m: int = 20,
    width: int = 20,
    depth: int = 3,
    batch: int = 1,
    k_obs: int | None = None,
    reps: int = 5,
    block_seeds: int | None = None,
    num_warps: int | None = 4,
    interpret: bool = False,
    check: bool = True,
) -> dict:
    """Seed-steps/s of ``sgd_steps_pallas`` vs ``sgd_steps_xla`` on the same inputs (one call =
    K steps for S seeds, after a compile-and-warm-up call; best of ``reps``). Prints one line
    per path and returns {"pallas": rate, "xla": rate, "max_rel_diff": ...}."""
    key = jax.random.key(0, impl="threefry2x32")
    k_init, k_obs_key, k_seeds = jax.random.split(key, 3)
    k_obs = max(1, (n * m) // 2) if k_obs is None else k_obs
    flat = jax.random.permutation(k_obs_key, n * m)[:k_obs].astype(I32)
    rows, cols = flat // m, flat % m
    vals = jax.random.normal(jax.random.fold_in(k_obs_key, 1), (k_obs,), F32)
    p1 = model.init_gaussian(k_init, n, m, depth, width, 1.0, F32)
    params = tuple(
        jnp.broadcast_to(w, (S, *w.shape)) + 0.01 * jax.random.normal(jax.random.fold_in(k_init, l), (S, *w.shape), F32)
        for l, w in enumerate(p1)
    )
    seed_keys = jax.vmap(lambda s: jax.random.fold_in(k_seeds, s))(jnp.arange(S, dtype=I32))
    idx = draw_indices(seed_keys, 0, K, batch, k_obs)
    lr = jnp.full((K,), 0.01, F32)
    ridge = jnp.full((K,), 1e-3, F32)
    scale = 1.0
    fns = {
        "pallas": lambda p: sgd_steps_pallas(
            p,
            rows,
            cols,
            vals,
            idx,
            lr,
            ridge,
            scale,
            block_seeds=block_seeds,
            interpret=interpret,
            num_warps=num_warps,
        ),
        "xla": jax.jit(lambda p: sgd_steps_xla(p, rows, cols, vals, idx, lr, ridge, scale)),
    }
    result, outs = {}, {}
    for name, f in fns.items():
        t = time.perf_counter()
        outs[name] = jax.block_until_ready(f(params))
        compile_s = time.perf_counter() - t
        best = math.inf
        for _ in range(reps):
            t = time.perf_counter()
            jax.block_until_ready(f(params))
            best = min(best, time.perf_counter() - t)
        result[name] = S * K / best
        print(
            f"{name:7s} S={S} K={K} n={n} m={m} w={width} L={depth} B={batch}: {result[name]:.4g} seed-steps/s "
            f"({best * 1e3:.3f} ms per call, first call {compile_s:.2f} s)"
        )
    if check:
        result["max_rel_diff"] = max(
            float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in zip(outs["pallas"], outs["xla"])
        )
        print(f"max relative difference pallas vs xla: {result['max_rel_diff']:.3g}")
    print(f"speed-up pallas/xla: {result['pallas'] / result['xla']:.3g}x  (device: {jax.devices()[0].device_kind})")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="fused Pallas kernel vs the XLA step")
    ap.add_argument("S", type=int, help="seeds")
    ap.add_argument("K", type=int, help="SGD steps per call")
    for name, default in (("n", 20), ("m", 20), ("width", 20), ("depth", 3), ("batch", 1), ("reps", 5)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--block-seeds", type=int)
    ap.add_argument("--num-warps", type=int, default=4)
    ap.add_argument("--interpret", action="store_true")
    a = ap.parse_args(argv)
    bench(
        a.S,
        a.K,
        n=a.n,
        m=a.m,
        width=a.width,
        depth=a.depth,
        batch=a.batch,
        reps=a.reps,
        block_seeds=a.block_seeds,
        num_warps=a.num_warps,
        interpret=a.interpret,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
