"""Run the experiment suite and write data/results/REPORT.md (issue #4).

    python data/experiments/run.py              # everything (about 10 minutes on 2 CPU cores)
    python data/experiments/run.py --only b c   # some experiments; the report uses what exists
    python data/experiments/run.py --report-only
    python data/experiments/run.py --make-start # rewrite rank3_start.npz (2 x 400k GD steps)
    python data/experiments/run.py --make-start 2e-3  # the GD minimum at another ridge

Every experiment TOML here says ``extends = "base.toml"``: base.toml holds the suite's
problem, model and detector, each file only its own differences. Datasets go to
data/results/<experiment>/ (not committed: rerun to regenerate; finished chunks are reused),
small summaries to data/results/*.parquet, figures to data/results/*.png.

Every number in the report is computed here: from the datasets with jumpsim.stats, from the
configurations, and from the committed start rank3_start.npz with numpy (float64).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

# One XLA host device per usable core (as the jumpsim command does), before JAX starts;
# an explicit device count in XLA_FLAGS (tests/conftest.py sets one) is left alone.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    _n = os.environ.get("JUMPSIM_CPU_DEVICES") or str(len(os.sched_getaffinity(0)))
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={_n}".strip()

import jax
import numpy as np
import pandas as pd

import jumpsim
from jumpsim import config as config_lib
from jumpsim import problem as problem_lib
from jumpsim import rare, stats

EXPERIMENTS = [
    "a_gd_stuck",
    "b_escape",
    "c_one_way",
    "d_depth",
    "e_phase",
    "f_schedules",
    "g_width_batch",
    "h_splitting",
    "i_small_eta",
]
# experiments that also run splitting estimates (jumpsim rare), by method
SPLITTING = {"h_splitting": ("tams", "rate"), "i_small_eta": ("rate",)}
BASE = HERE / "base.toml"
START = HERE / "rank3_start.npz"
RESULTS = ROOT / "data" / "results"


# ------------------------------------------------------------------------------------------
# configurations


def load_experiment(path: str | Path) -> list:
    """The configs of one TOML of the suite (each extends base.toml)."""
    return jumpsim.load_configs(path)


def base_config():
    """The suite's shared settings (base.toml loads on its own)."""
    return jumpsim.load_config(BASE)


def suite_problem(cfg=None) -> problem_lib.Problem:
    p = (cfg or base_config()).problem
    return problem_lib.generate(p.n, p.m, p.rank, p.observed, p.seed)


# ------------------------------------------------------------------------------------------
# the rank-3 start


def start_facts(path: Path = START, ridge: float | None = None) -> dict:
    """Rank, singular values and residual gradient of a committed start, in numpy float64:
    A = W_L ... W_1 and the full-batch gradient of the mean squared error over the observed
    entries plus 2 ridge W (the base's problem, loss and threshold; ``ridge`` default: the base's)."""
    cfg = base_config()
    prob = suite_problem(cfg)
    thr = cfg.detect.threshold
    ridge = cfg.train.ridge.value_at(0) if ridge is None else ridge
    scale = 1.0 if cfg.train.loss == "mean" else float(prob.n_observed)
    with np.load(path) as z:
        ws = [np.asarray(z[f"W{l + 1}"], np.float64) for l in range(cfg.model.depth)]
    a = ws[0]
    for w in ws[1:]:
        a = w @ a
    resid = np.zeros_like(a)
    resid[prob.rows, prob.cols] = a[prob.rows, prob.cols] - prob.values
    g_a = 2.0 * scale * resid / prob.n_observed  # d(loss)/dA
    sq = 0.0
    for l, w in enumerate(ws):
        below = np.eye(ws[0].shape[1])
        for v in ws[:l]:
            below = v @ below
        above = np.eye(ws[-1].shape[0])
        for v in ws[l + 1 :]:
            above = v @ above
        sq += float(np.sum((above.T @ g_a @ below.T + 2.0 * ridge * w) ** 2))
    sv = np.linalg.svd(a, compute_uv=False)
    test = ~prob.mask
    return {
        "rank": int(np.sum(sv > thr)),
        "singular_values": sv.tolist(),
        "grad_norm": math.sqrt(sq),
        "train_mse": float(np.mean(resid[prob.rows, prob.cols] ** 2)),
        "test_mse": float(np.mean((a - prob.target)[test] ** 2)) if test.any() else float("nan"),
        "ridge": ridge,
        "threshold": thr,
    }


def start_path(ridge: float | None = None) -> Path:
    """The committed GD minimum for ``ridge``: rank3_start.npz at the base's ridge (1e-3), else
    rank3_start_ridge{ridge}.npz (the escape curve starts each ridge from its own minimum)."""
    return START if ridge in (None, 1e-3) else HERE / f"rank3_start_ridge{ridge:g}.npz"


def make_start(path: Path = START, ridge: float | None = None) -> dict:
    """Rewrite a start file: full-batch gradient descent in float32 from the gaussian start of
    the base's model.seed, model.gd_steps steps at model.gd_lr and ``ridge`` (default: the base's; the recipe
    of ``model.init = "gd"``: W <- W - lr (G + 2 ridge W)), saved as W1 ... WL. Then the same
    start is made by jumpsim itself (an init = "gd" run) and its facts, from the experiments
    table's ``start`` column, are checked against the file's."""
    cfg = base_config() if ridge is None else jumpsim.load_config(BASE, [f"train.ridge={ridge}"])
    mc, prob = cfg.model, suite_problem(cfg)
    n, m = prob.target.shape
    dims = [m] + [mc.width] * (mc.depth - 1) + [n]
    keys = jax.random.split(jax.random.key(mc.seed, impl="threefry2x32"), mc.depth)
    f32 = jax.numpy.float32
    ws = tuple(
        (mc.init_scale / math.sqrt(dims[l])) * jax.random.normal(keys[l], (dims[l + 1], dims[l]), f32)
        for l in range(mc.depth)
    )
    scale = 1.0 if cfg.train.loss == "mean" else float(prob.n_observed)
    lr, ridge, hi = mc.gd_lr, cfg.train.ridge.value_at(0), jax.lax.Precision.HIGHEST

    def loss(ws, rows, cols, vals):
        a = ws[0]
        for w in ws[1:]:
            a = jax.numpy.matmul(w, a, precision=hi)
        return scale * jax.numpy.mean((a[rows, cols] - vals) ** 2)

    def gd(ws, rows, cols, vals):
        def body(p, _):
            g = jax.grad(loss)(p, rows, cols, vals)
            return tuple(w - lr * (gi + 2.0 * ridge * w) for w, gi in zip(p, g)), None

        return jax.lax.scan(body, ws, None, length=mc.gd_steps)[0]

    t = time.perf_counter()
    ws = jax.jit(gd)(
        ws, jax.numpy.asarray(prob.rows), jax.numpy.asarray(prob.cols), jax.numpy.asarray(prob.values, f32)
    )
    np.savez(path, **{f"W{l + 1}": np.asarray(w, np.float64) for l, w in enumerate(ws)})
    facts = start_facts(path, ridge)
    print(
        f"{path}: {mc.gd_steps:,} GD steps in {time.perf_counter() - t:.0f} s; rank {facts['rank']}, "
        f"residual gradient {facts['grad_norm']:.2e}, "
        f"singular values {np.round(facts['singular_values'][:4], 4).tolist()}"
    )
    overrides = [
        'name="start-check"',
        'model.init="gd"',
        'train.batch="full"',
        f"train.steps={cfg.detect.every}",
        "run.seeds=1",
        "run.chunk=1",
        "run.trace_seeds=0",
        f"train.ridge={cfg.train.ridge.value_at(0)}",
    ]
    check = config_lib.load(BASE, overrides)
    with tempfile.TemporaryDirectory() as d:
        jumpsim.run(check, Path(d) / "start", progress=False)
        ref = json.loads(jumpsim.read_dataset(Path(d) / "start")["experiments"].start.iloc[0])
    sv_ref = np.asarray(ref["start_singular_values"])
    sv = np.asarray(facts["singular_values"])[: len(sv_ref)]
    print(
        f"jumpsim's own gd start: rank {ref['start_rank']}, residual gradient {ref['start_grad_norm']:.2e} (float32), "
        f"max singular value difference {np.max(np.abs(sv - sv_ref)):.1e}"
    )
    if ref["start_rank"] != facts["rank"] or not np.allclose(sv, sv_ref, rtol=1e-4, atol=1e-4):
        raise SystemExit("the start file does not match jumpsim's init = 'gd' start")
    return facts


# ------------------------------------------------------------------------------------------
# simulation


def run_all(names: list[str], out: Path, timings: dict) -> dict:
    """Simulate each experiment; an experiment whose chunks all existed keeps its timing."""
    for name in names:
        configs = load_experiment(HERE / f"{name}.toml")
        t = time.perf_counter()
        rep = jumpsim.run(configs, out / name, progress=True)
        done = []
        for cfg in configs:
            for method in SPLITTING.get(name, ()):
                cfg_m = dataclasses.replace(cfg, rare=dataclasses.replace(cfg.rare, method=method))
                done.append(not rare.run_rare(cfg_m, out / name, progress=True).skipped)
        if rep.chunks_done or any(done) or name not in timings:
            timings[name] = time.perf_counter() - t
        print(
            f"{name}: {time.perf_counter() - t:.0f} s "
            f"({rep.chunks_done} chunks simulated, {rep.chunks_skipped} reused)",
            flush=True,
        )
    return timings


# ------------------------------------------------------------------------------------------
# formatting helpers


def fmt_p(r) -> str:
    return f"{r.k}/{r.n} = {r.p:.3f} [{r.p_low:.3f}, {r.p_high:.3f}]"


def fmt_rate(c, e, lo, hi) -> str:
    return f"{c} in {e:,} steps: {c / e if e else float('nan'):.3g} [{lo:.3g}, {hi:.3g}] per step"


def fmt_hist(s: pd.Series, prefix: str = "") -> str:
    return ", ".join(f"{prefix}{k}: {v}" for k, v in s.items()) or "none"


def fmt_sched(v) -> str:
    """A schedule value as it reads in a sentence."""
    if not isinstance(v, dict):
        return f"{v:g}"
    if v["kind"] == "piecewise":
        parts = [f"{x:g}" for x in v["values"]]
        return " then ".join(f"{x} to step {b:,}" for x, b in zip(parts, v["boundaries"])) + f" then {parts[-1]}"
    return f"{v['shape']} {v['low']:g}-{v['high']:g} (period {v['period']:,})"


def pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def load(out: Path, name: str):
    d = out / name
    return jumpsim.read_dataset(d) if (d / "experiments.parquet").exists() else None


def not_run(name: str, data: dict | None = None) -> list[str]:
    """What a section says when its dataset is missing (or has no finished chunk yet)."""
    why = "not run" if data is None else "no finished runs yet"
    return [f"{why}: `python data/experiments/run.py --only {name.split('_')[0]}`", ""]


def configs_with_runs(data: dict):
    """(config_id, config dict, runs of that config) for every experiment that has runs."""
    r = data["runs"]
    for cid, c in zip(data["experiments"].config_id, data["experiments"].config):
        rr = r[r.config_id == cid]
        if not rr.empty:  # not simulated (yet) otherwise
            yield cid, json.loads(c), rr


def down_rate(exp_: pd.DataFrame, counts: pd.DataFrame, cid: str, rank: int) -> tuple[int, int, float, float]:
    """(down-jumps out of ``rank``, steps spent at ``rank``, 95 % Poisson interval) of one config,
    from ``stats.exposure``."""
    sel = (counts.config_id == cid) & (counts.rank_before == rank) & (counts.rank_after < rank)
    cnt = int(counts[sel]["count"].sum())
    e = int(exp_[(exp_.config_id == cid) & (exp_["rank"] == rank)].exposure_steps.sum())
    lo, hi = stats.poisson_rate_ci(cnt, e)
    return cnt, e, lo, hi


def passage(fp: pd.DataFrame, cid: str, level: int, start: int | None = None):
    """The first_passage row of one config to rank <= level (from ``start``), or None."""
    g = fp[(fp.config_id == cid) & (fp.level == level)]
    if start is not None:
        g = g[g.start_rank == start]
    return g.iloc[0] if len(g) else None


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def n_div(rr: pd.DataFrame) -> int:
    return int((rr.status == "diverged").sum())


# ------------------------------------------------------------------------------------------
# report sections: each returns its lines and leaves the facts the findings need in ``facts``


def section_header(out: Path) -> list[str]:
    cfg = base_config()
    p, mo, t, d = cfg.problem, cfg.model, cfg.train, cfg.detect
    k = suite_problem(cfg).n_observed
    dev = jax.devices()[0]
    cpu = ""
    if Path("/proc/cpuinfo").exists():
        with open("/proc/cpuinfo") as f:
            cpu = next((s.split(":", 1)[1].strip() for s in f if s.startswith("model name")), "")
    return [
        "# jumpsim experiment report",
        "",
        (
            f"Generated by `python data/experiments/run.py` on {datetime.date.today()}, on {dev.device_kind} "
            f"x{jax.device_count()} ({jax.default_backend()}{', ' + cpu if cpu else ''}), jax {jax.__version__}, "
            f"jumpsim {jumpsim.__version__}. Intervals are 95 %."
        ),
        (
            "Every experiment's exact configuration is in its dataset's `experiments.parquet` (and the TOML in "
            "`data/experiments/`, which extends `base.toml`)."
        ),
        "",
        (
            f"Problem for all (`base.toml`): a {p.n}x{p.m} target of rank r* = {p.rank} (unit RMS entries), "
            f"{pct(p.observed)} of entries observed ({k} of {p.n * p.m}), depth-{mo.depth} DLN of width {mo.width}, "
            f"{t.loss} loss, ridge {t.ridge.value_at(0):g} unless stated, rank threshold {d.threshold:g} with "
            f"persistence {d.persist} checks of {d.every} steps unless stated."
        ),
        "",
        (
            "How to read this: every number below is computed by this script, from the datasets that it writes with "
            "`jumpsim.stats` (k of n with Wilson intervals; rates as events over the steps spent at a rank, with "
            "exact Poisson intervals; a zero count still gives an upper bound), from the configurations, and from the "
            "start file with numpy; the findings are templated from the same numbers. Diverged seeds count as not "
            "having jumped. The settings were chosen by a short exploration (data/experiments/NOTES.md): with more "
            "entries observed, gradient descent did not stop above r* in our tries; at "
            f"{pct(p.observed)} it does, so the suite uses that problem."
        ),
        "",
    ]


def section_timings(timings: dict) -> list[str]:
    if not timings:
        return ["Wall time of this generation: not recorded (no `timings.json`).", ""]
    tot = sum(timings.values())
    each = ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    return [f"Wall time of the simulations (`timings.json`): {tot / 60:.1f} min ({each}).", ""]


def section_a(out: Path, facts: dict) -> list[str]:
    name = "a_gd_stuck"
    lines = ["## (a) Gradient descent gets stuck above the true rank", ""]
    sf = start_facts()
    facts["start"] = sf
    sv = sf["singular_values"]
    start_line = (
        f"The start used below (`rank3_start.npz`, GD from model.seed {base_config().model.seed}; numpy float64 "
        f"from the file): rank {sf['rank']} (threshold {sf['threshold']:g}), residual gradient "
        f"{sf['grad_norm']:.1e}, singular values {np.round(sv[: sf['rank'] + 1], 3).tolist()}, train / test "
        f"MSE {sf['train_mse']:.2e} / {sf['test_mse']:.3f}."
    )
    data = load(out, name)
    if data is None or data["runs"].empty:
        return lines + not_run(name, data) + [start_line, ""]
    r, ev = data["runs"], data["events"]
    cfg = json.loads(data["experiments"].config.iloc[0])
    rstar, T = cfg["problem"]["rank"], int(r.horizon.max())
    late = ev[ev.step > T // 2]
    hist = r.final_rank.value_counts().sort_index()
    moved = late.seed.nunique()
    steps = f"{int(late.step.min()):,}-{int(late.step.max()):,}" if len(late) else "-"
    lines.append(
        f"Full-batch GD (eta {cfg['train']['lr']:g}, {T:,} steps) from {len(r)} random gaussian starts: final ranks "
        f"{fmt_hist(hist, 'rank ')}. {len(r) - moved} of {len(r)} runs kept their rank over the second half of the "
        "run; "
        f"{moved} still changed rank there ({int((late.direction == 'down').sum())} down and "
        f"{int((late.direction == 'up').sum())} up events, at steps {steps})."
    )
    by = r.groupby("final_rank").agg(train=("final_loss", "median"), test=("final_test_error", "median"))
    lines.append(
        "Median train / test MSE by final rank: "
        + "; ".join(f"rank {k}: {v.train:.2e} / {v.test:.3f}" for k, v in by.iterrows())
        + "."
    )
    lines += [start_line, ""]
    hist.rename("seeds").reset_index().to_parquet(out / "a_final_ranks.parquet")
    facts["a"] = {
        "n": len(r),
        "rstar": rstar,
        "above": int((r.final_rank > rstar).sum()),
        "hist": hist.to_dict(),
        "steps": T,
        "moved": moved,
    }
    return lines


def section_b(out: Path, facts: dict) -> list[str]:
    name = "b_escape"
    lines = ["## (b) SGD escapes from the rank-3 minimum", ""]
    data = load(out, name)
    if data is None or data["runs"].empty:
        return lines + not_run(name, data)
    r, pas, ev = data["runs"], data["passages"], data["events"]
    T = int(r.horizon.max())
    fp = stats.first_passage(r, pas)
    exp_, counts = stats.exposure(r, ev)
    lines += [
        (
            f"| eta | seeds | diverged | P(rank <= 2 within {T // 1000}k steps) | down-jumps out of rank 3 / steps at "
            "rank 3 |"
        ),
        "|---|---|---|---|---|",
    ]
    rows = []
    for cid, c, rr in configs_with_runs(data):
        f = passage(fp, cid, 2, 3)
        cnt, e, lo, hi = down_rate(exp_, counts, cid, 3)
        lines.append(
            f"| {fmt_sched(c['train']['lr'])} | {len(rr)} | {n_div(rr)} | {fmt_p(f)} | {fmt_rate(cnt, e, lo, hi)} |"
        )
        rows.append(
            {
                "config_id": cid,
                "setting": f"lr={c['train']['lr']}",
                "lr": c["train"]["lr"],
                "seeds": len(rr),
                "k": int(f.k),
                "p": f.p,
                "p_low": f.p_low,
                "p_high": f.p_high,
                "diverged": n_div(rr),
                "count": cnt,
                "exposure": e,
                "rate_low": lo,
                "rate_high": hi,
            }
        )
    b = pd.DataFrame(rows).sort_values("lr")
    b.to_parquet(out / "b_escape.parquet")
    facts["b"] = {"rows": b, "steps": T}
    return lines + [""]


def section_c(out: Path, facts: dict) -> list[str]:
    name = "c_one_way"
    lines = ["## (c) One way: up-jumps after the kick", ""]
    data = load(out, name)
    if data is None or data["runs"].empty:
        return lines + not_run(name, data)
    r, pas, ev = data["runs"], data["passages"], data["events"]
    lr = json.loads(data["experiments"].config.iloc[0])["train"]["lr"]
    b = lr["boundaries"][0]
    fp = stats.first_passage(r, pas)
    f = fp[(fp.start_rank == 3) & (fp.level == 2)].iloc[0]
    p3 = pas[(pas.start_rank == 3) & (pas.level == 2)]
    k_kick = int((p3.step < b).sum())
    lo_k, hi_k = stats.proportion_ci(k_kick, len(p3))
    rt = stats.rates(r, ev, burn_in=b)
    ups = rt[rt.to_rank > rt.from_rank]
    all_up, down = ev[ev.direction == "up"], ev[ev.direction == "down"]
    lines += [
        (
            f"eta = {lr['values'][0]} for {b:,} steps, then {lr['values'][1]} to {int(r.horizon.max()):,}; "
            f"{len(r)} seeds, {n_div(r)} diverged. Reached rank <= 2: {fmt_p(f)}; by the end of the kick (step {b:,}): "
            f"{k_kick}/{len(p3)} = {k_kick / len(p3):.3f} [{lo_k:.3f}, {hi_k:.3f}]. Down-jumps after the kick: "
            f"{int((down.step >= b).sum())}."
        ),
        "",
        f"Up-jumps counted from step {b:,} (the small-eta phase), with the seed-steps observed at each rank:",
        "",
        "| from -> to | count | seed-steps at the lower rank | rate [95 % interval] |",
        "|---|---|---|---|",
    ]
    for q in ups.itertuples():
        lines.append(
            f"| {q.from_rank} -> {q.to_rank} | {q.count} | {q.exposure_steps:,} | "
            f"{q.rate:.3g} [{q.rate_low:.3g}, {q.rate_high:.3g}] |"
        )
    n_kick, n_after = int((all_up.step < b).sum()), int((all_up.step >= b).sum())
    lines += ["", f"Up-jumps during the kick (steps < {b:,}): {n_kick}; after it: {n_after}.", ""]
    ups.to_parquet(out / "c_up_rates.parquet")
    lines += figure_c(out, data)
    facts["c"] = {
        "b": b,
        "lr": lr,
        "up_kick": n_kick,
        "up_after": n_after,
        "exposure_after": int(ups.exposure_steps.sum()),
        "rate_high": ups[["from_rank", "to_rank", "rate_high"]].values.tolist(),
        "p": f,
        "k_kick": k_kick,
        "n": len(p3),
    }
    return lines


def figure_c(out: Path, data: dict) -> list[str]:
    """First passage 3 -> <= 2 (Kaplan-Meier), rank and singular values of the traced seeds."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["(matplotlib not installed: no figure of the kick experiment)", ""]
    r, pas, tr, exps = data["runs"], data["passages"], data["traces"], data["experiments"]
    cfg = json.loads(exps.config.iloc[0])
    b = cfg["train"]["lr"]["boundaries"][0]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    curve = stats.survival_curves(r, pas)
    g = curve[(curve.start_rank == 3) & (curve.level == 2)]
    axes[0].step(g.step, 1 - g.survival, where="post", label="3 -> <= 2")
    axes[0].fill_between(g.step, 1 - g.low, 1 - g.high, step="post", alpha=0.25)
    axes[0].set(xlabel="step", ylabel="P(reached rank <= 2)", title="first passage (Kaplan-Meier, 95 % log-log band)")
    for i, (seed, t) in enumerate(tr.groupby("seed")):
        axes[1].step(t.step, t["rank"], where="post", lw=1, label=f"seed {seed}")
        sv = np.stack(t.singular_values.to_numpy())
        axes[2].semilogy(t.step, np.maximum(sv, 1e-12), lw=0.7, color=f"C{i}")
    axes[1].set(xlabel="step", ylabel="numerical rank (-1: diverged)", title="rank of traced seeds")
    axes[1].yaxis.get_major_locator().set_params(integer=True)
    axes[2].axhline(exps.threshold.iloc[0], color="k", ls="--", lw=0.8, label=f"threshold {exps.threshold.iloc[0]:g}")
    axes[2].set(xlabel="step", ylabel="singular values of A", title="singular values of traced seeds")
    for ax in axes:
        ax.axvline(b, color="gray", ls=":", lw=1)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "c_one_way.png", dpi=110)
    plt.close(fig)
    return [
        (
            "First passage from rank 3 to rank <= 2 (Kaplan-Meier), rank and singular values of the traced seeds "
            f"(dotted: end of the kick at step {b:,}):"
        ),
        "",
        "![kick then small eta](c_one_way.png)",
        "",
    ]


def section_d(out: Path, facts: dict) -> list[str]:
    name = "d_depth"
    data = load(out, name)
    if data is None or data["runs"].empty:
        return ["## (d) Depth 3 vs depth 4", ""] + not_run(name, data)
    r, pas, ev, exps = data["runs"], data["passages"], data["events"], data["experiments"]
    cfgs = {cid: json.loads(c) for cid, c in zip(exps.config_id, exps.config)}
    ids = {c["model"]["depth"]: cid for cid, c in cfgs.items() if (r.config_id == cid).any()}
    c0, T = next(iter(cfgs.values())), int(r.horizon.max())
    lines = [f"## (d) Depth 3 vs depth 4 (SGD from random starts, eta {c0['train']['lr']:g}, {T // 1000}k steps)", ""]
    fp = stats.first_passage(r, pas)
    rows = []
    for d, cid in sorted(ids.items()):
        rr = r[r.config_id == cid]
        hist = rr[rr.status == "ok"].final_rank.value_counts().sort_index()
        lines.append(f"- depth {d}: {len(rr)} seeds, final ranks {fmt_hist(hist)}")
    dfacts = {"levels": {}, "down3": {}, "steps": T, "lr": c0["train"]["lr"]}
    if 3 in ids and 4 in ids:
        start = int(r[r.config_id == ids[3]].initial_rank.mode().iloc[0])
        for level in (3, 2):

            def pk(cid, level=level):
                g = fp[(fp.config_id == cid) & (fp.level == level)]
                return int(g.k.sum()), int(g.n.sum())

            (k3, n3), (k4, n4) = pk(ids[3]), pk(ids[4])
            diff = stats.proportion_difference(k4, n4, k3, n3)
            line = (
                f"- P(rank <= {level} within {T // 1000}k steps): depth 4 {k4}/{n4}, depth 3 {k3}/{n3}; difference "
                f"(4 - 3) {diff['difference']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]"
            )
            lp = None
            if all((r[r.config_id == ids[d]].initial_rank == start).any() for d in (3, 4)):
                lp = stats.compare(r, pas, ev, ids[4], ids[3], start, level)["logrank_p_value"]
                line += f"; log-rank test of the time to rank <= {level} (seeds starting at rank {start}): p = {lp:.3g}"
            lines.append(line)
            dfacts["levels"][level] = {"k3": k3, "n3": n3, "k4": k4, "n4": n4, "diff": diff, "logrank": lp}
            rows.append(
                {
                    "level": level,
                    "k3": k3,
                    "n3": n3,
                    "k4": k4,
                    "n4": n4,
                    "difference": diff["difference"],
                    "low": diff["low"],
                    "high": diff["high"],
                    "logrank_p": lp,
                }
            )
        burn = T // 2
        exp_, counts = stats.exposure(r, ev, burn_in=burn)
        for d in (3, 4):
            for rk in (4, 3):
                q = down_rate(exp_, counts, ids[d], rk)
                if q[1]:
                    lines.append(f"- depth {d}: down-jumps out of rank {rk} after step {burn // 1000}k: {fmt_rate(*q)}")
                if rk == 3:
                    dfacts["down3"][d] = q
        pd.DataFrame(rows).to_parquet(out / "d_depth.parquet")
    facts["d"] = dfacts
    return lines + [""]


def section_e(out: Path, facts: dict) -> list[str]:
    name = "e_phase"
    data = load(out, name)
    head = "## (e) Phase map: P(at least one rank lower than the start{}) / fraction diverged"
    if data is None or data["runs"].empty:
        return [head.format(""), ""] + not_run(name, data)
    r, pas = data["runs"], data["passages"]
    T = int(r.horizon.max())
    fp = stats.first_passage(r, pas)
    rows = []
    for cid, c, rr in configs_with_runs(data):
        start = int(rr.initial_rank.iloc[0])
        f = passage(fp, cid, start - 1)
        nan = float("nan")
        rows.append(
            {
                "lr": c["train"]["lr"],
                "ridge": c["train"]["ridge"],
                "start_rank": start,
                "p_jump": nan if f is None else float(f.p),
                "p_low": nan if f is None else float(f.p_low),
                "p_high": nan if f is None else float(f.p_high),
                "diverged": float((rr.status == "diverged").mean()),
            }
        )
    ph = pd.DataFrame(rows)
    ph.to_parquet(out / "e_phase.parquet")
    lines = [
        head.format(f" within {T // 1000}k steps"),
        "",
        "Each cell starts from the gradient-descent minimum at its own ridge (start rank in brackets).",
        "",
    ]
    ridges, lrs = sorted(ph.ridge.unique()), sorted(ph.lr.unique())
    lines.append("| eta \\ lambda | " + " | ".join(f"{x:g}" for x in ridges) + " |")
    lines.append("|---" * (len(ridges) + 1) + "|")
    for lr in lrs:
        cells = []
        for rd in ridges:
            q = ph[(ph.lr == lr) & (ph.ridge == rd)]
            if q.empty:
                cells.append("-")
                continue
            q = q.iloc[0]
            cells.append(f"{q.p_jump:.2f} [{q.p_low:.2f}, {q.p_high:.2f}] / {q.diverged:.2f} (r{int(q.start_rank)})")
        lines.append(f"| {lr:g} | " + " | ".join(cells) + " |")
    lines += [""] + figure_e(out, ph, ridges, lrs, T)
    facts["e"] = {"ph": ph, "steps": T}
    return lines


def figure_e(out: Path, ph: pd.DataFrame, ridges: list, lrs: list, T: int) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["(matplotlib not installed: no heat map)", ""]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, col, title in (
        (axes[0], "p_jump", f"P(jump down within {T // 1000}k)"),
        (axes[1], "diverged", "fraction diverged"),
    ):
        grid = np.full((len(lrs), len(ridges)), np.nan)
        for q in ph.itertuples():
            grid[lrs.index(q.lr), ridges.index(q.ridge)] = getattr(q, col)
        im = ax.imshow(grid, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set(
            xticks=range(len(ridges)),
            xticklabels=[f"{x:g}" for x in ridges],
            yticks=range(len(lrs)),
            yticklabels=[f"{x:g}" for x in lrs],
            xlabel="ridge lambda",
            ylabel="learning rate eta",
            title=title,
        )
        for i in range(len(lrs)):
            for j in range(len(ridges)):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.2f}",
                    ha="center",
                    va="center",
                    color="w" if grid[i, j] < 0.5 else "k",
                    fontsize=8,
                )
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(out / "e_phase.png", dpi=110)
    plt.close(fig)
    return ["![phase map](e_phase.png)", ""]


def section_f(out: Path, facts: dict) -> list[str]:
    name = "f_schedules"
    data = load(out, name)
    if data is None or data["runs"].empty:
        return ["## (f) Schedules from the same rank-3 minimum", ""] + not_run(name, data)
    r, pas = data["runs"], data["passages"]
    T = int(r.horizon.max())
    fp = stats.first_passage(r, pas)
    md = stats.median_passage(r, pas)
    seeds = sorted(r.groupby("config_id", observed=True).size().unique())
    lines = [
        f"## (f) Schedules from the same rank-3 minimum ({'/'.join(map(str, seeds))} seeds, {T // 1000}k steps)",
        "",
        "| lr | ridge | diverged | final ranks (non-diverged) | P(rank <= 2) | median steps to rank <= 2 |",
        "|---|---|---|---|---|---|",
    ]
    rows = []
    for cid, c, rr in configs_with_runs(data):
        f = passage(fp, cid, 2, 3)
        m = md[(md.config_id == cid) & (md.level == 2)]
        med = "not reached by half" if not len(m) or np.isnan(m["median"].iloc[0]) else f"{m['median'].iloc[0]:,.0f}"
        hist = rr[rr.status == "ok"].final_rank.value_counts().sort_index()
        lr, rd = json.dumps(c["train"]["lr"]), json.dumps(c["train"]["ridge"])
        lines.append(f"| {lr} | {rd} | {n_div(rr)} | {fmt_hist(hist)} | {fmt_p(f)} | {med} |")
        rows.append(
            {
                "config_id": cid,
                "lr": lr,
                "ridge": rd,
                "k": int(f.k),
                "n": int(f.n),
                "p": f.p,
                "p_low": f.p_low,
                "p_high": f.p_high,
                "diverged": n_div(rr),
            }
        )
    fs = pd.DataFrame(rows)
    fs[["config_id", "lr", "ridge", "p", "p_low", "p_high"]].to_parquet(out / "f_schedules.parquet")
    facts["f"] = {"rows": fs, "steps": T}
    return lines + [""]


def section_g(out: Path, facts: dict) -> list[str]:
    name = "g_width_batch"
    data = load(out, name)
    if data is None or data["runs"].empty:
        return ["## (g) Width and batch size", ""] + not_run(name, data)
    r, pas, ev, exps = data["runs"], data["passages"], data["events"], data["experiments"]
    c0, T = json.loads(exps.config.iloc[0]), int(r.horizon.max())
    exp_, counts = stats.exposure(r, ev)
    fp = stats.first_passage(r, pas)
    seeds = sorted(r.groupby("config_id", observed=True).size().unique())
    lines = [
        (
            f"## (g) Width and batch size (eta {fmt_sched(c0['train']['lr'])}, {'/'.join(map(str, seeds))} seeds, "
            f"{T // 1000}k steps, each from its own GD minimum)"
        ),
        "",
        "| width | batch | start rank | diverged | P(rank below start) | down-rate out of the start rank |",
        "|---|---|---|---|---|---|",
    ]
    rows = []
    for cid, c, rr in configs_with_runs(data):
        start = int(rr.initial_rank.iloc[0])
        f = passage(fp, cid, start - 1)
        cnt, e, lo, hi = down_rate(exp_, counts, cid, start)
        lines.append(
            f"| {c['model']['width']} | {c['train']['batch']} | {start} | {n_div(rr)} | "
            f"{fmt_p(f) if f is not None else '-'} | {fmt_rate(cnt, e, lo, hi)} |"
        )
        rows.append(
            {
                "width": c["model"]["width"],
                "batch": c["train"]["batch"],
                "start_rank": start,
                "count": cnt,
                "exposure": e,
                "rate_low": lo,
                "rate_high": hi,
                "k": int(f.k) if f is not None else 0,
                "n": len(rr),
                "p_low": float(f.p_low) if f is not None else float("nan"),
                "p_high": float(f.p_high) if f is not None else float("nan"),
            }
        )
    g = pd.DataFrame(rows)
    g[["width", "batch", "start_rank", "count", "exposure", "rate_low", "rate_high"]].to_parquet(
        out / "g_width_batch.parquet"
    )
    facts["g"] = {"rows": g, "lr": c0["train"]["lr"]}
    return lines + [""]


def splitting_rows(data: dict) -> pd.DataFrame:
    """Pooled splitting estimates of a dataset (``stats.splitting``) with the steps each spent."""
    return stats.splitting(data["rare"], data["rare_replicas"])


def section_h(out: Path, facts: dict) -> list[str]:
    name = "h_splitting"
    data = load(out, name)
    head = ["## (h) Splitting against brute force from the rank-3 minimum", ""]
    if data is None or data["runs"].empty or data["rare"].empty:
        return head + not_run(name, data)
    r, pas, ev = data["runs"], data["passages"], data["events"]
    fp = stats.first_passage(r, pas)
    exp_, counts = stats.exposure(r, ev)
    sp = splitting_rows(data)
    lines = head + [
        "Brute force (all seeds from the start, 95 % Wilson / exact Poisson) beside fixed-horizon TAMS (mean of "
        "replica estimates, Student-t) and the rate form (k = flux x P(target before basin), delta method; "
        "P = 1 - exp(-kT)), each with the SGD steps it simulated.",
        "",
        "The last column projects the SGD steps each estimator needs for a 20 % relative standard error of P from the "
        "error it achieved (brute force: (1 - p) / (0.04 p) seeds x T; splitting: steps used x (relative error / "
        "0.2)^2).",
        "",
        "| eta | estimator | P(rank <= 2 within T) | rate 3 -> 2 per step | SGD steps | agrees with brute force | "
        "steps for 20 % |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = []
    for cid, c, rr in configs_with_runs(data):
        eta, T = c["train"]["lr"], int(rr.horizon.max())
        f = passage(fp, cid, 2, 3)
        cnt, e, lo, hi = down_rate(exp_, counts, cid, 3)
        bf_p, bf_k = (float(f.p_low), float(f.p_high)), (lo, hi)
        bf_need = (1 - f.p) / (0.04 * f.p) * T if f.p > 0 else float("nan")
        lines.append(
            f"| {eta} | brute force, {len(rr)} seeds ({n_div(rr)} diverged) | "
            f"{f.k}/{f.n} = {f.p:.3g} [{f.p_low:.3g}, {f.p_high:.3g}] | "
            f"{fmt_rate(cnt, e, lo, hi)} | {len(rr) * T:,} | - | {bf_need:,.3g} |"
        )
        for s_ in sp[sp.config_id == cid].itertuples():
            p_iv, k_iv = (s_.p_low, s_.p_high), (s_.rate_low, s_.rate_high)
            agree = overlap(p_iv, bf_p) and (s_.method == "tams" or overlap(k_iv, bf_k))
            rate = "-" if s_.method == "tams" else f"{s_.rate:.3g} [{s_.rate_low:.3g}, {s_.rate_high:.3g}]"
            rel = (s_.p_high - s_.p_low) / (2 * 1.96 * s_.p) if s_.p > 0 else float("nan")  # half-width / 1.96 / p
            need = s_.seed_steps * (rel / 0.2) ** 2
            lines.append(
                f"| {eta} | {s_.method}, {s_.replicas} replicas x {s_.particles} ({s_.extinct} extinct) | "
                f"{s_.p:.3g} [{s_.p_low:.3g}, {s_.p_high:.3g}] | {rate} | {s_.seed_steps:,} | "
                f"{'yes' if agree else 'NO'} | {need:,.3g} |"
            )
            rows.append(
                {
                    "eta": eta,
                    "method": s_.method,
                    "p": s_.p,
                    "p_low": s_.p_low,
                    "p_high": s_.p_high,
                    "rate": s_.rate,
                    "rate_low": s_.rate_low,
                    "rate_high": s_.rate_high,
                    "agree": agree,
                    "seed_steps": s_.seed_steps,
                    "steps_for_20pct": need,
                    "bf_steps_for_20pct": bf_need,
                    "bf_p": float(f.p),
                    "bf_rate": cnt / e if e else float("nan"),
                }
            )
    h = pd.DataFrame(rows)
    h.to_parquet(out / "h_splitting.parquet")
    facts["h"] = h
    return lines + [""]


def section_i(out: Path, facts: dict) -> list[str]:
    name = "i_small_eta"
    data = load(out, name)
    head = ["## (i) Small learning rate: what stops the estimators", ""]
    if data is None or data["rare"].empty:
        return head + not_run(name, data)
    it, ra = data["rare_iterations"], data["rare"].iloc[0]
    zmax = it.groupby("replica").z.max()
    cfg = json.loads(data["experiments"].config.iloc[0])
    lines = head + [
        f"Rate form at eta {cfg['train']['lr']} from the rank-3 minimum (basin score <= {ra.basin:g}, first interface "
        f"{ra.interface:g}; the target is score 1, sigma_3 down to tau): the flux phase found {ra.flux_crossings} "
        f"crossings in {ra.flux_exposure_steps:,} steps; after at most {int(it.iteration.max())} AMS iterations the "
        f"highest level any replica reached was Z = {zmax.max():.3f} (median over replicas {zmax.median():.3f}), "
        f"{int(ra.extinct)} of {int(ra.replica_hi - ra.replica_lo + 1)} replicas went extinct, "
        f"{int(ra.capped)} stopped at the iteration cap; {int(ra.seed_steps):,} SGD steps in all.",
        "",
        f"Each iteration kills the lowest levels, and the highest level rose only {zmax.max() - ra.interface:.3f} "
        "above the first interface on the way to 1: with sigma_3 as the score the small-eta escape is not reached "
        "level by level at affordable cost (the SGD noise keeps sigma_3 near its start value; the target needs it "
        "below tau). What would help: a score that follows the actual escape path (e.g. learned from the large-eta "
        "escapes), many more crossings (a longer flux phase, more seeds: a GPU), and "
        "more particles per replica so that clones do not all descend from one path.",
        "",
    ]
    facts["i"] = {"zmax": float(zmax.max()), "extinct": int(ra.extinct)}
    return lines


def section_configurations(out: Path) -> list[str]:
    lines = [
        "## Configurations",
        "",
        "Normalized configuration of every experiment (`experiments.parquet` of each dataset):",
        "",
    ]
    for name in EXPERIMENTS:
        data = load(out, name)
        if data is None:
            lines.append(f"- `{name}`: " + not_run(name)[0])
            continue
        for row in data["experiments"].itertuples():
            lines.append(f"- `{name}` / `{row.config_id}`: `{row.config}`")
    return lines + [""]


# ------------------------------------------------------------------------------------------
# findings: sentences templated from the facts the sections computed


def finding_a(facts: dict) -> str | None:
    a, s = facts.get("a"), facts.get("start")
    if a is None:
        return None
    if a["above"] == a["n"]:
        what = f"every one of {a['n']} runs from random starts stopped above r* = {a['rstar']}"
    else:
        what = f"{a['above']} of {a['n']} runs from random starts stopped above r* = {a['rstar']}"
    sv, r = s["singular_values"], s["rank"]
    return (
        f"- **GD gets stuck** (a): on this problem, full-batch gradient descent ({a['steps']:,} steps): {what} (final "
        f"ranks {fmt_hist(pd.Series(a['hist']))}). The start file is a critical point of rank {r}: residual gradient "
        f"{s['grad_norm']:.1e}, singular values {sv[r - 1]:.3g} and {sv[r]:.1e} on either side of the threshold "
        f"{s['threshold']:g}."
    )


def finding_be(facts: dict) -> str | None:
    b, e = facts.get("b"), facts.get("e")
    if b is None and e is None:
        return None
    parts = []
    if b is not None:
        rows = b["rows"]
        esc, none = rows[rows.k > 0], rows[rows.k == 0]
        if len(esc):
            where = "only where seeds also diverged" if (esc.diverged > 0).all() else "also where no seed diverged"
            parts.append(
                f"from the rank-3 minimum, constant-eta SGD reached rank <= 2 within {b['steps'] // 1000}k steps "
                f"{where}: "
                + ", ".join(f"at eta {q.lr:g} {q.k}/{q.seeds} seeds ({q.diverged} diverged)" for q in esc.itertuples())
            )
        else:
            parts.append(
                f"from the rank-3 minimum, constant-eta SGD never reached rank <= 2 within {b['steps'] // 1000}k steps"
            )
        for q in none.itertuples():
            parts.append(f"at eta {q.lr:g} no seed escaped (rate < {q.rate_high:.2g} per step)")
    if e is not None:
        ph = e["ph"]
        quiet = [lr for lr, g in ph.groupby("lr") if (g.p_jump == 0).all()]
        loud = ph[ph.p_jump > 0]
        if quiet:
            parts.append(
                f"in the phase map (e) no cell at eta <= {max(quiet):g} jumped within {e['steps'] // 1000}k steps"
            )
        if len(loud):
            q = loud.loc[loud.p_jump.idxmax()]
            parts.append(
                f"the most jumps were at eta {q.lr:g}, lambda {q.ridge:g}: P = {q.p_jump:.2f} with "
                f"{pct(q.diverged)} diverged"
            )
    return "- **SGD escapes** (b, e): " + "; ".join(parts) + "."


def finding_c(facts: dict) -> str | None:
    c = facts.get("c")
    if c is None:
        return None
    during = (
        f"during the eta = {c['lr']['values'][0]:g} kick the rank went back up {c['up_kick']} times"
        if c["up_kick"]
        else f"no up-jump during the eta = {c['lr']['values'][0]:g} kick"
    )
    bounds = ", ".join(f"{int(f)} -> {int(t)} < {h:.2g}" for f, t, h in c["rate_high"])
    after = (
        f"after it, at eta = {c['lr']['values'][1]:g}, no up-jump in {c['exposure_after']:,} seed-steps (rates per "
        f"step {bounds})"
        if c["up_after"] == 0
        else f"after it, at eta = {c['lr']['values'][1]:g}, {c['up_after']} up-jumps in "
        f"{c['exposure_after']:,} seed-steps"
    )
    return (
        f"- **One way** (c): {during} (the paper's one-way result is for small eta and lambda); {after}. The kick "
        f"brought {c['p'].k}/{c['p'].n} seeds to rank <= 2."
    )


def compare_word(diff: dict) -> str:
    """How p_a compares with p_b, from the interval of their difference."""
    return "more often than" if diff["low"] > 0 else "less often than" if diff["high"] < 0 else "about as often as"


def finding_d(facts: dict) -> str | None:
    d = facts.get("d")
    if d is None or 3 not in d["levels"]:
        return None
    l3, l2 = d["levels"][3], d["levels"].get(2)
    word = compare_word(l3["diff"])
    text = (
        f"- **Depth** (d): from random starts at eta {d['lr']:g}, depth 4 reached rank r*+1 = 3 {word} depth 3 "
        f"({l3['k4']}/{l3['n4']} vs {l3['k3']}/{l3['n3']}, difference {l3['diff']['difference']:+.2f} "
        f"[{l3['diff']['low']:+.2f}, {l3['diff']['high']:+.2f}]"
        + (f", log-rank p = {l3['logrank']:.2g}" if l3["logrank"] is not None else "")
        + ")"
    )
    if l2 is not None:
        if l2["k3"] == 0 and l2["k4"] == 0:
            text += f"; neither reached r* within {d['steps'] // 1000}k steps"
        else:
            text += f"; r* reached by {l2['k4']}/{l2['n4']} (depth 4) and {l2['k3']}/{l2['n3']} (depth 3)"
    down = d["down3"]
    if down and all(q[0] == 0 for q in down.values()):
        text += (
            ". Whether depth raises the 3 -> 2 jump rate is not settled: no 3 -> 2 jump at either depth ("
            + ", ".join(f"depth {k} < {q[3]:.2g} per step" for k, q in sorted(down.items()))
            + ")"
        )
    return text + "."


def finding_f(facts: dict) -> str | None:
    f, e = facts.get("f"), facts.get("e")
    if f is None:
        return None
    rows = f["rows"]
    best = rows.loc[rows.p.idxmax()]
    others = rows.drop(index=best.name)
    clear = len(others) and (best.p_low > others.p_high).all()
    text = (
        f"- **Schedules** (f): lr {fmt_sched(json.loads(best.lr))} and ridge {fmt_sched(json.loads(best.ridge))} "
        f"brought the most seeds to the true rank: {best.k}/{best.n} (next best "
        f"{others.p.max():.3f}{', intervals apart' if clear else ', intervals overlap'})"
    )
    if e is not None:
        ph, trends = e["ph"], []
        for lr, g in ph.groupby("lr"):
            g = g.sort_values("ridge")
            if (g.p_jump > 0).any():
                ps = g.p_jump.to_numpy()
                word = (
                    "rises with the ridge"
                    if np.all(np.diff(ps) > 0)
                    else "falls with the ridge"
                    if np.all(np.diff(ps) < 0)
                    else "is not monotone in the ridge"
                )
                vals = ", ".join(f"{p:.2f}" for p in ps)
                trends.append(
                    f"at eta {lr:g} the jump probability {word} ({vals} for lambda "
                    + ", ".join(f"{x:g}" for x in g.ridge)
                    + ")"
                )
        if trends:
            text += "; in the phase map (e) " + "; ".join(trends)
    return text + "."


def finding_g(facts: dict) -> str | None:
    g = facts.get("g")
    if g is None:
        return None
    rows, parts = g["rows"], []
    for w, gw in rows.groupby("width"):
        gw = gw.set_index("batch")
        if len(gw) > 1:
            bs = sorted(gw.index)
            parts.append(
                f"width {w}: " + ", ".join(f"batch {b}: {gw.loc[b, 'k']}/{gw.loc[b, 'n']} escaped" for b in bs)
            )
    for b, gb in rows.groupby("batch"):
        gb = gb.set_index("width")
        if len(gb) == 2 and gb.k.sum() > 0:
            w1, w2 = sorted(gb.index)
            same = overlap((gb.loc[w1, "p_low"], gb.loc[w1, "p_high"]), (gb.loc[w2, "p_low"], gb.loc[w2, "p_high"]))
            parts.append(
                f"at batch {b}, width {w2} vs {w1}: {gb.loc[w2, 'k']}/{gb.loc[w2, 'n']} vs "
                f"{gb.loc[w1, 'k']}/{gb.loc[w1, 'n']} ({'intervals overlap' if same else 'intervals apart'})"
            )
    by_b = rows.groupby("batch").k.sum()
    if len(by_b) > 1 and by_b.iloc[0] > 0 and (by_b.iloc[1:] == 0).all():
        parts.insert(0, f"batch {', '.join(map(str, by_b.index[1:]))} (less noise) removed the jumps at every width")
    return f"- **Width and batch** (g), eta {fmt_sched(g['lr'])}: " + "; ".join(parts) + "."


def finding_hi(facts: dict) -> str | None:
    h = facts.get("h")
    if h is None or h.empty:
        return None
    parts = []
    for eta, g in h.groupby("eta"):
        est = ", ".join(f"{r.method} {r.p:.3g} [{r.p_low:.3g}, {r.p_high:.3g}]" for r in g.itertuples())
        ok = "agree with" if g.agree.all() else "do NOT all agree with"
        parts.append(f"at eta {eta} brute force {g.bf_p.iloc[0]:.3g}, splitting {est}: the intervals {ok} brute force")
    text = "- **Rare-event splitting** (h, i): " + "; ".join(parts) + "."
    if "i" in facts:
        text += (
            f" At eta 0.1 the rate form does not reach the target (highest level {facts['i']['zmax']:.3f} of 1, "
            f"{facts['i']['extinct']} replicas extinct): no small-eta estimate yet."
        )
    return text


def section_findings(facts: dict) -> list[str]:
    found = [f(facts) for f in (finding_a, finding_be, finding_c, finding_d, finding_f, finding_g, finding_hi)]
    lines = [
        "## Findings, against the paper's claims",
        "",
        "(Templated from the numbers of the sections below; a missing experiment leaves its finding out.)",
        "",
    ]
    return lines + [x for x in found if x] + [""]


def report(out: Path, timings: dict) -> str:
    facts: dict = {}
    body = []
    sections = (section_a, section_b, section_c, section_d, section_e, section_f, section_g, section_h, section_i)
    for section in sections:
        body += section(out, facts)
    doc = section_header(out) + section_findings(facts) + section_timings(timings) + body + section_configurations(out)
    return "\n".join(doc).rstrip("\n") + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--only",
        nargs="*",
        choices=[n.split("_")[0] for n in EXPERIMENTS],
        help="run only these (a b c ...); the report uses every dataset present",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--report-only", action="store_true", help="do not simulate; rebuild the report from the datasets")
    p.add_argument(
        "--make-start",
        nargs="?",
        const=1e-3,
        type=float,
        metavar="RIDGE",
        help=f"rewrite {START.name} (or the start file of another RIDGE) and check it, then stop",
    )
    args = p.parse_args(argv)
    if args.make_start is not None:
        make_start(start_path(args.make_start), args.make_start)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    names = [n for n in EXPERIMENTS if not args.only or n.split("_")[0] in args.only]
    timings_path = args.out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    if not args.report_only:
        timings = run_all(names, args.out, timings)
        timings_path.write_text(json.dumps(timings, indent=2))
    text = report(args.out, timings)
    (args.out / "REPORT.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
