"""Matrix-completion problems: a target A* (n, m) and an observed set Omega."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import files
from .config import Config


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


def make(cfg: Config) -> Problem:
    p = cfg.problem
    if p.file is not None:
        return from_arrays(*files.load_problem(cfg.resolve(p.file)))
    return generate(p.n, p.m, p.rank, p.observed, p.seed)
