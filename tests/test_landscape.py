"""jumpsim.landscape: the saddle, the path over it and SGD's noise, against a fully observed problem whose
critical points are known in closed form, and against independent derivatives."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from jumpsim import landscape, model
from jumpsim.dynamics import float64_scope

A = np.array([3.0, 2.0, 0.8, 0.0])  # the target's singular values (diagonal, 4 x 4, fully observed)
RIDGE = 0.3 / 16  # lam_eff = ridge * |Omega| = 0.3: sigma_3 = 0.8 has a rank-3 minimum and a saddle below it
DEPTH = 3


def _g(s, a, lam_eff=0.3, depth=DEPTH):
    """|Omega| x F's share of one singular value s of a balanced, aligned network: (a - s)^2 + lam L s^(2/L)."""
    return (a - s) ** 2 + lam_eff * depth * s ** (2 / depth)


def _problem():
    n = len(A)
    rows, cols = np.divmod(np.arange(n * n), n)
    target = np.diag(A)
    ls = landscape.landscape(rows, cols, target[rows, cols], 1.0, RIDGE, [(n, n)] * DEPTH)
    s = np.array([model.analytic_singular_value(a, 0.3, DEPTH) for a in A])  # the rank-3 minimum's values
    ws = [np.diag(s ** (1 / DEPTH))] * DEPTH
    return ls, s, ws


def test_sample_gradients_and_noise_against_independent_derivatives():
    ls, _, ws = _problem()
    rng = np.random.default_rng(0)
    with float64_scope():
        x = jnp.asarray(landscape.flatten(ws) + 0.1 * rng.standard_normal(len(A) ** 2 * DEPTH))
        g = np.asarray(landscape.sample_gradients(ls, x))
        # their mean is the data loss's gradient (the loss is the mean of the entries' terms)
        np.testing.assert_allclose(g.mean(0), np.asarray(jax.grad(lambda z: landscape.data_loss(ls, z))(x)), atol=1e-12)
        # one draw's gradient along t, by forward mode on the vector of the entries' terms
        t = rng.standard_normal(x.shape[0])
        t /= np.linalg.norm(t)

        def terms(z):
            a = model.end_to_end(landscape.unflatten(ls, z))
            return (a[ls.rows, ls.cols] - ls.values) ** 2

        along = np.asarray(jax.jvp(terms, (x,), (jnp.asarray(t),))[1])
        assert landscape.noise_along(ls, x[None], t[None])[0] == pytest.approx(np.var(along), rel=1e-10)


def test_sigma_sq_and_its_gradient():
    """sigma_k^2 equals numpy's, and its gradient (the eigenvector held fixed) the finite difference, also
    where A has zero singular values (where eigh's own derivative is NaN)."""
    ls, _, ws = _problem()
    rng = np.random.default_rng(1)
    with float64_scope():
        x = landscape.flatten(ws) + 0.05 * rng.standard_normal(len(A) ** 2 * DEPTH)
        a = np.asarray(model.end_to_end(landscape.unflatten(ls, x)))
        sv = np.linalg.svd(a, compute_uv=False)
        assert float(landscape.sigma_sq(ls, jnp.asarray(x), 3)) == pytest.approx(sv[2] ** 2, rel=1e-10)
        grad = np.asarray(jax.grad(lambda z: landscape.sigma_sq(ls, z, 3))(jnp.asarray(x)))
        d = rng.standard_normal(x.shape)
        eps = 1e-6
        fd = [
            np.linalg.svd(np.asarray(model.end_to_end(landscape.unflatten(ls, x + e * d))), compute_uv=False)[2] ** 2
            for e in (eps, -eps)
        ]
        assert grad @ d == pytest.approx((fd[0] - fd[1]) / (2 * eps), rel=1e-6)
        # at a rank-3 point (sigma_4 = 0 exactly) the gradient is finite
        x3 = jnp.asarray(landscape.flatten(ws))
        assert np.all(np.isfinite(np.asarray(jax.grad(lambda z: landscape.sigma_sq(ls, z, 3))(x3))))


def test_saddle_and_barrier_match_the_closed_form():
    """Fully observed: a balanced, aligned network's F separates over singular values, so the saddle below the
    rank-3 minimum has sigma_3 at the local maximum of (a_3 - s)^2 + lam L s^(2/L) (the smaller root of
    a_3 = s + lam s^((2-L)/L)), the others at their minima, and descent from it reaches the rank-2 minimum."""
    ls, s, ws = _problem()
    lam = 0.3
    s_sad = scipy.optimize.brentq(lambda v: v + lam * v ** ((2 - DEPTH) / DEPTH) - A[2], 1e-6, (lam / 3) ** 0.75)
    n_obs = len(A) ** 2
    f_start = sum(_g(v, a) for v, a in zip(s, A)) / n_obs
    f_saddle = f_start + (_g(s_sad, A[2]) - _g(s[2], A[2])) / n_obs
    f_rank2 = f_start + (_g(0.0, A[2]) - _g(s[2], A[2])) / n_obs
    b = landscape.barrier(ls, landscape.flatten(ws), 3, sweeps=30, levels=30, steps=20_000)
    sad = b.saddle
    assert b.start_value == pytest.approx(f_start, rel=1e-12)
    assert sad.index == 1 and sad.grad_norm < 1e-9
    assert sad.sigma_k == pytest.approx(s_sad, rel=1e-6)
    assert sad.value == pytest.approx(f_saddle, rel=1e-9)
    assert b.path_values[-1] == pytest.approx(f_rank2, rel=1e-6)  # descent from the saddle ends at rank 2
    with float64_scope():
        assert float(landscape.sigma_sq(ls, jnp.asarray(sad.lower), 3)) < 1e-12
        assert float(landscape.objective(ls, jnp.asarray(sad.upper))) == pytest.approx(f_start, rel=1e-9)
    # the string from the start over the saddle: its highest image within a few per cent of the barrier,
    # never above it (images sit on the path, not on the saddle)
    assert 0.95 * (f_saddle - f_start) <= b.barrier <= (f_saddle - f_start) * (1 + 1e-9)
    # the escape direction at the start is sigma_3's: curvature there = d^2/ds^2 of F along it, positive
    assert b.curvature > 0 and b.top_curvature >= b.curvature
    # the other route to the same saddle: the string between the start and the rank-2 minimum, its top refined
    two = landscape.saddle_between(ls, landscape.flatten(ws), sad.lower, 3, images=20, sweeps=30, steps=20_000)
    assert two.index == 1 and two.grad_norm < 1e-9
    assert two.value == pytest.approx(f_saddle, rel=1e-9) and two.sigma_k == pytest.approx(s_sad, rel=1e-6)
