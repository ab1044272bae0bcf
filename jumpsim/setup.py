"""An experiment's records from its config: ``Config`` -> ``Setup`` (the problem on the device, the SGD and
detector settings, and the shared start, converged by gradient descent for ``model.init = "gd"``).

The per-seed functions of ``dynamics`` take these records, never the whole ``Config``; ``setup`` builds them
once per experiment, and ``init_seed`` is where a seed's state at step 0 comes from.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import files, model, schedules
from . import problem as problem_lib
from .config import Config
from .dynamics import Data, Detection, Dynamics, Optimizer, SeedState, init, observe, seed_keys, with_float64
from .errors import ConfigError

# a gd start is a critical point when the norm of the full gradient (data + ridge, in the run's dtype) is at most
# this: float32 GD on the suite's problems levels off near 1e-6, and an unconverged start (e.g. 20 % observed,
# ridge 1e-3, the default gd_steps) sits at ~3e-3
MINIMUM_GRAD_NORM = 1e-4


def device_data(prob: problem_lib.Problem, dtype) -> Data:
    return Data(
        jnp.asarray(prob.rows, jnp.int32),
        jnp.asarray(prob.cols, jnp.int32),
        jnp.asarray(prob.values, dtype),
        jnp.asarray(prob.target, dtype),
        jnp.asarray(prob.mask),
    )


class Setup(NamedTuple):
    """Everything the per-seed functions need for one experiment. ``start``: the shared start
    (init = "file" or "gd"), else None (each seed draws a gaussian start); ``info``: facts about a
    gd start for the experiments table."""

    data: Data
    dynamics: Dynamics
    detection: Detection
    shapes: tuple[tuple[int, int], ...]
    init_scale: float
    start: model.Params | None
    info: dict


def dynamics_of(cfg: Config, n_observed: int) -> Dynamics:
    tc = cfg.train
    if tc.sampling == "without_replacement" and tc.batch is not None and tc.batch > n_observed:
        raise ConfigError(
            "train.batch", f"must be <= the {n_observed} observed entries to draw without replacement (got {tc.batch})"
        )
    opt = Optimizer(tc.optimizer, tc.momentum, tc.nesterov, tc.b1, tc.b2, tc.eps)
    scale = model.loss_scale(tc.loss, n_observed)
    lr, ridge = schedules.make(tc.lr), schedules.make(tc.ridge)
    return Dynamics(tc.batch, scale, lr, ridge, opt, cfg.detect.every, cfg.run.dtype, tc.sampling)


def detection_of(cfg: Config) -> Detection:
    d = cfg.detect
    r = cfg.problem.rank if d.absorbing_rank is None else d.absorbing_rank
    bound = float("inf") if d.norm_bound is None else d.norm_bound
    return Detection(d.threshold, d.relative, d.persist, d.max_events, d.absorbing, r, d.balance_tol, bound)


@with_float64
def setup(cfg: Config, prob: problem_lib.Problem | None = None) -> Setup:
    """The records of one experiment; runs the gradient descent of an init = "gd" start
    (raises ConfigError naming model.gd_lr if it diverges)."""
    prob = problem_lib.make(cfg) if prob is None else prob
    dtype = jnp.dtype(cfg.run.dtype)
    data = device_data(prob, dtype)
    dyn, detection = dynamics_of(cfg, prob.n_observed), detection_of(cfg)
    n, m = prob.shape
    mc = cfg.model
    shapes = tuple(files.layer_shapes(n, m, mc.depth, mc.width))
    start, info = None, {}
    if mc.init == "file":
        start = tuple(jnp.asarray(w, dtype) for w in files.load_weights(cfg.resolve(mc.init_file), list(shapes)))
    elif mc.init == "gd":
        start, info = _gd_start(cfg, data, dyn, detection)
    return Setup(data, dyn, detection, shapes, mc.init_scale, start, info)


# gd starts already computed in this process, by everything they depend on: a sweep over the learning rate (or
# anything else that leaves the problem, the model and the ridge at step 0 alone) runs gradient descent once
_GD_STARTS: dict[tuple, model.Params] = {}


def _gd_params(cfg: Config, data: Data, dyn: Dynamics) -> model.Params:
    """model.gd_steps of full-batch gradient descent from the gaussian start of model.seed at the ridge of step 0."""
    mc, ridge = cfg.model, cfg.train.ridge.value_at(0)
    dtype = jnp.dtype(cfg.run.dtype)
    arrays = tuple(np.asarray(x).tobytes() for x in (data.rows, data.cols, data.values, data.target))
    key = (arrays, mc.depth, mc.width, mc.init_scale, mc.seed, mc.gd_lr, mc.gd_steps, ridge, dyn.scale, str(dtype))
    if key not in _GD_STARTS:
        n, m = data.target.shape
        p0 = model.init_gaussian(
            jax.random.key(mc.seed, impl="threefry2x32"), n, m, mc.depth, mc.width, mc.init_scale, dtype
        )
        gd = functools.partial(model.gradient_descent, scale=dyn.scale, lr=mc.gd_lr, ridge=ridge, steps=mc.gd_steps)
        if len(_GD_STARTS) >= 16:
            _GD_STARTS.pop(next(iter(_GD_STARTS)))
        _GD_STARTS[key] = jax.jit(gd)(p0, data.rows, data.cols, data.values)
    return _GD_STARTS[key]


def _gd_start(cfg: Config, data: Data, dyn: Dynamics, detection: Detection) -> tuple[model.Params, dict]:
    mc = cfg.model
    ridge = cfg.train.ridge.value_at(0)
    p = _gd_params(cfg, data, dyn)
    g = model.full_grads(p, data.rows, data.cols, data.values, dyn.scale)
    gnorm = float(jnp.sqrt(sum(jnp.sum((gi + 2 * ridge * w) ** 2) for gi, w in zip(g, p))))
    finite, obs = observe(p, data, detection, with_sv=True)
    if not bool(finite):
        raise ConfigError(
            "model.gd_lr", f"gradient descent to the start minimum diverged at gd_lr = {mc.gd_lr:g}; use a smaller step"
        )
    sv = np.asarray(obs.sv, np.float64).tolist()
    if mc.require_minimum and not gnorm <= MINIMUM_GRAD_NORM:
        raise ConfigError(
            "model.require_minimum",
            f"the gd start is not a critical point: gradient norm {gnorm:.2g} > {MINIMUM_GRAD_NORM:g} after "
            f"model.gd_steps = {mc.gd_steps:,} at model.gd_lr = {mc.gd_lr:g} (rank {int(obs.rank)}); raise gd_steps",
        )
    return p, {"start_grad_norm": gnorm, "start_rank": int(obs.rank), "start_singular_values": sv}


def start_note(cfg: Config, info: dict) -> str | None:
    """One line on a gd start (its rank and gradient norm), with a warning where it is not a critical point;
    None for other starts."""
    if cfg.model.init != "gd":
        return None
    g, r = info["start_grad_norm"], info["start_rank"]
    line = f"{cfg.name} [{cfg.config_id}]: gd start of rank {r}, gradient norm {g:.2g}"
    if g <= MINIMUM_GRAD_NORM:
        return line + " (a critical point)"
    return (
        line + f": WARNING not a critical point (> {MINIMUM_GRAD_NORM:g}); its statistics describe the relaxation "
        "toward a minimum, not the minimum: raise model.gd_steps, or set model.require_minimum = true to refuse"
    )


def initial_params(su: Setup, init_key: jax.Array) -> model.Params:
    """The shared start, or a gaussian start drawn from the seed's init key."""
    if su.start is not None:
        return su.start
    (width, m), n = su.shapes[0], su.shapes[-1][0]
    return model.init_gaussian(init_key, n, m, len(su.shapes), width, su.init_scale, jnp.dtype(su.dynamics.dtype))


def init_seed(seed_id, su: Setup) -> SeedState:
    """State of seed ``seed_id`` at step 0 (what ``jumpsim run`` simulates from)."""
    init_key, step_key = seed_keys(seed_id)
    return init(initial_params(su, init_key), step_key, su.data, su.dynamics, su.detection)


def start_facts(ws: Sequence[np.ndarray], cfg: Config, ridge: float | None = None) -> dict:
    """How good a start (layers W_1 ... W_L) is for ``cfg``'s problem, loss and rank threshold, in numpy float64:
    its rank and singular values (A = W_L ... W_1), the norm of the full-batch gradient of the data loss plus
    2 ridge W (0 at a critical point; ``ridge`` default: the config's at step 0), and the train and test MSE."""
    prob = problem_lib.make(cfg)
    thr = cfg.detect.threshold
    ridge = cfg.train.ridge.value_at(0) if ridge is None else ridge
    scale = model.loss_scale(cfg.train.loss, prob.n_observed)
    ws = [np.asarray(w, np.float64) for w in ws]
    a = ws[0]
    for w in ws[1:]:
        a = w @ a
    resid = np.zeros_like(a)
    resid[prob.rows, prob.cols] = a[prob.rows, prob.cols] - prob.values
    g_a = 2.0 * scale * resid / prob.n_observed  # d(loss)/dA
    sq = 0.0
    for l, w in enumerate(ws):
        below = np.eye(ws[0].shape[1])
        for v in ws[:l]:
            below = v @ below
        above = np.eye(ws[-1].shape[0])
        for v in ws[l + 1 :]:
            above = v @ above
        sq += float(np.sum((above.T @ g_a @ below.T + 2.0 * ridge * w) ** 2))
    sv = np.linalg.svd(a, compute_uv=False)
    test = ~prob.mask
    return {
        "rank": int(np.sum(sv > thr)),
        "singular_values": sv.tolist(),
        "grad_norm": math.sqrt(sq),
        "train_mse": float(np.mean(resid[prob.rows, prob.cols] ** 2)),
        "test_mse": float(np.mean((a - prob.target)[test] ** 2)) if test.any() else float("nan"),
        "ridge": ridge,
        "threshold": thr,
    }
