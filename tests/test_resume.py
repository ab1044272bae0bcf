"""Batch-job safety: kill and resume, shards, refusals, and `jumpsim check`."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import jumpsim
from jumpsim import cli, dataset


@pytest.fixture(scope="module")
def run_args(tiny_overrides):
    """``run_args(out, extra) -> argv`` of `jumpsim run` for a 96-seed, 6-chunk version of the tiny experiment."""
    sets = tiny_overrides + ["run.seeds=96", "run.chunk=16", "train.steps=2000", "run.trace_seeds=3"]

    def args(out, extra=()):
        return ["run", "--out", str(out), "--quiet"] + [a for o in sets for a in ("--set", o)] + list(extra)

    return args


def _sorted(df):
    keys = [c for c in ("config_id", "seed", "step", "level") if c in df.columns]
    df = df.sort_values(keys).reset_index(drop=True)
    df["config_id"] = df["config_id"].astype(str)
    return df


def assert_same_dataset(a, b):
    da, db = jumpsim.read_dataset(a), jumpsim.read_dataset(b)
    for name in ("runs", "events", "passages", "traces"):
        x, y = _sorted(da[name]), _sorted(db[name])
        assert len(x) == len(y), name
        for col in x.columns:
            if len(x) and isinstance(x[col].iloc[0], np.ndarray):
                np.testing.assert_array_equal(np.stack(x[col]), np.stack(y[col]))
            else:
                pd.testing.assert_series_equal(x[col], y[col], check_dtype=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, run_args):
    out = tmp_path_factory.mktemp("ref") / "ds"
    assert cli.main(run_args(out)) == 0
    return out


@pytest.mark.slow
def test_kill_at_any_moment_then_rerun_gives_the_same_tables(reference, tmp_path, capsys, run_args):
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "jumpsim.cli"] + run_args(out)
    env = dict(os.environ, JUMPSIM_CPU_DEVICES="2")
    # kill 1: during start-up/compilation; kill 2: just after the first chunk landed
    p = subprocess.Popen(cmd, env=env)
    time.sleep(2.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    p = subprocess.Popen(cmd, env=env)
    runs_dir = out / "runs"
    deadline = time.time() + 120
    while time.time() < deadline and not (runs_dir.exists() and any(runs_dir.rglob("part-*.parquet"))):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = sum(1 for _ in runs_dir.rglob("part-*.parquet"))
    assert 1 <= done < 6, done  # killed part-way
    # a reader sees only whole files, never a temporary
    assert all(not f.name.startswith(".") for f in out.rglob("*.parquet"))
    # the rerun, in this process (a fresh start on the same folder; its compiles come from the tests' cache)
    capsys.readouterr()
    assert cli.main(run_args(out)) == 0
    assert "already done" in capsys.readouterr().out
    assert_same_dataset(out, reference)
    problems, _ = dataset.check_dataset(out)
    assert problems == []


def test_union_of_shards_equals_single_run(reference, tmp_path, capsys, run_args):
    out = tmp_path / "ds"
    for i in range(3):
        assert cli.main(run_args(out, ["--shard", f"{i}/3"])) == 0
    assert_same_dataset(out, reference)
    assert dataset.check_dataset(out)[0] == []


def test_slurm_array_environment_picks_the_shard(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert cli._shard(None) == (1, 3)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "9")
    with pytest.raises(cli.UsageError, match="SLURM_ARRAY_TASK_ID"):
        cli._shard(None)


def test_different_config_into_same_directory_is_refused(reference, tmp_path, capsys, run_args):
    out = tmp_path / "ds"
    assert cli.main(run_args(out, ["--seeds", "16"])) == 0
    before = sorted(p.name for p in out.rglob("*"))
    capsys.readouterr()
    # another experiment: a shorter horizon (another config_id; 95 checks run in the same 5-check segments as
    # 100, so the programs are the ones already compiled)
    other = ["--seeds", "16", "--set", "train.steps=1900"]
    assert cli.main(run_args(out, other)) == 2
    err = capsys.readouterr().err
    assert "--append" in err and err.strip().count("\n") == 0
    assert sorted(p.name for p in out.rglob("*")) == before
    assert cli.main(run_args(out, other + ["--append"])) == 0
    assert len(jumpsim.read_table(out, "experiments")) == 2
    # same experiment, another chunking: its seeds are all there, nothing is simulated twice
    n = len(jumpsim.read_table(out, "runs"))
    assert cli.main(run_args(out, ["--seeds", "16", "--set", "run.chunk=8"])) == 0
    assert "0 chunk(s) simulated" in capsys.readouterr().out and len(jumpsim.read_table(out, "runs")) == n


def test_more_seeds_extend_the_same_dataset(tmp_path, run_args):
    out = tmp_path / "ds"
    assert cli.main(run_args(out, ["--seeds", "32"])) == 0
    assert cli.main(run_args(out, ["--seeds", "64"])) == 0
    runs = jumpsim.read_table(out, "runs")
    assert sorted(runs.seed) == list(range(64))
    assert dataset.check_dataset(out)[0] == []


def test_check_finds_missing_part_duplicate_seed_and_temporaries(reference, tmp_path, capsys):
    import shutil

    out = tmp_path / "ds"
    shutil.copytree(reference, out)
    assert cli.main(["check", str(out)]) == 0
    cid = jumpsim.read_table(out, "experiments").config_id[0]
    parts = sorted((out / "runs" / f"config_id={cid}").glob("part-*.parquet"))
    parts[1].unlink()  # a lost chunk
    ev = sorted((out / "events" / f"config_id={cid}").glob("part-*.parquet"))
    ev[2].unlink()  # a lost events part
    dup = dataset.part_path(out, "runs", cid, 0, 15)
    shutil.copy(dup, dup.with_name("part-0000000000-0000000099.parquet"))  # seeds 0..15 twice
    (dup.parent / ".part-x.parquet.tmp-otherhost-1").write_bytes(b"")
    capsys.readouterr()
    assert cli.main(["check", str(out)]) == 1
    text = capsys.readouterr().out
    assert "16 of 96 seeds missing: 16..31" in text
    assert "seeds present more than once: 0..15" in text
    assert "events part for seeds 32..47 is missing" in text
    assert "temporary file" in text


def test_unwritable_output_is_one_clear_line(tmp_path, capsys, run_args):
    if os.geteuid() == 0:
        target = "/proc/jumpsim-cannot-write-here"  # root ignores permissions; /proc refuses
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = str(ro / "ds")
    assert cli.main(run_args(target, ["--seeds", "16"])) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("jumpsim: error: cannot write to") and err.count("\n") == 0
