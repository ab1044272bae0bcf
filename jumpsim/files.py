"""The .npz inputs of an experiment: a problem (``target``, ``mask``) and start weights (``W1`` ... ``WL``).

Pure numpy and checks, no JAX: the config loader opens these files to validate them before anything
compiles, and ``problem`` / ``dynamics`` read them to run. Every error is a ``ConfigError`` naming the key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ConfigError


def layer_shapes(n: int, m: int, depth: int, width: int) -> list[tuple[int, int]]:
    """(out, in) shape of each layer W_1 ... W_L of a DLN from R^m to R^n with hidden width ``width``."""
    dims = [m] + [width] * (depth - 1) + [n]
    return [(dims[l + 1], dims[l]) for l in range(depth)]


def load_problem(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(target (n, m) float64, mask (n, m) bool) from arrays ``target`` and ``mask``; errors name problem.file."""
    key = "problem.file"
    try:
        with np.load(path) as z:
            if "target" not in z or "mask" not in z:
                raise ConfigError(key, f"{path}: must hold arrays 'target' and 'mask' (has {sorted(z.files)})")
            target, mask = z["target"], z["mask"]
    except ConfigError:
        raise
    except Exception as e:  # missing file, not an npz, pickled objects, ...
        raise ConfigError(key, f"cannot read {path} as .npz ({e.__class__.__name__}: {e})") from None
    if target.ndim != 2 or mask.shape != target.shape:
        raise ConfigError(
            key, f"{path}: target and mask must be 2-D of the same shape (got {target.shape}, {mask.shape})"
        )
    if not np.issubdtype(target.dtype, np.number) or not np.all(np.isfinite(target)):
        raise ConfigError(key, f"{path}: target must be finite numbers")
    if mask.dtype != bool:
        raise ConfigError(key, f"{path}: mask must be boolean (got {mask.dtype})")
    if not mask.any():
        raise ConfigError(key, f"{path}: mask observes no entry")
    return np.asarray(target, np.float64), mask


def load_weights(path: str | Path, shapes: list[tuple[int, int]]) -> tuple[np.ndarray, ...]:
    """Arrays ``W1`` ... ``WL`` (W1 applied first) of the given shapes, float64; errors name model.init_file."""
    key = "model.init_file"
    try:
        with np.load(path) as z:
            names = [f"W{l + 1}" for l in range(len(shapes))]
            missing = [k for k in names if k not in z]
            if missing:
                raise ConfigError(
                    key, f"{path}: missing arrays {missing} for depth {len(shapes)} (has {sorted(z.files)})"
                )
            ws = tuple(np.asarray(z[k], dtype=np.float64) for k in names)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(key, f"cannot read {path} as .npz ({e.__class__.__name__}: {e})") from None
    for l, (w, shape) in enumerate(zip(ws, shapes)):
        if w.shape != shape:
            raise ConfigError(key, f"{path}: W{l + 1} must have shape {shape} (got {w.shape})")
        if not np.all(np.isfinite(w)):
            raise ConfigError(key, f"{path}: W{l + 1} has non-finite entries")
    return ws
