"""Host side of a run: chunks, segments and shards of seeds."""

import jax
import numpy as np

from jumpsim import kernel, runner


def _assert_same_state(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_segmentation_of_horizon_does_not_change_results(tiny, monkeypatch):
    cfg = tiny()
    k = kernel.build(cfg)
    a = runner.run_chunk(k, cfg, np.arange(6))
    monkeypatch.setattr(runner, "segments", lambda n, target=20: [1] * n)
    b = runner.run_chunk(k, cfg, np.arange(6))
    _assert_same_state(a.state, b.state)


def test_chunk_ranges_cover_every_seed_once_per_shard_split(tiny):
    cfg = tiny("run.seeds=23", "run.chunk=5", "run.seed_offset=7")
    whole = runner.chunk_ranges(cfg)
    assert whole[0] == (7, 12) and whole[-1] == (27, 30)
    for n_shards in (1, 2, 3, 7):
        parts = [r for i in range(n_shards) for r in runner.chunk_ranges(cfg, i, n_shards)]
        assert parts == whole  # contiguous blocks of chunks, in order, nothing twice


def test_segments_cut_the_horizon_with_at_most_two_lengths():
    for n in (1, 7, 20, 21, 400, 401):
        seg = runner.segments(n)
        assert sum(seg) == n and len(set(seg)) <= 2 and len(seg) <= 21
