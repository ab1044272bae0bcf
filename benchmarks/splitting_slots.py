"""Throughput of the splitting engine's slot table against its size, on one config.

    PYTHONPATH=. python benchmarks/splitting_slots.py CONFIG.toml [--set key=value ...] [--steps 1000]
        [--replicas 32 256 2048] [--particles 50] [--baseline-seeds 65536] [--baseline-steps 20000] [--json PATH]

For each replica count R, the initial population of a TAMS estimate (R x N particles, every one run for
--steps SGD steps, no kill step) goes through a table of R k slots on an accelerator (0.4 R k on a CPU),
k = ceil(0.2 N): SGD steps/s after compilation (a first call with a one-period horizon compiles the same
table). Then `jumpsim run` of the same config with --baseline-seeds seeds for --baseline-steps steps (long
enough that its per-chunk rank checks and Parquet writes weigh as in real runs; at 1,000 steps they dominate),
in the same process. Why: on a
GPU the table's lockstep loop is latency bound until it holds tens of thousands of slots; this says how many
replicas an estimate needs before the engine runs at the simulator's speed.
"""

import argparse
import dataclasses
import json
import tempfile
import time
import warnings
from pathlib import Path

from jumpsim.devices import use_cpu_devices

use_cpu_devices()

import jax  # noqa: E402

import jumpsim  # noqa: E402
from jumpsim import dynamics, rare, runner, splitting  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--replicas", type=int, nargs="+", default=[32, 256, 2048])
    ap.add_argument("--particles", type=int, default=50)
    ap.add_argument("--baseline-seeds", type=int, default=65536)
    ap.add_argument("--baseline-steps", type=int, default=20000)
    ap.add_argument("--json", type=str, default=None)
    a = ap.parse_args(argv)
    cfg = jumpsim.load_config(a.config, a.set + [f"train.steps={a.steps}"])
    with dynamics.float64_scope():
        p = rare.particles(cfg)
    horizon = a.steps // p.period_steps
    rows = []
    for r in a.replicas:
        kw = dict(particles=a.particles, replicas=r, max_iterations=0)
        with warnings.catch_warnings(), dynamics.float64_scope():
            warnings.simplefilter("ignore", RuntimeWarning)  # max_iterations = 0: "biased" (no kill step here)
            splitting.estimate(p.init, p.advance, p.score, horizon=1, **kw)  # compiles the table
            t = time.perf_counter()
            res = splitting.estimate(p.init, p.advance, p.score, horizon=horizon, **kw)
            wall = time.perf_counter() - t
        steps = res.particle_steps * p.period_steps
        slots = splitting.table_size(r, splitting.kill_count(a.particles, 0.2))
        rows.append({"replicas": r, "slots": slots, "sgd_steps": steps, "wall_s": wall, "steps_per_s": steps / wall})
        print(
            f"R = {r:6d}, {slots:7d} slots: {steps:,} SGD steps in {wall:.1f} s, {steps / wall / 1e6:.2f} M/s",
            flush=True,
        )
    result = {"config": a.config, "set": a.set, "steps": a.steps, "particles": a.particles, "tables": rows}
    if a.baseline_seeds:
        run = dataclasses.replace(cfg.run, seeds=a.baseline_seeds, trace_seeds=0)
        base = dataclasses.replace(cfg, run=run, train=dataclasses.replace(cfg.train, steps=a.baseline_steps))
        with tempfile.TemporaryDirectory() as d:
            rep = jumpsim.run([base], d, progress=False)
        after = rep.steady_seed_steps / rep.steady_s if rep.steady_s else rep.seed_steps / rep.sim_s
        result.update(
            run_seeds=a.baseline_seeds,
            run_steps=a.baseline_steps,
            run_steps_per_s=rep.seed_steps / rep.sim_s,
            run_after_compile=after,
        )
        print(
            f"jumpsim run, {a.baseline_seeds} seeds x {a.baseline_steps} steps: {after / 1e6:.2f} M seed-steps/s after "
            "compilation"
        )
    result.update(runner.versions())
    print(f"{result['devices']}, jumpsim {result['jumpsim_version']}, jax {result['jax_version']}; {jax.devices()}")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
