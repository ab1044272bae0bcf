"""Parquet dataset: schemas, atomic parts, round trips through pandas, pyarrow, DuckDB, polars."""

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import jumpsim
from jumpsim import dataset as ds_lib


@pytest.fixture(scope="module")
def written(tmp_path_factory, tiny):
    cfg = tiny("run.chunk=5")
    out = tmp_path_factory.mktemp("ds") / "d"
    jumpsim.run([cfg], out, progress=False)
    return cfg, out, jumpsim.simulate(cfg)


def test_layout_and_part_names(written):
    cfg, out, _ = written
    cid = cfg.config_id
    for name in ("runs", "events", "passages"):
        parts = sorted(p.name for p in (out / name / f"config_id={cid}").iterdir())
        assert parts == [ds_lib.io.part_name(0, 4), ds_lib.io.part_name(5, 9), ds_lib.io.part_name(10, 11)]
    assert (out / "experiments.parquet").exists()
    assert not list(out.rglob(".*"))  # no temporary files left behind


def test_disk_equals_memory(written):
    _, out, mem = written
    disk = jumpsim.read_dataset(out)
    for name in ("runs", "events", "passages", "traces"):
        a = disk[name].sort_values(list(disk[name].columns[:3])).reset_index(drop=True)
        b = mem[name].sort_values(list(mem[name].columns[:3])).reset_index(drop=True)
        assert list(a.columns) == list(b.columns)
        assert len(a) == len(b) and len(a) > 0
        for col in a.columns:
            if a[col].dtype == object and len(a) and isinstance(a[col].iloc[0], np.ndarray):
                np.testing.assert_array_equal(np.stack(a[col]), np.stack(b[col]))
            else:
                np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy())


def test_schemas_are_explicit_and_versioned(written):
    cfg, out, _ = written
    for name in ("runs", "events", "passages", "traces"):
        f = next((out / name / f"config_id={cfg.config_id}").glob("*.parquet"))
        schema = pq.read_schema(f)
        assert schema.metadata[b"jumpsim_schema_version"] == str(ds_lib.SCHEMA_VERSION).encode()
        assert schema.remove_metadata().equals(ds_lib.SCHEMAS[name].remove_metadata())
    exp = jumpsim.read_table(out, "experiments")
    assert list(exp.config_id) == [cfg.config_id] and exp.backend[0] == "cpu"


def test_readers_pandas_pyarrow_duckdb_polars(written):
    cfg, out, mem = written
    import duckdb
    import pandas as pd
    import polars as pl

    n = len(mem["runs"])
    df = pd.read_parquet(out / "runs")
    assert len(df) == n and set(df.config_id.astype(str)) == {cfg.config_id}
    t = ds.dataset(out / "events", partitioning="hive").to_table()
    assert t.num_rows == len(mem["events"])
    q = duckdb.sql(
        f"select config_id, count(*) as n, sum(n_down) as d from read_parquet('{out}/runs/*/*.parquet', "
        "hive_partitioning=true) group by 1"
    ).fetchall()
    assert q == [(cfg.config_id, n, int(mem["runs"].n_down.sum()))]
    p = pl.read_parquet(f"{out}/passages/**/*.parquet", hive_partitioning=True)
    assert p.height == len(mem["passages"]) and p["config_id"].unique().to_list() == [cfg.config_id]
    sv = pl.read_parquet(f"{out}/runs/**/*.parquet", hive_partitioning=True)["final_singular_values"]
    assert sv.dtype == pl.List(pl.Float64)


def test_events_consistent_with_runs(written):
    _, _, mem = written
    runs, ev, pas = mem["runs"], mem["events"], mem["passages"]
    counts = ev.groupby("seed").direction.value_counts().unstack(fill_value=0)
    for r in runs.itertuples():
        down = counts.loc[r.seed, "down"] if r.seed in counts.index and "down" in counts else 0
        up = counts.loc[r.seed, "up"] if r.seed in counts.index and "up" in counts else 0
        assert (r.n_down, r.n_up) == (down, up)
        assert len(pas[pas.seed == r.seed]) == r.initial_rank  # one row per level below start
    assert ((ev.direction == "down") == (ev.rank_after < ev.rank_before)).all()
    assert (ev.step % 20 == 0).all() and (ev.step > 0).all()


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    t = ds_lib.SCHEMAS["events"].empty_table()
    path = tmp_path / "events" / "x.parquet"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError):
        ds_lib.write_atomic(t, path)
    assert list(path.parent.iterdir()) == []


def test_empty_dataset_reads_as_empty_frames(tmp_path):
    d = jumpsim.read_dataset(tmp_path)
    assert all(len(v) == 0 for v in d.values())
    assert "config_id" in d["runs"].columns and "final_rank" in d["runs"].columns


def test_round_one_parts_without_later_columns_read_as_null_and_pass_check(written, tmp_path):
    """Parts written before the B_r columns existed (schema version 1): read with those columns null,
    and `jumpsim check` accepts them."""
    import shutil

    _, out, _ = written
    old = tmp_path / "old"
    shutil.copytree(out, old)
    for name, cols in ds_lib.LATER_COLUMNS.items():
        for part in (old / name).rglob("part-*.parquet"):
            t = pq.read_table(part)
            pq.write_table(t.drop_columns([c for c, _ in cols]), part)
    runs = jumpsim.read_table(old, "runs")
    assert len(runs) == 12 and runs.br_exits.isna().all() and runs.final_balance_gap.isna().all()
    assert jumpsim.read_table(old, "traces").in_br.isna().all()
    problems, _ = ds_lib.check_dataset(old)
    assert problems == []
