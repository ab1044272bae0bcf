"""Number formatting shared by everything that prints results (summaries, estimators, the report)."""

from __future__ import annotations


def fmt_rate(x: float) -> str:
    """A rate or probability: "0" for zero, else 3 significant digits."""
    return "0" if x == 0 else f"{x:.3g}"


def fmt(x, missing: str = "?") -> str:
    """3 significant digits; `missing` for a missing (None / NaN) value ("-" in tables where it does not apply)."""
    return missing if x is None or x != x else f"{x:.3g}"
