"""Numerical rank by inertia counting, and singular values, against float64 numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jumpsim import dynamics, model, spectrum


def _matrix(sv, n=20, m=20, seed=0):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((m, m)))
    s = np.zeros((n, m))
    s[np.arange(len(sv)), np.arange(len(sv))] = sv
    return u @ s @ v.T


def test_tridiagonalization_keeps_eigenvalues():
    g = np.asarray(spectrum.gram(jnp.asarray(_matrix(np.linspace(5, 0.1, 20)))))
    d, e = spectrum.tridiagonalize(jnp.asarray(g))
    t = np.diag(np.asarray(d)) + np.diag(np.asarray(e), 1) + np.diag(np.asarray(e), -1)
    np.testing.assert_allclose(np.linalg.eigvalsh(t), np.linalg.eigvalsh(g), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x", [1e-8, 0.5, 3.0, 100.0])
def test_sturm_count_matches_eigenvalues(x):
    rng = np.random.default_rng(1)
    d, e = rng.standard_normal(12) * 3, rng.standard_normal(11)
    t = np.diag(d) + np.diag(e, 1) + np.diag(e, -1)
    assert int(spectrum.count_below(jnp.asarray(d), jnp.asarray(e), x)) == int(np.sum(np.linalg.eigvalsh(t) < x))


@pytest.mark.parametrize("shape", [(20, 20), (12, 7), (5, 9)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_numerical_rank_equals_float64_svd_count(shape, dtype):
    """Spectra with a wide gap, with values just either side of tau (0.9 tau, 1.1 tau), and
    exact zeros: the inertia count equals #{sigma > tau} of a float64 SVD, absolute and
    relative."""
    n, m = shape
    p = min(n, m)
    cases = [
        [15.0, 10.0] + [1e-6] * (p - 2),
        [15.0, 10.0, 0.011, 0.009] + [0.0] * (p - 4),
        list(np.geomspace(20, 1e-7, p)),
        [0.0] * p,
    ]
    for k, sv in enumerate(cases):
        a = np.asarray(jnp.asarray(_matrix(sv, n, m, seed=k), dtype), np.float64)  # exactly the matrix the kernel sees
        s64 = np.linalg.svd(a, compute_uv=False)
        for tau, rel in [(1e-2, False), (1e-3, True)]:
            want = int(np.sum(s64 > (tau * s64[0] if rel else tau)))
            got = int(spectrum.numerical_rank(jnp.asarray(a, dtype), tau, rel))
            assert got == want, (sv[:4], tau, rel, got, want)


def test_numerical_rank_vmaps():
    mats = np.stack([_matrix([3.0] * r + [0.0] * (6 - r), 6, 6, seed=r) for r in range(7)])
    got = jax.jit(jax.vmap(lambda a: spectrum.numerical_rank(a, 0.01, False)))(jnp.asarray(mats, jnp.float32))
    assert list(np.asarray(got)) == list(range(7))


def test_singular_values_float32_vs_numpy_float64():
    """float32 products at HIGHEST precision and the SVD keep small singular values (1e-5 of
    the largest)."""
    rng = np.random.default_rng(2)
    a = _matrix([10.0, 5.0, 1e-3, 1e-4])
    w1 = rng.standard_normal((20, 20))
    w2 = a @ np.linalg.inv(w1)  # A = W2 W1
    params32 = (jnp.asarray(w1, jnp.float32), jnp.asarray(w2, jnp.float32))
    got = np.asarray(spectrum.singular_values(model.end_to_end(params32)), np.float64)
    p64 = [np.asarray(w, np.float64) for w in params32]
    want = np.linalg.svd(p64[1] @ p64[0], compute_uv=False)
    np.testing.assert_allclose(got[:4], want[:4], rtol=0.05, atol=2e-5)
    assert np.all(np.diff(got) <= 0)


def test_kth_singular_value_matches_numpy_float64():
    """Every k-th singular value by bisection equals float64 numpy's: to 1e-9 relative down to 2.5e-4 of
    the largest, and to 1e-4 at 1.25e-6 of it (the Gram route's error is ~1e-16 sigma_max^2 on sigma^2,
    i.e. 3e-5 relative there), which is what the splitting scores need (they stop at tau ~ 1e-2)."""
    rng = np.random.default_rng(5)
    u, _ = np.linalg.qr(rng.standard_normal((9, 9)))
    v, _ = np.linalg.qr(rng.standard_normal((7, 7)))
    sv = np.array([8.0, 3.0, 1.0, 0.05, 2e-3, 1e-5, 0.0])
    a = u[:, :7] @ np.diag(sv) @ v.T
    with dynamics.float64_scope():
        got = [float(jax.jit(lambda x, k=k: spectrum.singular_value(x, k))(jnp.asarray(a))) for k in range(1, 8)]
    want = np.linalg.svd(a, compute_uv=False)
    np.testing.assert_allclose(got[:5], want[:5], rtol=1e-9)
    np.testing.assert_allclose(got[5], want[5], rtol=1e-4)
    assert got[6] < 1e-7
