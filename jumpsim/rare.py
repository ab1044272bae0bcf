"""Rare jumps of the DLN by splitting: the SGD dynamics of ``dynamics`` as particles of ``splitting``.

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
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import dynamics, model, runner, spectrum, splitting, tables
from .config import Config
from .errors import ConfigError

PENDING = 1e-3  # score cap per missing persistence check of a candidate jump
# default first interface of the rate form: at least this score (sigma_r down by (sigma_r(start)/tau)^0.2, a
# factor ~3 at tau = 1e-2), above the band the score fluctuates in at small eta. An interface inside that band
# is crossed mostly by fluctuations that never escape, while escapes start with a sudden collapse (report
# (o)); a flux phase then holds few or none of the crossings that matter, and the estimate is low with an
# interval that cannot know (report (h): 20x low at eta 0.13). Above it, too few crossings say so instead.
INTERFACE_FLOOR = 0.2
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


def _np_sv(params) -> np.ndarray:
    return np.linalg.svd(
        np.asarray(model.end_to_end(tuple(np.asarray(w, np.float64) for w in params))), compute_uv=False
    )


def particles(cfg: Config, su: dynamics.Setup | None = None) -> Particles:
    """Build the particle functions of an experiment (start: its shared ``init = "file"`` or ``"gd"`` start)."""
    if cfg.model.init == "gaussian":
        raise ConfigError("model.init", 'jumpsim rare starts every particle from one state: use init = "file" or "gd"')
    su = dynamics.setup(cfg) if su is None else su
    data, dyn, det = su.data, su.dynamics, su.detection
    if det.relative:
        raise ConfigError(
            "detect.relative", "jumpsim rare scores against an absolute threshold; set detect.relative = false"
        )
    rc = cfg.rare
    with dynamics.float64_scope():
        s0 = dynamics.init(su.start, jax.random.key(0, impl="threefry2x32"), data, dyn, det)
    r = int(s0.det.rank)
    tau, persist, depth = det.threshold, det.persist, len(su.start)
    down = rc.direction == "down"
    if down and r == 0:
        raise ConfigError("rare.direction", "the start has rank 0: there is no lower rank to reach")
    if not down and r >= min(su.shapes[0][1], su.shapes[-1][0]):
        raise ConfigError("rare.direction", f"the start has full rank {r}: there is no higher rank to reach")
    sv0 = _np_sv(su.start)
    k = r if down else r + 1  # the singular value that must cross tau
    sig0 = max(float(sv0[k - 1]), 1e-12 * float(sv0[0]))
    if rc.score == "layers":
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

    def progress(state: dynamics.SeedState) -> jax.Array:
        if rc.score == "sigma":
            sig = jnp.maximum(spectrum.singular_value(model.end_to_end(state.params), k), 1e-300)
            return jnp.log(sig0 / sig) / math.log(sig0 / tau) if down else jnp.log(sig / sig0) / math.log(tau / sig0)
        xs = [
            jnp.log(s0_ / jnp.maximum(spectrum.singular_value(w, r), 1e-300)) / math.log(s0_ / tau_l)
            for w, s0_ in zip(state.params, sig0_l)
        ]
        return sum(xs) / depth

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

    def init(key):
        return dynamics.init(su.start, key, data, dyn, det)

    def advance(state, key, t):
        return dynamics.period(state._replace(key=key), t * dyn.every, data, dyn, det)[0]

    nbytes = sum(x.nbytes for x in jax.tree.leaves(s0) if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)) + 8
    return Particles(init, advance, score, r, r - 1 if down else r + 1, dyn.every, int(nbytes))


# --------------------------------------------------------------------------------------
# one estimate, sharded over replicas, resumable


def estimate_id(cfg: Config) -> str:
    """12 hex digits of the experiment's config_id and its splitting settings (one estimate)."""
    text = json.dumps({"config_id": cfg.config_id, **asdict(cfg.rare)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def replica_range(cfg: Config, shard: int = 0, n_shards: int = 1) -> tuple[int, int]:
    r = cfg.rare.replicas
    return r * shard // n_shards, r * (shard + 1) // n_shards


def _pilot(p: Particles, cfg: Config) -> tuple[float, float]:
    """Default basin and interface: the median and 99th percentile (at least INTERFACE_FLOOR) of the score
    over a brute-force pilot from the start (64 trajectories over min(flux_steps, 20,000) steps, after the
    first 10 %)."""
    periods = max(10, min(cfg.rare.flux_steps or cfg.train.steps, 20_000) // p.period_steps)
    root = jax.random.key(cfg.rare.seed + 7_777, impl="threefry2x32")
    keys = jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.arange(64))
    advance, score = jax.vmap(p.advance, in_axes=(0, 0, None)), jax.vmap(p.score)

    def step(xs, t):
        xs = advance(xs, jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, t), t)
        return xs, score(xs)

    with dynamics.float64_scope():
        xs0 = jax.vmap(p.init)(keys)
        xi = np.asarray(jax.jit(lambda x: jax.lax.scan(step, x, jnp.arange(periods, dtype=jnp.int32))[1])(xs0))
    return levels(xi[periods // 10 :], cfg.rare.basin, cfg.rare.interface)


def levels(xi: np.ndarray, basin: float | None, interface: float | str | None) -> tuple[float, float]:
    """Basin and first interface from pilot scores `xi` (any shape; NaN and target scores ignored): the
    median, and the 99th percentile but at least INTERFACE_FLOOR; a given value wins, and "pNN" is the NN-th
    percentile without the floor. The interface is moved up to basin + 0.02 (at most 0.99) if it is not above
    the basin."""
    xi = xi[np.isfinite(xi) & (xi < 1)]
    basin = float(np.quantile(xi, 0.5)) if basin is None else basin
    if interface is None:
        interface = max(float(np.quantile(xi, 0.99)), INTERFACE_FLOOR)
    elif isinstance(interface, str):  # "pNN" (checked by the config)
        interface = float(np.quantile(xi, float(interface[1:]) / 100))
    if not basin < interface < 1:
        interface = min(max(interface, basin + 0.02), 0.99)
    return basin, interface


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def flux_per_replica(cfg: Config) -> int:
    """Flux trajectories of each rate-form replica: rare.flux_seeds shared out over the replicas (rounded up)."""
    return -(-cfg.rare.flux_seeds // cfg.rare.replicas)


class Outcome(NamedTuple):
    """What ``run_rare`` wrote for one shard: the result, basin and interface used, wall time."""

    result: splitting.TamsResult | splitting.RateResult
    basin: float
    interface: float
    wall_s: float
    skipped: bool


def state_path(out: Path, cfg: Config, lo: int, hi: int) -> Path:
    return Path(out) / "rare_state" / f"config_id={cfg.config_id}" / f"{estimate_id(cfg)}-{lo:06d}-{hi - 1:06d}.npz"


@dynamics.with_float64
def run_rare(
    cfg: Config, out: str | Path, shard: int = 0, n_shards: int = 1, progress: bool = True, say=print
) -> Outcome:
    """Splitting estimate of one experiment's rare jump for the replicas of shard ``shard``/``n_shards``,
    written as tables into ``out``. Resumes from the last finished iteration (engine state saved after
    each one); a shard whose tables exist is skipped."""
    out = Path(out)
    eid = estimate_id(cfg)
    lo, hi = replica_range(cfg, shard, n_shards)
    if hi <= lo:
        raise ConfigError("--shard", f"shard {shard}/{n_shards} owns no replica (rare.replicas = {cfg.rare.replicas})")
    part = tables.rare_part_path(out, "rare", cfg.config_id, eid, lo, hi - 1)
    if part.exists():
        return Outcome(None, float("nan"), float("nan"), 0.0, True)
    rc = cfg.rare
    if rc.method == "rate" and (cfg.train.lr.kind != "constant" or cfg.train.ridge.kind != "constant"):
        raise ConfigError(
            "rare.method", '"rate" needs constant train.lr and train.ridge (a rate of a stationary dynamics)'
        )
    su = dynamics.setup(cfg)
    p = particles(cfg, su)
    out.mkdir(parents=True, exist_ok=True)
    tables.write_experiments(out, [tables.experiment_row(cfg, su.info, runner.versions())])
    n, reps = rc.particles, hi - lo
    mem = n * reps * p.state_bytes
    slots = splitting.table_size(reps, splitting.kill_count(n, rc.kill_fraction))
    horizon = cfg.train.steps // p.period_steps
    say(
        f"jumpsim rare: {rc.method}, rank {p.start_rank} -> {'<=' if rc.direction == 'down' else '>='} "
        f"{p.target_rank}, "
        f"{n} particles x replicas {lo}..{hi - 1}; particle state {p.state_bytes:,} B, population {mem / 2**20:.1f} "
        f"MiB (+ ~3 states per slot of the simulation table, {slots:,} slots: "
        f"{3 * slots * p.state_bytes / 2**20:.1f} MiB)"
    )
    # time: at the speed of a timed lockstep probe of the period at the width the phase runs (the engine's
    # queue adds host round trips: README "Cost"); a TAMS estimate cost ~4x its initial population at
    # p = 1e-3 on the rank-3 escape, i.e. about one more initial population per decade of p. Skipped when
    # quiet (the probe compiles: a few seconds) and when resuming (part of the work is done).
    path = state_path(out, cfg, lo, hi)
    timed = progress and not path.exists()
    per_replica = flux_per_replica(cfg)
    if timed:
        tams = rc.method == "tams"
        width = slots if tams else splitting.flux_batch(reps, per_replica)
        speed = p.period_steps * splitting.lockstep_speed(p.init, p.advance, width, sharded=tams)

    def at(work: int) -> str:
        if not timed:
            return ""
        return f" (~{_duration(work / speed)} plus compiles, at {speed:.3g} SGD steps/s: this machine's lockstep speed)"

    if rc.method == "tams":
        w = n * reps * horizon * p.period_steps
        say(
            f"  work: initial population {w:,} SGD steps{at(w)}, then ~{rc.kill_fraction:.0%} of it per iteration, "
            f"~{math.log(10) / rc.kill_fraction:.0f} iterations per decade of p: about one more initial population "
            "per decade"
        )
    else:
        flux_periods = (rc.flux_steps or cfg.train.steps) // p.period_steps
        flux_steps = per_replica * reps * flux_periods * p.period_steps
        say(
            f"  work: flux phase {flux_steps:,} SGD steps{at(flux_steps)}, then AMS from its crossings until the "
            "target or the basin"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    resume = None
    if path.exists():
        try:
            resume = splitting.load_state(path, p.init)
        except ValueError as e:  # written by an older jumpsim (other engine fields): start afresh
            say(f"  ignoring a saved engine state of another jumpsim version ({e}); starting afresh")
    t0 = time.perf_counter()
    clock = {"last": t0, "saved": -math.inf, "save_s": 0.0}

    def on_iteration(st: splitting.EngineState):
        now = time.perf_counter()
        # the engine calls this after every round of commits: save at most every SAVE_EVERY_S, and never
        # spend more than ~10 % of the run writing (a large population takes long to write)
        if now - clock["saved"] >= max(SAVE_EVERY_S, 10 * clock["save_s"]):
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as f:
                splitting.save_state(f, st)
            tmp.replace(path)
            t_saved = time.perf_counter()
            clock["saved"], clock["save_s"], now = t_saved, t_saved - now, t_saved
        steps = int(st.steps.sum())
        # a line when the committed work grew (at most every 2 s), and every 30 s regardless: a replica whose
        # iteration waits on one long particle run commits nothing for minutes
        fresh = (now - clock["last"] > 2 or st.done.all()) and steps != clock.get("printed")
        if progress and (fresh or now - clock["last"] > 30):
            clock["printed"] = steps
            z = np.nanmax(st.log_z) if np.isfinite(st.log_z).any() else float("nan")
            live = st.iteration[~st.done] if (~st.done).any() else st.iteration
            its = f"{int(live.min())}" if live.min() == live.max() else f"{int(live.min())}-{int(live.max())}"
            print(
                f"  iterations {its:>9s}: {int((~st.done).sum())} replica(s) running, highest "
                f"level Z {z:.3f}, "
                f"{steps * p.period_steps:,} SGD steps, {now - t0:.0f} s",
                file=sys.stderr,
            )
            clock["last"] = now

    common = dict(
        particles=n,
        replicas=reps,
        kill_fraction=rc.kill_fraction,
        seed=rc.seed,
        level=0.95,
        max_iterations=rc.max_iterations,
        state=resume,
        on_iteration=on_iteration,
        replica_offset=lo,
    )

    basin = interface = float("nan")
    if rc.method == "tams":
        res = splitting.estimate(p.init, p.advance, p.score, horizon=horizon, **common)
    else:
        basin, interface = _pilot(p, cfg)

        def on_flux(fraction: float):
            now = time.perf_counter()
            if progress and (now - clock["last"] > 2 or fraction >= 1):
                print(f"  flux phase: {fraction:6.1%} of {flux_steps:,} SGD steps, {now - t0:.0f} s", file=sys.stderr)
                clock["last"] = now

        res = splitting.estimate_rate(
            p.init,
            p.advance,
            p.score,
            basin=basin,
            interface=interface,
            flux_trajectories=per_replica,
            flux_periods=flux_periods,
            max_periods=max(1, rc.max_steps // p.period_steps),
            on_flux=on_flux,
            **common,
        )
    wall = time.perf_counter() - t0
    tables.write_rare(out, cfg, eid, lo, hi, p, res, basin, interface, wall)
    path.unlink(missing_ok=True)
    return Outcome(res, basin, interface, wall, False)
