"""The one-step collapse hazard: seeds followed again along the trajectories a run of them makes and, at every
check, how far sigma_3 would fall under ONE step on each observed entry: a collapse's chance per step measured
without waiting for one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import dynamics, model, spectrum
from .setup import init_seed, setup

HAZARD_FALLS = (1.1, 2.0, 10.0)  # one-step falls of sigma_3 counted per state (factor sigma_3 / sigma_3 after)


def collapse_hazard(configs, falls=HAZARD_FALLS) -> pd.DataFrame:
    """The seeds of ``configs`` followed again (``setup.init_seed`` and ``dynamics.period``: the trajectories a run
    of them makes) and, at every check after the first 10 %, the fall of sigma_3 (float64) that ONE step on each
    observed entry would make (``dynamics.entries_step``): a one-step collapse's chance measured without waiting
    for one. One row per state: config, eta, ridge, seed, step, sigma_3, train loss, the largest fall and, per
    factor c in ``falls``, how many entries fall by more than c (``over_{c:g}``); ``entries`` is the number of
    observed entries. Diverged states are left out."""
    rows = []
    for cfg in configs:
        su = setup(cfg)
        data, dyn, det = su.data, su.dynamics, su.detection
        seeds = np.arange(cfg.run.seeds)

        def fall_counts(s: dynamics.SeedState):
            sig = lambda x: spectrum.singular_value(model.end_to_end(x.params), 3)
            now = sig(s)
            f = now / dynamics.each_entry(s, 0, data, dyn, sig)
            return now, jnp.max(f), jnp.stack([jnp.sum(f > c) for c in falls])

        with dynamics.float64_scope():
            step = jax.jit(jax.vmap(lambda s, t: dynamics.period(s, t, data, dyn, det)[0], in_axes=(0, None)))
            look = jax.jit(jax.vmap(fall_counts))
            xs = jax.vmap(lambda i: init_seed(i, su))(jnp.asarray(seeds))
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


def collapse_windows(states: pd.DataFrame, fall: float, burn_in: int = 0) -> dict:
    """The windows in which one SGD step could collapse sigma_3 by more than `fall`: maximal runs of consecutive
    checks (of ``collapse_hazard``'s rows, one seed at a time, after step `burn_in`) with at least one such entry.
    A window of checks with n_i such entries, each check standing for the `every` steps to the next, is passed
    without drawing one of them with chance prod_i (1 - n_i / K)^every (batch 1): ``p_draw`` is the mean over
    windows of one minus that, the chance SGD takes the collapse a window offers. It bounds what a proposal acting
    on the collapsing draw alone can gain: at most 1 / p_draw more collapses, before the cost of finding them.
    ``taken``: the share of windows closed by a fall of sigma_3 by `fall` at the next check (SGD's own draws; a
    window that SGD closes early is recorded short, which biases p_draw low, so the two bracket the chance)."""
    col = f"over_{fall:g}"
    df = states[states.step > burn_in].sort_values(["config_id", "seed", "step"])
    if df.step.nunique() < 2:
        raise ValueError(f"collapse_windows: {df.step.nunique()} check(s) after step {burn_in}; at least 2 needed")
    k = int(df.entries.iloc[0])
    every = int(np.diff(np.unique(df.step)).min())
    lengths, entries, p_draw, taken = [], [], [], []
    for _, g in df.groupby(["config_id", "seed"], sort=False):
        n, s3 = g[col].to_numpy(), g.s3.to_numpy()
        edges = np.flatnonzero(np.diff(np.r_[0, (n > 0).astype(int), 0]))  # starts and ends of runs of n > 0
        for a, b in zip(edges[::2], edges[1::2]):
            lengths.append((b - a) * every)
            entries.append(n[a:b].mean())
            p_draw.append(1.0 - np.prod((1.0 - n[a:b] / k) ** every))
            if b < len(n):  # the window closed before the seed's last check: did sigma_3 fall by `fall`?
                taken.append(s3[b] * fall < s3[b - 1])
    steps = len(df) * every
    lengths, p_draw = np.asarray(lengths, float), np.asarray(p_draw, float)
    return {
        "fall": fall,
        "states": len(df),
        "every": every,
        "capable_share": float((df[col] > 0).mean()),
        "hazard_per_step": float(df[col].sum() / len(df) / k),
        "windows": len(lengths),
        "windows_per_step": len(lengths) / steps,
        "length_median": float(np.median(lengths)) if len(lengths) else 0.0,
        "length_mean": float(lengths.mean()) if len(lengths) else 0.0,
        "entries_mean": float(np.mean(entries)) if entries else 0.0,
        "p_draw": float(p_draw.mean()) if len(p_draw) else 0.0,
        "taken": float(np.mean(taken)) if taken else float("nan"),
    }
