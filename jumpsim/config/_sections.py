"""Validation: a plain dict (as parsed from TOML, without ``sweep``) -> ``Config``.

One parser per section, each taking the section's table and returning its frozen record or raising
``ConfigError`` with a one-line message that names the key and what is allowed. Cross-section rules take the
records they need as arguments (``train.steps`` must be a multiple of ``detect.every``). Files named by the
config are opened here too, so a bad one fails before anything compiles.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

from .. import files
from ..errors import ConfigError
from ._schema import (
    OPTIMIZER_KEYS,
    SECTIONS,
    Config,
    DetectConfig,
    ModelConfig,
    ProblemConfig,
    RareConfig,
    RunConfig,
    Schedule,
    TrainConfig,
)

# rare.method: the estimators of ``jumpsim.methods`` (tests check that the two lists agree)
RARE_METHODS = ("tams", "rate", "is")
PROPOSALS = ("uniform", "static", "lookahead")
SAMPLINGS = ("with_replacement", "without_replacement")

# --------------------------------------------------------------------------------------
# value checks (each returns the clean value or raises ConfigError naming the key)


def _int(key, v, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(key, f"must be an integer (got {v!r})")
    if lo is not None and v < lo:
        raise ConfigError(key, f"must be an integer >= {lo} (got {v})")
    if hi is not None and v > hi:
        raise ConfigError(key, f"must be an integer <= {hi} (got {v})")
    return v


def _float(key, v, positive=False, nonneg=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(key, f"must be a number (got {v!r})")
    v = float(v)
    if not math.isfinite(v):
        raise ConfigError(key, f"must be a finite number (got {v})")
    if positive and v <= 0:
        raise ConfigError(key, f"must be a positive number (got {v:g})")
    if nonneg and v < 0:
        raise ConfigError(key, f"must be a non-negative number (got {v:g})")
    return v


def _choice(key, v, allowed):
    if not isinstance(v, str) or v not in allowed:
        raise ConfigError(key, f"must be one of {', '.join(repr(a) for a in allowed)} (got {v!r})")
    return v


def _bool(key, v):
    if not isinstance(v, bool):
        raise ConfigError(key, f"must be true or false (got {v!r})")
    return v


def _str(key, v):
    if not isinstance(v, str) or not v:
        raise ConfigError(key, f"must be a non-empty string (got {v!r})")
    return v


def _unit(key, v):
    """A number in [0, 1) (momentum and moment decays)."""
    v = _float(key, v, nonneg=True)
    if v >= 1:
        raise ConfigError(key, f"must be in [0, 1) (got {v:g})")
    return v


def _float_list(key, v, **kw):
    if not isinstance(v, list) or not v:
        raise ConfigError(key, f"must be a non-empty list of numbers (got {v!r})")
    return tuple(_float(f"{key}[{i}]", x, **kw) for i, x in enumerate(v))


def _need(key, table, name):
    if name not in table:
        raise ConfigError(f"{key}.{name}", "is required")
    return table[name]


def no_unknown(prefix, table, allowed):
    for k in table:
        if k not in allowed:
            raise ConfigError(f"{prefix}.{k}" if prefix else k, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _schedule(key: str, v: Any, nonneg: bool) -> Schedule:
    """A number or a schedule table; values must be > 0 (lr) or >= 0 (ridge)."""
    kw = {"nonneg": True} if nonneg else {"positive": True}
    if not isinstance(v, dict):
        return Schedule(values=(_float(key, v, **kw),))
    kinds = ("constant", "piecewise", "periodic")
    kind = _choice(f"{key}.kind", v.get("kind"), kinds)
    allowed = {
        "constant": {"kind", "value"},
        "piecewise": {"kind", "values", "boundaries"},
        "periodic": {"kind", "low", "high", "period", "shape"},
    }[kind]
    no_unknown(key, v, allowed)
    if kind == "constant":
        return Schedule(values=(_float(f"{key}.value", _need(key, v, "value"), **kw),))
    if kind == "piecewise":
        values = _float_list(f"{key}.values", _need(key, v, "values"), **kw)
        b = _need(key, v, "boundaries")
        if not isinstance(b, list):
            raise ConfigError(f"{key}.boundaries", f"must be a list of step numbers (got {b!r})")
        bounds = tuple(_int(f"{key}.boundaries[{i}]", x, lo=1) for i, x in enumerate(b))
        if len(bounds) != len(values) - 1:
            raise ConfigError(
                f"{key}.boundaries", f"must have len(values) - 1 = {len(values) - 1} entries (got {len(bounds)})"
            )
        if any(b2 <= b1 for b1, b2 in zip(bounds, bounds[1:])):
            raise ConfigError(f"{key}.boundaries", f"must be strictly increasing (got {list(bounds)})")
        return Schedule(kind="piecewise", values=values, boundaries=bounds)
    low = _float(f"{key}.low", _need(key, v, "low"), **kw)
    high = _float(f"{key}.high", _need(key, v, "high"), **kw)
    if high < low:
        raise ConfigError(f"{key}.high", f"must be >= low = {low:g} (got {high:g})")
    period = _int(f"{key}.period", _need(key, v, "period"), lo=2)
    shape = _choice(f"{key}.shape", v.get("shape", "cosine"), ("cosine", "square"))
    return Schedule(kind="periodic", low=low, high=high, period=period, shape=shape)


def _interface(v) -> float | str | None:
    """rare.interface: None (the pilot default), a score, or "pNN" (the pilot's NN-th percentile, 50 < NN < 100)."""
    if v is None or not isinstance(v, str):
        return None if v is None else _float("rare.interface", v)
    m = re.fullmatch(r"p(\d+(?:\.\d+)?)", v)
    if not m or not 50 < float(m.group(1)) < 100:
        raise ConfigError(
            "rare.interface",
            f'must be a score below 1 or "pNN", the pilot\'s NN-th percentile, 50 < NN < 100 (got {v!r})',
        )
    return v


# --------------------------------------------------------------------------------------
# one parser per section: (its table) -> its record


def problem(s: dict) -> ProblemConfig:
    d = ProblemConfig()
    p = ProblemConfig(
        n=_int("problem.n", s.get("n", d.n), lo=1),
        m=_int("problem.m", s.get("m", d.m), lo=1),
        rank=_int("problem.rank", s.get("rank", d.rank), lo=1),
        observed=_float("problem.observed", s.get("observed", d.observed)),
        seed=_int("problem.seed", s.get("seed", d.seed), lo=0),
        file=_str("problem.file", s["file"]) if "file" in s else None,
    )
    if not 0 < p.observed <= 1:
        raise ConfigError("problem.observed", f"must be in (0, 1] (got {p.observed:g})")
    if p.file is None and p.rank > min(p.n, p.m):
        raise ConfigError("problem.rank", f"must be <= min(n, m) = {min(p.n, p.m)} (got {p.rank})")
    return p


def model(s: dict) -> ModelConfig:
    d = ModelConfig()
    mo = ModelConfig(
        depth=_int("model.depth", s.get("depth", d.depth), lo=2),
        width=_int("model.width", s.get("width", d.width), lo=1),
        init=_choice("model.init", s.get("init", d.init), ("gaussian", "file", "gd")),
        init_scale=_float("model.init_scale", s.get("init_scale", d.init_scale), positive=True),
        init_file=_str("model.init_file", s["init_file"]) if "init_file" in s else None,
        gd_steps=_int("model.gd_steps", s.get("gd_steps", d.gd_steps), lo=1),
        gd_lr=_float("model.gd_lr", s.get("gd_lr", d.gd_lr), positive=True),
        seed=_int("model.seed", s.get("seed", d.seed), lo=0),
        require_minimum=_bool("model.require_minimum", s.get("require_minimum", d.require_minimum)),
    )
    if mo.init == "file" and mo.init_file is None:
        raise ConfigError("model.init_file", 'is required when model.init = "file"')
    return mo


def _batch(b) -> int | None:
    if b == "full":
        return None
    if isinstance(b, int) and not isinstance(b, bool) and b >= 1:
        return b
    raise ConfigError("train.batch", f'must be an integer >= 1 or "full" (got {b!r})')


def train(s: dict) -> TrainConfig:
    d = TrainConfig()
    lr = _schedule("train.lr", s.get("lr", d.lr.values[0]), nonneg=False)
    ridge = _schedule("train.ridge", s.get("ridge", d.ridge.values[0]), nonneg=True)
    if 2 * lr.max * ridge.max >= 1:
        raise ConfigError("train.ridge", f"2 * lr * ridge must be < 1 (got 2 * {lr.max:g} * {ridge.max:g})")
    batch = _batch(s.get("batch", d.batch))
    loss = _choice("train.loss", s.get("loss", d.loss), ("mean", "sum"))
    steps = _int("train.steps", s.get("steps", d.steps), lo=1)
    opt = _choice("train.optimizer", s.get("optimizer", d.optimizer), tuple(OPTIMIZER_KEYS))
    for other, keys in OPTIMIZER_KEYS.items():
        for k in keys:
            if k in s and other != opt:
                raise ConfigError(f"train.{k}", f'only applies with train.optimizer = "{other}" (got "{opt}")')
    return TrainConfig(
        lr=lr,
        ridge=ridge,
        batch=batch,
        loss=loss,
        steps=steps,
        optimizer=opt,
        momentum=_unit("train.momentum", s.get("momentum", d.momentum)),
        nesterov=_bool("train.nesterov", s.get("nesterov", d.nesterov)),
        b1=_unit("train.b1", s.get("b1", d.b1)),
        b2=_unit("train.b2", s.get("b2", d.b2)),
        eps=_float("train.eps", s.get("eps", d.eps), positive=True),
        sampling=_choice("train.sampling", s.get("sampling", d.sampling), SAMPLINGS),
    )


def detect(s: dict, train: TrainConfig) -> DetectConfig:
    d = DetectConfig()
    every = _int("detect.every", s.get("every", d.every), lo=1)
    threshold = _float("detect.threshold", s.get("threshold", d.threshold), positive=True)
    relative = _bool("detect.relative", s.get("relative", d.relative))
    persist = _int("detect.persist", s.get("persist", d.persist), lo=1)
    max_events = _int("detect.max_events", s.get("max_events", d.max_events), lo=1)
    if relative and threshold >= 1:
        raise ConfigError("detect.threshold", f"must be < 1 when detect.relative = true (got {threshold:g})")
    if train.steps % every:
        raise ConfigError("train.steps", f"must be a multiple of detect.every = {every} (got {train.steps})")
    ar = s.get("absorbing_rank", d.absorbing_rank)
    nb = s.get("norm_bound", d.norm_bound)
    return DetectConfig(
        every=every,
        threshold=threshold,
        relative=relative,
        persist=persist,
        max_events=max_events,
        absorbing=_bool("detect.absorbing", s.get("absorbing", d.absorbing)),
        absorbing_rank=None if ar is None else _int("detect.absorbing_rank", ar, lo=0),
        balance_tol=_float("detect.balance_tol", s.get("balance_tol", d.balance_tol), positive=True),
        norm_bound=None if nb is None else _float("detect.norm_bound", nb, positive=True),
    )


def run(s: dict) -> RunConfig:
    d = RunConfig()
    r = RunConfig(
        seeds=_int("run.seeds", s.get("seeds", d.seeds), lo=1),
        seed_offset=_int("run.seed_offset", s.get("seed_offset", d.seed_offset), lo=0, hi=2**31 - 1),
        chunk=_int("run.chunk", s.get("chunk", d.chunk), lo=1),
        dtype=_choice("run.dtype", s.get("dtype", d.dtype), ("float32", "float64")),
        trace_seeds=_int("run.trace_seeds", s.get("trace_seeds", d.trace_seeds), lo=0),
        backend=_choice("run.backend", s.get("backend", d.backend), ("auto", "xla", "pallas", "pallas-interpret")),
    )
    if r.seed_offset + r.seeds > 2**31:
        raise ConfigError("run.seeds", f"seed_offset + seeds must be <= 2**31 (got {r.seed_offset + r.seeds})")
    return r


def rare(s: dict, detect: DetectConfig) -> RareConfig:
    d = RareConfig()

    def opt_float(k):
        return None if s.get(k, getattr(d, k)) is None else _float(f"rare.{k}", s[k])

    r = RareConfig(
        method=_choice("rare.method", s.get("method", d.method), RARE_METHODS),
        particles=_int("rare.particles", s.get("particles", d.particles), lo=2),
        replicas=_int("rare.replicas", s.get("replicas", d.replicas), lo=1),
        kill_fraction=_float("rare.kill_fraction", s.get("kill_fraction", d.kill_fraction), positive=True),
        score=_choice("rare.score", s.get("score", d.score), ("sigma", "layers")),
        direction=_choice("rare.direction", s.get("direction", d.direction), ("down", "up")),
        flux_seeds=_int("rare.flux_seeds", s.get("flux_seeds", d.flux_seeds), lo=1),
        flux_steps=_int("rare.flux_steps", s.get("flux_steps", d.flux_steps), lo=0),
        basin=opt_float("basin"),
        interface=_interface(s.get("interface", d.interface)),
        max_steps=_int("rare.max_steps", s.get("max_steps", d.max_steps), lo=1),
        max_iterations=_int("rare.max_iterations", s.get("max_iterations", d.max_iterations), lo=1),
        seed=_int("rare.seed", s.get("seed", d.seed), lo=0),
        proposal=_choice("rare.proposal", s.get("proposal", d.proposal), PROPOSALS),
        mixture=_float("rare.mixture", s.get("mixture", d.mixture), positive=True),
        gate=_float("rare.gate", s.get("gate", d.gate), positive=True),
        kl=_float("rare.kl", s.get("kl", d.kl), positive=True),
        lookahead_every=_int("rare.lookahead_every", s.get("lookahead_every", d.lookahead_every), lo=1),
        cem_rounds=_int("rare.cem_rounds", s.get("cem_rounds", d.cem_rounds), lo=1),
        bracket=_bool("rare.bracket", s.get("bracket", d.bracket)),
        bracket_trials=_int("rare.bracket_trials", s.get("bracket_trials", d.bracket_trials), lo=1),
        bracket_keep=_float("rare.bracket_keep", s.get("bracket_keep", d.bracket_keep), positive=True),
    )
    if r.bracket_keep > 1:
        raise ConfigError(
            "rare.bracket_keep", f"must be in (0, 1], a share of the observed entries (got {r.bracket_keep:g})"
        )
    if r.kill_fraction >= 1:
        raise ConfigError("rare.kill_fraction", f"must be in (0, 1) (got {r.kill_fraction:g})")
    if r.flux_steps % detect.every:
        raise ConfigError(
            "rare.flux_steps", f"must be a multiple of detect.every = {detect.every} (got {r.flux_steps})"
        )
    if r.basin is not None and isinstance(r.interface, float) and not r.basin < r.interface < 1:
        raise ConfigError("rare.interface", f"must satisfy basin < interface < 1 (got {r.basin:g}, {r.interface:g})")
    if r.mixture > 1:
        raise ConfigError("rare.mixture", f"must be in (0, 1] (got {r.mixture:g})")
    if r.proposal == "lookahead" and detect.every % r.lookahead_every:
        raise ConfigError(
            "rare.lookahead_every", f"must divide detect.every = {detect.every} (got {r.lookahead_every})"
        )
    if r.score == "layers" and r.direction == "up":
        raise ConfigError("rare.score", '"layers" scores rank decreases only; use "sigma" with direction = "up"')
    return r


# --------------------------------------------------------------------------------------
# dict -> Config


def _section(raw: dict, name: str) -> dict:
    s = raw.get(name, {})
    if not isinstance(s, dict):
        raise ConfigError(name, f"must be a table [{name}] (got {s!r})")
    no_unknown(name, s, {f.name for f in dataclasses.fields(SECTIONS[name])})
    return s


def from_dict(raw: dict, base_dir: str | Path = ".") -> Config:
    """Validate a plain dict (as parsed from TOML, without ``sweep``) into a ``Config``."""
    no_unknown("", raw, {"name", *SECTIONS})
    name = _str("name", raw.get("name", Config().name))
    # in the order the checks ran before the sections had parsers of their own (the first bad key is reported)
    prob = problem(_section(raw, "problem"))
    mod = model(_section(raw, "model"))
    tr = train(_section(raw, "train"))
    det = detect(_section(raw, "detect"), tr)
    cfg = Config(
        name=name,
        problem=prob,
        model=mod,
        train=tr,
        detect=det,
        run=run(_section(raw, "run")),
        rare=rare(_section(raw, "rare"), det),
        base_dir=str(base_dir),
    )
    _check_files(cfg)
    _check_sampling(cfg)
    return cfg


def _check_sampling(cfg: Config) -> None:
    """Refuse what has no likelihood for sampling without replacement (or no draws at all): the proposals and the
    path bound count a path's draws as independent uniform choices (probability (1/K)^B per step)."""
    if cfg.rare.bracket and cfg.train.batch is None:
        raise ConfigError("rare.bracket", "full-batch gradient descent draws no entries: set train.batch to an integer")
    if cfg.train.sampling != "without_replacement":
        return
    if cfg.train.batch is None:
        raise ConfigError("train.sampling", 'full-batch gradient descent draws no entries: use "with_replacement"')
    if cfg.rare.proposal != "uniform":
        raise ConfigError(
            "rare.proposal",
            'importance sampling has a likelihood ratio for train.sampling = "with_replacement" only (got '
            f'"{cfg.rare.proposal}" with "without_replacement"); use "uniform"',
        )
    if cfg.rare.bracket:
        raise ConfigError(
            "rare.bracket", 'the path bound counts draws with replacement: use train.sampling = "with_replacement"'
        )


def _check_files(cfg: Config) -> None:
    """Open the problem and weight files now, so that a bad one fails before compiling."""
    p = cfg.problem
    n, m = problem_shape(cfg)
    if p.file is not None and p.rank > min(n, m):
        raise ConfigError("problem.rank", f"must be <= min(n, m) = {min(n, m)} of problem.file (got {p.rank})")
    if cfg.model.init == "file":
        files.load_weights(cfg.resolve(cfg.model.init_file), files.layer_shapes(n, m, cfg.model.depth, cfg.model.width))


def problem_shape(cfg: Config) -> tuple[int, int]:
    if cfg.problem.file is None:
        return cfg.problem.n, cfg.problem.m
    return files.load_problem(cfg.resolve(cfg.problem.file))[0].shape
