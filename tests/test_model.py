"""The model's math: structured gradient vs autodiff, rank-one structure, analytic minima."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jumpsim import model


def _params(depth, n=5, m=4, width=6, seed=0, dtype=jnp.float64):
    return model.init_gaussian(jax.random.key(seed), n, m, depth, width, 1.0, dtype)


@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("scale", [1.0, 17.0])
def test_structured_gradient_equals_autodiff(depth, batch, scale):
    params = _params(depth, seed=depth * 10 + batch)
    rng = np.random.default_rng(batch)
    rows = jnp.asarray(rng.integers(0, 5, batch), jnp.int32)
    cols = jnp.asarray(rng.integers(0, 4, batch), jnp.int32)
    vals = jnp.asarray(rng.standard_normal(batch))
    got, rho = model.minibatch_grads(params, rows, cols, vals, scale)
    want = jax.grad(model.data_loss)(params, rows, cols, vals, scale)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)
    a = np.asarray(model.end_to_end(params))
    np.testing.assert_allclose(rho, a[rows, cols] - vals, rtol=1e-12)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_per_entry_gradient_is_rank_one_and_local(depth):
    params = _params(depth, seed=3)
    i, j = 3, 1
    grads, _ = model.minibatch_grads(
        params, jnp.array([i], jnp.int32), jnp.array([j], jnp.int32), jnp.array([0.7]), 1.0
    )
    for g in grads:
        s = np.linalg.svd(np.asarray(g), compute_uv=False)
        assert s[0] > 1e-6 and np.all(s[1:] < 1e-12 * s[0]), s  # rank one
    g1, gl = np.asarray(grads[0]), np.asarray(grads[-1])
    assert np.all(np.delete(g1, j, axis=1) == 0) and np.any(g1[:, j] != 0)  # only column j of W_1
    assert np.all(np.delete(gl, i, axis=0) == 0) and np.any(gl[i, :] != 0)  # only row i of W_L


def test_sgd_update_is_gradient_plus_ridge():
    params = _params(3)
    grads = _params(3, seed=9)
    new = model.sgd_update(params, grads, 0.1, 0.01)
    for w, g, nw in zip(params, grads, new):
        np.testing.assert_allclose(nw, w - 0.1 * (g + 0.02 * w), rtol=1e-14)


@pytest.mark.parametrize("depth,loss", [(2, "sum"), (3, "sum"), (3, "mean"), (4, "mean")])
def test_gradient_descent_lands_on_analytic_singular_values(depth, loss):
    """Fully observed target with singular values above and below a_min: GD from a balanced
    start above every singular value (W_l ~ c I) must reach the larger root s(a) of a = s + lam_eff s^((2-L)/L)
    (``model.analytic_singular_value``) for each a >= a_min, and 0 below a_min."""
    n = m = 4
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((m, m)))
    ridge = 0.05 if loss == "sum" else 0.05 / (n * m)
    lam_eff = 0.05
    if depth == 2:
        a_vals = np.array([2.0, 1.0, 0.3, 0.02])  # s = max(a - lam, 0)
    else:
        s_star = (lam_eff * (depth - 2) / depth) ** (depth / (2 * depth - 2))
        a_min = s_star * (2 * depth - 2) / (depth - 2)
        a_vals = np.array([2.0, 1.0, 1.3 * a_min, 0.6 * a_min])
    target = u @ np.diag(a_vals) @ v.T
    rows, cols = np.nonzero(np.ones((n, m), bool))
    noise = _params(depth, n, m, width=4, seed=1)
    params = tuple(1.5 * np.eye(*p.shape) + 1e-3 * p for p in noise)  # s(A) ~ 1.5^L > max a
    scale = model.loss_scale(loss, n * m)
    out = jax.jit(model.gradient_descent, static_argnames=("scale", "lr", "ridge", "steps"))(
        tuple(jnp.asarray(p) for p in params),
        jnp.asarray(rows, jnp.int32),
        jnp.asarray(cols, jnp.int32),
        jnp.asarray(target[rows, cols]),
        scale=scale,
        lr=0.02 if loss == "sum" else 0.02 * n * m / 2,
        ridge=ridge,
        steps=60000,
    )
    got = np.linalg.svd(np.asarray(model.end_to_end(out)), compute_uv=False)
    want = np.sort([model.analytic_singular_value(a, lam_eff, depth) for a in a_vals])[::-1]
    assert want[-1] == 0.0 and want[-2] > 0  # the problem has both kinds of singular value
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_analytic_singular_value_solves_critical_equation():
    """Above a_min the value is a positive root of a = s + lam s^((2-L)/L) and a local minimum;
    below a_min only s = 0 is left. Both sides are exercised for every depth."""
    lam = 0.1
    for depth in (3, 4, 5):
        s_star = (lam * (depth - 2) / depth) ** (depth / (2 * depth - 2))
        a_min = s_star * (2 * depth - 2) / (depth - 2)
        for a in (1.01 * a_min, 1.5 * a_min, 3.0 * a_min):
            s = model.analytic_singular_value(a, lam, depth)
            assert s > s_star
            assert abs(s + lam * s ** ((2 - depth) / depth) - a) < 1e-10
            d2 = 2 + 2 * lam * (2 / depth - 1) * s ** (2 / depth - 2)  # second derivative of (a-s)^2 + lam L s^(2/L)
            assert d2 > 0
        assert model.analytic_singular_value(0.99 * a_min, lam, depth) == 0.0
