"""Experiment configuration: TOML -> validated frozen dataclasses.

Everything a run needs is checked here, before anything compiles, so that a bad value fails
in one line that names the key (``ConfigError``). ``config_id`` is a short hash of the
scientific content only (problem, model, training, detector, dtype): execution settings such
as seed counts, chunk size, shard or output directory never change it, so a resumed, sharded
or extended run lands under the same id.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from . import files
from .errors import ConfigError

ID_FORMAT = 1  # version of the normal form that config_id hashes (not a table schema version)


# --------------------------------------------------------------------------------------
# dataclasses


@dataclass(frozen=True)
class Schedule:
    """A step -> value schedule for ``train.lr`` or ``train.ridge``.

    kind "constant": ``values[0]`` at every step.
    kind "piecewise": ``values[i]`` from ``boundaries[i-1]`` (inclusive) to ``boundaries[i]``.
    kind "periodic": between ``low`` and ``high`` with period ``period`` steps; shape "cosine"
    starts at ``high`` and reaches ``low`` at half a period, "square" is ``high`` for the first
    half of each period and ``low`` for the second.
    """

    kind: str = "constant"
    values: tuple[float, ...] = (0.0,)
    boundaries: tuple[int, ...] = ()
    low: float = 0.0
    high: float = 0.0
    period: int = 0
    shape: str = "cosine"

    @property
    def max(self) -> float:
        return self.high if self.kind == "periodic" else max(self.values)

    @property
    def min(self) -> float:
        return self.low if self.kind == "periodic" else min(self.values)

    def value_at(self, step: int) -> float:
        """Plain-Python value at ``step`` (the jitted twin is ``schedules.make``)."""
        if self.kind == "constant":
            return self.values[0]
        if self.kind == "piecewise":
            i = sum(step >= b for b in self.boundaries)
            return self.values[i]
        phase = (step % self.period) / self.period
        if self.shape == "square":
            return self.high if phase < 0.5 else self.low
        return self.low + (self.high - self.low) * 0.5 * (1.0 + math.cos(2 * math.pi * phase))


@dataclass(frozen=True)
class ProblemConfig:
    n: int = 20
    m: int = 20
    rank: int = 2
    observed: float = 0.4
    seed: int = 0
    file: str | None = None


@dataclass(frozen=True)
class ModelConfig:
    depth: int = 3
    width: int = 20
    init: str = "gaussian"
    init_scale: float = 1.0
    init_file: str | None = None
    gd_steps: int = 20000
    gd_lr: float = 0.05
    seed: int = 0  # key of the single gaussian start that init = "gd" converges from


@dataclass(frozen=True)
class TrainConfig:
    lr: Schedule = Schedule(values=(0.05,))
    ridge: Schedule = Schedule(values=(1e-3,))
    batch: int | None = 1  # None = full batch (gradient descent)
    loss: str = "mean"
    steps: int = 200_000
    optimizer: str = "sgd"  # "sgd" | "momentum" | "adam"; the ridge is added to the gradient first (coupled)
    momentum: float = 0.9  # "momentum": heavy-ball coefficient
    nesterov: bool = False  # "momentum": Nesterov's variant
    b1: float = 0.9  # "adam": first-moment decay
    b2: float = 0.999  # "adam": second-moment decay
    eps: float = 1e-8  # "adam": denominator offset


@dataclass(frozen=True)
class DetectConfig:
    every: int = 100
    threshold: float = 1e-2
    relative: bool = False
    persist: int = 3
    max_events: int = 64
    # the paper's absorbing set B_r: rank <= r, relative balancedness gap <= balance_tol, |theta|^2 <= norm_bound;
    # visits are counted at every check only when absorbing = true (it costs ~6 % of a run at n = w = 20)
    absorbing: bool = False
    absorbing_rank: int | None = None  # r (None: problem.rank)
    balance_tol: float = 0.1  # max_l |W_{l+1}^T W_{l+1} - W_l W_l^T|_F / max_l |W_l|_F^2
    norm_bound: float | None = None  # bound on sum_l |W_l|_F^2 (None: no bound)


@dataclass(frozen=True)
class RunConfig:
    seeds: int = 1024
    seed_offset: int = 0
    chunk: int = 1024
    dtype: str = "float32"
    trace_seeds: int = 8
    backend: str = "xla"  # "xla" | "pallas" (fused K-step kernel, plain SGD on GPUs) | "pallas-interpret" (CPU tests)


@dataclass(frozen=True)
class RareConfig:
    """Rare-event splitting (``jumpsim rare``): how to estimate, not what; excluded from config_id, so a
    splitting estimate lands beside brute-force runs of the same experiment."""

    method: str = "tams"  # "tams": P(target within train.steps) | "rate": escape rate per step (flux x AMS)
    particles: int = 100  # N per replica
    replicas: int = 10  # R independent replicas (the interval comes from their spread)
    kill_fraction: float = 0.2  # alpha: kill at least ceil(alpha N) per iteration (all ties)
    score: str = "sigma"  # "sigma": log-scale progress of sigma_r(A) to tau | "layers": the same per layer, averaged
    direction: str = "down"  # "down": rank <= start - 1 | "up": rank >= start + 1 (sigma_{r+1} grows to tau)
    flux_seeds: int = 256  # rate: brute-force trajectories of the flux phase, shared out over the replicas
    flux_steps: int = 0  # rate: steps of each (0 = train.steps)
    basin: float | None = None  # rate: basin = score <= basin (default: median score of a pilot run)
    # rate: first interface (default: the pilot's 99th percentile, at least 0.2); "pNN": the pilot's NN-th percentile
    # without the floor (many crossings at small eta; what the level bound needs, but k may come out low)
    interface: float | str | None = None
    max_steps: int = 10_000_000  # rate: cap on one AMS particle's steps (reported if hit)
    max_iterations: int = 10_000
    seed: int = 0


@dataclass(frozen=True)
class Config:
    name: str = "default"
    problem: ProblemConfig = ProblemConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    detect: DetectConfig = DetectConfig()
    run: RunConfig = RunConfig()
    rare: RareConfig = RareConfig()
    base_dir: str = field(default=".", compare=False)  # where relative file paths resolve

    @property
    def config_id(self) -> str:
        return config_id(self)

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else Path(self.base_dir) / p


SECTIONS = {
    "problem": ProblemConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "detect": DetectConfig,
    "run": RunConfig,
    "rare": RareConfig,
}
# Settings that change how a run executes but not what it computes (excluded from config_id).
EXECUTION_ONLY = {
    "run": {"seeds", "seed_offset", "chunk", "trace_seeds"},
    "rare": {f.name for f in dataclasses.fields(RareConfig)},
}
# Keys added after the first datasets were written: they enter config_id only when set to a
# non-default value, so the ids of earlier experiments (and their datasets) stay valid.
LATER_KEYS = {
    "train": {"optimizer", "momentum", "nesterov", "b1", "b2", "eps"},
    "run": {"backend"},
    "detect": {"absorbing", "balance_tol"},  # absorbing_rank and norm_bound are None (absent) by default
}
OPTIMIZER_KEYS = {"sgd": (), "momentum": ("momentum", "nesterov"), "adam": ("b1", "b2", "eps")}

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
    _no_unknown(key, v, allowed)
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


def _need(key, table, name):
    if name not in table:
        raise ConfigError(f"{key}.{name}", "is required")
    return table[name]


def _no_unknown(prefix, table, allowed):
    for k in table:
        if k not in allowed:
            raise ConfigError(f"{prefix}.{k}" if prefix else k, f"unknown key (allowed: {', '.join(sorted(allowed))})")


# --------------------------------------------------------------------------------------
# dict -> Config


def _section(raw: dict, name: str) -> dict:
    s = raw.get(name, {})
    if not isinstance(s, dict):
        raise ConfigError(name, f"must be a table [{name}] (got {s!r})")
    _no_unknown(name, s, {f.name for f in dataclasses.fields(SECTIONS[name])})
    return s


def from_dict(raw: dict, base_dir: str | Path = ".") -> Config:
    """Validate a plain dict (as parsed from TOML, without ``sweep``) into a ``Config``."""
    _no_unknown("", raw, {"name", *SECTIONS})
    d = Config()
    name = _str("name", raw.get("name", d.name))

    s = _section(raw, "problem")
    p, dp = {}, d.problem
    p["n"] = _int("problem.n", s.get("n", dp.n), lo=1)
    p["m"] = _int("problem.m", s.get("m", dp.m), lo=1)
    p["rank"] = _int("problem.rank", s.get("rank", dp.rank), lo=1)
    p["observed"] = _float("problem.observed", s.get("observed", dp.observed))
    p["seed"] = _int("problem.seed", s.get("seed", dp.seed), lo=0)
    p["file"] = _str("problem.file", s["file"]) if "file" in s else None
    if not 0 < p["observed"] <= 1:
        raise ConfigError("problem.observed", f"must be in (0, 1] (got {p['observed']:g})")
    if p["file"] is None and p["rank"] > min(p["n"], p["m"]):
        raise ConfigError("problem.rank", f"must be <= min(n, m) = {min(p['n'], p['m'])} (got {p['rank']})")
    problem = ProblemConfig(**p)

    s = _section(raw, "model")
    mo, dm = {}, d.model
    mo["depth"] = _int("model.depth", s.get("depth", dm.depth), lo=2)
    mo["width"] = _int("model.width", s.get("width", dm.width), lo=1)
    mo["init"] = _choice("model.init", s.get("init", dm.init), ("gaussian", "file", "gd"))
    mo["init_scale"] = _float("model.init_scale", s.get("init_scale", dm.init_scale), positive=True)
    mo["init_file"] = _str("model.init_file", s["init_file"]) if "init_file" in s else None
    mo["gd_steps"] = _int("model.gd_steps", s.get("gd_steps", dm.gd_steps), lo=1)
    mo["gd_lr"] = _float("model.gd_lr", s.get("gd_lr", dm.gd_lr), positive=True)
    mo["seed"] = _int("model.seed", s.get("seed", dm.seed), lo=0)
    if mo["init"] == "file" and mo["init_file"] is None:
        raise ConfigError("model.init_file", 'is required when model.init = "file"')
    model = ModelConfig(**mo)

    s = _section(raw, "train")
    dt = d.train
    lr = _schedule("train.lr", s.get("lr", dt.lr.values[0]), nonneg=False)
    ridge = _schedule("train.ridge", s.get("ridge", dt.ridge.values[0]), nonneg=True)
    if 2 * lr.max * ridge.max >= 1:
        raise ConfigError("train.ridge", f"2 * lr * ridge must be < 1 (got 2 * {lr.max:g} * {ridge.max:g})")
    b = s.get("batch", dt.batch)
    if b == "full":
        batch = None
    elif isinstance(b, int) and not isinstance(b, bool) and b >= 1:
        batch = b
    else:
        raise ConfigError("train.batch", f'must be an integer >= 1 or "full" (got {b!r})')
    loss = _choice("train.loss", s.get("loss", dt.loss), ("mean", "sum"))
    steps = _int("train.steps", s.get("steps", dt.steps), lo=1)
    opt = _choice("train.optimizer", s.get("optimizer", dt.optimizer), tuple(OPTIMIZER_KEYS))
    for other, keys in OPTIMIZER_KEYS.items():
        for k in keys:
            if k in s and other != opt:
                raise ConfigError(f"train.{k}", f'only applies with train.optimizer = "{other}" (got "{opt}")')
    train = TrainConfig(
        lr=lr,
        ridge=ridge,
        batch=batch,
        loss=loss,
        steps=steps,
        optimizer=opt,
        momentum=_unit("train.momentum", s.get("momentum", dt.momentum)),
        nesterov=_bool("train.nesterov", s.get("nesterov", dt.nesterov)),
        b1=_unit("train.b1", s.get("b1", dt.b1)),
        b2=_unit("train.b2", s.get("b2", dt.b2)),
        eps=_float("train.eps", s.get("eps", dt.eps), positive=True),
    )

    s = _section(raw, "detect")
    dd = d.detect
    every = _int("detect.every", s.get("every", dd.every), lo=1)
    threshold = _float("detect.threshold", s.get("threshold", dd.threshold), positive=True)
    relative = _bool("detect.relative", s.get("relative", dd.relative))
    persist = _int("detect.persist", s.get("persist", dd.persist), lo=1)
    max_events = _int("detect.max_events", s.get("max_events", dd.max_events), lo=1)
    if relative and threshold >= 1:
        raise ConfigError("detect.threshold", f"must be < 1 when detect.relative = true (got {threshold:g})")
    if steps % every:
        raise ConfigError("train.steps", f"must be a multiple of detect.every = {every} (got {steps})")
    ar = s.get("absorbing_rank", dd.absorbing_rank)
    nb = s.get("norm_bound", dd.norm_bound)
    detect = DetectConfig(
        every=every,
        threshold=threshold,
        relative=relative,
        persist=persist,
        max_events=max_events,
        absorbing=_bool("detect.absorbing", s.get("absorbing", dd.absorbing)),
        absorbing_rank=None if ar is None else _int("detect.absorbing_rank", ar, lo=0),
        balance_tol=_float("detect.balance_tol", s.get("balance_tol", dd.balance_tol), positive=True),
        norm_bound=None if nb is None else _float("detect.norm_bound", nb, positive=True),
    )

    s = _section(raw, "run")
    dr = d.run
    run = RunConfig(
        seeds=_int("run.seeds", s.get("seeds", dr.seeds), lo=1),
        seed_offset=_int("run.seed_offset", s.get("seed_offset", dr.seed_offset), lo=0, hi=2**31 - 1),
        chunk=_int("run.chunk", s.get("chunk", dr.chunk), lo=1),
        dtype=_choice("run.dtype", s.get("dtype", dr.dtype), ("float32", "float64")),
        trace_seeds=_int("run.trace_seeds", s.get("trace_seeds", dr.trace_seeds), lo=0),
        backend=_choice("run.backend", s.get("backend", dr.backend), ("xla", "pallas", "pallas-interpret")),
    )
    if run.seed_offset + run.seeds > 2**31:
        raise ConfigError("run.seeds", f"seed_offset + seeds must be <= 2**31 (got {run.seed_offset + run.seeds})")

    s = _section(raw, "rare")
    da = d.rare

    def opt_float(k):
        return None if s.get(k, getattr(da, k)) is None else _float(f"rare.{k}", s[k])

    rare = RareConfig(
        method=_choice("rare.method", s.get("method", da.method), ("tams", "rate")),
        particles=_int("rare.particles", s.get("particles", da.particles), lo=2),
        replicas=_int("rare.replicas", s.get("replicas", da.replicas), lo=1),
        kill_fraction=_float("rare.kill_fraction", s.get("kill_fraction", da.kill_fraction), positive=True),
        score=_choice("rare.score", s.get("score", da.score), ("sigma", "layers")),
        direction=_choice("rare.direction", s.get("direction", da.direction), ("down", "up")),
        flux_seeds=_int("rare.flux_seeds", s.get("flux_seeds", da.flux_seeds), lo=1),
        flux_steps=_int("rare.flux_steps", s.get("flux_steps", da.flux_steps), lo=0),
        basin=opt_float("basin"),
        interface=_interface(s.get("interface", da.interface)),
        max_steps=_int("rare.max_steps", s.get("max_steps", da.max_steps), lo=1),
        max_iterations=_int("rare.max_iterations", s.get("max_iterations", da.max_iterations), lo=1),
        seed=_int("rare.seed", s.get("seed", da.seed), lo=0),
    )
    if rare.kill_fraction >= 1:
        raise ConfigError("rare.kill_fraction", f"must be in (0, 1) (got {rare.kill_fraction:g})")
    if rare.flux_steps % every:
        raise ConfigError("rare.flux_steps", f"must be a multiple of detect.every = {every} (got {rare.flux_steps})")
    if rare.basin is not None and isinstance(rare.interface, float) and not rare.basin < rare.interface < 1:
        raise ConfigError(
            "rare.interface", f"must satisfy basin < interface < 1 (got {rare.basin:g}, {rare.interface:g})"
        )
    if rare.score == "layers" and rare.direction == "up":
        raise ConfigError("rare.score", '"layers" scores rank decreases only; use "sigma" with direction = "up"')

    cfg = Config(
        name=name, problem=problem, model=model, train=train, detect=detect, run=run, rare=rare, base_dir=str(base_dir)
    )
    _check_files(cfg)
    return cfg


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


# --------------------------------------------------------------------------------------
# TOML files, overrides and sweeps


def default_toml() -> str:
    """The built-in default experiment (``jumpsim run`` with no CONFIG)."""
    return resources.files("jumpsim").joinpath("default.toml").read_text()


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (path, value); value parsed as TOML, else taken as a string."""
    if "=" not in text:
        raise ConfigError("--set", f"expected section.key=value (got {text!r})")
    path, value = text.split("=", 1)
    path = path.strip()
    parts = path.split(".")
    if not path or any(not p for p in parts):
        raise ConfigError("--set", f"expected section.key=value (got {text!r})")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return parts, parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``--set`` overrides; one on a swept key (or inside a swept schedule) replaces that sweep."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        sweep = raw.get("sweep")
        if isinstance(sweep, dict):
            sweep.pop(".".join(parts[:2]), None)
        node = raw
        for i, p in enumerate(parts[:-1]):
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):  # e.g. --set train.lr.kind=... over a number
                nxt = node[p] = {}
            node = nxt
        node[parts[-1]] = value
    return raw


def parse_toml(text: str, source: str = "config") -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("", f"{source}: not valid TOML ({e})") from None


def _merge(base: dict, top: dict) -> dict:
    """Deep merge of TOML tables: ``top`` wins; a table in ``top`` merges into the same table of ``base``."""
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_toml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Parse a TOML config; a top-level ``extends = "base.toml"`` (relative to the file) merges the file over
    that base (recursively), so experiments can share one problem definition. config_id sees only the result."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("", f"{p}: cannot read config file ({e.__class__.__name__}: {e})") from None
    raw = parse_toml(text, str(p))
    if "extends" not in raw:
        return raw
    base = raw.pop("extends")
    if not isinstance(base, str) or not base:
        raise ConfigError("extends", f"{p}: must be the path of a TOML file (got {base!r})")
    base_path = (p.parent / base).resolve()
    if base_path in _seen:
        raise ConfigError("extends", f"{p}: {base} extends itself (through {', '.join(map(str, _seen))})")
    return _merge(read_toml(base_path, (*_seen, p.resolve())), raw)


def expand(raw: dict, base_dir: str | Path = ".") -> list[Config]:
    """Validate a raw config; a ``[sweep]`` table of ``"section.key" = [values]`` expands to
    the cross product, one ``Config`` (one config_id) per combination, in row-major order."""
    raw = dict(raw)
    sweep = raw.pop("sweep", {})
    if not isinstance(sweep, dict):
        raise ConfigError("sweep", 'must be a table of "section.key" = [values]')
    keys = list(sweep)
    for k in keys:
        if not isinstance(sweep[k], list) or not sweep[k]:
            raise ConfigError(f"sweep.{k}", "must be a non-empty list of values")
        section, _, key = k.partition(".")
        if section not in SECTIONS or key not in {f.name for f in dataclasses.fields(SECTIONS[section])}:
            raise ConfigError(f"sweep.{k}", "must name a section.key of the config")
    configs = []
    for combo in itertools.product(*(sweep[k] for k in keys)):
        r = copy.deepcopy(raw)
        for k, v in zip(keys, combo):
            section, _, key = k.partition(".")
            r.setdefault(section, {})[key] = v
        configs.append(from_dict(r, base_dir))
    ids = [c.config_id for c in configs]
    if len(set(ids)) != len(ids):
        raise ConfigError("sweep", "two combinations give the same experiment")
    return configs


def load(path: str | Path | None = None, overrides: list[str] = ()) -> list[Config]:
    """Load a TOML file (or the built-in default when ``path`` is None), apply ``--set``
    overrides and expand sweeps. Raises ``ConfigError`` with a one-line message."""
    if path is None:
        raw, base = parse_toml(default_toml(), "default config"), Path.cwd()
    else:
        raw, base = read_toml(path), Path(path).resolve().parent
    return expand(apply_overrides(raw, list(overrides)), base)


def load_one(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Like ``load`` for a config without sweeps."""
    configs = load(path, overrides)
    if len(configs) != 1:
        raise ConfigError("sweep", f"expected one experiment, the config expands to {len(configs)}")
    return configs[0]


# --------------------------------------------------------------------------------------
# normal form and identity


def to_dict(cfg: Config) -> dict:
    """JSON-ready normal form (schedules as tables, batch "full" spelled out)."""

    def sched(s: Schedule):
        if s.kind == "constant":
            return s.values[0]
        if s.kind == "piecewise":
            return {"kind": "piecewise", "values": list(s.values), "boundaries": list(s.boundaries)}
        return {"kind": "periodic", "low": s.low, "high": s.high, "period": s.period, "shape": s.shape}

    out = {"name": cfg.name}
    for name in SECTIONS:
        sec = dataclasses.asdict(getattr(cfg, name))
        if name == "train":
            sec["lr"], sec["ridge"] = sched(cfg.train.lr), sched(cfg.train.ridge)
            sec["batch"] = "full" if cfg.train.batch is None else cfg.train.batch
            for other, keys in OPTIMIZER_KEYS.items():  # parameters of the other optimizers do not act
                for k in keys if other != cfg.train.optimizer else ():
                    sec.pop(k)
        out[name] = {k: v for k, v in sec.items() if v is not None}
    return out


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def config_id(cfg: Config) -> str:
    """12 hex digits of sha256 over the scientific content of the config. Files enter by
    content (not path); the name and execution-only settings do not enter."""
    d = to_dict(cfg)
    d.pop("name")
    for section, keys in EXECUTION_ONLY.items():
        for k in keys:
            d[section].pop(k, None)
    if not d["rare"]:
        d.pop("rare")
    for section, keys in LATER_KEYS.items():
        for k in keys:
            if k in d[section] and d[section][k] == getattr(SECTIONS[section](), k):
                d[section].pop(k)
    if cfg.problem.file:
        d["problem"]["file"] = _file_digest(cfg.resolve(cfg.problem.file))
    if cfg.model.init_file and cfg.model.init == "file":
        d["model"]["init_file"] = _file_digest(cfg.resolve(cfg.model.init_file))
    # keys that do not act under the chosen init do not split experiments
    if cfg.model.init != "gd":  # only the gd start uses these (and is drawn from model.seed)
        d["model"].pop("gd_steps"), d["model"].pop("gd_lr"), d["model"].pop("seed")
    if cfg.model.init == "file":
        d["model"].pop("init_scale")
    else:
        d["model"].pop("init_file", None)
    text = json.dumps({"schema": ID_FORMAT, **d}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
