"""The loss landscape around a minimum, in float64: the saddle on the way to a lower rank, the path
over it, the Hessian and SGD's own noise there. What the escape theories need to predict a rate.

The objective is SGD's: F(x) = data loss + ridge * |x|^2 over the flattened layers x (P,), the data
loss ``model.data_loss`` over all observed entries. Finding the saddle: minimise F on the level sets
sigma_k(A)^2 = s^2 for s falling from the minimum's sigma_k toward 0 (continuation, L-BFGS with a
stiff penalty), take the highest point, and refine it by Newton's method (pseudo-inverse over the
symmetries' zero modes) into a critical point; gradient descent from it along its unstable
direction, both ways, shows which minima it joins. The string method (E, Ren, Vanden-Eijnden)
relaxes a path between two minima onto the minimum-energy path, whose highest point is the barrier.
Everything here runs for one problem and one start; call it inside ``dynamics.float64_scope()``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from . import model
from .dynamics import float64_scope

ZERO = 1e-8  # Hessian eigenvalues at most this in size are the symmetries' zero modes


class Landscape(NamedTuple):
    """One problem's objective. rows, cols, values: (K,) the observed entries; shapes: the layers'."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    scale: float  # model.loss_scale
    ridge: float
    shapes: tuple[tuple[int, int], ...]


class Barrier(NamedTuple):
    """The barrier from a rank-k minimum to rank k - 1 and what the escape theories read from it (B = 1).

    The path is the string from the start to the rank-(k-1) end of the saddle's descent; the escape
    direction is its tangent at the start. Predicted slopes b of log k = a - b / eta (batch B: times B):
    ``b_linear`` = 2 dF / H_a (diffusion with noise covariance H / B), ``b_log`` = dlog L / h (the
    log-loss barrier of noise 2 L H / B, L the data loss at the path's top over the start's, as that form
    reads for a loss without a ridge; h = H_a, ``b_log_top`` with h the largest eigenvalue), and
    ``b_path`` = 2 * integral of dF / C_t along the path (1-D diffusion along it with SGD's measured noise
    C_t along the tangent: no model of the noise)."""

    start_value: float  # F at the start minimum
    start_data_loss: float
    saddle: Saddle
    path: np.ndarray  # (N, P) the string, start first
    path_values: np.ndarray  # (N,) F along it
    barrier: float  # the highest F along the path minus F at the start
    data_barrier_log: float  # log(data loss at the path's highest point / at the start)
    curvature: float  # H_a: the Hessian at the start along the escape direction
    top_curvature: float  # the Hessian's largest eigenvalue at the start
    noise: float  # C_a: one draw's gradient variance at the start along the escape direction
    b_linear: float
    b_log: float
    b_log_top: float
    b_path: float


class Saddle(NamedTuple):
    """An index-1 saddle below a rank-k minimum and where descent from it leads (flat (P,) vectors)."""

    x: np.ndarray
    value: float  # F at the saddle
    data_loss: float
    sigma_k: float  # sigma_k(A) at the saddle
    negative: float  # the Hessian's negative eigenvalue
    index: int  # how many negative eigenvalues (1 for a saddle of the escape)
    grad_norm: float
    lower: np.ndarray  # where descent from the saddle toward sigma_k -> 0 ends (rank k - 1)
    upper: np.ndarray  # where descent from the saddle the other way ends (rank k)
    down: np.ndarray  # the unstable direction, unit, pointing toward ``lower``
    approach: np.ndarray  # (M, P) the constrained minima along sigma_k from the start to the highest one


def landscape(rows, cols, values, scale: float, ridge: float, shapes) -> Landscape:
    return Landscape(
        np.asarray(rows),
        np.asarray(cols),
        np.asarray(values, np.float64),
        float(scale),
        float(ridge),
        tuple(map(tuple, shapes)),
    )


def flatten(params) -> np.ndarray:
    return np.concatenate([np.asarray(w, np.float64).ravel() for w in params])


def unflatten(ls: Landscape, x) -> tuple:
    out, i = [], 0
    for shape in ls.shapes:
        n = math.prod(shape)
        out.append(x[i : i + n].reshape(shape))
        i += n
    return tuple(out)


def data_loss(ls: Landscape, x) -> jax.Array:
    return model.data_loss(unflatten(ls, x), ls.rows, ls.cols, ls.values, ls.scale)


def objective(ls: Landscape, x) -> jax.Array:
    """F(x) = data loss + ridge |x|^2: what SGD's mean step descends."""
    return data_loss(ls, x) + ls.ridge * jnp.sum(x**2)


def sigma_sq(ls: Landscape, x, k: int) -> jax.Array:
    """sigma_k(A)^2 with the gradient v v^T of the k-th eigenvalue of A^T A (v held fixed): eigh's own
    derivative is NaN at the degenerate zero singular values a rank-k matrix has."""
    a = model.end_to_end(unflatten(ls, x))
    g = a.T @ a
    v = jax.lax.stop_gradient(jnp.linalg.eigh(jax.lax.stop_gradient(g))[1][:, -k])
    return v @ g @ v


def sample_gradients(ls: Landscape, x) -> jax.Array:
    """(K, P): the gradient of each observed entry's term, scale * (A_ij - A*_ij)^2, what one SGD draw
    (batch 1) steps along besides the ridge (``model.minibatch_grads`` of a batch of one, per entry).
    Their covariance is SGD's noise per draw."""
    params = unflatten(ls, x)

    def one(i, j, v):
        grads, _ = model.minibatch_grads(params, i[None], j[None], v[None], ls.scale)
        return jnp.concatenate([g.ravel() for g in grads])

    return jax.vmap(one)(jnp.asarray(ls.rows), jnp.asarray(ls.cols), jnp.asarray(ls.values))


def noise_along(ls: Landscape, xs, directions) -> np.ndarray:
    """(N,): the variance over the observed entries of one draw's gradient at xs[i] along the unit
    directions[i] (xs, directions: (N, P)); a batch of B draws divides it by B."""
    var = jax.jit(jax.vmap(lambda x, d: jnp.var(sample_gradients(ls, x) @ d)))
    return np.asarray(var(jnp.asarray(xs), jnp.asarray(directions)))


def values(ls: Landscape, xs) -> np.ndarray:
    """(N,): F at each of the points xs (N, P)."""
    return np.asarray(jax.jit(jax.vmap(lambda x: objective(ls, x)))(jnp.asarray(xs)))


def hessian(ls: Landscape, x) -> np.ndarray:
    return np.asarray(jax.hessian(lambda z: objective(ls, z))(jnp.asarray(x)))


def constrained_path(ls: Landscape, x0, k: int, levels, stiffness: float = 1e3, iters: int = 20000) -> np.ndarray:
    """(len(levels), P): the minimum of F on each level set sigma_k = level (a penalty ``stiffness`` on
    sigma_k^2 - level^2; L-BFGS), each started from the previous one: F along sigma_k as the coordinate."""
    vg = jax.jit(jax.value_and_grad(lambda z, s2: objective(ls, z) + stiffness * (sigma_sq(ls, z, k) - s2) ** 2))
    opts = {"maxiter": iters, "gtol": 1e-11, "ftol": 1e-16}
    out, x = [], np.asarray(x0, np.float64)
    for s in levels:

        def f(z, s2=float(s) ** 2):
            v, g = vg(jnp.asarray(z), s2)
            return float(v), np.asarray(g, np.float64)

        x = scipy.optimize.minimize(f, x, jac=True, method="L-BFGS-B", options=opts).x
        out.append(x)
    return np.array(out)


def critical_point(ls: Landscape, x, iters: int = 100, tol: float = 1e-12) -> np.ndarray:
    """Newton's method on grad F = 0 from ``x`` (the pseudo-inverse skips the zero modes), each step shortened
    until |grad F| falls (the Newton direction descends |grad F|^2): the nearest critical point of any index,
    found in a few steps from a good guess. Where it stalls, the last point (its gradient says how far off)."""
    grad = jax.jit(jax.grad(lambda z: objective(ls, z)))
    x = np.asarray(x, np.float64)
    g = np.asarray(grad(jnp.asarray(x)))
    for _ in range(iters):
        if np.linalg.norm(g) < tol:
            break
        lam, v = np.linalg.eigh(hessian(ls, x))
        keep = np.abs(lam) > ZERO
        step = v[:, keep] @ ((v[:, keep].T @ g) / lam[keep])
        alpha = 1.0
        while alpha > 1e-6:
            g_new = np.asarray(grad(jnp.asarray(x - alpha * step)))
            if np.all(np.isfinite(g_new)) and np.linalg.norm(g_new) < (1 - 1e-4 * alpha) * np.linalg.norm(g):
                break
            alpha /= 2
        else:
            break
        x, g = x - alpha * step, g_new
    return x


def descend(ls: Landscape, x, lr: float, steps: int, every: int = 1) -> np.ndarray:
    """Gradient descent on F from ``x``: (steps // every + 1, P), the start first."""
    grad = jax.grad(lambda z: objective(ls, z))

    def body(z, _):
        z = jax.lax.fori_loop(0, every, lambda _, w: w - lr * grad(w), z)
        return z, z

    x = jnp.asarray(x, jnp.float64)
    path = jax.jit(lambda z: jax.lax.scan(body, z, None, length=steps // every)[1])(x)
    return np.concatenate([np.asarray(x)[None], np.asarray(path)])


def saddle_below(ls: Landscape, x0, k: int, levels: int = 60, lr: float = 0.5, steps: int = 200_000) -> Saddle:
    """The saddle between the rank-k minimum ``x0`` and rank k - 1: the highest point of F along sigma_k
    (``levels`` levels from sigma_k(x0) to 1 % of it, finer near 0 where the barrier of a deep network sits),
    refined into a critical point; then descent (``steps`` of ``lr``) from it both ways along its unstable
    direction."""
    with float64_scope():
        s0 = math.sqrt(float(sigma_sq(ls, jnp.asarray(x0), k)))
        grid = s0 * np.geomspace(1.0, 0.01, levels)[1:]
        path = constrained_path(ls, x0, k, grid)
        top = int(np.argmax(values(ls, path)))
        return _saddle_at(ls, path[top], k, path[: top + 1], lr, steps)


def saddle_between(
    ls: Landscape, x0, end, k: int, images: int = 40, sweeps: int = 400, lr: float = 0.5, steps: int = 200_000
) -> Saddle:
    """The saddle between the rank-k minimum ``x0`` and a rank-(k - 1) minimum ``end`` (e.g. where an escape of
    SGD settled): the string between them (``images`` images from the straight line, ``sweeps`` sweeps), its
    highest image refined into a critical point, and descent from it both ways. For starts where the level sets
    of sigma_k lead elsewhere (``saddle_below`` may end at a higher-index point)."""
    with float64_scope():
        line = np.linspace(0.0, 1.0, images)[:, None]
        path = string_path(ls, (1 - line) * np.asarray(x0, np.float64) + line * np.asarray(end, np.float64), lr, sweeps)
        top = int(np.argmax(values(ls, path)))
        return _saddle_at(ls, path[top], k, path[: top + 1], lr, steps)


def _saddle_at(ls: Landscape, guess, k: int, approach: np.ndarray, lr: float, steps: int) -> Saddle:
    """The critical point nearest ``guess`` (Newton) and where descent from it leads along its most negative
    direction, toward sigma_k -> 0 (``lower``) and the other way (``upper``)."""
    x = critical_point(ls, guess)
    lam, v = np.linalg.eigh(hessian(ls, x))
    u = v[:, 0]
    ends = [descend(ls, x + sign * 1e-3 * u, lr, steps, every=steps)[-1] for sign in (1.0, -1.0)]
    if float(sigma_sq(ls, jnp.asarray(ends[0]), k)) > float(sigma_sq(ls, jnp.asarray(ends[1]), k)):
        ends, u = ends[::-1], -u
    grad = jax.grad(lambda z: objective(ls, z))(jnp.asarray(x))
    return Saddle(
        x=x,
        value=float(objective(ls, jnp.asarray(x))),
        data_loss=float(data_loss(ls, jnp.asarray(x))),
        sigma_k=math.sqrt(max(float(sigma_sq(ls, jnp.asarray(x), k)), 0.0)),
        negative=float(lam[0]),
        index=int(np.sum(lam < -ZERO)),
        grad_norm=float(jnp.linalg.norm(grad)),
        lower=ends[0],
        upper=ends[1],
        down=u,
        approach=approach,
    )


def string_path(ls: Landscape, images, lr: float = 0.5, sweeps: int = 400, inner: int = 200) -> np.ndarray:
    """The minimum-energy path between ``images[0]`` and ``images[-1]`` (two minima, kept fixed) by the
    simplified string method: ``inner`` gradient steps of every image, then the images put back at equal
    arc length along the piecewise-linear path, ``sweeps`` times. images: (N, P) a first guess."""
    grad = jax.vmap(jax.grad(lambda z: objective(ls, z)))

    def relax(p):
        def body(p, _):
            g = grad(p)
            return p - lr * g.at[0].set(0.0).at[-1].set(0.0), None

        return jax.lax.scan(body, p, None, length=inner)[0]

    relax = jax.jit(relax)
    p = equal_arc_length(np.asarray(images, np.float64), len(images))
    for _ in range(sweeps):
        p = equal_arc_length(np.asarray(relax(jnp.asarray(p))), len(p))
    return p


def equal_arc_length(path: np.ndarray, n: int) -> np.ndarray:
    """``n`` points at equal arc length along the piecewise-linear ``path`` (M, P), ends kept."""
    d = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))]
    t = np.linspace(0.0, d[-1], n)
    return np.stack([np.interp(t, d, path[:, j]) for j in range(path.shape[1])], axis=1)


def tangents(path: np.ndarray) -> np.ndarray:
    """(N, P) unit tangents of a path (central differences)."""
    t = np.gradient(path, axis=0)
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def barrier(ls: Landscape, x0, k: int, sweeps: int = 400, levels: int = 60, steps: int = 200_000, end=None) -> Barrier:
    """The saddle below the rank-k minimum ``x0`` (``saddle_below`` with ``levels`` and ``steps``; with ``end``, a
    rank-(k - 1) minimum, ``saddle_between`` the two), the string from ``x0`` over it to rank k - 1
    (``sweeps``), and the quantities of ``Barrier`` along it."""
    with float64_scope():
        x0 = np.asarray(x0, np.float64)
        if end is None:
            sad = saddle_below(ls, x0, k, levels=levels, steps=steps)
        else:
            sad = saddle_between(ls, x0, end, k, sweeps=sweeps, steps=steps)
        down = descend(ls, sad.x + 1e-3 * sad.down, 0.5, steps // 10, every=steps // 200)
        guess = np.concatenate([x0[None], sad.approach, sad.x[None], down, sad.lower[None]])
        path = string_path(ls, guess, sweeps=sweeps)
        f = values(ls, path)
        top = int(np.argmax(f))
        t = tangents(path)
        h0 = hessian(ls, x0)
        h_a = float(t[0] @ h0 @ t[0])
        c = noise_along(ls, path[: top + 1], t[: top + 1])
        b_path = 2.0 * float(np.sum(np.diff(f[: top + 1]) / (0.5 * (c[1:] + c[:-1]))))
        l0 = float(data_loss(ls, jnp.asarray(x0)))
        dlog = math.log(float(data_loss(ls, jnp.asarray(path[top]))) / l0)
        top_h = float(np.linalg.eigvalsh(h0)[-1])
        return Barrier(
            start_value=f[0],
            start_data_loss=l0,
            saddle=sad,
            path=path,
            path_values=f,
            barrier=float(f[top] - f[0]),
            data_barrier_log=dlog,
            curvature=h_a,
            top_curvature=top_h,
            noise=float(c[0]),
            b_linear=2.0 * float(f[top] - f[0]) / h_a,
            b_log=dlog / h_a,
            b_log_top=dlog / top_h,
            b_path=b_path,
        )
