"""A valid lower bound on P(target within T) from restricted draws: the other half of the bracket that
``jumpsim rare`` gives where no two-sided estimate exists (the level curve gives the upper half).

Every SGD step draws its B entries uniformly from the K observed ones. Let the first m steps draw only from a
set S_t of s entries (any rule that picks s entries from the state): SGD does that with probability exactly
(s/K)^(m B), and given it, its steps are uniform draws from S_t. So P(target within T) >= (s/K)^(m B) h, with h
the probability that the restricted prefix followed by plain SGD reaches the target within T; a one-sided
Clopper-Pearson lower end for h (from n such trajectories with k hits) makes the product a valid lower bound;
probing J prefix lengths, each at level 1 - alpha / J (Bonferroni), keeps the best of them valid.

S_t is the s entries whose single step raises the score most (all K tried in one batched call; B draws per
step, uniform among them). s = 1 is one greedy path of draws ((1/K) a draw); a larger s pays far less per step
(log(K/s)) for a slower drift (what that buys on the DLN: benchmarks/results/small-eta-brackets-*.md). The prefix
runs whole check periods, so the detector sees it as SGD would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from scipy import stats as sps

from . import dynamics

# steps between the prefix's choices of its entries (each choice tries all K): a single greedy entry, drawn over and
# over, is chosen anew every GREEDY_EVERY steps; a set of s > 1 entries once per check period (a tenth of the
# lookahead's cost at detect.every = 100)
GREEDY_EVERY = 10
# plain SGD after a prefix runs at most horizon / FOLLOW (a shorter window can only lower h: the bound stays valid;
# past the saddle, the target follows within a few check periods)
FOLLOW = 8


class PathBound(NamedTuple):
    lower: float  # the lower bound on P(target within T) (0 if no probe hit)
    draws: int  # m0: the prefix's steps at the bound (B draws each)
    hits: int  # k of `trials` trajectories (prefix, then plain SGD) reached the target
    trials: int
    log10_prefix: float  # log10 (s/K)^(m0 B)
    conditional: float  # the Clopper-Pearson lower end of h at m0 (the bound is 10^log10_prefix x this)
    steps: int  # SGD steps the prefixes and the probes took (each entry a lookahead evaluates counts as one)
    keep: int = 1  # s: the entries each prefix step draws among

    @property
    def log10_lower(self) -> float:
        """log10 of the bound (finite where ``lower`` underflows to 0; -inf where no probe hit)."""
        return self.log10_prefix + math.log10(self.conditional) if self.conditional > 0 else -math.inf


def keep_count(share: float, k: int) -> int:
    """s from ``rare.bracket_keep`` (a share of the K observed entries): at least 1, at most K."""
    return min(k, max(1, round(share * k)))


def _restricted_period(progress: Callable, data, dyn, det, every: int, keep: int):
    """One check period of the prefix for one trajectory ``(state, key, t)``: every `every` steps the `keep` entries
    whose single step raises ``progress`` most (all K tried in one batched call); each step draws its B entries
    uniformly among them (noise fold_in(key, step)). keep = 1: the greedy entry, B times, no noise used."""

    def period(x: dynamics.SeedState, key, t) -> dynamics.SeedState:
        def block(x, s0):
            gain = jnp.nan_to_num(dynamics.each_entry(x, s0, data, dyn, progress), nan=-jnp.inf)
            top = jnp.argsort(-gain)[:keep]  # (stable: keep = 1 is the argmax)

            def step(x, s):
                j = jax.random.randint(jax.random.fold_in(key, s), (dyn.batch,), 0, keep)
                params, opt = dynamics.entries_step(x.params, x.opt_state, top[j], s, data, dyn)
                return x._replace(params=params, opt_state=opt), None

            return jax.lax.scan(step, x, s0 + jnp.arange(every, dtype=jnp.int32))[0], None

        starts = t * dyn.every + every * jnp.arange(dyn.every // every, dtype=jnp.int32)
        x, _ = jax.lax.scan(block, x, starts)
        return dynamics.check(x, (t + 1) * dyn.every, data, det)[0]

    return period


def _continue(advance: Callable, score: Callable):
    """``h(xs, keys, t0, horizon) -> reached`` (n,): plain periods t0..horizon - 1 from the states xs (n,), period t
    of trajectory i with key fold_in(keys[i], t); one program for every t0 (a loop with a runtime trip count)."""

    def run(xs, keys, t0, horizon):
        def body(t, c):
            xs, hit = c
            xs = jax.vmap(lambda s, kk: advance(s, jax.random.fold_in(kk, t), t))(xs, keys)
            return xs, hit | (jax.vmap(score)(xs) >= 1)

        return jax.lax.fori_loop(t0, horizon, body, (xs, jnp.zeros(keys.shape, bool)))[1]

    return jax.jit(run)


def path_lower_bound(
    start: dynamics.SeedState,
    progress: Callable,
    advance: Callable,
    score: Callable,
    data: dynamics.Data,
    dyn: dynamics.Dynamics,
    det: dynamics.Detection,
    *,
    horizon: int,
    keep: int = 1,
    probes: int = 32,
    trials: int = 256,
    seed: int = 0,
    level: float = 0.95,
) -> PathBound:
    """The best of `probes` lower bounds (keep/K)^(m B) x CP-lower(k of `trials`) at prefixes of m = j * horizon /
    probes periods (j = 1..probes) drawing among the `keep` best entries, each probe at level 1 - (1 - level) /
    probes (probes whose prefix alone costs more than the best bound so far are not run); `horizon` in periods.
    Each trial runs its own prefix (its own draws among those entries), then plain SGD for up to horizon / FOLLOW
    periods (within the horizon); a trial that reaches the target during its prefix counts. ``advance``/``score``
    are the plain particle's (``rare.Particles``)."""
    k, b, every = data.n_observed, dyn.batch, dyn.every
    look = math.gcd(GREEDY_EVERY, every) if keep == 1 else every
    root = jax.random.key(seed + 424_242, impl="threefry2x32")
    ids = jnp.arange(trials)
    prefix_root = jax.random.key(seed + 525_252, impl="threefry2x32")
    prefix_keys = jax.vmap(lambda i: jax.random.fold_in(prefix_root, i))(ids)
    prefix = jax.jit(jax.vmap(_restricted_period(progress, data, dyn, det, look, keep), in_axes=(0, 0, None)))
    scores = jax.jit(jax.vmap(score))
    h = _continue(advance, score)
    alpha = (1 - level) / probes
    follow = max(1, horizon // FOLLOW)
    marks = sorted({max(1, round(j * horizon / probes)) for j in range(1, probes + 1)})
    best = PathBound(0.0, 0, 0, trials, 0.0, 0.0, 0, keep)
    lanes = 1 if keep == 1 else trials  # keep = 1: the prefix is one path, shared by every trial
    xs = jax.tree.map(lambda a: jnp.broadcast_to(a, (lanes,) + a.shape), start)
    reached = jnp.zeros(lanes, bool)
    m, steps = 0, 0

    def log10_prefix(periods: int) -> float:  # log10 (s/K)^(m B) of a prefix of `periods` check periods
        return -periods * every * b * math.log10(k / keep)

    with dynamics.float64_scope():
        for mark in marks:
            if log10_prefix(mark) < best.log10_lower:
                break  # the prefix alone would cost more than the best bound: no later probe can beat it
            while m < mark:
                xs = prefix(xs, prefix_keys[:lanes], jnp.int32(m))
                reached, m = reached | (scores(xs) >= 1), m + 1
                steps += lanes * (every + every // look * k)
            if bool((xs.diverged & ~reached).all()):
                break
            keys = jax.vmap(lambda i, m=m: jax.random.fold_in(jax.random.fold_in(root, m), i))(ids)
            end = min(horizon, m + follow)
            ys = jax.tree.map(lambda a: jnp.broadcast_to(a, (trials,) + a.shape[1:]), xs)
            hits = int(jnp.sum(jnp.broadcast_to(reached, (trials,)) | h(ys, keys, jnp.int32(m), jnp.int32(end))))
            steps += trials * (end - m) * every
            low = float(sps.beta.ppf(alpha, hits, trials - hits + 1)) if hits else 0.0
            lower = 10.0 ** (log10_prefix(m) + math.log10(low)) if low > 0 else 0.0
            here = PathBound(lower, m * every, hits, trials, log10_prefix(m), low, 0, keep)
            if best.draws == 0 or here.log10_lower > best.log10_lower:
                best = here
    return best._replace(steps=steps)
