"""The experiment suite's reusable analysis: functions of configs, start files and dataset tables.

Nothing here knows where the suite keeps its files or how the report words its results: paths and
configs come in as arguments, tables (``jumpsim.read_dataset`` dicts, ``jumpsim.stats`` frames) go
out. These are candidates for the jumpsim package itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jumpsim import dynamics, model, spectrum, stats
from jumpsim import problem as problem_lib

BASIN = 0.25  # a check is in the basin while sigma_3 >= this fraction of its first value
LOSS_BINS = (0.0, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, np.inf)  # train-loss bins of collapse_precursor
HAZARD_FALLS = (1.1, 2.0, 10.0)  # one-step falls of sigma_3 counted per state (factor sigma_3 / sigma_3 after)
FIT_MAX_DIVERGED = 0.05  # curve_fits uses the learning rates where fewer seeds diverged


# ------------------------------------------------------------------------------------------
# the problem and its gradient-descent minima


def problem_of(cfg) -> problem_lib.Problem:
    """The matrix-completion problem of a config (its [problem] section)."""
    p = cfg.problem
    return problem_lib.generate(p.n, p.m, p.rank, p.observed, p.seed)


def start_facts(path: Path, cfg, ridge: float | None = None) -> dict:
    """Rank, singular values and residual gradient of a start file (layers W1 ... WL), in numpy float64:
    A = W_L ... W_1 and the full-batch gradient of the mean squared error over the observed entries plus
    2 ridge W, for the problem, loss and rank threshold of ``cfg`` (``ridge`` default: the ridge of ``cfg``
    at step 0). Also the train and test MSE of A."""
    prob = problem_of(cfg)
    thr = cfg.detect.threshold
    ridge = cfg.train.ridge.value_at(0) if ridge is None else ridge
    scale = 1.0 if cfg.train.loss == "mean" else float(prob.n_observed)
    with np.load(path) as z:
        ws = [np.asarray(z[f"W{l + 1}"], np.float64) for l in range(len(z.files))]
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


def full_batch_gd(ws, prob: problem_lib.Problem, lr: float, ridge: float, steps: int, scale: float = 1.0):
    """``steps`` steps of full-batch gradient descent on the observed entries of ``prob`` from the layers ``ws``
    (W_1 first), W <- W - lr (G + 2 ridge W), loss scale * mean squared error, products at HIGHEST precision,
    in the dtype of ``ws`` (the recipe of ``model.init = "gd"``)."""
    hi = jax.lax.Precision.HIGHEST

    def loss(p, rows, cols, vals):
        a = p[0]
        for w in p[1:]:
            a = jax.numpy.matmul(w, a, precision=hi)
        return scale * jax.numpy.mean((a[rows, cols] - vals) ** 2)

    def gd(ws, rows, cols, vals):
        def body(p, _):
            g = jax.grad(loss)(p, rows, cols, vals)
            return tuple(w - lr * (gi + 2.0 * ridge * w) for w, gi in zip(p, g)), None

        return jax.lax.scan(body, ws, None, length=steps)[0]

    rows, cols = jax.numpy.asarray(prob.rows), jax.numpy.asarray(prob.cols)
    return jax.jit(gd)(ws, rows, cols, jax.numpy.asarray(np.asarray(prob.values), ws[0].dtype))


# ------------------------------------------------------------------------------------------
# brute-force tables


def configs_with_runs(data: dict):
    """(config_id, config dict, runs of that config) for every config of a dataset that has runs."""
    r = data["runs"]
    for cid, c in zip(data["experiments"].config_id, data["experiments"].config):
        rr = r[r.config_id == cid]
        if not rr.empty:  # not simulated (yet) otherwise
            yield cid, json.loads(c), rr


def n_div(rr: pd.DataFrame) -> int:
    """How many of the runs ``rr`` diverged."""
    return int((rr.status == "diverged").sum())


def down_rate(exp_: pd.DataFrame, counts: pd.DataFrame, cid: str, rank: int) -> tuple[int, int, float, float]:
    """(down-jumps out of ``rank``, steps spent at ``rank``, 95 % Poisson interval) of one config,
    from ``stats.exposure``."""
    sel = (counts.config_id == cid) & (counts.rank_before == rank) & (counts.rank_after < rank)
    cnt = int(counts[sel]["count"].sum())
    e = int(exp_[(exp_.config_id == cid) & (exp_["rank"] == rank)].exposure_steps.sum())
    lo, hi = stats.poisson_rate_ci(cnt, e)
    return cnt, e, lo, hi


def passage(fp: pd.DataFrame, cid: str, level: int, start: int | None = None):
    """The first_passage row of one config to rank <= level (from ``start``), or None."""
    g = fp[(fp.config_id == cid) & (fp.level == level)]
    if start is not None:
        g = g[g.start_rank == start]
    return g.iloc[0] if len(g) else None


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether the intervals ``a`` and ``b`` share a point."""
    return a[0] <= b[1] and b[0] <= a[1]


def first_escape(data: dict) -> tuple[int, int] | None:
    """(seed, step) of the earliest-numbered seed of a dataset that reached rank <= 2, or None."""
    ev = data["events"]
    down = ev[(ev.direction == "down") & (ev.rank_after <= 2)]
    if down.empty:
        return None
    seed = int(down.seed.min())
    return seed, int(down[down.seed == seed].step.min())


def escape_rows(data: dict, **extra) -> list[dict]:
    """One row per config of a dataset started at a rank-3 minimum: brute-force P(rank <= 2 within T), the
    escape rate (first passage to rank <= 2 per step before it: ``count``, ``exposure``, ``rate*``; each
    seed once), all 3 -> 2 jumps (``jumps``, repeats of a seed included), and the divergence counts
    (``extra`` is added to every row)."""
    r, pas, ev = data["runs"], data["passages"], data["events"]
    fp = stats.first_passage(r, pas)
    fr = stats.first_passage_rate(r, pas)
    fr = fr[(fr.start_rank == 3) & (fr.level == 2)].set_index("config_id")
    exp_, counts = stats.exposure(r, ev)
    rows = []
    for cid, c, rr in configs_with_runs(data):
        f = passage(fp, cid, 2, 3)
        jumps = down_rate(exp_, counts, cid, 3)[0]
        q = fr.loc[cid]
        cnt, e, lo, hi = int(q["count"]), int(q.exposure_steps), float(q.rate_low), float(q.rate_high)
        div = rr.status == "diverged"
        rows.append(
            {
                **extra,
                "eta": float(c["train"]["lr"]),
                "config_id": cid,
                "seeds": len(rr),
                "horizon": int(rr.horizon.max()),
                "diverged": int(div.sum()),
                "escaped_then_diverged": int((div & (rr.min_rank <= 2)).sum()),
                "reached": int(f.k),
                "p": float(f.p),
                "p_low": float(f.p_low),
                "p_high": float(f.p_high),
                "count": cnt,
                "exposure": e,
                "rate": cnt / e if e else float("nan"),
                "rate_low": lo,
                "rate_high": hi,
                "jumps": jumps,
                "packs": int(rr.pack.nunique()) if "pack" in rr else 1,
                "seed_steps": len(rr) * int(rr.horizon.max()),
            }
        )
    return rows


def curve_fits(cv: pd.DataFrame, max_diverged: float = FIT_MAX_DIVERGED) -> dict:
    """Per ridge of an escape curve (rows of ``escape_rows`` with a ``ridge`` column): the quasi-Poisson
    Arrhenius fit over the learning rates where fewer than ``max_diverged`` of the seeds diverged (``fit``,
    with those ``etas``; at least 3 of them and one escape), and for contrast the plain fit over all of them
    (``all``; None with fewer than 3). Near the edge of divergence the escapes ride on the divergent
    excursions, so those learning rates do not measure the escape law."""
    fits = {}
    for ridge, g in cv.groupby("ridge"):
        small = g[g.diverged / g.seeds < max_diverged]
        if len(small) >= 3 and small["count"].sum() > 0:
            fits[ridge] = {
                "fit": stats.arrhenius_fit(1 / small.eta, small["count"], small.exposure, quasi=True),
                "etas": small.eta.tolist(),
                "all": stats.arrhenius_fit(1 / g.eta, g["count"], g.exposure) if len(g) > 2 else None,
            }
    return fits


# ------------------------------------------------------------------------------------------
# splitting estimates


def splitting_rows(data: dict) -> pd.DataFrame:
    """Pooled splitting estimates of a dataset (``stats.splitting``) with the steps each spent, and for the
    rate form the first interface (score) it used."""
    sp = stats.splitting(data["rare"], data["rare_replicas"], 0.95, data["rare_iterations"], data["rare_levels"])
    iface = data["rare"].groupby("estimate_id").interface.first()
    return sp.assign(interface=sp.estimate_id.map(iface))


def log_rel_error(low: float, high: float) -> float:
    """Relative error that a 95 % interval admits: half its width on the log scale over 1.96 (NaN if it reaches 0).
    For the splitting estimates (log-normal intervals, wide where a few replicas carry the mean) this is the
    error to compare costs at, not the replicas' standard error, which their skew makes too small."""
    return float(np.log(high / low) / (2 * 1.96)) if low > 0 and high > 0 else float("nan")


def level_wide(data: dict, row) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The replica rows of one pooled estimate (a row of ``splitting_rows``) and their (replica x z) level
    table (``stats.level_table``; None without one)."""
    reps = data["rare_replicas"]
    reps = reps[(reps.config_id == row.config_id) & (reps.estimate_id == row.estimate_id)].sort_values("replica")
    return reps, stats.level_table(data["rare_levels"], reps, row.method)


def level_bound_row(data: dict, row) -> tuple[stats.LevelBound | None, float]:
    """The level bound of one pooled estimate (a row of ``splitting_rows``), and the log10 sd of its replicas'
    estimates at the bound's level."""
    reps, wide = level_wide(data, row)
    if wide is None:
        return None, float("nan")
    rate = () if row.method == "tams" else (0.95, reps.flux_crossings, reps.flux_exposure_steps)
    b = stats.level_bound(wide.columns, wide.to_numpy(), *rate)
    if not b.z == b.z:
        return None, float("nan")
    x = wide[wide.columns[np.argmin(np.abs(wide.columns - b.z))]].dropna().to_numpy()
    return b, float(np.log10(x).std(ddof=1)) if len(x) > 1 else float("nan")


# ------------------------------------------------------------------------------------------
# collapses of sigma_3


def sigma3_frame(traces: pd.DataFrame) -> pd.DataFrame:
    """seed, step, sigma_3, rank and train loss of a traces table, sorted by seed and step."""
    t = traces.sort_values(["seed", "step"])
    return pd.DataFrame(
        {
            "seed": t.seed.to_numpy(),
            "step": t.step.to_numpy(),
            "s3": np.stack(t.singular_values.to_numpy())[:, 2],
            "rank": t["rank"].to_numpy(),
            "loss": t.loss.to_numpy(),
        }
    )


def largest_fall(g: pd.DataFrame, basin: float = BASIN) -> tuple[float, int, float, float]:
    """(largest ratio sigma_3 before / after over one row of ``g`` (a seed's ``sigma3_frame``), its step, sigma_3
    before, after), among the falls that start in the basin (sigma_3 before >= ``basin`` x its first value):
    once sigma_3 is near tau its relative fluctuations are large and are not the collapse."""
    s3 = g.s3.to_numpy()
    if len(s3) < 2:
        return 1.0, -1, float("nan"), float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = s3[:-1] / s3[1:]
    r = np.where(np.isfinite(r) & (s3[:-1] >= basin * s3[0]), r, 0.0)
    i = int(np.argmax(r))
    return float(r[i]), int(g.step.iloc[i + 1]), float(s3[i]), float(s3[i + 1])


def collapse_precursor(t: pd.DataFrame, big: float, basin: float = BASIN, bins=LOSS_BINS) -> pd.DataFrame:
    """Per train-loss bin of the checks in the basin (rank >= 3, sigma_3 >= ``basin`` x its first value, next
    check present) of a ``sigma3_frame``: checks, those after which sigma_3 falls more than `big` x by the
    next check, and that chance per check with its Wilson interval."""
    s3, seed = t.s3.to_numpy(), t.seed.to_numpy()
    first = t.groupby("seed").s3.transform("first").to_numpy()
    nxt = np.append(s3[1:], np.nan)
    same = np.append(seed[1:] == seed[:-1], False)
    ok = same & (t["rank"].to_numpy() >= 3) & (s3 >= basin * first) & np.isfinite(nxt)
    fall = s3[ok] / np.maximum(nxt[ok], 1e-300) > big
    loss = t.loss.to_numpy()[ok]
    rows = []
    for a, b in zip(bins[:-1], bins[1:]):
        m = (loss > a) & (loss <= b)
        k, n = int(fall[m].sum()), int(m.sum())
        if n:
            lo, hi = stats.proportion_ci(k, n)
            label = f"> {a:g}" if not np.isfinite(b) else f"{a:g}-{b:g}"
            rows.append({"bin": label, "checks": n, "falls": k, "p": k / n, "p_low": lo, "p_high": hi})
    return pd.DataFrame(rows)


def collapse_hazard(configs, falls=HAZARD_FALLS) -> pd.DataFrame:
    """The seeds of ``configs`` followed again (``dynamics.init_seed`` and ``period``: the trajectories a run of
    them makes) and, at every check after the first 10 %, the fall of sigma_3 (float64) that ONE step on each
    observed entry would make (``dynamics.entries_step``): a one-step collapse's chance measured without waiting
    for one. One row per state: config, eta, ridge, seed, step, sigma_3, train loss, the largest fall and, per
    factor c in ``falls``, how many entries fall by more than c (``over_{c:g}``); ``entries`` is the number of
    observed entries. Diverged states are left out."""
    rows = []
    for cfg in configs:
        su = dynamics.setup(cfg)
        data, dyn, det = su.data, su.dynamics, su.detection
        seeds = np.arange(cfg.run.seeds)
        entries = jnp.arange(data.n_observed, dtype=jnp.int32)

        def fall_counts(s: dynamics.SeedState):
            sig = lambda params: spectrum.singular_value(model.end_to_end(params), 3)
            after = jax.vmap(lambda e: sig(dynamics.entries_step(s.params, s.opt_state, e[None], 0, data, dyn)[0]))
            now = sig(s.params)
            f = now / after(entries)
            return now, jnp.max(f), jnp.stack([jnp.sum(f > c) for c in falls])

        with dynamics.float64_scope():
            step = jax.jit(jax.vmap(lambda s, t: dynamics.period(s, t, data, dyn, det)[0], in_axes=(0, None)))
            look = jax.jit(jax.vmap(fall_counts))
            xs = jax.vmap(lambda i: dynamics.init_seed(i, su))(jnp.asarray(seeds))
            periods = cfg.train.steps // cfg.detect.every
            for c in range(periods):
                xs = step(xs, jnp.int32(c * cfg.detect.every))
                if c + 1 < max(1, periods // 10):
                    continue
                s3, big, counts = (np.asarray(v) for v in look(xs))
                ok = ~np.asarray(xs.diverged)
                frame = {"config_id": cfg.config_id, "eta": cfg.train.lr.value_at(0), "seed": seeds[ok]}
                frame |= {"ridge": cfg.train.ridge.value_at(0)}
                frame |= {"step": (c + 1) * cfg.detect.every, "s3": s3[ok], "loss": np.asarray(xs.loss)[ok]}
                frame |= {"max_fall": big[ok], **{f"over_{fc:g}": counts[ok, i] for i, fc in enumerate(falls)}}
                rows.append(pd.DataFrame(frame))
    return pd.concat(rows, ignore_index=True).assign(entries=int(data.n_observed))
