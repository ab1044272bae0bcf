"""Trace analysis: the per-check values of traced seeds (the ``traces`` table) as sigma_3 series, the largest
one-check fall of sigma_3, and how often such falls follow a check, by train loss. What an escape from a
rank-3 minimum looks like: a sudden collapse of sigma_3 between two checks, from the basin."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..intervals import proportion_ci

BASIN = 0.25  # a check is in the basin while sigma_3 >= this fraction of its first value
LOSS_BINS = (0.0, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, np.inf)  # train-loss bins of collapse_precursor


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
            lo, hi = proportion_ci(k, n)
            label = f"> {a:g}" if not np.isfinite(b) else f"{a:g}-{b:g}"
            rows.append({"bin": label, "checks": n, "falls": k, "p": k / n, "p_low": lo, "p_high": hi})
    return pd.DataFrame(rows)
