"""The simulator kernel: keyed randomness, chunk invariance, divergence isolation, traces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jumpsim
from jumpsim import dataset, dynamics, kernel, runner
from jumpsim.dataset import chunk_tables


def _np(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def _assert_same_state(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(_np(x), _np(y))


def _rows(state, idx):
    return jax.tree.map(lambda x: _np(x)[idx], state)


@pytest.mark.parametrize(
    "batch,sampling", [(1, "with_replacement"), (3, "with_replacement"), (3, "without_replacement")]
)
def test_seed_results_bit_identical_across_chunk_sizes(tiny, batch, sampling):
    """Seeds 0..20 in one chunk, in chunks of 5 (last one partial), and seeds 3..5 alone,
    on two devices and on one: bit for bit (epoch orders included, without replacement)."""
    cfg = tiny("train.lr=0.15", f"train.batch={batch}", f'train.sampling="{sampling}"')
    k = kernel.build(cfg)
    full = runner.run_chunk(k, cfg, np.arange(21))
    parts = [runner.run_chunk(k, cfg, np.arange(lo, min(lo + 5, 21))) for lo in range(0, 21, 5)]
    joined = jax.tree.map(lambda *xs: np.concatenate([_np(x) for x in xs]), *[p.state for p in parts])
    _assert_same_state(full.state, joined)
    k1 = kernel.build(cfg, devices=jax.local_devices()[:1])
    mid = runner.run_chunk(k1, cfg, np.arange(3, 6))
    _assert_same_state(_rows(full.state, slice(3, 6)), mid.state)
    # and the run moved: seeds changed rank
    assert int(np.sum(full.state.det.n_events)) > 0


def test_two_devices_bit_identical_to_one(tiny):
    assert jax.local_device_count() == 2
    cfg = tiny("train.lr=0.2")
    one = runner.run_chunk(kernel.build(cfg, devices=jax.local_devices()[:1]), cfg, np.arange(7))
    two = runner.run_chunk(kernel.build(cfg), cfg, np.arange(7))  # 7 seeds: padded to 8
    _assert_same_state(one.state, two.state)
    assert len(two.seeds) == 7 and two.state.det.rank.shape == (7,)


def test_float32_state_stays_float32(tiny):
    cfg = tiny()
    k = kernel.build(cfg)
    s = runner.run_chunk(k, cfg, np.arange(2)).state
    assert all(w.dtype == np.float32 for w in s.params)
    assert all(w.dtype == np.float32 for w in s.last_params) and s.loss.dtype == np.float32


def test_diverging_seed_is_marked_and_neighbours_unchanged(tiny):
    cfg = tiny()
    k = kernel.build(cfg)
    seeds = jnp.arange(k.pad_to, dtype=jnp.int32)  # as run_chunk pads
    clean = k.init(seeds)
    bad = k.init(seeds)
    bad = bad._replace(params=tuple(w.at[2].multiply(1e6) for w in bad.params))  # seed 2 blows up
    n_checks = cfg.train.steps // cfg.detect.every
    clean, _ = k.advance(clean, jnp.int32(0), n_checks=n_checks)
    bad, _ = k.advance(bad, jnp.int32(0), n_checks=n_checks)
    clean, bad = jax.device_get(clean), jax.device_get(bad)
    # (of the 256 seeds of a padded batch some diverge at lr 0.1 anyway: the others are as in the clean run)
    assert bool(bad.diverged[2]) and np.array_equal(np.delete(bad.diverged, 2), np.delete(clean.diverged, 2))
    assert 0 < int(bad.stop_step[2]) <= cfg.train.steps
    keep = [i for i in range(k.pad_to) if i != 2]
    _assert_same_state(_rows(clean, keep), _rows(bad, keep))
    assert all(np.all(np.isfinite(np.asarray(w))) for w in bad.last_params + bad.params)
    final = k.final(bad)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in final)
    # traces mark the diverged seed's checks with rank -1 and NaN
    _, obs = k.advance(bad, jnp.int32(cfg.train.steps), n_checks=1, trace=True)
    assert int(obs.rank[0, 2]) == -1 and np.isnan(obs.loss[0, 2]) and int(obs.rank[0, 0]) >= 0
    res = dataset.ChunkResult(np.arange(k.pad_to), bad, *(np.asarray(x) for x in final), None)
    runs = chunk_tables(res, cfg.train.steps, cfg.detect.every, k.setup.detection).runs.to_pandas()
    assert (
        list(runs.status[:4]) == ["ok", "ok", "diverged", "ok"]
        and (runs.status == "ok").sum() == k.pad_to - 1 - np.delete(clean.diverged, 2).sum()
    )
    assert runs.steps[2] == bad.stop_step[2] and (runs.steps[keep][~clean.diverged[keep]] == cfg.train.steps).all()


def test_traces_replay_the_same_trajectories(tiny):
    """The trace pass re-simulates the first seeds; its last check must equal the main run's
    final state, and its ranks must replay the detector's events."""
    cfg = tiny("detect.persist=1")
    f = jumpsim.simulate(cfg)
    assert (f["runs"].status == "ok").all()
    tr, runs, ev = f["traces"], f["runs"], f["events"]
    assert sorted(tr.seed.unique()) == [0, 1]
    assert len(tr) == 2 * (cfg.train.steps // cfg.detect.every + 1)
    for seed in (0, 1):
        t = tr[tr.seed == seed].sort_values("step")
        r = runs[runs.seed == seed].iloc[0]
        last = t.iloc[-1]
        assert last.step == cfg.train.steps and last.loss == r.final_loss
        np.testing.assert_array_equal(np.asarray(last.singular_values), np.asarray(r.final_singular_values))
        # with persist = 1 every change of the traced rank is an event
        changes = t[t["rank"].diff().fillna(0) != 0]
        e = ev[ev.seed == seed].sort_values("step")
        assert list(changes.step) == list(e.step) and list(changes["rank"]) == list(e.rank_after)
        assert len(e) > 0


def test_gd_init_starts_every_seed_from_the_same_minimum(tiny):
    cfg = tiny(
        'model.init="gd"', "model.gd_steps=3000", "model.gd_lr=0.1", 'train.batch="full"', "run.seeds=3", "run.chunk=3"
    )
    k = kernel.build(cfg)
    assert k.info["start_grad_norm"] < 1e-3  # converged
    s0 = jax.device_get(k.init(jnp.arange(4, dtype=jnp.int32)))
    for w in s0.params:
        assert np.all(w == w[0:1])
    # full-batch GD from a minimum stays there: no events, identical seeds
    res = runner.run_chunk(k, cfg, np.arange(3))
    assert int(np.sum(res.state.det.n_events)) == 0
    assert np.all(res.state.det.rank == k.info["start_rank"])


def test_a_sweep_over_the_learning_rate_runs_gradient_descent_once(tiny):
    """A gd start depends on the problem, the model, the ridge at step 0 and the gd settings: configs that differ
    in anything else (the learning rate, the horizon) share one start, computed once; another ridge makes its own."""
    from jumpsim import setup

    gd = ('model.init="gd"', "model.gd_steps=1000", "model.gd_lr=0.1")
    a, b = setup.setup(tiny(*gd)), setup.setup(tiny(*gd, "train.lr=0.05", "train.steps=200"))
    c = setup.setup(tiny(*gd, "train.ridge=0.02"))
    assert all(x is y for x, y in zip(a.start, b.start)) and a.info == b.info
    assert not np.array_equal(np.asarray(a.start[0]), np.asarray(c.start[0]))


def test_compiled_program_highest_precision_donated_no_collectives(tiny):
    """Every product runs at HIGHEST precision (no TF32 on GPUs), the state is donated, and
    the devices never talk to each other."""
    import re

    cfg = tiny()
    k = kernel.build(cfg)
    states = k.init(jnp.arange(k.pad_to, dtype=jnp.int32))
    with dynamics.float64_scope():
        lowered = k.advance.__wrapped__.lower(states, jnp.int32(0), n_checks=2)
        text = lowered.as_text()
        hlo = lowered.compile().as_text()
    dots = re.findall(r"stablehlo.dot_general[^\n]*", text)
    assert dots and all("precision = [HIGHEST, HIGHEST]" in d for d in dots)
    n_state = len(jax.tree.leaves(states))
    assert text.count("jax.buffer_donor = true") == n_state
    assert not re.search(r"all-reduce|all-gather|collective-permute|all-to-all|reduce-scatter", hlo)


def test_float64_run(tiny):
    cfg = tiny('run.dtype="float64"', "run.seeds=3", "run.chunk=3")
    res = runner.run_chunk(kernel.build(cfg), cfg, np.arange(3))
    assert res.state.params[0].dtype == np.float64


def test_schedules_act_at_their_boundaries(tiny):
    """A piecewise lr equals the constant first value up to its boundary and departs from it
    after; a periodic ridge changes the trajectory."""
    const = tiny("train.lr=0.1")
    piece = tiny("train.lr.kind=piecewise", "train.lr.values=[0.1, 0.02]", "train.lr.boundaries=[200]")
    periodic = tiny(
        "train.ridge.kind=periodic", "train.ridge.low=0.01", "train.ridge.high=0.05", "train.ridge.period=100"
    )

    def states_at(cfg, *steps):
        """The parameters of every seed at each of `steps` (multiples of 100), advanced 5 checks (100 steps) per
        call from the step it got to: one kernel and one compiled advance per config, however many steps."""
        k = kernel.build(cfg)
        s, t, out = k.init(jnp.arange(k.pad_to, dtype=jnp.int32)), 0, []
        for stop in steps:
            while t < stop:
                s, _ = k.advance(s, jnp.int32(t), n_checks=100 // cfg.detect.every)
                t += 100
            out.append(jax.device_get(s.params))  # (a copy: advance donates the state it is given)
        return out

    assert const.detect.every == 20
    (a200, a300), (b200, b300) = states_at(const, 200, 300), states_at(piece, 200, 300)
    for x, y in zip(a200, b200):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a300[0], b300[0])
    (c300,) = states_at(periodic, 300)
    assert not np.array_equal(a300[0], c300[0])
