"""Fused Pallas SGD kernel (jumpsim.fused), run in Pallas interpret mode on the CPU.

Tolerance: the kernel computes the same float32 operations as the XLA reference, but its
matrix-vector products and minibatch sums are elementwise products + reductions, which need
not be summed in the order of XLA's dots (on a GPU, Triton reduces across threads in a tree);
so trajectories are not bit-identical in general. Each step adds rounding differences of
~1e-7 relative that a stable (small-lr, contracting) trajectory does not amplify. Measured in
interpret mode on this CPU, max relative difference of the weights after 1000 steps:
0 (bit-identical) at B = 1 on the 7x5 problem, also after 4000 steps and in the 800-step
end-to-end run; 3.3e-7 at depth 4, B = 3; 2.3e-7 at n = m = w = 20. The tests allow
RTOL = 1e-4: room for a GPU's other summation order, and still far below what a wrong index,
schedule value or update would give (relative changes of 1e-2 and more).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jumpsim
from jumpsim import fused, kernel, model, runner, spectrum
from jumpsim import problem as problem_lib

F32, I32 = jnp.float32, jnp.int32
RTOL = 1e-4


def _rel(a, b):
    return max(float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(y))) for x, y in zip(a, b))


def _setup(n, m, width, depth, S, k_obs, seed=0):
    key = jax.random.key(seed, impl="threefry2x32")
    kp, kr, kv, ks = jax.random.split(key, 4)
    params = tuple(
        jax.random.normal(jax.random.fold_in(kp, l), (S, o, i), F32) * (1.0 / np.sqrt(i)).item()
        for l, (o, i) in enumerate(model.layer_shapes(n, m, depth, width))
    )
    flat = jax.random.permutation(kr, n * m)[:k_obs].astype(I32)
    rows, cols = flat // m, flat % m
    vals = jax.random.normal(kv, (k_obs,), F32)
    seed_keys = jax.vmap(lambda s: jax.random.fold_in(ks, s))(jnp.arange(S, dtype=I32))
    return params, rows, cols, vals, seed_keys


_xla = jax.jit(fused.sgd_steps_xla, static_argnames="scale")


@pytest.mark.parametrize(
    "n, m, width, depth, batch, S, block, K",
    [
        (7, 5, 6, 3, 1, 5, 2, 1000),  # non-square, width != n, 5 seeds in blocks of 2
        (7, 5, 6, 4, 3, 3, 4, 1000),  # depth 4, B = 3, fewer seeds than one block
        (4, 6, 3, 2, 2, 4, None, 200),  # depth 2, n < m, default block
    ],
)
def test_same_trajectory_as_xla(n, m, width, depth, batch, S, block, K):
    k_obs = (n * m * 2) // 3
    params, rows, cols, vals, keys = _setup(n, m, width, depth, S, k_obs)
    idx = fused.draw_indices(keys, 0, K, batch, k_obs)
    lr = jnp.full((K,), 0.02, F32)
    ridge = jnp.full((K,), 0.01, F32)
    ref = _xla(params, rows, cols, vals, idx, lr, ridge, scale=1.0)
    out = fused.sgd_steps_pallas(params, rows, cols, vals, idx, lr, ridge, 1.0, block_seeds=block, interpret=True)
    assert all(o.shape == p.shape and o.dtype == F32 for o, p in zip(out, params))
    assert _rel(ref, params) > 1e-2  # the weights moved
    assert _rel(out, ref) < RTOL


def test_schedules_vary_within_the_K_steps():
    n, m, width, depth, batch, S, K = 5, 4, 4, 3, 2, 3, 60
    params, rows, cols, vals, keys = _setup(n, m, width, depth, S, 12, seed=1)
    idx = fused.draw_indices(keys, 7, K, batch, 12)
    t = jnp.arange(K, dtype=F32)
    lr = (0.05 * (1.0 + jnp.cos(t / 5.0))).astype(F32)
    ridge = jnp.where(t < K // 2, 0.0, 0.05).astype(F32)
    run = lambda lr, ridge: fused.sgd_steps_pallas(
        params, rows, cols, vals, idx, lr, ridge, 2.0, block_seeds=2, interpret=True
    )
    out = run(lr, ridge)
    ref = _xla(params, rows, cols, vals, idx, lr, ridge, scale=2.0)
    assert _rel(out, ref) < RTOL
    const = run(jnp.full((K,), lr[0]), jnp.full((K,), ridge[-1]))  # not what the schedule says
    assert _rel(const, ref) > 100 * RTOL
    # lr = 0 on every step: the weights are returned exactly
    frozen = run(jnp.zeros((K,), F32), ridge)
    for a, b in zip(frozen, params):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_draw_indices_are_the_kernel_draws():
    """The draws of kernel.py's sgd_step (vmap over seeds, scan over t, fold_in then randint)."""
    S, K, B, k_obs, t0 = 5, 7, 3, 11, 40
    keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(3, impl="threefry2x32"), s))(jnp.arange(S, dtype=I32))

    def one(key):
        def body(c, t):
            return c, jax.random.randint(jax.random.fold_in(key, t), (B,), 0, k_obs, dtype=jnp.int32)

        return jax.lax.scan(body, 0, t0 + jnp.arange(K, dtype=jnp.int32))[1]

    want = jax.jit(jax.vmap(one))(keys)
    got = fused.draw_indices(keys, jnp.asarray(t0, I32), K, B, k_obs)
    assert got.shape == (S, K, B) and got.dtype == I32
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_ranks_agree_with_the_simulator(tiny):
    """End to end: the tiny config (n=6, m=5, rank 2, width 6, depth 3, lr 0.1, ridge 0.01),
    40 periods of K=20 steps. The XLA simulator (kernel.run_chunk) and the pallas path from
    the same initial states and step keys reach the same numerical ranks, after ranks dropped."""
    cfg = tiny("train.steps=800")
    K = cfg.detect.every
    prob = problem_lib.make(cfg)
    k = kernel.build(cfg)
    seeds = np.arange(6)
    sim = runner.run_chunk(k, cfg, seeds)
    states = jax.device_get(k.init(jnp.asarray(np.resize(seeds, 32), I32)))  # what run_chunk starts from
    params = tuple(jnp.asarray(w[:6]) for w in states.params)
    keys = jax.device_put(states.key[:6], jax.devices()[0])
    rows, cols, vals = jnp.asarray(prob.rows), jnp.asarray(prob.cols), jnp.asarray(prob.values, F32)
    scale = model.loss_scale(cfg.train.loss, prob.n_observed)
    lr = jnp.full((K,), cfg.train.lr.value_at(0), F32)
    ridge = jnp.full((K,), cfg.train.ridge.value_at(0), F32)

    @jax.jit
    def period(p, t0):
        idx = fused.draw_indices(keys, t0, K, cfg.train.batch, prob.n_observed)
        return fused.sgd_steps_pallas(p, rows, cols, vals, idx, lr, ridge, scale, block_seeds=4, interpret=True)

    for c in range(cfg.train.steps // K):
        params = period(params, jnp.asarray(c * K, I32))
    rank = jax.vmap(lambda p: spectrum.numerical_rank(model.end_to_end(p), cfg.detect.threshold, cfg.detect.relative))
    got = np.asarray(rank(params))
    want = np.asarray(rank(tuple(jnp.asarray(w) for w in sim.state.params)))
    start = np.asarray(states.det.rank[:6])
    assert not np.any(sim.state.diverged)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(want, np.asarray(sim.state.det.rank))
    assert np.any(want < start)  # ranks dropped over the run
    assert _rel(params, tuple(jnp.asarray(w) for w in sim.state.params)) < 1e-3


def test_unsupported_reason():
    ok = dict(
        n=20,
        m=20,
        width=20,
        depth=3,
        batch=1,
        dtype="float32",
        optimizer="sgd",
        backend_platform="gpu",
        interpret=False,
    )
    assert fused.unsupported_reason(**ok) is None
    assert fused.unsupported_reason(**{**ok, "backend_platform": "cpu", "interpret": True}) is None
    bad = {
        "optimizer": "momentum",
        "batch": None,
        "dtype": "float64",
        "width": 200,
        "backend_platform": "cpu",
        "depth": 1,
        "batch ": 100,
    }
    for key, value in bad.items():
        reason = fused.unsupported_reason(**{**ok, key.strip(): value})
        assert isinstance(reason, str) and reason and "\n" not in reason, key


def test_block_size_and_padding():
    assert fused.padded_shapes(7, 5, 6, 3) == [(8, 8), (8, 8), (8, 8)]
    assert fused.seed_floats(20, 20, 20, 3) == 3 * 32 * 32
    assert fused.default_block_seeds(20, 20, 20, 3) == 4
    assert fused.default_block_seeds(6, 5, 6, 3) == 64
    params = tuple(jnp.zeros((2, o, i), F32) for o, i in model.layer_shapes(4, 4, 2, 4))
    rows = cols = jnp.zeros((8,), I32)
    with pytest.raises(ValueError, match="power of two"):
        fused.sgd_steps_pallas(
            params,
            rows,
            cols,
            jnp.zeros((8,), F32),
            jnp.zeros((2, 2, 1), I32),
            jnp.ones(2, F32),
            jnp.ones(2, F32),
            1.0,
            block_seeds=3,
            interpret=True,
        )


def test_lowers_to_triton_ir():
    """Cross-lowering for CUDA on this CPU: every op of the kernel has a Triton lowering rule,
    all tensor shapes are powers of two and the module verifies; no dot (no TF32) and no
    float64. jaxlib <= 0.10.1 stops at Triton IR (later ones compile to PTX in the lowering,
    which needs the CUDA plugin)."""
    pytest.importorskip("jax._src.pallas.triton.pallas_call_registration")
    from jax._src.lib import version as jaxlib_version
    from jax._src.pallas.triton import pallas_call_registration as reg

    if jaxlib_version > (0, 10, 1):
        pytest.skip("jaxlib > 0.10.1 compiles Triton IR to PTX while lowering: needs a GPU")
    modules = []
    orig = reg.lowering.lower_jaxpr_to_triton_module

    def capture(*args, **kwargs):
        result = orig(*args, **kwargs)
        modules.append(result.module)
        return result

    S, K, B = 1000, 100, 2
    shapes = model.layer_shapes(20, 20, 3, 20)
    args = (
        tuple(jax.ShapeDtypeStruct((S, *s), F32) for s in shapes),
        jax.ShapeDtypeStruct((160,), I32),
        jax.ShapeDtypeStruct((160,), I32),
        jax.ShapeDtypeStruct((160,), F32),
        jax.ShapeDtypeStruct((S, K, B), I32),
        jax.ShapeDtypeStruct((K,), F32),
        jax.ShapeDtypeStruct((K,), F32),
    )
    reg.lowering.lower_jaxpr_to_triton_module = capture
    try:
        text = fused.sgd_steps_pallas.trace(*args, 1.0).lower(lowering_platforms=("cuda",)).as_text()
    finally:
        reg.lowering.lower_jaxpr_to_triton_module = orig
    assert "__gpu$xla.gpu.triton" in text
    [module] = modules
    assert module.operation.verify()
    asm = module.operation.get_asm()
    assert "scf.for" in asm and "tt.dot" not in asm and "f64" not in asm


def test_pallas_backend_through_the_kernel_gives_the_xla_runs_tables(tiny):
    """run.backend = "pallas-interpret" through jumpsim.simulate: the same rank events as the XLA
    path on the tiny config (weights agree to float32 rounding, see above), and the key splits
    config_id while "xla" does not."""

    xla = tiny("run.seeds=4", "run.chunk=4", "run.trace_seeds=0", "train.steps=200")
    pal = tiny("run.seeds=4", "run.chunk=4", "run.trace_seeds=0", "train.steps=200", 'run.backend="pallas-interpret"')
    assert pal.config_id != xla.config_id and tiny('run.backend="xla"').config_id == tiny().config_id
    a, b = jumpsim.simulate(xla), jumpsim.simulate(pal)
    cols = ["seed", "step", "rank_before", "rank_after"]
    assert len(a["events"]) > 0
    assert a["events"][cols].reset_index(drop=True).equals(b["events"][cols].reset_index(drop=True))
    np.testing.assert_allclose(
        np.stack(a["runs"].final_singular_values), np.stack(b["runs"].final_singular_values), rtol=1e-4, atol=1e-6
    )


def test_pallas_backend_where_it_cannot_run_is_a_config_error(tiny):
    from jumpsim import kernel
    from jumpsim.errors import ConfigError

    for bad, why in [('run.backend="pallas"', "interpret mode"), ('train.optimizer="adam"', "plain SGD")]:
        cfg = tiny('run.backend="pallas"' if "optimizer" not in bad else 'run.backend="pallas-interpret"', bad)
        with pytest.raises(ConfigError, match=f"run.backend: .*{why}"):
            kernel.build(cfg)
