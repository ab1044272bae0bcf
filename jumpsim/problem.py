"""Matrix-completion problems: a target A* (n, m) and an observed set Omega."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from .config import Config, ConfigError


class Problem(NamedTuple):
    """A target and its observed entries (numpy, float64; cast to the run dtype on device).

    target: (n, m); mask: (n, m) bool; rows, cols: (k,) int32 indices of the k observed
    entries in row-major order; values: (k,) target[rows, cols].
    """

    target: np.ndarray
    mask: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.target.shape

    @property
    def n_observed(self) -> int:
        return int(self.rows.shape[0])


def from_arrays(target: np.ndarray, mask: np.ndarray) -> Problem:
    target = np.asarray(target, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    rows, cols = np.nonzero(mask)
    return Problem(target, mask, rows.astype(np.int32), cols.astype(np.int32), target[rows, cols])


def generate(n: int, m: int, rank: int, observed: float, seed: int) -> Problem:
    """A* = U V^T with Gaussian factors, scaled to unit RMS entries; Omega is a uniformly
    random set of round(observed * n * m) entries (at least one)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, m))
    a /= np.sqrt(np.mean(a**2))
    k = max(1, int(round(observed * n * m)))
    flat = np.zeros(n * m, dtype=bool)
    flat[rng.choice(n * m, size=k, replace=False)] = True
    return from_arrays(a, flat.reshape(n, m))


def load_npz(path: str | Path) -> Problem:
    """Arrays ``target`` (n, m) float and ``mask`` (n, m) bool; errors name problem.file."""
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
        raise ConfigError(key, f"{path}: target and mask must be 2-D of the same shape (got {target.shape}, {mask.shape})")
    if not np.issubdtype(target.dtype, np.number) or not np.all(np.isfinite(target)):
        raise ConfigError(key, f"{path}: target must be finite numbers")
    if mask.dtype != bool:
        raise ConfigError(key, f"{path}: mask must be boolean (got {mask.dtype})")
    if not mask.any():
        raise ConfigError(key, f"{path}: mask observes no entry")
    return from_arrays(target, mask)


def make(cfg: Config) -> Problem:
    p = cfg.problem
    if p.file is not None:
        return load_npz(cfg.resolve(p.file))
    return generate(p.n, p.m, p.rank, p.observed, p.seed)
