"""Figures of a dataset (matplotlib, the optional 'plot' extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import dataset, stats


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("jumpsim plot needs matplotlib: pip install 'jumpsim[plot]'") from None
    return plt


def plot_dataset(out: str | Path, path: str | Path | None = None, level: float = 0.95, max_levels: int = 4) -> Path:
    """Three panels: Kaplan-Meier first-passage curves with log-log bands (up to
    ``max_levels`` levels, evenly spread between the first level below the most common start
    rank of each experiment and the lowest level reached), numerical rank over
    time of the traced seeds, and their singular values over time (log scale). Returns the
    PNG path (default OUT/summary.png)."""
    plt = _pyplot()
    data = dataset.read_dataset(out)
    runs, passages, traces, exps = data["runs"], data["passages"], data["traces"], data["experiments"]
    names = dict(zip(exps.config_id, exps.name)) if len(exps) else {}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    curves = stats.survival_curves(runs, passages, level)
    for cid, c in curves.groupby("config_id"):
        start = runs[runs.config_id == cid].initial_rank.mode().iloc[0]
        c = c[c.start_rank == start]
        reached = sorted(c[c.survival < 1].level.unique(), reverse=True) or sorted(c.level.unique(), reverse=True)[:1]
        pick = [reached[int(round(i))] for i in np.linspace(0, len(reached) - 1, min(max_levels, len(reached)))]
        for lv in dict.fromkeys(pick):  # evenly spread from the first level below the start to the lowest reached
            g = c[c.level == lv]
            label = f"{names.get(cid, cid)}: {start} -> <= {lv}"
            line = ax.step(g.step, 1 - g.survival, where="post", label=label)[0]
            ax.fill_between(g.step, 1 - g.low, 1 - g.high, step="post", alpha=0.2, color=line.get_color())
    ax.set(
        xlabel="step",
        ylabel="P(reached rank <= level)",
        title=f"first passage (Kaplan-Meier, {level:.0%} log-log band)",
        ylim=(-0.02, 1.02),
    )
    if ax.lines:
        ax.legend(fontsize=7)
    ax = axes[1]
    for (cid, seed), t in traces.groupby(["config_id", "seed"]):
        ax.step(t.step, t["rank"], where="post", lw=1, label=f"{names.get(cid, cid)} seed {seed}")
    ax.set(xlabel="step", ylabel="numerical rank", title="rank of traced seeds")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax = axes[2]
    for i, ((cid, seed), t) in enumerate(traces.groupby(["config_id", "seed"])):
        if i >= 4:
            break
        sv = np.stack(t.singular_values.to_numpy())
        ax.semilogy(t.step, np.maximum(sv, 1e-12), lw=0.8, color=f"C{i}")
    thr = exps.threshold.iloc[0] if len(exps) else None
    if thr is not None and not exps.relative_threshold.iloc[0]:
        ax.axhline(thr, color="k", ls="--", lw=0.8, label=f"threshold {thr:g}")
        ax.legend(fontsize=7)
    ax.set(xlabel="step", ylabel="singular values of A", title="singular values (first traced seeds)")
    fig.tight_layout()
    path = Path(path) if path else Path(out) / "summary.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
