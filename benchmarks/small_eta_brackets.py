"""The bracket [path lower bound, upper bound] where nothing escapes: the rank-3 minimum at small learning rates.

    python benchmarks/small_eta_brackets.py [--lrs 0.11 0.10 0.08 0.05] [--keep 0.75] [--json PATH] [--quick]

For each learning rate, ``jumpsim rare`` on ``data/experiments/b_escape.toml`` (the rank-3 minimum of
``rank3_start.npz``, T = 1e5) with the rate form and ``rare.bracket = true``: the flux phase bounds the rate from
above (no crossing of the first interface at these learning rates), and the prefixes of ``jumpsim.bracket`` bound
P(rank <= 2 within T) from below. Prints and records each bracket, its width in decades, the prefix length m0,
the SGD steps and the wall time. ``--quick``: one learning rate, T = 2e4, 16 trajectories per probe (CI).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

from rare_cli import rare_row, write_json

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "data" / "experiments" / "b_escape.toml"


def bracket(lr: float, keep: float, extra: list[str], out: Path) -> dict:
    sets = [f"train.lr={lr}", "rare.method=rate", "rare.bracket=true", f"rare.bracket_keep={keep}", *extra]
    r, wall = rare_row(CONFIG, out, sets)
    upper = r["p_bound"] if r.get("p_bound") is not None else r["p_high"]
    lg = r["log10_p_lower_bound"]
    return {
        "lr": lr,
        "horizon": r["horizon"],
        "keep": keep,
        "log10_lower": lg,
        "upper": upper,
        "width_decades": math.log10(upper) - lg if upper and lg is not None else None,
        "prefix_steps": r["lower_bound_draws"],
        "rate_high": r.get("rate_high"),
        "seed_steps": r["seed_steps"],
        "wall_s": wall,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.11, 0.10, 0.08, 0.05])
    ap.add_argument("--keep", type=float, default=0.75)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    extra = ["train.steps=20000", "rare.bracket_trials=16", "rare.flux_seeds=16"] if a.quick else []
    lrs = a.lrs[:1] if a.quick else a.lrs
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lr in lrs:
            rows.append(bracket(lr, a.keep, extra, Path(tmp) / f"lr{lr}"))
            r = rows[-1]
            lower = "no lower bound" if r["log10_lower"] is None else f"10^{r['log10_lower']:.1f}"
            width = "" if r["width_decades"] is None else f"{r['width_decades']:.0f} decades; "
            print(
                f"eta {lr}: {lower} <= P(rank <= 2 within {r['horizon']:,}) <= {r['upper']} ({width}prefix "
                f"{r['prefix_steps']} steps; {r['seed_steps']:,} SGD steps, {r['wall_s']:.0f} s)",
                flush=True,
            )
    if a.json:
        write_json(a.json, a, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
