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
