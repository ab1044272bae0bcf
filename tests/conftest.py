"""Shared fixtures: tiny configs that compile and run in seconds on 2 CPU cores.

The whole suite runs on two forced host devices (as the CLI does on a 2-core machine), so the
sharded path is what every test exercises; single-device runs use ``devices=[one]``.
"""

import atexit
import os
import shutil
import tempfile

from jumpsim import devices

devices.use_cpu_devices(2)  # before JAX starts its backend; an explicit count in XLA_FLAGS wins

import jax
import pytest

# The tests compare against float64 references built with jnp; jumpsim itself needs no global
# x64 (it scopes float64 to its own calls: tests/test_dynamics.py checks that in a fresh process).
jax.config.update("jax_enable_x64", True)

# Most tests compile the same small programs again (every `jumpsim run`, every kernel.build makes new jitted
# closures, so JAX's in-memory caches never hit): a persistent compilation cache in a temporary folder loads an
# identical program's executable instead of compiling it again. Only byte-identical programs (same HLO, options,
# XLA flags) hit, so every test still runs the program its config compiles to. The process that creates the folder
# (pytest itself, or xdist's controller) removes it at exit; its xdist workers find it through the environment and
# share it (an entry read while the other worker still writes it fails to decompress: JAX warns and compiles).
# Child processes that tests start do not use it (jumpsim reads no such variable; JAX's own is not set).
if "JUMPSIM_TESTS_XLA_CACHE" not in os.environ:
    os.environ["JUMPSIM_TESTS_XLA_CACHE"] = tempfile.mkdtemp(prefix="jumpsim-tests-xla-cache-")
    atexit.register(shutil.rmtree, os.environ["JUMPSIM_TESTS_XLA_CACHE"], ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", os.environ["JUMPSIM_TESTS_XLA_CACHE"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)

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


@pytest.fixture(scope="session")
def tiny():
    """``tiny(*overrides) -> Config``: the small experiment with overrides."""
    return tiny_config


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """The small experiment as ``--set`` values (for the command line)."""
    return list(TINY)
