"""Rare jumps of the DLN: the SGD dynamics of ``dynamics`` as particles of ``splitting``, and ``jumpsim rare``.

A particle is one seed's ``dynamics.SeedState``; one period is K SGD steps and a check (the very
``dynamics.period`` that brute-force runs use), so splitting and ``jumpsim run`` estimate the same
quantity: the first time the detector's persistent rank is <= start rank - 1 (down) or >= start
rank + 1 (up), held for ``detect.persist`` checks.

Scores (>= 1 exactly when the detector confirms the target; NaN once diverged):

* "sigma" (default), r the start rank:  xi = log(sigma_r(start) / sigma_r) / log(sigma_r(start) / tau)
  (log because A's singular values multiply across layers); "up" uses sigma_{r+1} growing to tau.
* "layers": the same progress measured on every layer's r-th singular value against tau^(1/L),
  averaged over layers: a second score to cross-check the first (balanced layers make them agree).

While a candidate rank change still waits for its ``persist`` checks the score sits just below 1
(1 - 1e-3 per missing check, still increasing with xi), so the level sets nest, only confirmed jumps
count, and no two particles tie unless their states do.

``run_rare`` runs one estimate (the estimator of ``rare.method``, from ``jumpsim.methods``) for a shard of
replicas: it plans and prints the work, checkpoints the engine state so a killed job resumes, and writes the
tables.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import bracket, dataset, dynamics, methods, model, proposals, runner, spectrum, splitting
from .config import Config, rare_settings
from .errors import ConfigError
from .progress import NoProgress, reporter
from .setup import Setup, setup

PENDING = 1e-3  # score cap per missing persistence check of a candidate jump
SAVE_EVERY_S = 2.0  # engine state written at most this often (or 10 x a save's time, if longer)


class Particles(NamedTuple):
    """The DLN as a splitting problem: per-particle ``init(key)``, ``advance(state, key, t)`` (one
    check period), ``score(state)``, and the facts they were built from."""

    init: Callable
    advance: Callable
    score: Callable
    start_rank: int
    target_rank: int  # the level: rank <= target (down) or >= target (up)
    period_steps: int  # SGD steps per period (detect.every)
    state_bytes: int  # bytes of one particle's state
    # importance sampling (rare.proposal): the log likelihood ratio a particle carries (None: plain SGD), the
    # period of plain SGD the flux phase of the rate form runs (None: ``advance``), what a period costs in SGD
    # steps (each entry a lookahead evaluates counts as one), and the SGD steps fitting the proposal took
    weight: Callable | None = None
    flux_advance: Callable | None = None
    period_cost: int = 0
    setup_steps: int = 0
    proposal: str = "uniform"
    progress: Callable | None = None  # xi of a plain particle's state (the score below the target)


def _np_sv(params) -> np.ndarray:
    return np.linalg.svd(
        np.asarray(model.end_to_end(tuple(np.asarray(w, np.float64) for w in params))), compute_uv=False
    )


def _start_state(cfg: Config, su: Setup) -> dynamics.SeedState:
    """The shared start as a particle state, after the checks that make it one (ConfigError naming the key)."""
    if cfg.model.init == "gaussian":
        raise ConfigError("model.init", 'jumpsim rare starts every particle from one state: use init = "file" or "gd"')
    if su.detection.relative:
        raise ConfigError(
            "detect.relative", "jumpsim rare scores against an absolute threshold; set detect.relative = false"
        )
    with dynamics.float64_scope():
        return dynamics.init(su.start, jax.random.key(0, impl="threefry2x32"), su.data, su.dynamics, su.detection)


def _progress(cfg: Config, su: Setup, r: int) -> Callable[[dynamics.SeedState], jax.Array]:
    """xi(state), the score's progress toward the target (0 at the start, 1 at tau; see the module docstring)."""
    tau, depth = su.detection.threshold, len(su.start)
    down = cfg.rare.direction == "down"
    if down and r == 0:
        raise ConfigError("rare.direction", "the start has rank 0: there is no lower rank to reach")
    if not down and r >= min(su.shapes[0][1], su.shapes[-1][0]):
        raise ConfigError("rare.direction", f"the start has full rank {r}: there is no higher rank to reach")
    sv0 = _np_sv(su.start)
    k = r if down else r + 1  # the singular value that must cross tau
    sig0 = max(float(sv0[k - 1]), 1e-12 * float(sv0[0]))
    if cfg.rare.score == "layers":
        sig0_l = [
            max(float(np.linalg.svd(np.asarray(w, np.float64), compute_uv=False)[r - 1]), 1e-30) for w in su.start
        ]
        tau_l = tau ** (1.0 / depth)
        if any(s <= tau_l for s in sig0_l):
            raise ConfigError(
                "rare.score", f'"layers": a start layer already has sigma_{r} <= tau^(1/L) = {tau_l:.3g}; use "sigma"'
            )
    if (sig0 - tau) * (1 if down else -1) <= 0:
        raise ConfigError(
            "detect.threshold", f"sigma_{k} of the start ({sig0:.3g}) is on the target side of tau = {tau:g}"
        )

    def sigma(state: dynamics.SeedState) -> jax.Array:
        sig = jnp.maximum(spectrum.singular_value(model.end_to_end(state.params), k), 1e-300)
        return jnp.log(sig0 / sig) / math.log(sig0 / tau) if down else jnp.log(sig / sig0) / math.log(tau / sig0)

    def layers(state: dynamics.SeedState) -> jax.Array:
        xs = [
            jnp.log(s0_ / jnp.maximum(spectrum.singular_value(w, r), 1e-300)) / math.log(s0_ / tau_l)
            for w, s0_ in zip(state.params, sig0_l)
        ]
        return sum(xs) / depth

    return sigma if cfg.rare.score == "sigma" else layers


def _score(progress: Callable, r: int, down: bool, persist: int) -> Callable[[dynamics.SeedState], jax.Array]:
    """The splitting score: progress xi below the target, 1 once the detector confirms it, just below 1 while a
    candidate jump waits for its persistence checks, NaN once diverged."""
    base = 1.0 - PENDING * persist

    def score(state: dynamics.SeedState) -> jax.Array:
        d = state.det
        confirmed = d.rank <= r - 1 if down else d.rank >= r + 1
        pending = (d.cand <= r - 1) if down else (d.cand >= r + 1)
        xi = progress(state)
        # strictly increasing in xi everywhere (no artificial ties): below the target side xi maps into
        # (-inf, base); a candidate jump missing m of its persist checks into [1 - PENDING m, 1 - PENDING (m - 1/2))
        missing = (persist - d.count).astype(jnp.float64)
        waiting = 1.0 - PENDING * missing + 0.5 * PENDING * -jnp.expm1(-jnp.maximum(xi - 1.0, 0.0))
        out = jnp.where(confirmed, 1.0, jnp.where(pending, waiting, jnp.minimum(xi, 1.0) * base))
        return jnp.where(state.diverged, jnp.nan, out).astype(jnp.float32)

    return score


def particles(cfg: Config, su: Setup | None = None) -> Particles:
    """Build the particle functions of an experiment (start: its shared ``init = "file"`` or ``"gd"`` start), under
    the proposal of ``rare.proposal`` (``_proposed``; "uniform": plain SGD)."""
    su = setup(cfg) if su is None else su
    data, dyn, det = su.data, su.dynamics, su.detection
    s0 = _start_state(cfg, su)
    r = int(s0.det.rank)
    down = cfg.rare.direction == "down"
    progress = _progress(cfg, su, r)
    score = _score(progress, r, down, det.persist)

    def init(key):
        return dynamics.init(su.start, key, data, dyn, det)

    def advance(state, key, t):
        return dynamics.period(state._replace(key=key), t * dyn.every, data, dyn, det)[0]

    nbytes = sum(x.nbytes for x in jax.tree.leaves(s0) if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)) + 8
    plain = Particles(
        init,
        advance,
        score,
        r,
        r - 1 if down else r + 1,
        dyn.every,
        int(nbytes),
        period_cost=dyn.every,
        progress=progress,
    )
    return plain if cfg.rare.proposal == "uniform" else proposals.weighted_particles(plain, cfg, su, progress)


# --------------------------------------------------------------------------------------
# one estimate, sharded over replicas, resumable


def estimate_id(cfg: Config) -> str:
    """12 hex digits of the experiment's config_id and its splitting settings (one estimate)."""
    text = json.dumps({"config_id": cfg.config_id, **rare_settings(cfg)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def replica_range(cfg: Config, shard: int = 0, n_shards: int = 1) -> tuple[int, int]:
    r = cfg.rare.replicas
    return r * shard // n_shards, r * (shard + 1) // n_shards


def state_path(out: Path, cfg: Config, lo: int, hi: int) -> Path:
    return Path(out) / "rare_state" / f"config_id={cfg.config_id}" / f"{estimate_id(cfg)}-{lo:06d}-{hi - 1:06d}.npz"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


class Outcome(NamedTuple):
    """What ``run_rare`` wrote for one shard: the result, basin and interface used, wall time."""

    result: splitting.TamsResult | splitting.RateResult
    basin: float
    interface: float
    wall_s: float
    skipped: bool


def _plan(cfg: Config, p: Particles, w: methods.Work, slots: int, lo: int, hi: int, timed: bool) -> list[str]:
    """The lines printed before an estimate runs: memory, and the first phase's work with its time at the speed
    of a timed lockstep probe at the width the phase runs (``timed``; the probe compiles, a few seconds). The
    engine's queue adds host round trips; a TAMS estimate cost ~4x its initial population at p = 1e-3 on the
    rank-3 escape, i.e. about one more initial population per decade of p."""
    rc = cfg.rare
    n, reps = rc.particles, hi - lo
    mem = n * reps * p.state_bytes
    head = (
        f"jumpsim rare: {rc.method}, rank {p.start_rank} -> {'<=' if rc.direction == 'down' else '>='} "
        f"{p.target_rank}, "
        f"{n} particles x replicas {lo}..{hi - 1}; particle state {p.state_bytes:,} B, population {mem / 2**20:.1f} "
        f"MiB (+ ~3 states per slot of the simulation table, {slots:,} slots: "
        f"{3 * slots * p.state_bytes / 2**20:.1f} MiB)"
    )
    at = ""
    if timed:
        speed = p.period_steps * splitting.lockstep_speed(p.init, p.advance, w.width, sharded=w.sharded)
        at = (
            f" (~{_duration(w.steps / speed)} plus compiles, at {speed:.3g} SGD steps/s: this machine's lockstep speed)"
        )
    return [head, f"  work: {w.phase} {w.steps:,} SGD steps{at}{w.rest}"]


class _Checkpoint:
    """Saves the engine state to `path` at most every SAVE_EVERY_S, and never spends more than ~10 % of the run
    writing (a large population takes long to write); the file is replaced atomically."""

    def __init__(self, path: Path):
        self.path, self.saved, self.save_s = path, -math.inf, 0.0

    def load(self, init, say) -> splitting.EngineState | None:
        if not self.path.exists():
            return None
        try:
            return splitting.load_state(self.path, init)
        except ValueError as e:  # written by an older jumpsim (other engine fields): start afresh
            say(f"  ignoring a saved engine state of another jumpsim version ({e}); starting afresh")
            return None

    def __call__(self, st: splitting.EngineState, now: float) -> float:
        """Save if due; returns the time after saving."""
        if now - self.saved >= max(SAVE_EVERY_S, 10 * self.save_s):
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            with open(tmp, "wb") as f:
                splitting.save_state(f, st)
            tmp.replace(self.path)
            t_saved = time.perf_counter()
            self.saved, self.save_s, now = t_saved, t_saved - now, t_saved
        return now


class _Printer:
    """Progress lines of an estimate: a line when the committed work grew (at most every 2 s), and every 30 s
    regardless (a replica whose iteration waits on one long particle run commits nothing for minutes); the
    flux phase's share every 2 s."""

    def __init__(self, bar: NoProgress, period_steps: int, flux_steps: int):
        self.bar, self.period_steps, self.flux_steps = bar, period_steps, flux_steps
        self.t0 = self.last = time.perf_counter()
        self.printed = None

    def iteration(self, st: splitting.EngineState, now: float) -> None:
        steps = int(st.steps.sum())
        fresh = (now - self.last > 2 or st.done.all()) and steps != self.printed
        if self.bar.quiet or not (fresh or now - self.last > 30):
            return
        self.printed = steps
        z = f"highest level Z {np.nanmax(st.log_z):.3f}" if np.isfinite(st.log_z).any() else "no kill step yet"
        it = st.iteration  # (over every replica: finished ones keep their count, so the range never goes back)
        its = f"{int(it.min())}" if it.min() == it.max() else f"{int(it.min())}-{int(it.max())}"
        self.bar.note(
            f"  iterations {its:>9s}: {int((~st.done).sum())} replica(s) running, {z}, "
            f"{steps * self.period_steps:,} SGD steps, {now - self.t0:.0f} s"
        )
        self.last = now

    def flux(self, fraction: float) -> None:
        now = time.perf_counter()
        if not self.bar.quiet and (now - self.last > 2 or fraction >= 1):
            self.bar.note(f"  flux phase: {fraction:6.1%} of {self.flux_steps:,} SGD steps, {now - self.t0:.0f} s")
            self.last = now


def _path_bound(cfg: Config, su: Setup, say) -> bracket.PathBound:
    """``bracket.path_lower_bound`` from the start, for P(target within train.steps), on plain SGD particles; says
    what it runs and what it found."""
    plain = particles(dataclasses.replace(cfg, rare=dataclasses.replace(cfg.rare, proposal="uniform")), su)
    start = plain.init(jax.random.key(0, impl="threefry2x32"))
    k = su.data.n_observed
    keep = bracket.keep_count(cfg.rare.bracket_keep, k)
    say(
        f"  bracket: prefixes drawing among {keep} of {k} entries, then plain SGD, {cfg.rare.bracket_trials} "
        "trajectories per probe"
    )
    b = bracket.path_lower_bound(
        start,
        plain.progress,
        plain.advance,
        plain.score,
        su.data,
        su.dynamics,
        su.detection,
        horizon=cfg.train.steps // plain.period_steps,
        keep=keep,
        trials=cfg.rare.bracket_trials,
        seed=cfg.rare.seed,
    )
    say(
        f"  bracket: lower bound 10^{b.log10_lower:.1f} ({b.hits} of {b.trials} at a prefix of {b.draws:,} steps)"
        if b.hits
        else "  bracket: no probe reached the target (no lower bound)"
    )
    return b


@dynamics.with_float64
def run_rare(
    cfg: Config,
    out: str | Path,
    shard: int = 0,
    n_shards: int = 1,
    progress: bool | NoProgress = True,
    say=print,
    meter: splitting.SlotMeter | None = None,
) -> Outcome:
    """Splitting estimate of one experiment's rare jump for the replicas of shard ``shard``/``n_shards``,
    written as tables into ``out``. Resumes from the last finished iteration (engine state saved after
    each one); a shard whose tables exist is skipped. ``progress``: a reporter (``jumpsim.progress``), or
    True / False; ``say`` prints the plan; ``meter`` (a ``splitting.SlotMeter``) records the slot table's use."""
    out = Path(out)
    eid = estimate_id(cfg)
    lo, hi = replica_range(cfg, shard, n_shards)
    if hi <= lo:
        raise ConfigError("--shard", f"shard {shard}/{n_shards} owns no replica (rare.replicas = {cfg.rare.replicas})")
    if dataset.rare_part_path(out, "rare", cfg.config_id, eid, lo, hi - 1).exists():
        return Outcome(None, float("nan"), float("nan"), 0.0, True)
    method = methods.get(cfg.rare.method)
    method.check(cfg)
    su = setup(cfg)
    p = particles(cfg, su)
    out.mkdir(parents=True, exist_ok=True)
    dataset.write_experiments(out, [dataset.experiment_row(cfg, su.info, runner.versions())])
    bar = reporter(progress)
    path = state_path(out, cfg, lo, hi)
    slots = splitting.table_size(hi - lo, splitting.kill_count(cfg.rare.particles, cfg.rare.kill_fraction))
    work = method.work(p, cfg, hi - lo, slots)
    for line in _plan(cfg, p, work, slots, lo, hi, timed=not bar.quiet and not path.exists()):  # not when resuming
        say(line)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = _Checkpoint(path)
    resume = checkpoint.load(p.init, say)
    if resume is not None:
        s = splitting.saved_progress(path)
        say(
            f"  resuming from the saved engine state: {s['done']} of {s['replicas']} replicas done, up to iteration "
            f"{s['iterations']}, {s['periods'] * p.period_steps:,} SGD steps simulated"
        )
    printer = _Printer(bar, p.period_steps, work.steps)

    def on_iteration(st: splitting.EngineState):
        printer.iteration(st, checkpoint(st, time.perf_counter()))

    engine = dict(
        particles=cfg.rare.particles,
        replicas=hi - lo,
        kill_fraction=cfg.rare.kill_fraction,
        seed=cfg.rare.seed,
        level=0.95,
        max_iterations=cfg.rare.max_iterations,
        state=resume,
        on_iteration=on_iteration,
        replica_offset=lo,
        meter=meter,
    )
    t0 = time.perf_counter()
    est = method.run(p, cfg, engine, on_flux=printer.flux)
    wall = time.perf_counter() - t0
    cols = method.columns(est.result, p, est.basin, est.interface)
    if cfg.rare.bracket and lo == 0:  # the path bound, once per estimate (by the shard of replica 0)
        b = _path_bound(cfg, su, say)
        cols.row.update(
            p_lower_bound=b.lower,
            log10_p_lower_bound=b.log10_lower,
            lower_bound_draws=b.draws,
            seed_steps=cols.row["seed_steps"] + b.steps,
        )
    tables = dataset.rare_tables(cfg, eid, lo, hi, p, est.result, cols, splitting.LEVEL_GRID, wall)
    dataset.write_rare(out, cfg.config_id, eid, lo, hi, tables)
    path.unlink(missing_ok=True)
    for d in (path.parent, path.parent.parent):  # rare_state/config_id=... and rare_state, once empty
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return Outcome(est.result, est.basin, est.interface, wall, False)
