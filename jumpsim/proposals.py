"""Proposals for the drawn entries of SGD: importance sampling of the only randomness a trajectory has.

Each SGD step draws B of the K observed entries uniformly with replacement; a proposal q(e | x) draws them
instead, and the particle carries its log likelihood ratio, sum over draws of log((1/K) / q(e)), so that
E_q[ratio x 1{target}] is the probability under SGD for any q that gives every entry positive probability.
Every q here is a defensive mixture (1 - eps) q_tilt + eps / K, which caps a draw's ratio at 1/eps, and its
tilt is a function of the state at the last refresh (every ``every`` steps), so the ratio stays exact:

* ``static``: q_tilt(e) = softmax(theta)_e, theta fitted by the cross-entropy method (``fit_static``);
* ``lookahead``: q_tilt(e | x) = softmax(beta * d_e), d_e the exact one-step change of the score on entry e (all
  K computed in one batched call), only where some d_e reaches ``gate`` (elsewhere exactly uniform: ratio 1),
  beta the largest with KL(q_tilt || uniform) <= ``kl`` nats: each tilted step costs about that much log weight,
  so the weights stay short when the tilt is confined to the steps where the score can jump.

``draw`` is the piece every proposal shares (and the tests' exact chains use); ``tilted_period`` is the SGD
period of ``dynamics`` with the draws of a proposal.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import dynamics
from .errors import ConfigError

F32 = jnp.float32


class Weighted(NamedTuple):
    """A particle under a proposal: the seed's state, its log likelihood ratio and how often each entry was drawn
    (what the cross-entropy method fits)."""

    seed: dynamics.SeedState
    log_w: jax.Array  # () float32
    counts: jax.Array  # (K,) int32


def log_mixture(logits: jax.Array, eps: float) -> jax.Array:
    """log q of the defensive mixture (1 - eps) softmax(logits) + eps / K, (K,)."""
    k = logits.shape[-1]
    return (
        jnp.logaddexp(jnp.log1p(-eps) + jax.nn.log_softmax(logits), math.log(eps / k))
        if eps > 0
        else (jax.nn.log_softmax(logits))
    )


def draw(key: jax.Array, log_q: jax.Array, batch: int) -> tuple[jax.Array, jax.Array]:
    """`batch` draws with replacement from q = exp(log_q) (K,): (indices (B,) int32, their log likelihood ratio
    against uniform draws, sum_b log((1/K) / q(e_b)))."""
    idx = jax.random.categorical(key, log_q, shape=(batch,)).astype(jnp.int32)
    return idx, jnp.sum(-math.log(log_q.shape[-1]) - log_q[idx])


def kl_beta(d: jax.Array, kl: float, iters: int = 40) -> jax.Array:
    """The largest beta in [0, beta_max] with KL(softmax(beta d) || uniform) <= kl (bisection on log beta; the KL
    grows with beta). d: (K,) float."""
    k = d.shape[-1]
    spread = jnp.maximum(jnp.max(d) - jnp.min(d), 1e-30)
    lo, hi = jnp.log(1e-3 / spread), jnp.log(100.0 / spread)  # softmax ~uniform at lo, saturated at hi

    def kl_of(lb):
        q = jax.nn.softmax(jnp.exp(lb) * d)
        return jnp.sum(q * (jnp.log(jnp.maximum(q, 1e-38)) + math.log(k)))

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        ok = kl_of(mid) <= kl
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return jnp.where(kl_of(hi) <= kl, jnp.exp(hi), jnp.exp(lo))


def static_logits(theta: np.ndarray) -> Callable:
    """``logits(x, t) -> (theta, on)`` of the static tilt (always on)."""
    th = jnp.asarray(theta, F32)

    def logits(x: dynamics.SeedState, t):
        return th, jnp.array(True)

    return logits


def lookahead_logits(progress: Callable, data: dynamics.Data, dyn: dynamics.Dynamics, gate: float, kl: float):
    """``logits(x, t) -> (beta * d, on)``: d_e = progress after the step on entry e at step t - progress now, for
    every observed entry e (one batched call), on = max d >= gate (off: zero logits, the uniform draw)."""

    def logits(x: dynamics.SeedState, t):
        d = (dynamics.each_entry(x, t, data, dyn, progress) - progress(x)).astype(F32)
        d = jnp.where(jnp.isfinite(d), d, 0.0)
        on = jnp.max(d) >= gate
        return jnp.where(on, kl_beta(d, kl) * d, 0.0), on

    return logits


def tilted_period(
    w: Weighted, key, t, data: dynamics.Data, dyn: dynamics.Dynamics, det: dynamics.Detection, logits, every, eps
):
    """One check period (K = dyn.every SGD steps from step t K, then the check) with every step's B entries drawn
    from the proposal: ``logits(x, step)`` refreshed every `every` steps (every | K); the draws of step s use
    fold_in(key, s), as ``dynamics.sgd_step``'s. Steps whose proposal is off are uniform draws with ratio 1."""
    batch, period = dyn.batch, dyn.every
    t0 = t * period

    def block(carry, tb):
        x, lw, counts = carry
        lg, on = logits(x, tb)
        log_q = log_mixture(lg, eps)

        def step(c, s):
            params, opt, lw, counts = c
            idx, dlw = draw(jax.random.fold_in(key, s), log_q, batch)
            params, opt = dynamics.entries_step(params, opt, idx, s, data, dyn)
            return (params, opt, lw + jnp.where(on, dlw, 0.0), counts.at[idx].add(1)), None

        (params, opt, lw, counts), _ = jax.lax.scan(
            step, (x.params, x.opt_state, lw, counts), tb + jnp.arange(every, dtype=jnp.int32)
        )
        return (x._replace(params=params, opt_state=opt), lw, counts), None

    starts = t0 + every * jnp.arange(period // every, dtype=jnp.int32)
    (x, lw, counts), _ = jax.lax.scan(block, (w.seed, w.log_w, w.counts), starts)
    x, _ = dynamics.check(x, t0 + period, data, det)
    return Weighted(x, lw, counts)


def fit_static(
    init,
    advance,
    score,
    k_obs: int,
    *,
    periods: int,
    particles: int,
    rounds: int,
    seed: int,
    elite: float = 0.1,
    smoothing: float = 0.7,
    eps: float = 0.1,
):
    """theta of the static tilt by the cross-entropy method (Rubinstein; de Boer, Kroese, Mannor, Rubinstein
    2005): `rounds` rounds of `particles` trajectories of `periods` periods under the current proposal; the
    `elite` fraction that rose highest (max score) refits q(e) as their likelihood-ratio-weighted share of draws
    of entry e, smoothed (q <- smoothing q_new + (1 - smoothing) q). ``advance(state, key, t, theta)`` runs a
    period under theta. Returns (theta (K,), periods simulated)."""
    q = np.full(k_obs, 1.0 / k_obs)
    root = jax.random.key(seed + 31_337, impl="threefry2x32")

    @jax.jit
    def run(theta, r):
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(root, r), i))(jnp.arange(particles))
        x0 = jax.vmap(init)(keys)

        def body(c, t):
            xs, top = c
            xs = jax.vmap(lambda x, kk: advance(x, jax.random.fold_in(kk, t), t, theta))(xs, keys)
            s = jax.vmap(score)(xs)
            return (xs, jnp.fmax(top, s)), None

        (xs, top), _ = jax.lax.scan(
            body, (x0, jnp.full(particles, -jnp.inf, F32)), jnp.arange(periods, dtype=jnp.int32)
        )
        return top, xs.log_w, xs.counts

    for r in range(rounds):
        with dynamics.float64_scope():
            top, lw, counts = (np.asarray(a) for a in run(jnp.asarray(np.log(q), F32), jnp.int32(r)))
        n_el = max(2, int(math.ceil(elite * particles)))
        idx = np.argsort(-np.nan_to_num(top, nan=-np.inf), kind="stable")[:n_el]
        w = np.exp(lw[idx].astype(np.float64) - np.max(lw[idx]))
        c = (w[:, None] * counts[idx]).sum(0)
        new = c / c.sum() if c.sum() > 0 else q
        q = smoothing * new + (1 - smoothing) * q
        q = np.maximum(q, 1e-6 / k_obs)
        q = q / q.sum()
    return np.log(q).astype(np.float32), rounds * particles * periods


def weighted_particles(plain, cfg, su, progress: Callable):
    """The particles ``plain`` (``rare.Particles`` of plain SGD, ``progress`` their score's xi) with their entries
    drawn from the proposal of ``rare.proposal``, each carrying its log likelihood ratio (``Weighted``); the rate
    form's flux phase keeps plain SGD. ``su``: the experiment's ``setup.Setup``."""
    rc, data, dyn, det = cfg.rare, su.data, su.dynamics, su.detection
    if dyn.batch is None:
        raise ConfigError("rare.proposal", 'full-batch gradient descent draws no entries: use "uniform"')
    k = data.n_observed

    def init(key):
        return Weighted(plain.init(key), jnp.float32(0.0), jnp.zeros(k, jnp.int32))

    def period(w, key, t, logits, every):
        return tilted_period(w, key, t, data, dyn, det, logits, every, rc.mixture)

    setup_steps = 0
    if rc.proposal == "static":
        theta, fit_periods = fit_static(
            init,
            lambda w, key, t, th: period(w, key, t, static_logits(th), dyn.every),
            lambda w: plain.score(w.seed),
            k,
            periods=cfg.train.steps // dyn.every,
            particles=rc.particles,
            rounds=rc.cem_rounds,
            seed=rc.seed,
            eps=rc.mixture,
        )
        logits, every, cost, setup_steps = static_logits(theta), dyn.every, dyn.every, fit_periods * dyn.every
    else:  # lookahead: every refresh evaluates the step on each of the k entries
        logits = lookahead_logits(progress, data, dyn, rc.gate, rc.kl)
        every, cost = rc.lookahead_every, dyn.every + dyn.every // rc.lookahead_every * k

    def flux_advance(w, key, t):
        return w._replace(seed=plain.advance(w.seed, key, t))

    return plain._replace(
        init=init,
        advance=lambda w, key, t: period(w, key, t, logits, every),
        score=lambda w: plain.score(w.seed),
        state_bytes=plain.state_bytes + 4 + 4 * k,
        weight=lambda w: w.log_w,
        flux_advance=flux_advance,
        period_cost=cost,
        setup_steps=setup_steps,
        proposal=rc.proposal,
    )
