"""Fixed-horizon TAMS as a ``jumpsim rare`` estimator: P(target within train.steps), the replica mean with its
delta-log-normal interval, and the curve p(T')."""

from __future__ import annotations

import math

import numpy as np

from .. import splitting
from ..intervals import level_bound, relative_se, replica_interval
from . import base


def check(cfg) -> None:
    """Any schedule and optimizer: TAMS estimates P within the horizon of whatever dynamics the config has."""


def work(p, cfg, reps: int, slots: int) -> base.Work:
    rc = cfg.rare
    horizon = cfg.train.steps // p.period_steps
    return base.Work(
        phase="initial population",
        steps=rc.particles * reps * horizon * p.period_steps,
        rest=(
            f", then ~{rc.kill_fraction:.0%} of it per iteration, ~{math.log(10) / rc.kill_fraction:.0f} iterations "
            "per decade of p: about one more initial population per decade"
        ),
        width=slots,
        sharded=True,
    )


def run(p, cfg, engine: dict, on_flux=None) -> base.Estimate:
    horizon = cfg.train.steps // p.period_steps
    res = splitting.estimate(p.init, p.advance, p.score, horizon=horizon, weight=p.weight, **engine)
    return base.Estimate(res, float("nan"), float("nan"))


def columns(res: splitting.TamsResult, p, basin: float, interface: float) -> base.Columns:
    every = p.period_steps
    c = np.asarray(res.replica_p_curve, np.float64)  # (R, T+1) per period
    rr, tt = np.meshgrid(np.arange(c.shape[0]), np.arange(c.shape[1]), indexing="ij")
    reps = np.asarray(res.replica_ids, np.int32)
    return base.Columns(
        row={
            "basin": None,
            "interface": None,
            "flux_crossings": None,
            "flux_exposure_steps": None,
            "flux_overflow": None,
            "period_capped": 0,
            "seed_steps": int(res.particle_steps) * p.period_cost + p.setup_steps,
            "proposal": base.proposal_of(p),
        },
        replicas={
            "p": np.asarray(res.replica_p, np.float64),
            "reached": np.asarray(res.reached, np.int32),
            "flux_crossings": None,
            "flux_exposure_steps": None,
            **base.weight_columns(res),
        },
        curve={"replica": reps[rr.ravel()], "step": (tt.ravel() * every).astype(np.int64), "p": c.ravel()},
    )


def owes_levels(reps) -> np.ndarray:
    return np.ones(len(reps), bool)


def summarize(g, reps, lv, level: float) -> dict:
    rp = reps["p"].to_numpy()
    rec = {}
    if lv is not None:
        b = level_bound(lv.columns, lv.to_numpy(), level)
        rec.update(bound_level=b.z, p_bound=b.high)
    p, lo, hi = replica_interval(rp, level)
    rec.update(base.weight_diagnostics(reps, np.ones(len(rp))))
    rec.update(
        p=p,
        p_low=lo,
        p_high=hi,
        p_rel_se=relative_se(rp),
        rate=np.nan,
        rate_low=np.nan,
        rate_high=np.nan,
        p_ab=np.nan,
        flux=np.nan,
        flux_crossings=0,
    )
    return rec


def log_se(r: dict, of: str, z: float) -> tuple[float, float]:
    """The replicas' relative standard error is the standard error of log p (delta method)."""
    return r["p"], r.get("p_rel_se", np.nan)


def lines(r: dict, pct: str) -> list[str]:
    out = [base.head_line(r), *base.weight_line(r)]
    if base.unresolved(r):
        out.append(f"    {base.event(r)} not resolved: no replica reached the target")
    else:
        out.append(base.p_line(r, pct))
    # few replicas leave the interval's upper end loose (up to 1): the level curve's bound, tighter, is shown too
    loose = r.get("p_bound") is not None and r.get("p_high") is not None and r["p_bound"] < r["p_high"]
    weak = r.get("resolved") is False or loose
    return out + base.bound_lines(r, pct, weak=weak) + base.bracket_line(r, pct) + base.extinct_lines(r)


METHOD = base.Method(
    name="tams",
    estimates_rate=False,
    check=check,
    work=work,
    run=run,
    columns=columns,
    owes_levels=owes_levels,
    summarize=summarize,
    log_se=log_se,
    lines=lines,
)
