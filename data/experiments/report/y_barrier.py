"""(y) The barrier below the rank-3 minimum: the saddle to rank 2, the path over it, and the slope of log k in
1 / eta that the escape theories predict from them, against the slopes (t) fitted."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jumpsim import dynamics, landscape, model
from jumpsim import setup as setup_lib
from jumpsim.config import load_one

import suite
from .fmt import NotRun
from .t_laws import RANGES

NAME = "y_barrier"
WIDE = "(j) ridge 0.001, < 50 % diverged"  # the key of B = 1's fit over the countable range
K = 3  # the rank the start has; the saddle leads to rank K - 1
END_LR = 0.09  # depth 4: the learning rate of the SGD escapes whose rank-2 end the saddle is sought toward
STARTS = (  # curve of (t), start file, ridge, depth, the learning rate of the SGD escape whose end the saddle is
    # sought toward (None: along the level sets of sigma_3; at depth 4 they end at an index-2 critical point
    # that does not lead to rank 2). 2-8 CPU-minutes each.
    ("(j) ridge 0.0005", suite.start_path(5e-4), 5e-4, 3, None),
    ("(j) ridge 0.001", suite.start_path(1e-3), 1e-3, 3, None),
    ("(j) ridge 0.002", suite.start_path(2e-3), 2e-3, 3, None),
    ("(p) depth 4", suite.start_path(depth=4), 1e-3, 4, END_LR),
)
COLUMNS = [
    "start_value", "start_data_loss", "barrier", "data_barrier_log", "curvature", "top_curvature", "noise",
    "b_linear", "b_log", "b_log_top", "b_path",
]  # fmt: skip


class YFacts(NamedTuple):
    rows: pd.DataFrame  # per start: curve, file, ridge, depth, the saddle's facts and landscape.Barrier's numbers
    fitted: dict  # curve -> (b, low, high) the Arrhenius slope of (t) (see compute for which range)


def compute(out: Path, laws: list[dict]) -> YFacts | NotRun:
    """Each start's barrier (landscape.barrier: minutes per start on a CPU), kept in OUT/y_barrier.parquet and
    recomputed only for a start whose file or settings (ridge, depth, END_LR) changed. ``laws``: t_laws.fit_laws of
    the escape curves (the fitted slopes beside the predicted ones)."""
    cache_path = out / f"{NAME}.parquet"
    cache = pd.read_parquet(cache_path) if cache_path.exists() else pd.DataFrame(columns=["curve", "sha"])
    rows = []
    for curve, path, ridge, depth, end_lr in STARTS:
        if not path.exists():
            continue
        # the start file and what the saddle search is given: a changed END_LR (or ridge, depth) recomputes
        sha = hashlib.sha256(path.read_bytes() + repr((ridge, depth, end_lr)).encode()).hexdigest()[:16]
        hit = cache[(cache.curve == curve) & (cache.sha == sha)]
        if len(hit):
            rows.append(hit.iloc[0].to_dict())
            continue
        t0 = time.perf_counter()
        rows.append(_barrier_row(curve, path, sha, ridge, depth, end_lr))
        print(f"(y) {curve}: barrier in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        if not suite._QUICK:  # kept at once: minutes of work per start
            keep = cache[~cache.curve.isin([r["curve"] for r in rows])]
            pd.concat([keep, pd.DataFrame(rows)], ignore_index=True).to_parquet(cache_path)
    if not rows:
        return NotRun(NAME, how="the start files rank3_start*.npz (`run.py --make-start`)")
    df = pd.DataFrame(rows)
    fitted = {}
    for law in laws:  # the ridges where < 5 % diverged; B = 2, 3, 4 of (s) and B = 1 (WIDE) where < 50 % did
        if "arrhenius" not in law["fits"]:
            continue
        q = law["fits"]["arrhenius"]["params"]
        slope = (q["slope"], float(q["slope_low"]), float(q["slope_high"]))
        if law["limit"] == (max(RANGES) if law["curve"].startswith("(s)") else min(RANGES)):
            fitted[law["curve"]] = slope
        if law["curve"] == "(j) ridge 0.001" and law["limit"] == max(RANGES):
            fitted[WIDE] = slope
    return YFacts(df, fitted)


def _barrier_row(curve: str, path: Path, sha: str, ridge: float, depth: int, end_lr: float | None) -> dict:
    cfg = suite.base_config()
    prob = suite.suite_problem(cfg)
    with np.load(path) as z:
        ws = [z[f"W{i + 1}"] for i in range(depth)]
    ls = landscape.landscape(
        prob.rows,
        prob.cols,
        prob.values,
        model.loss_scale(cfg.train.loss, prob.n_observed),
        ridge,
        [w.shape for w in ws],
    )
    end = None if end_lr is None else _escape_end(ls, path, ridge, depth, end_lr)
    b = landscape.barrier(ls, landscape.flatten(ws), K, sweeps=20 if suite._QUICK else 400, end=end)
    s = b.saddle
    sv = lambda x: np.linalg.svd(np.asarray(model.end_to_end(landscape.unflatten(ls, x))), compute_uv=False)  # noqa: E731
    return {
        "curve": curve,
        "file": path.name,
        "sha": sha,
        "ridge": ridge,
        "depth": depth,
        "saddle_value": s.value,
        "saddle_data_loss": s.data_loss,
        "saddle_sigma": s.sigma_k,
        "saddle_negative": s.negative,
        "saddle_index": s.index,
        "saddle_grad": s.grad_norm,
        "lower_value": float(b.path_values[-1]),
        "lower_sigma": float(sv(s.lower)[K - 1]),
        "upper_value": float(landscape.objective(ls, s.upper)),
        "start_sigmas": sv(landscape.flatten(ws))[:K].tolist(),
        "upper_sigmas": sv(s.upper)[:K].tolist(),
        "path_points": len(b.path),
        **{c: float(getattr(b, c)) for c in COLUMNS},
    }


def _escape_end(ls: landscape.Landscape, path: Path, ridge: float, depth: int, lr: float, seeds: int = 256):
    """Where an escape of SGD settles: seeds 0..`seeds` of SGD at `lr` from the start ``path`` (checks every 100
    steps) until three hold rank <= K - 1; the first of them, by gradient descent and Newton's method in float64,
    to the rank-(K - 1) minimum it fell into (flat (P,))."""
    over = [f"model.depth={depth}", f"model.init_file={path}", f"train.ridge={ridge}", f"train.lr={lr}"]
    cfg = load_one(suite.BASE, [*over, "model.init=file", f"run.seeds={seeds}", f"run.chunk={seeds}"])
    su = setup_lib.setup(cfg)
    step = jax.jit(jax.vmap(lambda s, t: dynamics.period(s, t, su.data, su.dynamics, su.detection)[0], (0, None)))
    xs = jax.vmap(lambda i: setup_lib.init_seed(i, su))(jnp.arange(seeds))
    for c in range(cfg.train.steps // cfg.detect.every):
        xs = step(xs, jnp.int32(c * cfg.detect.every))
        down = np.flatnonzero((np.asarray(xs.det.rank) <= K - 1) & ~np.asarray(xs.diverged))
        if len(down) >= 3:
            break
    else:
        raise RuntimeError(f"(y) {path.name}: fewer than 3 of {seeds} seeds reached rank {K - 1} at eta {lr}")
    x = landscape.flatten([np.asarray(w[down[0]], np.float64) for w in xs.params])
    with dynamics.float64_scope():
        return landscape.critical_point(ls, landscape.descend(ls, x, 0.5, 200_000, every=1000)[-1])


def render(y: YFacts | NotRun) -> list[str]:
    head = ["## (y) The barrier below the rank-3 minimum, and the slopes the theories predict from it", ""]
    if isinstance(y, NotRun):
        return head + y.lines()
    lines = head + [
        "The diffusion theories read the slope b of log k = a - b / eta off the landscape: the loss barrier dF from "
        "the minimum to the saddle, the curvature H_a of the loss at the minimum along the escape direction, and the "
        "noise. Computed here in float64 for each start (`jumpsim.landscape`): the saddle to rank 2 (the highest "
        "minimum of F = loss + ridge |W|^2 on the level sets of sigma_3, refined by Newton's method into a critical "
        "point; its Hessian's negative eigenvalues counted; where those level sets lead to a higher-index point, "
        "as at depth 4, the top of the string between the start and the rank-2 minimum an SGD escape settles in "
        f"(eta {END_LR:g}), refined the same way), the minimum-energy path from the start over it (string "
        "method, from the start to where descent from the saddle ends at rank 2), the Hessian at the start along "
        "the path's first direction (H_a; the largest eigenvalue h_top beside it), and SGD's own noise there: the "
        "variance C_a of one draw's gradient along that direction. Predicted b for B = 1 (times B for a batch B):",
        "",
        "- linear barrier, noise covariance H / B (diffusion theory of SGD, Xie et al.): b = 2 dF / H_a (the "
        "saddle's curvature |H_b| enters only through a weight between 1 / H_a and 1 / |H_b|; |H_b| / H_a is given "
        "below);",
        "- log-loss barrier, noise 2 L H / B (Mori et al.): b = dlog L / h*, L the data loss, h* the Hessian along "
        "the escape direction (their h*; with h* = h_top, the largest eigenvalue, beside it);",
        "- no model of the noise: one-dimensional diffusion along the path with the measured C(s) along its tangent, "
        "b = 2 * integral of dF / C along the path from the start to its highest point.",
        "",
        "| start | dF (saddle F) | saddle: sigma_3, negative eigenvalue, index | dlog L | H_a, h_top | C_a (2 L H_a) "
        "| b: linear, H / B | b: log-loss, h* = H_a (h_top) | b: measured noise | b fitted in (t) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in y.rows.itertuples():
        fit = y.fitted.get(r.curve)
        fit_s = f"{fit[0]:.2f} [{fit[1]:.2f}, {fit[2]:.2f}]" if fit else "-"
        lines.append(
            f"| {r.curve} (`{r.file}`) | {r.barrier:.3g} ({r.saddle_value:.5g}) | {r.saddle_sigma:.3g}, "
            f"{r.saddle_negative:.2g}, {int(r.saddle_index)} | {r.data_barrier_log:.2f} | {r.curvature:.2g}, "
            f"{r.top_curvature:.2g} | {r.noise:.2g} ({2 * r.start_data_loss * r.curvature:.2g}) | {r.b_linear:.2f} | "
            f"{r.b_log:,.0f} ({r.b_log_top:.2f}) | {r.b_path:,.0f} | {fit_s} |"
        )
    base = y.rows[y.rows.curve == "(j) ridge 0.001"]
    for b in (2, 3, 4):
        fit = y.fitted.get(f"(s) B = {b}")
        if len(base) and fit:
            r = base.iloc[0]
            lines.append(
                f"| (s) B = {b} (`{r.file}`; < 50 % diverged) | as ridge 0.001 | | | | | {b * r.b_linear:.2f} | "
                f"{b * r.b_log:,.0f} ({b * r.b_log_top:.2f}) | {b * r.b_path:,.0f} | {fit[0]:.2f} [{fit[1]:.2f}, "
                f"{fit[2]:.2f}] |"
            )
    lines += ["", *_reading(y), ""]
    return lines


def _span(v, f: str = ".2g") -> str:
    """min-max of ``v`` (one value where they are equal)."""
    v = np.asarray(v, float)
    return f"{v.min():{f}}" + (f"-{v.max():{f}}" if v.max() > v.min() else "")


def _reading(y: YFacts) -> list[str]:
    r = y.rows
    n, idx1, joined = len(r), int((r.saddle_index == 1).sum()), int((r.lower_sigma < 1e-6).sum())
    fits = [(row, y.fitted[row.curve]) for row in r.itertuples() if row.curve in y.fitted]
    higher = bool((r.lower_value > r.start_value).all())
    same = [np.allclose(x.upper_sigmas, x.start_sigmas, rtol=1e-3) for x in r.itertuples()]
    out = [
        f"The saddle: an index-1 critical point for {idx1} of {n} starts (gradient norm <= {r.saddle_grad.max():.1g}, "
        f"|negative eigenvalue| {_span(-r.saddle_negative / r.curvature)} H_a); descent from it reaches rank 2 on one "
        f"side ({joined} of {n}), where F is {_span(r.lower_value - r.start_value, '+.2g')} against the start"
        + (
            ": the rank-2 minimum is the higher one, so an escape climbs in F, and the barrier back is only "
            if higher
            else "; the barrier back is "
        )
        + f"{_span(r.saddle_value - r.lower_value)}. On the other side descent ends at a rank-3 minimum "
        + (
            "that is the start"
            if all(same)
            else f"other than the start for {n - sum(same)} of {n} (singular values "
            f"differ, F by {_span(np.abs(r.upper_value - r.start_value), '.1g')}): the saddle sits beyond a "
            "neighbouring rank-3 minimum"
        )
        + f". The saddle's sigma_3 is {_span(r.saddle_sigma)}, "
        f"{_span([x.saddle_sigma / x.start_sigmas[K - 1] for x in r.itertuples()])} of the start's: the climb is the "
        "third singular value shrinking against the data term it fitted.",
        "",
    ]
    if fits:
        ratio = lambda col: np.array([getattr(row, col) / f[0] for row, f in fits])  # noqa: E731
        lin, path, log = ratio("b_linear"), ratio("b_path"), ratio("b_log")
        model_noise = (r.noise / (2 * r.start_data_loss * r.curvature)).to_numpy()
        base = y.fitted.get(WIDE)
        b_ratio = {b: y.fitted[f"(s) B = {b}"][0] / base[0] for b in (2, 3, 4) if base and f"(s) B = {b}" in y.fitted}
        far = path.min() > 10 and log.min() > 10
        out += [
            f"Against the slopes fitted in (t): the linear-barrier form with noise H / B predicts {_span(lin)}x the "
            "fitted b" + (" (the right size)" if lin.min() > 1 / 3 and lin.max() < 3 else "") + ", but that noise "
            "is not SGD's here: along the escape direction the measured C_a is "
            f"{_span(r.curvature / r.noise, ',.0f')}x smaller than H_a, and {_span(model_noise)}x the 2 L H_a of the "
            "log-loss picture (the minimum fits the observed entries almost exactly, so L is small). With the noise "
            f"SGD has, diffusion along the path over the saddle predicts {_span(path, ',.3g')}x the fitted slope ("
            + "; ".join(f"{row.curve}: {v:,.3g}x" for (row, _), v in zip(fits, path))
            + "), and "
            f"the log-loss form with h* along the escape direction {_span(log, ',.3g')}x"
            + (
                ": rates smaller than the measured ones by a factor exp(-(b_pred - b) / eta), with b_pred - b in the "
                "thousands, at every learning rate measured."
                if far
                else "."
            )
            + f" The log-loss form with h* the largest eigenvalue gives {_span(ratio('b_log_top'))}x the fitted b, but "
            "that eigenvalue's direction is not the escape direction (the Hessian along the escape direction is "
            f"{_span(r.top_curvature / r.curvature, ',.0f')}x smaller)."
            + (
                " The escapes measured are therefore not diffusion over this saddle: the collapse of (o) and (q), one "
                "SGD step that takes sigma_3 from the basin to near zero, lands beyond it in one move."
                if far
                else ""
            )
            + (
                " Every form above predicts b proportional to B; (s) measured "
                + ", ".join(f"b_{b} / b_1 = {v:.2f}" for b, v in b_ratio.items())
                + "."
                if b_ratio
                else ""
            ),
        ]
    return out
