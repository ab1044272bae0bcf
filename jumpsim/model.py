"""Deep linear network for matrix completion: parameters, losses, gradients, SGD update.

Parameters are a tuple ``(W_1, ..., W_L)`` with W_1: (w, m), hidden (w, w), W_L: (n, w), and
end-to-end matrix A = W_L ... W_1 (n, m). Everything here is written for ONE seed; the
simulator vmaps it. Every matrix product runs at HIGHEST precision: TF32 on GPUs would wreck
the small singular values that the rank count depends on.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .files import layer_shapes

Params = tuple[jax.Array, ...]
HIGHEST = jax.lax.Precision.HIGHEST


def mm(a: jax.Array, b: jax.Array) -> jax.Array:
    """Matrix product at full precision."""
    return jnp.matmul(a, b, precision=HIGHEST)


def init_gaussian(key: jax.Array, n: int, m: int, depth: int, width: int, scale: float, dtype) -> Params:
    """W_l entries ~ N(0, scale^2 / fan_in)."""
    keys = jax.random.split(key, depth)
    return tuple(
        (scale / math.sqrt(shape[1])) * jax.random.normal(k, shape, dtype)  # Python float: stays weakly typed
        for k, shape in zip(keys, layer_shapes(n, m, depth, width))
    )


def end_to_end(params: Params) -> jax.Array:
    """A = W_L ... W_1, shape (n, m)."""
    a = params[0]
    for w in params[1:]:
        a = mm(w, a)
    return a


def loss_scale(loss: str, n_observed: int) -> float:
    """Factor c such that the data term is c * mean over Omega of squared errors."""
    return 1.0 if loss == "mean" else float(n_observed)


def data_loss(params: Params, rows, cols, values, scale: float) -> jax.Array:
    """scale * mean over the given entries of (A[i, j] - A*[i, j])^2."""
    a = end_to_end(params)
    return scale * jnp.mean((a[rows, cols] - values) ** 2)


def minibatch_grads(params: Params, rows, cols, values, scale: float) -> tuple[Params, jax.Array]:
    """Gradient of ``data_loss`` over a minibatch, from its rank-one structure.

    For one entry (i, j) with residual rho, G_l = 2 rho u_l v_l^T, where
    v_l = W_{l-1} ... W_1 e_j is the input of layer l and u_l = (W_L ... W_{l+1})^T e_i the
    back-propagated output direction: O(L w^2) per entry by matrix-vector products instead of
    O(L w^3) for the full product. rows, cols, values: (B,). Returns (grads, residuals (B,)).
    """
    depth = len(params)
    n, m = params[-1].shape[0], params[0].shape[1]
    vs = [jax.nn.one_hot(cols, m, dtype=params[0].dtype)]  # v_1 = e_j, (B, m)
    x = params[0][:, cols].T
    for l in range(1, depth):
        vs.append(x)  # (B, d_l)
        if l < depth - 1:
            x = mm(x, params[l].T)
    us = [jax.nn.one_hot(rows, n, dtype=params[0].dtype)]  # u_L = e_i, (B, n)
    y = params[-1][rows, :]
    for l in range(depth - 2, -1, -1):
        us.insert(0, y)  # (B, d_{l+1})
        if l > 0:
            y = mm(y, params[l])
    pred = jnp.sum(us[-2] * vs[-1], axis=-1)  # W_L[i, :] . v_L
    rho = pred - values
    coef = (2.0 * scale / rows.shape[0]) * rho  # (B,)
    grads = tuple(mm((coef[:, None] * u).T, v) for u, v in zip(us, vs))
    return grads, rho


def full_grads(params: Params, rows, cols, values, scale: float) -> Params:
    """Gradient of the data term over all given entries (autodiff; the GD path)."""
    return jax.grad(data_loss)(params, rows, cols, values, scale)


def sgd_update(params: Params, grads: Params, lr, ridge) -> Params:
    """W <- W - lr (G + 2 ridge W). Written this way, not as (1 - 2 lr ridge) W - lr G: in
    float32 the rounded factor would bias the effective ridge by ~1e-4 relative."""
    return tuple(w - lr * (g + 2.0 * ridge * w) for w, g in zip(params, grads))


def gradient_descent(params: Params, rows, cols, values, scale: float, lr: float, ridge: float, steps: int) -> Params:
    """Full-batch gradient descent for ``steps`` steps (one trajectory, jitted scan)."""

    def body(p, _):
        return sgd_update(p, full_grads(p, rows, cols, values, scale), lr, ridge), None

    return jax.lax.scan(body, params, None, length=steps)[0]


def analytic_singular_value(a: float, lam_eff: float, depth: int) -> float:
    """Learned singular value s at the local minimum of (a - s)^2 + lam_eff L s^(2/L) that a
    balanced gradient descent reaches from above: the larger root of a = s + lam_eff
    s^((2-L)/L) when a >= a_min, else 0. lam_eff = ridge (sum loss) or ridge |Omega| (mean),
    for a fully observed problem. The A-space problem separates over singular values (the
    DLN's representation cost is the Schatten-2/L quasi-norm; Wang & Jacot, arXiv 2305.16038)."""
    L = depth
    if L == 2:
        return max(a - lam_eff, 0.0)
    s_star = (lam_eff * (L - 2) / L) ** (L / (2 * L - 2))
    a_min = s_star * (2 * L - 2) / (L - 2)
    if a < a_min:
        return 0.0
    f = lambda s: s + lam_eff * s ** ((2 - L) / L) - a  # increasing on [s_star, a]
    lo, hi = s_star, a
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)
