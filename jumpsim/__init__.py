"""jumpsim: Monte Carlo jump statistics of SGD on L2-regularized deep linear networks.

Public API::

    cfg = jumpsim.load_config("exp.toml", ["train.lr=0.1"])   # or load_config() for the default
    frames = jumpsim.simulate(cfg)       # {"runs", "events", "passages", "traces"}: DataFrames
    jumpsim.run([cfg], "results/exp")    # the same tables as a Parquet dataset on disk
    data = jumpsim.read_dataset("results/exp")
"""

__version__ = "0.1.0"

import jax as _jax

# float64 must be available for `run.dtype = "float64"` and for exact float64 references.
# Every array jumpsim creates carries an explicit dtype, so float32 runs stay float32 and a
# seed's float32 trajectory is the same whether or not something else needed float64.
_jax.config.update("jax_enable_x64", True)

from .config import Config, ConfigError, Schedule, config_id
from .config import load as load_configs
from .config import load_one as load_config
from .problem import Problem
from .runner import run, simulate
from .tables import read_dataset, read_table

__all__ = [
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
