"""Result tables: Arrow schemas, chunk -> tables, atomic Parquet parts, dataset reading.

Layout (one directory per ``jumpsim run``)::

    OUT/experiments.parquet
    OUT/{runs,events,passages,traces}/config_id=<id>/part-<first seed>-<last seed>.parquet

``config_id`` lives in the directory name only (hive partitioning): pandas, pyarrow.dataset,
DuckDB and polars all read it back as a column, and storing it in the files too would make
pandas' partition inference fail. Part names carry the seed range, not the shard or chunk
number, so the same seeds always land in the same file whatever the sharding: reruns are
idempotent and resumes can tell what is done. Each part is written to a dot-named temporary
file and renamed into place, so readers never see half a file.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .errors import ConfigError


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


# 2: B_r columns in runs and traces; 3: per-replica flux of the rate form (LATER_COLUMNS); 4: rare_levels
SCHEMA_VERSION = 4
TABLES = ("runs", "events", "passages", "traces")

_f64_list = pa.list_(pa.float64())
SCHEMAS = {
    "runs": pa.schema(
        [
            ("seed", pa.int64()),
            ("status", pa.string()),
            ("steps", pa.int64()),
            ("horizon", pa.int64()),
            ("initial_rank", pa.int32()),
            ("final_rank", pa.int32()),
            ("min_rank", pa.int32()),
            ("n_down", pa.int32()),
            ("n_up", pa.int32()),
            ("n_events", pa.int32()),
            ("events_overflow", pa.int32()),
            ("final_loss", pa.float64()),
            ("final_test_error", pa.float64()),
            ("final_singular_values", _f64_list),
        ]
    ),
    "events": pa.schema(
        [
            ("seed", pa.int64()),
            ("step", pa.int64()),
            ("rank_before", pa.int32()),
            ("rank_after", pa.int32()),
            ("direction", pa.string()),
        ]
    ),
    "passages": pa.schema(
        [
            ("seed", pa.int64()),
            ("start_rank", pa.int32()),
            ("level", pa.int32()),
            ("step", pa.int64()),  # null: not reached by the horizon (right-censored)
        ]
    ),
    "traces": pa.schema(
        [
            ("seed", pa.int64()),
            ("step", pa.int64()),
            ("rank", pa.int32()),
            ("loss", pa.float64()),
            ("test_error", pa.float64()),
            ("singular_values", _f64_list),
        ]
    ),
    "experiments": pa.schema(
        [
            ("config_id", pa.string()),
            ("name", pa.string()),
            ("config", pa.string()),  # normalized config as JSON text
            ("threshold", pa.float64()),
            ("relative_threshold", pa.bool_()),
            ("horizon", pa.int64()),
            ("start", pa.string()),  # JSON: facts about a shared start (init = "gd")
            ("schema_version", pa.int32()),
            ("jumpsim_version", pa.string()),
            ("jax_version", pa.string()),
            ("backend", pa.string()),
            ("devices", pa.string()),
            ("created", pa.string()),
        ]
    ),
}
RARE_TABLES = ("rare", "rare_replicas", "rare_iterations", "rare_curve", "rare_levels")
SCHEMAS.update(
    {
        "rare": pa.schema(  # one row per splitting estimate and shard of replicas
            [
                ("estimate_id", pa.string()),
                ("method", pa.string()),  # "tams" | "rate"
                ("score", pa.string()),
                ("direction", pa.string()),  # "down" | "up"
                ("start_rank", pa.int32()),
                ("level", pa.int32()),  # target: rank <= level (down) or >= level (up)
                ("horizon", pa.int64()),  # steps (tams: the horizon T; rate: train.steps, for P within T)
                ("every", pa.int64()),  # steps per period
                ("particles", pa.int32()),
                ("replica_lo", pa.int32()),
                ("replica_hi", pa.int32()),  # inclusive
                ("kill_fraction", pa.float64()),
                ("basin", pa.float64()),  # rate form (null for tams)
                ("interface", pa.float64()),
                ("flux_crossings", pa.int64()),
                ("flux_exposure_steps", pa.int64()),
                ("flux_overflow", pa.int64()),
                ("seed_steps", pa.int64()),  # SGD steps simulated, replays, clones and flux included
                ("extinct", pa.int32()),
                ("capped", pa.int32()),  # replicas stopped by rare.max_iterations
                ("period_capped", pa.int64()),  # rate: AMS particles stopped by rare.max_steps
                ("wall_s", pa.float64()),
                ("settings", pa.string()),  # JSON of the [rare] section
                ("created", pa.string()),
            ]
        ),
        "rare_replicas": pa.schema(
            [
                ("estimate_id", pa.string()),
                ("replica", pa.int32()),
                ("p", pa.float64()),  # tams: P(target within T); rate: P(target before basin | own crossings)
                ("log10_p", pa.float64()),  # -inf for an extinct replica
                ("iterations", pa.int32()),
                ("reached", pa.int32()),
                ("extinct", pa.bool_()),
            ]
        ),
        "rare_iterations": pa.schema(
            [
                ("estimate_id", pa.string()),
                ("replica", pa.int32()),
                ("iteration", pa.int32()),
                ("z", pa.float64()),
                ("killed", pa.int32()),
            ]
        ),
        "rare_curve": pa.schema(  # tams: the replica's estimate of P(target within step)
            [("estimate_id", pa.string()), ("replica", pa.int32()), ("step", pa.int64()), ("p", pa.float64())]
        ),
        # schema version 4: the replica's estimate of P(max score >= z) at the intermediate levels
        # splitting.LEVEL_GRID (rate form: before the basin, from its own crossings; none without crossings)
        "rare_levels": pa.schema(
            [("estimate_id", pa.string()), ("replica", pa.int32()), ("z", pa.float64()), ("p", pa.float64())]
        ),
    }
)
# Columns every version of jumpsim wrote (schema version 1): a dataset without them is unreadable.
# Columns added later are optional: older datasets read them as null.
REQUIRED = {name: tuple(SCHEMAS[name].names) for name in SCHEMAS}
# Added later (schema 2: the paper's absorbing sets B_r; schema 3: the rate form's per-replica flux): null in
# datasets written before.
LATER_COLUMNS = {
    "runs": [
        ("br_rank", pa.int32()),  # r of B_r
        ("br_entries", pa.int32()),  # entries into B_r (a start inside counts as one)
        ("br_exits", pa.int32()),  # exits from B_r after an entry: the one-way claim in its own terms
        ("br_steps", pa.int64()),  # steps spent inside (checks inside x detect.every)
        ("br_first_entry", pa.int64()),  # step of the first entry, null if never
        ("final_balance_gap", pa.float64()),  # relative balancedness gap at the last finite check
        ("final_param_norm2", pa.float64()),  # |theta|^2 at the last finite check
    ],
    "traces": [("balance_gap", pa.float64()), ("param_norm2", pa.float64()), ("in_br", pa.bool_())],
    # schema version 3: the rate form's replicas each run their own flux phase (null for tams)
    "rare_replicas": [("flux_crossings", pa.int64()), ("flux_exposure_steps", pa.int64())],
}
for _name, _cols in LATER_COLUMNS.items():
    for _f in _cols:
        SCHEMAS[_name] = SCHEMAS[_name].append(pa.field(*_f))
for _name in SCHEMAS:
    SCHEMAS[_name] = SCHEMAS[_name].with_metadata(
        {"jumpsim_schema_version": str(SCHEMA_VERSION), "jumpsim_table": _name}
    )


class ChunkTables(NamedTuple):
    runs: pa.Table
    events: pa.Table
    passages: pa.Table
    traces: pa.Table


def _table(name: str, cols: dict) -> pa.Table:
    """A table of jumpsim's schema from column values; columns added after schema 1 may be left out (null)."""
    schema = SCHEMAS[name]
    n = len(next(iter(cols.values()))) if cols else 0

    def col(f):
        if cols.get(f.name) is None and f.name not in REQUIRED.get(name, ()):
            return pa.nulls(n, f.type)
        v = cols[f.name]
        return v.cast(f.type) if isinstance(v, pa.Array) else pa.array(v, type=f.type)

    return pa.table({f.name: col(f) for f in schema}, schema=schema)


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
    runs = _table(
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
    events = _table(
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
    passages = _table(
        "passages",
        {"seed": seeds[i], "start_rank": start[i], "level": lv, "step": pa.array(step, mask=step < 0)},
    )
    if res.trace is None:
        traces = SCHEMAS["traces"].empty_table()
    else:
        tr = res.trace  # (C, S, ...)
        c, n = tr.rank.shape
        traces = _table(
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


# --------------------------------------------------------------------------------------
# writing


def part_name(first_seed: int, last_seed: int) -> str:
    """File name of the part holding seeds first..last (inclusive)."""
    return f"part-{first_seed:010d}-{last_seed:010d}.parquet"


def part_path(out: Path, table: str, config_id: str, first_seed: int, last_seed: int) -> Path:
    return Path(out) / table / f"config_id={config_id}" / part_name(first_seed, last_seed)


_HOST = socket.gethostname().replace(".", "_")
_TMP = re.compile(r"^\..*\.tmp-(?P<host>[^.]+)-(?P<pid>\d+)$")
_PART = re.compile(r"^part-(\d+)-(\d+)\.parquet$")


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write to a dot-named temporary file (skipped by every reader), fsync, then rename.
    The temporary name carries host and pid, so writers on a shared file system never
    collide and stale files of killed writers can be recognised."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{_HOST}-{os.getpid()}")
    try:
        pq.write_table(table.cast(SCHEMAS[table.schema.metadata[b"jumpsim_table"].decode()]), tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def temporaries(out: str | Path) -> list[Path]:
    """Temporary files left in a dataset (by writers that are running or were killed)."""
    return sorted(p for p in Path(out).rglob(".*.tmp-*") if _TMP.match(p.name))


def remove_stale_temporaries(out: str | Path) -> int:
    """Delete temporaries of writers on this host that are no longer running; returns how
    many. Those of other hosts may belong to a live shard and are left alone."""
    n = 0
    for p in temporaries(out):
        m = _TMP.match(p.name)
        if m["host"] != _HOST:
            continue
        try:
            os.kill(int(m["pid"]), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        p.unlink(missing_ok=True)
        n += 1
    return n


def config_ids(out: str | Path) -> list[str]:
    """config_ids present in a dataset (experiments table or any partition directory)."""
    out = Path(out)
    ids = set()
    if (out / "experiments.parquet").exists():
        ids |= set(pq.read_table(out / "experiments.parquet", columns=["config_id"])["config_id"].to_pylist())
    for name in TABLES + RARE_TABLES:
        if (out / name).is_dir():
            ids |= {d.name.split("=", 1)[1] for d in (out / name).iterdir() if d.name.startswith("config_id=")}
    return sorted(ids)


def part_ranges(out: str | Path, table: str, config_id: str) -> list[tuple[int, int]]:
    """(first seed, last seed) of every part file of one table and config, sorted."""
    d = Path(out) / table / f"config_id={config_id}"
    if not d.is_dir():
        return []
    return sorted((int(m[1]), int(m[2])) for m in (_PART.match(p.name) for p in d.iterdir()) if m)


def write_chunk(out: Path, config_id: str, first_seed: int, last_seed: int, t: ChunkTables) -> None:
    """Write the four parts of a chunk; ``runs`` last, so its presence marks the chunk done."""
    for name in ("events", "passages", "traces", "runs"):
        table = getattr(t, name)
        if name == "traces" and table.num_rows == 0:
            continue
        write_atomic(table, part_path(out, name, config_id, first_seed, last_seed))


def experiment_row(cfg, info: dict, versions: dict) -> pa.Table:
    from .config import to_dict

    return _table(
        "experiments",
        {
            "config_id": [cfg.config_id],
            "name": [cfg.name],
            "config": [json.dumps(to_dict(cfg), sort_keys=True)],
            "threshold": [cfg.detect.threshold],
            "relative_threshold": [cfg.detect.relative],
            "horizon": [cfg.train.steps],
            "start": [json.dumps(info, sort_keys=True)],
            "schema_version": [SCHEMA_VERSION],
            **{k: [v] for k, v in versions.items()},
        },
    )


def write_experiments(out: Path, rows: list[pa.Table]) -> None:
    """Merge rows into OUT/experiments.parquet (one row per config_id, newest wins)."""
    path = Path(out) / "experiments.parquet"
    new = pa.concat_tables(rows)
    if path.exists():
        old = pq.read_table(path)
        keep = ~np.isin(
            old["config_id"].to_numpy(zero_copy_only=False), new["config_id"].to_numpy(zero_copy_only=False)
        )
        new = pa.concat_tables([old.filter(pa.array(keep)).cast(SCHEMAS["experiments"]), new])
    write_atomic(new, path)


# --------------------------------------------------------------------------------------
# reading


def schema_ok(name: str, schema: pa.Schema) -> bool:
    """A part's schema is jumpsim's: every column it has is in the current schema with the same type,
    and every column all versions wrote is there (later columns may be absent: older datasets)."""
    want = SCHEMAS[name]
    have = {f.name: f.type for f in schema}
    known = all(c in want.names and want.field(c).type == typ for c, typ in have.items())
    return known and all(c in have for c in REQUIRED[name])


def _require_columns(name: str, where: Path, present: list[str]) -> None:
    """Columns every jumpsim version wrote must be there; later ones are optional (read as null)."""
    missing = [c for c in REQUIRED[name] if c not in present]
    if missing:
        raise ConfigError(
            str(where), f"the {name} table lacks column(s) {', '.join(missing)} (not written by jumpsim, or damaged)"
        )


def read_table(out: str | Path, name: str) -> pd.DataFrame:
    """One table of a dataset as pandas, with ``config_id`` as a string column (empty frame with the
    right columns when there are no parts). Columns added after a dataset was written read as null;
    a part that lacks a column every version wrote raises ``ConfigError`` naming file and column."""
    if name == "experiments":
        path = Path(out) / "experiments.parquet"
        if not path.exists():
            return SCHEMAS[name].empty_table().to_pandas()
        t = pq.read_table(path)
        _require_columns(name, path, t.column_names)
        for f in SCHEMAS[name]:
            if f.name not in t.column_names:
                t = t.append_column(f.name, pa.nulls(t.num_rows, f.type))
        return t.to_pandas()
    root = Path(out) / name
    schema = pa.unify_schemas([pa.schema([("config_id", pa.string())]), SCHEMAS[name]])
    if not root.exists():
        return schema.empty_table().to_pandas()
    part = ds.partitioning(pa.schema([("config_id", pa.string())]), flavor="hive")
    dataset = ds.dataset(root, format="parquet", partitioning=part, schema=schema)
    for frag in dataset.get_fragments():
        _require_columns(name, Path(frag.path), frag.physical_schema.names)
    return dataset.to_table().to_pandas()


def read_dataset(out: str | Path) -> dict[str, pd.DataFrame]:
    """All tables of a dataset directory: {"experiments", "runs", "events", "passages", "traces", "rare", ...}."""
    return {name: read_table(out, name) for name in ("experiments", *TABLES, *RARE_TABLES)}


# --------------------------------------------------------------------------------------
# splitting estimates


def rare_part_path(out: Path, table: str, config_id: str, estimate_id: str, lo: int, hi: int) -> Path:
    """Part of a splitting table for replicas lo..hi (inclusive) of one estimate."""
    return Path(out) / table / f"config_id={config_id}" / f"part-{estimate_id}-{lo:06d}-{hi:06d}.parquet"


def rare_tables(
    cfg, estimate_id: str, lo: int, hi: int, particles, res, basin: float, interface: float, wall_s: float
) -> dict:
    """Rows of one shard of a splitting estimate (replicas lo..hi-1): ``res`` a ``splitting.TamsResult``
    or ``RateResult``, ``particles`` the ``rare.Particles`` it ran."""
    import dataclasses
    import datetime

    tams = cfg.rare.method == "tams"
    reps = np.asarray(res.replica_ids, np.int32)
    rp = np.asarray(res.replica_p if tams else res.replica_p_ab, np.float64)
    extinct = rp == 0  # an extinct replica's estimate is 0 (all particles tied); NaN: no crossing (rate)
    every = particles.period_steps
    null = None
    row = {
        "estimate_id": [estimate_id],
        "method": [cfg.rare.method],
        "score": [cfg.rare.score],
        "direction": [cfg.rare.direction],
        "start_rank": [particles.start_rank],
        "level": [particles.target_rank],
        "horizon": [cfg.train.steps],
        "every": [every],
        "particles": [cfg.rare.particles],
        "replica_lo": [lo],
        "replica_hi": [hi - 1],
        "kill_fraction": [cfg.rare.kill_fraction],
        "basin": [null if tams else basin],
        "interface": [null if tams else interface],
        "flux_crossings": [null if tams else res.flux_crossings],
        "flux_exposure_steps": [null if tams else res.flux_exposure * every],
        "flux_overflow": [null if tams else res.flux_overflow],
        "seed_steps": [int(res.particle_steps) * every],
        "extinct": [int(res.extinct)],
        "capped": [int(res.capped)],
        "period_capped": [0 if tams else int(res.period_capped)],
        "wall_s": [wall_s],
        "settings": [json.dumps(dataclasses.asdict(cfg.rare), sort_keys=True)],
        "created": [datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")],
    }
    with np.errstate(divide="ignore"):
        log10 = np.log10(rp)
    replicas = _table(
        "rare_replicas",
        {
            "estimate_id": [estimate_id] * len(reps),
            "replica": reps,
            "p": rp,
            "log10_p": log10,
            "iterations": np.asarray(res.iterations, np.int32),
            "reached": np.asarray(res.reached if tams else np.zeros(len(rp)), np.int32),
            "extinct": extinct,
            "flux_crossings": None if tams else np.asarray(res.replica_crossings, np.int64),
            "flux_exposure_steps": None if tams else np.asarray(res.replica_exposure, np.int64) * every,
        },
    )
    z, killed = np.asarray(res.log.z, np.float64), np.asarray(res.log.killed, np.int32)
    ri, it = np.nonzero(killed >= 0)
    iterations = _table(
        "rare_iterations",
        {
            "estimate_id": [estimate_id] * len(ri),
            "replica": reps[ri],
            "iteration": (it + 1).astype(np.int32),
            "z": z[ri, it],
            "killed": killed[ri, it],
        },
    )
    if tams:
        c = np.asarray(res.replica_p_curve, np.float64)  # (R, T+1) per period
        rr, tt = np.meshgrid(np.arange(c.shape[0]), np.arange(c.shape[1]), indexing="ij")
        curve = _table(
            "rare_curve",
            {
                "estimate_id": [estimate_id] * c.size,
                "replica": reps[rr.ravel()],
                "step": (tt.ravel() * every).astype(np.int64),
                "p": c.ravel(),
            },
        )
    else:
        curve = SCHEMAS["rare_curve"].empty_table()
    from .splitting import LEVEL_GRID

    lp = np.asarray(res.replica_level_p, np.float64)
    ri, gi = np.nonzero(~np.isnan(lp))
    levels = _table(
        "rare_levels",
        {
            "estimate_id": [estimate_id] * len(ri),
            "replica": reps[ri],
            "z": LEVEL_GRID.astype(np.float64)[gi],
            "p": lp[ri, gi],
        },
    )
    return {
        "rare": _table("rare", row),
        "rare_replicas": replicas,
        "rare_iterations": iterations,
        "rare_curve": curve,
        "rare_levels": levels,
    }


def write_rare(out: Path, cfg, estimate_id: str, lo: int, hi: int, particles, res, basin, interface, wall_s) -> None:
    """Write one shard of a splitting estimate; the ``rare`` part last, so its presence marks the shard done."""
    t = rare_tables(cfg, estimate_id, lo, hi, particles, res, basin, interface, wall_s)
    for name in ("rare_replicas", "rare_iterations", "rare_curve", "rare_levels", "rare"):
        if name in ("rare_curve", "rare_levels") and t[name].num_rows == 0:
            continue
        write_atomic(t[name], rare_part_path(out, name, cfg.config_id, estimate_id, lo, hi - 1))
