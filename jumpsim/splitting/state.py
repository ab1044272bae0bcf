"""Saving and loading an ``EngineState`` (``np.savez`` of its leaves), so a killed estimate resumes bit for bit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .keys import IMPL
from .results import EngineState


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


def saved_progress(path) -> dict:
    """How far a saved engine state got, without the particle's structure: its replicas' kill steps (max and min
    over those still running), how many are done, and the periods simulated."""
    fields = EngineState._fields
    with np.load(path) as f:
        n = len(f.files)
        leaf = lambda name: f[f"arr_{n - (len(fields) - fields.index(name))}"]  # the fields after ``origin``
        it, done, steps = leaf("iteration"), leaf("done"), leaf("steps")
    return {
        "iterations": int(it.max()) if len(it) else 0,
        "replicas": len(it),
        "done": int(done.sum()),
        "periods": int(steps.sum()),
    }
