"""The wall times of the simulations behind the report: the CPU's (timings.json) and the GPU's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple


class TimingsFacts(NamedTuple):
    cpu: dict  # experiment -> seconds
    gpu: dict | None  # gpu_timings.json: device and seconds per pack


def compute(timings: dict, gpu_path: Path) -> TimingsFacts:
    """``timings`` and, where the file exists, the GPU's timings from ``gpu_path``."""
    return TimingsFacts(timings, json.loads(gpu_path.read_text()) if gpu_path.exists() else None)


def render(t: TimingsFacts) -> list[str]:
    if not t.cpu:
        return ["Wall time of this generation: not recorded (no `timings.json`).", ""]
    tot = sum(t.cpu.values())
    each = ", ".join(f"{k} {v:.0f} s" for k, v in t.cpu.items())
    lines = [f"Wall time of the CPU simulations (`timings.json`): {tot / 60:.1f} min ({each}).", ""]
    if t.gpu is not None:
        sec = t.gpu["seconds"]
        each = ", ".join(f"{k} {v:.0f} s" for k, v in sec.items())
        lines += [f"GPU runs ({t.gpu['device']}, `gpu_timings.json`): {sum(sec.values()) / 60:.1f} min ({each}).", ""]
    return lines
