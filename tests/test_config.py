"""Config parsing and validation: every bad value exits 2 with one line naming its key."""

import dataclasses
import json

import numpy as np
import pytest

from jumpsim import cli
from jumpsim import config as config_lib
from jumpsim.config import ConfigError, Schedule

BAD = [
    # (overrides, key named in the message)
    (["problem.bogus=1"], "problem.bogus"),
    (["nosuch.key=1"], "nosuch"),
    (['problem.n="twenty"'], "problem.n"),
    (["problem.rank=30"], "problem.rank"),
    (["problem.rank=6", "problem.n=5"], "problem.rank"),
    (["problem.observed=0"], "problem.observed"),
    (["problem.observed=1.5"], "problem.observed"),
    (["model.depth=1"], "model.depth"),
    (["model.width=0"], "model.width"),
    (["train.lr=0"], "train.lr"),
    (["train.lr=-0.1"], "train.lr"),
    (["train.ridge=-1e-3"], "train.ridge"),
    (["train.lr=0.5", "train.ridge=1.0"], "train.ridge"),
    (["train.batch=0"], "train.batch"),
    (['train.batch="half"'], "train.batch"),
    (["detect.every=0"], "detect.every"),
    (["train.steps=1050"], "train.steps"),  # not a multiple of detect.every
    (["detect.persist=0"], "detect.persist"),
    (['detect.relative="yes"'], "detect.relative"),
    (['run.dtype="float16"'], "run.dtype"),
    (['train.loss="median"'], "train.loss"),
    (['model.init="xavier"'], "model.init"),
    (['model.init="file"'], "model.init_file"),
    (["run.seeds=0"], "run.seeds"),
    (['train.lr.kind="cyclic"'], "train.lr.kind"),
    (['train.lr.kind="piecewise"', "train.lr.values=[0.1, 0.05]", "train.lr.boundaries=[]"], "train.lr.boundaries"),
    (
        ['train.ridge.kind="periodic"', "train.ridge.low=1e-3", "train.ridge.high=1e-4", "train.ridge.period=100"],
        "train.ridge.high",
    ),
    (['problem.file="missing.npz"'], "problem.file"),
    (['model.init="file"', 'model.init_file="missing.npz"'], "model.init_file"),
]


@pytest.mark.parametrize("overrides,key", BAD)
def test_bad_config_exits_2_with_key_and_writes_nothing(overrides, key, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", "--out", str(out), "--quiet"]
    for o in overrides:
        args += ["--set", o]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and key in err and "Traceback" not in err, err
    assert not out.exists()


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_malformed_files_exit_2(tmp_path, capsys):
    bad_toml = _write(tmp_path, "bad.toml", "name = \n[problem\n")
    assert cli.main(["run", str(bad_toml), "--quiet"]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert cli.main(["run", str(tmp_path / "nope.toml"), "--quiet"]) == 2
    assert "cannot read config file" in capsys.readouterr().err
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    cfg = _write(tmp_path, "c.toml", '[problem]\nfile = "junk.npz"\n')
    assert cli.main(["run", str(cfg), "--quiet"]) == 2
    assert "problem.file" in capsys.readouterr().err
    np.savez(tmp_path / "nomask.npz", target=np.ones((3, 3)))
    cfg = _write(tmp_path, "c2.toml", '[problem]\nfile = "nomask.npz"\nrank = 1\n')
    assert cli.main(["run", str(cfg), "--quiet"]) == 2
    assert "'mask'" in capsys.readouterr().err
    np.savez(tmp_path / "w.npz", W1=np.ones((20, 20)), W2=np.ones((20, 20)))  # depth 3 needs W3
    cfg = _write(tmp_path, "c3.toml", '[model]\ninit = "file"\ninit_file = "w.npz"\n')
    assert cli.main(["run", str(cfg), "--quiet"]) == 2
    assert "W3" in capsys.readouterr().err


def test_diverging_gd_start_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    args = [
        "run",
        "--out",
        str(out),
        "--quiet",
        "--set",
        "model.init=gd",
        "--set",
        "model.gd_lr=5000.0",
        "--set",
        "train.ridge=0",
        "--set",
        "model.gd_steps=200",
    ]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "model.gd_lr" in err and err.strip().count("\n") == 0
    assert not out.exists()


def test_bad_arguments_exit_2(capsys):
    assert cli.main(["run", "--shard", "3/2"]) == 2
    assert "--shard" in capsys.readouterr().err
    assert cli.main(["run", "--seeds", "many"]) == 2
    assert cli.main(["frobnicate"]) == 2


def test_overrides_and_shortcuts_parse_toml_values():
    cfg = config_lib.load_one(None, ["train.batch=full", "model.init=gd", "train.lr=0.1", "detect.relative=true"])
    assert cfg.train.batch is None and cfg.model.init == "gd" and cfg.train.lr.values == (0.1,) and cfg.detect.relative


def test_schedules_parse_and_evaluate():
    cfg = config_lib.load_one(
        None,
        [
            "train.lr.kind=piecewise",
            "train.lr.values=[0.13, 0.05]",
            "train.lr.boundaries=[1000]",
            "train.ridge.kind=periodic",
            "train.ridge.low=1e-3",
            "train.ridge.high=4e-3",
            "train.ridge.period=200",
            "train.ridge.shape=square",
        ],
    )
    lr, ridge = cfg.train.lr, cfg.train.ridge
    assert [lr.value_at(t) for t in (0, 999, 1000, 5000)] == [0.13, 0.13, 0.05, 0.05]
    assert [ridge.value_at(t) for t in (0, 99, 100, 199, 200)] == [4e-3, 4e-3, 1e-3, 1e-3, 4e-3]
    from jumpsim import schedules

    for s in (lr, ridge, Schedule(kind="periodic", low=0.1, high=0.3, period=50)):
        f = schedules.make(s)
        for t in (0, 1, 12, 25, 49, 50, 999, 1000, 1001, 4321):
            assert abs(float(f(t)) - s.value_at(t)) < 1e-12


def test_config_id_ignores_execution_settings_only():
    base = config_lib.load_one(None)
    same = config_lib.load_one(
        None, ["run.seeds=7", "run.chunk=3", "run.seed_offset=100", "run.trace_seeds=0", 'name="other"']
    )
    assert base.config_id == same.config_id
    for o in ["train.lr=0.06", "model.depth=4", "detect.threshold=0.02", 'run.dtype="float64"', "problem.seed=1"]:
        assert config_lib.load_one(None, [o]).config_id != base.config_id, o


def test_config_id_follows_file_content_not_path(tmp_path):
    t = np.random.default_rng(0).standard_normal((4, 4))
    m = np.ones((4, 4), bool)
    np.savez(tmp_path / "a.npz", target=t, mask=m)
    np.savez(tmp_path / "b.npz", target=t, mask=m)
    np.savez(tmp_path / "c.npz", target=t + 1, mask=m)
    ids = [
        config_lib.load_one(None, [f'problem.file="{tmp_path / f}.npz"', "problem.rank=2", "model.width=4"]).config_id
        for f in "abc"
    ]
    assert ids[0] == ids[1] != ids[2]


def test_sweep_expands_to_one_config_per_combination(tmp_path):
    p = _write(tmp_path, "s.toml", '[sweep]\n"model.depth" = [3, 4]\n"train.lr" = [0.05, 0.1, 0.2]\n')
    configs = config_lib.load(p)
    assert len(configs) == 6 and len({c.config_id for c in configs}) == 6
    assert [(c.model.depth, c.train.lr.values[0]) for c in configs][:3] == [(3, 0.05), (3, 0.1), (3, 0.2)]
    bad = _write(tmp_path, "b.toml", '[sweep]\n"model.nope" = [1]\n')
    with pytest.raises(ConfigError, match="sweep.model.nope"):
        config_lib.load(bad)


def test_normal_form_round_trips():
    cfg = config_lib.load_one(
        None,
        ["train.lr.kind=piecewise", "train.lr.values=[0.1, 0.05]", "train.lr.boundaries=[100]", "train.batch=full"],
    )
    d = json.loads(json.dumps(config_lib.to_dict(cfg)))
    again = config_lib.from_dict(d)
    assert dataclasses.replace(again, base_dir=cfg.base_dir) == cfg and again.config_id == cfg.config_id


def test_set_on_a_swept_key_replaces_the_sweep(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[sweep]\n"train.lr" = [0.05, 0.1]\n"model.depth" = [3, 4]\n')
    assert len(config_lib.load(f)) == 4
    configs = config_lib.load(f, ["train.lr=0.2"])
    assert [(c.train.lr.values[0], c.model.depth) for c in configs] == [(0.2, 3), (0.2, 4)]
    configs = config_lib.load(f, ["train.lr.kind=piecewise", "train.lr.values=[0.1, 0.05]", "train.lr.boundaries=[10]"])
    assert len(configs) == 2 and all(c.train.lr.kind == "piecewise" for c in configs)


def test_extends_merges_a_base_file_and_keeps_the_config_id(tmp_path):
    (tmp_path / "base.toml").write_text("[problem]\nn = 8\nm = 7\n[train]\nlr = 0.1\nridge = 0.01\n")
    (tmp_path / "exp.toml").write_text('extends = "base.toml"\nname = "x"\n[train]\nlr = 0.2\n')
    (tmp_path / "flat.toml").write_text('name = "y"\n[problem]\nn = 8\nm = 7\n[train]\nlr = 0.2\nridge = 0.01\n')
    a, b = config_lib.load_one(tmp_path / "exp.toml"), config_lib.load_one(tmp_path / "flat.toml")
    assert (a.problem.n, a.problem.m, a.train.lr.values[0], a.train.ridge.values[0]) == (8, 7, 0.2, 0.01)
    assert a.config_id == b.config_id
    (tmp_path / "loop.toml").write_text('extends = "loop.toml"\n')
    with pytest.raises(ConfigError, match="extends"):
        config_lib.load(tmp_path / "loop.toml")
    (tmp_path / "gone.toml").write_text('extends = "nothere.toml"\n')
    with pytest.raises(ConfigError, match="nothere.toml"):
        config_lib.load(tmp_path / "gone.toml")


def test_config_ids_of_round_one_experiments_are_unchanged():
    """Keys added later enter the hash only when set: the default experiment keeps its round-1 id."""
    assert config_lib.load_one(None).config_id == "a37534da4439"
