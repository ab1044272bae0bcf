"""Command line: ``jumpsim run | summarize | plot | check``.

Exit codes: 0 success, 2 bad config or arguments (one line naming the key, nothing written),
1 any other failure.
"""

from __future__ import annotations

import argparse
import os
import sys

from .config import PROPOSALS, RARE_METHODS
from .devices import use_cpu_devices


class UsageError(Exception):
    """Bad command-line arguments (exit 2)."""


class DatasetWriteError(Exception):
    """The output directory cannot be written (exit 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, instead of usage + message
        raise UsageError(message)


def _shard(text: str | None) -> tuple[int, int]:
    """``I/N`` from --shard, else from a Slurm array job, else 0/1."""
    if text is None:
        tid, cnt = os.environ.get("SLURM_ARRAY_TASK_ID"), os.environ.get("SLURM_ARRAY_TASK_COUNT")
        if tid is None or cnt is None:
            return 0, 1
        text = f"{int(tid) - int(os.environ.get('SLURM_ARRAY_TASK_MIN', 0))}/{cnt}"
        source = "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT"
    else:
        source = "--shard"
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"{source}: expected I/N with 0 <= I < N (got {text!r})") from None
    if not 0 <= i < n:
        raise UsageError(f"{source}: expected I/N with 0 <= I < N (got {text!r})")
    return i, n


def _simulation_arguments(p: argparse.ArgumentParser, shard: str) -> None:
    """Options shared by the commands that simulate (run, rare)."""
    p.add_argument("--out", help="dataset directory (default results/<name>)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable)",
    )
    p.add_argument("--shard", help=f"{shard} (default: from SLURM_ARRAY_TASK_ID/COUNT)")
    p.add_argument("--append", action="store_true", help="allow adding a different experiment to an existing --out")
    p.add_argument("--cache", metavar="DIR", help="persistent compilation cache (default: $JUMPSIM_CACHE if set)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jumpsim", description="Monte Carlo jump statistics of SGD on deep linear networks.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="simulate an experiment (the built-in default without CONFIG)")
    r.add_argument("config", nargs="?", help="TOML config file")
    r.add_argument("--seeds", type=int, help="shortcut for --set run.seeds=N")
    r.add_argument("--steps", type=int, help="shortcut for --set train.steps=T")
    _simulation_arguments(r, shard="I/N: run only shard I of N")
    rr = sub.add_parser(
        "rare",
        help="rare-jump estimate from the experiment's start: splitting (tams, rate) or importance sampling (is)",
    )
    rr.add_argument("config", nargs="?", help='TOML config file (init = "file" or "gd")')
    rr.add_argument("--method", choices=RARE_METHODS, help="shortcut for --set rare.method=...")
    rr.add_argument("--proposal", choices=PROPOSALS, help="shortcut for --set rare.proposal=... (importance sampling)")
    rr.add_argument("--particles", type=int, help="shortcut for --set rare.particles=N")
    rr.add_argument("--replicas", type=int, help="shortcut for --set rare.replicas=R")
    rr.add_argument("--kill-fraction", type=float, help="shortcut for --set rare.kill_fraction=A")
    rr.add_argument("--steps", type=int, help="shortcut for --set train.steps=T (the horizon of tams)")
    _simulation_arguments(rr, shard="I/N: only the replicas of shard I of N")
    s = sub.add_parser("summarize", help="jump probabilities and rates of a dataset")
    s.add_argument("dir")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    s.add_argument(
        "--burn-in", type=int, default=0, metavar="STEPS", help="count rates only from this step on (skip a transient)"
    )
    cp = sub.add_parser("compare", help="two experiments of a dataset: probabilities, log-rank test, rate ratio")
    cp.add_argument("dir")
    cp.add_argument("a", help="config_id (or unique prefix, or name) of experiment A")
    cp.add_argument("b", help="config_id (or unique prefix, or name) of experiment B")
    cp.add_argument("--start", type=int, help="starting rank (default: the most common initial rank of A)")
    cp.add_argument("--to", type=int, dest="to_level", help="level: first passage to rank <= this (default: start - 1)")
    cp.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    cp.add_argument("--burn-in", type=int, default=0, metavar="STEPS", help="count rates only from this step on")
    cp.add_argument("--json", action="store_true")
    c = sub.add_parser("check", help="verify a dataset: schemas, every seed exactly once, consistency")
    c.add_argument("dir")
    pl = sub.add_parser("plot", help="figure of a dataset (needs the 'plot' extra)")
    pl.add_argument("dir")
    pl.add_argument("--out", help="PNG file (default DIR/summary.png)")
    return p


def _require_dir(command: str, path: str) -> None:
    if not os.path.isdir(path):
        raise UsageError(f"{command}: {path} is not a directory")


def _overrides(args, shortcuts: dict[str, str]) -> list[str]:
    """--set values plus the command's shortcut flags (``{attribute: config key}``)."""
    out = list(args.overrides)
    for attr, key in shortcuts.items():
        v = getattr(args, attr, None)
        if v is not None:
            out.append(f'{key}="{v}"' if isinstance(v, str) else f"{key}={v}")
    return out


def _use_cache(args) -> None:
    cache = args.cache or os.environ.get("JUMPSIM_CACHE")
    if cache:  # e.g. a shared directory for every task of a Slurm array
        import jax

        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _cmd_run(args) -> int:
    from . import config as config_lib

    overrides = _overrides(args, {"seeds": "run.seeds", "steps": "train.steps"})
    shard, n_shards = _shard(args.shard)
    configs = config_lib.load(args.config, overrides)  # validates everything before any write

    from . import runner, summary

    _use_cache(args)
    out = args.out or os.path.join("results", configs[0].name)
    try:
        report = runner.run(configs, out, shard, n_shards, progress=not args.quiet, append=args.append)
    except OSError as e:
        raise DatasetWriteError(
            f"cannot write to {out}: {e.strerror or e} ({e.filename or ''}); finished chunks are kept, rerun the "
            "same command to resume"
        ) from None
    print(summary.run_summary(report, configs))
    return 0


def _cmd_rare(args) -> int:
    from . import config as config_lib

    shortcuts = {
        "method": "rare.method",
        "proposal": "rare.proposal",
        "particles": "rare.particles",
        "replicas": "rare.replicas",
        "kill_fraction": "rare.kill_fraction",
        "steps": "train.steps",
    }
    shard, n_shards = _shard(args.shard)
    cfg = config_lib.load_one(args.config, _overrides(args, shortcuts))

    from . import rare, runner, summary

    _use_cache(args)
    out = args.out or os.path.join("results", cfg.name)
    runner.check_target([cfg], out, args.append, chunks=False)
    try:
        outcome = rare.run_rare(cfg, out, shard, n_shards, progress=not args.quiet)
    except OSError as e:
        raise DatasetWriteError(
            f"cannot write to {out}: {e.strerror or e} ({e.filename or ''}); rerun the same command to resume"
        ) from None
    if outcome.skipped:
        print(f"jumpsim rare: this shard's estimate is already in {out}")
    print(summary.summarize_text(out, splitting_only=True))
    return 0


def _cmd_summarize(args) -> int:
    from . import summary

    if not 0 < args.level < 1:
        raise UsageError(f"--level: must be in (0, 1) (got {args.level})")
    if args.burn_in < 0:
        raise UsageError(f"--burn-in: must be >= 0 (got {args.burn_in})")
    _require_dir("summarize", args.dir)
    print(summary.summarize_text(args.dir, args.json, args.level, args.burn_in))
    return 0


def _cmd_compare(args) -> int:
    import json

    from . import dataset, stats

    _require_dir("compare", args.dir)
    data = dataset.read_dataset(args.dir)
    exps = data["experiments"]

    def resolve(key):
        hit = exps[(exps.config_id == key) | (exps.name == key) | exps.config_id.str.startswith(key)]
        if len(hit) != 1:
            known = ", ".join(f"{r.config_id} ({r.name})" for r in exps.itertuples())
            raise UsageError(f"compare: {key!r} matches {len(hit)} experiments; known: {known}")
        return hit.config_id.iloc[0]

    a, b = resolve(args.a), resolve(args.b)
    runs = data["runs"]
    pct = f"{args.level:.0%}"
    sp = stats.splitting(data["rare"], data["rare_replicas"], args.level, data["rare_iterations"])
    sa, sb = (sp[sp.config_id == c].to_dict(orient="records") for c in (a, b))
    ratio = stats.splitting_ratio(sa[-1], sb[-1], args.level) if sa and sb else None
    brute = not runs[runs.config_id == a].empty and not runs[runs.config_id == b].empty
    if not brute and not (sa and sb):
        raise UsageError(f"compare: {a} and {b} need brute-force runs or splitting estimates both")
    res = {"splitting_ratio": ratio}
    if brute:
        start = args.start if args.start is not None else int(runs[runs.config_id == a].initial_rank.mode().iloc[0])
        to = args.to_level if args.to_level is not None else start - 1
        try:
            res = {
                **stats.compare(runs, data["passages"], data["events"], a, b, start, to, args.level, args.burn_in),
                **res,
            }
        except ValueError as e:
            raise UsageError(f"compare: {e}") from None
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    if ratio is not None:
        what = "escape rate" if ratio["of"] == "rate" else "P(jump within the horizon)"
        print(
            f"splitting, {what} A/B = {ratio['ratio']:.3g} [{ratio['low']:.3g}, {ratio['high']:.3g}] "
            f"({pct}, log-normal)"
        )
    if not brute:
        return 0
    d, rr = res["p_difference"], res["down_rate_ratio"]
    print(f"A = {a}, B = {b}: first passage from rank {start} to <= {to} within the horizon")
    print(
        f"  P_A = {res['p_a']:.4f}, P_B = {res['p_b']:.4f}; P_A - P_B = {d['difference']:+.4f} [{d['low']:+.4f}, "
        f"{d['high']:+.4f}] ({pct} Newcombe)"
    )
    print(f"  log-rank test of the passage-time curves: p = {res['logrank_p_value']:.3g}")
    if rr is None:
        print(f"  down-jump rate ratio: undefined (no time spent at rank {start} in one of them)")
    else:
        print(
            f"  down-jump rate out of rank {start}, A/B = {rr['ratio']:.3g} [{rr['low']:.3g}, {rr['high']:.3g}] "
            f"({pct} exact conditional), p = {rr['p_value']:.3g}"
        )
    return 0


def _cmd_check(args) -> int:
    from .dataset import check_dataset

    _require_dir("check", args.dir)
    problems, facts = check_dataset(args.dir)
    for line in facts:
        print(line)
    for line in problems:
        print(f"PROBLEM: {line}")
    print(f"{args.dir}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def _cmd_plot(args) -> int:
    from . import plot

    path = plot.plot_dataset(args.dir, args.out)
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .errors import ConfigError

    use_cpu_devices()
    try:
        args = _parser().parse_args(argv)
        return {
            "run": _cmd_run,
            "rare": _cmd_rare,
            "summarize": _cmd_summarize,
            "plot": _cmd_plot,
            "check": _cmd_check,
            "compare": _cmd_compare,
        }[args.command](args)
    except (UsageError, ConfigError) as e:
        print(f"jumpsim: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `jumpsim summarize DIR | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except DatasetWriteError as e:
        print(f"jumpsim: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("jumpsim: interrupted; finished work is on disk, rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # one line for the user; JUMPSIM_DEBUG=1 shows the traceback
        if os.environ.get("JUMPSIM_DEBUG"):
            raise
        print(f"jumpsim: {e.__class__.__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
