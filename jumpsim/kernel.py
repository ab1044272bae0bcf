"""The simulator: per-seed ``init``/``advance`` pure functions, vmapped over chunks of seeds.

Randomness is keyed by position, never by batch: seed key = fold_in(root, seed id), step key =
fold_in(step key of the seed, t). A seed's trajectory is therefore the same whatever the
chunk size, the number of devices, or how the horizon is cut into segments.

Loop shape per chunk: the host calls ``advance`` for a segment of checks (for progress and
resumability), ``advance`` is an outer ``scan`` over checks whose body is an inner fixed-length
``scan`` of K SGD steps followed by the rank check; no ``cond``, no data-dependent loop.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import detector, model, schedules, spectrum
from . import problem as problem_lib
from .config import Config, ConfigError

ROOT_KEY = 0  # fold_in(key(ROOT_KEY), seed id): seed i means the same noise in every experiment
# Seeds per device are padded to a multiple of LANES. XLA's CPU code vectorises the vmapped
# matrix-vector products across seeds, and seeds in a partial vector (the loop remainder) are
# rounded differently in the last bit; with full vectors only, a seed's trajectory is bit
# for bit the same whatever the chunk size or the number of devices. 16 float32 lanes is the
# widest vector (AVX-512); padding costs at most 15 extra seeds per device.
LANES = 16


class SeedState(NamedTuple):
    """State of ONE seed (leading seed axis added by vmap)."""

    params: model.Params
    key: jax.Array  # typed threefry key for this seed's step noise
    det: detector.DetectorState
    diverged: jax.Array  # () bool
    stop_step: jax.Array  # () int32: step at which divergence was detected, else -1
    last_params: model.Params  # parameters at the last finite check (final singular values)
    loss: jax.Array  # () train MSE on Omega at the last finite check
    test_error: jax.Array  # () MSE on the unobserved entries (nan if none)


class Observation(NamedTuple):
    """Values at one check (one seed): what the traces table records. ``sv`` is only computed
    for traces (shape (0,) otherwise): the detector counts ranks without an SVD."""

    rank: jax.Array
    loss: jax.Array
    test_error: jax.Array
    sv: jax.Array


class Kernel(NamedTuple):
    """Compiled pieces of one experiment. ``init(seed_ids) -> states``;
    ``advance(states, t0, n_checks, trace) -> (states, observations (n_checks, seeds, ...) or None)``."""

    init: Callable
    advance: Callable
    final_sv: Callable  # states -> (seeds, min(n, m)) singular values at the last finite check
    start_params: model.Params | None  # shared start (init = "gd" or "file"), else None
    info: dict  # facts about the start (gd residual gradient, rank), for the experiments table
    n_devices: int  # seed batches are padded to a multiple of this


def seed_mesh(devices=None) -> jax.sharding.Mesh:
    """1-D mesh "seeds" over the given devices (default: all local devices, i.e. the GPUs,
    or the host devices that ``jumpsim`` asks XLA for on a CPU, one per core)."""
    return jax.sharding.Mesh(np.array(jax.local_devices() if devices is None else devices), ("seeds",))


def dtype_of(cfg: Config):
    return jnp.dtype(cfg.run.dtype)


def observe(params: model.Params, prob: problem_lib.Problem, cfg: Config, dtype, with_sv: bool = False) -> tuple[jax.Array, Observation]:
    """Finite flag and observation of one seed's parameters; the rank is an inertia count
    (``spectrum.numerical_rank``), the singular values are computed only ``with_sv``."""
    a = model.end_to_end(params)
    finite = jnp.all(jnp.isfinite(a)) & jnp.all(jnp.array([jnp.all(jnp.isfinite(w)) for w in params]))
    a = jnp.where(finite, a, 0.0)
    err = (a - jnp.asarray(prob.target, dtype)) ** 2
    mask = jnp.asarray(prob.mask)
    n_test = prob.mask.size - prob.n_observed
    loss = jnp.sum(jnp.where(mask, err, 0.0)) / prob.n_observed
    test = jnp.sum(jnp.where(mask, 0.0, err)) / n_test if n_test else jnp.asarray(jnp.nan, dtype)
    sv = spectrum.singular_values(a) if with_sv else jnp.zeros((0,), dtype)
    rank = spectrum.numerical_rank(a, cfg.detect.threshold, cfg.detect.relative)
    return finite, Observation(rank, loss, test, sv)


def _start_params(cfg: Config, prob: problem_lib.Problem, dtype) -> tuple[model.Params | None, dict]:
    n, m = prob.shape
    mc = cfg.model
    if mc.init == "gaussian":
        return None, {}
    if mc.init == "file":
        ws = model.load_weights(cfg.resolve(mc.init_file), n, m, mc.depth, mc.width)
        return tuple(jnp.asarray(w, dtype) for w in ws), {}
    key = jax.random.key(mc.seed, impl="threefry2x32")
    p0 = model.init_gaussian(key, n, m, mc.depth, mc.width, mc.init_scale, dtype)
    rows, cols, vals = jnp.asarray(prob.rows), jnp.asarray(prob.cols), jnp.asarray(prob.values, dtype)
    scale = model.loss_scale(cfg.train.loss, prob.n_observed)
    ridge = cfg.train.ridge.value_at(0)
    gd = jax.jit(partial(model.gradient_descent, scale=scale, lr=mc.gd_lr, ridge=ridge, steps=mc.gd_steps))
    p = gd(p0, rows, cols, vals)
    g = model.full_grads(p, rows, cols, vals, scale)
    gnorm = float(jnp.sqrt(sum(jnp.sum((gi + 2 * ridge * w) ** 2) for gi, w in zip(g, p))))
    finite, obs = observe(p, prob, cfg, dtype, with_sv=True)
    if not bool(finite):
        raise ConfigError("model.gd_lr", f"gradient descent to the start minimum diverged at gd_lr = {mc.gd_lr:g}; use a smaller step")
    info = {"start_grad_norm": gnorm, "start_rank": int(obs.rank), "start_singular_values": np.asarray(obs.sv, np.float64).tolist()}
    return p, info


def build(cfg: Config, prob: problem_lib.Problem | None = None, devices=None) -> Kernel:
    """Compile-ready functions for one experiment (see ``Kernel``), with the seed axis split
    over ``devices`` (default: all local devices)."""
    prob = problem_lib.make(cfg) if prob is None else prob
    dtype = dtype_of(cfg)
    n, m = prob.shape
    mc, tc, dc = cfg.model, cfg.train, cfg.detect
    max_rank = min(n, m)
    start, info = _start_params(cfg, prob, dtype)
    root = jax.random.key(ROOT_KEY, impl="threefry2x32")
    rows, cols = jnp.asarray(prob.rows), jnp.asarray(prob.cols)
    vals = jnp.asarray(prob.values, dtype)
    scale = model.loss_scale(tc.loss, prob.n_observed)
    lr_fn, ridge_fn = schedules.make(tc.lr), schedules.make(tc.ridge)
    k_obs = prob.n_observed

    def init_one(seed_id) -> SeedState:
        init_key, step_key = jax.random.split(jax.random.fold_in(root, seed_id))
        if start is None:
            params = model.init_gaussian(init_key, n, m, mc.depth, mc.width, mc.init_scale, dtype)
        else:
            params = start
        _, obs = observe(params, prob, cfg, dtype)
        det = detector.init(obs.rank, max_rank, dc.max_events)
        return SeedState(params, step_key, det, jnp.array(False), jnp.array(-1, jnp.int32), params, obs.loss, obs.test_error)

    def sgd_step(params, key, t):
        if tc.batch is None:
            grads = model.full_grads(params, rows, cols, vals, scale)
        else:
            idx = jax.random.randint(jax.random.fold_in(key, t), (tc.batch,), 0, k_obs, dtype=jnp.int32)
            grads, _ = model.minibatch_grads(params, rows[idx], cols[idx], vals[idx], scale)
        lr = jnp.asarray(lr_fn(t), dtype)
        ridge = jnp.asarray(ridge_fn(t), dtype)
        return model.sgd_update(params, grads, lr, ridge)

    def check_one(s: SeedState, t, trace: bool) -> tuple[SeedState, Observation]:
        finite, obs = observe(s.params, prob, cfg, dtype, with_sv=trace)
        newly = ~finite & ~s.diverged
        diverged = s.diverged | ~finite
        det = detector.update(s.det, obs.rank, t, dc.persist)
        keep = lambda old, new: jax.tree.map(lambda o, x: jnp.where(diverged, o, x), old, new)
        s = SeedState(
            params=jax.tree.map(lambda w: jnp.where(diverged, jnp.zeros_like(w), w), s.params),
            key=s.key,
            det=keep(s.det, det),
            diverged=diverged,
            stop_step=jnp.where(newly, t, s.stop_step),
            last_params=keep(s.last_params, s.params),
            loss=keep(s.loss, obs.loss),
            test_error=keep(s.test_error, obs.test_error),
        )
        nan = jnp.asarray(jnp.nan, dtype)
        obs = Observation(  # traces mark checks at or after divergence: rank -1, NaN values
            rank=jnp.where(diverged, -1, obs.rank),
            loss=jnp.where(diverged, nan, obs.loss),
            test_error=jnp.where(diverged, nan, obs.test_error),
            sv=jnp.where(diverged, nan, obs.sv),
        )
        return s, obs

    def steps_one(s: SeedState, t0) -> SeedState:
        def body(p, t):
            return sgd_step(p, s.key, t), None

        params, _ = jax.lax.scan(body, s.params, t0 + jnp.arange(dc.every, dtype=jnp.int32))
        return s._replace(params=params)

    steps_v = jax.vmap(steps_one, in_axes=(0, None))
    check_v = jax.vmap(check_one, in_axes=(0, None, None))

    def advance_local(states: SeedState, t0, n_checks: int, trace: bool):
        def body(states, c):
            t = t0 + c * dc.every
            states = steps_v(states, t)
            states, obs = check_v(states, t + dc.every, trace)
            return states, (obs if trace else None)

        return jax.lax.scan(body, states, jnp.arange(n_checks, dtype=jnp.int32))

    mesh = seed_mesh(devices)
    seeds_spec = jax.sharding.PartitionSpec("seeds")
    trace_spec = jax.sharding.PartitionSpec(None, "seeds")

    @partial(jax.jit, static_argnames=("n_checks", "trace"), donate_argnums=0)
    def advance(states: SeedState, t0, n_checks: int, trace: bool = False):
        """Run ``n_checks`` checks of K steps from step ``t0`` for every seed in the batch;
        the seed axis is split over the local devices (no communication: seeds are
        independent)."""
        local = partial(advance_local, n_checks=n_checks, trace=trace)
        return jax.shard_map(local, mesh=mesh, in_specs=(seeds_spec, jax.sharding.PartitionSpec()), out_specs=(seeds_spec, trace_spec if trace else None))(states, t0)

    init = jax.jit(jax.vmap(init_one), out_shardings=jax.sharding.NamedSharding(mesh, seeds_spec))

    def sv_one(params):
        return spectrum.singular_values(model.end_to_end(params))

    final_sv = jax.jit(jax.shard_map(lambda s: jax.vmap(sv_one)(s.last_params), mesh=mesh, in_specs=(seeds_spec,), out_specs=seeds_spec))
    return Kernel(init=init, advance=advance, final_sv=final_sv, start_params=start, info=info, n_devices=mesh.size)


# --------------------------------------------------------------------------------------
# host side: chunks, segments, results as numpy


class ChunkResult(NamedTuple):
    """Host copy of a finished chunk: seed ids (S,) int64 and the final states as numpy."""

    seeds: np.ndarray
    state: SeedState
    sv: np.ndarray  # (S, min(n, m)) singular values at each seed's last finite check
    trace: Observation | None  # (n_checks + 1, S, ...) including the check at step 0


def chunk_ranges(cfg: Config, shard: int = 0, n_shards: int = 1) -> list[tuple[int, int]]:
    """Global chunk boundaries [first, last) in seed ids; shard i/N owns a contiguous block of
    chunks, so every seed belongs to exactly one (shard, chunk)."""
    r = cfg.run
    starts = list(range(r.seed_offset, r.seed_offset + r.seeds, r.chunk))
    chunks = [(s, min(s + r.chunk, r.seed_offset + r.seeds)) for s in starts]
    lo = len(chunks) * shard // n_shards
    hi = len(chunks) * (shard + 1) // n_shards
    return chunks[lo:hi]


def segments(n_checks: int, target: int = 20) -> list[int]:
    """Cut ``n_checks`` into at most ``target``+1 segments of (at most) two distinct lengths,
    so the host can report progress with at most two compilations."""
    seg = max(1, math.ceil(n_checks / target))
    full, rem = divmod(n_checks, seg)
    return [seg] * full + ([rem] if rem else [])


def run_chunk(kernel: Kernel, cfg: Config, seeds: np.ndarray, trace: bool = False, on_segment: Callable[[int], None] | None = None) -> ChunkResult:
    """Simulate the given seed ids to the horizon. ``on_segment(n_steps)`` reports progress."""
    every = cfg.detect.every
    n = len(seeds)
    padded = np.concatenate([seeds, np.repeat(seeds[-1:], -n % (LANES * kernel.n_devices))])
    states = kernel.init(jnp.asarray(padded, jnp.int32))
    traces = []
    if trace:
        s0 = jax.device_get(states)
        sv0 = np.asarray(kernel.final_sv(states))
        traces.append(Observation(s0.det.rank[None], s0.loss[None], s0.test_error[None], sv0[None]))
    t0 = 0
    for c in segments(cfg.train.steps // every):
        states, obs = kernel.advance(states, jnp.asarray(t0, jnp.int32), n_checks=c, trace=trace)
        if trace:
            traces.append(jax.device_get(obs))
        t0 += c * every
        if on_segment is not None:
            jax.block_until_ready(states)
            on_segment(c * every)
    trace_out = jax.tree.map(lambda *xs: np.concatenate(xs)[:, :n], *traces) if trace else None
    sv = np.asarray(kernel.final_sv(states))[:n]
    final = jax.tree.map(lambda x: x[:n], jax.device_get(states))
    return ChunkResult(np.asarray(seeds, np.int64), final, sv, trace_out)


def iter_chunks(cfg: Config, kernel: Kernel | None = None, shard: int = 0, n_shards: int = 1, on_segment=None) -> Iterator[tuple[tuple[int, int], ChunkResult]]:
    kernel = build(cfg) if kernel is None else kernel
    for lo, hi in chunk_ranges(cfg, shard, n_shards):
        yield (lo, hi), run_chunk(kernel, cfg, np.arange(lo, hi), on_segment=on_segment)
