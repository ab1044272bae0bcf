"""Adaptive multilevel splitting (AMS / TAMS) for rare events of any keyed Markov chain.

Two estimators share one engine (one kill / clone / lockstep-simulate implementation):

* ``estimate``: fixed-horizon TAMS, P(max_{t<=T} score >= 1) and the curve p(T') for T' = 0..T;
* ``estimate_rate``: rate form for small noise, k = flux of basin exits x P(target before basin),
  with P(reach within T) = 1 - exp(-k T); every replica runs its own flux trajectories and its own AMS
  from its own crossings, so replicas are independent estimates of k.

The caller supplies three pure functions for ONE particle; the engine vmaps and jits them::

    init(key) -> state                 # pytree
    advance(state, key, t) -> state    # one period; t: int32 period index (check t -> check t+1)
    score(state) -> float              # >= 1 is the target; NaN = diverged (never counts)

Example (biased +-1 walk, reflecting at 0, target 8; tests/test_splitting.py has the exact DP answer)::

    import jax, jax.numpy as jnp
    from jumpsim import splitting

    def init(key):
        return jnp.int32(0)

    def advance(x, key, t):
        up = jax.random.uniform(key) < 0.3
        return jnp.maximum(x + jnp.where(up, 1, -1), 0).astype(jnp.int32)

    def score(x):
        return x.astype(jnp.float32) / 8

    res = splitting.estimate(init, advance, score, horizon=40, particles=32, replicas=20)
    print(res.p, res.p_low, res.p_high, res.p_curve[-1], res.particle_steps)
    rate = splitting.estimate_rate(init, advance, score, basin=1 / 8, interface=3 / 8, flux_trajectories=2,
                                   flux_periods=500, particles=32, replicas=20)
    print(rate.rate, rate.p_within(10_000))

Method (Brehier, Lelievre, Rousset 2016; Cerou, Guyader 2007). Each replica holds N particles; a
particle's level is the max score over its checks (NaN ignored). Per iteration: Z = k-th smallest level,
k = ceil(alpha N); EVERY particle with level <= Z is killed (K >= k; K == N means the replica is extinct,
estimate 0); log w += log(1 - K/N); each killed particle copies a uniformly drawn survivor at the
survivor's FIRST check with score > Z (strictly) and continues from there with fresh randomness.
Stop when Z >= 1; p = w * (#reached / N). Killing ties together and branching at "> Z" is what makes
p unbiased for discrete-valued scores; ``_naive_ties=True`` (validation only) kills exactly k and
branches at ">= Z", which is biased.

Design:

* Vectorised: all R*N particles of all replicas live in fixed-shape arrays (leading axes (R, N)). Particle
  runs (the initial population, then the clones of every kill step) are jobs in a host queue, simulated
  in a fixed table of B slots on the devices (``_drive``): one jitted ``while_loop`` advances every busy
  slot by up to ROUND periods in lockstep, each slot on its own clock (its particle's period); then the
  host collects the runs that stopped (reached, diverged, returned to the basin, or at the horizon) and
  loads queued jobs into the freed slots. Replicas advance independently: a replica's next kill step
  runs as soon as the clones of its previous one have all finished, while the others' clones keep
  running, so slots rarely idle waiting for one slow clone. B is a multiple of L = 16 x the number of
  local devices, fixed per estimate (one compile; see ``table_size``). With several local devices
  (``jumpsim`` forces one per CPU core) the slot axis is split over them with ``shard_map``.
* No snapshots per level: every particle keeps its ORIGIN (state, period, key) -- where it was
  created. A clone is made by REPLAYING the chosen survivor from the survivor's origin with the
  survivor's key until its first check with score > Z; that state becomes the clone's origin and the
  clone continues with its own fresh key, all inside the same lockstep loop (per-particle start
  periods; periods before a particle's start are masked). Memory per particle: ONE state at rest (its
  origin) + key data (8 B) + origin period, level, first-hit period (12 B); each slot of the table ~3
  states (current, new origin, advance output) + ~40 B. A 5 kB state: ~5 kB per particle plus ~15 kB
  per slot (B <= ``max_batch``).
* Replays must reproduce the survivor bit for bit: the table is L * 2^j or 1.5 L * 2^j slots, a multiple of
  8 per device (XLA CPU rounds a partial vector remainder differently), and the key of period t is
  ``fold_in(particle_key, t)``, so a path depends only on its key and start. A replay that never
  exceeds Z raises ``RuntimeError``.
* Keys (typed threefry): particle key = fold_in(fold_in(fold_in(key(seed), replica), iteration), slot),
  iteration 0 = the initial population; ``init`` gets fold_in(particle key, 2^31 - 1). Replica ids are
  global (``replica_offset + r``), so replicas can be run in parts and pooled with ``combine``: a run of
  replicas 0..7 equals the combination of runs 0..3 and 4..7 exactly.
* Resumable: after the initial population and whenever replicas finish an iteration
  ``on_iteration(engine_state)`` gets an ``EngineState`` (NamedTuple of arrays, every replica as of its
  last complete iteration; its device arrays are valid during the call only); ``save_state`` /
  ``load_state`` write / read its leaves with ``np.savez``; ``estimate(..., state=loaded)`` finishes
  with the same answer bit for bit. The schedule (which slot, which round) never changes a result.

Everything is in periods (one ``advance``); the caller converts to SGD steps. Scores are float32, periods
int32, host bookkeeping float64/int64 numpy; works with jax_enable_x64 on or off.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from .stats import LevelBound, level_bound, rate_estimate, replica_interval

IMPL = "threefry2x32"
LANES = 16  # every simulated batch is a multiple of this (bit-for-bit replays, see module docstring)
INIT_TAG = 2**31 - 1  # init(fold_in(particle key, INIT_TAG)): never a period index
SURVIVOR_TAG = 2**31 - 2  # survivor draws of (replica, iteration): never a slot index
FLUX_REPLICA = 2**31 - 3  # flux trajectory j of replica r: key (seed, FLUX_REPLICA, global replica id r, j)
NOHIT = np.int32(2**31 - 1)  # first-hit period of a particle that never reached the target
MAX_BATCH = 1 << 16
HEARTBEAT_S = 30.0  # on_iteration is called at least this often (same state if nothing was committed)
ROUND = 16  # periods per device call of the slot table: a freed slot waits at most this long for its next job
FLUX_CHUNK = 50  # periods per device call of the flux phase (between progress reports)
# intermediate levels z at which every replica also estimates P(max score >= z) (its "level curve"): 48 levels
# from 1e-3 to 0.87, a factor 10^(1/16) apart. Every path to the target passes all of them, so each value is
# an upper bound on p, with an interval even where no replica reaches the target (``stats.level_bound``).
LEVEL_GRID = np.geomspace(1e-3, 1.0, 49)[:-1].astype(np.float32)


# --------------------------------------------------------------------------------------------- state / results


class EngineState(NamedTuple):
    """Whole engine state between iterations (R replicas x N particles). Device arrays: ``origin``,
    ``origin_t``, ``key``; the rest are host numpy arrays."""

    origin: Any  # pytree, leaves (R, N, ...): state where each particle was created (its branch point)
    origin_t: Any  # (R, N) int32: period of that state
    key: Any  # (R, N, 2) uint32: key data of the particle's own randomness
    level: np.ndarray  # (R, N) float32: max score from the origin on (-inf if diverged at once)
    hit: np.ndarray  # (R, N) int32: first check with score >= 1, NOHIT if none
    log_w: np.ndarray  # (R,) float64: log of the product of (1 - K/N)
    iteration: np.ndarray  # (R,) int32: kill steps done
    done: np.ndarray  # (R,) bool
    extinct: np.ndarray  # (R,) bool
    capped: np.ndarray  # (R,) bool: stopped by max_iterations (biased estimate, reported)
    steps: np.ndarray  # (R,) int64: periods simulated, replays included
    period_capped: np.ndarray  # (R,) int64: particles stopped by the horizon (rate form: max_periods)
    log_z: np.ndarray  # (R, I) float32: Z of each iteration (NaN after the last)
    log_k: np.ndarray  # (R, I) int32: K of each iteration (-1 after the last)
    replica: np.ndarray  # (R,) int32: global replica ids
    level_log_p: np.ndarray  # (R, G) float64: log p(max score >= LEVEL_GRID[g]) once fixed, NaN before


class TamsLog(NamedTuple):
    z: np.ndarray  # (R, I) float32, NaN-padded
    killed: np.ndarray  # (R, I) int32, -1-padded


class Log10(NamedTuple):
    mean: float  # mean of log10 p over replicas with p > 0
    sd: float


class TamsResult(NamedTuple):
    p: float  # mean of replica estimates (extinct count as 0)
    p_low: float  # delta-log-normal interval on the mean at `level` (stats.replica_interval); NaN if < 2 replicas > 0
    p_high: float
    replica_p: np.ndarray  # (R,)
    extinct: int
    iterations: np.ndarray  # (R,)
    particle_steps: int  # periods simulated in total, replays and clones included
    reached: np.ndarray  # (R,) particles at or above the target at the end
    p_curve: np.ndarray  # (T+1,) mean over replicas of p(T'), T' = 0..T
    replica_p_curve: np.ndarray  # (R, T+1)
    log: TamsLog
    log10: Log10
    capped: int  # replicas stopped by max_iterations
    replica_ids: np.ndarray  # (R,) global ids
    level: float  # confidence level of the intervals
    replica_level_p: np.ndarray  # (R, G) each replica's estimate of P(max score >= LEVEL_GRID[g])

    def level_bound(self) -> LevelBound:
        """Upper bound on p from the level curve, with an interval also where replicas went extinct
        (``stats.level_bound``): z, P(max score >= z) and its interval, at the level with the smallest upper end
        among those every replica passed."""
        return level_bound(LEVEL_GRID, self.replica_level_p, self.level)


class RateResult(NamedTuple):
    rate: float  # per period; ratio estimator over replicas (see ``stats.rate_estimate``)
    rate_low: float  # Student-t on log k over the R independent replicas (flux, crossings and AMS noise)
    rate_high: float
    flux: float  # crossings per period of exposure, all replicas
    flux_crossings: int
    flux_exposure: int  # periods before reaching the target, summed over flux trajectories
    flux_overflow: int  # crossings not recorded (buffer full); counted in the flux, not used as starts
    p_ab: float  # crossing-weighted: sum_r C_r p_r / sum_r C_r
    p_ab_low: float
    p_ab_high: float
    replica_p_ab: np.ndarray  # (R,) P(target before basin) from the replica's own crossings (NaN: it had none)
    replica_crossings: np.ndarray  # (R,) C_r, crossings of the replica's own flux trajectories
    replica_exposure: np.ndarray  # (R,) E_r, their periods of exposure
    extinct: int
    particle_steps: int  # flux + AMS periods, replays included
    period_capped: int  # AMS particles stopped by max_periods (biased low if > 0)
    capped: int  # replicas stopped by max_iterations
    iterations: np.ndarray  # (R,)
    log: TamsLog
    replica_ids: np.ndarray
    level: float
    replica_level_p: np.ndarray  # (R, G) P(max score >= LEVEL_GRID[g] before the basin | own crossings); NaN: none

    def level_bound(self) -> LevelBound:
        """Upper bound on k: the rate of reaching LEVEL_GRID[g] from the basin, with its interval, at the level with
        the smallest upper end among those every replica with crossings passed (``stats.level_bound``)."""
        return level_bound(LEVEL_GRID, self.replica_level_p, self.level, self.replica_crossings, self.replica_exposure)

    def p_within(self, periods) -> tuple[float, float, float]:
        """P(reach the target within `periods` periods) = 1 - exp(-k T) with its interval."""
        f = lambda k: -math.expm1(-k * periods) if np.isfinite(k) else float("nan")
        return f(self.rate), f(self.rate_low), f(self.rate_high)


# --------------------------------------------------------------------------------------------- keys, helpers


def _wrap(kd):
    return jax.random.wrap_key_data(kd, impl=IMPL)


def _key_data(seed, replica, iteration, slot):
    k = jax.random.key(seed, impl=IMPL)
    for d in (replica, iteration, slot):
        k = jax.random.fold_in(k, d)
    return jax.random.key_data(k)


def _select(mask, a, b):
    """Per-particle where over pytrees: mask (B,), leaves (B, ...)."""
    return jax.tree.map(lambda x, y: jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y), a, b)


@functools.cache
def _mesh() -> jax.sharding.Mesh:
    """1-D mesh over the local devices: every batch's particle axis is split over it."""
    return jax.sharding.Mesh(np.array(jax.local_devices()), ("p",))


def _lanes() -> int:
    """Batch sizes are multiples of this: LANES particles per local device."""
    return LANES * _mesh().size


def _bucket(n: int) -> int:
    """Batch size for n particles: the smallest L * 2^j or 1.5 L * 2^j >= n, L = ``_lanes()``."""
    b = _lanes()
    while True:
        if b >= n:
            return b
        if b * 3 // 2 >= n:
            return b * 3 // 2
        b *= 2


def _flat(tree):
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


# --------------------------------------------------------------------------------------------- lockstep simulation


@partial(jax.jit, static_argnames=("init", "n"))
def _init_population(init, seed, replica, n):
    """Initial particles of replicas `replica` (R,): states (R, n, ...) and key data (R, n, 2)."""
    kd = jax.vmap(lambda r: jax.vmap(lambda j: _key_data(seed, r, 0, j))(jnp.arange(n)))(replica)
    states = jax.vmap(jax.vmap(lambda k: init(jax.random.fold_in(_wrap(k), INIT_TAG))))(kd)
    return states, kd


@partial(jax.jit, static_argnames=("n",))
def _survivor_draws(seed, replica, iteration, n_surv, n):
    """(R, n) uniform draws in [0, n_surv[r]) keyed by (seed, replica, iteration)."""

    def one(r, it, m):
        k = _wrap(_key_data(seed, r, it, SURVIVOR_TAG))
        return jax.random.randint(k, (n,), 0, jnp.maximum(m, 1), dtype=jnp.int32)

    return jax.vmap(one)(replica, iteration, n_surv)


class _Spec(NamedTuple):
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


class _Slots(NamedTuple):
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
    steps: jax.Array  # (B,) int32 periods advanced (replay part included)
    capped: jax.Array  # (B,) bool: still running at the horizon


class _Jobs(NamedTuple):
    """Particle runs waiting for a slot (host arrays, one entry per run)."""

    src: np.ndarray  # flat population index whose origin / key the run starts from
    dest: np.ndarray  # flat population index a clone is written to
    replay: np.ndarray  # bool: a clone (replay src until score > z, then fresh randomness)
    row: np.ndarray  # replica row in the engine state
    replica: np.ndarray  # global replica id   } the clone's fresh key
    iteration: np.ndarray  # iteration          }
    slot: np.ndarray  # particle index j     }
    z: np.ndarray  # float32

    def take(self, i) -> _Jobs:
        return _Jobs(*(a[i] for a in self))

    @staticmethod
    def cat(a: _Jobs, b: _Jobs) -> _Jobs:
        return _Jobs(*(np.concatenate([x, y]) for x, y in zip(a, b)))


def _no_jobs() -> _Jobs:
    i = np.zeros(0, np.int64)
    return _Jobs(i, i, np.zeros(0, bool), i, i, i, i, np.zeros(0, np.float32))


def _slot_round(advance, score, s: _Slots, horizon, basin, rounds, axis=None) -> _Slots:
    """Advance every running slot by up to `rounds` periods (one lockstep while_loop). At each check a
    replaying slot branches at its first score > z (that state becomes its origin) and then follows its
    fresh key; a fresh slot tracks level = max score and the first check with score >= 1 and stops at the
    target, at NaN, at score <= basin, or at the horizon."""
    vscore = jax.vmap(score)
    vadvance = jax.vmap(advance)
    vfold = jax.vmap(lambda kd, t: jax.random.fold_in(_wrap(kd), t))

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
        origin = _select(branch, s.x, s.origin)
        origin_t = jnp.where(branch, t, s.origin_t)
        fresh = s.fresh | branch
        upd = active & fresh
        level = jnp.where(upd, jnp.maximum(s.level, sc), s.level)
        hit = jnp.where(upd & (sc >= 1) & (s.hit == NOHIT), t, s.hit)
        stop = active & (nan | (upd & ((sc >= 1) | (sc <= basin))))
        capped = s.capped | (upd & ~stop & (t == horizon))
        running = active & ~stop & (t < horizon)
        keys = jnp.where(fresh[:, None], s.fresh_key, s.replay_key)
        x = _select(running, vadvance(s.x, vfold(keys, t), t), s.x)
        s = s._replace(
            x=x,
            origin=origin,
            t=t + running,
            origin_t=origin_t,
            fresh=fresh,
            running=running,
            level=level,
            hit=hit,
            steps=s.steps + running,
            capped=capped,
        )
        return k + 1, s

    return jax.lax.while_loop(cond, body, (jnp.int32(0), s))[1]


@partial(jax.jit, static_argnames=("advance", "score"), donate_argnums=(2,))
def _round(advance, score, s: _Slots, horizon, basin, rounds) -> _Slots:
    """``_slot_round`` with the slot axis split over the local devices (each runs its own loop)."""
    mesh = _mesh()
    if mesh.size == 1:
        return _slot_round(advance, score, s, horizon, basin, rounds)
    p, rep = P("p"), P()
    return jax.shard_map(
        partial(_slot_round, advance, score, axis="p"),
        mesh=mesh,
        in_specs=(p, rep, rep, rep),
        out_specs=p,
        check_vma=False,
    )(s, horizon, basin, rounds)


@partial(jax.jit, donate_argnums=(0, 1))
def _exchange(pop, s: _Slots, write, dest, load, src, replay, seed, replica, iteration, slot, z, horizon):
    """Write the finished clones of the table into the population (``write`` (B,) bool, at flat ``dest``),
    then load new jobs into slots ``load`` (B,) int32 (B = unused entry): start state, period and key of
    population particle ``src``; clones (``replay``) get the fresh key of (replica, iteration, slot)."""
    origin, origin_t, key = pop
    total = origin_t.size
    d = jnp.where(write, dest, total)
    put = lambda x, v: _flat(x).at[d].set(v, mode="drop").reshape(x.shape)
    origin, origin_t, key = jax.tree.map(put, origin, s.origin), put(origin_t, s.origin_t), put(key, s.fresh_key)
    own = _flat(key)[src]
    clone_key = jax.vmap(_key_data, in_axes=(None, 0, 0, 0))(seed, replica, iteration, slot)
    fresh = jnp.where(replay[:, None], clone_key, own)
    x0 = jax.tree.map(lambda x: _flat(x)[src], origin)
    t0 = _flat(origin_t)[src]
    b = load.shape[0]
    set_ = lambda a, v: a.at[load].set(v, mode="drop")
    s = _Slots(
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
        set_(s.steps, jnp.zeros((b,), jnp.int32)),
        set_(s.capped, jnp.zeros((b,), bool)),
    )
    return (origin, origin_t, key), s


def _empty_slots(pop, size: int) -> _Slots:
    """A table of `size` idle slots shaped like the population's particles, on the mesh. Every field gets a
    buffer of its own: the round and the exchange donate the table, and XLA refuses a buffer donated twice."""
    particle = lambda: jax.tree.map(lambda x: jnp.zeros((size,) + x.shape[2:], x.dtype), pop[0])
    zeros = lambda *shape, dtype: jnp.zeros((size, *shape), dtype)
    s = _Slots(
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
        zeros(dtype=jnp.int32),
        zeros(dtype=bool),
    )
    # split over the devices; on one device as the round returns it (P() there), else the exchange compiles twice
    mesh = _mesh()
    return jax.device_put(s, jax.sharding.NamedSharding(mesh, P("p") if mesh.size > 1 else P()))


def table_size(replicas: int, k: int, max_batch: int = MAX_BATCH) -> int:
    """Slots in the simulation table of an estimate with `replicas` replicas killing >= `k` particles per
    iteration (at most max_batch, a multiple of the lanes). On a CPU an idle slot costs as much as a busy
    one, and replicas wait for their slowest clone, so the table holds ~0.4 R k (measured on the rank-3
    escape, 32 and 8 replicas: 0.4-0.5 R k slots are busy ~85 % of the time, R k slots ~50 %);
    accelerators run idle lanes in parallel, so there it holds all R k."""
    n_jobs = replicas * k
    want = n_jobs if jax.default_backend() != "cpu" else math.ceil(0.4 * n_jobs)
    return min(max(_lanes(), max_batch // _lanes() * _lanes()), _bucket(want))


def flux_batch(replicas: int, flux_trajectories: int, max_batch: int = MAX_BATCH) -> int:
    """Trajectories the flux phase of ``estimate_rate`` runs at once (on one device)."""
    return _bucket(min(replicas * flux_trajectories, max(LANES, max_batch // LANES * LANES)))


def lockstep_speed(init, advance, width: int, sharded: bool, calls: int = 3) -> float:
    """Particle periods per second of ``width`` particles advanced one period in lockstep (``advance``
    vmapped and jitted; split over the local devices like the slot table when ``sharded``, on one device
    like the flux phase otherwise), the fastest of up to ``calls`` timed calls after a compiling one (one if
    it takes over 0.5 s): the best case of the engine at that width, for the time estimate before a run."""
    kd = jax.vmap(lambda i: _key_data(jnp.int32(0), FLUX_REPLICA, i, jnp.int32(0)))(jnp.arange(width, dtype=jnp.int32))
    xs = jax.vmap(lambda k: init(_wrap(k)))(kd)
    step = jax.vmap(lambda x, k: advance(x, _wrap(k), jnp.int32(0)))
    mesh = _mesh()
    if sharded and mesh.size > 1 and width % mesh.size == 0:
        step = jax.shard_map(step, mesh=mesh, in_specs=(P("p"), P("p")), out_specs=P("p"), check_vma=False)
        xs, kd = jax.device_put((xs, kd), jax.sharding.NamedSharding(mesh, P("p")))
    step = jax.jit(step)
    jax.block_until_ready(step(xs, kd))
    best = math.inf
    for _ in range(calls):
        t0 = time.perf_counter()
        jax.block_until_ready(step(xs, kd))
        best = min(best, time.perf_counter() - t0)
        if best > 0.5:  # a wide table: one timed call is long enough to be steady
            break
    return width / max(best, 1e-9)


def _drive(spec, pop, jobs: _Jobs, size: int, finished: Callable[[_Jobs, tuple], _Jobs], on_pop=None):
    """Run `jobs` through a table of `size` slots, ROUND periods per device call; a slot freed by a finished
    run takes the next queued job at once. ``finished(jobs, (level, hit, steps, capped))`` gets the runs
    that ended in a round (host arrays) and returns new jobs to queue; ``on_pop(pop)`` sees the population
    after each exchange (the clones finished so far written). Returns the population with every finished
    clone's origin and key written to its destination.

    Results do not depend on the schedule: a run's path depends only on its start state and key, the
    table has one fixed size (one compile per estimate), and the population update of a finished clone
    lands before any job that could read it is loaded (``_exchange`` writes, then loads)."""
    slots = _empty_slots(pop, size)
    info = _Jobs(*(np.zeros(size, a.dtype) for a in _no_jobs()))
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
        for f, a in zip(_Jobs._fields, new):
            getattr(info, f)[free[:m]] = a
        busy[free[:m]] = True
        pad = lambda a, dt: jnp.asarray(np.pad(a.astype(dt), (0, size - m)))
        if m or write.any():  # (a device call costs ~ms: skipped when nothing is written or loaded)
            pop, slots = _exchange(
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
            write[:] = False
            if on_pop is not None:
                on_pop(pop)
        if not busy.any():
            return pop
        slots = _round(spec.advance, spec.score, slots, horizon, basin, jnp.int32(ROUND))
        running, fresh, level, hit, steps, capped = jax.device_get(
            (slots.running, slots.fresh, slots.level, slots.hit, slots.steps, slots.capped)
        )
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
        res = (level[i], hit[i], steps[i], capped[i])
        busy[i] = False
        write[i] = info.replay[i]
        more = finished(info.take(i), res)
        if len(more.src):  # queued after what is waiting (the consumed part is dropped)
            jobs, head = _Jobs.cat(jobs.take(np.arange(head, len(jobs.src))), more), 0


# --------------------------------------------------------------------------------------------- engine


def _start(spec: _Spec, states, keys, replica, skip: np.ndarray | None = None) -> EngineState:
    """Engine state after running the initial population (states (R, N, ...), keys (R, N, 2)) fresh from
    period 0. Replicas in `skip` (R,) bool are not simulated: done from the start, level -inf, 0 steps."""
    r, n = keys.shape[:2]
    skip = np.zeros(r, bool) if skip is None else np.asarray(skip, bool)
    idx = np.flatnonzero(np.repeat(~skip, n))
    zeros = np.zeros(len(idx), np.int64)
    # on the devices' mesh from the start, as every exchange returns it (else the next call compiles again)
    pop = jax.device_put((states, jnp.zeros((r, n), jnp.int32), keys), jax.sharding.NamedSharding(_mesh(), P()))
    level, hit = np.full(r * n, -np.inf, np.float32), np.full(r * n, NOHIT, np.int32)
    steps, capped = np.zeros(r * n, np.int64), np.zeros(r * n, np.int64)

    def finished(jobs, res):
        for a, v in zip((level, hit, steps, capped), res):
            a[jobs.src] = v
        return _no_jobs()

    jobs = _Jobs(idx, idx, zeros.astype(bool), idx // n, zeros, zeros, zeros, zeros.astype(np.float32))
    pop = _drive(spec, pop, jobs, table_size(r, spec.k, spec.max_batch), finished)
    return EngineState(
        origin=pop[0],
        origin_t=pop[1],
        key=pop[2],
        level=level.reshape(r, n),
        hit=hit.reshape(r, n),
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


def _kill(spec: _Spec, st: EngineState, ready: np.ndarray) -> tuple[EngineState, _Jobs]:
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
    if len(rows):
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
        return st, _no_jobs()
    draws = np.asarray(
        _survivor_draws(
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
    jobs = _Jobs(
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
    "log_w",
    "iteration",
    "done",
    "extinct",
    "capped",
    "steps",
    "period_capped",
    "level_log_p",
)


def _iterate(spec: _Spec, st: EngineState, on_iteration) -> EngineState:
    """Kill / clone until every replica is done (Z >= 1, extinct, or max_iterations). Replicas advance on
    their own: a replica's next kill step runs as soon as the clones of its last one have all finished,
    while other replicas' clones still run. The EngineState handed to `on_iteration` holds every replica
    as it was after its last complete iteration (a consistent point to resume from: clones in flight have
    written only to killed slots, which a resumed run rewrites with the same values)."""
    st = st._replace(**{f: np.array(getattr(st, f)) for f in EngineState._fields[3:]})  # private host copies
    # copies: the exchange donates the population's buffers, and the caller may still hold `st` (a resume)
    own = lambda x: x.copy() if isinstance(x, jax.Array) else jnp.asarray(x)
    pop = (jax.tree.map(own, st.origin), own(st.origin_t), own(st.key))
    pop = jax.device_put(pop, jax.sharding.NamedSharding(_mesh(), P()))
    r = len(st.replica)
    # working state (rows in flight partly updated), the latest population, commits since the last hook call
    w = {"st": st, "pop": pop, "dirty": False, "beat": time.perf_counter()}
    outstanding = np.zeros(r, np.int64)
    backup = {f: getattr(st, f).copy() for f in _ROW_FIELDS}  # rows in flight: their state before the kill

    def kill(ready):
        for f in _ROW_FIELDS:
            backup[f][ready] = getattr(w["st"], f)[ready]
        w["st"], jobs = _kill(spec, w["st"], ready)
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
        s.level[rr, jj], s.hit[rr, jj] = res[0], res[1]
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
    pop = _drive(spec, pop, jobs, table_size(r, spec.k, spec.max_batch), finished, on_pop)
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


def _replica_p(st: EngineState) -> np.ndarray:
    return np.where(st.extinct, 0.0, np.exp(st.log_w) * (st.level >= 1).mean(1))


def _log(st: EngineState) -> TamsLog:
    return TamsLog(st.log_z.copy(), st.log_k.copy())


def kill_count(particles: int, kill_fraction: float) -> int:
    """k = ceil(alpha N): the fewest particles a kill step removes."""
    return math.ceil(kill_fraction * particles - 1e-9)


def _check(particles, replicas, kill_fraction):
    if particles < 2 or replicas < 1 or not 0 < kill_fraction < 1:
        raise ValueError("need particles >= 2, replicas >= 1, 0 < kill_fraction < 1")
    return kill_count(particles, kill_fraction)


# --------------------------------------------------------------------------------------------- fixed horizon


def estimate(
    init,
    advance,
    score,
    *,
    horizon: int,
    particles: int,
    replicas: int,
    kill_fraction: float = 0.2,
    seed: int = 0,
    level: float = 0.95,
    max_iterations: int = 10_000,
    state: EngineState | None = None,
    on_iteration: Callable[[EngineState], Any] | None = None,
    replica_offset: int = 0,
    max_batch: int = MAX_BATCH,
    _naive_ties: bool = False,
) -> TamsResult:
    """Fixed-horizon TAMS estimate of P(max_{t=0..horizon} score(x_t) >= 1), x_0 = init(key).

    `replicas` independent replicas of `particles` particles (global ids replica_offset + r); `state`
    resumes from an ``EngineState`` given to `on_iteration` (same arguments required). `max_batch`
    bounds the particles simulated at once (memory: ~3 states per batch slot). See the module docstring.
    """
    k = _check(particles, replicas, kill_fraction)
    spec = _Spec(
        advance,
        score,
        int(horizon),
        -math.inf,
        particles,
        k,
        seed,
        max_iterations,
        max(LANES, max_batch // LANES * LANES),
        _naive_ties,
    )
    if state is None:
        ids = np.arange(replica_offset, replica_offset + replicas, dtype=np.int32)
        states, keys = _init_population(init, jnp.int32(seed), jnp.asarray(ids), particles)
        state = _start(spec, states, keys, ids)
        if on_iteration is not None:
            on_iteration(state)
    st = _iterate(spec, state, on_iteration)
    return _tams_result(st, horizon, level)


def _tams_result(st: EngineState, horizon: int, level: float) -> TamsResult:
    rp = _replica_p(st)
    hit_by = (st.hit[:, :, None] <= np.arange(horizon + 1)[None, None, :]).mean(1)  # (R, T+1)
    curve = np.where(st.extinct[:, None], 0.0, np.exp(st.log_w)[:, None] * hit_by)
    return _summarise(
        rp,
        curve,
        st.extinct,
        st.iteration,
        int(st.steps.sum()),
        (st.level >= 1).sum(1),
        _log(st),
        int(st.capped.sum()),
        st.replica,
        level,
        np.exp(st.level_log_p),
    )


def _summarise(rp, curve, extinct, iterations, steps, reached, log, capped, ids, level, level_p) -> TamsResult:
    m, lo, hi = replica_interval(rp, level)
    pos = rp[rp > 0]
    l10 = np.log10(pos) if len(pos) else np.array([np.nan])
    return TamsResult(
        m,
        lo,
        hi,
        rp,
        int(np.sum(extinct)),
        np.asarray(iterations),
        steps,
        np.asarray(reached),
        curve.mean(0),
        curve,
        log,
        Log10(float(l10.mean()), float(l10.std(ddof=1)) if len(l10) > 1 else float("nan")),
        capped,
        np.asarray(ids),
        level,
        np.asarray(level_p),
    )


def _pad_logs(logs: Sequence[TamsLog]) -> TamsLog:
    w = max(lg.z.shape[1] for lg in logs)
    z = np.concatenate([np.pad(lg.z, ((0, 0), (0, w - lg.z.shape[1])), constant_values=np.nan) for lg in logs])
    kk = np.concatenate([np.pad(lg.killed, ((0, 0), (0, w - lg.killed.shape[1])), constant_values=-1) for lg in logs])
    return TamsLog(z, kk)


def combine(results):
    """Pool replica estimates of several runs (e.g. replica shards run as separate batch tasks) into one
    result, as if the replicas had been run together. Works for ``TamsResult`` and ``RateResult`` (each
    rate-form replica runs its own flux trajectories, keyed by its global id, so they pool the same way)."""
    results = list(results)
    r0 = results[0]
    cat = lambda f: np.concatenate([getattr(r, f) for r in results])
    log = _pad_logs([r.log for r in results])
    if isinstance(r0, TamsResult):
        rp, curve = cat("replica_p"), cat("replica_p_curve")
        return _summarise(
            rp,
            curve,
            sum(r.extinct for r in results),
            cat("iterations"),
            sum(r.particle_steps for r in results),
            cat("reached"),
            log,
            sum(r.capped for r in results),
            cat("replica_ids"),
            r0.level,
            cat("replica_level_p"),
        )
    return _rate_result(
        cat("replica_crossings"),
        cat("replica_exposure"),
        sum(r.flux_overflow for r in results),
        cat("replica_p_ab"),
        sum(r.extinct for r in results),
        sum(r.particle_steps for r in results),
        sum(r.period_capped for r in results),
        sum(r.capped for r in results),
        cat("iterations"),
        log,
        cat("replica_ids"),
        r0.level,
        cat("replica_level_p"),
    )


# --------------------------------------------------------------------------------------------- rate form


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
    vfold = jax.vmap(lambda kd, t: jax.random.fold_in(_wrap(kd), t), in_axes=(0, None))
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
        buf = jax.tree.map(lambda bf, v: bf.at[rows, slot].set(_select(write, v, bf[rows, slot])), c.crossings, x)
        armed = (c.armed & ~cross) | (alive & (s <= basin))
        alive = alive & ~nan & ~(s >= 1) & (t < periods)
        x = _select(alive, vadvance(x, vfold(key, t), t), x)
        return _Flux(t + 1, x, alive, armed, buf, c.count + cross, c.exposure + alive)

    return jax.lax.while_loop(cond, body, f)


def _rate_result(
    crossings, exposure, overflow, rp, extinct, steps, period_capped, capped, iterations, log, ids, level, level_p
) -> RateResult:
    """crossings, exposure, rp: (R,) per replica; level_p (R, G); steps: flux + AMS periods."""
    crossings, exposure = np.asarray(crossings, np.int64), np.asarray(exposure, np.int64)
    rp = np.where(crossings > 0, np.asarray(rp, np.float64), np.nan)
    e = rate_estimate(crossings, exposure, rp, level)
    return RateResult(
        e.rate,
        e.rate_low,
        e.rate_high,
        e.flux,
        int(crossings.sum()),
        int(exposure.sum()),
        int(overflow),
        e.p_ab,
        e.p_ab_low,
        e.p_ab_high,
        rp,
        crossings,
        exposure,
        int(extinct),
        int(steps),
        int(period_capped),
        int(capped),
        np.asarray(iterations),
        log,
        np.asarray(ids),
        level,
        np.where(crossings[:, None] > 0, np.asarray(level_p, np.float64), np.nan),
    )


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
    rank (the DLN's one-step collapses), the committor varies wildly between crossings and only
    independent draws put that spread into the interval. ``advance`` must not depend on t here (the AMS
    restarts the period count at 0). ``on_flux(fraction)`` is called as the flux phase advances (every
    FLUX_CHUNK periods).
    """
    if not basin < interface < 1:
        raise ValueError("need basin < interface < 1")
    if flux_trajectories < 1:
        raise ValueError("need flux_trajectories >= 1 (per replica)")
    k = _check(particles, replicas, kill_fraction)
    max_batch = max(LANES, max_batch // LANES * LANES)
    spec = _Spec(advance, score, int(max_periods), float(basin), particles, k, seed, max_iterations, max_batch, False)
    ids = np.arange(replica_offset, replica_offset + replicas, dtype=np.int32)
    # flux phase: trajectory (r, j) keyed by (seed, FLUX_REPLICA, global replica id, j); replica-major order
    total = replicas * flux_trajectories
    owner = np.repeat(np.arange(replicas), flux_trajectories)
    traj = np.tile(np.arange(flux_trajectories, dtype=np.int32), replicas)
    bufs, counts, exposures = [], [], []
    for a in range(0, total, max_batch):
        m = min(max_batch, total - a)
        size = _bucket(m)
        sel = np.minimum(np.arange(a, a + size), total - 1)
        kd = jax.vmap(lambda r, j: _key_data(jnp.int32(seed), FLUX_REPLICA, r, j))(
            jnp.asarray(ids[owner[sel]]), jnp.asarray(traj[sel])
        )
        x0 = jax.vmap(lambda kk: init(jax.random.fold_in(_wrap(kk), INIT_TAG)))(kd)
        fl = _flux_start(x0, jnp.asarray(np.arange(size) < m), flux_capacity)
        for until in range(FLUX_CHUNK, flux_periods + 1 + FLUX_CHUNK, FLUX_CHUNK):  # checks 0..flux_periods
            lims = jnp.int32(until), jnp.int32(flux_periods), jnp.float32(basin), jnp.float32(interface)
            fl = _flux_run(advance, score, fl, kd, *lims)
            alive = bool(fl.alive.any())
            if on_flux is not None:  # the batch's share done (all of it once no trajectory is left)
                on_flux((a + (m * min(until, flux_periods + 1) / (flux_periods + 1) if alive else m)) / total)
            if not alive:
                break
        cnt = np.asarray(fl.count)[:m]
        rec = np.minimum(cnt, flux_capacity)
        rows, cols = np.nonzero(np.arange(flux_capacity)[None, :] < rec[:, None])  # trajectory-major order
        bufs.append(jax.tree.map(lambda x: x[jnp.asarray(rows), jnp.asarray(cols)], fl.crossings))
        counts.append(cnt)
        exposures.append(np.asarray(fl.exposure)[:m])
    count, exposure = np.concatenate(counts).astype(np.int64), np.concatenate(exposures).astype(np.int64)
    crossings = jax.tree.map(lambda *xs: jnp.concatenate(xs), *bufs)
    rec = np.minimum(count, flux_capacity)
    rep_c = np.bincount(owner, count, replicas).astype(np.int64)
    rep_e = np.bincount(owner, exposure, replicas).astype(np.int64)
    overflow = int(count.sum() - rec.sum())
    flux_steps = int(exposure.sum())
    n_own = np.bincount(owner, rec, replicas).astype(np.int64)  # recorded crossings per replica
    if n_own.sum() == 0:
        warnings.warn("splitting: no crossing recorded in the flux phase; rate = 0", RuntimeWarning, stacklevel=2)
        z = np.zeros(replicas)
        log = TamsLog(np.zeros((replicas, 0), np.float32), np.zeros((replicas, 0), np.int32))
        nan = np.full((replicas, len(LEVEL_GRID)), np.nan)
        return _rate_result(rep_c, rep_e, overflow, z, 0, flux_steps, 0, 0, z.astype(np.int32), log, ids, level, nan)
    if state is None:
        # particle j of replica r starts from the replica's recorded crossing j mod n_own[r], or, with more
        # crossings than particles, from every (n_own / N)-th one (spread over its trajectories). A replica
        # with none holds a placeholder (crossing 0; fixed shapes) and is not simulated.
        first = np.concatenate([[0], np.cumsum(n_own)[:-1]])
        j, own = np.arange(particles)[None, :], np.maximum(n_own, 1)[:, None]
        g = first[:, None] + np.where(own > particles, j * own // particles, j % own)
        g = np.where(n_own[:, None] > 0, g, 0)
        states = jax.tree.map(lambda x: x[jnp.asarray(g, jnp.int32)], crossings)
        keys = jax.vmap(lambda r: jax.vmap(lambda j: _key_data(jnp.int32(seed), r, 0, j))(jnp.arange(particles)))(
            jnp.asarray(ids)
        )
        state = _start(spec, states, keys, ids, skip=n_own == 0)
        if on_iteration is not None:
            on_iteration(state)
    st = _iterate(spec, state, on_iteration)
    if st.period_capped.any():
        warnings.warn(
            f"splitting: {int(st.period_capped.sum())} AMS particle(s) hit max_periods = {max_periods}",
            RuntimeWarning,
            stacklevel=2,
        )
    return _rate_result(
        rep_c,
        rep_e,
        overflow,
        _replica_p(st),
        int(st.extinct.sum()),
        flux_steps + int(st.steps.sum()),
        int(st.period_capped.sum()),
        int(st.capped.sum()),
        st.iteration,
        _log(st),
        st.replica,
        level,
        np.exp(st.level_log_p),
    )


# --------------------------------------------------------------------------------------------- save / load


def _is_key(x) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)


def save_state(path, st: EngineState) -> None:
    """Write an EngineState's leaves with np.savez (typed PRNG keys inside particle states as their key
    data); read back with ``load_state``."""
    leaves = jax.tree.leaves(st)
    np.savez(path, *[np.asarray(jax.random.key_data(x) if _is_key(x) else x) for x in leaves])


def load_state(path, init) -> EngineState:
    """Read an EngineState written by ``save_state``; `init` gives the particle state's structure."""
    shape = jax.eval_shape(init, jax.random.key(0, impl=IMPL))
    template = EngineState(shape, *range(len(EngineState._fields) - 1))
    treedef = jax.tree.structure(template)
    kinds = jax.tree.leaves(template)
    with np.load(path) as f:
        leaves = [f[f"arr_{i}"] for i in range(len(f.files))]
    if len(leaves) != len(kinds):
        raise ValueError(f"{path}: not an engine state of this jumpsim version ({len(leaves)} arrays)")
    leaves = [jax.random.wrap_key_data(jnp.asarray(x), impl=IMPL) if _is_key(k) else x for x, k in zip(leaves, kinds)]
    return jax.tree.unflatten(treedef, leaves)
