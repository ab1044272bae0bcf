"""SGD dynamics of ONE seed: state, init, K-step advance, observation and the detector update.

The blackjax pattern: ``SeedState``/``Observation`` NamedTuples and pure functions of one seed that
take plain arrays (``Data``) and small frozen records (``Dynamics``, ``Detection``), never the whole
``Config``. ``kernel`` vmaps, shard_maps and jits them for brute-force runs; ``rare`` drives the very
same functions as splitting particles. ``jumpsim.setup`` turns a ``Config`` into those records once.

Randomness is keyed by position, never by batch: seed key = fold_in(root, seed id), the noise of
step t = fold_in(step key of the seed, t). A seed's trajectory is therefore the same whatever the
chunk size, the number of devices or where a run is cut (bit for bit on one CPU type or backend;
XLA emits different code for other instruction sets and for GPUs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from . import detector, model, spectrum

ROOT_KEY = 0  # fold_in(key(ROOT_KEY), seed id): seed i means the same noise in every experiment
# the version of a seed's trajectory: raised whenever a change of the numerics makes the same seed of the same
# config take another path (even in the last bits); recorded with every dataset, so that a dataset is never
# extended by code that draws different trajectories
# 1: the vmapped per-seed step everywhere; 2: on a CPU, plain SGD with a minibatch runs seeds innermost (``lanes``)
TRAJECTORY_VERSION = 2


def float64_scope():
    """Context in which float64 arrays exist, whatever the importing program chose.

    jumpsim counts ranks on a float64 Gram matrix and offers float64 runs, but it does not flip
    ``jax_enable_x64`` for the user's whole program: every entry point that builds or runs a
    computation enters this scope (functions are traced inside it, so float64 stays float64
    under ``jit``). Every array jumpsim creates has an explicit dtype, so float32 runs stay float32.
    """
    return jax.enable_x64(True)


def with_float64(fn: Callable) -> Callable:
    """Decorator: run ``fn`` inside ``float64_scope``."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with float64_scope():
            return fn(*args, **kwargs)

    return wrapped


# --------------------------------------------------------------------------------------
# records


class Data(NamedTuple):
    """The problem on the device, in the run dtype. rows, cols: (k,) int32 observed entries;
    values: (k,) their targets; target: (n, m); mask: (n, m) bool."""

    rows: jax.Array
    cols: jax.Array
    values: jax.Array
    target: jax.Array
    mask: jax.Array

    @property
    def n_observed(self) -> int:
        return self.rows.shape[0]


@dataclass(frozen=True)
class Optimizer:
    """How the regularized gradient G + 2 lambda W becomes a step (``train.optimizer``).

    The update is the optax chain ``add_decayed_weights(2 lambda_t) -> direction -> scale(-eta_t)``:
    for "sgd" (direction = identity) that is exactly W - eta (G + 2 lambda W), bit for bit the
    hand-written form. The ridge is coupled (added to the gradient before momentum or Adam see
    it), as in the paper's loss; decoupled weight decay (AdamW) is a different dynamics.
    """

    kind: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def direction(self) -> optax.GradientTransformation:
        if self.kind == "momentum":
            return optax.trace(decay=self.momentum, nesterov=self.nesterov)
        if self.kind == "adam":
            return optax.scale_by_adam(b1=self.b1, b2=self.b2, eps=self.eps)
        return optax.identity()

    def transform(self, lr, ridge) -> optax.GradientTransformation:
        """The update at one step, for the schedule values ``lr`` (eta_t) and ``ridge`` (lambda_t)."""
        return optax.chain(optax.add_decayed_weights(2.0 * ridge), self.direction(), optax.scale(-lr))

    def init(self, params: model.Params) -> optax.OptState:
        """Optimizer state of one seed; it rides in ``SeedState`` (and Adam's count is the step t)."""
        return self.transform(0.0, 0.0).init(params)


@dataclass(frozen=True)
class Dynamics:
    """SGD settings of an experiment. batch: entries per step (None = full batch, gradient
    descent); scale: data-loss factor (1 for the mean, |Omega| for the sum); lr, ridge:
    step -> value, jittable; every: steps per check (K)."""

    batch: int | None
    scale: float
    lr: Callable
    ridge: Callable
    optimizer: Optimizer
    every: int
    dtype: str = "float32"
    sampling: str = "with_replacement"  # | "without_replacement": epochs of a fresh order of the observed entries


@dataclass(frozen=True)
class Detection:
    """Rank observation and jump detector settings (``[detect]``)."""

    threshold: float
    relative: bool
    persist: int
    max_events: int
    # B_r: confirmed rank <= absorbing_rank, relative balancedness gap <= balance_tol, |theta|^2 <= norm_bound;
    # visits are counted only when ``absorbing``
    absorbing: bool = False
    absorbing_rank: int = 0
    balance_tol: float = 0.1
    norm_bound: float = float("inf")


class Absorbing(NamedTuple):
    """Visits of one seed to the absorbing set B_r (checked at every check): whether it is inside now,
    entries (a start inside counts as one), exits, checks after the start found inside, step of the
    first entry (-1)."""

    inside: jax.Array  # () bool
    entries: jax.Array  # () int32
    exits: jax.Array  # () int32
    checks_inside: jax.Array  # () int32
    first_entry: jax.Array  # () int32


class SeedState(NamedTuple):
    """State of ONE seed (a leading seed axis is added by vmap)."""

    params: model.Params
    opt_state: optax.OptState
    key: jax.Array  # typed threefry key of this seed's step noise
    det: detector.DetectorState
    diverged: jax.Array  # () bool
    stop_step: jax.Array  # () int32: step at which divergence was detected, else -1
    last_params: model.Params  # parameters at the last finite check (final singular values)
    loss: jax.Array  # () train MSE on Omega at the last finite check
    test_error: jax.Array  # () MSE on the unobserved entries (nan if none)
    absorbing: Absorbing  # unchanged (zeros) unless Detection.absorbing
    # sampling without replacement: the current epoch's order of the K observed entries (K,) int32; None otherwise
    # (no leaf: the splitting engine's per-leaf work and the tables see the state they saw before)
    order: jax.Array | None


class Observation(NamedTuple):
    """Values at one check (one seed): what the traces table records. ``sv`` is computed only
    for traces (shape (0,) otherwise): the detector counts ranks without an SVD. ``in_br``: inside
    B_r after this check (False from ``observe`` alone: membership needs the detector's rank)."""

    rank: jax.Array
    loss: jax.Array
    test_error: jax.Array
    sv: jax.Array
    balance_gap: jax.Array
    norm2: jax.Array
    in_br: jax.Array


# --------------------------------------------------------------------------------------
# one seed


def seed_keys(seed_id) -> tuple[jax.Array, jax.Array]:
    """(init key, step key) of a seed: fold_in(root, seed id), split in two."""
    root = jax.random.key(ROOT_KEY, impl="threefry2x32")
    init_key, step_key = jax.random.split(jax.random.fold_in(root, seed_id))
    return init_key, step_key


def sgd_step(params: model.Params, opt_state, key: jax.Array, t, data: Data, dyn: Dynamics):
    """One step at global step ``t``: sample ``batch`` observed entries with replacement (noise
    fold_in(key, t)), structured minibatch gradient, optimizer update. Returns (params, opt_state)."""
    if dyn.batch is None:
        grads = model.full_grads(params, data.rows, data.cols, data.values, dyn.scale)
        return update(params, opt_state, grads, t, dyn)
    return entries_step(params, opt_state, draw(key, t, dyn.batch, data.n_observed), t, data, dyn)


def draw(key: jax.Array, t, batch: int, n_observed: int) -> jax.Array:
    """The ``batch`` observed entries (B,) int32 that step ``t`` samples with replacement: randint with the
    noise fold_in(key, t)."""
    return jax.random.randint(jax.random.fold_in(key, t), (batch,), 0, n_observed, dtype=jnp.int32)


def draws(key: jax.Array, t0, steps: int, batch: int, n_observed: int) -> jax.Array:
    """``draw`` for the steps t0 .. t0 + steps - 1 in one call, (steps, B): the same entries, for the steps that
    take a whole period's draws at once (``jumpsim.lanes``, the fused kernel)."""
    ts = jnp.asarray(t0, jnp.int32) + jnp.arange(steps, dtype=jnp.int32)
    return jax.vmap(lambda t: draw(key, t, batch, n_observed))(ts)


def _epoch_permutation(key: jax.Array, epoch, batch: int, n_observed: int) -> jax.Array:
    """The order (K,) int32 of epoch ``epoch`` (draws eK .. eK + K - 1): a permutation keyed by fold_in(key, s),
    s the step whose draws begin it."""
    begins = (jnp.asarray(epoch, jnp.int32) * n_observed) // batch
    return jax.random.permutation(jax.random.fold_in(key, begins), n_observed).astype(jnp.int32)


def draws_without_replacement(order: jax.Array, key: jax.Array, t0, steps: int, batch: int, n_observed: int):
    """Sampling without replacement: the draws of steps t0 .. t0 + steps - 1, (steps, B) int32, and the epoch order
    after them. Draw i = tB + b of a step is entry order_e[i mod K] of epoch e = i div K, each epoch a fresh order
    (``_epoch_permutation``; B <= K). ``order`` (K,) is the order of the epoch under way at t0 (ignored when one
    begins there): it rides in the state, so a cloned splitting particle finishes its parent's epoch, and a run
    resumes mid-epoch; a brute-force seed's orders depend only on its key and the step (``epoch_order``)."""
    first = jnp.asarray(t0, jnp.int32) * batch
    i = first + jnp.arange(steps * batch, dtype=jnp.int32)
    e0 = first // n_observed
    n_epochs = (steps * batch - 1) // n_observed + 2  # the epochs a period's draws can touch (static)
    fresh = jax.vmap(lambda j: _epoch_permutation(key, e0 + j, batch, n_observed))(jnp.arange(n_epochs))
    orders = fresh.at[0].set(jnp.where(first % n_observed == 0, fresh[0], order))
    j = i // n_observed - e0
    return orders[j, i % n_observed].reshape(steps, batch), orders[j[-1]]


def epoch_order(key: jax.Array, t, batch: int, n_observed: int) -> jax.Array:
    """The epoch order (K,) in force after step ``t - 1`` of a brute-force seed with step key ``key``: what a run
    resumed at step ``t`` starts from."""
    return _epoch_permutation(key, (jnp.asarray(t, jnp.int32) * batch - 1) // n_observed, batch, n_observed)


def period_entries(order: jax.Array, key: jax.Array, t0, dyn: Dynamics, n_observed: int):
    """The entries the K = ``dyn.every`` steps from ``t0`` draw, ((K, B) int32, epoch order after them), as
    ``dyn.sampling`` says."""
    if dyn.sampling == "without_replacement":
        return draws_without_replacement(order, key, t0, dyn.every, dyn.batch, n_observed)
    return draws(key, t0, dyn.every, dyn.batch, n_observed), order


def entries_step(params: model.Params, opt_state, idx: jax.Array, t, data: Data, dyn: Dynamics):
    """The step at ``t`` on the observed entries ``idx`` (B,) (indices into ``data.rows``): what ``sgd_step``
    does once it has drawn them; also how far one step on a chosen entry would move a state."""
    grads, _ = model.minibatch_grads(params, data.rows[idx], data.cols[idx], data.values[idx], dyn.scale)
    return update(params, opt_state, grads, t, dyn)


def each_entry(s: SeedState, t, data: Data, dyn: Dynamics, fn: Callable[[SeedState], jax.Array]) -> jax.Array:
    """``fn`` of the state that one step at ``t`` on each observed entry would make, (K, ...) in one batched call:
    how far a single draw can move a state (the collapse hazard, the lookahead proposal, the path bound)."""

    def after(e):
        params, opt_state = entries_step(s.params, s.opt_state, e[None], t, data, dyn)
        return fn(s._replace(params=params, opt_state=opt_state))

    return jax.vmap(after)(jnp.arange(data.n_observed, dtype=jnp.int32))


def update(params: model.Params, opt_state, grads: model.Params, t, dyn: Dynamics):
    """Optimizer update of the data gradient ``grads`` at step ``t`` (the ridge is added by the optimizer)."""
    dtype = params[0].dtype
    tx = dyn.optimizer.transform(jnp.asarray(dyn.lr(t), dtype), jnp.asarray(dyn.ridge(t), dtype))
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def advance(s: SeedState, t0, data: Data, dyn: Dynamics) -> SeedState:
    """K = ``dyn.every`` SGD steps from step ``t0`` (a fixed-length scan, no branches)."""

    steps = t0 + jnp.arange(dyn.every, dtype=jnp.int32)
    if dyn.sampling == "without_replacement" and dyn.batch is not None:
        idx, order = draws_without_replacement(s.order, s.key, t0, dyn.every, dyn.batch, data.n_observed)

        def given(carry, x):
            return entries_step(*carry, x[1], x[0], data, dyn), None

        (params, opt_state), _ = jax.lax.scan(given, (s.params, s.opt_state), (steps, idx))
        return s._replace(params=params, opt_state=opt_state, order=order)

    def body(carry, t):
        return sgd_step(*carry, s.key, t, data, dyn), None

    (params, opt_state), _ = jax.lax.scan(body, (s.params, s.opt_state), steps)
    return s._replace(params=params, opt_state=opt_state)


def observe(
    params: model.Params, data: Data, detection: Detection, with_sv: bool = False
) -> tuple[jax.Array, Observation]:
    """Finite flag and observation of one seed's parameters. The rank is an inertia count of the
    float64 Gram matrix (``spectrum.numerical_rank``); singular values only ``with_sv``."""
    a = model.end_to_end(params)
    finite = jnp.all(jnp.isfinite(a)) & jnp.all(jnp.array([jnp.all(jnp.isfinite(w)) for w in params]))
    a = jnp.where(finite, a, 0.0)
    err = (a - data.target) ** 2
    n_obs = data.n_observed
    n_test = data.mask.size - n_obs
    loss = jnp.sum(jnp.where(data.mask, err, 0.0)) / n_obs
    test = jnp.sum(jnp.where(data.mask, 0.0, err)) / n_test if n_test else jnp.asarray(jnp.nan, a.dtype)
    sv = spectrum.singular_values(a) if with_sv else jnp.zeros((0,), a.dtype)
    rank = spectrum.numerical_rank(a, detection.threshold, detection.relative)
    if with_sv or detection.absorbing:
        gap, norm2 = balance(params)
    else:
        gap = norm2 = jnp.asarray(jnp.nan, a.dtype)
    return finite, Observation(rank, loss, test, sv, gap, norm2, jnp.array(False))


def balance(params: model.Params) -> tuple[jax.Array, jax.Array]:
    """(relative balancedness gap, |theta|^2): max_l |W_{l+1}^T W_{l+1} - W_l W_l^T|_F / max_l |W_l|_F^2
    (0 at every critical point of the regularized loss: there the layers are balanced) and sum_l |W_l|_F^2."""
    sq = jnp.stack([jnp.sum(w * w) for w in params])
    gaps = [jnp.linalg.norm(model.mm(w2.T, w2) - model.mm(w1, w1.T)) for w1, w2 in zip(params[:-1], params[1:])]
    gap = (
        jnp.max(jnp.stack(gaps)) / jnp.maximum(jnp.max(sq), jnp.finfo(sq.dtype).tiny)
        if gaps
        else jnp.zeros((), sq.dtype)
    )
    return gap, jnp.sum(sq)


def in_absorbing(rank, gap, norm2, detection: Detection) -> jax.Array:
    """Membership in B_r: confirmed rank <= r, balanced to ``balance_tol``, |theta|^2 <= ``norm_bound``."""
    return (rank <= detection.absorbing_rank) & (gap <= detection.balance_tol) & (norm2 <= detection.norm_bound)


def init(params: model.Params, key: jax.Array, data: Data, dyn: Dynamics, detection: Detection, t0=0) -> SeedState:
    """State of one seed at step ``t0`` from its parameters and step key; the observed rank counts as confirmed."""
    _, obs = observe(params, data, detection)
    det = detector.init(obs.rank, min(data.target.shape), detection.max_events, t0)
    false, minus_one = jnp.array(False), jnp.array(-1, jnp.int32)
    inside = in_absorbing(det.rank, obs.balance_gap, obs.norm2, detection) & detection.absorbing
    zero = jnp.zeros((), jnp.int32)
    br = Absorbing(inside, inside.astype(jnp.int32), zero, zero, jnp.where(inside, jnp.int32(t0), minus_one))
    opt = dyn.optimizer.init(params)
    order = None
    if dyn.sampling == "without_replacement" and dyn.batch is not None:
        order = epoch_order(key, t0, dyn.batch, data.n_observed) if t0 else jnp.zeros(data.n_observed, jnp.int32)
    return SeedState(params, opt, key, det, false, minus_one, params, obs.loss, obs.test_error, br, order)


def check(s: SeedState, t, data: Data, detection: Detection, trace: bool = False) -> tuple[SeedState, Observation]:
    """Observe at step ``t`` and feed the detector. A seed whose weights are no longer finite is
    marked diverged at this check and frozen (zero weights, detector and last values kept); its
    observations are rank -1 and NaN from then on."""
    finite, obs = observe(s.params, data, detection, with_sv=trace)
    newly = ~finite & ~s.diverged
    diverged = s.diverged | ~finite
    det = detector.update(s.det, obs.rank, t, detection.persist)

    def keep(old, new):
        return jax.tree.map(lambda o, x: jnp.where(diverged, o, x), old, new)

    b = s.absorbing
    inside = in_absorbing(det.rank, obs.balance_gap, obs.norm2, detection) & detection.absorbing
    entered, left = inside & ~b.inside, ~inside & b.inside
    br = Absorbing(
        inside,
        b.entries + entered,
        b.exits + left,
        b.checks_inside + inside,
        jnp.where(entered & (b.first_entry < 0), jnp.asarray(t, jnp.int32), b.first_entry),
    )

    s = SeedState(
        params=jax.tree.map(lambda w: jnp.where(diverged, jnp.zeros_like(w), w), s.params),
        opt_state=s.opt_state,
        key=s.key,
        det=keep(s.det, det),
        diverged=diverged,
        stop_step=jnp.where(newly, t, s.stop_step),
        last_params=keep(s.last_params, s.params),
        loss=keep(s.loss, obs.loss),
        test_error=keep(s.test_error, obs.test_error),
        absorbing=keep(s.absorbing, br),
        order=s.order,
    )
    nan = jnp.asarray(jnp.nan, obs.loss.dtype)
    obs = Observation(
        rank=jnp.where(diverged, -1, obs.rank),
        loss=jnp.where(diverged, nan, obs.loss),
        test_error=jnp.where(diverged, nan, obs.test_error),
        sv=jnp.where(diverged, nan, obs.sv),
        balance_gap=jnp.where(diverged, nan, obs.balance_gap),
        norm2=jnp.where(diverged, nan, obs.norm2),
        in_br=~diverged & inside,
    )
    return s, obs


def period(s: SeedState, t0, data: Data, dyn: Dynamics, detection: Detection, trace: bool = False):
    """One check period: K steps from ``t0``, then the check at ``t0 + K``. Returns (state, observation)."""
    return check(advance(s, t0, data, dyn), t0 + dyn.every, data, detection, trace)
