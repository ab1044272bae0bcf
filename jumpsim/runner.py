"""Running experiments: chunks of seeds to tables, in memory (``simulate``) or on disk (``run``).

``run`` writes each finished chunk as atomic Parquet parts before starting the next, so a
killed job keeps everything it finished, and a rerun of the same command skips every chunk
whose ``runs`` part exists (the ``runs`` part is written last).
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pyarrow as pa

from . import dataset, dynamics
from . import kernel as sim
from .config import Config
from .dataset import ChunkResult
from .errors import ConfigError
from .progress import NoProgress, reporter
from .setup import start_note
from .version import __version__


def versions() -> dict:
    return {
        "trajectory_version": dynamics.TRAJECTORY_VERSION,
        "jumpsim_version": __version__,
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "devices": ", ".join(sorted({d.device_kind for d in jax.devices()})) + f" x{jax.device_count()}",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------------
# chunks and segments


def chunk_ranges(cfg: Config, shard: int = 0, n_shards: int = 1) -> list[tuple[int, int]]:
    """Global chunk boundaries [first, last) in seed ids; shard i/N owns a contiguous block of
    chunks, so every seed belongs to exactly one (shard, chunk)."""
    r = cfg.run
    starts = list(range(r.seed_offset, r.seed_offset + r.seeds, r.chunk))
    chunks = [(s, min(s + r.chunk, r.seed_offset + r.seeds)) for s in starts]
    lo = len(chunks) * shard // n_shards
    hi = len(chunks) * (shard + 1) // n_shards
    return chunks[lo:hi]


def todo_ranges(chunks: list[tuple[int, int]], done: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of `chunks` ([first, last) seed ids) that no finished part covers (`done`: (first, last)
    inclusive, from the part names): a chunk covered by parts of another chunking is done, one covered in part
    (a dataset extended with more seeds) leaves its uncovered pieces. Trajectories do not depend on how seeds
    are cut into chunks, so the pieces give the very rows one run would."""
    covered = np.zeros(0, np.int64)
    if done:
        covered = np.unique(np.concatenate([np.arange(a, b + 1) for a, b in done]))
    out = []
    for lo, hi in chunks:
        seeds = np.setdiff1d(np.arange(lo, hi), covered)
        if len(seeds):
            cuts = np.flatnonzero(np.diff(seeds) != 1)
            for a, b in zip(np.r_[0, cuts + 1], np.r_[cuts, len(seeds) - 1]):
                out.append((int(seeds[a]), int(seeds[b]) + 1))
    return out


def segments(n_checks: int, target: int = 20) -> list[int]:
    """Cut ``n_checks`` into at most ``target``+1 segments of (at most) two distinct lengths,
    so the host can report progress with at most two compilations."""
    seg = max(1, math.ceil(n_checks / target))
    full, rem = divmod(n_checks, seg)
    return [seg] * full + ([rem] if rem else [])


@dynamics.with_float64
def run_chunk(
    kernel: sim.Kernel,
    cfg: Config,
    seeds: np.ndarray,
    trace: bool = False,
    on_segment: Callable[[int], None] | None = None,
) -> ChunkResult:
    """Simulate the given seed ids to the horizon. ``on_segment(n_steps)`` reports progress."""
    every = cfg.detect.every
    n = len(seeds)
    padded = np.concatenate([seeds, np.repeat(seeds[-1:], -n % kernel.pad_to)])
    states = kernel.init(jnp.asarray(padded, jnp.int32))
    traces = []
    if trace:
        s0 = jax.device_get(states)
        sv0, gap0, norm0 = (np.asarray(x)[None] for x in kernel.final(states))
        inside0 = s0.absorbing.inside[None]
        traces.append(
            dynamics.Observation(s0.det.rank[None], s0.loss[None], s0.test_error[None], sv0, gap0, norm0, inside0)
        )
    t0 = 0
    for c in segments(cfg.train.steps // every):
        states, obs = kernel.advance(states, jnp.asarray(t0, jnp.int32), n_checks=c, trace=trace)
        if trace:
            traces.append(jax.device_get(obs))
        t0 += c * every
        if on_segment is not None:
            jax.block_until_ready(states)
            on_segment(c * every)
    trace_out = jax.tree.map(lambda *xs: np.concatenate(xs)[:, :n], *traces) if trace else None
    sv, gap, norm2 = (np.asarray(x)[:n] for x in kernel.final(states))
    final = jax.tree.map(lambda x: x[:n], jax.device_get(states))
    return ChunkResult(np.asarray(seeds, np.int64), final, sv, gap, norm2, trace_out)


def iter_chunks(
    cfg: Config, kernel: sim.Kernel | None = None, shard: int = 0, n_shards: int = 1, on_segment=None
) -> Iterator[tuple[tuple[int, int], ChunkResult]]:
    kernel = sim.build(cfg) if kernel is None else kernel
    for lo, hi in chunk_ranges(cfg, shard, n_shards):
        yield (lo, hi), run_chunk(kernel, cfg, np.arange(lo, hi), on_segment=on_segment)


# --------------------------------------------------------------------------------------
# experiments to tables


def trace_seeds(cfg: Config) -> np.ndarray:
    r = cfg.run
    return np.arange(r.seed_offset, r.seed_offset + min(r.trace_seeds, r.seeds))


def _trace_tables(kernel: sim.Kernel, cfg: Config) -> pa.Table:
    """Per-check traces of the first ``trace_seeds`` seeds. They are simulated again on their
    own with the per-check outputs on; keyed randomness makes them the very same
    trajectories as in the main run (tests check this)."""
    res = run_chunk(kernel, cfg, trace_seeds(cfg), trace=True)
    return dataset.chunk_tables(res, cfg.train.steps, cfg.detect.every, kernel.setup.detection).traces


@dynamics.with_float64
def simulate(cfg: Config) -> dict[str, pd.DataFrame]:
    """Run one experiment in memory; returns {"runs", "events", "passages", "traces"} as
    pandas DataFrames with a ``config_id`` column (the same rows ``run`` writes)."""
    kernel = sim.build(cfg)
    parts = [
        dataset.chunk_tables(res, cfg.train.steps, cfg.detect.every, kernel.setup.detection)
        for _, res in iter_chunks(cfg, kernel)
    ]
    out = {name: pa.concat_tables([getattr(p, name) for p in parts]) for name in ("runs", "events", "passages")}
    out["traces"] = _trace_tables(kernel, cfg) if cfg.run.trace_seeds else dataset.SCHEMAS["traces"].empty_table()
    frames = {}
    for name, t in out.items():
        df = t.to_pandas()
        df.insert(0, "config_id", cfg.config_id)
        frames[name] = df
    return frames


@dataclass
class RunReport:
    """What a ``run`` did, for the human summary."""

    out: Path
    config_ids: list[str] = field(default_factory=list)
    seeds: int = 0
    seed_steps: int = 0
    chunks_done: int = 0
    chunks_skipped: int = 0
    wall_s: float = 0.0
    sim_s: float = 0.0  # wall time of simulated chunks (compilation included)
    steady_seed_steps: int = 0  # seed-steps after the first segment of each experiment,
    steady_s: float = 0.0  # and their wall time: the rate without compilation
    notes: list[str] = field(default_factory=list)  # facts and warnings about the experiments (gd starts)

    @property
    def seed_steps_per_s(self) -> float:
        return self.seed_steps / self.sim_s if self.sim_s > 0 else float("nan")

    @property
    def steady_seed_steps_per_s(self) -> float:
        return self.steady_seed_steps / self.steady_s if self.steady_s > 0 else float("nan")


def check_target(configs: list[Config], out: str | Path, append: bool = False) -> None:
    """Refuse, before anything is computed or written, a dataset directory that holds other experiments (unless
    ``append``). Raises ``ConfigError``."""
    out = Path(out)
    existing = set(dataset.config_ids(out))
    new = [c.config_id for c in configs]
    other = sorted(set(new) - existing)
    if existing and other and not append:
        raise ConfigError(
            "--out",
            f"{out} holds other experiment(s) ({', '.join(sorted(existing))}); pass --append to add "
            f"{', '.join(other)} beside them, or choose another --out",
        )


def check_runs(configs: list[Config], out: str | Path, shard: int = 0, n_shards: int = 1) -> None:
    """Refuse, before anything is computed or written, a shard that owns no chunk, and extending an experiment
    whose runs were written by a jumpsim whose trajectories differ (``dynamics.TRAJECTORY_VERSION``). Raises
    ``ConfigError``."""
    out = Path(out)
    for cfg in configs:
        if not chunk_ranges(cfg, shard, n_shards):
            n = len(chunk_ranges(cfg))
            raise ConfigError(
                "--shard",
                f"shard {shard}/{n_shards} has no chunks ({cfg.run.seeds} seeds make {n} chunk(s) of "
                f"run.chunk = {cfg.run.chunk}); use at most {n} shards or a smaller run.chunk",
            )
    exps = dataset.read_table(out, "experiments") if (out / "experiments.parquet").exists() else None
    for cfg in configs if exps is not None else ():
        row = exps[exps.config_id == cfg.config_id]
        if row.empty or not dataset.part_ranges(out, "runs", cfg.config_id):
            continue
        v = row.trajectory_version.iloc[0]
        v = 1 if pd.isna(v) else int(v)
        if v != dynamics.TRAJECTORY_VERSION:
            raise ConfigError(
                "--out",
                f"{out} holds runs of {cfg.config_id} from a jumpsim whose trajectories differ (trajectory version "
                f"{v}, this one {dynamics.TRAJECTORY_VERSION}): extending it would mix them; choose another --out",
            )


@dynamics.with_float64
def run(
    configs: list[Config],
    out: str | Path,
    shard: int = 0,
    n_shards: int = 1,
    progress: bool | NoProgress = True,
    append: bool = False,
) -> RunReport:
    """Simulate every config (a sweep gives several) into the dataset directory ``out``; ``progress``: a
    reporter (``jumpsim.progress``), or True for a tqdm bar, False for none.

    Chunks whose ``runs`` part already exists are skipped, so rerunning the same command
    resumes a killed job; see ``check_target`` for what is refused."""
    out = Path(out)
    check_target(configs, out, append)
    check_runs(configs, out, shard, n_shards)
    t_start = time.perf_counter()
    report = RunReport(out=out)
    kernels = [sim.build(cfg) for cfg in configs]  # a failing gd start writes nothing
    bar = reporter(progress)
    for step in dict.fromkeys(k.step for k in kernels):  # each choice of step code once
        bar.note(f"SGD steps: {sim.STEPS[step]}")
    for cfg, kernel in zip(configs, kernels):
        note = start_note(cfg, kernel.info)
        if note:
            report.notes.append(note)
            bar.note(note)
    out.mkdir(parents=True, exist_ok=True)
    dataset.remove_stale_temporaries(out)
    for cfg, kernel in zip(configs, kernels):
        cid = cfg.config_id
        report.config_ids.append(cid)
        dataset.write_experiments(out, [dataset.experiment_row(cfg, kernel.info, versions())])
        ranges = chunk_ranges(cfg, shard, n_shards)
        todo = todo_ranges(ranges, dataset.part_ranges(out, "runs", cid, readable=True))
        report.chunks_skipped += sum(not any(lo <= a < hi for a, _ in todo) for lo, hi in ranges)
        t0 = time.perf_counter()
        tr = trace_seeds(cfg)
        owns_traces = len(tr) and any(lo <= tr[0] < hi for lo, hi in ranges)
        trace_path = dataset.part_path(out, "traces", cid, int(tr[0]), int(tr[-1])) if len(tr) else None
        if owns_traces and not trace_path.exists():
            dataset.write_atomic(_trace_tables(kernel, cfg), trace_path)
        n_seeds = sum(hi - lo for lo, hi in todo)
        last = [None]

        def clock(seed_steps):  # time between segments, skipping the first (it compiles)
            now = time.perf_counter()
            if last[0] is not None:
                report.steady_seed_steps += seed_steps
                report.steady_s += now - last[0]
            last[0] = now

        bar.start(n_seeds * cfg.train.steps, desc=f"{cfg.name} [{cid}]")
        try:
            for lo, hi in todo:
                res = run_chunk(
                    kernel, cfg, np.arange(lo, hi), on_segment=lambda n, k=hi - lo: (bar.update(n * k), clock(n * k))
                )
                dataset.write_chunk(
                    out,
                    cid,
                    lo,
                    hi - 1,
                    dataset.chunk_tables(res, cfg.train.steps, cfg.detect.every, kernel.setup.detection),
                )
                report.chunks_done += 1
        finally:
            bar.close()
        report.sim_s += time.perf_counter() - t0
        report.seeds += n_seeds
        report.seed_steps += n_seeds * cfg.train.steps
    report.wall_s = time.perf_counter() - t_start
    return report
