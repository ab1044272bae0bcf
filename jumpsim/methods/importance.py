"""Plain importance sampling as a ``jumpsim rare`` estimator (``--method is``): N independent trajectories per
replica from the start to the horizon under ``rare.proposal``, P(target within train.steps) = mean(likelihood
ratio x 1{reached}), with the replica mean's interval as TAMS's. With the uniform proposal it is brute force."""

from __future__ import annotations

from .. import splitting
from . import base, tams


def work(p, cfg, reps: int, slots: int) -> base.Work:
    horizon = cfg.train.steps // p.period_steps
    return base.Work(
        phase="trajectories",
        steps=cfg.rare.particles * reps * horizon * p.period_cost,
        rest="",
        width=slots,
        sharded=True,
    )


def run(p, cfg, engine: dict, on_flux=None) -> base.Estimate:
    engine = {k: v for k, v in engine.items() if k not in ("kill_fraction", "max_iterations")}
    horizon = cfg.train.steps // p.period_steps
    res = splitting.estimate_is(p.init, p.advance, p.score, p.weight, horizon=horizon, **engine)
    return base.Estimate(res, float("nan"), float("nan"))


METHOD = tams.METHOD._replace(name="is", work=work, run=run)
