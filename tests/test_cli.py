"""`jumpsim run`, `summarize` and `plot` end to end on a tiny config."""

import contextlib
import io
import json
import subprocess
import sys

import pytest

import jumpsim
from jumpsim import cli


def _set(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def ran(tmp_path_factory, tiny_overrides):
    """``jumpsim run`` of the tiny experiment, once per module: (out, args, printed summary)."""
    out = tmp_path_factory.mktemp("cli") / "tiny"
    args = ["run", "--out", str(out), "--quiet"] + _set(tiny_overrides)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(args) == 0
    return out, args, buf.getvalue()


def test_run_writes_tables_and_prints_summary(ran, capsys):
    out, args, text = ran
    assert "seed-steps/s" in text and "final rank:" in text and "events:" in text and str(out) in text
    data = jumpsim.read_dataset(out)
    assert len(data["runs"]) == 12 and len(data["experiments"]) == 1 and len(data["traces"]) > 0
    # rerun: everything is already there, nothing is simulated again
    assert cli.main(args) == 0
    assert "already done" in capsys.readouterr().out
    assert len(jumpsim.read_dataset(out)["runs"]) == 12


def test_summarize_json_has_contract_fields(ran, capsys):
    out, _, _ = ran
    assert cli.main(["summarize", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    fp_fields = {"config_id", "start_rank", "level", "n", "k", "horizon", "p", "p_low", "p_high"}
    rate_fields = {"config_id", "from_rank", "to_rank", "count", "exposure_steps", "rate", "rate_low", "rate_high"}
    assert s["first_passage"] and fp_fields <= set(s["first_passage"][0])
    assert s["rates"] and rate_fields <= set(s["rates"][0])
    assert all(r["rate_high"] is not None and r["rate_high"] > 0 for r in s["rates"])
    assert cli.main(["summarize", str(out)]) == 0
    assert "P(rank <= level" in capsys.readouterr().out
    # a burn-in covering the whole horizon leaves no exposure at all
    assert cli.main(["summarize", str(out), "--json", "--burn-in", "100000"]) == 0
    assert json.loads(capsys.readouterr().out)["rates"] == []
    assert cli.main(["summarize", str(out / "nope")]) == 2


def test_plot_writes_png(ran, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out, _, _ = ran
    png = tmp_path / "f.png"
    assert cli.main(["plot", str(out), "--out", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_compare_two_experiments(tmp_path, capsys, tiny_overrides):
    out = tmp_path / "sweep"
    sets = [o for o in tiny_overrides if not o.startswith("train.lr")]  # a --set on a swept key replaces the sweep
    args = ["run", "--out", str(out), "--quiet"] + _set(sets + ["run.seeds=32", "run.chunk=32"])
    cfg = tmp_path / "s.toml"
    cfg.write_text('[sweep]\n"train.lr" = [0.05, 0.1]\n')
    assert cli.main(["run", str(cfg)] + args[1:]) == 0
    ids = list(jumpsim.read_table(out, "experiments").config_id)
    capsys.readouterr()
    assert cli.main(["compare", str(out), ids[0][:6], ids[1], "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"p_a", "p_b", "p_difference", "logrank_p_value", "down_rate_ratio"} <= set(res)
    assert cli.main(["compare", str(out), ids[0], ids[1]]) == 0
    assert "log-rank" in capsys.readouterr().out
    assert cli.main(["compare", str(out), "nope", ids[1]]) == 2


def test_compilation_cache_option_fills_the_cache(tmp_path, tiny_overrides):
    """In a child process: the cache is process-wide JAX state."""
    args = [
        sys.executable,
        "-m",
        "jumpsim.cli",
        "run",
        "--out",
        str(tmp_path / "d"),
        "--quiet",
        "--cache",
        str(tmp_path / "cache"),
    ]
    args += _set(tiny_overrides + ["run.seeds=4", "train.steps=100"])
    p = subprocess.run(args, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert any((tmp_path / "cache").iterdir())


def test_console_script_one_line_error_no_traceback(tmp_path):
    exe = [sys.executable, "-m", "jumpsim.cli"]
    p = subprocess.run(
        exe + ["run", "--set", "model.depth=1", "--out", str(tmp_path / "x")], capture_output=True, text=True
    )
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "model.depth" in p.stderr
    assert not (tmp_path / "x").exists()


def test_plot_without_matplotlib_says_what_is_missing(ran, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    out, _, _ = ran
    assert cli.main(["plot", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'jumpsim[plot]'" in err and err.strip().count("\n") == 0


def test_summarize_names_a_missing_column_and_reads_older_datasets(ran, tmp_path, capsys):
    """A dataset whose experiments table lacks a column every version wrote: one line naming the
    table and column, exit 2. A column added later (absent from an older dataset) reads as null."""
    import shutil

    import pyarrow.parquet as pq

    out, _, _ = ran
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    exp = pq.read_table(bad / "experiments.parquet")
    pq.write_table(exp.drop_columns(["name"]), bad / "experiments.parquet")
    capsys.readouterr()
    assert cli.main(["summarize", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "experiments table lacks column(s) name" in err and err.strip().count("\n") == 0
    from jumpsim.dataset import schemas

    old = tmp_path / "old"
    shutil.copytree(out, old)
    monkey = dict(schemas.SCHEMAS)
    try:  # pretend this version added a column to the runs table after the dataset was written
        import pyarrow as pa

        schemas.SCHEMAS["runs"] = schemas.SCHEMAS["runs"].append(pa.field("later", pa.float64()))
        runs = jumpsim.read_table(old, "runs")
    finally:
        schemas.SCHEMAS.clear()
        schemas.SCHEMAS.update(monkey)
    assert "later" in runs.columns and runs["later"].isna().all() and len(runs) == 12


def test_splitting_lines_say_what_is_resolved():
    """The summary's splitting lines: p > 0 prints the estimate; p == 0 (no replica reached the target) says
    "not resolved" and gives the flux's bound where there is one; a missing p (no replica rows) prints "?";
    an old rate dataset (no interval, rate_high None) with p == 0 prints without a bound instead of crashing."""
    from jumpsim import summary

    base = dict(
        estimate_id="e", method="tams", score="sigma", start_rank=3, direction="down", level=2, horizon=100,
        replicas=4, particles=8, extinct=0, seed_steps=10, p=1e-3, p_low=5e-4, p_high=2e-3, rate=None,
        rate_low=None, rate_high=None, flux=None, p_ab=None, flux_crossings=None,
    )  # fmt: skip
    text = lambda **kw: "\n".join(summary._splitting_lines([{**base, **kw}], "95%"))
    assert "within 100 steps) = 0.001 [0.0005, 0.002] (95%)" in text()
    assert "within 100 steps) not resolved: no replica reached the target" in text(p=0.0, extinct=4)
    assert "within 100 steps) = ? [?, ?]" in text(p=None, p_low=None, p_high=None)
    rate = dict(method="rate", p=0.0, p_low=None, p_high=None, rate=0.0, rate_low=0.0, flux=1e-4, extinct=4)
    assert "rate not resolved: no replica reached the target from its crossings (7 in all; flux 0.0001); k <= 0.0002" \
        in text(**rate, rate_high=2e-4, flux_crossings=7)  # fmt: skip
    assert "rate not resolved: no crossing of the first interface" in text(**rate, rate_high=2e-4, flux_crossings=0)
    old = text(**{**rate, "rate_low": None}, rate_high=None, flux_crossings=7)
    assert "rate not resolved" in old and "k <=" not in old and " = 0 [" not in old


# ------------------------------------------------------------------------------------------ a researcher's first hour


def test_bare_command_prints_usage_and_version(capsys):
    assert cli.main([]) == 0 and "usage: jumpsim" in capsys.readouterr().out
    assert cli.main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"jumpsim {jumpsim.__version__}"


def test_keys_is_the_config_reference_and_cannot_drift(capsys):
    """`jumpsim keys` names every key of every section with its meaning; `--toml` is a file of the defaults that
    loads back into the default Config."""
    import dataclasses
    import tomllib

    from jumpsim import config

    assert cli.main(["keys"]) == 0
    text = capsys.readouterr().out
    for section, cls in config.SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f"{section}.{f.name}" in text and config.HELP[f"{section}.{f.name}"] in text
    assert cli.main(["keys", "--toml"]) == 0
    raw = tomllib.loads(capsys.readouterr().out)
    assert config.from_dict(raw) == config.Config()


def test_more_seeds_extend_a_dataset_as_one_run_would(tmp_path, capsys, tiny_overrides):
    """`--seeds 8` then `--seeds 16` into the same --out (default chunk 1024): the new seeds are simulated, the old
    kept, and the runs equal one run of 16 seeds; a dataset whose trajectories came from another trajectory
    version is refused in one line, nothing written."""
    import pandas as pd

    base = [o for o in tiny_overrides if not o.startswith(("run.seeds", "run.chunk"))]
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli.main(["run", "--out", str(two), "--quiet", "--seeds", "8"] + _set(base)) == 0
    assert cli.main(["run", "--out", str(two), "--quiet", "--seeds", "16"] + _set(base)) == 0
    assert cli.main(["run", "--out", str(one), "--quiet", "--seeds", "16"] + _set(base)) == 0
    a, b = (jumpsim.read_table(d, "runs").sort_values("seed").reset_index(drop=True) for d in (one, two))
    pd.testing.assert_frame_equal(a, b)
    assert cli.main(["check", str(two)]) == 0
    exp = two / "experiments.parquet"
    t = pd.read_parquet(exp)
    t["trajectory_version"] = 0
    t.to_parquet(exp)
    capsys.readouterr()
    assert cli.main(["run", "--out", str(two), "--quiet", "--seeds", "24"] + _set(base)) == 2
    err = capsys.readouterr().err
    assert "trajectories differ" in err and err.strip().count("\n") == 0
    assert len(jumpsim.read_table(two, "runs")) == 16


def test_a_shard_without_chunks_is_refused_before_anything_is_written(tmp_path, capsys, tiny_overrides):
    out = tmp_path / "d"
    args = ["run", "--out", str(out), "--quiet", "--shard", "0/4"] + _set(tiny_overrides + ["run.chunk=6"])
    assert cli.main(args) == 2
    assert "has no chunks" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("command", ["summarize", "plot", "list", "compare"])
def test_commands_on_a_folder_that_is_no_dataset_exit_2(tmp_path, capsys, command):
    (tmp_path / "empty").mkdir()
    extra = ["a", "b"] if command == "compare" else []
    assert cli.main([command, str(tmp_path / "empty"), *extra]) == 2
    assert "not a jumpsim dataset" in capsys.readouterr().err
    assert not any((tmp_path / "empty").iterdir())  # (plot wrote no blank figure)


def test_plot_into_a_missing_folder_exits_2(ran, tmp_path, capsys):
    out, _, _ = ran
    assert cli.main(["plot", str(out), "--out", str(tmp_path / "nope" / "f.png")]) == 2
    assert "--out" in capsys.readouterr().err


def test_a_truncated_part_is_named_repaired_and_recomputed(ran, tmp_path, capsys):
    """A part file cut short: summarize names it and the repair in one line (exit 2); `check --repair` removes
    it with its chunk's runs part; rerunning the same command recomputes the chunk: the same tables as before."""
    import shutil

    src, args, _ = ran
    out = tmp_path / "d"
    shutil.copytree(src, out)
    before = jumpsim.read_table(out, "events").sort_values(["seed", "step"]).reset_index(drop=True)
    (part,) = (out / "events").rglob("part-*.parquet")
    part.write_bytes(part.read_bytes()[:100])
    assert cli.main(["summarize", str(out)]) == 2
    err = capsys.readouterr().err
    assert part.name in err and "--repair" in err and err.strip().count("\n") == 0
    assert cli.main(["check", str(out)]) == 1
    assert cli.main(["check", str(out), "--repair"]) == 1  # (the runs part is gone: seeds missing until the rerun)
    assert "removed" in capsys.readouterr().out
    assert cli.main([*args[:2], str(out), *args[3:]]) == 0
    assert cli.main(["check", str(out)]) == 0
    after = jumpsim.read_table(out, "events").sort_values(["seed", "step"]).reset_index(drop=True)
    assert after.equals(before)


def test_experiments_of_a_sweep_can_be_told_apart(tmp_path, capsys, tiny_overrides):
    """Headers, the JSON summary, `jumpsim list` and the plot legend name the settings that differ; summarize
    keeps the order experiments were run in; a burn-in past the horizon says so."""
    out = tmp_path / "sweep"
    sets = [o for o in tiny_overrides if not o.startswith("train.lr")]
    cfg = tmp_path / "s.toml"
    cfg.write_text('name = "lr-sweep"\n[sweep]\n"train.lr" = [0.1, 0.05]\n')
    assert cli.main(["run", str(cfg), "--out", str(out), "--quiet"] + _set(sets)) == 0
    text = capsys.readouterr().out
    assert "train.lr=0.1:" in text and "train.lr=0.05:" in text
    assert cli.main(["summarize", str(out)]) == 0
    s = capsys.readouterr().out
    assert s.index("train.lr=0.1:") < s.index("train.lr=0.05:")  # as run
    assert cli.main(["summarize", str(out), "--json"]) == 0
    exps = json.loads(capsys.readouterr().out)["experiments"]
    assert [e["differs"] for e in exps] == [{"train.lr": 0.1}, {"train.lr": 0.05}]
    assert exps[0]["config"]["train"]["lr"] == 0.1
    assert cli.main(["list", str(out)]) == 0
    assert "lr-sweep" in capsys.readouterr().out
    assert cli.main(["summarize", str(out), "--burn-in", "100000"]) == 0
    assert "not shorter than the longest horizon" in capsys.readouterr().out


def test_an_unconverged_gd_start_is_reported_and_can_be_refused(tmp_path, capsys, tiny_overrides):
    sets = tiny_overrides + ['model.init="gd"', "model.gd_steps=5"]
    assert cli.main(["run", "--out", str(tmp_path / "a"), "--quiet"] + _set(sets)) == 0
    assert "not a critical point" in capsys.readouterr().out
    assert cli.main(["list", str(tmp_path / "a")]) == 0 and "not a critical point" in capsys.readouterr().out
    args = ["run", "--out", str(tmp_path / "b"), "--quiet"] + _set(sets + ["model.require_minimum=true"])
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "model.require_minimum" in err and err.strip().count("\n") == 0 and not (tmp_path / "b").exists()


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(tmp_path, capsys, tiny_overrides):
    assert cli.main(["run", "--out", str(tmp_path / "d")] + _set(tiny_overrides)) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "seed-steps" in err


def test_a_library_warning_reads_as_one_line(monkeypatch, capsys):
    """A warning raised under a command (e.g. "no crossing recorded in the flux phase") prints as one
    "jumpsim: warning: ..." line, not as a source location and a code line."""
    import warnings

    def warn(args):
        warnings.warn("splitting: no crossing recorded in the flux phase; rate = 0", RuntimeWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(cli, "_cmd_keys", warn)
    assert cli.main(["keys"]) == 0
    assert capsys.readouterr().err == "jumpsim: warning: splitting: no crossing recorded in the flux phase; rate = 0\n"
