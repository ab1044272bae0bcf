"""jumpsim: Monte Carlo jump statistics of SGD on L2-regularized deep linear networks.

Public API::

    cfg = jumpsim.load_config("exp.toml", ["train.lr=0.1"])   # or load_config() for the default
    frames = jumpsim.simulate(cfg)       # {"runs", "events", "passages", "traces"}: DataFrames
    jumpsim.run([cfg], "results/exp")    # the same tables as a Parquet dataset on disk
    data = jumpsim.read_dataset("results/exp")

float64 (the rank count's Gram matrix, ``run.dtype = "float64"``) is enabled only inside jumpsim's
own calls (``dynamics.float64_scope``): importing jumpsim leaves the program's ``jax_enable_x64`` as it was.
"""

from .config import Config, Schedule, config_id
from .config import load as load_configs
from .config import load_one as load_config
from .dataset import read_dataset, read_table
from .errors import ConfigError
from .problem import Problem
from .runner import run, simulate
from .version import __version__

__all__ = [
    "__version__",
    "Config",
    "ConfigError",
    "Problem",
    "Schedule",
    "config_id",
    "load_config",
    "load_configs",
    "read_dataset",
    "read_table",
    "run",
    "simulate",
]
