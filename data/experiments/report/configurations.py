"""The report's last part: the normalized configuration of every experiment that ran."""

from __future__ import annotations

from pathlib import Path

import suite
from .fmt import NotRun


def compute(out: Path) -> list[tuple[str, list[tuple[str, str]] | NotRun]]:
    """Per experiment of the suite: (config_id, config JSON) of each of its configs, or NotRun."""
    res = []
    for name in suite.EXPERIMENTS:
        data = suite.load(out, name)
        if data is None:
            res.append((name, NotRun(name)))
        else:
            res.append((name, [(row.config_id, row.config) for row in data["experiments"].itertuples()]))
    return res


def render(configs: list[tuple[str, list[tuple[str, str]] | NotRun]]) -> list[str]:
    lines = [
        "## Configurations",
        "",
        "Normalized configuration of every experiment (`experiments.parquet` of each dataset):",
        "",
    ]
    for name, rows in configs:
        if isinstance(rows, NotRun):
            lines.append(f"- `{name}`: " + rows.lines()[0])
            continue
        for cid, config in rows:
            lines.append(f"- `{name}` / `{cid}`: `{config}`")
    return lines + [""]
