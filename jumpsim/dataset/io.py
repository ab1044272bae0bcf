"""A dataset directory on disk: part paths, atomic Parquet writes, the experiments table, and readers.

Layout (one directory per ``jumpsim run`` or ``jumpsim rare``)::

    OUT/experiments.parquet
    OUT/{runs,events,passages,traces}/config_id=<id>/part-<first seed>-<last seed>.parquet
    OUT/{rare,rare_replicas,...}/config_id=<id>/part-<estimate id>-<first replica>-<last replica>.parquet

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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..config import to_dict
from ..errors import ConfigError
from .schemas import RARE_TABLES, REQUIRED, SCHEMA_VERSION, SCHEMAS, TABLES, build


def part_name(first_seed: int, last_seed: int) -> str:
    """File name of the part holding seeds first..last (inclusive)."""
    return f"part-{first_seed:010d}-{last_seed:010d}.parquet"


def part_path(out: Path, table: str, config_id: str, first_seed: int, last_seed: int) -> Path:
    return Path(out) / table / f"config_id={config_id}" / part_name(first_seed, last_seed)


def rare_part_path(out: Path, table: str, config_id: str, estimate_id: str, lo: int, hi: int) -> Path:
    """Part of a splitting table for replicas lo..hi (inclusive) of one estimate."""
    return Path(out) / table / f"config_id={config_id}" / f"part-{estimate_id}-{lo:06d}-{hi:06d}.parquet"


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


def rare_in_progress(out: str | Path) -> list[tuple[str, Path]]:
    """(config_id, saved engine state) of every splitting estimate shard that started and has not finished."""
    root = Path(out) / "rare_state"
    if not root.is_dir():
        return []
    return sorted((d.name.split("=", 1)[1], p) for d in root.iterdir() if d.is_dir() for p in d.glob("*.npz"))


def part_ranges(out: str | Path, table: str, config_id: str, readable: bool = False) -> list[tuple[int, int]]:
    """(first seed, last seed) of every part file of one table and config, sorted; with ``readable`` only the
    parts whose Parquet footer reads (a truncated file is work to redo)."""
    d = Path(out) / table / f"config_id={config_id}"
    if not d.is_dir():
        return []
    parts = [(m, p) for m, p in ((_PART.match(p.name), p) for p in d.iterdir()) if m]
    return sorted((int(m[1]), int(m[2])) for m, p in parts if not readable or _readable(p))


def _readable(path: Path) -> bool:
    try:
        pq.read_metadata(path)
        return True
    except Exception:
        return False


def experiment_row(cfg, info: dict, versions: dict) -> pa.Table:
    """The experiments table's row of one config: its normal form, the facts of its start, the versions."""
    return build(
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
        path = Path(frag.path)
        if not _readable(path):
            raise ConfigError(
                str(path),
                f"unreadable part file (truncated or damaged); run `jumpsim check {out} --repair` to remove it, then "
                "rerun the command that wrote it to recompute that chunk",
            )
        _require_columns(name, path, frag.physical_schema.names)
    return dataset.to_table().to_pandas()


def read_dataset(out: str | Path) -> dict[str, pd.DataFrame]:
    """All tables of a dataset directory: {"experiments", "runs", "events", "passages", "traces", "rare", ...}."""
    return {name: read_table(out, name) for name in ("experiments", *TABLES, *RARE_TABLES)}
