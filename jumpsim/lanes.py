"""Plain SGD steps for a batch of seeds with the seed axis innermost: the brute-force step on a CPU.

Under ``vmap`` the per-seed step keeps the seed axis in front, so a seed's small matrix-vector products are a
batch of tiny products that the CPU does not vectorise (at the default 20 x 20 they took half the step).
Here every array carries the seeds last, W_l as (d_out, d_in, S): the gathered row and column (one-hot sums),
the two matrix-vector chains, the rank-one gradients and the ridge update are all elementwise loops over the
seeds, in SIMD lanes. Seeds run in blocks of ``BLOCK``, whose weights stay in a core's cache for the K steps of a
check period.

The math is ``model.minibatch_grads`` followed by ``model.sgd_update`` with the draws of ``dynamics.draws``;
sums run in another order, so a seed's trajectory differs from the vmapped step's in the last bits (hence
``dynamics.TRAJECTORY_VERSION``). Every seed of a block runs the same instructions whatever the block's other
seeds, so trajectories stay bit for bit the same across chunk sizes and device counts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from . import model

BLOCK = 32  # seeds per block: 16 ran at half the rate (per-operation overhead), 64-128 no faster
MAX_DIM = 32  # widest layer the lanes step runs: at n = w = 40 the vmapped step was faster (0.64 vs 0.56 M/s)


def grads(params: model.Params, rows: jax.Array, cols: jax.Array, values: jax.Array, scale: float) -> model.Params:
    """Gradient of the minibatch loss for S seeds at once: params W_l (d_out, d_in, S); rows, cols, values (B, S)
    (seed s's entries in column s). Returns the gradients, shaped as params (``model.minibatch_grads`` per seed:
    G_l = 2 scale / B sum_b rho_b u_l v_l^T, with v_l the input of layer l and u_l the back-propagated e_i)."""
    dtype = params[0].dtype
    n, m = params[-1].shape[0], params[0].shape[1]
    v = (jnp.arange(m, dtype=jnp.int32)[None, :, None] == cols[:, None, :]).astype(dtype)  # e_j, (B, m, S)
    u = (jnp.arange(n, dtype=jnp.int32)[None, :, None] == rows[:, None, :]).astype(dtype)  # e_i, (B, n, S)
    vs, us = [v], [u]
    for w in params[:-1]:  # v_{l+1} = W_l v_l
        vs.append(jnp.sum(w[None] * vs[-1][:, None, :, :], axis=2))
    for w in params[:0:-1]:  # u_l = W_{l+1}^T u_{l+1}
        us.insert(0, jnp.sum(w[None] * us[0][:, :, None, :], axis=1))
    rho = jnp.sum(us[-2] * vs[-1], axis=1) - values  # A[i, j] - target, (B, S)
    coef = (2.0 * scale / rows.shape[0]) * rho
    out = []
    for u_l, v_l in zip(us, vs):
        g = coef[0] * u_l[0][:, None, :] * v_l[0][None, :, :]
        for b in range(1, rows.shape[0]):
            g = g + coef[b] * u_l[b][:, None, :] * v_l[b][None, :, :]
        out.append(g)
    return tuple(out)


def sgd_steps(params: model.Params, rows, cols, values, idx, lr, ridge, scale: float, block: int) -> model.Params:
    """K plain SGD steps for S seeds in blocks of ``block`` (S a multiple of it), taking and giving params
    seed-first as the state holds them, W_l (S, d_out, d_in). idx (S, K, B) int32 indices into the observed
    entries ``rows``, ``cols``, ``values`` (k,); lr, ridge (K,) the schedule's values in the params' dtype."""
    s, (k, b) = idx.shape[0], idx.shape[1:]
    nb = s // block

    def to_lanes(w):  # (S, o, i) -> (blocks, o, i, block)
        return w.reshape(nb, block, *w.shape[1:]).transpose(0, 2, 3, 1)

    def from_lanes(w):
        return w.transpose(0, 3, 1, 2).reshape(s, *w.shape[1:3])

    def run_block(args):
        p, ix = args

        def step(p, x):
            i, lr_k, ridge_k = x
            g = grads(p, rows[i], cols[i], values[i], scale)
            return model.sgd_update(p, g, lr_k, ridge_k), None

        return lax.scan(step, p, (ix, lr, ridge))[0]

    ix = idx.reshape(nb, block, k, b).transpose(0, 2, 3, 1)  # (blocks, K, B, block)
    out = lax.map(run_block, (tuple(map(to_lanes, params)), ix))
    return tuple(map(from_lanes, out))
