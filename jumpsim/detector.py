"""Jump detector: persistent rank changes, event buffer and first passages, for ONE seed.

The detector sees the numerical rank at every check. A change of rank becomes an event only
once the new rank has been seen at ``persist`` consecutive checks; the event is dated at the
first of those checks. Everything lives in fixed-size arrays so it can ride in a ``scan``
carry: an event buffer of ``capacity`` slots (``n_events`` keeps counting past it) and, for
every level r in 0..max_rank, the first step at which the persistent rank was <= r (-1 if
never).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class DetectorState(NamedTuple):
    rank: jax.Array  # () int32, persistent (confirmed) rank
    cand: jax.Array  # () int32, rank seen at the last check
    count: jax.Array  # () int32, consecutive checks at cand
    cand_step: jax.Array  # () int32, step of the first of those checks
    initial_rank: jax.Array  # () int32
    min_rank: jax.Array  # () int32
    n_down: jax.Array  # () int32
    n_up: jax.Array  # () int32
    n_events: jax.Array  # () int32, may exceed capacity (overflow)
    ev_step: jax.Array  # (capacity,) int32
    ev_before: jax.Array  # (capacity,) int32
    ev_after: jax.Array  # (capacity,) int32
    passage: jax.Array  # (max_rank + 1,) int32, first step with rank <= level, -1 if never


def init(rank0: jax.Array, max_rank: int, capacity: int, step0=0) -> DetectorState:
    """Start from the rank observed at ``step0``; it counts as confirmed."""
    rank0 = jnp.asarray(rank0, jnp.int32)
    i32 = lambda v: jnp.asarray(v, jnp.int32)
    levels = jnp.arange(max_rank + 1, dtype=jnp.int32)
    return DetectorState(
        rank=rank0,
        cand=rank0,
        count=i32(0),
        cand_step=i32(step0),
        initial_rank=rank0,
        min_rank=rank0,
        n_down=i32(0),
        n_up=i32(0),
        n_events=i32(0),
        ev_step=jnp.full((capacity,), -1, jnp.int32),
        ev_before=jnp.full((capacity,), -1, jnp.int32),
        ev_after=jnp.full((capacity,), -1, jnp.int32),
        passage=jnp.where(levels >= rank0, i32(step0), i32(-1)),
    )


def update(d: DetectorState, observed: jax.Array, step: jax.Array, persist: int) -> DetectorState:
    """Feed the rank observed at ``step``; branch-free (no cond) so it vmaps cheaply."""
    observed = jnp.asarray(observed, jnp.int32)
    same = observed == d.cand
    count = jnp.where(same, d.count + 1, 1)
    cand_step = jnp.where(same, d.cand_step, jnp.asarray(step, jnp.int32))
    fire = (observed != d.rank) & (count >= persist)
    new_rank = jnp.where(fire, observed, d.rank)

    capacity = d.ev_step.shape[0]
    slot = jnp.minimum(d.n_events, capacity - 1)
    write = fire & (d.n_events < capacity)
    put = lambda buf, v: buf.at[slot].set(jnp.where(write, v, buf[slot]))
    levels = jnp.arange(d.passage.shape[0], dtype=jnp.int32)
    return DetectorState(
        rank=new_rank,
        cand=observed,
        count=count,
        cand_step=cand_step,
        initial_rank=d.initial_rank,
        min_rank=jnp.minimum(d.min_rank, new_rank),
        n_down=d.n_down + (fire & (observed < d.rank)),
        n_up=d.n_up + (fire & (observed > d.rank)),
        n_events=d.n_events + fire,
        ev_step=put(d.ev_step, cand_step),
        ev_before=put(d.ev_before, d.rank),
        ev_after=put(d.ev_after, observed),
        passage=jnp.where(fire & (d.passage < 0) & (levels >= observed), cand_step, d.passage),
    )
