"""Shared fixtures: tiny configs that compile and run in seconds on 2 CPU cores."""

import jumpsim  # noqa: F401  (enables float64 before any test builds arrays)
import pytest

from jumpsim import config as config_lib

TINY = [
    "problem.n=6",
    "problem.m=5",
    "problem.rank=2",
    "problem.observed=0.7",
    "model.width=6",
    "train.steps=400",
    "train.lr=0.1",
    "train.ridge=0.01",
    "detect.every=20",
    "detect.threshold=0.05",
    "detect.persist=2",
    "run.seeds=12",
    "run.chunk=12",
    "run.trace_seeds=2",
]


def tiny_config(*overrides: str):
    """A small experiment: 6x5 target, depth 3, 12 seeds x 400 steps."""
    return config_lib.load_one(None, TINY + list(overrides))


@pytest.fixture
def tiny():
    return tiny_config
