"""`jumpsim run`, `summarize` and `plot` end to end on a tiny config."""

import json
import subprocess
import sys

import pytest

import jumpsim
from jumpsim import cli

from conftest import TINY


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "tiny"
    args = ["run", "--out", str(out), "--quiet"]
    for o in TINY:
        args += ["--set", o]
    return out, args


def test_run_writes_tables_and_prints_summary(ran, capsys):
    out, args = ran
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "seed-steps/s" in text and "final rank:" in text and "events:" in text and str(out) in text
    data = jumpsim.read_dataset(out)
    assert len(data["runs"]) == 12 and len(data["experiments"]) == 1 and len(data["traces"]) > 0
    # rerun: everything is already there, nothing is simulated again
    assert cli.main(args) == 0
    assert "already done" in capsys.readouterr().out
    assert len(jumpsim.read_dataset(out)["runs"]) == 12


def test_summarize_json_has_contract_fields(ran, capsys):
    out, args = ran
    if not (out / "runs").exists():
        assert cli.main(args) == 0
    capsys.readouterr()
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
    out, args = ran
    if not (out / "runs").exists():
        assert cli.main(args) == 0
    png = tmp_path / "f.png"
    assert cli.main(["plot", str(out), "--out", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_compare_two_experiments(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["run", "--out", str(out), "--quiet"]
    for o in TINY + ["run.seeds=32", "run.chunk=32"]:
        args += ["--set", o]
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


def test_compilation_cache_option_fills_the_cache(tmp_path):
    """In a child process: the cache is process-wide JAX state."""
    args = [sys.executable, "-m", "jumpsim.cli", "run", "--out", str(tmp_path / "d"), "--quiet", "--cache", str(tmp_path / "cache")]
    for o in TINY + ["run.seeds=4", "train.steps=100"]:
        args += ["--set", o]
    p = subprocess.run(args, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert any((tmp_path / "cache").iterdir())


def test_console_script_one_line_error_no_traceback(tmp_path):
    exe = [sys.executable, "-m", "jumpsim.cli"]
    p = subprocess.run(exe + ["run", "--set", "model.depth=1", "--out", str(tmp_path / "x")], capture_output=True, text=True)
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
    out, _ = ran
    assert cli.main(["plot", str(out)]) == 1
    err = capsys.readouterr().err
    assert "pip install 'jumpsim[plot]'" in err and err.strip().count("\n") == 0
