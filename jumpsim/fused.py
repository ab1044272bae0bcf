"""Fused Pallas kernel: K plain-SGD steps for a block of seeds, the weights kept on chip.

The XLA path (``kernel.py``) runs every SGD step as a handful of small vmapped ops: on a GPU
each reads and writes every seed's weights from HBM. Here one ``pallas_call`` program owns a
block of ``block_seeds`` seeds, loads their weights once, runs K steps in registers (a
``fori_loop`` inside the kernel) and writes them back once.

Semantics are those of ``sgd_steps_xla`` (the reference, built from ``model.minibatch_grads``
and ``model.sgd_update``): for each seed s and step k, with idx = ``draw_indices(...)[s, k]``,

    rho_b = A[rows[idx_b], cols[idx_b]] - vals[idx_b],  G_l = (2 scale / B) sum_b rho_b u_l v_l^T
    W_l  <- W_l - lr[k] (G_l + 2 ridge[k] W_l)

The random draws stay in XLA (``draw_indices``: fold_in(seed key, t) then randint, exactly
as ``kernel.py``), so both paths see the same entries; the kernel receives the sampled
(row, col, value) per seed, step and batch slot.

Lowering: Triton (``jax.experimental.pallas.triton.CompilerParams`` is passed explicitly, since
jax 0.10 lowers to Mosaic GPU by default). See benchmarks/FUSED.md for the argument. Triton
tensors must have power-of-two sizes, so every layer is zero-padded to power-of-two
(d_out, d_in) and the seed block is a power of two; zero padding is an invariant of the update
(padded rows/columns get exactly zero gradient and zero ridge term), so the padded entries stay
exactly zero and the real entries are computed as without padding. Gathers of W_1[:, j] and
W_L[i, :] are one-hot masks and sums (exact: one nonzero term). All products are float32
elementwise multiplies and sums: no dot, hence no TF32.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl

from . import dynamics, files, model

F32 = jnp.float32
I32 = jnp.int32
ONE, ZERO = np.float32(1.0), np.float32(0.0)  # literals, not captured constants

MAX_BATCH = 32  # the batch loop is unrolled in the kernel
MAX_SEED_FLOATS = 16384  # padded float32 entries of one seed (64 kB): beyond, registers spill
BLOCK_FLOATS = 12288  # target padded floats per program (48 kB: ~96 registers/thread at 4 warps)
MAX_BLOCK_SEEDS = 64


# --------------------------------------------------------------------------------------
# shapes


def _pow2(d: int) -> int:
    return 1 << (int(d) - 1).bit_length()


def padded_shapes(n: int, m: int, width: int, depth: int) -> list[tuple[int, int]]:
    """Layer shapes with both dimensions rounded up to powers of two (Triton tensor sizes)."""
    return [(_pow2(o), _pow2(i)) for o, i in files.layer_shapes(n, m, depth, width)]


def seed_floats(n: int, m: int, width: int, depth: int) -> int:
    """Padded float32 entries of one seed's weights in the kernel."""
    return sum(o * i for o, i in padded_shapes(n, m, width, depth))


def default_block_seeds(n: int, m: int, width: int, depth: int) -> int:
    """Largest power of two <= MAX_BLOCK_SEEDS whose padded weights fit BLOCK_FLOATS (>= 1)."""
    per = seed_floats(n, m, width, depth)
    bs = 1
    while bs * 2 <= MAX_BLOCK_SEEDS and bs * 2 * per <= BLOCK_FLOATS:
        bs *= 2
    return bs


def unsupported_reason(
    n: int, m: int, width: int, depth: int, batch, dtype, optimizer: str, backend_platform: str, interpret: bool
) -> str | None:
    """Why ``run.backend = "pallas"`` cannot run this configuration (one sentence), or None."""
    if optimizer != "sgd":
        return f"the pallas backend implements plain SGD only (optimizer = {optimizer!r})"
    if batch is None:
        return "the pallas backend needs a minibatch (train.batch); full-batch gradient descent runs on the xla backend"
    if not 1 <= int(batch) <= MAX_BATCH:
        return (
            f"the pallas backend unrolls the minibatch in the kernel and supports 1 <= batch <= {MAX_BATCH} (got "
            f"{batch})"
        )
    if depth < 2:
        return f"the pallas backend needs depth >= 2 (got {depth})"
    if jnp.dtype(dtype) != jnp.dtype(jnp.float32):
        return f"the pallas kernel is float32 only (run.dtype = {jnp.dtype(dtype).name}); use the xla backend"
    per = seed_floats(n, m, width, depth)
    if per > MAX_SEED_FLOATS:
        return (
            f"one seed's weights padded to powers of two take {per * 4 // 1024} kB, more than the "
            f"{MAX_SEED_FLOATS * 4 // 1024} kB that the pallas kernel keeps on chip; use the xla backend"
        )
    if interpret:
        return None
    if backend_platform in ("gpu", "cuda"):
        return None
    if backend_platform == "cpu":
        return (
            "on a CPU the pallas kernel runs only in interpret mode (a slow emulation, for tests); use the xla backend"
        )
    return f"the pallas kernel is written for NVIDIA GPUs (Triton); platform {backend_platform!r} is not supported"


# --------------------------------------------------------------------------------------
# random draws and the XLA reference


def draw_indices(seed_keys: jax.Array, t0, K: int, batch: int, k_obs: int) -> jax.Array:
    """(S, K, B) int32 indices into the observed entries for steps t0 .. t0+K-1: for seed s and
    step t, randint(fold_in(seed_keys[s], t), (B,), 0, k_obs): ``dynamics.draws`` of each seed."""
    return jax.vmap(lambda key: dynamics.draws(key, t0, K, batch, k_obs))(seed_keys)


def sgd_steps_xla(params, rows, cols, vals, idx, lr, ridge, scale: float):
    """Reference semantics: K steps of ``model.minibatch_grads`` + ``model.sgd_update`` per seed.
    params: tuple of (S, d_out, d_in); idx (S, K, B); lr, ridge (K,). Returns the new params."""

    def one(p, ix):
        def body(p, x):
            i, lr_k, ridge_k = x
            g, _ = model.minibatch_grads(p, rows[i], cols[i], vals[i], scale)
            return model.sgd_update(p, g, lr_k, ridge_k), None

        return lax.scan(body, p, (ix, lr, ridge))[0]

    return jax.vmap(one)(tuple(params), idx)


# --------------------------------------------------------------------------------------
# the kernel


def _bcast(x, shape, dims):
    return lax.broadcast_in_dim(x, shape, dims)


def _make_kernel(depth: int, K: int, B: int, coef: float):
    """Kernel body for one block of seeds. Refs: lr, ridge (K,); rows, cols (K, B, bs) int32;
    vals (K, B, bs); W_1..W_L (bs, O_l, I_l) in; W_1..W_L out."""

    def kernel(lr_ref, ridge_ref, i_ref, j_ref, v_ref, *refs):
        w_in, w_out = refs[:depth], refs[depth:]

        def step(k, ws):
            lr = lr_ref[k]
            ridge = ridge_ref[k]
            s0, sL = ws[0].shape, ws[-1].shape  # (bs, w_p, m_p), (bs, n_p, w_p)
            bs = s0[0]
            outers = [[] for _ in range(depth)]
            for b in range(B):
                i = i_ref[k, b, :]  # (bs,) int32
                j = j_ref[k, b, :]
                val = v_ref[k, b, :]
                # forward: v_1 = e_j, v_2 = W_1[:, j], v_{l+1} = W_l v_l
                ej = jnp.where(lax.broadcasted_iota(I32, (bs, s0[2]), 1) == _bcast(j, (bs, s0[2]), (0,)), ONE, ZERO)
                mask = lax.broadcasted_iota(I32, s0, 2) == _bcast(j, s0, (0,))
                x = jnp.sum(jnp.where(mask, ws[0], ZERO), axis=2)  # (bs, w_p)
                vs = [ej]
                for l in range(1, depth):
                    vs.append(x)
                    if l < depth - 1:
                        x = jnp.sum(ws[l] * _bcast(x, ws[l].shape, (0, 2)), axis=2)
                # backward: u_L = e_i, u_{L-1} = W_L[i, :], u_{l} = W_{l+1}^T u_{l+1}
                ei = jnp.where(lax.broadcasted_iota(I32, (bs, sL[1]), 1) == _bcast(i, (bs, sL[1]), (0,)), ONE, ZERO)
                mask = lax.broadcasted_iota(I32, sL, 1) == _bcast(i, sL, (0,))
                y = jnp.sum(jnp.where(mask, ws[-1], ZERO), axis=1)  # (bs, w_p)
                us = [ei]
                for l in range(depth - 2, -1, -1):
                    us.insert(0, y)
                    if l > 0:
                        y = jnp.sum(ws[l] * _bcast(y, ws[l].shape, (0, 1)), axis=1)
                rho = jnp.sum(us[-2] * vs[-1], axis=1) - val  # (bs,)
                c = coef * rho
                for l in range(depth):
                    shape = ws[l].shape
                    cu = _bcast(c, us[l].shape, (0,)) * us[l]
                    outers[l].append(_bcast(cu, shape, (0, 1)) * _bcast(vs[l], shape, (0, 2)))
            new = []
            for l in range(depth):
                g = outers[l][0]
                for o in outers[l][1:]:
                    g = g + o
                w = ws[l]
                new.append(w - lr * (g + 2.0 * ridge * w))  # model.sgd_update, same form
            return tuple(new)

        ws = lax.fori_loop(jnp.int32(0), jnp.int32(K), step, tuple(r[...] for r in w_in))
        for r, w in zip(w_out, ws):
            r[...] = w

    return kernel


def _triton_params(num_warps: int | None, num_stages: int | None):
    from jax.experimental.pallas import triton as pltriton  # jax 0.10 and 0.11

    return pltriton.CompilerParams(num_warps=num_warps, num_stages=num_stages)


@partial(jax.jit, static_argnames=("scale", "block_seeds", "interpret", "num_warps", "num_stages"))
def sgd_steps_pallas(
    params,
    rows,
    cols,
    vals,
    idx,
    lr,
    ridge,
    scale: float,
    *,
    block_seeds: int | None = None,
    interpret: bool = False,
    num_warps: int | None = 4,
    num_stages: int | None = None,
):
    """Same result as ``sgd_steps_xla`` (to float32 rounding) from one fused Pallas kernel.

    params: tuple of float32 (S, d_out, d_in) (W_1 first); rows, cols (k_obs,) int; vals
    (k_obs,) float32; idx (S, K, B) int32 (``draw_indices``); lr, ridge (K,) float32 schedule
    values of the K steps; scale: static Python float (``model.loss_scale``). block_seeds:
    seeds per program, a power of two (default ``default_block_seeds``); S need not be a
    multiple of it. interpret=True runs the kernel in Pallas interpret mode (CPU tests).
    Returns the new params, same shapes.
    """
    params = tuple(params)
    depth = len(params)
    S, K, B = idx.shape
    n, width = params[-1].shape[1:]
    m = params[0].shape[2]
    if jnp.shape(lr) != (K,) or jnp.shape(ridge) != (K,):
        raise ValueError(f"lr and ridge must have shape (K,) = ({K},) (got {jnp.shape(lr)}, {jnp.shape(ridge)})")
    for w in params:
        if w.dtype != F32:
            raise TypeError(f"sgd_steps_pallas is float32 only (got {w.dtype})")
    bs = default_block_seeds(n, m, width, depth) if block_seeds is None else int(block_seeds)
    if bs < 1 or bs & (bs - 1):
        raise ValueError(f"block_seeds must be a power of two (got {bs})")
    n_blocks = -(-S // bs)
    sp = n_blocks * bs
    pshapes = padded_shapes(n, m, width, depth)

    idx = idx.astype(I32)

    # per (step, batch slot, seed): the sampled entry; padded seeds get (0, 0, 0.0) and zero
    # weights, which stay exactly zero (zero residual, zero gradient, zero ridge term)
    def per_step(a, dtype):
        a = jnp.transpose(a[idx].astype(dtype), (1, 2, 0))  # (K, B, S)
        return jnp.pad(a, ((0, 0), (0, 0), (0, sp - S)))

    ii, jj, vv = per_step(rows, I32), per_step(cols, I32), per_step(vals, F32)
    ws = tuple(
        jnp.pad(w, ((0, sp - S), (0, po - w.shape[1]), (0, pi - w.shape[2]))) for w, (po, pi) in zip(params, pshapes)
    )

    vec = pl.BlockSpec((K,), lambda g: (0,))
    draw = pl.BlockSpec((K, B, bs), lambda g: (0, 0, g))
    wspecs = [pl.BlockSpec((bs, po, pi), lambda g: (g, 0, 0)) for po, pi in pshapes]
    call = pl.pallas_call(
        _make_kernel(depth, K, B, 2.0 * float(scale) / B),
        out_shape=tuple(jax.ShapeDtypeStruct(w.shape, F32) for w in ws),
        grid=(n_blocks,),
        in_specs=[vec, vec, draw, draw, draw, *wspecs],
        out_specs=tuple(wspecs),
        input_output_aliases={5 + l: l for l in range(depth)},
        interpret=interpret,
        compiler_params=None if interpret else _triton_params(num_warps, num_stages),
        name="jumpsim_fused_sgd",
    )
    out = call(jnp.asarray(lr, F32), jnp.asarray(ridge, F32), ii, jj, vv, *ws)
    return tuple(o[:S, : w.shape[1], : w.shape[2]] for o, w in zip(out, params))
