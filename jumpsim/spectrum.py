"""Singular values and numerical rank of the end-to-end matrix, for ONE seed.

The detector needs, at every check, only the numerical rank #{sigma_i > tau}. Counting is much
cheaper than computing every sigma_i: the float64 Gram matrix G = A^T A (eigenvalues sigma_i^2)
is reduced to tridiagonal form by Householder reflections and a Sturm sequence counts its
eigenvalues below tau^2 (Sylvester's law of inertia). Everything is plain array arithmetic, so
under vmap the seeds advance in lock-step SIMD lanes instead of one LAPACK call per seed (an SVD
of 20x20 costs ~11 us of a core in LAPACK, about a fifth of 100 SGD steps).

The Gram route squares the condition number, which is why it runs in float64: eigenvalue errors
are ~1e-16 * sigma_max^2, far below tau^2 for any useful threshold. Full singular values
(traces, final values) still come from an SVD.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .model import HIGHEST


def _dot(a, b):
    return jnp.dot(a, b, precision=HIGHEST)


def _svd_values(a: jax.Array) -> jax.Array:
    """On CPU, LAPACK's QR-iteration driver (gesvd): 18 us for a 20x20 float32 matrix vs
    26 us for the default divide-and-conquer gesdd on one core (jax 0.10). On GPUs, jax's
    default (batched Jacobi for small matrices)."""
    if jax.default_backend() == "cpu":
        return jax.lax.linalg.svd(a, full_matrices=False, compute_uv=False, algorithm=jax.lax.linalg.SvdAlgorithm.QR)
    return jnp.linalg.svd(a, compute_uv=False)


@jax.custom_batching.custom_vmap
def singular_values(a: jax.Array) -> jax.Array:
    """Singular values of (n, m) in descending order, length min(n, m).

    Under vmap this is one batched LAPACK/cuSOLVER call, except on a CPU split into several
    devices: there jaxlib's batched SVD parallelises over a thread pool that the devices
    already occupy, and inside a loop it deadlocks (seen with jax 0.10 on 2 cores), so each
    device maps over its seeds in turn.
    """
    return _svd_values(a)


@singular_values.def_vmap
def _singular_values_vmap(axis_size, in_batched, a):
    if jax.default_backend() == "cpu" and jax.local_device_count() > 1:
        return jax.lax.map(_svd_values, a), True
    return jax.vmap(_svd_values)(a), True


def gram(a: jax.Array) -> jax.Array:
    """float64 Gram matrix of the smaller side: (p, p), p = min(n, m), eigenvalues sigma^2."""
    a = a.astype(jnp.float64)
    if a.shape[0] < a.shape[1]:
        return jnp.matmul(a, a.T, precision=HIGHEST)
    return jnp.matmul(a.T, a, precision=HIGHEST)


def tridiagonalize(g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Householder reduction of a symmetric (p, p) matrix to tridiagonal form with the same
    eigenvalues: returns (diagonal (p,), off-diagonal (p-1,)). Golub & Van Loan 8.3.1, written
    on the whole matrix with masks (H G H = G - v w^T - w v^T holds for all of G), so each
    step is one matrix-vector product and a rank-2 update that fuse well under vmap."""
    p = g.shape[0]
    idx = jnp.arange(p)

    def step(k, g):
        col = jax.lax.dynamic_index_in_dim(g, k, axis=1, keepdims=False)
        x = jnp.where(idx > k, col, 0.0)
        x0 = jax.lax.dynamic_index_in_dim(x, k + 1, keepdims=False)
        norm = jnp.sqrt(_dot(x, x))
        alpha = jnp.where(x0 >= 0, -norm, norm)
        v = x - jnp.where(idx == k + 1, alpha, 0.0)
        vv = _dot(v, v)
        beta = jnp.where(vv > 0, 2.0 / jnp.where(vv > 0, vv, 1.0), 0.0)
        pv = beta * _dot(g, v)
        w = pv - (0.5 * beta * _dot(v, pv)) * v
        return g - jnp.outer(v, w) - jnp.outer(w, v)

    g = jax.lax.fori_loop(0, p - 2, step, g) if p > 2 else g
    return jnp.diagonal(g), jnp.diagonal(g, 1)


def count_below(d: jax.Array, e: jax.Array, x) -> jax.Array:
    """Number of eigenvalues < x of the symmetric tridiagonal (d, e): the negative terms of
    the Sturm sequence q_i = d_i - x - e_{i-1}^2 / q_{i-1} (a zero q is nudged below 0)."""
    tiny = jnp.finfo(d.dtype).tiny

    def body(q, de):
        di, ei2 = de
        q = di - x - ei2 / q
        q = jnp.where(q == 0, -tiny, q)
        return q, q < 0

    q0 = d[0] - x
    q0 = jnp.where(q0 == 0, -tiny, q0)
    _, neg = jax.lax.scan(body, q0, (d[1:], e**2))
    return (q0 < 0).astype(jnp.int32) + jnp.sum(neg, dtype=jnp.int32)


def kth_largest_eigenvalue(d: jax.Array, e: jax.Array, k: int, iters: int = 64) -> jax.Array:
    """k-th largest eigenvalue (k = 1 the largest) of the symmetric tridiagonal (d, e), by bisection on
    Sturm counts from the Gershgorin bounds: after ``iters`` halvings the bracket is ~2^-64 of the
    spectrum's width (float64: about 1e-18 sigma_max^2)."""
    p = d.shape[0]
    ae = jnp.abs(e)
    radius = jnp.concatenate([ae, jnp.zeros(1, d.dtype)]) + jnp.concatenate([jnp.zeros(1, d.dtype), ae])
    hi = jnp.max(d + radius)
    lo = jnp.minimum(jnp.min(d - radius), 0.0)

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        above = count_below(d, e, mid) <= p - k  # at least k eigenvalues >= mid
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    return jax.lax.fori_loop(0, iters, body, (lo, hi))[1]


def largest_eigenvalue(d: jax.Array, e: jax.Array, iters: int = 64) -> jax.Array:
    """Largest eigenvalue of (d, e) (``kth_largest_eigenvalue`` with k = 1)."""
    return kth_largest_eigenvalue(d, e, 1, iters)


def singular_value(a: jax.Array, k: int) -> jax.Array:
    """k-th largest singular value of (n, m) a (k = 1 the largest), float64, from the Gram matrix's
    tridiagonal form and bisection (no SVD): the splitting scores need one sigma per check."""
    d, e = tridiagonalize(gram(a))
    return jnp.sqrt(jnp.maximum(kth_largest_eigenvalue(d, e, k), 0.0))


def numerical_rank(a: jax.Array, threshold: float, relative: bool) -> jax.Array:
    """#{sigma_i(a) > tau}, tau = threshold or threshold * sigma_max, by an inertia count of
    the float64 Gram matrix (no SVD). a: (n, m); returns () int32."""
    d, e = tridiagonalize(gram(a))
    tau2 = threshold**2 * (largest_eigenvalue(d, e) if relative else 1.0)
    return (d.shape[0] - count_below(d, e, tau2)).astype(jnp.int32)
