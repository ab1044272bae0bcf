"""Splitting on the DLN (`jumpsim rare`): agreement with brute force, CLI, shards and resume.

The setting (6x5 rank-2 target, depth 3, gradient-descent start at rank 2, eta 0.1, ridge 0.045) was
chosen so that brute force sees the rank fall to 1 within 2,000 steps for about 19 % of seeds, with
no divergence: not rare, so both estimators can be checked against each other in seconds.
"""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jumpsim
from jumpsim import bracket, cli, rare, splitting, stats
from jumpsim.setup import setup

BASE = [
    "problem.n=6",
    "problem.m=5",
    "problem.observed=0.7",
    "model.width=6",
    'model.init="gd"',
    "model.gd_steps=3000",
    "model.gd_lr=0.1",
    "train.ridge=0.045",
    "train.lr=0.1",
    "train.steps=2000",
    "detect.every=20",
    "detect.threshold=0.05",
    "detect.persist=2",
    "run.trace_seeds=0",
]
SPLIT = ["rare.particles=32", "rare.replicas=12"]


def _estimate(out):
    d = jumpsim.read_dataset(out)
    return stats.splitting(d["rare"], d["rare_replicas"]).iloc[0]


@pytest.fixture(scope="module")
def tams(tmp_path_factory):
    out = tmp_path_factory.mktemp("rare") / "tams"
    cfg = jumpsim.load_config(None, BASE + SPLIT)
    rare.run_rare(cfg, out, progress=False, say=lambda *_: None)
    return cfg, out


@pytest.fixture(scope="module")
def brute():
    """2,000 brute-force seeds of BASE (shared: the TAMS, importance-sampling and bracket tests compare with it)."""
    return jumpsim.simulate(jumpsim.load_config(None, BASE + ["run.seeds=2000", "run.chunk=2000"]))["runs"]


@pytest.fixture(scope="module")
def brute_p(brute):
    """P(rank <= 1 within 2,000 steps) from the 2,000 brute-force seeds, and its binomial variance."""
    p = float((brute.min_rank <= 1).mean())
    return p, p * (1 - p) / len(brute)


def test_tams_agrees_with_brute_force(tams, brute):
    """|p_tams - p_brute| < 5 combined standard errors (false failure < 1e-6 for unbiased estimators
    with near-normal errors: 2,000 binomial seeds, 12 replicas of 32 particles at p ~ 0.2)."""
    cfg, out = tams
    bf = brute
    assert len(bf) == 2000 and (bf.initial_rank == 2).all() and (bf.status == "ok").all()
    p_bf = float((bf.min_rank <= 1).mean())
    est = _estimate(out)
    rp = jumpsim.read_table(out, "rare_replicas").p.to_numpy()
    se = np.sqrt(p_bf * (1 - p_bf) / len(bf) + rp.var(ddof=1) / len(rp))
    assert est.method == "tams" and est.start_rank == 2 and est.level == 1 and est.extinct == 0
    assert abs(est.p - p_bf) < 5 * se, (est.p, p_bf, se)
    assert est.p_low < est.p < est.p_high
    reps = jumpsim.read_table(out, "rare_replicas").set_index("replica").p.sort_index()
    curve = jumpsim.read_table(out, "rare_curve")
    last = curve[curve.step == cfg.train.steps].set_index("replica").p.sort_index()
    np.testing.assert_allclose(last.to_numpy(), reps.to_numpy(), rtol=1e-12)  # p(T') at T' = T is the estimate


def test_tams_without_replacement_agrees_with_brute_force(tmp_path):
    """Sampling without replacement under splitting (a clone finishes its parent's epoch, then draws its own): TAMS
    within 5 combined standard errors of brute force without replacement (false failure < 1e-6, as above) at lr
    0.125, where it escapes (this CPU: ~0.3; at lr 0.1 with replacement 0.197, without: none in 2,000 seeds)."""
    over = BASE + ['train.sampling="without_replacement"', "train.lr=0.125"]
    bf = jumpsim.simulate(jumpsim.load_config(None, over + ["run.seeds=2000", "run.chunk=2000"]))["runs"]
    assert (bf.status == "ok").all()
    p_bf = float((bf.min_rank <= 1).mean())
    rare.run_rare(jumpsim.load_config(None, over + SPLIT), tmp_path / "d", progress=False, say=lambda *_: None)
    est = _estimate(tmp_path / "d")
    rp = jumpsim.read_table(tmp_path / "d", "rare_replicas").p.to_numpy()
    se = np.sqrt(p_bf * (1 - p_bf) / len(bf) + rp.var(ddof=1) / len(rp))
    assert 0.05 < p_bf < 0.95 and abs(est.p - p_bf) < 5 * se, (est.p, p_bf, se)


@pytest.mark.slow
def test_shards_combine_to_the_single_run_and_resume_gives_the_same_answer(tams, tmp_path):
    cfg, out = tams
    one = _estimate(out)
    sharded = tmp_path / "sharded"
    for i in range(2):
        rare.run_rare(cfg, sharded, i, 2, progress=False, say=lambda *_: None)
    two = _estimate(sharded)
    assert two.replicas == 12 and two.p == pytest.approx(one.p, rel=1e-12)
    # a job killed after its third iteration resumes from the saved engine state to the same answer

    class Killed(Exception):
        pass

    resumed = tmp_path / "resumed"
    real = splitting.save_state
    calls = []

    def dying_save(path, st):
        real(path, st)
        calls.append(1)
        if len(calls) == 3:
            raise Killed

    try:
        splitting.save_state = dying_save
        saved_every, rare.SAVE_EVERY_S = rare.SAVE_EVERY_S, 0.0  # save at every commit: the third comes quickly
        with pytest.raises(Killed):
            rare.run_rare(cfg, resumed, progress=False, say=lambda *_: None)
    finally:
        splitting.save_state = real
        rare.SAVE_EVERY_S = saved_every
    assert list((resumed / "rare_state").rglob("*.npz")) and not (resumed / "rare").exists()
    rare.run_rare(cfg, resumed, progress=False, say=lambda *_: None)
    assert _estimate(resumed).p == pytest.approx(one.p, rel=1e-12)
    assert not list((resumed / "rare_state").rglob("*.npz"))  # cleaned up once the tables are written


@pytest.mark.slow
def test_cli_rare_rate_form_and_summarize_json(tmp_path, capsys):
    out = tmp_path / "d"
    args = ["rare", "--out", str(out), "--method", "rate", "--particles", "32", "--replicas", "8", "--quiet"]
    args += [a for o in BASE + ["rare.flux_seeds=64"] for a in ("--set", o)]
    assert cli.main(args) == 0
    assert "rate" in capsys.readouterr().out
    assert cli.main(["summarize", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)["splitting"]
    fields = {
        "config_id",
        "method",
        "start_rank",
        "level",
        "direction",
        "horizon",
        "p",
        "p_low",
        "p_high",
        "rate",
        "rate_low",
        "rate_high",
        "particles",
        "replicas",
        "extinct",
        "seed_steps",
    }
    assert len(s) == 1 and fields <= set(s[0])
    r = s[0]
    assert r["method"] == "rate" and r["rate"] > 0 and r["rate_low"] < r["rate"] < r["rate_high"]
    assert 0 < r["p"] < 1 and r["seed_steps"] > 0
    assert cli.main(args) == 0 and "already" in capsys.readouterr().out  # rerun: nothing to do


def test_header_estimates_time_and_memory_before_the_run(tmp_path):
    """Before it starts, `jumpsim rare` prints memory and work, and (unless quiet) the time that work takes at
    the speed of a timed probe of the particle step on this machine."""
    cfg = jumpsim.load_config(None, BASE + ["rare.particles=8", "rare.replicas=2", "train.steps=400"])
    for progress in (True, False):
        lines = []
        rare.run_rare(cfg, tmp_path / str(progress), progress=progress, say=lines.append)
        assert "MiB" in lines[0] and "initial population 6,400 SGD steps" in lines[1]
        timed = re.search(r"\(~(\d+) s plus compiles, at ([0-9.e+]+) SGD steps/s", lines[1])
        assert bool(timed) == progress, lines[1]
        if timed:
            assert 0 <= int(timed[1]) < 60 and float(timed[2]) > 1e3
    p = rare.particles(cfg)
    with jumpsim.dynamics.float64_scope():
        for sharded in (True, False):
            assert 50 < splitting.lockstep_speed(p.init, p.advance, 32, sharded=sharded, calls=1) < 1e9


def test_extinct_estimate_reports_the_level_bound(tmp_path, capsys):
    """At a small learning rate every replica goes extinct (p = 0, no interval): the rare_levels table still
    gives an upper bound with an interval, the same from the tables as from the result, printed by summarize."""
    out = tmp_path / "d"
    cfg = jumpsim.load_config(None, BASE + ["rare.particles=8", "rare.replicas=10", "train.lr=0.03", "train.steps=400"])
    res = rare.run_rare(cfg, out, progress=False, say=lambda *_: None).result
    assert res.extinct == 10 and res.p == 0
    b = res.level_bound()
    lv = jumpsim.read_table(out, "rare_levels")
    assert len(lv) == 10 * len(splitting.LEVEL_GRID)  # every replica, every level
    assert cli.main(["summarize", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["splitting"][0]
    assert r["p_bound"] == pytest.approx(b.high, rel=1e-12) and r["bound_level"] == pytest.approx(b.z, rel=1e-6)
    assert 0 < b.value <= b.high < 1 and 0 < b.z < 1 and r["rate_bound"] is None
    assert cli.main(["summarize", str(out)]) == 0
    text = capsys.readouterr().out
    # the headline says p is not resolved (not "= 0 [?, ?]") and gives the bound as the answer
    assert "within 400 steps) not resolved: no replica reached the target" in text
    assert "bound from the level curve: P(rank <= 1 within 400 steps) <= " in text
    assert " = 0 [" not in text
    assert cli.main(["check", str(out)]) == 0


@pytest.mark.parametrize(
    "bad, key",
    [
        (['model.init="gaussian"'], "model.init"),
        (["rare.kill_fraction=1.5"], "rare.kill_fraction"),
        (
            [
                'rare.method="rate"',
                "train.lr.kind=piecewise",
                "train.lr.values=[0.1, 0.05]",
                "train.lr.boundaries=[100]",
            ],
            "rare.method",
        ),
        (["rare.basin=0.5", "rare.interface=0.2"], "rare.interface"),
        (['rare.interface="p40"'], "rare.interface"),
        (['rare.interface="top"'], "rare.interface"),
    ],
)
def test_bad_splitting_settings_exit_2_naming_the_key(tmp_path, capsys, bad, key):
    args = ["rare", "--out", str(tmp_path / "x"), "--quiet"] + [a for o in BASE + bad for a in ("--set", o)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert key in err and err.strip().count("\n") == 0


def test_check_validates_splitting_tables(tams, tmp_path, capsys):
    """`jumpsim check` accepts a splitting-only dataset and names a replica that is missing or twice."""
    import shutil

    import pyarrow.parquet as pq

    _, out = tams
    ds = tmp_path / "ds"
    shutil.copytree(out, ds, ignore=shutil.ignore_patterns("rare_state"))
    assert cli.main(["check", str(ds)]) == 0
    assert "splitting estimate" in capsys.readouterr().out
    (part,) = list((ds / "rare_replicas").rglob("part-*.parquet"))
    t = pq.read_table(part)
    pq.write_table(t.slice(1), part)  # replica 0 lost
    assert cli.main(["check", str(ds)]) == 1
    assert "expected 0..11" in capsys.readouterr().out


def test_compare_two_splitting_estimates(tams, tmp_path, capsys):
    """`jumpsim compare` of two splitting-only experiments: the ratio of their probabilities with a
    log-normal interval built from each estimate's own interval."""
    import shutil

    cfg, out = tams
    ds = tmp_path / "two"
    shutil.copytree(out, ds)
    other = jumpsim.load_config(None, BASE + SPLIT + ["train.ridge=0.047", 'name="b"'])
    rare.run_rare(other, ds, progress=False, say=lambda *_: None)
    capsys.readouterr()
    assert cli.main(["compare", str(ds), cfg.config_id, other.config_id, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    r = res["splitting_ratio"]
    pa, pb = _estimate_of(ds, cfg.config_id), _estimate_of(ds, other.config_id)
    assert r["of"] == "p" and r["ratio"] == pytest.approx(pa.p / pb.p) and r["low"] < r["ratio"] < r["high"]
    assert "p_difference" not in res  # no brute-force runs here
    assert cli.main(["compare", str(ds), cfg.config_id, other.config_id]) == 0
    assert "splitting, P(jump within the horizon) A/B" in capsys.readouterr().out


def _estimate_of(out, cid):
    d = jumpsim.read_dataset(out)
    s = stats.splitting(d["rare"], d["rare_replicas"])
    return s[s.config_id == cid].iloc[0]


@pytest.mark.parametrize(
    "method,proposal,extra",
    [
        ("is", "lookahead", ["rare.gate=0.05", "rare.kl=0.3", "rare.lookahead_every=5"]),
        ("tams", "lookahead", ["rare.gate=0.05", "rare.kl=0.3", "rare.lookahead_every=5"]),
        ("is", "static", ["rare.cem_rounds=2"]),
    ],
)
def test_importance_sampling_agrees_with_brute_force(tmp_path, capsys, brute_p, method, proposal, extra):
    """Particles that draw their entries from a proposal and carry their likelihood ratio, through the CLI: an
    estimate the weights' diagnostics call resolved is within 5 combined standard errors of brute force (12
    replicas; a false failure < 1e-6 for an unbiased estimate with near-normal errors; on this CPU the lookahead
    ones are resolved at 0.15-0.19 against 0.197, the static one is not: its weights spread over a decade), the
    tilt is active (log-weights spread), the diagnostics are in the tables and the JSON summary, ``check`` is
    content, and the cost counts every entry a lookahead evaluates."""
    out = tmp_path / "d"
    sets = BASE + [f"rare.method={method!r}".replace("'", '"'), f'rare.proposal="{proposal}"'] + extra
    sets += ["rare.particles=32", "rare.replicas=12"]
    assert cli.main(["rare", "--out", str(out), "--quiet"] + [a for o in sets for a in ("--set", o)]) == 0
    text = capsys.readouterr().out
    assert f"proposal {proposal}: effective sample size" in text
    assert cli.main(["summarize", str(out), "--json"]) == 0
    (r,) = json.loads(capsys.readouterr().out)["splitting"]
    assert r["proposal"] == proposal and r["ess"] > 0 and 0 < r["max_weight_share"] <= 1
    assert "p_lower_bound" in r and r["resolved"] in (True, False)
    p_bf, var_bf = brute_p
    rp = jumpsim.read_table(out, "rare_replicas").p.to_numpy()
    if r["resolved"]:
        assert abs(r["p"] - p_bf) < 5 * np.sqrt(var_bf + rp.var(ddof=1) / len(rp)), (r["p"], p_bf)
    else:
        assert r["p_low"] is None and "not resolved" in text
    assert r["log10_w_sd"] > 0.1
    row = jumpsim.read_table(out, "rare").iloc[0]
    if proposal == "lookahead":  # each period: 20 SGD steps and 4 refreshes of 21 entries
        assert r["seed_steps"] % (20 + 4 * 21) == 0
    assert row.proposal == proposal and cli.main(["check", str(out)]) == 0


@pytest.mark.parametrize(
    "bad,key",
    [
        (['rare.proposal="greedy"'], "rare.proposal"),
        (["rare.mixture=0"], "rare.mixture"),
        (["rare.mixture=1.5"], "rare.mixture"),
        (['rare.proposal="lookahead"', "rare.lookahead_every=7"], "rare.lookahead_every"),
        (['rare.proposal="lookahead"', 'train.batch="full"'], "rare.proposal"),
        (['rare.proposal="static"', 'train.sampling="without_replacement"'], "rare.proposal"),
        (["rare.bracket=true", 'train.sampling="without_replacement"'], "rare.bracket"),
        (["rare.bracket=true", "rare.bracket_keep=1.5"], "rare.bracket_keep"),
        (["rare.bracket=true", "rare.bracket_keep=0"], "rare.bracket_keep"),
        (["rare.bracket=true", 'train.batch="full"'], "rare.bracket"),
        (['train.sampling="shuffled"'], "train.sampling"),
    ],
)
def test_bad_proposal_settings_exit_2_naming_the_key(tmp_path, capsys, bad, key):
    args = ["rare", "--out", str(tmp_path / "x"), "--quiet"] + [a for o in BASE + bad for a in ("--set", o)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert key in err and err.strip().count("\n") == 0 and not (tmp_path / "x").exists()


def test_path_bound_is_a_lower_bound_below_brute_force(tmp_path, capsys, brute_p, monkeypatch):
    """rare.bracket: prefixes of draws among the entries that raise the score most, then plain runs, bound P from
    below; the bound sits below brute force's estimate (with room: it is (s/K)^m times a Clopper-Pearson lower
    end), is in the JSON summary with its prefix length and share, and its work is counted."""
    bounds = []
    real = bracket.path_lower_bound

    def recorded(*args, **kwargs):
        bounds.append(real(*args, **kwargs))
        return bounds[-1]

    monkeypatch.setattr(bracket, "path_lower_bound", recorded)
    out = tmp_path / "d"
    sets = BASE + ["rare.particles=16", "rare.replicas=2", "rare.bracket=true", "rare.bracket_trials=64"]
    assert cli.main(["rare", "--out", str(out), "--quiet"] + [a for o in sets for a in ("--set", o)]) == 0
    capsys.readouterr()
    assert cli.main(["summarize", str(out), "--json"]) == 0
    (r,) = json.loads(capsys.readouterr().out)["splitting"]
    p_bf, var_bf = brute_p
    (b,) = bounds  # computed once, and the bound the tables hold
    assert r["log10_p_lower_bound"] is not None and r["lower_bound_draws"] == b.draws > 0
    assert r["log10_p_lower_bound"] == pytest.approx(b.log10_lower) and r["lower_bound_keep"] == 0.75
    assert b.keep == bracket.keep_count(0.75, 21) == 16 and r["seed_steps"] > b.steps
    assert 10 ** r["log10_p_lower_bound"] < p_bf - 5 * np.sqrt(var_bf)
    plain = jumpsim.load_config(None, BASE + ["rare.particles=16", "rare.replicas=2"])
    assert rare.estimate_id(plain) != r["estimate_id"]  # the bracket's settings name the estimate


def _bracket_parts(overrides=()):
    cfg = jumpsim.load_config(None, BASE + list(overrides))
    su = setup(cfg)
    p = rare.particles(cfg, su)
    with jumpsim.dynamics.float64_scope():  # (as rare builds it)
        start = p.init(jax.random.key(0, impl="threefry2x32"))
    return cfg, su, p, (start, p.progress, p.advance, p.score, su.data, su.dynamics, su.detection)


def test_bracket_prefix_over_every_entry_is_plain_sgd(brute_p):
    """keep = K: the prefix draws uniformly among all K entries, so it IS SGD (in law): the prefix costs 0 decades
    and the share of 600 trials that reach the target (the whole horizon is prefix with one probe) estimates
    brute force's P: |k/n - p_bf| < 5 combined binomial standard errors (p ~ 0.2; false failure < 1e-6)."""
    cfg, su, p, args = _bracket_parts()
    k = su.data.n_observed
    b = bracket.path_lower_bound(*args, horizon=cfg.train.steps // p.period_steps, keep=k, probes=1, trials=600)
    p_bf, var_bf = brute_p
    assert b.keep == k and b.log10_prefix == 0 and b.draws == cfg.train.steps
    share = b.hits / b.trials
    assert abs(share - p_bf) < 5 * np.sqrt(var_bf + p_bf * (1 - p_bf) / b.trials), (share, p_bf)
    assert b.lower < share and b.log10_lower == pytest.approx(np.log10(b.lower))


def test_bracket_prefix_of_one_entry_is_one_greedy_path():
    """keep = 1: every trial's prefix is the same path of greedy draws (no noise), costing log10 K per draw; with
    keep = s the prefix costs log10(K / s) per draw and the trials' prefixes differ."""
    cfg, su, p, (start, *rest) = _bracket_parts()
    k = su.data.n_observed
    period = jax.jit(bracket._restricted_period(p.progress, su.data, su.dynamics, su.detection, 10, 1))
    keys = jax.random.split(jax.random.key(1), 3)
    with jumpsim.dynamics.float64_scope():
        ends = [period(start, kk, jnp.int32(0)) for kk in keys]
        assert all(np.array_equal(ends[0].params[0], e.params[0]) for e in ends)
        wide = jax.jit(bracket._restricted_period(p.progress, su.data, su.dynamics, su.detection, 10, k // 2))
        ends = [wide(start, kk, jnp.int32(0)) for kk in keys]
        assert not np.array_equal(ends[0].params[0], ends[1].params[0])
    b = bracket.path_lower_bound(start, *rest, horizon=4, keep=3, probes=2, trials=8)
    assert b.log10_prefix == pytest.approx(-b.draws * np.log10(k / 3)) and b.keep == 3


def test_an_interrupted_estimate_says_what_is_kept_and_resumes(tmp_path, capsys, monkeypatch):
    """Ctrl-C after the first saved engine state: the message says it is saved; `check` and `summarize` say a
    splitting estimate is in progress and how to resume (not "no runs parts"); the rerun says it resumes, finishes,
    and leaves no rare_state folder behind."""
    out = tmp_path / "d"
    args = ["rare", "--out", str(out), "--quiet"] + [a for o in BASE + SPLIT for a in ("--set", o)]
    save = rare._Checkpoint.__call__

    def save_then_stop(self, st, now):
        t = save(self, st, now)
        if self.path.exists():
            raise KeyboardInterrupt
        return t

    monkeypatch.setattr(rare._Checkpoint, "__call__", save_then_stop)
    assert cli.main(args) == 130
    assert "engine state of its last finished iteration is saved" in capsys.readouterr().err
    monkeypatch.undo()
    assert cli.main(["check", str(out)]) == 0
    assert "in progress" in capsys.readouterr().out
    assert cli.main(["summarize", str(out)]) == 0
    assert "rerun the same jumpsim rare command to resume" in capsys.readouterr().out
    assert cli.main(args) == 0
    assert "resuming from the saved engine state" in capsys.readouterr().out
    assert not (out / "rare_state").exists()
