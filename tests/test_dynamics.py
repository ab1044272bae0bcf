"""The per-seed dynamics: callable for one seed without a kernel, the optax update, float64 scoping."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jumpsim
from jumpsim import dynamics, kernel, model, runner, setup


@pytest.mark.parametrize("sampling", ["with_replacement", "without_replacement"])
def test_one_seed_without_a_kernel_follows_the_kernel(tiny, sampling):
    """init_seed / period for ONE seed, jitted on their own, track seed 3 of a kernel run: same
    ranks at every check and weights within 1e-4 after 400 steps (one seed is not the same XLA
    program as a vmapped batch: last-bit differences, amplified by lr 0.1 SGD to ~1e-5 here). Without
    replacement (2 entries per step), the seed draws the same epochs one period at a time as the kernel does."""
    batch = 1 if sampling == "with_replacement" else 2
    cfg = tiny("detect.persist=1", f'train.sampling="{sampling}"', f"train.batch={batch}")
    su = setup.setup(cfg)
    period = jax.jit(lambda s, t: dynamics.period(s, t, su.data, su.dynamics, su.detection))
    with dynamics.float64_scope():
        s = setup.init_seed(3, su)
        ranks = [int(s.det.rank)]
        for c in range(cfg.train.steps // cfg.detect.every):
            s, obs = period(s, jnp.int32(c * cfg.detect.every))
            ranks.append(int(obs.rank))
    k = kernel.build(cfg)
    res = runner.run_chunk(k, cfg, np.arange(4), trace=True)
    np.testing.assert_array_equal(ranks, res.trace.rank[:, 3])
    for w, ref in zip(s.params, res.state.params):
        np.testing.assert_allclose(np.asarray(w), ref[3], rtol=0, atol=1e-4)


def test_entries_step_is_the_sgd_step_on_the_drawn_entries(tiny):
    """sgd_step = draw the entries, then entries_step on them (bit for bit); a step on one chosen entry is
    W - eta (grad of that entry's loss + 2 lambda W), the gradient by autodiff (float64)."""
    cfg = tiny("train.batch=2")
    su = setup.setup(cfg)
    data, dyn = su.data, su.dynamics
    with dynamics.float64_scope():
        s = setup.init_seed(1, su)
        t = jnp.int32(7)
        idx = jax.random.randint(jax.random.fold_in(s.key, t), (2,), 0, data.n_observed, dtype=jnp.int32)
        want = jax.jit(lambda p, o: dynamics.sgd_step(p, o, s.key, t, data, dyn))(s.params, s.opt_state)[0]
        got = jax.jit(lambda p, o: dynamics.entries_step(p, o, idx, t, data, dyn))(s.params, s.opt_state)[0]
        for a, b in zip(got, want):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        p64 = tuple(jnp.asarray(w, jnp.float64) for w in s.params)
        d64 = data._replace(values=jnp.asarray(data.values, jnp.float64))
        e = jnp.array([3], jnp.int32)
        one = dynamics.entries_step(p64, dyn.optimizer.init(p64), e, 0, d64, dyn)[0]
        g = jax.grad(model.data_loss)(p64, d64.rows[e], d64.cols[e], d64.values[e], dyn.scale)
        lr, lam = dyn.lr(0), dyn.ridge(0)
        for w1, w, gw in zip(one, p64, g):
            np.testing.assert_allclose(np.asarray(w1), np.asarray(w - lr * (gw + 2 * lam * w)), rtol=1e-12, atol=1e-12)


def test_sampling_without_replacement_draws_every_entry_once_per_epoch():
    """K = 7 entries, B = 3 per step (epochs straddle steps): every run of 7 consecutive draws from step 0 is a
    permutation, the epochs' orders differ, a period's draws in one call equal its steps' one by one, and the
    order in force at any step is rebuilt from the key and the step alone (``epoch_order``: resuming mid-epoch)."""
    key, k, b = jax.random.key(3, impl="threefry2x32"), 7, 3
    order, seq, orders = jnp.zeros(k, jnp.int32), [], []
    for t in range(35):
        idx, order = dynamics.draws_without_replacement(order, key, t, 1, b, k)
        seq.extend(np.asarray(idx).ravel().tolist())
        orders.append(np.asarray(order))
    epochs = np.asarray(seq).reshape(-1, k)
    assert all(sorted(e) == list(range(k)) for e in epochs)
    assert len({tuple(e) for e in epochs}) > len(epochs) // 2  # fresh orders (15 epochs of 7! = 5040 orders)
    for t in range(1, 35):
        np.testing.assert_array_equal(np.asarray(dynamics.epoch_order(key, t, b, k)), orders[t - 1])
    dyn = dynamics.Dynamics(b, 1.0, None, None, None, 10, sampling="without_replacement")
    first, o = dynamics.period_entries(jnp.zeros(k, jnp.int32), key, 0, dyn, k)
    second, _ = dynamics.period_entries(o, key, 10, dyn, k)
    np.testing.assert_array_equal(np.concatenate([first.ravel(), second.ravel()]), seq[:60])


def test_an_epoch_without_replacement_is_a_gradient_step_to_second_order(tiny):
    """Sampling without replacement visits each of the K observed entries once per epoch, so the K / B steps of an
    epoch move the weights by eta (K / B) x the full mean gradient plus O(eta^2); with replacement the
    epoch's steps are a random sum, off by O(eta). Halving eta divides the gap to the gradient step by ~4
    without replacement (3-5 here) and by ~2 with replacement (float64, ridge 0, B = 3, K = 21, 7 steps)."""
    cfg = tiny("train.batch=3", "train.ridge=0")
    su = setup.setup(cfg)
    k, b = su.data.n_observed, 3
    assert k % b == 0
    with dynamics.float64_scope():
        p0 = tuple(jnp.asarray(w, jnp.float64) for w in setup.init_seed(0, su).params)
        d64 = su.data._replace(values=jnp.asarray(su.data.values, jnp.float64))
        key = jax.random.key(5, impl="threefry2x32")

        def gap(eta, sampling):
            dyn = dynamics.Dynamics(
                b, 1.0, lambda t: eta, lambda t: 0.0, dynamics.Optimizer(), k // b, "float64", sampling
            )
            if sampling == "without_replacement":
                idx, _ = dynamics.draws_without_replacement(jnp.zeros(k, jnp.int32), key, 0, k // b, b, k)
            else:
                idx = dynamics.draws(key, 0, k // b, b, k)
            p, opt = p0, dyn.optimizer.init(p0)
            for t in range(k // b):
                p, opt = dynamics.entries_step(p, opt, idx[t], t, d64, dyn)
            g = model.full_grads(p0, d64.rows, d64.cols, d64.values, 1.0)
            return max(float(jnp.max(jnp.abs(w - (w0 - eta * (k / b) * gw)))) for w, w0, gw in zip(p, p0, g))

        wor = [gap(eta, "without_replacement") for eta in (1e-2, 5e-3)]
        wr = [gap(eta, "with_replacement") for eta in (1e-2, 5e-3)]
    assert 3 < wor[0] / wor[1] < 5, wor
    assert 1.5 < wr[0] / wr[1] < 2.5 and wr[1] > 10 * wor[1], wr


def test_sampling_is_validated_and_enters_config_id_only_when_set(tiny):
    from jumpsim.config import ConfigError

    assert tiny('train.sampling="with_replacement"').config_id == tiny().config_id
    assert tiny('train.sampling="without_replacement"').config_id != tiny().config_id
    with pytest.raises(ConfigError, match="train.sampling"):
        tiny('train.sampling="shuffle"')
    with pytest.raises(ConfigError, match="train.sampling"):
        tiny('train.sampling="without_replacement"', 'train.batch="full"')
    with pytest.raises(ConfigError, match="train.batch"):
        setup.setup(tiny('train.sampling="without_replacement"', "train.batch=22"))  # 21 entries observed


def _random_params(seed, dtype=jnp.float32):
    return model.init_gaussian(jax.random.key(seed), 7, 5, 3, 6, 1.0, dtype)


def test_optax_sgd_chain_is_the_hand_written_update_bit_for_bit():
    params, grads = _random_params(0), _random_params(1)
    opt = dynamics.Optimizer("sgd")
    lr, ridge = jnp.float32(0.13), jnp.float32(3e-3)

    @jax.jit
    def via_optax(p, g):
        import optax

        updates, _ = opt.transform(lr, ridge).update(g, opt.init(p), p)
        return optax.apply_updates(p, updates)

    got, want = via_optax(params, grads), jax.jit(model.sgd_update)(params, grads, lr, ridge)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _final_params(cfg, steps):
    su = setup.setup(cfg)
    with dynamics.float64_scope():
        s = setup.init_seed(0, su)
        step = jax.jit(lambda s, t: dynamics.advance(s, t, su.data, su.dynamics))
        for t0 in range(0, steps, cfg.detect.every):
            s = step(s, jnp.int32(t0))
    return s


def test_momentum_zero_is_sgd_and_adam_counts_global_steps(tiny):
    sgd = _final_params(tiny(), 200)
    mom0 = _final_params(tiny('train.optimizer="momentum"', "train.momentum=0.0"), 200)
    for a, b in zip(sgd.params, mom0.params):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    mom = _final_params(tiny('train.optimizer="momentum"', "train.momentum=0.5"), 200)
    assert not np.array_equal(np.asarray(mom.params[0]), np.asarray(sgd.params[0]))
    adam = _final_params(tiny('train.optimizer="adam"', "train.lr=0.01"), 200)
    counts = [x for x in jax.tree.leaves(adam.opt_state) if x.dtype == jnp.int32]
    assert counts and all(int(c) == 200 for c in counts)  # optimizer step count == global step t
    assert all(np.all(np.isfinite(np.asarray(w))) for w in adam.params)


def test_optimizer_keys_are_validated_and_enter_config_id_only_when_set(tiny):
    from jumpsim.config import ConfigError

    base = tiny()
    assert tiny('train.optimizer="sgd"').config_id == base.config_id  # default: same experiment
    assert tiny('train.optimizer="adam"').config_id != base.config_id
    assert (
        tiny('train.optimizer="momentum"', "train.momentum=0.5").config_id
        != tiny('train.optimizer="momentum"').config_id
    )
    for bad, key in [("train.momentum=0.5", "train.momentum"), ('train.optimizer="rmsprop"', "train.optimizer")]:
        with pytest.raises(ConfigError, match=key):
            tiny(bad)
    with pytest.raises(ConfigError, match="train.b1"):
        tiny('train.optimizer="adam"', "train.b1=1.0")


def test_float64_rank_count_stays_float64_when_the_program_has_x64_off(tmp_path):
    """In a fresh process with x64 off: importing jumpsim leaves it off, and the rank count inside
    jumpsim's compiled run still uses the float64 Gram matrix. The start's singular values are
    1000, 500 and 0.012 against tau = 0.01: a float32 Gram matrix (eigenvalue error ~1e-7 * 1000^2
    = 0.1 >> 0.012^2 = 1.4e-4) cannot resolve the third, a float64 one sees rank 3."""
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    v, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    w1 = u @ np.diag([1000.0, 500.0, 0.012, 0, 0, 0]) @ v.T
    np.savez(tmp_path / "w.npz", W1=w1, W2=np.eye(6), W3=np.eye(6))
    code = textwrap.dedent(f"""
        import jax, jax.numpy as jnp
        import jumpsim
        from jumpsim import spectrum
        assert not jax.config.jax_enable_x64
        cfg = jumpsim.load_config(None, ["problem.n=6", "problem.m=6", "model.width=6", 'model.init="file"',
            'model.init_file="{tmp_path / "w.npz"}"', "train.lr=1e-12", "train.ridge=0", "train.steps=10",
            "detect.every=10", "detect.threshold=0.01", "run.seeds=2", "run.chunk=2", "run.trace_seeds=0"])
        runs = jumpsim.simulate(cfg)["runs"]
        assert not jax.config.jax_enable_x64
        a32 = jnp.asarray({w1.tolist()!r}, jnp.float32)
        naive = int(jax.jit(lambda a: spectrum.numerical_rank(a, 0.01, False))(a32))  # traced with x64 off
        print(list(runs.initial_rank), list(runs.final_rank), naive)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    initial, final, naive = eval(p.stdout.strip().splitlines()[-1].replace("] [", "], [").replace("] ", "], "))
    assert initial == [3, 3] and final == [3, 3]
    assert naive != 3  # the same count traced outside jumpsim's scope drops to float32 and fails


def test_balancedness_is_zero_at_a_minimum_and_absorbing_visits_are_counted(tiny):
    """At a gradient-descent minimum the layers are balanced (W_{l+1}^T W_{l+1} = W_l W_l^T): gap ~ 0, inside B_r
    from the start, and full-batch GD keeps it there (one entry, no exit, every step inside). Making
    the same weights unbalanced (W1 * 3, W2 / 3: same A, same rank) is an exit at the next check."""
    cfg = tiny(
        'model.init="gd"', "model.gd_steps=3000", "model.gd_lr=0.1", 'train.batch="full"', "detect.absorbing=true"
    )
    su = setup.setup(cfg)
    gap, norm2 = dynamics.balance(su.start)
    assert float(gap) < 1e-3 and float(norm2) == pytest.approx(sum(float(jnp.sum(w * w)) for w in su.start))
    runs = jumpsim.simulate(cfg)["runs"]
    assert (runs.br_rank == cfg.problem.rank).all() and (runs.br_entries == 1).all() and (runs.br_exits == 0).all()
    assert (runs.br_steps == cfg.train.steps).all() and (runs.br_first_entry == 0).all()
    assert (runs.final_balance_gap < cfg.detect.balance_tol).all()
    with dynamics.float64_scope():
        s = dynamics.init(su.start, jax.random.key(0), su.data, su.dynamics, su.detection)
        assert bool(s.absorbing.inside)
        w1, w2, w3 = s.params
        s2, obs = dynamics.check(s._replace(params=(3 * w1, w2 / 3, w3)), 20, su.data, su.detection)
    assert int(obs.rank) == int(s.det.rank) and float(obs.balance_gap) > cfg.detect.balance_tol
    assert not bool(s2.absorbing.inside) and int(s2.absorbing.exits) == 1 and not bool(obs.in_br)
    off = jumpsim.simulate(tiny('model.init="gd"', "model.gd_steps=3000", "model.gd_lr=0.1", 'train.batch="full"'))[
        "runs"
    ]
    assert off.br_exits.isna().all() and (off.final_balance_gap < cfg.detect.balance_tol).all()  # not counted when off
    random_start = dynamics.balance(model.init_gaussian(jax.random.key(1), 5, 6, 3, 6, 1.0, jnp.float64))[0]
    assert float(random_start) > cfg.detect.balance_tol  # a random start is far from balanced
