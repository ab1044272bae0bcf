"""Experiment configuration: TOML -> validated frozen dataclasses.

Everything a run needs is checked here, before anything compiles, so that a bad value fails in one line that
names the key (``ConfigError``). ``_schema`` holds the records and ``config_id``, ``_sections`` one parser per
section, ``_toml`` files, overrides, ``extends`` and sweeps.
"""

from ..errors import ConfigError
from ._schema import (
    EXECUTION_ONLY,
    HELP,
    ID_FORMAT,
    LATER_KEYS,
    OPTIMIZER_KEYS,
    PROPOSAL_KEYS,
    SECTIONS,
    Config,
    DetectConfig,
    ModelConfig,
    ProblemConfig,
    RareConfig,
    RunConfig,
    Schedule,
    TrainConfig,
    config_id,
    rare_settings,
    reference,
    to_dict,
)
from ._sections import PROPOSALS, RARE_METHODS, from_dict, problem_shape
from ._toml import apply_overrides, default_toml, expand, load, load_one, parse_override, parse_toml, read_toml
