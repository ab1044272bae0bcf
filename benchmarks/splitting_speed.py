"""Splitting engine speed on the DLN: SGD steps/s of ``jumpsim.rare.run_rare`` (TAMS) on one config.

    PYTHONPATH=. python benchmarks/splitting_speed.py CONFIG.toml [--set key=value ...] [--rounds]
        [--baseline-seeds 1024] [--json PATH]

Prints wall time, particle periods, SGD steps/s (particle_steps * period_steps / wall; compile time
included), and with --rounds the slot table's use: device rounds, seconds in them and in the exchanges
(compiles included), slots, and the busy fraction of slot-periods (periods advanced / (slots x periods
looped)); idle slots cost as much as busy ones on a CPU. Then the baseline in the same process: `jumpsim
run` of the same config with --baseline-seeds seeds (0: skip), its seed-steps/s with and without
compilation, and the ratio; device and versions; --json writes all of it.
"""

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from jumpsim.devices import use_cpu_devices

use_cpu_devices()

import jax  # noqa: E402

import jumpsim  # noqa: E402
from jumpsim import rare, runner, splitting  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--rounds", action="store_true")
    ap.add_argument("--baseline-seeds", type=int, default=1024)
    ap.add_argument("--json", type=str, default=None)
    a = ap.parse_args(argv)
    cfg = jumpsim.load_config(a.config, a.set)
    print(f"jumpsim from {jumpsim.__file__}; devices {jax.local_devices()}", file=sys.stderr)
    meter = splitting.SlotMeter() if a.rounds else None
    with tempfile.TemporaryDirectory() as d:
        o = rare.run_rare(cfg, d, progress=False, say=lambda *x: None, meter=meter)
    r = o.result
    k = cfg.detect.every
    if meter is not None:
        print(
            f"  {meter.rounds} rounds of <= {splitting.ROUND} periods, {meter.slots} slots: "
            f"{meter.round_s:.1f} s in rounds, {meter.exchange_s:.1f} s in exchanges; "
            f"busy >= {meter.busy / max(meter.looped, 1):.0%} of slot-periods"
        )
    rate = r.particle_steps * k / o.wall_s
    print(
        f"wall {o.wall_s:.1f} s, p = {r.p:.4g}, iterations {r.iterations.tolist()}, "
        f"{r.particle_steps * k:,} SGD steps, {rate / 1e6:.3f} M SGD steps/s"
    )
    result = {
        "config": a.config,
        "set": a.set,
        "replicas": cfg.rare.replicas,
        "particles": cfg.rare.particles,
        "splitting_wall_s": o.wall_s,
        "splitting_sgd_steps": int(r.particle_steps * k),
        "splitting_steps_per_s": rate,
        "p": float(r.p),
        "iterations": r.iterations.tolist(),
        **({"slot_table": dataclasses.asdict(meter)} if meter is not None else {}),
        **runner.versions(),
    }
    if a.baseline_seeds:
        base = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seeds=a.baseline_seeds, trace_seeds=0))
        with tempfile.TemporaryDirectory() as d:
            rep = jumpsim.run([base], d, progress=False)
        result.update(
            run_seed_steps=rep.seed_steps,
            run_steps_per_s=rep.seed_steps / rep.sim_s,
            run_steps_per_s_after_compile=rep.steady_seed_steps / rep.steady_s if rep.steady_s else None,
            ratio=rate / (rep.seed_steps / rep.sim_s),
        )
        print(
            f"jumpsim run, {a.baseline_seeds} seeds, same process: "
            f"{result['run_steps_per_s'] / 1e6:.3f} M seed-steps/s "
            f"(compile included; {(result['run_steps_per_s_after_compile'] or 0) / 1e6:.3f} M after it); "
            f"splitting / run = {result['ratio']:.2f}"
        )
    print(f"{result['devices']}, jumpsim {result['jumpsim_version']}, jax {result['jax_version']}")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
