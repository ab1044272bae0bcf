"""Run the experiment suite and write data/results/REPORT.md (issue #4).

    python data/experiments/run.py              # everything (about 10 minutes on 2 CPU cores)
    python data/experiments/run.py --only b c   # some experiments; the report uses what exists
    python data/experiments/run.py --report-only
    python data/experiments/run.py --quick --out DIR  # the whole pipeline at <= 32 seeds, small splitting
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
import jax.numpy as jnp
import numpy as np
import pandas as pd

import jumpsim
from jumpsim import config as config_lib
from jumpsim import dynamics, model, rare, spectrum, stats
from jumpsim import problem as problem_lib

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
    "l_splitting_low",
    "l_splitting_layers",
    "m_depth4_search",
    "n_one_way",
    "o_escape_paths",
    "p_depth4_curve",
    "q_collapse_hazard",
    "q_hazard_ridge0.0005",
    "q_hazard_ridge0.002",
]
# experiments that also run splitting estimates (jumpsim rare), by method
SPLITTING = {  # experiment -> splitting estimates run on each of its configs: method, or (method, rare overrides)
    "h_splitting": (
        "tams",
        "rate",
        ("tams", {"particles": 200, "replicas": 16}),
        # the first interface above the band sigma_3 fluctuates in: its crossings are collapses (report (o))
        ("rate", {"interface": 0.2, "flux_seeds": 4096}),
    ),
    # TAMS within 1e5 steps, the issue's question at eta 0.05, and the rate form with a low first interface
    # (>= 10 replicas with crossings for an interval); every replica goes extinct: the level bound
    "i_small_eta": ("tams", ("rate", {"particles": 100, "flux_seeds": 512, "interface": "p90"})),
    "l_splitting_low": ("tams",),
    "l_splitting_layers": ("tams",),
    "n_one_way": ("tams",),
}
BASE = HERE / "base.toml"
START = HERE / "rank3_start.npz"
RESULTS = ROOT / "data" / "results"
_QUICK = False  # --quick: see quick()


# ------------------------------------------------------------------------------------------
# configurations


def quick(cfg):
    """``cfg`` itself, or with --quick at most 32 seeds (chunk, traced seeds) and splitting estimates of at most
    16 particles x 4 replicas and 64 flux seeds (config_id excludes [run] and [rare]: the ids stay the same).
    Every config the suite loads or derives passes here."""
    if not _QUICK:
        return cfg
    r, q = cfg.run, cfg.rare
    return dataclasses.replace(
        cfg,
        run=dataclasses.replace(r, seeds=min(r.seeds, 32), chunk=min(r.chunk, 32), trace_seeds=min(r.trace_seeds, 32)),
        rare=dataclasses.replace(
            q, particles=min(q.particles, 16), replicas=min(q.replicas, 4), flux_seeds=min(q.flux_seeds, 64)
        ),
    )


def load_experiment(path: str | Path) -> list:
    """The configs of one TOML of the suite (each extends base.toml)."""
    return [quick(c) for c in jumpsim.load_configs(path)]


def base_config():
    """The suite's shared settings (base.toml loads on its own)."""
    return quick(jumpsim.load_config(BASE))


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
        ws = [np.asarray(z[f"W{l + 1}"], np.float64) for l in range(len(z.files))]
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


def start_path(ridge: float | None = None, depth: int = 3) -> Path:
    """The committed GD minimum for ``ridge`` and ``depth``: rank3_start.npz at the base's ridge (1e-3) and
    depth (3), else rank3_start_ridge{ridge}.npz / rank3_start_depth{depth}.npz (each curve starts from its
    own minimum)."""
    if depth != 3:
        return HERE / f"rank3_start_depth{depth}.npz"
    return START if ridge in (None, 1e-3) else HERE / f"rank3_start_ridge{ridge:g}.npz"


def full_batch_gd(ws, prob: problem_lib.Problem, lr: float, ridge: float, steps: int, scale: float = 1.0):
    """``steps`` steps of full-batch gradient descent on the observed entries of ``prob`` from the layers ``ws``
    (W_1 first), W <- W - lr (G + 2 ridge W), loss scale * mean squared error, products at HIGHEST precision,
    in the dtype of ``ws`` (the recipe of ``model.init = "gd"``)."""
    hi = jax.lax.Precision.HIGHEST

    def loss(p, rows, cols, vals):
        a = p[0]
        for w in p[1:]:
            a = jax.numpy.matmul(w, a, precision=hi)
        return scale * jax.numpy.mean((a[rows, cols] - vals) ** 2)

    def gd(ws, rows, cols, vals):
        def body(p, _):
            g = jax.grad(loss)(p, rows, cols, vals)
            return tuple(w - lr * (gi + 2.0 * ridge * w) for w, gi in zip(p, g)), None

        return jax.lax.scan(body, ws, None, length=steps)[0]

    rows, cols = jax.numpy.asarray(prob.rows), jax.numpy.asarray(prob.cols)
    return jax.jit(gd)(ws, rows, cols, jax.numpy.asarray(np.asarray(prob.values), ws[0].dtype))


def make_start(path: Path = START, ridge: float | None = None, depth: int = 3) -> dict:
    """Rewrite a start file: full-batch gradient descent in float32 from the gaussian start of
    the base's model.seed, model.gd_steps steps at model.gd_lr and ``ridge`` (default: the base's; the recipe
    of ``model.init = "gd"``: W <- W - lr (G + 2 ridge W)), saved as W1 ... WL. Then the same
    start is made by jumpsim itself (an init = "gd" run) and its facts, from the experiments
    table's ``start`` column, are checked against the file's."""
    over = ([] if ridge is None else [f"train.ridge={ridge}"]) + ([] if depth == 3 else [f"model.depth={depth}"])
    cfg = quick(jumpsim.load_config(BASE, over))
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
    ridge = cfg.train.ridge.value_at(0)
    t = time.perf_counter()
    ws = full_batch_gd(ws, prob, mc.gd_lr, ridge, mc.gd_steps, scale)
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
        f"model.depth={mc.depth}",
    ]
    check = [quick(c) for c in config_lib.load(BASE, overrides)]
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


RANK2 = HERE / "rank2_start.npz"


def make_rank2_start(path: Path = RANK2) -> dict:
    """Write the rank-2 minimum used by (n): from rank3_start.npz, full-batch GD (lr = model.gd_lr) at ridge
    5e-3 for 200k steps (the ridge removes the third singular value) and then at the base's ridge for 400k
    steps, in float64. Checks the result is a critical point of rank 2 (residual gradient < 1e-8)."""
    cfg = base_config()
    prob = suite_problem(cfg)
    with np.load(START) as z:
        ws0 = [np.asarray(z[f"W{l + 1}"], np.float64) for l in range(cfg.model.depth)]
    with jumpsim.dynamics.float64_scope():
        ws = tuple(jax.numpy.asarray(w) for w in ws0)
        ws = full_batch_gd(ws, prob, cfg.model.gd_lr, 5e-3, 200_000)
        ws = full_batch_gd(ws, prob, cfg.model.gd_lr, cfg.train.ridge.value_at(0), 400_000)
    np.savez(path, **{f"W{l + 1}": np.asarray(w, np.float64) for l, w in enumerate(ws)})
    facts = start_facts(path)
    print(
        f"{path}: rank {facts['rank']}, residual gradient {facts['grad_norm']:.2e}, "
        f"singular values {np.round(facts['singular_values'][:4], 4).tolist()}"
    )
    if facts["rank"] != 2 or facts["grad_norm"] > 1e-8:
        raise SystemExit("the rank-2 start is not a rank-2 critical point")
    return facts


# ------------------------------------------------------------------------------------------
# simulation


def run_all(names: list[str], out: Path, timings: dict) -> dict:
    """Simulate each experiment; an experiment whose chunks all existed keeps its timing."""
    for name in names:
        configs = load_experiment(HERE / f"{name}.toml")
        t = time.perf_counter()
        rep = jumpsim.run(configs, out / name, progress=True)
        done = []  # splitting estimates run now (False: its tables existed)
        for cfg in configs:
            for spec in SPLITTING.get(name, ()):
                method, extra = (spec, {}) if isinstance(spec, str) else spec
                cfg_m = quick(dataclasses.replace(cfg, rare=dataclasses.replace(cfg.rare, method=method, **extra)))
                done.append(not rare.run_rare(cfg_m, out / name, progress=True).skipped)
        if name == "o_escape_paths":
            replay_escape(out)
        if name.startswith("q_"):
            collapse_hazard(out / name, configs)
        if rep.chunks_done or any(done) or name not in timings:
            # a partial rerun (some chunks or estimates reused) adds its time to the experiment's earlier total
            reused = rep.chunks_skipped or not all(done)
            timings[name] = time.perf_counter() - t + (timings.get(name, 0.0) if reused else 0.0)
        print(
            f"{name}: {time.perf_counter() - t:.0f} s "
            f"({rep.chunks_done} chunks simulated, {rep.chunks_skipped} reused)",
            flush=True,
        )
    return timings


def first_escape(data: dict) -> tuple[int, int] | None:
    """(seed, step) of the earliest-numbered seed of a dataset that reached rank <= 2, or None."""
    ev = data["events"]
    down = ev[(ev.direction == "down") & (ev.rank_after <= 2)]
    if down.empty:
        return None
    seed = int(down.seed.min())
    return seed, int(down[down.seed == seed].step.min())


def replay_escape(out: Path) -> None:
    """(o): the first escaping seed again, with a check (and a trace row) at every step up to its escape."""
    data = load(out, "o_escape_paths")
    hit = None if data is None else first_escape(data)
    if hit is None:
        return
    seed, step = hit
    cfg = load_experiment(HERE / "o_escape_paths.toml")[0]
    over = [
        f"run.seed_offset={seed}",
        "run.seeds=1",
        "run.chunk=1",
        "run.trace_seeds=1",
        f"train.steps={step}",
        "detect.every=1",
        f"detect.persist={cfg.detect.persist * cfg.detect.every}",
        'name="o-escape-replay"',
    ]
    replay = quick(jumpsim.load_config(HERE / "o_escape_paths.toml", over))
    jumpsim.run([replay], out / "o_escape_replay", progress=False)


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
    lines = [f"Wall time of the CPU simulations (`timings.json`): {tot / 60:.1f} min ({each}).", ""]
    gpu = RESULTS / "gpu_timings.json"
    if gpu.exists():
        g = json.loads(gpu.read_text())
        sec = g["seconds"]
        each = ", ".join(f"{k} {v:.0f} s" for k, v in sec.items())
        lines += [f"GPU runs ({g['device']}, `gpu_timings.json`): {sum(sec.values()) / 60:.1f} min ({each}).", ""]
    return lines


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
    """Pooled splitting estimates of a dataset (``stats.splitting``) with the steps each spent, and for the
    rate form the first interface (score) it used."""
    sp = stats.splitting(data["rare"], data["rare_replicas"], 0.95, data["rare_iterations"], data["rare_levels"])
    iface = data["rare"].groupby("estimate_id").interface.first()
    return sp.assign(interface=sp.estimate_id.map(iface))


def log_rel_error(low: float, high: float) -> float:
    """Relative error that a 95 % interval admits: half its width on the log scale over 1.96 (NaN if it reaches 0).
    For the splitting estimates (log-normal intervals, wide where a few replicas carry the mean) this is the
    error to compare costs at, not the replicas' standard error, which their skew makes too small."""
    return float(np.log(high / low) / (2 * 1.96)) if low > 0 and high > 0 else float("nan")


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
    cv = curve(out, facts)
    gpu = cv[cv.ridge == 1e-3] if len(cv) else pd.DataFrame({"config_id": []})
    lines = head + [
        "Brute force (all seeds from the start, 95 % Wilson / exact Poisson; where the GPU's runs of (j) hold the "
        "same config, they are the reference for agreement) beside fixed-horizon TAMS (mean of "
        "replica estimates; delta-log-normal interval: positive replicas log-normal, extinct ones zeros) and the "
        "rate form (k = flux x P(target before basin); every replica runs its "
        "own flux trajectories and AMS from its own crossings, k = sum C_r p_r / sum E_r with a Student-t interval "
        "over replicas; P = 1 - exp(-kT)), each with the SGD steps it simulated.",
        "",
        "The last column projects the SGD steps each estimator needs for a 20 % relative standard error of P from the "
        "error it achieved (brute force: (1 - p) / (0.04 p) seeds x T; splitting: steps used x (relative error / "
        "0.2)^2, its relative error the one its 95 % interval admits, half the interval's log width / 1.96: the "
        "replicas' standard error, which their skew makes too small, would flatter it).",
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
        g = gpu[gpu.config_id == cid]
        if len(g):  # the same config on the GPU (j): many more seeds, the reference for agreement
            q = g.iloc[0]
            bf_p, bf_k = (q.p_low, q.p_high), (q.rate_low, q.rate_high)
            cnt, e, f = int(q["count"]), int(q.exposure), q
            lines.append(
                f"| {eta} | brute force on the GPU (j), {q.seeds:,} seeds ({q.diverged:,} diverged) | "
                f"{q.reached:,}/{q.seeds:,} = {q.p:.3g} [{q.p_low:.3g}, {q.p_high:.3g}] | "
                f"{fmt_rate(cnt, e, q.rate_low, q.rate_high)} | {q.seed_steps:,} | - | - |"
            )
        for s_ in sp[sp.config_id == cid].itertuples():
            p_iv, k_iv = (s_.p_low, s_.p_high), (s_.rate_low, s_.rate_high)
            agree = overlap(p_iv, bf_p) and (s_.method == "tams" or overlap(k_iv, bf_k))
            rate = "-" if s_.method == "tams" else f"{s_.rate:.3g} [{s_.rate_low:.3g}, {s_.rate_high:.3g}]"
            rel = (
                log_rel_error(s_.p_low, s_.p_high) if s_.method == "tams" else log_rel_error(s_.rate_low, s_.rate_high)
            )
            need = s_.seed_steps * (rel / 0.2) ** 2
            how = (
                s_.method
                if s_.method == "tams"
                else f"rate (interface {s_.interface:.3g}, {s_.flux_crossings} crossings)"
            )
            lines.append(
                f"| {eta} | {how}, {s_.replicas} replicas x {s_.particles} ({s_.extinct} extinct) | "
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
                    "particles": s_.particles,
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
    head = ["## (i) Small learning rate: what splitting can still say", ""]
    if data is None or data["rare"].empty:
        return head + not_run(name, data)
    sp = splitting_rows(data)
    fp = stats.first_passage(data["runs"], data["passages"]) if not data["runs"].empty else pd.DataFrame()
    lines = head + [
        "From the rank-3 minimum, where brute force sees no escape, each learning rate runs the rate form (first "
        "interface low, inside the fluctuations, for many crossings) and TAMS within 1e5 steps. Both go extinct on "
        "the way down with the sigma score (README, small eta); what they still give is the level bound (README): "
        "the estimate, with its 95 % interval, of reaching a score level every replica passed (the one with the "
        "smallest upper end), which every escape must pass. Its upper end bounds the escape probability (TAMS) "
        "or rate (rate form).",
        "",
        "| eta | brute force: escaped / seeds within T | method | replicas x particles | extinct | stall level "
        "(median) | bound level | P(reach it) or rate [95 %] | replicas' log10 sd there | bound on P(escape within T) "
        "| bound on k per step | SGD steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cfgs = {c: json.loads(j) for c, j in zip(data["experiments"].config_id, data["experiments"].config)}
    facts["i"] = []
    for r in sp.sort_values(["config_id", "method"]).itertuples():
        cfg = cfgs[r.config_id]
        eta, T = cfg["train"]["lr"], int(r.horizon)
        f = fp[(fp.config_id == r.config_id) & (fp.start_rank == 3) & (fp.level == 2)] if len(fp) else fp
        bf = f"{int(f.k.iloc[0])} / {int(f.n.iloc[0])} (p <= {f.p_high.iloc[0]:.2g})" if len(f) else "-"
        lb, spread = _level_bound_row(data, r)
        if r.method == "tams":
            what = f"P = {lb.value:.2g} [{lb.low:.2g}, {lb.high:.2g}]" if lb else "-"
            k_bound = "-"
        else:
            what = f"k = {lb.value:.2g} [{lb.low:.2g}, {lb.high:.2g}]" if lb else "-"
            k_bound = f"{r.rate_bound:.2g}" if r.rate_bound == r.rate_bound else "-"
        lines.append(
            f"| {eta} | {bf} | {r.method} | {r.replicas} x {r.particles} | {r.extinct} | "
            f"{r.stalled_level:.3g} | {r.bound_level:.3g} | {what} | {spread:.2f} | {r.p_bound:.2g} (T = {T:,}) | "
            f"{k_bound} | "
            f"{r.seed_steps:,} |"
        )
        facts["i"].append({"eta": eta, "method": r.method, "p_bound": float(r.p_bound), "horizon": T})
    lines += [
        "",
        "The bounds are honest and loose: they are the chance of getting as far down as every replica got, not of "
        "escaping (at the bound level sigma_3 has fallen by a factor (sigma_3(start)/tau)^z, a few percent), and "
        "the replicas' spread (log10 sd of their estimates, in the table) widens them: with the sigma score the "
        "replica estimates spread over decades at the higher levels, so the mean there may rest on a few of them. "
        "What would make splitting reach the target at small eta: a score that ranks states by their chance of the "
        "collapsing SGD step (report (o)), or importance sampling of the sampled entries.",
        "",
    ]
    return lines + _noise_reach(data, sp, cfgs, facts)


NOISE_MAX_SPREAD = 0.5  # level-curve rows shown where the replicas' log10 sd is at most this (intervals trustworthy)


def _noise_reach(data: dict, sp: pd.DataFrame, cfgs: dict, facts: dict) -> list[str]:
    """How far the noise pushes sigma_3 down within T: the TAMS level curve, P(max score >= z within T), at the
    levels every replica passed with a modest spread, as the fall of sigma_3 it means."""
    sig0 = float(start_facts()["singular_values"][2])
    tau = float(next(iter(cfgs.values()))["detect"]["threshold"])
    rows = []
    for r in sp[sp.method == "tams"].itertuples():
        wide = _level_wide(data, r)[1]
        if wide is None:
            continue
        for z in wide.columns:
            x = wide[z].to_numpy()
            if not np.all(x > 0) or x.min() == 1:
                continue
            spread = float(np.log10(x).std(ddof=1))
            if spread > NOISE_MAX_SPREAD:
                break
            m, lo, hi = stats.replica_interval(x)  # the engine's interval for a replica mean
            fall = 1 - (tau / sig0) ** z
            rows.append((cfgs[r.config_id]["train"]["lr"], int(r.horizon), z, fall, m, lo, hi, spread))
    if not rows:
        return []
    lines = [
        "How far the noise pushes sigma_3 down: the TAMS level curve, P(sigma_3 falls by at least this much within "
        "T), at the levels every replica passed with a log10 sd of the replicas' estimates of at most "
        f"{NOISE_MAX_SPREAD} (two-sided intervals, from the same runs as the table above; sigma_3 of the start "
        f"{sig0:.3g}, tau {tau:g}):",
        "",
        "| eta | T | score level z | sigma_3 down by | P(reach within T) [95 %] | replicas' log10 sd |",
        "|---|---|---|---|---|---|",
    ]
    facts["i_noise"], say = {}, []
    for eta in sorted({t[0] for t in rows}, reverse=True):
        curve = sorted((t for t in rows if t[0] == eta and t[4] < 0.99), key=lambda t: t[2])
        for t in curve[len(curve) % 2 == 0 :: 2]:  # every other level, the deepest included
            _, T, z, fall, m, lo, hi, spread = t
            lines.append(f"| {eta} | {T:,} | {z:.3g} | {fall:.1%} | {m:.2g} [{lo:.2g}, {hi:.2g}] | {spread:.2f} |")
        a, b = curve[-3], curve[-1]  # decades of P per percent of fall, over the deepest levels shown
        slope = (np.log10(a[4]) - np.log10(b[4])) / (100 * (b[3] - a[3]))
        facts["i_noise"][str(eta)] = {"fall": b[3], "p": b[4], "decades_per_percent": slope}
        say.append(f"at eta {eta} a fall of {b[3]:.1%} has P = {b[4]:.2g}, {slope:.1f} decades less per percent more")
    lines += [
        "",
        f"The deepest falls resolved: {'; '.join(say)}. An escape needs sigma_3 to fall by {1 - tau / sig0:.1%} "
        "(to tau) and stay there: the noise alone moves sigma_3 by a few percent within T, so at these learning "
        "rates an escape cannot be a slow diffusion down the sigma_3 direction. It can only come through the "
        f"collapsing SGD step of (o), which none of the runs above came near (their replicas stalled at median score "
        f"levels up to {sp.stalled_level.max():.3g}: sigma_3 about {1 - (tau / sig0) ** sp.stalled_level.max():.0%} "
        "down).",
        "",
    ]
    return lines


def _level_wide(data: dict, row) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The replica rows of one pooled estimate (a row of ``splitting_rows``) and their (replica x z) level
    table (``stats.level_table``; None without one)."""
    reps = data["rare_replicas"]
    reps = reps[(reps.config_id == row.config_id) & (reps.estimate_id == row.estimate_id)].sort_values("replica")
    return reps, stats.level_table(data["rare_levels"], reps, row.method)


def _level_bound_row(data: dict, row) -> tuple[stats.LevelBound | None, float]:
    """The level bound of one pooled estimate (a row of ``splitting_rows``), and the log10 sd of its replicas'
    estimates at the bound's level."""
    reps, wide = _level_wide(data, row)
    if wide is None:
        return None, float("nan")
    rate = () if row.method == "tams" else (0.95, reps.flux_crossings, reps.flux_exposure_steps)
    b = stats.level_bound(wide.columns, wide.to_numpy(), *rate)
    if not b.z == b.z:
        return None, float("nan")
    x = wide[wide.columns[np.argmin(np.abs(wide.columns - b.z))]].dropna().to_numpy()
    return b, float(np.log10(x).std(ddof=1)) if len(x) > 1 else float("nan")


# ------------------------------------------------------------------------------------------
# the escape law (issue #11): GPU packs (gpu_runs.sh, unpacked under out/gpu/) and CPU datasets

GPU = "gpu"
# the packs of each ridge's escape curve; seeds of packs with the same config_id are pooled
CURVE = {
    5e-4: ("j_curve_ridge0.0005",),
    1e-3: ("j_curve", "j_low", "j_low0.125", "j_low0.115"),
    2e-3: ("j_curve_ridge0.002",),
}
FIT_MAX_DIVERGED = 0.05  # the Arrhenius fit uses the learning rates where fewer seeds diverged


def load_pack(out: Path, names) -> dict | None:
    """The compact tables of GPU packs (``gpu_pack.py``) concatenated; None if none was unpacked.
    Packs of the same config must hold different seeds (``run.seed_offset``)."""
    dirs = [out / GPU / n for n in names if (out / GPU / n / "runs.parquet").exists()]
    if not dirs:
        return None
    tabs = {
        t: pd.concat([pd.read_parquet(d / f"{t}.parquet").assign(pack=d.name) for d in dirs], ignore_index=True)
        for t in ("experiments", "runs", "events", "passages")
    }
    tabs["experiments"] = tabs["experiments"].drop_duplicates("config_id")
    dup = int(tabs["runs"].duplicated(["config_id", "seed"]).sum())
    if dup:
        raise SystemExit(f"packs {names} hold {dup} seeds twice")
    return tabs


def pack_device(out: Path, names=None) -> str:
    """The devices that ran the given packs (default: all unpacked), from their experiments tables."""
    root = out / GPU
    dirs = [root / n for n in names] if names else sorted(root.glob("*/experiments.parquet"))
    devs = set()
    for d in dirs:
        f = d if d.name == "experiments.parquet" else d / "experiments.parquet"
        if f.exists():
            devs |= set(pd.read_parquet(f, columns=["devices"]).devices)
    return " and ".join(sorted(devs)) or "a GPU"


def escape_rows(data: dict, **extra) -> list[dict]:
    """One row per config of a dataset started at a rank-3 minimum: brute-force P(rank <= 2 within T), the
    escape rate (first passage to rank <= 2 per step before it: ``count``, ``exposure``, ``rate*``; each
    seed once), all 3 -> 2 jumps (``jumps``, repeats of a seed included), and the divergence counts
    (``extra`` is added to every row)."""
    r, pas, ev = data["runs"], data["passages"], data["events"]
    fp = stats.first_passage(r, pas)
    fr = stats.first_passage_rate(r, pas)
    fr = fr[(fr.start_rank == 3) & (fr.level == 2)].set_index("config_id")
    exp_, counts = stats.exposure(r, ev)
    rows = []
    for cid, c, rr in configs_with_runs(data):
        f = passage(fp, cid, 2, 3)
        jumps = down_rate(exp_, counts, cid, 3)[0]
        q = fr.loc[cid]
        cnt, e, lo, hi = int(q["count"]), int(q.exposure_steps), float(q.rate_low), float(q.rate_high)
        div = rr.status == "diverged"
        rows.append(
            {
                **extra,
                "eta": float(c["train"]["lr"]),
                "config_id": cid,
                "seeds": len(rr),
                "horizon": int(rr.horizon.max()),
                "diverged": int(div.sum()),
                "escaped_then_diverged": int((div & (rr.min_rank <= 2)).sum()),
                "reached": int(f.k),
                "p": float(f.p),
                "p_low": float(f.p_low),
                "p_high": float(f.p_high),
                "count": cnt,
                "exposure": e,
                "rate": cnt / e if e else float("nan"),
                "rate_low": lo,
                "rate_high": hi,
                "jumps": jumps,
                "packs": int(rr.pack.nunique()) if "pack" in rr else 1,
                "seed_steps": len(rr) * int(rr.horizon.max()),
            }
        )
    return rows


def curve_rows(out: Path) -> pd.DataFrame:
    """One row per (ridge, eta) of the escape curve (``escape_rows`` of each ridge's GPU packs)."""
    rows = []
    for ridge, names in CURVE.items():
        data = load_pack(out, names)
        if data is not None:
            rows += escape_rows(data, ridge=ridge)
    return pd.DataFrame(rows).sort_values(["ridge", "eta"]).reset_index(drop=True) if rows else pd.DataFrame()


def curve(out: Path, facts: dict) -> pd.DataFrame:
    """``curve_rows`` once per report: (h), (j) and (p) all read it."""
    if "curve" not in facts:
        facts["curve"] = curve_rows(out)
    return facts["curve"]


def curve_fits(cv: pd.DataFrame) -> dict:
    """Per ridge: the Arrhenius fit over the learning rates with < FIT_MAX_DIVERGED diverged (and, for
    contrast, over all of them)."""
    fits = {}
    for ridge, g in cv.groupby("ridge"):
        small = g[g.diverged / g.seeds < FIT_MAX_DIVERGED]
        if len(small) >= 3 and small["count"].sum() > 0:
            fits[ridge] = {
                "fit": stats.arrhenius_fit(1 / small.eta, small["count"], small.exposure, quasi=True),
                "etas": small.eta.tolist(),
                "all": stats.arrhenius_fit(1 / g.eta, g["count"], g.exposure) if len(g) > 2 else None,
            }
    return fits


def section_j(out: Path, facts: dict) -> list[str]:
    head = ["## (j) The escape curve: jump rate against the learning rate, three ridges", ""]
    cv = curve(out, facts)
    if cv.empty:
        return head + [
            f"not run: `bash data/experiments/gpu_runs.sh OUT` on a GPU, then unpack OUT/*.tar into {out.name}/{GPU}/",
            "",
        ]
    T = int(cv.horizon.max())
    lines = head + [
        f"Brute force on {pack_device(out)} (`data/experiments/gpu_runs.sh`, {cv.seed_steps.sum():,} seed-steps): "
        "every "
        f"seed starts at its ridge's own gradient-descent minimum of rank 3 (`rank3_start*.npz`) and runs {T:,} SGD "
        "steps. P is the probability of rank <= 2 within T (Wilson); the escape rate k counts each seed's first "
        "passage to rank <= 2 per step spent before it (exact Poisson; a seed that jumps down, back up and down "
        "again counts once: repeats are not independent events; the last column has every 3 -> 2 jump). Pooled "
        "from more than one pack (other seeds, `run.seed_offset`): "
        + (
            ", ".join(f"eta {q.eta:g} at ridge {q.ridge:g} ({q.packs} packs)" for q in cv[cv.packs > 1].itertuples())
            or "none"
        )
        + ".",
        "",
        "| ridge | eta | seeds | diverged | escaped, then diverged | P(rank <= 2 within T) | escape rate k: first "
        "escapes / steps before them | 3 -> 2 jumps in all |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for q in cv.itertuples():
        lines.append(
            f"| {q.ridge:g} | {q.eta:g} | {q.seeds:,} | {pct(q.diverged / q.seeds)} | {q.escaped_then_diverged:,} | "
            f"{q.reached:,}/{q.seeds:,} = {q.p:.3g} [{q.p_low:.3g}, {q.p_high:.3g}] | "
            f"{fmt_rate(q.count, q.exposure, q.rate_low, q.rate_high)} | {q.jumps:,} |"
        )
    fits = curve_fits(cv)
    lines += [
        "",
        f"**Arrhenius fit** log k = a - b / eta (Poisson regression of the first-escape counts on the steps before "
        "them; Wald 95 % intervals, widened by sqrt(deviance / dof) where the scatter exceeds Poisson's, "
        f"quasi-Poisson) over the learning rates where fewer than {pct(FIT_MAX_DIVERGED)} of the seeds diverged; the "
        "goodness-of-fit p-value is the deviance's chi-square tail (small: the data do not follow the form). The same "
        "fit over every learning rate, up to the edge of divergence, is beside it for contrast.",
        "",
        "| ridge | learning rates fitted | b | a | deviance / dof (p) | all learning rates: b, p |",
        "|---|---|---|---|---|---|",
    ]
    for ridge, f_ in fits.items():
        f, fa = f_["fit"], f_["all"]
        allcol = f"{fa['b']:.2f}, p = {fa['p_value']:.2g}" if fa else "-"
        lines.append(
            f"| {ridge:g} | {', '.join(f'{e:g}' for e in f_['etas'])} | {f['b']:.2f} [{f['b_low']:.2f}, "
            f"{f['b_high']:.2f}] | {f['a']:.1f} [{f['a_low']:.1f}, {f['a_high']:.1f}] | {f['deviance']:.1f} / "
            f"{f['dof']} ({f['p_value']:.2g}) | {allcol} |"
        )
    # local slopes: b between neighbouring learning rates (each with >= 3 jumps), delta-method interval
    slopes = []
    for ridge, g in cv[cv["count"] >= 3].groupby("ridge"):
        g = g[g.diverged / g.seeds < FIT_MAX_DIVERGED].sort_values("eta")
        parts = []
        for (_, lo_), (_, hi_) in zip(g.iterrows(), g.iloc[1:].iterrows()):
            d = 1 / lo_.eta - 1 / hi_.eta
            b = np.log(hi_.rate / lo_.rate) / d
            se = np.sqrt(1 / lo_["count"] + 1 / hi_["count"]) / d
            parts.append(f"{lo_.eta:g}-{hi_.eta:g}: {b:.1f} [{b - 1.96 * se:.1f}, {b + 1.96 * se:.1f}]")
        if parts:
            slopes.append(f"ridge {ridge:g}: " + ", ".join(parts))
    if slopes:
        lines += [
            "",
            "Local slopes b = ln(k_2 / k_1) / (1/eta_1 - 1/eta_2) between neighbouring learning rates (each with at "
            "least "
            "3 first escapes; 95 % delta-method intervals): "
            + "; ".join(slopes)
            + ". Where the fit is rejected, the slope changes along the curve, and an extrapolation of the straight "
            "line to small eta is not a measurement.",
        ]
    # divergence onset per ridge
    onset = []
    for ridge, g in cv.groupby("ridge"):
        d = g[g.diverged / g.seeds >= 0.01]
        half = g[g.diverged / g.seeds >= 0.5]
        onset.append(
            f"ridge {ridge:g}: >= 1 % of seeds diverge from eta {d.eta.min():g}"
            if len(d)
            else f"ridge {ridge:g}: fewer than 1 % diverge up to eta {g.eta.max():g}"
        )
        if len(half):
            onset[-1] += f", >= 50 % from {half.eta.min():g}"
    esc_div = cv[cv.reached > 0]
    frac = esc_div.escaped_then_diverged.sum() / max(esc_div.reached.sum(), 1)
    lines += [
        "",
        "**Divergence.** " + "; ".join(onset) + ". It interferes twice: a seed that diverges before it jumps stops "
        "counting (its exposure ends there, and P counts it as not reached), and near the edge the jumps themselves "
        f"ride on the same large excursions: {pct(frac)} of the seeds that reached rank <= 2 diverged later in the "
        "run.",
        "",
    ]
    spl = splitting_low(out, cv, fits)
    lines += spl["lines"]
    lines += figure_j(out, cv, fits, spl["rows"])
    cv.to_parquet(out / "j_curve.parquet")
    facts["j"] = {"curve": cv, "fits": fits, "splitting": spl["rows"]}
    return lines


def splitting_low(out: Path, cv: pd.DataFrame, fits: dict) -> dict:
    """(l): TAMS estimates at eta 0.11-0.125 (both scores) beside the GPU's brute force and the fit's
    prediction P = 1 - exp(-k T)."""
    rows = []
    for name in ("l_splitting_low", "l_splitting_layers"):
        data = load(out, name)
        if data is None or data["rare"].empty:
            continue
        sp = splitting_rows(data)
        cfgs = {cid: json.loads(c) for cid, c in zip(data["experiments"].config_id, data["experiments"].config)}
        for s_ in sp.itertuples():
            c = cfgs[s_.config_id]
            rows.append(
                {
                    "eta": float(c["train"]["lr"]),
                    "score": c["rare"]["score"],
                    "p": s_.p,
                    "p_low": s_.p_low,
                    "p_high": s_.p_high,
                    "p_rel_se": s_.p_rel_se,
                    "replicas": s_.replicas,
                    "particles": s_.particles,
                    "extinct": s_.extinct,
                    "seed_steps": s_.seed_steps,
                    "horizon": int(c["train"]["steps"]),
                }
            )
    head = ["### (l) Splitting below brute force's reach, against the GPU's brute force", ""]
    if not rows:
        return {"lines": head + not_run("l_splitting_low"), "rows": pd.DataFrame()}
    sl = pd.DataFrame(rows).sort_values(["eta", "score"])
    fit = fits.get(1e-3, {}).get("fit")
    bf = cv[cv.ridge == 1e-3].set_index("eta")
    lines = head + [
        "Fixed-horizon TAMS from the rank-3 minimum at ridge 1e-3 (CPU, `l_splitting_*.toml`), the brute force of the "
        "table above at the same eta, and the Arrhenius fit's prediction P = 1 - exp(-k T) (divergence ignored; it is "
        "below 1 % there). The last column is the SGD steps brute force would need for the same relative error as "
        "splitting achieved (the one its 95 % interval admits, half its log width / 1.96), (1 - p) / (p rel^2) x T, "
        "over the steps splitting used.",
        "",
        "| eta | estimator | P(rank <= 2 within T) | SGD steps | agrees with brute force | brute force / splitting "
        "steps "
        "for this error |",
        "|---|---|---|---|---|---|",
    ]
    agree_all = []
    for q in sl.itertuples():
        b = bf.loc[q.eta] if q.eta in bf.index else None
        if b is not None and not any(r.startswith(f"| {q.eta:g} | brute") for r in lines):
            lines.append(
                f"| {q.eta:g} | brute force, {b.seeds:,} seeds | {b.reached:,}/{b.seeds:,} = {b.p:.3g} [{b.p_low:.3g}, "
                f"{b.p_high:.3g}] | {b.seed_steps:,} | - | - |"
            )
        if fit is not None and not any(r.startswith(f"| {q.eta:g} | Arrhenius") for r in lines):
            lo, hi = fit["log_k_interval"](1 / q.eta)
            pk = lambda lk: -np.expm1(-np.exp(lk) * q.horizon)  # noqa: E731
            lines.append(
                f"| {q.eta:g} | Arrhenius fit (ridge 1e-3) | {pk(fit['log_k'](1 / q.eta)):.3g} [{pk(lo):.3g}, "
                f"{pk(hi):.3g}] | - | - | - |"
            )
        agree = "-" if b is None else ("yes" if overlap((q.p_low, q.p_high), (b.p_low, b.p_high)) else "NO")
        if b is not None:
            agree_all.append(agree == "yes")
        rel = log_rel_error(q.p_low, q.p_high)
        ratio = (1 - q.p) / (q.p * rel * rel) * q.horizon / q.seed_steps if q.p > 0 else float("nan")
        ratio = (
            "- (the estimate is off)"
            if agree == "NO"
            else "- (its interval spans more than a decade)"
            if rel > 0.6
            else f"{ratio:.3g}"
            if agree == "yes"
            else "-"
        )
        p_txt = f"{q.p:.3g} [{q.p_low:.3g}, {q.p_high:.3g}]" if q.p > 0 else "0 (every replica extinct)"
        lines.append(
            f"| {q.eta:g} | tams ({q.score}), {q.replicas} x {q.particles} ({q.extinct} extinct) | {p_txt} | "
            f"{q.seed_steps:,} | {agree} | {ratio} |"
        )
    sl["agree_all"] = all(agree_all) if agree_all else None
    sl.to_parquet(out / "l_splitting_low.parquet")
    return {"lines": lines + [""], "rows": sl}


def figure_j(out: Path, cv: pd.DataFrame, fits: dict, sl: pd.DataFrame) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["(matplotlib not installed: no figure of the escape curve)", ""]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colors = {5e-4: "tab:blue", 1e-3: "tab:orange", 2e-3: "tab:green"}
    for ridge, g in cv.groupby("ridge"):
        col = colors.get(ridge, "k")
        ok = g["count"] > 0
        x = 1 / g.eta[ok]
        y = np.log10(g.rate[ok])
        axes[0].errorbar(
            x,
            y,
            yerr=[y - np.log10(g.rate_low[ok]), np.log10(g.rate_high[ok]) - y],
            fmt="o",
            color=col,
            label=f"ridge {ridge:g}",
            capsize=2,
        )
        z = g[~ok]
        axes[0].scatter(1 / z.eta, np.log10(z.rate_high), marker="v", color=col)
        okp = g.reached > 0
        yp = np.log10(g.p[okp])
        axes[1].errorbar(
            1 / g.eta[okp],
            yp,
            yerr=[yp - np.log10(g.p_low[okp]), np.log10(g.p_high[okp]) - yp],
            fmt="o",
            color=col,
            label=f"brute force, ridge {ridge:g}",
            capsize=2,
        )
        if ridge in fits:
            f = fits[ridge]["fit"]
            xs = np.linspace(1 / g.eta.max(), 1 / 0.10, 50)
            axes[0].plot(xs, f["log_k"](xs) / np.log(10), "--", color=col)
    if not sl.empty:
        for score, g in sl[sl.p > 0].groupby("score"):
            y = np.log10(g.p)
            axes[1].errorbar(
                1 / g.eta + (0.03 if score == "layers" else 0),
                y,
                yerr=[y - np.log10(np.maximum(g.p_low, g.p / 100)), np.log10(g.p_high) - y],
                fmt="s",
                mfc="none",
                color="k" if score == "sigma" else "tab:red",
                label=f"TAMS ({score}), ridge 0.001",
                capsize=2,
            )
    if 1e-3 in fits:
        f, T = fits[1e-3]["fit"], float(cv.horizon.max())
        xs = np.linspace(1 / cv.eta.max(), 1 / 0.105, 50)
        axes[1].plot(
            xs,
            np.log10(-np.expm1(-np.exp(f["log_k"](xs)) * T)),
            "--",
            color=colors[1e-3],
            label="1 - exp(-k T), Arrhenius fit, ridge 0.001",
        )
    axes[0].set(xlabel="1 / eta", ylabel="log10 jump rate 3 -> 2 per step", title="rate (dashed: Arrhenius fit)")
    axes[1].set(xlabel="1 / eta", ylabel="log10 P(rank <= 2 within T)", title="probability within T")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "j_curve.png", dpi=110)
    plt.close(fig)
    return ["![escape curve](j_curve.png)", ""]


def section_k(out: Path, facts: dict) -> list[str]:
    head = ["## (k) A practical recipe: which schedule reaches the true rank fastest", ""]
    data = load_pack(out, ("k_recipe",))
    if data is None:
        return head + ["not run: the GPU script `data/experiments/gpu_runs.sh`", ""]
    r, pas = data["runs"], data["passages"]
    fp = stats.first_passage(r, pas)
    p2 = pas[(pas.level == 2) & (pas.start_rank == 3)].set_index(["config_id", "seed"]).step
    rows = []
    for cid, c, rr in configs_with_runs(data):
        T = int(rr.horizon.max())
        step = p2.reindex(pd.MultiIndex.from_arrays([rr.config_id, rr.seed])).to_numpy()
        success = np.isfinite(step) & (step <= T)
        cost = np.where(success, step, rr.steps.to_numpy())
        e, lo, hi = stats.restart_time(cost, success)
        f = passage(fp, cid, 2, 3)
        rows.append(
            {
                "lr": fmt_sched(c["train"]["lr"]),
                "ridge": fmt_sched(c["train"]["ridge"]),
                "seeds": len(rr),
                "diverged": n_div(rr),
                "reached": int(f.k),
                "p": float(f.p),
                "p_low": float(f.p_low),
                "p_high": float(f.p_high),
                "horizon": T,
                "steps": e,
                "steps_low": lo,
                "steps_high": hi,
            }
        )
    k = pd.DataFrame(rows).sort_values("steps").reset_index(drop=True)
    best, second = k.iloc[0], k.iloc[min(1, len(k) - 1)]
    lines = head + [
        f"From the stuck rank-3 minimum, {int(k.seeds.iloc[0]):,} seeds per schedule for {int(k.horizon.iloc[0]):,} "
        f"steps on {pack_device(out, ['k_recipe'])}. Expected steps to rank <= 2 when every attempt that diverges "
        "or has not arrived by the horizon restarts from the minimum: E[steps of an attempt] / P(attempt arrives) "
        "(`stats.restart_time`, renewal; 95 % delta-method interval). Sorted fastest first.",
        "",
        "| lr | ridge | diverged | P(rank <= 2 within T) | expected steps to rank 2 with restarts |",
        "|---|---|---|---|---|",
    ]
    for q in k.itertuples():
        lines.append(
            f"| {q.lr} | {q.ridge} | {pct(q.diverged / q.seeds)} | {q.reached}/{q.seeds} = {q.p:.3f} [{q.p_low:.3f}, "
            f"{q.p_high:.3f}] | {q.steps:,.0f} [{q.steps_low:,.0f}, {q.steps_high:,.0f}] |"
        )
    apart = best.steps_high < second.steps_low
    lines += [
        "",
        f"Fastest: lr {best.lr} with ridge {best.ridge}, {best.steps:,.0f} steps "
        f"[{best.steps_low:,.0f}, {best.steps_high:,.0f}]; next: lr {second.lr} with ridge {second.ridge} "
        f"({second.steps:,.0f}; {'intervals apart' if apart else 'intervals overlap'}).",
        "",
    ]
    fit = facts.get("j", {}).get("fits", {}).get(1e-3, {}).get("fit")
    if fit is not None:
        lo, hi = fit["log_k_interval"](10.0)
        lines += [
            "A constant small eta is no recipe here: at eta 0.10 the Arrhenius fit of (j) (ridge 1e-3) puts the rate "
            f"at {np.exp(fit['log_k'](10.0)):.2g} per step, an expected {np.exp(-fit['log_k'](10.0)):.2g} steps "
            f"[{np.exp(-hi):.2g}, {np.exp(-lo):.2g}] to escape (an extrapolation, with the caveat of (j)).",
            "",
        ]
    k.to_parquet(out / "k_recipe.parquet")
    facts["k"] = k
    return lines


def section_m(out: Path, facts: dict) -> list[str]:
    name = "m_depth4_search"
    head = ["## (m) Depth 4: is there a rank-overestimating minimum?", ""]
    data = load(out, name)
    if data is None or data["runs"].empty:
        return head + not_run(name, data)
    ev = data["events"]
    rows = []
    for cid, c, rr in configs_with_runs(data):
        T = int(rr.horizon.max())
        late = ev[(ev.config_id == cid) & (ev.step > T // 2)]
        moved = set(late.seed)
        fin = rr[rr.status != "diverged"]
        held = fin[~fin.seed.isin(moved)]
        rows.append(
            {
                "observed": c["problem"]["observed"],
                "problem_seed": c["problem"]["seed"],
                "ridge": c["train"]["ridge"],
                "runs": len(rr),
                "final_ranks": fmt_hist(fin.final_rank.value_counts().sort_index()),
                "stuck_above": int((held.final_rank > c["problem"]["rank"]).sum()),
                "at_true_rank": int((held.final_rank == c["problem"]["rank"]).sum()),
                "still_moving": int(fin.seed.isin(moved).sum()),
                "steps": T,
            }
        )
    m = pd.DataFrame(rows)
    found = m[m.stuck_above > 0]
    lines = head + [
        f"Full-batch gradient descent at depth 4 ({int(m.steps.iloc[0]):,} steps, lr 0.05, ridge 1e-3, 32 gaussian "
        "starts per problem) over the observed fraction and the problem's seed (`m_depth4_search.toml`). "
        '"Stuck above" '
        "counts runs that end above r* = 2 with no rank change over the second half.",
        "",
        "| observed | problem seed | final ranks | stuck above r* | at r* | rank still changing |",
        "|---|---|---|---|---|---|",
    ]
    for q in m.itertuples():
        lines.append(
            f"| {q.observed:g} | {q.problem_seed} | {q.final_ranks} | {q.stuck_above} | {q.at_true_rank} | "
            f"{q.still_moving} |"
        )
    own = m[(m.observed == base_config().problem.observed) & (m.problem_seed == base_config().problem.seed)]
    lines += [
        "",
        (
            f"Depth-4 minima above the true rank exist on {len(found)} of {len(m)} problems searched; on the suite's "
            f"own problem {int(own.stuck_above.sum())} of {int(own.runs.sum())} starts stop at rank 3, so section (p) "
            "runs the depth-4 escape curve from one of them (`rank3_start_depth4.npz`, the start of model.seed)."
            if len(found)
            else f"No depth-4 rank-overestimating minimum in {len(m)} problems x 32 starts: on these problems gradient "
            "descent at depth 4 ends at the true rank (or is still moving), so the depth-4 escape curve has no "
            "start, and the depth question is answered by (d): depth 4 removes the stuck minimum here."
        ),
        "",
    ]
    m.to_parquet(out / "m_depth4_search.parquet")
    facts["m"] = m
    return lines


def section_n(out: Path, facts: dict) -> list[str]:
    head = ["## (n) One way, quantitatively: up-jumps and exits from B_2", ""]
    lines = head
    res = {}
    data = load(out, "n_one_way")
    if data is None or data["runs"].empty:
        lines += not_run("n_one_way", data)
    else:
        r, ev = data["runs"], data["events"]
        exp_, counts = stats.exposure(r, ev)
        sp = splitting_rows(data) if not data["rare"].empty else pd.DataFrame()
        lines += [
            "From the rank-2 minimum (`rank2_start.npz`: sigma_3 = 0 to rounding, inside B_2 = rank <= 2 and "
            "balancedness gap <= 0.1), SGD at a small eta and at the kick's eta, with B_2 visits counted at every "
            "check (`detect.absorbing`), and the up-jump probability within T by TAMS (score: sigma_3 growing from "
            "its start toward tau).",
            "",
            "| eta | seeds | diverged | left B_2 (seeds) | exits / steps inside B_2 | up-jumps 2 -> 3 / steps at "
            "rank 2 "
            "| TAMS P(rank >= 3 within T) |",
            "|---|---|---|---|---|---|---|",
        ]
        for cid, c, rr in configs_with_runs(data):
            eta = c["train"]["lr"]
            sel = (counts.config_id == cid) & (counts.rank_before == 2) & (counts.rank_after > 2)
            up = int(counts[sel]["count"].sum())
            e2 = int(exp_[(exp_.config_id == cid) & (exp_["rank"] == 2)].exposure_steps.sum())
            lo, hi = stats.poisson_rate_ci(up, e2)
            ex, inside = int(rr.br_exits.sum()), int(rr.br_steps.sum())
            xlo, xhi = stats.poisson_rate_ci(ex, inside)
            t = sp[sp.config_id == cid] if len(sp) else sp
            if len(t):
                s_ = t.iloc[0]
                tams = (
                    f"{s_.p:.3g} [{s_.p_low:.3g}, {s_.p_high:.3g}] ({s_.extinct} of {s_.replicas} extinct)"
                    if s_.p > 0
                    else f"0: all {s_.replicas} replicas extinct (every particle tied at its floor)"
                )
            else:
                tams = "-"
            lines.append(
                f"| {eta:g} | {len(rr)} | {n_div(rr)} | {int((rr.br_exits > 0).sum())} | "
                f"{fmt_rate(ex, inside, xlo, xhi)} "
                f"| {fmt_rate(up, e2, lo, hi)} | {tams} |"
            )
            res[float(eta)] = {
                "exits": ex,
                "inside": inside,
                "up": up,
                "exposure": e2,
                "up_high": hi,
                "tams_p": float(t.iloc[0].p) if len(t) else float("nan"),
            }
        lines.append("")
    kick = load_pack(out, ("c_b2",))
    if kick is not None:
        r, ev = kick["runs"], kick["events"]
        e_all, c_all = stats.exposure(r, ev)
        e_small, c_small = stats.exposure(r, ev, burn_in=50_000)

        def up_rate(e_, c_):
            cnt = int(c_[(c_.rank_before == 2) & (c_.rank_after > 2)]["count"].sum())
            return cnt, int(e_[e_["rank"] == 2].exposure_steps.sum())

        ua, ea = up_rate(e_all, c_all)
        us, es = up_rate(e_small, c_small)
        uk, ek = ua - us, ea - es
        # each up-jump out of rank 2 after the kick: steps since that seed last jumped down to rank <= 2
        key = ["config_id", "seed"]
        down = ev[(ev.direction == "down") & (ev.rank_after <= 2)][key + ["step"]].sort_values("step")
        up = ev[(ev.direction == "up") & (ev.rank_before <= 2) & (ev.rank_after > 2) & (ev.step >= 50_000)]
        up = up[key + ["step"]].sort_values("step")
        since = pd.merge_asof(
            up,
            down.rename(columns={"step": "entered"}),
            left_on="step",
            right_on="entered",
            by=key,
            allow_exact_matches=False,
        )
        entered_after = int((since.entered >= 50_000).sum())
        since = (since.step - since.entered).to_numpy()
        settled = int(np.sum(~(since < 10_000)))
        small_exits = int(r.br_exits.sum())
        first_entry = r[r.br_entries > 0].br_first_entry
        lines += [
            f"The kick experiment (c) again with {len(r):,} seeds on {pack_device(out, ['c_b2'])} (eta 0.14 to step "
            "50,000, then 0.05), B_2 counted: up-jumps out of rank 2 during the kick "
            f"{fmt_rate(uk, ek, *stats.poisson_rate_ci(uk, ek))}; after it, at eta 0.05, "
            f"{fmt_rate(us, es, *stats.poisson_rate_ci(us, es))}. Seeds that entered B_2: "
            f"{int((r.br_entries > 0).sum()):,}; exits from B_2 after entry: {int(r.br_exits.sum()):,} "
            f"({int(r.br_steps.sum()):,} steps inside; every seed's first entry into B_2 came at step "
            f"{int(first_entry.min()):,} or later). The up-jumps at eta 0.05 come {np.median(since):,.0f} steps "
            f"(median) after the seed's last jump down to rank 2, {len(since) - settled} of {len(since)} within "
            f"10,000 steps of it, and {entered_after} of {len(since)} follow a down-jump made after the kick: sigma_3 "
            "that the kick left near tau, still decaying at eta 0.05, crosses tau back and forth (near the threshold "
            "the ridge's pull to 0 and the data's pull up nearly cancel). None comes from the rank-2 minimum itself "
            "(the table above).",
            "",
            "Why none leave rank 2 from the rank-2 minimum, even at eta 0.14: there every layer maps through the same "
            "2-dimensional internal subspaces, and an SGD step (a rank-one update of each layer, whose row and column "
            "directions lie in those subspaces, plus the ridge's shrinkage) keeps them there, so rank <= 2 is "
            "invariant at any eta in exact arithmetic; float32 rounding keeps sigma_3 near its floor (TAMS finds no "
            "level to split on). What does leave at large eta is the balancedness part of B_2: at eta 0.14 "
            "every seed's gap exceeded the tolerance within a few hundred steps while its rank stayed 2.",
            "",
        ]
        res["kick"] = {
            "small_exits": small_exits,
            "first_entry": int(first_entry.min()),
            "up_kick": uk,
            "exp_kick": ek,
            "up_small": us,
            "exp_small": es,
            "up_small_high": stats.poisson_rate_ci(us, es)[1],
        }
    facts["n"] = res
    if res:
        pd.DataFrame([{"setting": str(k), **{kk: vv for kk, vv in v.items()}} for k, v in res.items()]).to_parquet(
            out / "n_one_way.parquet"
        )
    return lines


BASIN = 0.25  # a check is in the basin while sigma_3 >= this fraction of its first value


def sigma3_frame(traces: pd.DataFrame) -> pd.DataFrame:
    """seed, step, sigma_3, rank and train loss of a traces table, sorted by seed and step."""
    t = traces.sort_values(["seed", "step"])
    return pd.DataFrame(
        {
            "seed": t.seed.to_numpy(),
            "step": t.step.to_numpy(),
            "s3": np.stack(t.singular_values.to_numpy())[:, 2],
            "rank": t["rank"].to_numpy(),
            "loss": t.loss.to_numpy(),
        }
    )


def largest_fall(g: pd.DataFrame) -> tuple[float, int, float, float]:
    """(largest ratio sigma_3 before / after over one row of ``g``, its step, sigma_3 before, after), among
    the falls that start in the basin (sigma_3 before >= a quarter of its first value): once sigma_3 is near
    tau its relative fluctuations are large and are not the collapse."""
    s3 = g.s3.to_numpy()
    if len(s3) < 2:
        return 1.0, -1, float("nan"), float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = s3[:-1] / s3[1:]
    r = np.where(np.isfinite(r) & (s3[:-1] >= BASIN * s3[0]), r, 0.0)
    i = int(np.argmax(r))
    return float(r[i]), int(g.step.iloc[i + 1]), float(s3[i]), float(s3[i + 1])


LOSS_BINS = (0.0, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, np.inf)


def collapse_precursor(t: pd.DataFrame, big: float) -> pd.DataFrame:
    """Per train-loss bin of the checks in the basin (rank >= 3, sigma_3 >= BASIN x its first value, next
    check present) of a ``sigma3_frame``: checks, those after which sigma_3 falls more than `big` x by the
    next check, and that chance per check with its Wilson interval."""
    s3, seed = t.s3.to_numpy(), t.seed.to_numpy()
    first = t.groupby("seed").s3.transform("first").to_numpy()
    nxt = np.append(s3[1:], np.nan)
    same = np.append(seed[1:] == seed[:-1], False)
    ok = same & (t["rank"].to_numpy() >= 3) & (s3 >= BASIN * first) & np.isfinite(nxt)
    fall = s3[ok] / np.maximum(nxt[ok], 1e-300) > big
    loss = t.loss.to_numpy()[ok]
    rows = []
    for a, b in zip(LOSS_BINS[:-1], LOSS_BINS[1:]):
        m = (loss > a) & (loss <= b)
        k, n = int(fall[m].sum()), int(m.sum())
        if n:
            lo, hi = stats.proportion_ci(k, n)
            label = f"> {a:g}" if not np.isfinite(b) else f"{a:g}-{b:g}"
            rows.append({"bin": label, "checks": n, "falls": k, "p": k / n, "p_low": lo, "p_high": hi})
    return pd.DataFrame(rows)


def section_o(out: Path, facts: dict) -> list[str]:
    name = "o_escape_paths"
    head = ["## (o) What an escape looks like", ""]
    data = load(out, name)
    if data is None or data["traces"].empty:
        return head + not_run(name, data)
    ev = data["events"]
    down = ev[(ev.direction == "down") & (ev.rank_after <= 2)].groupby("seed").step.min()
    t = sigma3_frame(data["traces"])
    cfg_o = json.loads(data["experiments"].config.iloc[0])
    every = int(cfg_o["detect"]["every"])
    falls = []
    for seed, g in t.groupby("seed"):
        esc = down.get(seed)
        g = g[g.step <= esc] if esc is not None else g
        ratio, step, before, after = largest_fall(g)
        falls.append({"seed": seed, "escaped": esc is not None, "ratio": ratio, "before": before, "after": after})
    f = pd.DataFrame(falls)
    e, n = f[f.escaped], f[~f.escaped]
    big = 10.0
    lines = head + [
        f"{len(f):,} seeds traced every {every} steps from the rank-3 minimum at eta 0.135 (`o_escape_paths.toml`); "
        f"{len(e)} reached rank <= 2. Before its escape, each escaping seed's largest fall of sigma_3 between two "
        f"checks: median {e.ratio.median():.0f}x (sigma_3 from {e.before.median():.2f} to {e.after.median():.3f}); "
        f"{int((e.ratio > big).sum())} of {len(e)} escapes began with a fall of more than {big:.0f}x within one check "
        f"period, against {int((n.ratio > big).sum())} of {len(n):,} seeds that did not escape (falls that recovered).",
        "",
    ]
    pre = collapse_precursor(t, big)
    facts["o_pre"] = pre
    lines += [
        f"What comes before a collapse: at every check in the basin (rank 3, sigma_3 at least a quarter of its start; "
        f"{int(pre.checks.sum()):,} checks), the chance that sigma_3 falls more than {big:.0f}x by the next check, "
        "against the train loss at the check (in the replay below the loss rises from ~0.04 to ~0.18 in the ~30 "
        "steps before the collapsing step):",
        "",
        "| train loss at the check | checks | falls > 10x in the next period | per check (95 %) |",
        "|---|---|---|---|",
    ]
    for r in pre.itertuples():
        lines.append(f"| {r.bin} | {r.checks:,} | {r.falls} | {r.p:.2g} [{r.p_low:.2g}, {r.p_high:.2g}] |")
    hi, lo = pre.iloc[-1], pre.iloc[0]
    lines += [
        "",
        f"The loss orders the states by their chance of a collapse over {np.log10(hi.p / max(lo.p, hi.p * 1e-6)):.1f} "
        "decades (lowest to highest bin): a precursor that a score could split on. Mixing it into the sigma score "
        "by hand (README, splitting) did not remove the under-estimates, so it is reported here as the lead for a "
        "learned (committor-like) score, not as a fix.",
        "",
    ]
    pre.to_parquet(out / "o_collapse_precursor.parquet")
    rp = load(out, "o_escape_replay")
    if rp is not None and not rp["traces"].empty:
        tr = sigma3_frame(rp["traces"])
        ratio, step, before, after = largest_fall(tr)
        seed = int(rp["runs"].seed.iloc[0])
        lines += [
            f"Replayed with a check at every step (the same SGD path), seed {seed}'s fall is a single SGD step: "
            "sigma_3 "
            f"{before:.2f} -> {after:.3f} at step {step:,} ({ratio:.0f}x); after it sigma_3 decays slowly (the ridge) "
            "and crosses tau a few thousand steps later.",
            "",
        ]
        facts["o_step"] = {"ratio": ratio, "before": before, "after": after}
    lines += [
        "So at these learning rates most escapes start with one large SGD step that collapses the third direction, "
        "not with a diffusion down a slope. Such collapses are not rare in themselves (the seeds above that did "
        "not escape had them and recovered); an escape is a collapse deep enough for the ridge to carry sigma_3 "
        "through tau before it grows back. A score built on sigma_3 has no intermediate levels between the basin "
        "and the collapsed state, which is why splitting on it loses its advantage and under-estimates as eta falls "
        "((h), (l)): the whole estimate rests on the few lineages that collapsed. A score for the small-eta regime "
        "would have to rank states by their chance of such a step (the state just before it, visible only between "
        "checks in the replay).",
        "",
    ]
    facts["o"] = {
        "escapes": len(e),
        "big": int((e.ratio > big).sum()),
        "others_big": int((n.ratio > big).sum()),
        "non_escaped": len(n),
        "every": every,
        "eta": cfg_o["train"]["lr"],
    }
    f.to_parquet(out / "o_escape_paths.parquet")
    return lines


# ------------------------------------------------------------------------------------------
# (q) the collapse hazard

HAZARD_FALLS = (1.1, 2.0, 10.0)  # one-step falls of sigma_3 counted per state (factor sigma_3 / sigma_3 after)


def collapse_hazard(d: Path, configs) -> None:
    """(q): the dataset's seeds followed again (``dynamics.init_seed`` and ``period``: the run's trajectories)
    and, at every check after the first 10 %, the fall of sigma_3 (float64) that ONE step on each observed
    entry would make (``dynamics.entries_step``). One row per state: config, eta, ridge, seed, step, sigma_3,
    train loss, the largest fall and, per factor c in HAZARD_FALLS, how many entries fall by more than c.
    Written to ``d``/hazard.parquet, beside the dataset (diverged states left out)."""
    rows = []
    for cfg in configs:
        su = dynamics.setup(cfg)
        data, dyn, det = su.data, su.dynamics, su.detection
        seeds = np.arange(cfg.run.seeds)
        entries = jnp.arange(data.n_observed, dtype=jnp.int32)

        def falls(s: dynamics.SeedState):
            sig = lambda params: spectrum.singular_value(model.end_to_end(params), 3)
            after = jax.vmap(lambda e: sig(dynamics.entries_step(s.params, s.opt_state, e[None], 0, data, dyn)[0]))
            now = sig(s.params)
            f = now / after(entries)
            return now, jnp.max(f), jnp.stack([jnp.sum(f > c) for c in HAZARD_FALLS])

        with dynamics.float64_scope():
            step = jax.jit(jax.vmap(lambda s, t: dynamics.period(s, t, data, dyn, det)[0], in_axes=(0, None)))
            look = jax.jit(jax.vmap(falls))
            xs = jax.vmap(lambda i: dynamics.init_seed(i, su))(jnp.asarray(seeds))
            periods = cfg.train.steps // cfg.detect.every
            for c in range(periods):
                xs = step(xs, jnp.int32(c * cfg.detect.every))
                if c + 1 < max(1, periods // 10):
                    continue
                s3, big, counts = (np.asarray(v) for v in look(xs))
                ok = ~np.asarray(xs.diverged)
                frame = {"config_id": cfg.config_id, "eta": cfg.train.lr.value_at(0), "seed": seeds[ok]}
                frame |= {"ridge": cfg.train.ridge.value_at(0)}
                frame |= {"step": (c + 1) * cfg.detect.every, "s3": s3[ok], "loss": np.asarray(xs.loss)[ok]}
                frame |= {"max_fall": big[ok], **{f"over_{fc:g}": counts[ok, i] for i, fc in enumerate(HAZARD_FALLS)}}
                rows.append(pd.DataFrame(frame))
    d.mkdir(parents=True, exist_ok=True)
    pd.concat(rows, ignore_index=True).assign(entries=int(data.n_observed)).to_parquet(d / "hazard.parquet")


def _o_falls(facts: dict) -> str:
    """Report (o)'s observed rate of falls > 10x between checks, per step, for comparison (if (o) ran)."""
    pre = facts.get("o_pre")
    if pre is None or not pre.checks.sum():
        return ""
    every, eta = facts["o"]["every"], facts["o"]["eta"]
    k, n = int(pre.falls.sum()), int(pre.checks.sum())
    lo, hi = stats.proportion_ci(k, n)
    return (
        f"; report (o), at eta {eta:g}, counted {k} falls > 10x between checks {every} steps apart at {n:,} basin "
        f"checks: {k / n / every:.2g} [{lo / every:.2g}, {hi / every:.2g}] per step, the same order (another eta, and "
        "a fall within a period may take more than one step), and most escapes begin with one"
    )


HAZARD = [n for n in EXPERIMENTS if n.startswith("q_")]  # (q)'s datasets: the base ridge first, then the others


def section_q(out: Path, facts: dict) -> list[str]:
    head = ["## (q) The collapse hazard: how far one SGD step can pull sigma_3 down", ""]
    frames, passages = [], []
    for name in HAZARD:
        data = load(out, name)
        if data is not None and (out / name / "hazard.parquet").exists():
            frames.append(pd.read_parquet(out / name / "hazard.parquet"))
            passages.append(stats.first_passage(data["runs"], data["passages"]))
    if not frames:
        return head + not_run(HAZARD[0], None)
    h, fp = pd.concat(frames, ignore_index=True), pd.concat(passages, ignore_index=True)
    # basin states only, as in (o): sigma_3 at least BASIN x that of the ridge's start (after a collapse or an
    # escape sigma_3 is tiny, and ratios of tiny values count spurious "falls")
    start_s3 = {r: float(start_facts(start_path(r), ridge=r)["singular_values"][2]) for r in h.ridge.unique()}
    h = h[h.s3 >= BASIN * h.ridge.map(start_s3)]
    n_e = int(h.entries.iloc[0])
    cv = curve(out, facts)
    lines = head + [
        f"The seeds of `{'`, `'.join(f'{n}.toml' for n in HAZARD)}` (brute force from each ridge's rank-3 "
        f"minimum, {h.seed.nunique()} seeds, 20,000 steps) followed again, and at every check after the first 10 % "
        f"in the basin (sigma_3 at least {BASIN:g} of its start, as in (o)) the fall of sigma_3 that one SGD step "
        f"on each of the {n_e} observed entries would make (batch 1: the next step is one of them, each with "
        f"chance 1/{n_e}). The per-step chance of a fall by more than c is then the state's share of entries "
        "that make it, averaged over the states: a collapse's chance measured without waiting for one "
        "(interval: Student-t over the seeds' averages; states are correlated along a seed's path, so where no "
        "state had such an entry the table says so and gives no bound). Beside it, the escape rate k that (j) "
        "measured on a GPU at the same ridge and eta, and k / P(> 10x): escapes per > 10x step.",
        "",
        "| ridge | eta | escaped / seeds within T | states | largest one-step fall: median state / 99.9 % / largest | "
        + " | ".join(f"P(one step falls > {c:g}x) per step [95 %]" for c in HAZARD_FALLS)
        + " | escape rate k per step ((j), GPU) | k / P(> 10x) |",
        "|---|---|---|---|---|" + "---|" * len(HAZARD_FALLS) + "---|---|",
    ]
    table = []
    for (ridge, eta), g in h.groupby(["ridge", "eta"]):
        f = fp[(fp.config_id == g.config_id.iloc[0]) & (fp.start_rank == 3) & (fp.level == 2)]
        bf = f"{int(f.k.iloc[0])} / {int(f.n.iloc[0])}" if len(f) else "-"
        q50, q999, top = np.quantile(g.max_fall, [0.5, 0.999]).tolist() + [float(g.max_fall.max())]
        row = {"ridge": ridge, "eta": eta, "states": len(g), "median": q50, "q999": q999, "largest": top}
        cells = []
        for c in HAZARD_FALLS:
            per_seed = (g[f"over_{c:g}"] / n_e).groupby(g.seed).mean()
            m, lo, hi = stats.mean_interval(per_seed.to_numpy())
            row |= {f"p_{c:g}": m, f"p_{c:g}_low": lo, f"p_{c:g}_high": hi}
            cells.append(f"{m:.2g} [{lo:.2g}, {hi:.2g}]" if m > 0 else "0 (no state)")
        j = cv[np.isclose(cv.ridge, ridge) & np.isclose(cv.eta, eta)] if len(cv) else cv
        k = conv = "-"
        if len(j):
            c, e = int(j["count"].iloc[0]), float(j.exposure.iloc[0])
            k = f"{c / e:.3g} [{j.rate_low.iloc[0]:.3g}, {j.rate_high.iloc[0]:.3g}] ({c} escapes)"
            if row["p_10"] > 0 and c > 0:
                row["k"] = c / e
                row["conversion"] = row["k"] / row["p_10"]
                conv = f"{row['conversion']:.2g}"
        table.append(row)
        lines.append(
            f"| {ridge:g} | {eta:g} | {bf} | {len(g):,} | {q50:.4f}x / {q999:.3f}x / {top:.3f}x | "
            + " | ".join(cells)
            + f" | {k} | {conv} |"
        )
    tab = pd.DataFrame(table)
    facts["q"] = tab
    tab.to_parquet(out / "q_collapse_hazard.parquet")
    base = tab[np.isclose(tab.ridge, 1e-3)]
    live, calm = base[base.p_10 > 0], base[base.p_10 == 0]
    none = "; ".join(
        f"at eta {q.eta:g} none of {int(q.states):,} states had an entry that would divide sigma_3 by more than "
        f"{q.largest:.3f} (the typical state's largest one-step fall: {100 * (q.median - 1):.2f} %)"
        for q in calm.sort_values("eta", ascending=False).itertuples()
    )
    lines += [""]
    if len(live):
        first = live.sort_values("eta").iloc[0]
        lines.append(
            f"At ridge 0.001 and eta {first.eta:g} a step that divides sigma_3 by more than 10 is available from some "
            f"states: {first['p_10']:.2g} per step on average{_o_falls(facts)}."
            + (f" Below, {none}." if none else "")
            + " There the collapse is not a rare draw of the sampled entry from ordinary states: it needs states far "
            "outside what the noise visits (report (i): sigma_3 itself moves by a few percent). This is why "
            "splitting on sigma_3 finds no path at small eta, and what a score for it would have to measure: the "
            "distance to states from which one step collapses."
        )
    split = _ridge_split(tab)
    if split and split[0].endswith("grows back."):
        facts["q_split"] = (
            "Across ridges and learning rates (q): eta sets how often one step collapses sigma_3, the ridge how "
            "often a collapse becomes an escape."
        )
    lines += ["", *split, ""]
    return lines


def _ridge_split(tab: pd.DataFrame) -> list[str]:
    """How the ridge (at equal eta) and eta (at equal ridge) act: through the collapse hazard, or through what
    follows a collapse (escapes per > 10x step)."""
    if "conversion" not in tab:
        return []
    t = tab[tab.conversion.notna()]

    def split(by: str, across: str) -> list[str]:
        out = []
        for v, g in t.groupby(by):
            if g[across].nunique() < 2:
                continue
            g = g.sort_values(across)
            lo, hi = g.iloc[0], g.iloc[-1]
            hazard, conversion = hi.p_10 / lo.p_10, hi.conversion / lo.conversion
            where = "the hazard" if abs(np.log(hazard)) > abs(np.log(conversion)) else "what follows a collapse"
            out.append(
                f"at {by} {v:g}, {across} {lo[across]:g} -> {hi[across]:g} multiplies the escape rate by "
                f"{hi.k / lo.k:.2g}, the > 10x hazard by {hazard:.2g} and the escapes per such step by "
                f"{conversion:.2g} (mostly {where})"
            )
        return out

    by_ridge, by_eta = split("eta", "ridge"), split("ridge", "eta")
    if not by_ridge or not by_eta:
        return []
    clean = all("follows" in x for x in by_ridge) and all("hazard)" in x for x in by_eta)
    return [
        "Splitting each escape rate of (j) into the hazard of a > 10x step and the escapes per such step (the last "
        "column; an approximation where not every escape begins with one, report (o)). The ridge at equal eta: "
        + "; ".join(by_ridge)
        + ". The learning rate at equal ridge: "
        + "; ".join(by_eta)
        + ". "
        + (
            "So, on this problem, eta sets how often SGD collapses sigma_3 in one step, and the ridge sets how "
            "often a collapse is carried through tau (its pull on the collapsed direction against the data's pull "
            "back) before sigma_3 grows back."
            if clean
            else "The two factors do not separate by parameter here."
        )
    ]


def section_p(out: Path, facts: dict) -> list[str]:
    name = "p_depth4_curve"
    head = ["## (p) Depth 4 against depth 3: the escape curve and the rate ratio at equal eta", ""]
    data = load(out, name)
    if data is None or data["runs"].empty:
        return head + not_run(name, data)
    d4 = pd.DataFrame(escape_rows(data, depth=4)).sort_values("eta").reset_index(drop=True)
    cv = curve(out, facts)
    d3 = cv[cv.ridge == 1e-3].assign(depth=3) if len(cv) else pd.DataFrame()
    s3_4, s3_3 = start_facts(start_path(depth=4))["singular_values"][2], start_facts()["singular_values"][2]
    lines = head + [
        f"Brute force on the CPU from the depth-4 rank-3 minimum of the same problem (`rank3_start_depth4.npz`: "
        f"GD at depth 4 from the gaussian start of model.seed, sigma_3 = {s3_4:.3g} against {s3_3:.3g} at depth 3), "
        f"ridge 1e-3, {int(d4.horizon.max()):,} steps, "
        f"{int(d4.seeds.iloc[0]):,} seeds per learning rate (`p_depth4_curve.toml`).",
        "",
        "| eta | seeds | diverged | P(rank <= 2 within T) | escape rate k: first escapes / steps before them | "
        "3 -> 2 jumps in all |",
        "|---|---|---|---|---|---|",
    ]
    for q in d4.itertuples():
        lines.append(
            f"| {q.eta:g} | {q.seeds:,} | {pct(q.diverged / q.seeds)} | {q.reached:,}/{q.seeds:,} = {q.p:.3g} "
            f"[{q.p_low:.3g}, {q.p_high:.3g}] | {fmt_rate(q.count, q.exposure, q.rate_low, q.rate_high)} | "
            f"{q.jumps:,} |"
        )
    small = d4[d4.diverged / d4.seeds < FIT_MAX_DIVERGED]
    fit4 = None
    if len(small) >= 3 and small["count"].sum() > 0:
        fit4 = stats.arrhenius_fit(1 / small.eta, small["count"], small.exposure, quasi=True)
        lines += [
            "",
            f"Arrhenius fit at depth 4 (learning rates {', '.join(f'{e:g}' for e in small.eta)}, fewer than "
            f"{pct(FIT_MAX_DIVERGED)} diverged): b = {fit4['b']:.2f} [{fit4['b_low']:.2f}, {fit4['b_high']:.2f}], "
            f"goodness of fit p = {fit4['p_value']:.2g}"
            + (
                f"; at depth 3 (j): b = {facts['j']['fits'][1e-3]['fit']['b']:.2f}."
                if "j" in facts and 1e-3 in facts["j"]["fits"]
                else "."
            ),
        ]
    # equal eta: the ratio of the 3 -> 2 rates, exact conditional interval (stats.rate_ratio)
    ratios = []
    if len(d3):
        both = d4.merge(d3, on="eta", suffixes=("_4", "_3"))
        for q in both.itertuples():
            rr = stats.rate_ratio(int(q.count_4), q.exposure_4, int(q.count_3), q.exposure_3)
            ratios.append({"eta": q.eta, **rr, "count_4": int(q.count_4), "count_3": int(q.count_3)})
    lines += [
        "",
        "Escape-rate ratio depth 4 / depth 3 at equal eta and ridge 1e-3 (first escapes; exact conditional interval):",
        "",
    ]
    if ratios:
        lines += ["| eta | depth 4 escapes | depth 3 escapes | ratio [95 %] |", "|---|---|---|---|"]
        for q in ratios:
            lines.append(
                f"| {q['eta']:g} | {q['count_4']:,} | {q['count_3']:,} | {q['ratio']:.3g} [{q['low']:.3g}, "
                f"{q['high']:.3g}] |"
            )
    else:
        lines.append("no learning rate is in both curves.")
    lo_edge = d4[d4.diverged / d4.seeds >= 0.5].eta.min()
    edge3 = d3[d3.diverged / d3.seeds >= 0.5].eta.min() if len(d3) else float("nan")
    lines += [
        "",
        (
            f"At every learning rate in both curves ({', '.join(format(q['eta'], 'g') for q in ratios)}) depth 4's "
            f"escape rate is at least {min(q['low'] for q in ratios):.3g}x depth 3's (lower ends of the intervals)"
            if ratios and all(q["low"] > 1 for q in ratios)
            else "At equal eta the two depths' escape rates are not resolved apart"
        )
        + "; but depth 4's edge of divergence is lower too "
        f"(>= 50 % diverge from eta {lo_edge:g} at depth 4, {edge3:g} at depth 3): the escape window moves down with "
        "the "
        "edge of stability rather than opening at small eta.",
        "",
    ]
    lines += figure_p(out, d4, fit4, d3, facts.get("j", {}).get("fits", {}).get(1e-3, {}).get("fit"))
    d4.to_parquet(out / "p_depth4_curve.parquet")
    facts["p"] = {"curve": d4, "fit": fit4, "ratios": ratios}
    return lines


def figure_p(out: Path, d4: pd.DataFrame, fit4, d3: pd.DataFrame, fit3) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["(matplotlib not installed: no figure of the depth comparison)", ""]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for g, fit, label, col in ((d3, fit3, "depth 3", "tab:orange"), (d4, fit4, "depth 4", "tab:purple")):
        if g is None or not len(g):
            continue
        ok = g["count"] > 0
        y = np.log10(g.rate[ok])
        ax.errorbar(
            1 / g.eta[ok],
            y,
            yerr=[y - np.log10(g.rate_low[ok]), np.log10(g.rate_high[ok]) - y],
            fmt="o",
            color=col,
            capsize=2,
            label=f"{label}, ridge 0.001",
        )
        z = g[~ok]
        ax.scatter(1 / z.eta, np.log10(z.rate_high), marker="v", color=col)
        if fit is not None:
            xs = np.linspace(1 / g.eta.max(), 1 / g.eta[ok].min() + 1.5, 50)
            ax.plot(xs, fit["log_k"](xs) / np.log(10), "--", color=col)
    ax.set(xlabel="1 / eta", ylabel="log10 jump rate 3 -> 2 per step", title="depth 4 vs depth 3 (v: upper bounds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "p_depth4_curve.png", dpi=110)
    plt.close(fig)
    return ["![depth 4 vs depth 3](p_depth4_curve.png)", ""]


def section_claims(facts: dict) -> list[str]:
    """The table at the top: what the paper claims, what the sections below measured, agreement."""
    rows = []
    a = facts.get("a")
    if a:
        rows.append(
            (
                "GD can get stuck at minima of rank above the true one",
                f"(a) {a['above']}/{a['n']} GD runs end above r* = {a['rstar']}",
                "yes" if a["above"] > 0 else "not seen here",
            )
        )
    j = facts.get("j")
    if j:
        cv = j["curve"]
        r13 = cv[(cv.ridge == 1e-3) & (cv.eta == 0.13)]
        hits = cv[(cv.reached > 0)].sort_values("eta")
        low = hits.iloc[0] if len(hits) else None
        if low is None:
            what = f"(j) no escape in {int(cv.seeds.sum()):,} seeds"
        else:
            what = (
                f"(j) from the rank-3 minimum, P(rank <= 2 within {int(cv.horizon.max()):,}) = {low.p:.2g} at eta "
                f"{low.eta:g} (ridge {low.ridge:g}), the lowest eta with an escape in {int(low.seeds):,} seeds"
            )
        if len(r13):
            what += f"; {r13.p.iloc[0]:.2g} at eta 0.13"
        rows.append(
            (
                "SGD jumps from a higher-rank minimum to a lower-rank one with non-zero probability",
                what,
                "yes" if low is not None else "not seen",
            )
        )
        fits = j["fits"]
        if fits:
            parts = [
                f"ridge {r:g}: b = {f['fit']['b']:.1f} [{f['fit']['b_low']:.1f}, {f['fit']['b_high']:.1f}], "
                f"fit p = {f['fit']['p_value']:.2g}"
                for r, f in fits.items()
            ]
            ok = [f["fit"]["p_value"] >= 0.01 for f in fits.values()]
            rows.append(
                (
                    "The jump probability is small for small eta (noise too weak to escape)",
                    "(j) rate k against 1/eta, Arrhenius fit log k = a - b/eta where < 5 % diverge: "
                    + "; ".join(parts),
                    "yes; the Arrhenius form fits " + f"{sum(ok)} of {len(ok)} ridges (p >= 0.01)",
                )
            )
    n = facts.get("n")
    if n:
        small = min((k for k in n if isinstance(k, float)), default=None)
        kick = n.get("kick")
        if small is not None:
            s = n[small]
            what = (
                f"(n) from the rank-2 minimum at eta {small:g}: {s['up']} up-jumps in {s['exposure']:,} steps "
                f"(< {s['up_high']:.2g} per step), {s['exits']} exits from B_2"
            )
            verdict = "yes, from a minimum" if s["up"] == 0 and s["exits"] == 0 else "NO"
            if kick:
                what += (
                    f"; after an eta = 0.14 kick, at eta 0.05: {kick['up_small']} up-jumps in {kick['exp_small']:,} "
                    f"steps at rank 2 and {kick['small_exits']} exits from B_2, from states the kick left near tau"
                )
                if kick["up_small"] or kick["small_exits"]:
                    verdict += "; not for states left near the threshold by a kick (they cross back and forth)"
            rows.append(("No jump back up: B_r is absorbing for small eta and ridge", what, verdict))
        if kick:
            rows.append(
                (
                    "(not claimed) up-jumps at large eta",
                    f"(n) during an eta = 0.14 kick: {kick['up_kick']} up-jumps out of rank 2 in "
                    f"{kick['exp_kick']:,} steps",
                    "the claim's small-eta condition matters",
                )
            )
    m, pp = facts.get("m"), facts.get("p")
    if m is not None:
        found = int((m.stuck_above > 0).sum())
        what = f"(m) depth-4 GD stops above r* on {found} of {len(m)} problems searched"
        verdict = "depth 4 removes the stuck minimum here" if found == 0 else "depth-4 minima above r* exist"
        both = [q for q in (pp or {}).get("ratios", []) if q["count_4"] > 0 and q["count_3"] > 0]
        if both:
            q = min(both, key=lambda q: q["high"] / q["low"])
            what += (
                f"; (p) at eta {q['eta']:g} the depth-4 escape rate is {q['ratio']:.3g}x depth 3's "
                f"[{q['low']:.3g}, {q['high']:.3g}]"
            )
            verdict = "depth raises the rate at equal eta" if q["low"] > 1 else "no depth effect resolved"
        rows.append(("Deeper networks: more local minima, possibly a stronger low-rank bias", what, verdict))
    k = facts.get("k")
    if k is not None and len(k):
        b = k.iloc[0]
        rows.append(
            (
                "Recipe: small ridge to reach at least the right rank, then SGD noise to find lower-rank minima",
                f"(k) fastest of {len(k)} schedules: lr {b.lr}, ridge {b.ridge}: {b.steps:,.0f} steps "
                f"[{b.steps_low:,.0f}, {b.steps_high:,.0f}] to rank 2 with restarts",
                "works only with eta near the edge of divergence"
                + (
                    f"; at a constant eta 0.10 the fit of (j) extrapolates {np.exp(-fj['log_k'](10.0)):.2g} steps"
                    if (fj := facts.get("j", {}).get("fits", {}).get(1e-3, {}).get("fit")) is not None
                    else ""
                ),
            )
        )
    if not rows:
        return []
    lines = [
        "## The paper's claims against what we measured",
        "",
        "| the paper claims | we measured | agreement |",
        "|---|---|---|",
    ]
    lines += [f"| {c} | {w} | {g} |" for c, w, g in rows]
    return lines + [""]


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
            ". At eta 0.05 no 3 -> 2 jump at either depth ("
            + ", ".join(f"depth {k} < {q[3]:.2g} per step" for k, q in sorted(down.items()))
            + ")"
        )
    ratios = (facts.get("p") or {}).get("ratios") or []
    if ratios:
        text += (
            "; from each depth's own rank-3 minimum (p), the depth-4 escape rate over depth 3's at equal eta: "
            + ", ".join(f"eta {q['eta']:g}: {q['ratio']:.3g} [{q['low']:.3g}, {q['high']:.3g}]" for q in ratios)
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
        est = ", ".join(
            f"{r.method} ({r.particles} particles) {r.p:.3g} [{r.p_low:.3g}, {r.p_high:.3g}]" for r in g.itertuples()
        )
        ok = "agree with" if g.agree.all() else "do NOT all agree with"
        parts.append(f"at eta {eta} brute force {g.bf_p.iloc[0]:.3g}, splitting {est}: the intervals {ok} brute force")
    text = "- **Rare-event splitting** (h, i): " + "; ".join(parts) + "."
    best = {}  # eta -> the tightest level bound over the methods
    for x in facts.get("i", []):
        if x["p_bound"] == x["p_bound"] and (x["eta"] not in best or x["p_bound"] < best[x["eta"]]["p_bound"]):
            best[x["eta"]] = x
    if best:
        text += (
            " At small eta splitting with the sigma score does not reach the target, but its level bound does bound "
            "it: "
            + "; ".join(
                f"P(escape within {x['horizon']:,} steps) <= {x['p_bound']:.2g} at eta {eta} ({x['method']})"
                for eta, x in sorted(best.items(), reverse=True)
            )
            + " (95 %, (i))."
        )
    q = facts.get("q")
    if q is not None and len(q):
        q = q[np.isclose(q.ridge, 1e-3)]
        live, calm = q[q.p_10 > 0], q[q.p_10 == 0]
        said = [f"at eta {r.eta:g} such a step (> 10x) has chance {r.p_10:.2g} per step" for r in live.itertuples()]
        for r in calm.sort_values("eta", ascending=False).itertuples():
            said.append(f"at eta {r.eta:g} no basin state allows a one-step fall beyond {r.largest:.4f}x")
        text += " Why (q): escapes begin with one SGD step that collapses sigma_3; " + "; ".join(said) + "."
        split = facts.get("q_split")
        if split:
            text += f" {split}"
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
    sections = (
        section_a,
        section_b,
        section_c,
        section_d,
        section_e,
        section_f,
        section_g,
        section_h,
        section_i,
        section_j,
        section_k,
        section_m,
        section_n,
        section_o,
        section_p,
        section_q,
    )
    for section in sections:
        body += section(out, facts)
    doc = (
        section_header(out)
        + section_claims(facts)
        + section_findings(facts)
        + section_timings(timings)
        + body
        + section_configurations(out)
    )
    return "\n".join(doc).rstrip("\n") + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--only",
        nargs="*",
        choices=[n.split("_")[0] for n in EXPERIMENTS],
        help="run only these (a b c ...); the report uses every dataset present",
    )
    p.add_argument("--depth", type=int, default=3, help="with --make-start: the network's depth")
    p.add_argument("--make-rank2-start", action="store_true", help=f"rewrite {RANK2.name} (and check it), then stop")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--report-only", action="store_true", help="do not simulate; rebuild the report from the datasets")
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
        help=f"rewrite {START.name} (or the start file of another RIDGE) and check it, then stop",
    )
    args = p.parse_args(argv)
    global _QUICK
    _QUICK = args.quick
    if args.make_rank2_start:
        make_rank2_start()
        return 0
    if args.make_start is not None:
        make_start(start_path(args.make_start, args.depth), args.make_start, args.depth)
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
