"""The experiment suite's reusable analysis: functions of configs, start files and dataset tables.

Nothing here knows where the suite keeps its files or how the report words its results: paths and
configs come in as arguments, tables (``jumpsim.read_dataset`` dicts, ``jumpsim.stats`` frames) go
out. These are candidates for the jumpsim package itself.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jumpsim import dynamics, model, setup, stats
from jumpsim import problem as problem_lib

FIT_MAX_DIVERGED = 0.05  # curve_fits uses the learning rates where fewer seeds diverged


# ------------------------------------------------------------------------------------------
# the problem and its gradient-descent minima


def problem_of(cfg) -> problem_lib.Problem:
    """The matrix-completion problem of a config (its [problem] section)."""
    p = cfg.problem
    return problem_lib.generate(p.n, p.m, p.rank, p.observed, p.seed)


def start_facts(path: Path, cfg, ridge: float | None = None) -> dict:
    """``jumpsim.setup.start_facts`` of a start file's layers W1 ... WL."""
    with np.load(path) as z:
        ws = [np.asarray(z[f"W{l + 1}"], np.float64) for l in range(len(z.files))]
    return setup.start_facts(ws, cfg, ridge)


def full_batch_gd(ws, prob: problem_lib.Problem, lr: float, ridge: float, steps: int, scale: float = 1.0):
    """``steps`` steps of full-batch gradient descent on the observed entries of ``prob`` from the layers ``ws``
    (W_1 first), in the dtype of ``ws``: ``jumpsim.model.gradient_descent``, the recipe of ``model.init = "gd"``."""
    gd = functools.partial(model.gradient_descent, scale=scale, lr=lr, ridge=ridge, steps=steps)
    rows, cols = jnp.asarray(prob.rows), jnp.asarray(prob.cols)
    return jax.jit(gd)(ws, rows, cols, jnp.asarray(np.asarray(prob.values), ws[0].dtype))


# ------------------------------------------------------------------------------------------
# brute-force tables


def configs_with_runs(data: dict):
    """(config_id, config dict, runs of that config) for every config of a dataset that has runs."""
    r = data["runs"]
    for cid, c in zip(data["experiments"].config_id, data["experiments"].config):
        rr = r[r.config_id == cid]
        if not rr.empty:  # not simulated (yet) otherwise
            yield cid, json.loads(c), rr


def gd_stops(data: dict):
    """Per config of a dataset of gradient-descent runs: (config_id, config dict, runs, the runs that ended without
    diverging, those of them whose rank did not change over the second half of the run: where GD stopped)."""
    ev = data["events"]
    for cid, c, rr in configs_with_runs(data):
        moved = set(ev[(ev.config_id == cid) & (ev.step > int(rr.horizon.max()) // 2)].seed)
        fin = rr[rr.status != "diverged"]
        yield cid, c, rr, fin, fin[~fin.seed.isin(moved)]


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
    seed once), all 3 -> 2 jumps (``jumps``, repeats of a seed included), the divergence counts and the
    config's batch, sampling and optimizer (``extra`` is added to every row)."""
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
                "batch": int(c["train"]["batch"] or 0),  # 0: full batch
                "sampling": c["train"].get("sampling", "with_replacement"),
                "optimizer": c["train"].get("optimizer", "sgd"),
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


def update_sizes(cfg, seeds: int = 64, steps: int = 2000, skip: int = 200) -> dict:
    """How far one step moves the weights at ``cfg``'s start: |W(t+1) - W(t)| (Frobenius norm over all layers) for
    ``seeds`` seeds over ``steps`` steps of its dynamics, the first ``skip`` left out (Adam's moments warming up);
    mean and median over the seeds that stayed finite. What matching an optimizer's step to SGD's means here."""
    su = setup.setup(cfg)

    def one(i):
        s = setup.init_seed(i, su)

        def body(c, t):
            p, o = c
            p2, o2 = dynamics.sgd_step(p, o, s.key, t, su.data, su.dynamics)
            return (p2, o2), jnp.sqrt(sum(jnp.sum((a - b) ** 2) for a, b in zip(p2, p)))

        return jax.lax.scan(body, (s.params, s.opt_state), jnp.arange(steps, dtype=jnp.int32))[1]

    with dynamics.float64_scope():
        d = np.asarray(jax.jit(jax.vmap(one))(jnp.arange(seeds, dtype=jnp.int32)))[:, skip:]
    d = d[np.all(np.isfinite(d), axis=1)]
    return {"mean": float(d.mean()), "median": float(np.median(d)), "seeds": len(d), "steps": steps - skip}


def first_passage_times(data: dict, cid: str, level: int = 2) -> tuple[np.ndarray, np.ndarray, int]:
    """Per seed of config ``cid``: the step of its first passage to rank <= ``level`` or, if it did not reach it,
    the step its run ended (horizon or divergence), whether it reached it, and the horizon: what
    ``stats.exponential_test`` takes."""
    r, pas = data["runs"], data["passages"]
    rr = r[r.config_id == cid]
    p = pas[(pas.config_id == cid) & (pas.level == level)].set_index("seed").step
    step = p.reindex(rr.seed.to_numpy()).to_numpy(float)
    ends = rr.steps.to_numpy(float)
    reached = np.isfinite(step) & (step <= ends)
    return np.where(reached, step, ends), reached, int(rr.horizon.max())


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
