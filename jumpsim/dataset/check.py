"""``jumpsim check``: verify a dataset directory and say exactly what is missing or wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..splitting.state import saved_progress
from .io import config_ids, part_path, part_ranges, rare_in_progress, temporaries
from .schemas import REQUIRED, SCHEMA_VERSION, SCHEMAS, TABLES, schema_ok


def _expected_seeds(cfg: dict) -> tuple[int, int]:
    r = cfg["run"]
    return r["seed_offset"], r["seed_offset"] + r["seeds"]


def _ranges(seeds: np.ndarray) -> str:
    """Compact text of a sorted set of seed ids, e.g. '0..9, 20, 30..31'."""
    if len(seeds) == 0:
        return ""
    cuts = np.nonzero(np.diff(seeds) != 1)[0]
    starts = np.r_[seeds[0], seeds[cuts + 1]]
    ends = np.r_[seeds[cuts], seeds[-1]]
    parts = [f"{a}" if a == b else f"{a}..{b}" for a, b in zip(starts, ends)]
    return ", ".join(parts[:8]) + (f", ... ({len(parts)} ranges)" if len(parts) > 8 else "")


def _check_rare(out: Path, cid: str, problems: list[str], facts: list[str]) -> bool:
    """Splitting parts of one config: readable with jumpsim's schemas, each ``rare`` part with its
    replicas part holding exactly its replica range, no replica of an estimate in two parts. Appends
    to ``problems``/``facts``; returns whether the config has any splitting estimate."""
    root = out / "rare" / f"config_id={cid}"
    parts = sorted(root.glob("part-*.parquet")) if root.is_dir() else []
    seen: dict[str, list[tuple[int, int]]] = {}
    for path in parts:
        rel = path.relative_to(out)
        try:
            row = pq.read_table(path).to_pylist()[0]
            reps = pq.read_table(out / "rare_replicas" / f"config_id={cid}" / path.name)
        except Exception as e:
            problems.append(f"{rel}: unreadable or without its rare_replicas part ({e.__class__.__name__}: {e})")
            continue
        for name, t in (("rare", pq.read_table(path)), ("rare_replicas", reps)):
            missing = [c for c in REQUIRED[name] if c not in t.column_names]
            if missing:
                problems.append(f"{rel}: {name} part lacks column(s) {', '.join(missing)}")
        lo, hi = row["replica_lo"], row["replica_hi"]
        lv_path = out / "rare_levels" / f"config_id={cid}" / path.name  # schema 4; absent before, or none to write
        if lv_path.exists():
            try:
                lv = pq.read_table(lv_path).to_pandas()
                if not (lv.replica.between(lo, hi).all() and lv.p.between(0, 1).all() and lv.z.between(0, 1).all()):
                    problems.append(
                        f"{lv_path.relative_to(out)}: replicas outside {lo}..{hi}, or p or z outside [0, 1]"
                    )
            except Exception as e:
                problems.append(f"{lv_path.relative_to(out)}: unreadable ({e.__class__.__name__}: {e})")
        ids = sorted(reps["replica"].to_pylist())
        if ids != list(range(lo, hi + 1)):
            problems.append(f"{rel}: rare_replicas holds replicas {_ranges(np.asarray(ids))}, expected {lo}..{hi}")
        for a, b in seen.get(row["estimate_id"], []):
            if a <= hi and lo <= b:
                problems.append(
                    f"config_id={cid}: estimate {row['estimate_id']} has replicas {max(a, lo)}..{min(b, hi)} twice"
                )
        seen.setdefault(row["estimate_id"], []).append((lo, hi))
    for eid, ranges in seen.items():
        n = sum(b - a + 1 for a, b in ranges)
        facts.append(f"config_id={cid}: splitting estimate {eid}, {n} replicas in {len(ranges)} part(s)")
    return bool(parts)


def in_progress_line(cid: str, path: Path) -> str:
    """One line on a splitting estimate shard that started and has not finished (its saved engine state)."""
    s = saved_progress(path)
    return (
        f"config_id={cid}: splitting estimate {path.stem.split('-')[0]} in progress (replicas "
        f"{path.stem.split('-', 1)[1].replace('-', '..')}: {s['done']} of {s['replicas']} done, up to iteration "
        f"{s['iterations']}, {s['periods']:,} periods simulated); rerun the same jumpsim rare command to resume"
    )


def repair(out: str | Path) -> list[str]:
    """Remove every unreadable part file of the brute-force tables together with the runs part of its chunk (the
    runs part marks a chunk done), so that rerunning the command that wrote the dataset recomputes that chunk.
    Returns what was removed."""
    out = Path(out)
    removed = []
    for cid in config_ids(out):
        for name in TABLES:
            for a, b in part_ranges(out, name, cid):
                path = part_path(out, name, cid, a, b)
                try:
                    pq.read_table(path)
                except Exception:
                    for t in (name, "runs"):
                        p = part_path(out, t, cid, a, b)
                        if p.exists():
                            p.unlink()
                            removed.append(str(p.relative_to(out)))
    return removed


def check_dataset(out: str | Path) -> tuple[list[str], list[str]]:
    """(problems, facts). Problems: unreadable or mis-typed part files, temporary files,
    seeds missing or present more than once per config (against the seeds the newest run of
    that config asked for), parts whose rows lie outside their name's seed range, runs parts
    without their events/passages parts, and events or passages inconsistent with runs. Facts: what each
    experiment holds, and splitting estimates still in progress (a saved engine state)."""
    out = Path(out)
    problems: list[str] = []
    facts: list[str] = []
    for p in temporaries(out):
        problems.append(
            f"temporary file {p.relative_to(out)} (left by a killed or running writer; rerun the command, or delete "
            "it if no writer runs)"
        )
    exp_path = out / "experiments.parquet"
    if not exp_path.exists():
        return problems + [
            f"{exp_path} is missing: not a jumpsim dataset, or its run was killed before it started"
        ], facts
    experiments = pq.read_table(exp_path).to_pandas()
    for cid in config_ids(out):
        if cid not in set(experiments.config_id):
            problems.append(f"config_id={cid}: parts without a row in experiments.parquet")
    for row in experiments.itertuples():
        cid = row.config_id
        cfg = json.loads(row.config)
        lo, hi = _expected_seeds(cfg)
        has_rare = _check_rare(out, cid, problems, facts)
        for c, path in rare_in_progress(out):
            if c == cid:
                facts.append(in_progress_line(cid, path))
                has_rare = True
        frames = {}
        for name in ("runs", "events", "passages"):
            parts = []
            for a, b in part_ranges(out, name, cid):
                path = part_path(out, name, cid, a, b)
                try:
                    t = pq.read_table(path)
                except Exception as e:
                    problems.append(
                        f"{path.relative_to(out)}: unreadable ({e.__class__.__name__}); `jumpsim check {out} --repair` "
                        "removes it, and rerunning the command that wrote it recomputes the chunk"
                    )
                    continue
                if not schema_ok(name, t.schema):
                    problems.append(
                        f"{path.relative_to(out)}: schema differs from jumpsim's {name} schema v{SCHEMA_VERSION}"
                    )
                    continue
                seeds = t["seed"].to_numpy()
                if len(seeds) and (seeds.min() < a or seeds.max() > b):
                    problems.append(f"{path.relative_to(out)}: holds seeds outside {a}..{b}")
                parts.append(t.to_pandas())
            frames[name] = parts
        runs_ranges = set(part_ranges(out, "runs", cid))
        for name in ("events", "passages"):
            missing = runs_ranges - set(part_ranges(out, name, cid))
            for a, b in sorted(missing):
                problems.append(f"config_id={cid}: {name} part for seeds {a}..{b} is missing (its runs part exists)")
        if not frames["runs"]:
            if not has_rare:  # a splitting-only experiment has no brute-force runs
                problems.append(f"config_id={cid}: no runs parts; expected seeds {lo}..{hi - 1}")
            continue
        import pandas as pd

        runs = pd.concat(frames["runs"], ignore_index=True)
        seeds = np.sort(runs.seed.to_numpy())
        uniq, counts = np.unique(seeds, return_counts=True)
        dup = uniq[counts > 1]
        if len(dup):
            problems.append(f"config_id={cid}: seeds present more than once: {_ranges(dup)}")
        expected = np.arange(lo, hi)
        missing = np.setdiff1d(expected, uniq)
        if len(missing):
            problems.append(f"config_id={cid}: {len(missing)} of {hi - lo} seeds missing: {_ranges(missing)}")
        extra = np.setdiff1d(uniq, expected)
        facts.append(
            f"config_id={cid} ({row.name}): {len(uniq)} seeds, {int((runs.status == 'diverged').sum())} diverged"
            + (f", {len(extra)} beyond the newest request ({_ranges(extra)})" if len(extra) else "")
        )
        events = (
            pd.concat(frames["events"], ignore_index=True)
            if frames["events"]
            else SCHEMAS["events"].empty_table().to_pandas()
        )
        passages = (
            pd.concat(frames["passages"], ignore_index=True)
            if frames["passages"]
            else SCHEMAS["passages"].empty_table().to_pandas()
        )
        r = runs.set_index("seed")
        n_ev = events.groupby("seed").size().reindex(r.index, fill_value=0)
        kept = r.n_events - r.events_overflow
        bad = r.index[(n_ev != kept)]
        if len(bad):
            problems.append(
                f"config_id={cid}: events table disagrees with runs.n_events for seeds "
                f"{_ranges(np.sort(bad.to_numpy()))}"
            )
        down = events[events.direction == "down"].groupby("seed").size().reindex(r.index, fill_value=0)
        bad = r.index[(r.events_overflow == 0) & (down != r.n_down)]
        if len(bad):
            problems.append(
                f"config_id={cid}: down events disagree with runs.n_down for seeds {_ranges(np.sort(bad.to_numpy()))}"
            )
        n_pas = passages.groupby("seed").size().reindex(r.index, fill_value=0)
        bad = r.index[n_pas != r.initial_rank]
        if len(bad):
            problems.append(
                f"config_id={cid}: passages rows != initial_rank for seeds {_ranges(np.sort(bad.to_numpy()))}"
            )
    return problems, facts
