"""(u) Momentum and Adam from the same rank-3 minimum: escape rates, and up-jumps from the rank-2 minimum."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

import jumpsim
from jumpsim import stats

import suite
from .fmt import NotRun, fmt_rate, pct
from analysis import configs_with_runs, escape_rows, update_sizes

DOWN = ("u_momentum", "u_adam")
UP = ("u_up_momentum", "u_up_adam")
SGD_ETA = 0.14  # the SGD step the optimizers' steps are matched to


class UFacts(NamedTuple):
    rows: pd.DataFrame  # escape_rows of momentum and Adam from the rank-3 minimum
    sgd: pd.DataFrame  # (j)'s GPU curve at ridge 1e-3 (SGD, batch 1) at the matching learning rates
    sizes: dict  # setting -> analysis.update_sizes at the rank-3 minimum
    up: list[dict]  # per optimizer, from the rank-2 minimum: up-jumps 2 -> 3 / steps at rank 2, exits from B_2


def compute(out: Path, cv: pd.DataFrame) -> UFacts | NotRun:
    down = [suite.load(out, n) for n in DOWN]
    if all(d is None or d["runs"].empty for d in down):
        return NotRun("u_momentum", how="`python data/experiments/run.py --only u`")
    rows = pd.DataFrame([r for d in down if d is not None and not d["runs"].empty for r in escape_rows(d)])
    rows["effective_eta"] = [
        q.eta / (1 - 0.9) if q.optimizer == "momentum" else float("nan") for q in rows.itertuples()
    ]
    rows.to_parquet(out / "u_optimizers.parquet")
    sgd = cv[(cv.ridge == 1e-3) & cv.eta.isin(rows.effective_eta.round(6))] if len(cv) else pd.DataFrame()
    sizes = _sizes(rows)
    up = []
    for name in UP:
        data = suite.load(out, name)
        if data is None or data["runs"].empty:
            continue
        exp_, counts = stats.exposure(data["runs"], data["events"])
        for cid, c, rr in configs_with_runs(data):
            e = int(exp_[(exp_.config_id == cid) & (exp_["rank"] == 2)].exposure_steps.sum())
            n_up = int(
                counts[(counts.config_id == cid) & (counts.rank_before == 2) & (counts.rank_after > 2)]["count"].sum()
            )
            lo, hi = stats.poisson_rate_ci(n_up, e)
            up.append(
                {
                    "optimizer": c["train"]["optimizer"],
                    "eta": c["train"]["lr"],
                    "seeds": len(rr),
                    "diverged": int((rr.status == "diverged").sum()),
                    "up": n_up,
                    "exposure": e,
                    "low": lo,
                    "high": hi,
                    "exits": int(rr.br_exits.sum()),
                    "left": int((rr.br_exits > 0).sum()),
                }
            )
    return UFacts(rows, sgd, sizes, up)


def _sizes(rows: pd.DataFrame) -> dict:
    """The update size at the rank-3 minimum of SGD at SGD_ETA and of every optimizer setting of ``rows``."""
    sgd = jumpsim.load_config(suite.HERE / "u_adam.toml", ['train.optimizer="sgd"', f"train.lr={SGD_ETA}"])
    out = {("sgd", SGD_ETA): update_sizes(suite.quick(sgd))}
    for q in rows.drop_duplicates(["optimizer", "eta"]).itertuples():
        cfg = jumpsim.load_config(suite.HERE / f"u_{q.optimizer}.toml", [f"train.lr={q.eta}"])
        out[(q.optimizer, q.eta)] = update_sizes(suite.quick(cfg))
    return out


def render(u: UFacts | NotRun) -> list[str]:
    head = ["## (u) Momentum and Adam", ""]
    if isinstance(u, NotRun):
        return head + u.lines()
    s = u.sizes[("sgd", SGD_ETA)]
    lines = head + [
        "From the rank-3 minimum at ridge 1e-3 (`rank3_start.npz`), batch 1 with replacement, T = 20,000 steps, "
        "4,096 seeds per setting (`u_momentum.toml`, `u_adam.toml`; the ridge is added to the gradient before "
        "momentum or Adam see it). Momentum beta = 0.9 at the effective step eta / (1 - beta) of SGD's; Adam "
        "(beta 0.9, 0.999) at steps matched to SGD's update size at the minimum: SGD at eta "
        f"{SGD_ETA:g} moves the weights by {s['median']:.3g} per step (median; mean {s['mean']:.3g}: heavy-tailed), "
        f"measured over {s['steps']:,} steps of {s['seeds']} seeds, as for every setting below. Beside momentum, SGD's "
        "rate at the same effective eta ((j), GPU) and momentum's over it (exact conditional interval).",
        "",
        "| optimizer | lr | effective eta | update size: median / mean | diverged | P(rank <= 2 within T) | "
        "escape rate k | SGD at that eta ((j), GPU) | momentum / SGD [95 %] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    sgd = u.sgd.set_index("eta") if len(u.sgd) else None
    for q in u.rows.sort_values(["optimizer", "eta"]).itertuples():
        z = u.sizes[(q.optimizer, q.eta)]
        eff = "-" if q.optimizer != "momentum" else f"{q.effective_eta:g}"
        ref = ratio = "-"
        if sgd is not None and q.optimizer == "momentum" and round(q.effective_eta, 6) in sgd.index:
            g = sgd.loc[round(q.effective_eta, 6)]
            ref = f"{g.rate:.3g} [{g.rate_low:.3g}, {g.rate_high:.3g}]"
            rr = stats.rate_ratio(int(q.count), q.exposure, int(g["count"]), g.exposure)
            ratio = f"{rr['ratio']:.3g} [{rr['low']:.3g}, {rr['high']:.3g}]"
        lines.append(
            f"| {q.optimizer} | {q.eta:g} | {eff} | {z['median']:.3g} / {z['mean']:.3g} | {pct(q.diverged / q.seeds)} "
            f"| {q.reached:,}/{q.seeds:,} = {q.p:.3g} [{q.p_low:.3g}, {q.p_high:.3g}] | "
            f"{fmt_rate(q.count, q.exposure, q.rate_low, q.rate_high)} | {ref} | {ratio} |"
        )
    adam = u.rows[u.rows.optimizer == "adam"]
    mom = u.rows[u.rows.optimizer == "momentum"]
    if len(adam):
        lines += [
            "",
            f"Adam: {int(adam['count'].sum())} escapes in {int(adam.seeds.sum()):,} seeds over its "
            f"{len(adam)} steps (update sizes {adam.eta.map(lambda e: u.sizes[('adam', e)]['median']).min():.3g}"
            f"-{adam.eta.map(lambda e: u.sizes[('adam', e)]['median']).max():.3g}, SGD's {s['median']:.3g}); "
            f"momentum: {int(mom['count'].sum())} in {int(mom.seeds.sum()):,}, more often than SGD at equal "
            "effective eta where few diverge (the last column), and with more divergence.",
        ]
    if u.up:
        lines += [
            "",
            "One way: from the rank-2 minimum (`rank2_start.npz`), B_2 counted (`u_up_*.toml`: momentum at effective "
            "eta 0.125, Adam at its largest step):",
            "",
            "| optimizer | lr | seeds | diverged | up-jumps 2 -> 3 / steps at rank 2 | seeds that left B_2 (exits) |",
            "|---|---|---|---|---|---|",
        ]
        for x in u.up:
            lines.append(
                f"| {x['optimizer']} | {x['eta']:g} | {x['seeds']:,} | {x['diverged']} | "
                f"{fmt_rate(x['up'], x['exposure'], x['low'], x['high'])} | {x['left']} ({x['exits']}) |"
            )
    adam_up = [x for x in u.up if x["optimizer"] == "adam" and x["up"] > 0]
    if adam_up:
        x = adam_up[0]
        lines += [
            "",
            f"From the rank-2 minimum Adam's rank goes back up ({x['up']:,} up-jumps, "
            f"{x['up'] / x['exposure']:.3g} per step at rank 2): the one-way result does not hold for Adam (which "
            "divides each coordinate's step by that coordinate's running gradient scale).",
        ]
    return lines + [""]
