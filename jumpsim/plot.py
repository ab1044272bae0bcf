"""Figures of a dataset (matplotlib, the optional 'plot' extra): brute-force passage curves, ranks and singular
values of traced seeds; and, where the dataset holds splitting or importance-sampling estimates, their curve
p(T'), their level curve and the spread of their replicas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import dataset, labels, stats
from .errors import ConfigError

INSTALL = "pip install 'jumpsim[plot]'"


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plot", f"needs matplotlib: {INSTALL}") from None
    return plt


def pick_experiments(exps: pd.DataFrame, key: str | None) -> list[str]:
    """The config_ids a figure shows: all, or the one whose config_id, unique prefix or name is `key`."""
    if key is None:
        return list(exps.config_id)
    hit = exps[(exps.config_id == key) | (exps.name == key) | exps.config_id.str.startswith(key)]
    if len(hit) != 1:
        known = ", ".join(f"{r.config_id} ({r.name})" for r in exps.itertuples())
        raise ConfigError("--experiment", f"{key!r} matches {len(hit)} experiments; known: {known}")
    return [hit.config_id.iloc[0]]


def plot_dataset(
    out: str | Path,
    path: str | Path | None = None,
    level: float = 0.95,
    max_levels: int = 4,
    experiment: str | None = None,
    to: int | None = None,
) -> Path:
    """Three panels: Kaplan-Meier first-passage curves with log-log bands (to rank <= `to`, else up to
    ``max_levels`` levels evenly spread between the first level below the most common start rank of each
    experiment and the lowest level reached), numerical rank over time of the traced seeds, and their singular
    values over time (log scale); a second row for splitting estimates. ``experiment``: one experiment only
    (config_id, prefix or name). Legends name the settings in which experiments differ. Returns the PNG path
    (default OUT/summary.png); ConfigError for a missing matplotlib or output folder."""
    path = Path(path) if path else Path(out) / "summary.png"
    if not path.parent.is_dir():
        raise ConfigError("--out", f"{path.parent} is not a directory")
    plt = _pyplot()
    data = dataset.read_dataset(out)
    exps = data["experiments"]
    cids = pick_experiments(exps, experiment)
    diff = labels.differing(exps)
    name = {r.config_id: labels.short(r.name, diff[r.config_id]) for r in exps.itertuples()}
    runs, passages, traces = (data[t][data[t].config_id.isin(cids)] for t in ("runs", "passages", "traces"))
    rare = data["rare"][data["rare"].config_id.isin(cids)]
    rows = 2 if len(rare) else 1
    fig, axes = plt.subplots(rows, 3, figsize=(16, 4.6 * rows), squeeze=False)
    _passages(axes[0, 0], stats.survival_curves(runs, passages, level), runs, name, level, max_levels, to)
    _traces(axes[0, 1], axes[0, 2], traces, exps, name)
    if rows == 2:
        _rare(axes[1], data, cids, name)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _passages(ax, curves, runs, name, level, max_levels, to):
    for cid, c in curves.groupby("config_id", sort=False):
        start = runs[runs.config_id == cid].initial_rank.mode().iloc[0]
        c = c[c.start_rank == start]
        if to is not None:
            pick = [to] if to in set(c.level) else []
        else:
            reached = sorted(c[c.survival < 1].level.unique(), reverse=True) or sorted(c.level.unique())[-1:]
            pick = [reached[int(round(i))] for i in np.linspace(0, len(reached) - 1, min(max_levels, len(reached)))]
        for lv in dict.fromkeys(pick):  # evenly spread from the first level below the start to the lowest reached
            g = c[c.level == lv]
            line = ax.step(g.step, 1 - g.survival, where="post", label=f"{name.get(cid, cid)}: {start} -> <= {lv}")[0]
            ax.fill_between(g.step, 1 - g.low, 1 - g.high, step="post", alpha=0.2, color=line.get_color())
    ax.set(
        xlabel="step",
        ylabel="P(reached rank <= level)",
        title=f"first passage (Kaplan-Meier, {level:.0%} log-log band)",
        ylim=(-0.02, 1.02),
    )
    if ax.lines:
        ax.legend(fontsize=7)


def _traces(ax_rank, ax_sv, traces, exps, name):
    groups = list(traces.groupby(["config_id", "seed"], sort=False))
    for (cid, seed), t in groups:
        ax_rank.step(t.step, t["rank"], where="post", lw=1, label=f"{name.get(cid, cid)} seed {seed}")
    ax_rank.set(xlabel="step", ylabel="numerical rank", title="rank of traced seeds")
    ax_rank.yaxis.get_major_locator().set_params(integer=True)
    if 0 < len(groups) <= 8:
        ax_rank.legend(fontsize=6)
    for i, ((cid, seed), t) in enumerate(groups[:4]):
        sv = np.stack(t.singular_values.to_numpy())
        ax_sv.semilogy(t.step, np.maximum(sv, 1e-12), lw=0.8, color=f"C{i}")
        ax_sv.plot([], [], color=f"C{i}", label=f"{name.get(cid, cid)} seed {seed}")
    thr = exps.threshold.iloc[0] if len(exps) else None
    if thr is not None and not exps.relative_threshold.iloc[0]:
        ax_sv.axhline(thr, color="k", ls="--", lw=0.8, label=f"threshold {thr:g}")
    if ax_sv.lines:
        ax_sv.legend(fontsize=6)
    ax_sv.set(xlabel="step", ylabel="singular values of A", title="singular values (first traced seeds)")


def _rare(axes, data, cids, name):
    """p(T') of each TAMS / IS estimate (replica mean), its level curve P(max score >= z), and each estimate's
    replicas (log10 p; extinct ones at the bottom)."""
    rare, reps = data["rare"], data["rare_replicas"]
    curve, lv = data["rare_curve"], data["rare_levels"]
    ests = rare[rare.config_id.isin(cids)].drop_duplicates(["config_id", "estimate_id"])
    for i, e in enumerate(ests.itertuples()):
        tag = f"{name.get(e.config_id, e.config_id)} {e.method}"
        c = curve[(curve.config_id == e.config_id) & (curve.estimate_id == e.estimate_id)]
        if len(c):
            m = c.groupby("step").p.mean()
            axes[0].semilogy(m.index, np.maximum(m.to_numpy(), 1e-300), label=tag)
        v = lv[(lv.config_id == e.config_id) & (lv.estimate_id == e.estimate_id)]
        if len(v):
            m = v.groupby("z").p.mean()
            axes[1].semilogy(m.index, m.to_numpy(), marker=".", label=tag)
        r = reps[(reps.config_id == e.config_id) & (reps.estimate_id == e.estimate_id)]
        lp = np.log10(np.where(r.p > 0, r.p, np.nan))
        floor = np.nanmin(lp) - 1 if np.isfinite(lp).any() else -1
        axes[2].scatter(np.full(len(r), i), np.where(np.isfinite(lp), lp, floor), s=12, label=tag)
    axes[0].set(xlabel="horizon T' (steps)", ylabel="P(target within T')", title="splitting: p(T') (replica mean)")
    axes[1].set(xlabel="score level z", ylabel="P(max score >= z)", title="level curve (replica mean)")
    axes[2].set(xlabel="estimate", ylabel="log10 p of each replica", title="replica spread (extinct: bottom)")
    for ax in axes:
        if ax.lines or ax.collections:
            ax.legend(fontsize=6)
