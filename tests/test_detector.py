"""The jump detector on hand-made rank sequences."""

import jax
import jax.numpy as jnp
import numpy as np

from jumpsim import detector


def feed(ranks, persist, every=10, capacity=8, max_rank=6):
    """Run the detector over ranks observed at steps 0, every, 2*every, ..."""
    d = detector.init(ranks[0], max_rank, capacity)
    update = jax.jit(detector.update, static_argnames="persist")
    for c, r in enumerate(ranks[1:], start=1):
        d = update(d, jnp.int32(r), jnp.int32(c * every), persist=persist)
    return jax.device_get(d)


def events(d):
    k = min(int(d.n_events), d.ev_step.shape[0])
    return [(int(s), int(b), int(a)) for s, b, a in zip(d.ev_step[:k], d.ev_before[:k], d.ev_after[:k])]


def test_flicker_shorter_than_persist_is_ignored():
    d = feed([4, 4, 3, 3, 4, 4, 3, 4, 4], persist=3)
    assert events(d) == [] and int(d.rank) == 4 and int(d.n_down) == 0
    assert list(d.passage) == [-1, -1, -1, -1, 0, 0, 0]


def test_down_then_up_events_dated_at_first_check_of_new_rank():
    d = feed([4, 4, 3, 3, 3, 3, 2, 2, 2, 3, 3, 3], persist=3)
    assert events(d) == [(20, 4, 3), (60, 3, 2), (90, 2, 3)]
    assert (int(d.n_down), int(d.n_up), int(d.min_rank), int(d.rank)) == (2, 1, 2, 3)
    # first passage: rank <= 3 first at step 20, <= 2 at 60, never <= 1 (censored)
    assert list(d.passage[:5]) == [-1, -1, 60, 20, 0]


def test_persist_one_counts_every_change():
    d = feed([2, 1, 2, 1], persist=1)
    assert events(d) == [(10, 2, 1), (20, 1, 2), (30, 2, 1)]


def test_multi_level_jump_through_unconfirmed_rank():
    """4 -> 3 (one check, not confirmed) -> 2 (persistent): one event 4 -> 2; both levels are
    first reached at the first check of rank 2."""
    d = feed([4, 3, 2, 2, 2], persist=3)
    assert events(d) == [(20, 4, 2)]
    assert int(d.passage[3]) == 20 and int(d.passage[2]) == 20


def test_event_buffer_overflow_keeps_counting():
    ranks = [3] + [2, 3] * 6
    d = feed(ranks, persist=1, capacity=4)
    assert int(d.n_events) == 12
    assert len(events(d)) == 4 and events(d)[:2] == [(10, 3, 2), (20, 2, 3)]


def test_vmapped_detector_matches_per_seed():
    seqs = np.array([[4, 3, 3, 3, 2, 2, 2], [4, 4, 4, 4, 4, 4, 4], [4, 5, 5, 5, 5, 4, 4]])
    d = jax.vmap(lambda r: detector.init(r, 6, 8))(jnp.asarray(seqs[:, 0]))
    for c in range(1, seqs.shape[1]):
        d = jax.vmap(detector.update, in_axes=(0, 0, None, None))(d, jnp.asarray(seqs[:, c]), jnp.int32(c * 10), 2)
    for i, seq in enumerate(seqs):
        single = feed(list(seq), persist=2)
        for a, b in zip(jax.tree.leaves(jax.tree.map(lambda x: x[i], d)), jax.tree.leaves(single)):
            np.testing.assert_array_equal(a, b)
