"""Telling a dataset's experiments apart: the settings in which they differ, as short labels for headers and
legends (a sweep's experiments share a name)."""

from __future__ import annotations

import json

import pandas as pd


def flatten(config: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 0.1}} -> {"train.lr": 0.1}; schedules stay whole values (as JSON text)."""
    out = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not ("kind" in v and prefix):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v, sort_keys=True) if isinstance(v, dict) else v
    return out


def differing(experiments: pd.DataFrame) -> dict[str, dict]:
    """{config_id: {key: value}} of the settings (outside [run] and [rare]) whose values are not the same in
    every experiment of the table (rows of ``experiments.parquet``), in the table's order."""
    flat = {r.config_id: flatten(json.loads(r.config)) for r in experiments.itertuples()}
    keys = sorted({k for f in flat.values() for k in f if not k.startswith(("run.", "rare.", "name"))})
    diff = [k for k in keys if len({json.dumps(f.get(k)) for f in flat.values()}) > 1]
    return {cid: {k: f.get(k) for k in diff} for cid, f in flat.items()}


def label(name: str, cid: str, diff: dict) -> str:
    """``name [cid] key=value, ...``: the header of one experiment."""
    extra = ", ".join(f"{k}={v}" for k, v in diff.items())
    return f"{name} [{cid}]" + (f" {extra}" if extra else "")


def short(name: str, diff: dict) -> str:
    """A legend entry: the differing settings, or the name when nothing differs."""
    return ", ".join(f"{k.split('.', 1)[-1]}={v}" for k, v in diff.items()) or name
