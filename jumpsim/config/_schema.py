"""The config's schema: one frozen dataclass per TOML section with the defaults of every key, its normal form
(``to_dict``) and its identity (``config_id``).

Nothing here validates (``_sections`` does) or parses files (``_toml``): these records are what the rest of
jumpsim receives, already checked. ``config_id`` is a short hash of the scientific content only (problem,
model, training, detector, dtype): execution settings such as seed counts, chunk size, shard or output
directory never change it, so a resumed, sharded or extended run lands under the same id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path


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
    require_minimum: bool = False  # init = "gd": refuse a start that is not a critical point


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
    # "with_replacement": each step draws B observed entries uniformly | "without_replacement": epochs, each a
    # fresh keyed order of the K observed entries, B per step
    sampling: str = "with_replacement"


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
    # "auto" (the fused kernel where it runs, else xla) | "xla" | "pallas" (fused K-step kernel, plain SGD on GPUs)
    # | "pallas-interpret" (the kernel on a CPU, for tests); "auto" and "xla" name the same experiment
    backend: str = "auto"


@dataclass(frozen=True)
class RareConfig:
    """Rare-event splitting (``jumpsim rare``): how to estimate, not what; excluded from config_id, so a
    splitting estimate lands beside brute-force runs of the same experiment."""

    method: str = "tams"  # "tams": P(target within train.steps) | "rate": escape rate per step (flux x AMS) | "is"
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
    # importance sampling of the drawn entries (jumpsim.proposals); "uniform" is plain SGD
    proposal: str = "uniform"  # "uniform" | "static" (cross-entropy tilt) | "lookahead" (one-step score change)
    mixture: float = 0.1  # eps of the defensive mixture (1 - eps) q_tilt + eps uniform: a draw's ratio <= 1/eps
    gate: float = 0.2  # lookahead: tilt only where some entry's step raises the score by at least this
    kl: float = 1.0  # lookahead: beta such that the tilt's KL divergence from uniform is at most this (nats)
    lookahead_every: int = 10  # lookahead: steps between refreshes of the tilt (divides detect.every)
    cem_rounds: int = 3  # static: rounds of the cross-entropy fit
    # the bracket's lower end: prefixes drawing among the entries that raise the score most, then plain SGD
    # (jumpsim.bracket)
    bracket: bool = False
    bracket_trials: int = 256  # trajectories (restricted prefix, then plain SGD) per probe
    bracket_keep: float = 0.75  # the prefix draws among this share of the K entries (those raising the score most)


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
    "model": {"require_minimum"},
    "run": {"seeds", "seed_offset", "chunk", "trace_seeds"},
    "rare": {f.name for f in dataclasses.fields(RareConfig)},
}
# Keys added after the first datasets were written: they enter config_id only when set to a
# non-default value, so the ids of earlier experiments (and their datasets) stay valid.
LATER_KEYS = {
    "train": {"optimizer", "momentum", "nesterov", "b1", "b2", "eps", "sampling"},
    "run": {"backend"},
    "detect": {"absorbing", "balance_tol"},  # absorbing_rank and norm_bound are None (absent) by default
}
OPTIMIZER_KEYS = {"sgd": (), "momentum": ("momentum", "nesterov"), "adam": ("b1", "b2", "eps")}
# [rare] keys of the importance-sampling proposals, by the proposal they act under (none under "uniform"): a
# splitting estimate's identity and settings column name them only there, so estimates made before they existed
# keep their ids
PROPOSAL_KEYS = {
    "uniform": (),
    "static": ("mixture", "cem_rounds"),
    "lookahead": ("mixture", "gate", "kl", "lookahead_every"),
}


def rare_settings(cfg: Config) -> dict:
    """The [rare] section as a splitting estimate records it: every key, except the proposal's keys where they do
    not act, ``proposal`` itself when it is "uniform" (plain SGD, what every earlier estimate ran) and the
    bracket's keys when it is off."""
    d = dataclasses.asdict(cfg.rare)
    acting = PROPOSAL_KEYS[cfg.rare.proposal]
    for k in {k for keys in PROPOSAL_KEYS.values() for k in keys} - set(acting):
        d.pop(k)
    if cfg.rare.proposal == "uniform":
        d.pop("proposal")
    if not cfg.rare.bracket:
        d.pop("bracket"), d.pop("bracket_trials"), d.pop("bracket_keep")
    return d


ID_FORMAT = 1  # version of the normal form that config_id hashes (not a table schema version)


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
        if name == "rare":  # the proposal's and the bracket's keys only where they act
            sec = rare_settings(cfg)
        if name == "model" and not sec["require_minimum"]:  # (a check, not a setting: named only when on)
            sec.pop("require_minimum")
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
    if d["run"].get("backend") == "xla":  # the default before "auto": the ids of its experiments stay
        d["run"].pop("backend")
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


# what every key means, for ``jumpsim keys`` (the config reference is printed from here and the defaults above,
# so it cannot drift from the code; a test checks that every key has a line)
HELP = {
    "name": "the experiment's name (datasets go to results/<name> by default); not part of config_id",
    "problem.n": "rows of the target A*",
    "problem.m": "columns of the target",
    "problem.rank": "true rank r*: A* = U V^T with Gaussian factors, scaled to unit RMS entries",
    "problem.observed": "fraction of entries in the observed set Omega, in (0, 1]",
    "problem.seed": "seed of the target and of Omega",
    "problem.file": "instead: an .npz with arrays target (n x m) and mask (n x m bool)",
    "model.depth": "L >= 2 layers (L = 2 is the convex nuclear-norm case; multiple minima need L >= 3)",
    "model.width": "hidden width w",
    "model.init": '"gaussian" (each seed its own draw) | "file" | "gd" (every seed from one GD minimum)',
    "model.init_scale": "W entries ~ N(0, init_scale^2 / fan_in)",
    "model.init_file": 'for init = "file": arrays W1 ... WL (W1 applied first)',
    "model.gd_steps": 'for init = "gd": full-batch gradient descent steps from one gaussian start ...',
    "model.gd_lr": "... at this step and the ridge at step 0",
    "model.seed": 'key of that one gaussian start (init = "gd")',
    "model.require_minimum": 'init = "gd": refuse a start that is not a critical point (gradient norm > 1e-4)',
    "train.lr": "eta, or a schedule table (kind = constant | piecewise | periodic)",
    "train.ridge": "lambda, or a schedule table; 2 lr ridge < 1",
    "train.batch": 'observed entries per step (drawn as train.sampling says); "full" = gradient descent',
    "train.loss": '"mean" | "sum" of squared errors over Omega (sum scales the gradient by |Omega|)',
    "train.steps": "horizon T, a multiple of detect.every",
    "train.optimizer": '"sgd" | "momentum" | "adam"; the ridge is added to the gradient first (coupled)',
    "train.momentum": 'optimizer = "momentum": heavy-ball coefficient',
    "train.nesterov": 'optimizer = "momentum": Nesterov\'s variant',
    "train.b1": 'optimizer = "adam": first-moment decay',
    "train.b2": 'optimizer = "adam": second-moment decay',
    "train.eps": 'optimizer = "adam": denominator offset',
    "train.sampling": '"with_replacement" (B uniform draws per step) | "without_replacement" (epochs: a fresh keyed '
    "order of the observed entries, B per step)",
    "detect.every": "check period K: the rank is counted every K steps",
    "detect.threshold": "tau: a singular value of A above it counts toward the rank",
    "detect.relative": "tau relative to sigma_max",
    "detect.persist": "consecutive checks a new rank must hold before it counts as a jump",
    "detect.max_events": "event buffer per seed (runs.events_overflow counts the rest)",
    "detect.absorbing": "count visits to the paper's absorbing set B_r at every check (~6 % of a run)",
    "detect.absorbing_rank": "r of B_r (default: problem.rank)",
    "detect.balance_tol": "B_r: max_l |W_{l+1}^T W_{l+1} - W_l W_l^T|_F / max_l |W_l|_F^2 <= balance_tol",
    "detect.norm_bound": "B_r: sum_l |W_l|_F^2 <= norm_bound (default: no bound)",
    "run.seeds": "seeds simulated (ids seed_offset .. seed_offset + seeds - 1); not part of config_id",
    "run.seed_offset": "first seed id",
    "run.chunk": "seeds per compiled batch (memory); never changes a result",
    "run.dtype": '"float32" | "float64"',
    "run.trace_seeds": "the first seeds whose per-check values go to the traces table",
    "run.backend": '"auto" (the fused GPU kernel where it runs, else xla) | "xla" | "pallas" (fused GPU kernel, '
    'plain SGD) | "pallas-interpret" (the same on a CPU, tests)',
    "rare.method": '"tams": P(jump within train.steps) | "rate": escape rate per step | "is": importance sampling',
    "rare.particles": "particles per replica",
    "rare.replicas": "independent replicas (intervals come from their spread)",
    "rare.kill_fraction": "splitting kills at least this fraction per iteration (all ties)",
    "rare.score": '"sigma": progress of sigma_r(A) toward tau on a log scale | "layers": the same per layer',
    "rare.direction": '"down": rank <= start - 1 | "up": rank >= start + 1',
    "rare.flux_seeds": "rate: brute-force trajectories of the flux phase, shared out over the replicas",
    "rare.flux_steps": "rate: steps of each (0 = train.steps)",
    "rare.basin": "rate: the basin is score <= basin (default: a pilot run's median)",
    "rare.interface": 'rate: first interface (default: the pilot\'s 99th percentile, at least 0.2; "pNN": its NN-th)',
    "rare.max_steps": "rate: cap on one particle's steps (reported when hit)",
    "rare.max_iterations": "cap on a replica's kill steps (reported when hit: biased)",
    "rare.seed": "seed of the estimate's randomness",
    "rare.proposal": '"uniform" (plain SGD) | "static" (cross-entropy tilt) | "lookahead" (one-step score change)',
    "rare.mixture": "eps of the defensive mixture (1 - eps) tilt + eps uniform: a draw's ratio <= 1/eps",
    "rare.gate": "lookahead: tilt only where some entry's step raises the score by at least this",
    "rare.kl": "lookahead: the tilt's KL divergence from uniform, in nats (its cost in log weight per step)",
    "rare.lookahead_every": "lookahead: steps between refreshes of the tilt (divides detect.every)",
    "rare.cem_rounds": "static: rounds of the cross-entropy fit",
    "rare.bracket": "also compute the bracket's lower bound on P from restricted prefixes (shard of replica 0)",
    "rare.bracket_trials": "bracket: trajectories per probe (a restricted prefix, then plain SGD)",
    "rare.bracket_keep": "bracket: the prefix draws among this share of the observed entries, those that raise the "
    "score most (1 / K: one greedy path)",
}


def _toml_value(v) -> str:
    if isinstance(v, Schedule):
        return _toml_value(v.values[0])
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


def reference(toml: bool = False) -> str:
    """Every config key with its default and meaning (``HELP``): one ``section.key = default  # meaning`` line
    each, or (``toml``) a commented TOML file of the defaults, keys without a default commented out."""
    rows = [("name", Config().name)]
    for section, cls in SECTIONS.items():
        rows += [(f"{section}.{f.name}", getattr(cls(), f.name)) for f in dataclasses.fields(cls)]
    if not toml:
        width = max(len(f"{k} = {_toml_value(v)}") for k, v in rows if v is not None)
        return "\n".join(
            f"{f'{k} = {_toml_value(v)}' if v is not None else f'{k} (unset)':<{width}}  # {HELP[k]}" for k, v in rows
        )
    other_optimizers = {
        f"train.{k}" for o, keys in OPTIMIZER_KEYS.items() if o != TrainConfig().optimizer for k in keys
    }
    out, current = [], None
    for k, v in rows:
        section, _, key = k.rpartition(".")
        if section != current and section:
            out += ["", f"[{section}]"]
            current = section
        line = f"{key} = {_toml_value(v)}" if v is not None else f"# {key} = ..."
        if k in other_optimizers:  # (set only with their optimizer)
            line = f"# {line}"
        out.append(f"{line:<30}  # {HELP[k]}")
    return "\n".join(out).lstrip("\n")
