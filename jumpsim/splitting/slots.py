"""The slot table: particle runs (jobs) simulated in lockstep in a fixed table of B slots on the devices.

All R*N particles of all replicas live in fixed-shape arrays (leading axes (R, N)). Particle runs (the
initial population, then the clones of every kill step) are jobs in a host queue, simulated in a fixed
table of B slots (``drive``): one jitted ``while_loop`` advances every busy slot by up to ROUND periods in
lockstep, each slot on its own clock (its particle's period); then the host collects the runs that stopped
(reached, diverged, returned to the basin, or at the horizon) and loads queued jobs into the freed slots.
B is a multiple of ``devices.lanes()`` (16 per local device), fixed per estimate (one compile; see
``table_size``); with several local devices the slot axis is split over them with ``shard_map``.

A clone is made by REPLAYING the chosen survivor from the survivor's origin (the state where it was created)
with the survivor's key until its first check with score > Z; that state becomes the clone's origin and the
clone continues with its own fresh key, all inside the same lockstep loop. Replays must reproduce the
survivor bit for bit: the table is L * 2^j or 1.5 L * 2^j slots, a multiple of 8 per device (XLA CPU rounds
a partial vector remainder differently), and a path depends only on its key and start. Memory: each slot
holds ~3 states (current, new origin, advance output) + ~40 B.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from .. import devices
from . import keys
from .results import NOHIT

MAX_BATCH = 1 << 16
ROUND = 16  # periods per device call of the slot table: a freed slot waits at most this long for its next job


@dataclass
class SlotMeter:
    """Where a slot table's time goes (pass one to an estimator to fill it; it blocks on every device call, so
    measured runs are a little slower): device rounds and seconds in them and in the exchanges (compiles
    included), the slots, and the periods advanced (``busy``) against the slot-periods looped (``looped``, an
    upper bound: ROUND per slot and round). On a CPU an idle slot costs as much as a busy one."""

    rounds: int = 0
    round_s: float = 0.0
    exchange_s: float = 0.0
    looped: int = 0
    busy: int = 0
    slots: int = 0


class Slots(NamedTuple):
    """A fixed table of B simulation slots on the devices (leading axis B, split over the mesh). A slot holds
    one particle run (a job) from its start state until it stops; each slot runs on its own clock ``t``."""

    x: Any  # current state
    origin: Any  # branch state (replays) or start state (fresh runs)
    t: jax.Array  # (B,) int32 check index of x
    origin_t: jax.Array  # (B,) int32
    replay_key: jax.Array  # (B, 2) uint32: the survivor's key (replays)
    fresh_key: jax.Array  # (B, 2) uint32: the run's own key
    z: jax.Array  # (B,) float32: branch above this score (replays)
    fresh: jax.Array  # (B,) bool: following fresh_key (not replaying)
    running: jax.Array  # (B,) bool
    level: jax.Array  # (B,) float32 max score since the branch
    hit: jax.Array  # (B,) int32 first check with score >= 1
    hit_w: jax.Array  # (B,) float32 log weight of the state at that check (0 without a weight function)
    steps: jax.Array  # (B,) int32 periods advanced (replay part included)
    capped: jax.Array  # (B,) bool: still running at the horizon


class Jobs(NamedTuple):
    """Particle runs waiting for a slot (host arrays, one entry per run)."""

    src: np.ndarray  # flat population index whose origin / key the run starts from
    dest: np.ndarray  # flat population index a clone is written to
    replay: np.ndarray  # bool: a clone (replay src until score > z, then fresh randomness)
    row: np.ndarray  # replica row in the engine state
    replica: np.ndarray  # global replica id   } the clone's fresh key
    iteration: np.ndarray  # iteration          }
    slot: np.ndarray  # particle index j     }
    z: np.ndarray  # float32

    def take(self, i) -> Jobs:
        return Jobs(*(a[i] for a in self))

    @staticmethod
    def cat(a: Jobs, b: Jobs) -> Jobs:
        return Jobs(*(np.concatenate([x, y]) for x, y in zip(a, b)))


def no_jobs() -> Jobs:
    i = np.zeros(0, np.int64)
    return Jobs(i, i, np.zeros(0, bool), i, i, i, i, np.zeros(0, np.float32))


def select(mask, a, b):
    """Per-particle where over pytrees: mask (B,), leaves (B, ...)."""
    return jax.tree.map(lambda x, y: jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y), a, b)


def flat(tree):
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


def bucket(n: int) -> int:
    """Batch size for n particles: the smallest L * 2^j or 1.5 L * 2^j >= n, L = ``devices.lanes()``."""
    b = devices.lanes()
    while True:
        if b >= n:
            return b
        if b * 3 // 2 >= n:
            return b * 3 // 2
        b *= 2


def slot_round(advance, score, weight, s: Slots, horizon, basin, rounds, axis=None) -> Slots:
    """Advance every running slot by up to `rounds` periods (one lockstep while_loop). At each check a
    replaying slot branches at its first score > z (that state becomes its origin) and then follows its
    fresh key; a fresh slot tracks level = max score and the first check with score >= 1 and stops at the
    target, at NaN, at score <= basin, or at the horizon. ``weight(state)`` (or None) is the log likelihood ratio a
    particle carries (importance sampling), recorded at its first hit."""
    vscore = jax.vmap(score)
    vadvance = jax.vmap(advance)
    vfold = jax.vmap(lambda kd, t: jax.random.fold_in(keys.wrap(kd), t))

    def cond(c):
        # Under shard_map (``axis``) every device loops until all devices are done with the round: XLA's CPU
        # collectives abort a program whose devices reach a rendezvous more than 40 s apart.
        more = jnp.any(c[1].running)
        more = more if axis is None else jax.lax.psum(more.astype(jnp.int32), axis) > 0
        return more & (c[0] < rounds)

    def body(c):
        k, s = c
        active, t = s.running, s.t
        sc = vscore(s.x).astype(jnp.float32)
        nan = jnp.isnan(sc)
        sc = jnp.where(nan, -jnp.inf, sc)
        branch = active & ~s.fresh & (sc > s.z)
        origin = select(branch, s.x, s.origin)
        origin_t = jnp.where(branch, t, s.origin_t)
        fresh = s.fresh | branch
        upd = active & fresh
        level = jnp.where(upd, jnp.maximum(s.level, sc), s.level)
        first = upd & (sc >= 1) & (s.hit == NOHIT)
        hit = jnp.where(first, t, s.hit)
        hit_w = s.hit_w if weight is None else jnp.where(first, jax.vmap(weight)(s.x).astype(jnp.float32), s.hit_w)
        stop = active & (nan | (upd & ((sc >= 1) | (sc <= basin))))
        capped = s.capped | (upd & ~stop & (t == horizon))
        running = active & ~stop & (t < horizon)
        keys = jnp.where(fresh[:, None], s.fresh_key, s.replay_key)
        x = select(running, vadvance(s.x, vfold(keys, t), t), s.x)
        s = s._replace(
            x=x,
            origin=origin,
            t=t + running,
            origin_t=origin_t,
            fresh=fresh,
            running=running,
            level=level,
            hit=hit,
            hit_w=hit_w,
            steps=s.steps + running,
            capped=capped,
        )
        return k + 1, s

    return jax.lax.while_loop(cond, body, (jnp.int32(0), s))[1]


@partial(jax.jit, static_argnames=("advance", "score", "weight"), donate_argnums=(3,))
def run_round(advance, score, weight, s: Slots, horizon, basin, rounds) -> Slots:
    """``slot_round`` with the slot axis split over the local devices (each runs its own loop)."""
    mesh = devices.local_mesh()
    if mesh.size == 1:
        return slot_round(advance, score, weight, s, horizon, basin, rounds)
    p, rep = P(devices.AXIS), P()
    return jax.shard_map(
        partial(slot_round, advance, score, weight, axis=devices.AXIS),
        mesh=mesh,
        in_specs=(p, rep, rep, rep),
        out_specs=p,
        check_vma=False,
    )(s, horizon, basin, rounds)


@partial(jax.jit, donate_argnums=(0, 1))
def exchange(pop, s: Slots, write, dest, load, src, replay, seed, replica, iteration, slot, z, horizon):
    """Write the finished clones of the table into the population (``write`` (B,) bool, at flat ``dest``),
    then load new jobs into slots ``load`` (B,) int32 (B = unused entry): start state, period and key of
    population particle ``src``; clones (``replay``) get the fresh key of (replica, iteration, slot)."""
    origin, origin_t, key = pop
    total = origin_t.size
    d = jnp.where(write, dest, total)
    put = lambda x, v: flat(x).at[d].set(v, mode="drop").reshape(x.shape)
    origin, origin_t, key = jax.tree.map(put, origin, s.origin), put(origin_t, s.origin_t), put(key, s.fresh_key)
    own = flat(key)[src]
    clone_key = jax.vmap(keys.key_data, in_axes=(None, 0, 0, 0))(seed, replica, iteration, slot)
    fresh = jnp.where(replay[:, None], clone_key, own)
    x0 = jax.tree.map(lambda x: flat(x)[src], origin)
    t0 = flat(origin_t)[src]
    b = load.shape[0]
    set_ = lambda a, v: a.at[load].set(v, mode="drop")
    s = Slots(
        jax.tree.map(set_, s.x, x0),
        jax.tree.map(set_, s.origin, x0),
        set_(s.t, t0),
        set_(s.origin_t, t0),
        set_(s.replay_key, own),
        set_(s.fresh_key, fresh),
        set_(s.z, z),
        set_(s.fresh, ~replay),
        set_(s.running, t0 <= horizon),
        set_(s.level, jnp.full((b,), -jnp.inf, jnp.float32)),
        set_(s.hit, jnp.full((b,), NOHIT, jnp.int32)),
        set_(s.hit_w, jnp.zeros((b,), jnp.float32)),
        set_(s.steps, jnp.zeros((b,), jnp.int32)),
        set_(s.capped, jnp.zeros((b,), bool)),
    )
    return (origin, origin_t, key), s


def empty_slots(pop, size: int) -> Slots:
    """A table of `size` idle slots shaped like the population's particles, on the mesh. Every field gets a
    buffer of its own: the round and the exchange donate the table, and XLA refuses a buffer donated twice."""
    particle = lambda: jax.tree.map(lambda x: jnp.zeros((size,) + x.shape[2:], x.dtype), pop[0])
    zeros = lambda *shape, dtype: jnp.zeros((size, *shape), dtype)
    s = Slots(
        particle(),
        particle(),
        zeros(dtype=jnp.int32),
        zeros(dtype=jnp.int32),
        zeros(2, dtype=jnp.uint32),
        zeros(2, dtype=jnp.uint32),
        zeros(dtype=jnp.float32),
        zeros(dtype=bool),
        zeros(dtype=bool),
        zeros(dtype=jnp.float32),
        zeros(dtype=jnp.int32),
        zeros(dtype=jnp.float32),
        zeros(dtype=jnp.int32),
        zeros(dtype=bool),
    )
    # split over the devices; on one device as the round returns it (P() there), else the exchange compiles twice
    mesh = devices.local_mesh()
    return jax.device_put(s, jax.sharding.NamedSharding(mesh, P(devices.AXIS) if mesh.size > 1 else P()))


def table_size(replicas: int, k: int, max_batch: int = MAX_BATCH) -> int:
    """Slots in the simulation table of an estimate with `replicas` replicas killing >= `k` particles per
    iteration (at most max_batch, a multiple of the lanes). On a CPU an idle slot costs as much as a busy
    one, and replicas wait for their slowest clone, so the table holds ~0.4 R k (measured on the rank-3
    escape, 32 and 8 replicas: 0.4-0.5 R k slots are busy ~85 % of the time, R k slots ~50 %);
    accelerators run idle lanes in parallel, so there it holds all R k."""
    n_jobs = replicas * k
    want = n_jobs if jax.default_backend() != "cpu" else math.ceil(0.4 * n_jobs)
    return min(max(devices.lanes(), max_batch // devices.lanes() * devices.lanes()), bucket(want))


def batch_cap(max_batch: int) -> int:
    """`max_batch` rounded down to a multiple of LANES (at least LANES): the most particles run at once."""
    return max(devices.LANES, max_batch // devices.LANES * devices.LANES)


def flux_batch(replicas: int, flux_trajectories: int, max_batch: int = MAX_BATCH) -> int:
    """Trajectories the flux phase of ``estimate_rate`` runs at once (on one device)."""
    return bucket(min(replicas * flux_trajectories, batch_cap(max_batch)))


def drive(spec, pop, jobs: Jobs, size: int, finished: Callable[[Jobs, tuple], Jobs], on_pop=None):
    """Run `jobs` through a table of `size` slots, ROUND periods per device call; a slot freed by a finished
    run takes the next queued job at once. ``finished(jobs, (level, hit, steps, capped, hit_w))`` gets the runs
    that ended in a round (host arrays) and returns new jobs to queue; ``on_pop(pop)`` sees the population
    after each exchange (the clones finished so far written). Returns the population with every finished
    clone's origin and key written to its destination. ``spec.meter`` (a ``SlotMeter`` or None) is filled in.

    Results do not depend on the schedule: a run's path depends only on its start state and key, the
    table has one fixed size (one compile per estimate), and the population update of a finished clone
    lands before any job that could read it is loaded (``exchange`` writes, then loads)."""
    meter = spec.meter
    slots = empty_slots(pop, size)
    info = Jobs(*(np.zeros(size, a.dtype) for a in no_jobs()))
    busy = np.zeros(size, bool)
    write = np.zeros(size, bool)
    head = 0
    horizon, basin = jnp.int32(spec.horizon), jnp.float32(spec.basin)
    while True:
        free = np.flatnonzero(~busy)
        m = min(len(free), len(jobs.src) - head)
        new = jobs.take(np.arange(head, head + m))
        head += m
        dest = jnp.asarray(info.dest, jnp.int32)  # of the runs that finished last round, before reloading
        load = np.full(size, size, np.int32)
        load[:m] = free[:m]
        for f, a in zip(Jobs._fields, new):
            getattr(info, f)[free[:m]] = a
        busy[free[:m]] = True
        pad = lambda a, dt: jnp.asarray(np.pad(a.astype(dt), (0, size - m)))
        if m or write.any():  # (a device call costs ~ms: skipped when nothing is written or loaded)
            t = time.perf_counter()
            pop, slots = exchange(
                pop,
                slots,
                jnp.asarray(write),
                dest,
                jnp.asarray(load),
                pad(new.src, np.int32),
                pad(new.replay, bool),
                jnp.int32(spec.seed),
                pad(new.replica, np.int32),
                pad(new.iteration, np.int32),
                pad(new.slot, np.int32),
                pad(new.z, np.float32),
                horizon,
            )
            if meter is not None:
                jax.block_until_ready((pop, slots))
                meter.exchange_s += time.perf_counter() - t
            write[:] = False
            if on_pop is not None:
                on_pop(pop)
        if not busy.any():
            return pop
        if meter is not None:
            before, t = int(np.asarray(slots.steps).sum()), time.perf_counter()
        slots = run_round(spec.advance, spec.score, spec.weight, slots, horizon, basin, jnp.int32(ROUND))
        running, fresh, level, hit, hit_w, steps, capped = jax.device_get(
            (slots.running, slots.fresh, slots.level, slots.hit, slots.hit_w, slots.steps, slots.capped)
        )
        if meter is not None:
            meter.round_s += time.perf_counter() - t
            meter.rounds += 1
            meter.busy += int(steps.sum()) - before  # periods advanced in this round (slots keep their count)
            meter.looped += size * ROUND
            meter.slots = size
        done = busy & ~running
        if not done.any():
            if on_pop is not None:  # nothing ended this round (e.g. one long run): the caller may still report
                on_pop(pop)
            continue
        if np.any(done & info.replay & ~fresh):
            raise RuntimeError(
                "splitting: a replayed survivor never exceeded Z; replays are not bit-for-bit "
                "reproducible (non-deterministic advance/score?) -- refusing to continue biased"
            )
        i = np.flatnonzero(done)
        res = (level[i], hit[i], steps[i], capped[i], hit_w[i])
        busy[i] = False
        write[i] = info.replay[i]
        more = finished(info.take(i), res)
        if len(more.src):  # queued after what is waiting (the consumed part is dropped)
            jobs, head = Jobs.cat(jobs.take(np.arange(head, len(jobs.src))), more), 0
