"""What the benchmarks that drive ``jumpsim rare`` share: one run through the documented command, and the JSON
they write."""

from __future__ import annotations

import json
import time
from pathlib import Path

from jumpsim import cli, runner, summary


def rare_row(config: Path, out: Path, sets: list[str], args: list[str] = ()) -> tuple[dict, float]:
    """``jumpsim rare CONFIG --out OUT --quiet ARGS --set KEY=VALUE ...`` as a user runs it (config loading
    included), then its one ``summarize --json`` splitting row, with the wall time of the run in seconds."""
    argv = ["rare", str(config), "--out", str(out), "--quiet", *args] + [a for s in sets for a in ("--set", s)]
    t0 = time.perf_counter()
    if cli.main(argv) != 0:
        raise SystemExit(f"jumpsim rare failed: {' '.join(argv[1:])}")
    wall = time.perf_counter() - t0
    (row,) = summary.summarize_json(out)["splitting"]
    return row, wall


def write_json(path: Path, args, rows: list[dict]) -> None:
    """The rows with the versions and devices they were measured on, and the script's arguments."""
    info = {"info": runner.versions(), "args": vars(args) | {"json": str(args.json)}, "rows": rows}
    path.write_text(json.dumps(info, indent=1))
