"""Run the experiment suite and write data/results/REPORT.md (issue #4).

    python data/experiments/run.py              # everything (about 10 minutes on 2 CPU cores)
    python data/experiments/run.py --only b c   # some experiments; the report uses what exists
    python data/experiments/run.py --report-only
    python data/experiments/run.py --escape-law  # rebuild sections (r)-(w) of REPORT.md, keep the others
    python data/experiments/run.py --quick --out DIR  # the whole pipeline at <= 32 seeds, small splitting
    python data/experiments/run.py --make-start # rewrite rank3_start.npz (2 x 400k GD steps)
    python data/experiments/run.py --make-start 2e-3  # the GD minimum at another ridge

The suite (its experiments, files and running) is suite.py, the analysis it shares analysis.py, the
report one module per section under report/. Datasets go to data/results/<experiment>/ (not committed:
rerun to regenerate; finished chunks are reused), small summaries to data/results/*.parquet, figures to
data/results/*.png.

Every number in the report is computed by this code: from the datasets with jumpsim.stats, from the
configurations, and from the committed start rank3_start.npz with numpy (float64).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from jumpsim.devices import use_cpu_devices

use_cpu_devices()  # one XLA host device per usable core, as the jumpsim command does, before JAX starts

import suite
from report import claims, escape_law, report, splice


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--only",
        nargs="*",
        choices=[n.split("_")[0] for n in suite.EXPERIMENTS],
        help="run only these (a b c ...); the report uses every dataset present",
    )
    p.add_argument("--depth", type=int, default=3, help="with --make-start: the network's depth")
    p.add_argument(
        "--make-rank2-start", action="store_true", help=f"rewrite {suite.RANK2.name} (and check it), then stop"
    )
    p.add_argument(
        "--make-rank4-start", action="store_true", help=f"rewrite {suite.RANK4.name} (and check it), then stop"
    )
    p.add_argument("--out", type=Path, default=suite.RESULTS)
    p.add_argument("--report-only", action="store_true", help="do not simulate; rebuild the report from the datasets")
    p.add_argument(
        "--escape-law",
        action="store_true",
        help="do not simulate; rebuild the sections of the escape law (r-w) and their rows of the claims table in "
        "OUT/REPORT.md, the rest kept as it is (for a checkout without the other experiments' datasets)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="at most 32 seeds per config and splitting of at most 16 particles x 4 replicas (64 flux seeds): "
        "a fast run of the whole pipeline (use another --out)",
    )
    p.add_argument(
        "--make-start",
        nargs="?",
        const=1e-3,
        type=float,
        metavar="RIDGE",
        help=f"rewrite {suite.START.name} (or the start file of another RIDGE) and check it, then stop",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    suite.set_quick(args.quick)
    if args.make_rank2_start:
        suite.make_rank2_start()
        return 0
    if args.make_rank4_start:
        suite.make_rank4_start()
        return 0
    if args.make_start is not None:
        suite.make_start(suite.start_path(args.make_start, args.depth), args.make_start, args.depth)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.escape_law:
        path = args.out / "REPORT.md"
        lines, rows = escape_law(args.out, suite.curve_rows(args.out))
        text = claims.splice_rows(splice(path.read_text(), lines), rows)
        path.write_text(text)
        print(text)
        return 0
    names = [n for n in suite.EXPERIMENTS if not args.only or n.split("_")[0] in args.only]
    timings_path = args.out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    if not args.report_only:
        timings = suite.run_all(names, args.out, timings)
        timings_path.write_text(json.dumps(timings, indent=2))
    text = report(args.out, timings)
    (args.out / "REPORT.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
