"""The seeds-innermost SGD step (``jumpsim.lanes``): the same math as the per-seed step, seed by seed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jumpsim
from jumpsim import devices, dynamics, fused, kernel, lanes, model, setup


def _problem(rng, n, m, width, depth, seeds, k_obs=12, dtype=np.float64):
    shapes = model.layer_shapes(n, m, depth, width)
    params = tuple(jnp.asarray(rng.standard_normal((seeds, *sh)) / np.sqrt(sh[1]), dtype) for sh in shapes)
    rows = jnp.asarray(rng.integers(0, n, k_obs), jnp.int32)
    cols = jnp.asarray(rng.integers(0, m, k_obs), jnp.int32)
    values = jnp.asarray(rng.standard_normal(k_obs), dtype)
    return params, rows, cols, values


@pytest.mark.parametrize("depth,batch", [(2, 1), (3, 2), (4, 3)])
def test_gradient_equals_the_per_seed_structured_gradient(depth, batch):
    """Seed s's column of the lanes gradient is model.minibatch_grads of seed s (float64, to 1e-12), on a
    non-square problem (7 x 5, width 6)."""
    rng = np.random.default_rng(depth)
    with dynamics.float64_scope():
        params, rows, cols, values = _problem(rng, 7, 5, 6, depth, seeds=4)
        ix = jnp.asarray(rng.integers(0, len(rows), (batch, 4)), jnp.int32)  # (B, S)
        got = lanes.grads(tuple(jnp.moveaxis(w, 0, -1) for w in params), rows[ix], cols[ix], values[ix], 3.0)
        for s in range(4):
            want, _ = model.minibatch_grads(
                tuple(w[s] for w in params), rows[ix[:, s]], cols[ix[:, s]], values[ix[:, s]], 3.0
            )
            for g, w in zip(got, want):
                np.testing.assert_allclose(np.asarray(g[..., s]), np.asarray(w), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_period_equals_the_reference_steps(dtype, tol):
    """K = 60 steps for 32 seeds in blocks of 16 against ``fused.sgd_steps_xla`` (minibatch_grads + sgd_update
    per seed): float64 to 1e-12; float32 within rounding (sums in another order; lr 0.05 keeps the map
    contracting, so rounding differences stay ~1e-6 after 60 steps; tolerance 2e-5 absolute)."""
    rng = np.random.default_rng(0)
    k = 60
    with dynamics.float64_scope():
        params, rows, cols, values = _problem(rng, 7, 5, 6, 3, seeds=32, dtype=dtype)
        idx = jnp.asarray(rng.integers(0, len(rows), (32, k, 2)), jnp.int32)
        lr, ridge = jnp.full(k, 0.05, dtype), jnp.full(k, 1e-2, dtype)
        got = jax.jit(lanes.sgd_steps, static_argnames=("scale", "block"))(
            params, rows, cols, values, idx, lr, ridge, scale=1.0, block=16
        )
        want = fused.sgd_steps_xla(params, rows, cols, values, idx, lr, ridge, 1.0)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0, atol=tol)


def test_a_seed_does_not_depend_on_its_block():
    """Seeds 0-15 alone, and the same seeds as the second block behind 16 others, end bit for bit the same:
    the reason trajectories do not depend on the chunk size or the device count (float32)."""
    rng = np.random.default_rng(1)
    params, rows, cols, values = _problem(rng, 6, 6, 6, 3, seeds=32, dtype=np.float32)
    idx = jnp.asarray(rng.integers(0, len(rows), (32, 40, 1)), jnp.int32)
    lr, ridge = jnp.full(40, 0.1, jnp.float32), jnp.full(40, 1e-3, jnp.float32)
    run = jax.jit(lanes.sgd_steps, static_argnames=("scale", "block"))
    first = run(tuple(w[:16] for w in params), rows, cols, values, idx[:16], lr, ridge, scale=1.0, block=16)
    swapped = tuple(jnp.concatenate([w[16:], w[:16]]) for w in params)
    both = run(swapped, rows, cols, values, jnp.concatenate([idx[16:], idx[:16]]), lr, ridge, scale=1.0, block=16)
    for a, b in zip(first, both):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b[16:]))


def test_the_kernel_takes_the_lanes_step_for_plain_sgd_on_a_cpu(tiny):
    """Plain SGD with a minibatch on the CPU runs seeds innermost, padded to whole blocks per device; momentum,
    full-batch descent and layers wider than lanes.MAX_DIM keep the vmapped per-seed step (and 16-seed padding)."""
    mesh = devices.mesh()
    cfg = tiny()
    assert kernel.step_kind(cfg, setup.setup(cfg), "cpu") == "lanes" and lanes.BLOCK % devices.LANES == 0
    k = kernel.build(cfg)
    assert k.step == "lanes" and k.pad_to == lanes.BLOCK * mesh.size
    wide = f"model.width={lanes.MAX_DIM + 1}"
    for other in (tiny('train.optimizer="momentum"'), tiny('train.batch="full"'), tiny(wide)):
        assert kernel.step_kind(other, setup.setup(other), "cpu") == "vmap"
    k = kernel.build(tiny(wide))
    assert k.step == "vmap" and k.pad_to == devices.LANES * mesh.size


def test_auto_backend_takes_the_fused_kernel_where_it_runs(tiny):
    """run.backend = "auto" (the default): on a GPU (the platform given, not detected) the fused Pallas kernel for
    plain float32 SGD with a minibatch, the XLA step for what the kernel does not run; "xla" never the kernel;
    on a CPU the XLA step (seeds innermost). An explicit "pallas" stays what it asks."""
    gpu = lambda cfg: kernel.step_kind(cfg, setup.setup(cfg), "gpu")  # noqa: E731
    assert tiny().run.backend == "auto" and gpu(tiny()) == "pallas"
    assert gpu(tiny('run.backend="xla"')) == "vmap"
    for other in ('train.optimizer="adam"', 'run.dtype="float64"', 'train.batch="full"'):
        assert gpu(tiny(other)) == "vmap", other
    assert kernel.step_kind(tiny(), setup.setup(tiny()), "cpu") == "lanes"
    assert gpu(tiny('run.backend="pallas"')) == "pallas"


def test_auto_and_xla_name_the_same_experiment(tiny):
    """The default moved from "xla" to "auto": configs that spell "xla" (and every default config) keep their
    config_id, so their datasets are extended, not refused; "pallas" still names another experiment. The default
    config's id is the one jumpsim gave before "auto" existed."""
    assert tiny().config_id == tiny('run.backend="xla"').config_id == tiny('run.backend="auto"').config_id
    assert tiny('run.backend="pallas"').config_id != tiny().config_id
    assert jumpsim.load_config(None, []).config_id == "a37534da4439"  # as tests/test_config.py pins it
