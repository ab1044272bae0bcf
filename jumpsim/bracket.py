"""A valid lower bound on P(target within T) from one explicit path: the other half of the bracket that
``jumpsim rare`` gives where no two-sided estimate exists (the level curve gives the upper half).

Every SGD step draws its B entries uniformly from the K observed ones, so any given sequence of draws in the
first m steps has probability exactly (1/K)^(m B). If h(x_m) is the probability that plain SGD reaches the
target within T - m from the state those draws lead to, then P(target within T) >= (1/K)^(m B) h(x_m), and a
one-sided Clopper-Pearson lower end for h (from n plain trajectories with k hits) makes the product a valid
lower bound; probing J prefixes, each at level 1 - alpha / J (Bonferroni), keeps the best of them valid.

The prefix is built greedily: every GREEDY_EVERY steps the entry whose single step raises the score most (all K
tried in one batched call) is drawn for the next GREEDY_EVERY steps, B times over for B > 1; the prefix runs whole
check periods, so the detector sees it as SGD would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from scipy import stats as sps

from . import dynamics

GREEDY_EVERY = 10  # steps between the greedy path's choices of its entry (each choice tries all K)


class PathBound(NamedTuple):
    lower: float  # the lower bound on P(target within T) (0 if no probe hit)
    draws: int  # m0: the prefix's steps at the bound (B draws each)
    hits: int  # k of `trials` plain continuations from the prefix's end reached the target
    trials: int
    log10_prefix: float  # log10 (1/K)^(m0 B)
    conditional: float  # the Clopper-Pearson lower end of h at m0 (the bound is 10^log10_prefix x this)
    steps: int  # SGD steps the search and the probes took (each entry a lookahead evaluates counts as one)

    @property
    def log10_lower(self) -> float:
        """log10 of the bound (finite where ``lower`` underflows to 0; -inf where no probe hit)."""
        return self.log10_prefix + math.log10(self.conditional) if self.conditional > 0 else -math.inf


def _greedy_period(progress: Callable, data, dyn, det, every: int):
    """One check period of greedy draws: every `every` steps the entry whose single step raises ``progress`` most
    (all K tried in one batched call), drawn for those `every` steps (B times per step)."""

    def period(x: dynamics.SeedState, t) -> dynamics.SeedState:
        def block(x, s0):
            gain = jnp.nan_to_num(dynamics.each_entry(x, s0, data, dyn, progress), nan=-jnp.inf)
            idx = jnp.full((dyn.batch,), jnp.argmax(gain), jnp.int32)

            def step(x, s):
                params, opt = dynamics.entries_step(x.params, x.opt_state, idx, s, data, dyn)
                return x._replace(params=params, opt_state=opt), None

            return jax.lax.scan(step, x, s0 + jnp.arange(every, dtype=jnp.int32))[0], None

        starts = t * dyn.every + every * jnp.arange(dyn.every // every, dtype=jnp.int32)
        x, _ = jax.lax.scan(block, x, starts)
        return dynamics.check(x, (t + 1) * dyn.every, data, det)[0]

    return jax.jit(period)


def _probe(advance: Callable, score: Callable, n: int, seed: int):
    """``h(x, t0, periods) -> hits``: n plain trajectories from state x at period t0 for `periods` periods (each its
    own key), how many reach score >= 1."""
    root = jax.random.key(seed + 424_242, impl="threefry2x32")

    def run(x, t0, periods: int):
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(root, t0), i))(jnp.arange(n))
        xs = jax.tree.map(lambda a: jnp.broadcast_to(a, (n,) + a.shape), x)

        def body(c, t):
            xs, hit = c
            xs = jax.vmap(lambda s, kk: advance(s, jax.random.fold_in(kk, t), t))(xs, keys)
            return (xs, hit | (jax.vmap(score)(xs) >= 1)), None

        hit0 = jnp.broadcast_to(score(x) >= 1, (n,))  # (the path itself may already be there)
        (_, hit), _ = jax.lax.scan(body, (xs, hit0), t0 + jnp.arange(periods, dtype=jnp.int32))
        return jnp.sum(hit)

    return jax.jit(run, static_argnames="periods")


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
    probes: int = 8,
    trials: int = 256,
    seed: int = 0,
    level: float = 0.95,
) -> PathBound:
    """The best of `probes` lower bounds (1/K)^(m B) x CP-lower(k of `trials`) at prefixes of m = j * horizon /
    probes periods (j = 1..probes) of greedy draws from `start`, each at level 1 - (1 - level) / probes; `horizon`
    in periods. ``advance``/``score`` are the plain particle's (``rare.Particles``)."""
    k, b, every = data.n_observed, dyn.batch, dyn.every
    look = math.gcd(GREEDY_EVERY, every)
    greedy, h = _greedy_period(progress, data, dyn, det, look), _probe(advance, score, trials, seed)
    alpha = (1 - level) / probes
    marks = sorted({max(1, round(j * horizon / probes)) for j in range(1, probes + 1)})
    best = PathBound(0.0, 0, 0, trials, 0.0, 0.0, 0)
    x, m, steps = start, 0, 0
    with dynamics.float64_scope():
        for mark in marks:
            while m < mark:
                x, m, steps = greedy(x, jnp.int32(m)), m + 1, steps + every + every // look * k
            if bool(x.diverged):
                break
            left = horizon - m
            hits = int(h(x, jnp.int32(m), left)) if left > 0 else int(score(x) >= 1) * trials
            steps += trials * left * every
            low = float(sps.beta.ppf(alpha, hits, trials - hits + 1)) if hits else 0.0
            log10_prefix = -m * every * b * math.log10(k)
            lower = 10.0 ** (log10_prefix + math.log10(low)) if low > 0 else 0.0
            here = PathBound(lower, m * every, hits, trials, log10_prefix, low, 0)
            if best.draws == 0 or here.log10_lower > best.log10_lower:
                best = here
    return best._replace(steps=steps)
