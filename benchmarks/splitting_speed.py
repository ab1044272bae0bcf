"""Splitting engine speed on the DLN: SGD steps/s of ``jumpsim.rare.run_rare`` (TAMS) on one config.

    PYTHONPATH=. python benchmarks/splitting_speed.py CONFIG.toml [--set key=value ...] [--batches]

Prints wall time, particle periods, SGD steps/s (particle_steps * period_steps / wall; compile time
included), and with --batches one line per simulated batch (valid slots, padded size, start-period
spread, wall seconds, lockstep efficiency = periods advanced / (size * periods looped)).
Compare with `jumpsim run CONFIG --seeds 1024 --quiet`, which prints seed-steps/s, in the same session.
"""

import argparse
import sys
import tempfile
import time

from jumpsim.cli import use_all_cpu_cores

use_all_cpu_cores()

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jumpsim  # noqa: E402
from jumpsim import rare, splitting  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--batches", action="store_true")
    a = ap.parse_args()
    cfg = jumpsim.load_config(a.config, a.set)
    print(f"jumpsim from {jumpsim.__file__}; devices {jax.local_devices()}", file=sys.stderr)
    rows = []
    if a.batches:
        orig = splitting._batch

        def timed(*args, **kw):
            t = time.perf_counter()
            pop, out = orig(*args, **kw)
            jax.block_until_ready(out)
            valid = np.asarray(args[8])
            rows.append(
                (int(valid.sum()), len(valid), int(np.asarray(out.steps)[valid].sum()), time.perf_counter() - t)
            )
            return pop, out

        splitting._batch = timed
    with tempfile.TemporaryDirectory() as d:
        o = rare.run_rare(cfg, d, progress=False, say=lambda *x: None)
    r = o.result
    k = cfg.detect.every
    for m, size, steps, dt in rows:
        print(f"  batch {m:5d}/{size:5d}  periods {steps:8d}  {dt:7.2f} s  {steps * k / dt / 1e6:6.2f} M steps/s")
    print(
        f"wall {o.wall_s:.1f} s, p = {r.p:.4g}, iterations {r.iterations.tolist()}, "
        f"{r.particle_steps * k:,} SGD steps, {r.particle_steps * k / o.wall_s / 1e6:.3f} M SGD steps/s"
    )


if __name__ == "__main__":
    main()
