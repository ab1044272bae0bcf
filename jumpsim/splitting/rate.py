"""The rate form for small noise: k = flux of basin exits x P(target before basin), with P(reach within T) =
1 - exp(-k T). Every replica runs its own flux trajectories and its own AMS from its own crossings, so the
replicas are independent estimates of k."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import keys
from .ams import Spec, check_sizes, iterate, start
from .results import (
    LEVEL_GRID,
    EngineState,
    RateResult,
    TamsLog,
    iteration_log,
    rate_result,
    replica_p,
    weight_spread,
)
from .slots import MAX_BATCH, SlotMeter, batch_cap, bucket, select

FLUX_CHUNK = 50  # periods per device call of the flux phase (between progress reports)


class _Flux(NamedTuple):
    """B flux trajectories between device calls (``_flux_run`` advances them by a chunk of periods)."""

    t: jax.Array  # () int32: the next check
    x: Any  # (B, ...) states
    alive: jax.Array  # (B,) bool
    armed: jax.Array  # (B,) bool: in the basin since the last crossing
    crossings: Any  # (B, C, ...) states at recorded crossings
    count: jax.Array  # (B,) int32 crossings (recorded or not)
    exposure: jax.Array  # (B,) int32 periods before reaching the target


def _flux_start(state, valid, capacity: int) -> _Flux:
    b = valid.shape[0]
    state = jax.tree.map(jnp.copy, state)  # every leaf its own buffer: ``_flux_run`` donates them
    buf = jax.tree.map(lambda x: jnp.zeros((b, capacity) + x.shape[1:], x.dtype), state)
    zi = lambda: jnp.zeros((b,), jnp.int32)  # noqa: E731 -- every field its own buffer (they are donated)
    return _Flux(jnp.int32(0), state, valid, jnp.zeros((b,), bool), buf, zi(), zi())


@partial(jax.jit, static_argnames=("advance", "score"), donate_argnums=(2,))
def _flux_run(advance, score, f: _Flux, key, until, periods, basin, interface) -> _Flux:
    """Brute-force the B trajectories of `f` through checks t < `until` (of 0..`periods`), recording basin exits
    (score >= interface after score <= basin since the last exit) into the (B, C) buffer; a trajectory stops at
    the target or NaN. Called in chunks so that the host can report progress."""
    vscore = jax.vmap(score)
    vadvance = jax.vmap(advance, in_axes=(0, 0, None))
    vfold = jax.vmap(lambda kd, t: jax.random.fold_in(keys.wrap(kd), t), in_axes=(0, None))
    rows = jnp.arange(f.alive.shape[0])
    capacity = f.count.dtype.type(jax.tree.leaves(f.crossings)[0].shape[1])

    def cond(c: _Flux):
        return (c.t < until) & (c.t <= periods) & jnp.any(c.alive)

    def body(c: _Flux):
        t, x, alive = c.t, c.x, c.alive
        s = vscore(x).astype(jnp.float32)
        nan = jnp.isnan(s)
        cross = alive & c.armed & (s >= interface)
        write = cross & (c.count < capacity)
        slot = jnp.minimum(c.count, capacity - 1)
        buf = jax.tree.map(lambda bf, v: bf.at[rows, slot].set(select(write, v, bf[rows, slot])), c.crossings, x)
        armed = (c.armed & ~cross) | (alive & (s <= basin))
        alive = alive & ~nan & ~(s >= 1) & (t < periods)
        x = select(alive, vadvance(x, vfold(key, t), t), x)
        return _Flux(t + 1, x, alive, armed, buf, c.count + cross, c.exposure + alive)

    return jax.lax.while_loop(cond, body, f)


class FluxPhase(NamedTuple):
    """What the flux phase found, per trajectory (T = replicas x trajectories, replica-major) and per replica."""

    crossings: Any  # pytree, leaves (X, ...): the recorded crossing states, trajectory-major
    count: np.ndarray  # (T,) int64 crossings (recorded or not)
    exposure: np.ndarray  # (T,) int64 periods before the target
    owner: np.ndarray  # (T,) replica row of each trajectory
    recorded: np.ndarray  # (R,) int64 crossings recorded per replica (at most `capacity` per trajectory)


def flux_phase(
    init, advance, score, *, ids, trajectories, periods, basin, interface, seed, capacity, max_batch, on_flux
) -> FluxPhase:
    """Brute-force `trajectories` runs of `periods` periods per replica (ids (R,) global replica ids), in
    batches of at most `max_batch`; trajectory (r, j) is keyed by (seed, FLUX_REPLICA, ids[r], j)."""
    replicas = len(ids)
    total = replicas * trajectories
    owner = np.repeat(np.arange(replicas), trajectories)
    traj = np.tile(np.arange(trajectories, dtype=np.int32), replicas)
    bufs, counts, exposures = [], [], []
    for a in range(0, total, max_batch):
        m = min(max_batch, total - a)
        size = bucket(m)
        sel = np.minimum(np.arange(a, a + size), total - 1)
        kd = jax.vmap(lambda r, j: keys.key_data(jnp.int32(seed), keys.FLUX_REPLICA, r, j))(
            jnp.asarray(ids[owner[sel]]), jnp.asarray(traj[sel])
        )
        x0 = jax.vmap(lambda kk: init(jax.random.fold_in(keys.wrap(kk), keys.INIT_TAG)))(kd)
        fl = _flux_start(x0, jnp.asarray(np.arange(size) < m), capacity)
        for until in range(FLUX_CHUNK, periods + 1 + FLUX_CHUNK, FLUX_CHUNK):  # checks 0..periods
            lims = jnp.int32(until), jnp.int32(periods), jnp.float32(basin), jnp.float32(interface)
            fl = _flux_run(advance, score, fl, kd, *lims)
            alive = bool(fl.alive.any())
            if on_flux is not None:  # the batch's share done (all of it once no trajectory is left)
                on_flux((a + (m * min(until, periods + 1) / (periods + 1) if alive else m)) / total)
            if not alive:
                break
        cnt = np.asarray(fl.count)[:m]
        rec = np.minimum(cnt, capacity)
        rows, cols = np.nonzero(np.arange(capacity)[None, :] < rec[:, None])  # trajectory-major order
        bufs.append(jax.tree.map(lambda x: x[jnp.asarray(rows), jnp.asarray(cols)], fl.crossings))
        counts.append(cnt)
        exposures.append(np.asarray(fl.exposure)[:m])
    count, exposure = np.concatenate(counts).astype(np.int64), np.concatenate(exposures).astype(np.int64)
    recorded = np.bincount(owner, np.minimum(count, capacity), replicas).astype(np.int64)
    crossings = jax.tree.map(lambda *xs: jnp.concatenate(xs), *bufs)
    return FluxPhase(crossings, count, exposure, owner, recorded)


def _start_rows(recorded: np.ndarray, particles: int) -> np.ndarray:
    """(R, N) index into the flux phase's crossings of each particle's start: particle j of replica r starts
    from the replica's recorded crossing j mod n_r, or, with more crossings than particles, from every
    (n_r / N)-th one (spread over its trajectories). A replica with none holds a placeholder (crossing 0;
    fixed shapes) and is not simulated."""
    first = np.concatenate([[0], np.cumsum(recorded)[:-1]])
    j, own = np.arange(particles)[None, :], np.maximum(recorded, 1)[:, None]
    g = first[:, None] + np.where(own > particles, j * own // particles, j % own)
    return np.where(recorded[:, None] > 0, g, 0)


def estimate_rate(
    init,
    advance,
    score,
    *,
    basin: float,
    interface: float,
    flux_trajectories: int,
    flux_periods: int,
    particles: int,
    replicas: int,
    kill_fraction: float = 0.2,
    seed: int = 0,
    level: float = 0.95,
    max_periods: int = 100_000,
    max_iterations: int = 10_000,
    flux_capacity: int = 16,
    replica_offset: int = 0,
    state: EngineState | None = None,
    on_iteration: Callable[[EngineState], Any] | None = None,
    max_batch: int = MAX_BATCH,
    on_flux: Callable[[float], Any] | None = None,
    meter: SlotMeter | None = None,
    weight: Callable | None = None,
    flux_advance: Callable | None = None,
) -> RateResult:
    """Escape rate (per period) to score >= 1 from the basin score <= `basin`, k = flux * p_ab.

    Every replica is an independent estimate with its own flux phase and its own AMS:

    * flux: `flux_trajectories` brute-force runs of `flux_periods` periods from init, per replica (keyed
      by the replica's global id); a crossing is a check with score >= `interface` after having been in
      the basin since the last crossing (a trajectory that starts above the basin counts only after
      entering it); the replica's C_r crossings in E_r periods of exposure (before the target);
    * p_ab: AMS (same engine as ``estimate``) whose N particles start from the replica's own recorded
      crossings in turn, each running until score >= 1, score <= basin, or `max_periods` (reported as
      ``period_capped``). A replica without a crossing has no AMS estimate (p = NaN; it adds C_r = 0).

    k = sum_r C_r p_r / sum_r E_r with a Student-t interval over replicas (``stats.rate_estimate``).
    Drawing crossings per replica matters: when the escape goes through crossing states the score does not
    rank (on the DLN, escapes that begin with a one-step collapse of the singular value), the committor
    varies wildly between crossings and only independent draws put that spread into the interval.
    ``advance`` must not depend on t here (the AMS restarts the period count at 0). ``on_flux(fraction)`` is
    called as the flux phase advances (every FLUX_CHUNK periods).

    Importance sampling of the AMS phase: ``advance`` simulates a proposal and ``weight(state)`` is the log
    likelihood ratio a particle carries from its crossing on (0 there); the flux phase, which must sample the
    chain itself, runs ``flux_advance`` (default ``advance``).
    """
    if not basin < interface < 1:
        raise ValueError("need basin < interface < 1")
    if flux_trajectories < 1:
        raise ValueError("need flux_trajectories >= 1 (per replica)")
    k = check_sizes(particles, replicas, kill_fraction)
    max_batch = batch_cap(max_batch)
    spec = Spec(
        advance=advance,
        score=score,
        horizon=int(max_periods),
        basin=float(basin),
        n=particles,
        k=k,
        seed=seed,
        max_iterations=max_iterations,
        max_batch=max_batch,
        naive_ties=False,
        weight=weight,
        meter=meter,
    )
    ids = np.arange(replica_offset, replica_offset + replicas, dtype=np.int32)
    fx = flux_phase(
        init,
        advance if flux_advance is None else flux_advance,
        score,
        ids=ids,
        trajectories=flux_trajectories,
        periods=flux_periods,
        basin=basin,
        interface=interface,
        seed=seed,
        capacity=flux_capacity,
        max_batch=max_batch,
        on_flux=on_flux,
    )
    flux = dict(
        crossings=np.bincount(fx.owner, fx.count, replicas).astype(np.int64),
        exposure=np.bincount(fx.owner, fx.exposure, replicas).astype(np.int64),
        overflow=int(fx.count.sum() - np.minimum(fx.count, flux_capacity).sum()),
        level=level,
    )
    flux_steps = int(fx.exposure.sum())
    if fx.recorded.sum() == 0:
        warnings.warn("splitting: no crossing recorded in the flux phase; rate = 0", RuntimeWarning, stacklevel=2)
        z = np.zeros(replicas)
        log = TamsLog(np.zeros((replicas, 0), np.float32), np.zeros((replicas, 0), np.int32))
        nan = np.full((replicas, len(LEVEL_GRID)), np.nan)
        return rate_result(
            replica_p=z,
            extinct=0,
            particle_steps=flux_steps,
            period_capped=0,
            capped=0,
            iterations=z.astype(np.int32),
            log=log,
            replica_ids=ids,
            replica_level_p=nan,
            replica_weight_sq=z,
            replica_weight_max=z,
            replica_log10_w_sd=z * np.nan,
            **flux,
        )
    if state is None:
        g = _start_rows(fx.recorded, particles)
        states = jax.tree.map(lambda x: x[jnp.asarray(g, jnp.int32)], fx.crossings)
        kd = jax.vmap(lambda r: jax.vmap(lambda j: keys.key_data(jnp.int32(seed), r, 0, j))(jnp.arange(particles)))(
            jnp.asarray(ids)
        )
        state = start(spec, states, kd, ids, skip=fx.recorded == 0)
        if on_iteration is not None:
            on_iteration(state)
    st = iterate(spec, state, on_iteration)
    if st.period_capped.any():
        warnings.warn(
            f"splitting: {int(st.period_capped.sum())} AMS particle(s) hit max_periods = {max_periods}",
            RuntimeWarning,
            stacklevel=2,
        )
    return rate_result(
        replica_p=replica_p(st),
        extinct=int(st.extinct.sum()),
        particle_steps=flux_steps + int(st.steps.sum()),
        period_capped=int(st.period_capped.sum()),
        capped=int(st.capped.sum()),
        iterations=st.iteration,
        log=iteration_log(st),
        replica_ids=st.replica,
        replica_level_p=np.exp(st.level_log_p),
        **weight_spread(st),
        **flux,
    )
