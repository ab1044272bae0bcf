"""Command line: ``jumpsim run | summarize | plot | check``.

Exit codes: 0 success, 2 bad config or arguments (one line naming the key, nothing written),
1 any other failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from .config import PROPOSALS, RARE_METHODS
from .devices import use_cpu_devices


class UsageError(Exception):
    """Bad command-line arguments (exit 2)."""


class DatasetWriteError(Exception):
    """The output directory cannot be written (exit 1)."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM, with what is kept on disk (exit 130)."""


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
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
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
    cp.add_argument("a", help="experiment A: config_id, unique prefix, name, or a setting (e.g. train.lr=0.05)")
    cp.add_argument("b", help="experiment B, as A")
    cp.add_argument("--start", type=int, help="starting rank (default: the most common initial rank of A)")
    cp.add_argument("--to", type=int, dest="to_level", help="level: first passage to rank <= this (default: start - 1)")
    cp.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    cp.add_argument("--burn-in", type=int, default=0, metavar="STEPS", help="count rates only from this step on")
    cp.add_argument("--json", action="store_true")
    c = sub.add_parser("check", help="verify a dataset: schemas, every seed exactly once, consistency")
    c.add_argument("dir")
    c.add_argument("--repair", action="store_true", help="remove unreadable part files (rerun to recompute them)")
    ls = sub.add_parser("list", help="a dataset's experiments: what differs between them, seeds, estimates, starts")
    ls.add_argument("dir")
    k = sub.add_parser("keys", help="every config key with its default and meaning (the config reference)")
    k.add_argument("--toml", action="store_true", help="as a commented TOML file of the defaults")
    pl = sub.add_parser("plot", help="figure of a dataset (needs the 'plot' extra)")
    pl.add_argument("dir")
    pl.add_argument("--out", help="PNG file (default DIR/summary.png)")
    pl.add_argument("--experiment", help="only this experiment (config_id, unique prefix, or name)")
    pl.add_argument("--to", type=int, dest="to_level", help="passage curves to rank <= this level only")
    return p


def _require_dir(command: str, path: str) -> None:
    if not os.path.isdir(path):
        raise UsageError(f"{command}: {path} is not a directory")


def _require_dataset(command: str, path: str) -> None:
    """A directory that `jumpsim run` or `jumpsim rare` wrote into (its experiments table, or a table's parts)."""
    _require_dir(command, path)
    from .dataset import RARE_TABLES, TABLES

    names = ("experiments.parquet", *TABLES, *RARE_TABLES, "rare_state")
    if not any(os.path.exists(os.path.join(path, n)) for n in names):
        raise UsageError(f"{command}: {path} is not a jumpsim dataset (no experiments.parquet, no tables)")


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
    runner.check_target([cfg], out, args.append)
    try:
        outcome = rare.run_rare(cfg, out, shard, n_shards, progress=not args.quiet)
    except KeyboardInterrupt:
        lo, hi = rare.replica_range(cfg, shard, n_shards)
        kept = (
            "the engine state of its last finished iteration is saved"
            if rare.state_path(out, cfg, lo, hi).exists()
            else "no iteration had finished yet"
        )
        raise Interrupted(f"{kept}; rerun the same command to resume") from None
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
    _require_dataset("summarize", args.dir)
    print(summary.summarize_text(args.dir, args.json, args.level, args.burn_in))
    return 0


def _cmd_compare(args) -> int:
    import json

    from . import dataset, stats

    _require_dataset("compare", args.dir)
    data = dataset.read_dataset(args.dir)
    exps = data["experiments"]

    def resolve(key):
        if "=" in key:  # a setting in which the experiments differ, e.g. train.lr=0.05
            from .config import parse_override
            from .labels import flatten

            path, value = parse_override(key)
            name = ".".join(path)
            hit = exps[[flatten(json.loads(c)).get(name) == value for c in exps.config]]
        else:
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
    frm = "from the start" if res["from"] == "start" else f"timed from each seed's first passage to rank <= {start}"
    print(f"A = {a}, B = {b}: first passage from rank {start} to <= {to} within the horizon ({frm})")
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
    from .dataset import check_dataset, repair

    _require_dir("check", args.dir)
    if args.repair:
        for path in repair(args.dir):
            print(f"removed {path}")
    problems, facts = check_dataset(args.dir)
    for line in facts:
        print(line)
    for line in problems:
        print(f"PROBLEM: {line}")
    print(f"{args.dir}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def _cmd_list(args) -> int:
    from . import summary

    _require_dataset("list", args.dir)
    print(summary.list_text(args.dir))
    return 0


def _cmd_keys(args) -> int:
    from . import config

    print(config.reference(toml=args.toml))
    return 0


def _cmd_plot(args) -> int:
    from . import plot

    _require_dataset("plot", args.dir)
    path = plot.plot_dataset(args.dir, args.out, experiment=args.experiment, to=args.to_level)
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .errors import ConfigError

    use_cpu_devices()
    try:
        parser = _parser()
        args = parser.parse_args(argv)
        if args.version:
            from .version import __version__

            print(f"jumpsim {__version__}")
            return 0
        if args.command is None:
            parser.print_help()
            return 0
        with warnings.catch_warnings():  # a library warning reads as one line, not as a source location
            warnings.showwarning = _warning_line
            return _dispatch(args)
    except (UsageError, ConfigError) as e:
        print(f"jumpsim: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `jumpsim summarize DIR | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except DatasetWriteError as e:
        print(f"jumpsim: error: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(f"jumpsim: interrupted; {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("jumpsim: interrupted; finished chunks are on disk, rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # one line for the user; JUMPSIM_DEBUG=1 shows the traceback
        if os.environ.get("JUMPSIM_DEBUG"):
            raise
        print(f"jumpsim: {e.__class__.__name__}: {e}", file=sys.stderr)
        return 1


def _dispatch(args) -> int:
    return {
        "run": _cmd_run,
        "rare": _cmd_rare,
        "summarize": _cmd_summarize,
        "plot": _cmd_plot,
        "check": _cmd_check,
        "compare": _cmd_compare,
        "list": _cmd_list,
        "keys": _cmd_keys,
    }[args.command](args)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"jumpsim: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
