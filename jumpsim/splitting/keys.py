"""The splitting engine's key schedule (typed threefry keys; a particle's path depends only on its key and its
start, never on the batch it runs in).

particle key = fold_in(fold_in(fold_in(key(seed), replica), iteration), slot), iteration 0 = the initial
population; the key of period t = fold_in(particle key, t); ``init`` gets fold_in(particle key, INIT_TAG).
Survivor draws of a kill step are keyed by (seed, replica, iteration, SURVIVOR_TAG); flux trajectory j of
replica r by (seed, FLUX_REPLICA, r, j). Replica ids are global, so replicas run in parts pool exactly.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

IMPL = "threefry2x32"
INIT_TAG = 2**31 - 1  # init(fold_in(particle key, INIT_TAG)): never a period index
SURVIVOR_TAG = 2**31 - 2  # survivor draws of (replica, iteration): never a slot index
FLUX_REPLICA = 2**31 - 3  # flux trajectory j of replica r: key (seed, FLUX_REPLICA, global replica id r, j)


def wrap(kd):
    """Key data (..., 2) uint32 -> typed key."""
    return jax.random.wrap_key_data(kd, impl=IMPL)


def key_data(seed, replica, iteration, slot):
    """Key data of particle (replica, iteration, slot) of an estimate with this seed."""
    k = jax.random.key(seed, impl=IMPL)
    for d in (replica, iteration, slot):
        k = jax.random.fold_in(k, d)
    return jax.random.key_data(k)


@partial(jax.jit, static_argnames=("init", "n"))
def init_population(init, seed, replica, n):
    """Initial particles of replicas `replica` (R,): states (R, n, ...) and key data (R, n, 2)."""
    kd = jax.vmap(lambda r: jax.vmap(lambda j: key_data(seed, r, 0, j))(jnp.arange(n)))(replica)
    states = jax.vmap(jax.vmap(lambda k: init(jax.random.fold_in(wrap(k), INIT_TAG))))(kd)
    return states, kd


@partial(jax.jit, static_argnames=("n",))
def survivor_draws(seed, replica, iteration, n_surv, n):
    """(R, n) uniform draws in [0, n_surv[r]) keyed by (seed, replica, iteration)."""

    def one(r, it, m):
        k = wrap(key_data(seed, r, it, SURVIVOR_TAG))
        return jax.random.randint(k, (n,), 0, jnp.maximum(m, 1), dtype=jnp.int32)

    return jax.vmap(one)(replica, iteration, n_surv)
