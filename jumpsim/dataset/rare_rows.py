"""Rows of a splitting estimate: one shard of replicas -> the rare, rare_replicas, rare_iterations, rare_curve
and rare_levels tables. The estimator's own columns arrive ready (``methods.Columns``); this module knows no
estimator."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np

from ..config import rare_settings
from .io import rare_part_path, write_atomic
from .schemas import SCHEMAS, build


def rare_tables(cfg, estimate_id: str, lo: int, hi: int, particles, res, columns, grid, wall_s: float) -> dict:
    """Rows of one shard of a splitting estimate (replicas lo..hi-1): ``res`` the engine's result, ``particles``
    the ``rare.Particles`` it ran, ``columns`` the estimator's part (``methods.Columns``), ``grid`` (G,) the
    levels of ``res.replica_level_p`` (R, G)."""
    reps = np.asarray(res.replica_ids, np.int32)
    rp = np.asarray(columns.replicas["p"], np.float64)
    extinct = rp == 0  # an extinct replica's estimate is 0 (all particles tied); NaN: no crossing (rate)
    every = particles.period_steps
    row = {
        "estimate_id": estimate_id,
        "method": cfg.rare.method,
        "score": cfg.rare.score,
        "direction": cfg.rare.direction,
        "start_rank": particles.start_rank,
        "level": particles.target_rank,
        "horizon": cfg.train.steps,
        "every": every,
        "particles": cfg.rare.particles,
        "replica_lo": lo,
        "replica_hi": hi - 1,
        "kill_fraction": cfg.rare.kill_fraction,
        "extinct": int(res.extinct),
        "capped": int(res.capped),
        "wall_s": wall_s,
        "settings": json.dumps(rare_settings(cfg), sort_keys=True),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **columns.row,
    }
    with np.errstate(divide="ignore"):
        log10 = np.log10(rp)
    replicas = build(
        "rare_replicas",
        {
            "estimate_id": [estimate_id] * len(reps),
            "replica": reps,
            "log10_p": log10,
            "iterations": np.asarray(res.iterations, np.int32),
            "extinct": extinct,
            **columns.replicas,
        },
    )
    z, killed = np.asarray(res.log.z, np.float64), np.asarray(res.log.killed, np.int32)
    ri, it = np.nonzero(killed >= 0)
    iterations = build(
        "rare_iterations",
        {
            "estimate_id": [estimate_id] * len(ri),
            "replica": reps[ri],
            "iteration": (it + 1).astype(np.int32),
            "z": z[ri, it],
            "killed": killed[ri, it],
        },
    )
    if columns.curve is None:
        curve = SCHEMAS["rare_curve"].empty_table()
    else:
        curve = build("rare_curve", {"estimate_id": [estimate_id] * len(columns.curve["p"]), **columns.curve})
    lp = np.asarray(res.replica_level_p, np.float64)
    ri, gi = np.nonzero(~np.isnan(lp))
    levels = build(
        "rare_levels",
        {
            "estimate_id": [estimate_id] * len(ri),
            "replica": reps[ri],
            "z": np.asarray(grid, np.float32).astype(np.float64)[gi],
            "p": lp[ri, gi],
        },
    )
    return {
        "rare": build("rare", {k: [v] for k, v in row.items()}),
        "rare_replicas": replicas,
        "rare_iterations": iterations,
        "rare_curve": curve,
        "rare_levels": levels,
    }


def write_rare(out: Path, config_id: str, estimate_id: str, lo: int, hi: int, tables: dict) -> None:
    """Write one shard's ``rare_tables``; the ``rare`` part last, so its presence marks the shard done."""
    for name in ("rare_replicas", "rare_iterations", "rare_curve", "rare_levels", "rare"):
        if name in ("rare_curve", "rare_levels") and tables[name].num_rows == 0:
            continue
        write_atomic(tables[name], rare_part_path(out, name, config_id, estimate_id, lo, hi - 1))
