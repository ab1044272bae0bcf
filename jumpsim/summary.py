"""Human-readable and JSON summaries of a dataset (the printing side of ``jumpsim.stats``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from . import dataset, labels, methods, setup, stats
from .text import fmt_rate


def run_summary(report, configs) -> str:
    """What ``jumpsim run`` prints when it finishes."""
    runs = dataset.read_table(report.out, "runs")
    events = dataset.read_table(report.out, "events")
    lines = []
    done = f"{report.chunks_done} chunk(s) simulated" + (
        f", {report.chunks_skipped} already done (resumed)" if report.chunks_skipped else ""
    )
    rate = f"{report.seed_steps_per_s:,.0f} seed-steps/s overall"
    if report.steady_s > 0:
        rate += f", {report.steady_seed_steps_per_s:,.0f} after compilation"
    lines.append(f"jumpsim: {done} in {report.wall_s:.1f} s; {report.seed_steps:,} seed-steps, {rate}")
    lines += report.notes
    diff = labels.differing(dataset.read_table(report.out, "experiments"))
    for cfg in configs:
        cid = cfg.config_id
        r = runs[runs.config_id == cid]
        e = events[events.config_id == cid]
        n_div = int((r.status == "diverged").sum())
        lines.append(
            f"\n{labels.label(cfg.name, cid, diff.get(cid, {}))}: {len(r)} seeds x {cfg.train.steps:,} steps, rank "
            "threshold "
            f"{cfg.detect.threshold:g}{' (relative)' if cfg.detect.relative else ''}, persist {cfg.detect.persist}"
        )
        lines.append(
            f"  events: {int((e.direction == 'down').sum())} down, {int((e.direction == 'up').sum())} up; seeds "
            f"with a down-jump: {int((r.n_down > 0).sum())}; diverged: {n_div}"
        )
        if len(r):
            hist = r.initial_rank.value_counts().sort_index()
            lines.append("  initial rank: " + ", ".join(f"{k}: {v}" for k, v in hist.items()))
            hist = r[r.status == "ok"].final_rank.value_counts().sort_index()
            lines.append(
                "  final rank:   " + (", ".join(f"{k}: {v}" for k, v in hist.items()) or "none (every seed diverged)")
            )
    lines.append(
        f"\ntables: {report.out}/{{experiments.parquet,runs,events,passages,traces}}; next: jumpsim summarize "
        f"{report.out}"
    )
    return "\n".join(lines)


def summarize_json(out, level: float = 0.95, burn_in: int = 0) -> dict:
    data = dataset.read_dataset(out)
    fp = stats.first_passage(data["runs"], data["passages"], level)
    rates = stats.rates(data["runs"], data["events"], level, burn_in)
    km = stats.median_passage(data["runs"], data["passages"], level)
    exps = data["experiments"]
    diff = labels.differing(exps)
    return {
        "dataset": str(out),
        "level": level,
        "burn_in": burn_in,
        "experiments": [
            {
                "config_id": r.config_id,
                "name": r.name,
                "horizon": int(r.horizon),
                "threshold": float(r.threshold),
                "differs": diff[r.config_id],
                "config": json.loads(r.config),
                "start": json.loads(r.start) if isinstance(r.start, str) else {},
            }
            for r in exps.itertuples()
        ],
        "runs": stats.run_counts(data["runs"]).to_dict(orient="records"),
        "first_passage": _records(fp),
        "median_passage": _records(km),
        "rates": _records(rates),
        "splitting": _records(
            stats.splitting(data["rare"], data["rare_replicas"], level, data["rare_iterations"], data["rare_levels"])
        ),
    }


def _records(df: pd.DataFrame) -> list[dict]:
    """DataFrame -> JSON-safe records (numpy scalars to Python, NaN to null)."""
    out = []
    for rec in df.to_dict(orient="records"):
        clean = {}
        for k, v in rec.items():
            if isinstance(v, (np.integer,)):
                v = int(v)
            elif isinstance(v, (np.floating, float)):
                v = float(v) if math.isfinite(v) else None  # (JSON has no NaN or infinity)
            clean[k] = v
        out.append(clean)
    return out


def _first_passage_lines(rows: list[dict], pct: str) -> list[str]:
    """Text rows per start rank: levels that every seed reached collapse into one line, then
    each level some but not all seeds reached, then the first level nobody reached (its upper
    bound is informative). The JSON keeps every level."""
    lines = []
    for start in sorted({r["start_rank"] for r in rows}):
        group = sorted((r for r in rows if r["start_rank"] == start), key=lambda r: -r["level"])
        full = [r for r in group if r["k"] == r["n"]]
        if full:
            lo = full[-1]
            span = f"{full[0]['level']}..{lo['level']}" if len(full) > 1 else f"{lo['level']}"
            lines.append(
                f"  {'':35s}{start:5d}  {span:>6s} all {lo['n']} seeds    (p >= {lo['p_low']:.3f}, {pct} Wilson)"
            )
        partial = [r for r in group if 0 < r["k"] < r["n"]]
        none = [r for r in group if r["k"] == 0][:1]
        for r in partial + none:
            lines.append(
                f"  {'':35s}{start:5d}  {r['level']:6d}  {r['k']:>5d}/{r['n']:<5d} {r['p']:6.3f}   "
                f"[{r['p_low']:.3f}, {r['p_high']:.3f}]  [{r['p_low_exact']:.3f}, {r['p_high_exact']:.3f}]"
            )
    return lines


def _splitting_lines(rows: list[dict], pct: str) -> list[str]:
    """Each splitting estimate's lines, as its estimator prints them."""
    return [line for r in rows for line in methods.get(r["method"]).lines(r, pct)]


def summarize_text(
    out, as_json: bool = False, level: float = 0.95, burn_in: int = 0, splitting_only: bool = False
) -> str:
    s = summarize_json(out, level, burn_in)
    if as_json:
        return json.dumps(s, indent=2)
    pct = f"{level:.0%}"
    lines = [f"dataset {s['dataset']}  ({pct} intervals)"]
    names = {e["config_id"]: e for e in s["experiments"]}
    order = list(names)  # as the experiments were written (run order)
    head = lambda cid: labels.label(names.get(cid, {"name": "?"})["name"], cid, names.get(cid, {}).get("differs", {}))
    with_split = [cid for cid in order if any(r["config_id"] == cid for r in s["splitting"])]
    for cid in with_split if splitting_only else ():
        lines.append(f"\n== {head(cid)}")
        lines += _splitting_lines([r for r in s["splitting"] if r["config_id"] == cid], pct)
    if splitting_only:
        return "\n".join(lines + _in_progress(out))
    longest = max((e["horizon"] for e in s["experiments"]), default=0)
    if burn_in and burn_in >= longest:
        lines.append(f"--burn-in {burn_in:,} is not shorter than the longest horizon ({longest:,} steps): no rates")
    run_counts = {rc["config_id"]: rc for rc in s["runs"]}
    for cid in sorted(run_counts, key=lambda c: order.index(c) if c in order else len(order)):
        rc = run_counts[cid]
        e = names.get(cid, {"name": "?", "horizon": rc.get("horizon")})
        lines.append(
            f"\n== {head(cid)}: {rc['seeds']} seeds ({rc['diverged']} diverged), horizon {e['horizon']:,} steps"
        )
        fp = [r for r in s["first_passage"] if r["config_id"] == cid]
        if fp:
            lines.append(
                f"  P(rank <= level within horizon)     start   level      k/n       p   [{pct} Wilson]  [exact]"
            )
            lines += _first_passage_lines(fp, pct)
        md = [r for r in s["median_passage"] if r["config_id"] == cid and r["median"] is not None]
        lowest = {}
        for r in md:  # the median time to the lowest level each start rank reached for most seeds
            if r["start_rank"] not in lowest or r["level"] < lowest[r["start_rank"]]["level"]:
                lowest[r["start_rank"]] = r
        for r in lowest.values():
            lo = "?" if r["median_low"] is None else f"{r['median_low']:,.0f}"
            hi = "?" if r["median_high"] is None else f"{r['median_high']:,.0f}"
            lines.append(
                f"  median first passage from {r['start_rank']} to <= {r['level']}: {r['median']:,.0f} steps [{lo}, "
                f"{hi}]"
            )
        rt = [r for r in s["rates"] if r["config_id"] == cid]
        if rt:
            lines.append(
                f"  jump rates (per step{f', from step {burn_in:,}' if burn_in else ''})        from -> to   count  "
                f" exposure (steps)   rate       [{pct} exact Poisson]"
            )
            for r in rt:
                lines.append(
                    f"  {'':29s}{r['from_rank']:4d} -> {r['to_rank']:<4d}{r['count']:6d}   "
                    f"{r['exposure_steps']:16,d}   "
                    f"{fmt_rate(r['rate']):9s}  [{fmt_rate(r['rate_low'])}, {fmt_rate(r['rate_high'])}]"
                )
        lines += _splitting_lines([r for r in s["splitting"] if r["config_id"] == cid], pct)
    for cid in [c for c in with_split if c not in run_counts]:
        lines.append(f"\n== {head(cid)}: splitting only")
        lines += _splitting_lines([r for r in s["splitting"] if r["config_id"] == cid], pct)
    return "\n".join(lines + _in_progress(out))


def _in_progress(out) -> list[str]:
    """Splitting estimates that started and have not finished (a saved engine state, no tables yet)."""
    return [f"\n{dataset.in_progress_line(cid, path)}" for cid, path in dataset.rare_in_progress(out)]


def list_text(out) -> str:
    """What ``jumpsim list`` prints: each experiment of a dataset (in the order written) with the settings in
    which it differs from the others, its seeds and horizon, its splitting / importance-sampling estimates, and
    the quality of a gd start."""
    exps = dataset.read_table(out, "experiments")
    runs, rare = dataset.read_table(out, "runs"), dataset.read_table(out, "rare")
    diff = labels.differing(exps)
    lines = [f"dataset {out}: {len(exps)} experiment(s)"]
    for e in exps.itertuples():
        r = runs[runs.config_id == e.config_id]
        lines.append(f"\n{labels.label(e.name, e.config_id, diff[e.config_id])}")
        lines.append(
            f"  brute force: {len(r)} seeds ({int((r.status == 'diverged').sum())} diverged), horizon "
            f"{int(e.horizon):,} steps"
            if len(r)
            else f"  brute force: none (horizon {int(e.horizon):,} steps)"
        )
        for x in rare[rare.config_id == e.config_id].drop_duplicates("estimate_id").itertuples():
            prop = x.proposal if isinstance(x.proposal, str) else "uniform"
            shards = rare[(rare.config_id == e.config_id) & (rare.estimate_id == x.estimate_id)]
            n_rep = int((shards.replica_hi - shards.replica_lo + 1).sum())
            lines.append(
                f"  estimate [{x.estimate_id}]: {x.method}, proposal {prop}, {n_rep} replicas x {x.particles} "
                f"particles, {int(shards.seed_steps.sum()):,} SGD steps"
            )
        start = json.loads(e.start) if isinstance(e.start, str) and e.start else {}
        if "start_grad_norm" in start:
            g = start["start_grad_norm"]
            tol = setup.MINIMUM_GRAD_NORM
            ok = "a critical point" if g <= tol else f"WARNING: not a critical point (gradient norm > {tol:g})"
            lines.append(f"  gd start: rank {start['start_rank']}, gradient norm {g:.2g} ({ok})")
        lines.append(f"  written by jumpsim {e.jumpsim_version}, schema {e.schema_version}, {e.devices}")
    return "\n".join(lines)
