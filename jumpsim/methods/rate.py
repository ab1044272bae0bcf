"""The rate form as a ``jumpsim rare`` estimator: escape rate per step k = flux x P(target before basin), from
replicas that each run their own flux phase and their own AMS from their own crossings; P(within T) =
1 - exp(-k T). Needs a stationary dynamics (constant learning rate and ridge)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import dynamics, splitting
from ..errors import ConfigError
from ..intervals import MIN_CROSSING_REPLICAS, RateEstimate, level_bound, rate_estimate
from ..text import fmt, fmt_rate
from . import base

# default first interface: at least this score (sigma_r down by (sigma_r(start)/tau)^0.2, a factor ~3 at
# tau = 1e-2), above the band the score fluctuates in at small eta. An interface inside that band is crossed
# mostly by fluctuations that never escape, while escapes start with a sudden collapse of sigma_r; a flux phase
# then holds few or none of the crossings that matter, and the estimate is low with an interval that cannot
# know (measured 20x low at eta 0.13 on the rank-3 escape). Above it, too few crossings say so instead.
INTERFACE_FLOOR = 0.2


def check(cfg) -> None:
    if cfg.train.lr.kind != "constant" or cfg.train.ridge.kind != "constant":
        raise ConfigError(
            "rare.method", '"rate" needs constant train.lr and train.ridge (a rate of a stationary dynamics)'
        )


def flux_per_replica(cfg) -> int:
    """Flux trajectories of each replica: rare.flux_seeds shared out over the replicas (rounded up)."""
    return -(-cfg.rare.flux_seeds // cfg.rare.replicas)


def flux_periods(cfg, period_steps: int) -> int:
    return (cfg.rare.flux_steps or cfg.train.steps) // period_steps


def work(p, cfg, reps: int, slots: int) -> base.Work:
    per_replica = flux_per_replica(cfg)
    return base.Work(
        phase="flux phase",
        steps=per_replica * reps * flux_periods(cfg, p.period_steps) * p.period_steps,
        rest=", then AMS from its crossings until the target or the basin",
        width=splitting.flux_batch(reps, per_replica),
        sharded=False,
    )


def pilot(p, cfg) -> tuple[float, float]:
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


def run(p, cfg, engine: dict, on_flux=None) -> base.Estimate:
    basin, interface = pilot(p, cfg)
    res = splitting.estimate_rate(
        p.init,
        p.advance,
        p.score,
        basin=basin,
        interface=interface,
        flux_trajectories=flux_per_replica(cfg),
        flux_periods=flux_periods(cfg, p.period_steps),
        max_periods=max(1, cfg.rare.max_steps // p.period_steps),
        on_flux=on_flux,
        weight=p.weight,
        flux_advance=p.flux_advance,
        **engine,
    )
    return base.Estimate(res, basin, interface)


def columns(res: splitting.RateResult, p, basin: float, interface: float) -> base.Columns:
    every = p.period_steps
    ams = int(res.particle_steps) - res.flux_exposure  # the flux phase runs plain SGD
    return base.Columns(
        row={
            "basin": basin,
            "interface": interface,
            "flux_crossings": res.flux_crossings,
            "flux_exposure_steps": res.flux_exposure * every,
            "flux_overflow": res.flux_overflow,
            "period_capped": int(res.period_capped),
            "seed_steps": res.flux_exposure * every + ams * p.period_cost + p.setup_steps,
            "proposal": base.proposal_of(p),
        },
        replicas={
            "p": np.asarray(res.replica_p_ab, np.float64),
            "reached": np.zeros(len(res.replica_p_ab), np.int32),
            "flux_crossings": np.asarray(res.replica_crossings, np.int64),
            "flux_exposure_steps": np.asarray(res.replica_exposure, np.int64) * every,
            **base.weight_columns(res),
        },
        curve=None,
    )


def owes_levels(reps) -> np.ndarray:
    """Replicas with crossings (the others have no AMS and no level curve)."""
    return (reps.flux_crossings.fillna(0) > 0).to_numpy()


def summarize(g, reps, lv, level: float) -> dict:
    rp = reps["p"].to_numpy()
    horizon = int(g.iloc[0].horizon)
    c, e = int(g.flux_crossings.sum()), float(g.flux_exposure_steps.sum())
    if reps.get("flux_crossings") is not None and reps.flux_crossings.notna().all():
        est = rate_estimate(reps.flux_crossings, reps.flux_exposure_steps, rp, level)
    else:  # written before schema 3 (replicas shared one pool of crossings): no honest interval
        p, flux = float(np.nanmean(rp)), c / e if e else np.nan
        est = RateEstimate(flux * p, np.nan, np.nan, p, np.nan, np.nan, flux)
    within = lambda x: -np.expm1(-x * horizon) if np.isfinite(x) else np.nan
    rec = base.weight_diagnostics(reps, reps.flux_crossings.fillna(0) if "flux_crossings" in reps else np.ones(len(rp)))
    if lv is not None and reps.get("flux_crossings") is not None:
        b = level_bound(lv.columns, lv.to_numpy(), level, reps.flux_crossings, reps.flux_exposure_steps)
        rec.update(bound_level=b.z, rate_bound=b.high, p_bound=within(b.high))
    rec.update(
        p_rel_se=np.nan,
        rate=est.rate,
        rate_low=est.rate_low,
        rate_high=est.rate_high,
        p=within(est.rate),
        p_low=within(est.rate_low),
        p_high=within(est.rate_high),
        p_ab=est.p_ab,
        flux=est.flux,
        flux_crossings=c,
    )
    return rec


def log_se(r: dict, of: str, z: float) -> tuple[float, float]:
    """Read off the rate's (or, compared by P, the probability's) interval: delta method on the log."""
    if of == "rate":
        return r["rate"], (np.log(r["rate_high"]) - np.log(r["rate_low"])) / (2 * z)
    return base.log_se_of_interval(r["p"], r["p_low"], r["p_high"], z)


def _rate_lines(r: dict, pct: str) -> list[str]:
    if r["rate"] is None:
        return []
    if base.unresolved(r):
        why = (
            f"no replica reached the target from its crossings ({r['flux_crossings']} in all; flux "
            f"{fmt_rate(r['flux'] or 0)})"
            if r["flux_crossings"]
            else "no crossing of the first interface in the flux phase"
        )
        bound = (
            f"; k <= {fmt_rate(r['rate_high'])} per step, the upper end of the flux's {pct} interval (every "
            "escape crosses the first interface)"
            if r["rate_high"] is not None
            else ""
        )
        return [f"    rate not resolved: {why}{bound}"]
    if r.get("resolved") is False:
        return [
            f"    rate {fmt_rate(r['rate'])} per step, not resolved (a few paths carry it); flux "
            f"{fmt_rate(r['flux'] or 0)} x P(target before basin) {fmt(r['p_ab'])}, {r['flux_crossings']} crossings"
        ]
    ci = (
        f"[0, {fmt_rate(r['rate_high'])}] ({pct}, only the flux's bound: see below"
        if r["rate_low"] == 0
        else f"[{fmt_rate(r['rate_low'])}, {fmt_rate(r['rate_high'])}] ({pct}"
        if r["rate_low"] is not None
        else "[?, ?] (no interval: written before jumpsim's schema 3, whose replicas shared crossings"
    )
    return [
        f"    rate {fmt_rate(r['rate'])} per step {ci}; flux {fmt_rate(r['flux'] or 0)} x "
        f"P(target before basin) {fmt(r['p_ab'])}, {r['flux_crossings']} crossings)"
    ]


def lines(r: dict, pct: str) -> list[str]:
    out = [base.head_line(r), *base.weight_line(r), *_rate_lines(r, pct)]
    flux_only = r["rate_low"] == 0
    if not base.unresolved(r):
        out.append(base.p_line(r, pct))
        if flux_only:
            out.append(
                f"    k = {fmt_rate(r['rate'])} rests on {r['flux_crossings']} crossing(s) of the first interface "
                f"in fewer than {MIN_CROSSING_REPLICAS} replicas: no "
                "interval, only the bound k <= flux (every escape crosses it); more rare.flux_seeds, "
                "rare.replicas or particles, or a lower rare.interface, to estimate the rate"
            )
    k = f"k <= {fmt_rate(r['rate_bound'])} per step, " if r.get("rate_bound") is not None else ""
    weak = flux_only or r.get("resolved") is False
    return out + base.bound_lines(r, pct, weak=weak, k=k) + base.bracket_line(r, pct) + base.extinct_lines(r)


METHOD = base.Method(
    name="rate",
    estimates_rate=True,
    check=check,
    work=work,
    run=run,
    columns=columns,
    owes_levels=owes_levels,
    summarize=summarize,
    log_se=log_se,
    lines=lines,
)
