"""Brute-force rows: a finished chunk of seeds (``ChunkResult``) -> the runs, events, passages and traces
tables, and writing them as one chunk's parts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from .io import part_path, write_atomic
from .schemas import SCHEMAS, build


class ChunkResult(NamedTuple):
    """Host copy of a finished chunk (what ``runner.run_chunk`` returns and ``chunk_tables`` turns
    into rows): seed ids (S,) int64, the final ``dynamics.SeedState`` as numpy, singular values
    (S, min(n, m)), balancedness gap (S,) and |theta|^2 (S,) at each seed's last finite check, and
    per-check observations (n_checks + 1, S, ...) including the check at step 0, or None."""

    seeds: np.ndarray
    state: Any
    sv: np.ndarray
    balance_gap: np.ndarray
    norm2: np.ndarray
    trace: Any


class ChunkTables(NamedTuple):
    runs: pa.Table
    events: pa.Table
    passages: pa.Table
    traces: pa.Table


def _absorbing_columns(b, detection, every: int, n: int) -> dict:
    """B_r visit columns of the runs table: null when the run did not count them."""
    cols = {
        "br_rank": np.full(n, detection.absorbing_rank, np.int32),
        "br_entries": np.asarray(b.entries),
        "br_exits": np.asarray(b.exits),
        "br_steps": np.asarray(b.checks_inside, np.int64) * every,
        "br_first_entry": np.asarray(b.first_entry, np.int64),
    }
    if not detection.absorbing:
        return {}  # left out: null
    first = cols["br_first_entry"]
    return {**cols, "br_first_entry": pa.array(first, mask=first < 0)}


def chunk_tables(res: ChunkResult, horizon: int, every: int, detection) -> ChunkTables:
    """Rows of one finished chunk (traces only if ``res.trace`` is set); ``detection``: the
    ``dynamics.Detection`` it ran with (B_r columns are null unless it counted B_r visits)."""
    s, d, b = res.state, res.state.det, res.state.absorbing
    seeds = res.seeds
    diverged = np.asarray(s.diverged)
    cap = d.ev_step.shape[1]
    n_events = np.asarray(d.n_events)
    runs = build(
        "runs",
        {
            "seed": seeds,
            "status": np.where(diverged, "diverged", "ok"),
            "steps": np.where(diverged, np.asarray(s.stop_step), horizon).astype(np.int64),
            "horizon": np.full(len(seeds), horizon, np.int64),
            "initial_rank": d.initial_rank,
            "final_rank": d.rank,
            "min_rank": d.min_rank,
            "n_down": d.n_down,
            "n_up": d.n_up,
            "n_events": n_events,
            "events_overflow": np.maximum(n_events - cap, 0).astype(np.int32),
            "final_loss": np.asarray(s.loss, np.float64),
            "final_test_error": np.asarray(s.test_error, np.float64),
            "final_singular_values": list(np.asarray(res.sv, np.float64)),
            **_absorbing_columns(b, detection, every, len(seeds)),
            "final_balance_gap": np.asarray(res.balance_gap, np.float64),
            "final_param_norm2": np.asarray(res.norm2, np.float64),
        },
    )
    kept = np.minimum(n_events, cap)
    i, j = np.nonzero(np.arange(cap)[None, :] < kept[:, None])  # (seed slot, event slot), in order
    before, after = np.asarray(d.ev_before)[i, j], np.asarray(d.ev_after)[i, j]
    events = build(
        "events",
        {
            "seed": seeds[i],
            "step": np.asarray(d.ev_step)[i, j].astype(np.int64),
            "rank_before": before,
            "rank_after": after,
            "direction": np.where(after < before, "down", "up"),
        },
    )
    start = np.asarray(d.initial_rank)
    i, lv = np.nonzero(np.arange(d.passage.shape[1])[None, :] < start[:, None])  # levels below start
    step = np.asarray(d.passage)[i, lv].astype(np.int64)
    passages = build(
        "passages",
        {"seed": seeds[i], "start_rank": start[i], "level": lv, "step": pa.array(step, mask=step < 0)},
    )
    if res.trace is None:
        traces = SCHEMAS["traces"].empty_table()
    else:
        tr = res.trace  # (C, S, ...)
        c, n = tr.rank.shape
        traces = build(
            "traces",
            {
                "seed": np.tile(seeds, c),
                "step": np.repeat(np.arange(c, dtype=np.int64) * every, n),
                "rank": tr.rank.reshape(-1),
                "loss": tr.loss.reshape(-1).astype(np.float64),
                "test_error": tr.test_error.reshape(-1).astype(np.float64),
                "singular_values": list(tr.sv.reshape(c * n, -1).astype(np.float64)),
                "balance_gap": tr.balance_gap.reshape(-1).astype(np.float64),
                "param_norm2": tr.norm2.reshape(-1).astype(np.float64),
                "in_br": tr.in_br.reshape(-1),
            },
        )
    return ChunkTables(runs, events, passages, traces)


def write_chunk(out: Path, config_id: str, first_seed: int, last_seed: int, t: ChunkTables) -> None:
    """Write the four parts of a chunk; ``runs`` last, so its presence marks the chunk done."""
    for name in ("events", "passages", "traces", "runs"):
        table = getattr(t, name)
        if name == "traces" and table.num_rows == 0:
            continue
        write_atomic(table, part_path(out, name, config_id, first_seed, last_seed))
