"""The AMS engine shared by both estimators: the initial population, the kill / clone step, and the loop that
runs replicas through their iterations (each on its own, as soon as its clones are done).

Method (Brehier, Lelievre, Rousset 2016; Cerou, Guyader 2007). Each replica holds N particles; a particle's
level is the max score over its checks (NaN ignored). Per iteration: Z = k-th smallest level, k = ceil(alpha N);
EVERY particle with level <= Z is killed (K >= k; K == N means the replica is extinct, estimate 0);
log w += log(1 - K/N); each killed particle copies a uniformly drawn survivor at the survivor's FIRST check with
score > Z (strictly) and continues from there with fresh randomness. Stop when Z >= 1; p = w * (#reached / N).
Killing ties together and branching at "> Z" is what makes p unbiased for discrete-valued scores;
``naive_ties`` (validation only) kills exactly k and branches at ">= Z", which is biased.

No snapshots per level: every particle keeps its ORIGIN (state, period, key) -- where it was created -- and a
clone is made by replaying its survivor (``slots``). Memory per particle: ONE state at rest + key data (8 B) +
origin period, level, first-hit period (12 B).

Resumable: after the initial population and whenever replicas finish an iteration, ``on_iteration`` gets an
``EngineState`` (every replica as of its last complete iteration; its device arrays are valid during the call
only); resuming from it gives the same answer bit for bit. The schedule (which slot, which round) never
changes a result.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from .. import devices
from . import keys
from .results import LEVEL_GRID, NOHIT, EngineState
from .slots import Jobs, SlotMeter, drive, no_jobs, table_size

HEARTBEAT_S = 30.0  # on_iteration is called at least this often (same state if nothing was committed)


class Spec(NamedTuple):
    """The fixed settings of one estimate, as the engine's functions need them (periods, not steps)."""

    advance: Callable
    score: Callable
    horizon: int
    basin: float
    n: int
    k: int
    seed: int
    max_iterations: int
    max_batch: int
    naive_ties: bool
    weight: Callable | None = None  # log likelihood ratio a particle carries (importance sampling), or None
    meter: SlotMeter | None = None


def start(spec: Spec, states, keys, replica, skip: np.ndarray | None = None) -> EngineState:
    """Engine state after running the initial population (states (R, N, ...), keys (R, N, 2)) fresh from
    period 0. Replicas in `skip` (R,) bool are not simulated: done from the start, level -inf, 0 steps."""
    r, n = keys.shape[:2]
    skip = np.zeros(r, bool) if skip is None else np.asarray(skip, bool)
    idx = np.flatnonzero(np.repeat(~skip, n))
    zeros = np.zeros(len(idx), np.int64)
    # on the devices' mesh from the start, as every exchange returns it (else the next call compiles again)
    pop = jax.device_put(
        (states, jnp.zeros((r, n), jnp.int32), keys), jax.sharding.NamedSharding(devices.local_mesh(), P())
    )
    level, hit = np.full(r * n, -np.inf, np.float32), np.full(r * n, NOHIT, np.int32)
    hit_w = np.zeros(r * n, np.float32)
    steps, capped = np.zeros(r * n, np.int64), np.zeros(r * n, np.int64)

    def finished(jobs, res):
        for a, v in zip((level, hit, steps, capped, hit_w), res):
            a[jobs.src] = v
        return no_jobs()

    jobs = Jobs(idx, idx, zeros.astype(bool), idx // n, zeros, zeros, zeros, zeros.astype(np.float32))
    pop = drive(spec, pop, jobs, table_size(r, spec.k, spec.max_batch), finished)
    return EngineState(
        origin=pop[0],
        origin_t=pop[1],
        key=pop[2],
        level=level.reshape(r, n),
        hit=hit.reshape(r, n),
        hit_log_w=hit_w.reshape(r, n),
        log_w=np.zeros(r),
        iteration=np.zeros(r, np.int32),
        done=skip.copy(),
        extinct=np.zeros(r, bool),
        capped=np.zeros(r, bool),
        steps=steps.reshape(r, n).sum(1),
        period_capped=capped.reshape(r, n).sum(1),
        log_z=np.full((r, 0), np.nan, np.float32),
        log_k=np.full((r, 0), -1, np.int32),
        replica=np.asarray(replica, np.int32),
        level_log_p=np.full((r, len(LEVEL_GRID)), np.nan),
    )


def kill_step(spec: Spec, st: EngineState, ready: np.ndarray) -> tuple[EngineState, Jobs]:
    """One kill step of the replicas in `ready` (R,) bool: Z = k-th smallest level, kill every level <= Z
    (all of them tied: extinct), record Z and K, and return the clone jobs (survivors drawn uniformly,
    keyed by (seed, replica, iteration)). Replicas at Z >= 1 or max_iterations are marked done. The killed
    particles' levels are not touched here: their clones' results arrive later."""
    n, k = spec.n, spec.k
    level = st.level
    live = ready & ~st.done
    z = np.full(len(st.replica), np.inf, level.dtype)  # (only the ready rows are sorted: R may be large)
    z[live] = np.partition(level[live], k - 1, axis=1)[:, k - 1]
    finished = live & (z >= 1)
    capped = live & ~finished & (st.iteration >= spec.max_iterations)
    # level curve: p(z) is fixed at the first kill level Z >= z as w * #(level >= z) / N, what a run with target
    # z would return (it makes the same kill steps while Z < z); a replica stopped by max_iterations fixes the
    # rest with its current counts (biased, like its p), an extinct one (below) 0 above its tie level
    lp = st.level_log_p.copy()
    rows = np.flatnonzero(live)
    if len(rows) and spec.weight is None:  # (weighted particles: the unweighted fractions are no estimates)
        with np.errstate(divide="ignore"):
            val = st.log_w[rows, None] + np.log((level[rows, :, None] >= LEVEL_GRID).mean(1))
        fix = np.isnan(lp[rows]) & ((LEVEL_GRID <= z[rows, None]) | capped[rows, None])
        lp[rows] = np.where(fix, val, lp[rows])
    live &= ~finished & ~capped
    if spec.naive_ties:  # kill exactly k (ties broken at random), branch at >= Z: biased, validation only
        u = np.zeros(level.shape)  # the tie-break of a replica depends on (seed, its iteration, its id) only
        for i in np.flatnonzero(live):
            u[i] = np.random.default_rng([spec.seed, int(st.iteration[i]), int(st.replica[i])]).random(n)
        order = np.lexsort((u, level), axis=1)
        killed = np.zeros(level.shape, bool)
        np.put_along_axis(killed, order[:, :k], True, axis=1)
        z_branch = np.nextafter(z.astype(np.float32), np.float32(-np.inf))
    else:
        killed = level <= z[:, None]
        z_branch = z.astype(np.float32)
    killed &= live[:, None]
    n_killed = killed.sum(1)
    extinct = live & (n_killed == n)
    go = live & ~extinct
    it = st.iteration + (go | extinct)
    width = st.log_z.shape[1]
    if it.max() > width:  # grow the per-iteration log
        extra = max(width, 16)
        st = st._replace(
            log_z=np.pad(st.log_z, ((0, 0), (0, extra)), constant_values=np.nan),
            log_k=np.pad(st.log_k, ((0, 0), (0, extra)), constant_values=-1),
        )
    rec = np.flatnonzero(go | extinct)
    st.log_z[rec, it[rec] - 1] = z[rec]
    st.log_k[rec, it[rec] - 1] = n_killed[rec]
    if spec.weight is None:
        lp[extinct] = np.where(np.isnan(lp[extinct]), -np.inf, lp[extinct])
    st = st._replace(
        level_log_p=lp,
        log_w=st.log_w + np.where(go, np.log1p(-np.minimum(n_killed, n - 1) / n), 0.0),
        iteration=it.astype(np.int32),
        done=st.done | finished | capped | extinct,
        extinct=st.extinct | extinct,
        capped=st.capped | capped,
    )
    killed &= go[:, None]
    if not go.any():
        return st, no_jobs()
    draws = np.asarray(
        keys.survivor_draws(
            jnp.int32(spec.seed),
            jnp.asarray(st.replica),
            jnp.asarray(it, jnp.int32),
            jnp.asarray(n - n_killed, jnp.int32),
            n,
        )
    )
    rr, jj = np.nonzero(killed)
    src_local = np.zeros(killed.shape, np.int64)
    surv = np.argsort(killed[go], axis=1, kind="stable")  # survivors first, in slot order
    src_local[go] = np.take_along_axis(surv, draws[go], axis=1)
    jobs = Jobs(
        rr * n + src_local[rr, jj],
        rr * n + jj,
        np.ones(len(rr), bool),
        rr,
        st.replica[rr].astype(np.int64),
        it[rr].astype(np.int64),
        jj,
        z_branch[rr],
    )
    return st, jobs


_ROW_FIELDS = (
    "level",
    "hit",
    "hit_log_w",
    "log_w",
    "iteration",
    "done",
    "extinct",
    "capped",
    "steps",
    "period_capped",
    "level_log_p",
)


def iterate(spec: Spec, st: EngineState, on_iteration) -> EngineState:
    """Kill / clone until every replica is done (Z >= 1, extinct, or max_iterations). Replicas advance on
    their own: a replica's next kill step runs as soon as the clones of its last one have all finished,
    while other replicas' clones still run. The EngineState handed to `on_iteration` holds every replica
    as it was after its last complete iteration (a consistent point to resume from: clones in flight have
    written only to killed slots, which a resumed run rewrites with the same values)."""
    st = st._replace(**{f: np.array(getattr(st, f)) for f in EngineState._fields[3:]})  # private host copies
    # copies: the exchange donates the population's buffers, and the caller may still hold `st` (a resume)
    own = lambda x: x.copy() if isinstance(x, jax.Array) else jnp.asarray(x)
    pop = (jax.tree.map(own, st.origin), own(st.origin_t), own(st.key))
    pop = jax.device_put(pop, jax.sharding.NamedSharding(devices.local_mesh(), P()))
    r = len(st.replica)
    # working state (rows in flight partly updated), the latest population, commits since the last hook call
    w = {"st": st, "pop": pop, "dirty": False, "beat": time.perf_counter()}
    outstanding = np.zeros(r, np.int64)
    backup = {f: getattr(st, f).copy() for f in _ROW_FIELDS}  # rows in flight: their state before the kill

    def kill(ready):
        for f in _ROW_FIELDS:
            backup[f][ready] = getattr(w["st"], f)[ready]
        w["st"], jobs = kill_step(spec, w["st"], ready)
        np.add.at(outstanding, jobs.row, 1)
        return jobs

    def snapshot() -> EngineState:
        s = w["st"]
        s = s._replace(**{f: getattr(s, f).copy() for f in EngineState._fields[3:]})
        rows = np.flatnonzero(outstanding > 0)  # in flight
        for f in _ROW_FIELDS:
            getattr(s, f)[rows] = backup[f][rows]
        cols = np.arange(s.log_z.shape[1])[None, :] >= s.iteration[rows][:, None]
        s.log_z[rows] = np.where(cols, np.nan, s.log_z[rows])
        s.log_k[rows] = np.where(cols, -1, s.log_k[rows])
        return s._replace(origin=w["pop"][0], origin_t=w["pop"][1], key=w["pop"][2])

    def finished(jobs, res):
        s = w["st"]
        rr, jj = jobs.row, jobs.dest - jobs.row * spec.n
        s.level[rr, jj], s.hit[rr, jj], s.hit_log_w[rr, jj] = res[0], res[1], res[4]
        np.add.at(s.steps, rr, res[2])
        np.add.at(s.period_capped, rr, res[3])
        np.subtract.at(outstanding, rr, 1)
        ready = np.zeros(r, bool)
        ready[rr] = True
        ready &= outstanding == 0
        w["dirty"] |= bool(ready.any())
        return kill(ready)

    def on_pop(pop):
        w["pop"] = pop
        now = time.perf_counter()
        # after commits, and every HEARTBEAT_S without any (a replica waiting on one long particle run)
        if (w["dirty"] or now - w["beat"] > HEARTBEAT_S) and on_iteration is not None:
            on_iteration(snapshot())
            w["beat"] = now
        w["dirty"] = False

    jobs = kill(~st.done)
    pop = drive(spec, pop, jobs, table_size(r, spec.k, spec.max_batch), finished, on_pop)
    out = w["st"]._replace(origin=pop[0], origin_t=pop[1], key=pop[2])
    if on_iteration is not None:  # the final state (also when every replica was done at its first kill)
        on_iteration(out)
    if out.capped.any():
        warnings.warn(
            f"splitting: {int(out.capped.sum())} replica(s) hit max_iterations = {spec.max_iterations}; "
            "their estimates are biased",
            RuntimeWarning,
            stacklevel=3,
        )
    return out


def kill_count(particles: int, kill_fraction: float) -> int:
    """k = ceil(alpha N): the fewest particles a kill step removes."""
    return math.ceil(kill_fraction * particles - 1e-9)


def check_sizes(particles, replicas, kill_fraction):
    """k = ``kill_count``; ValueError for sizes no estimate can have."""
    if particles < 2 or replicas < 1 or not 0 < kill_fraction < 1:
        raise ValueError("need particles >= 2, replicas >= 1, 0 < kill_fraction < 1")
    return kill_count(particles, kill_fraction)
