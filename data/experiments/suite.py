"""The experiment suite: its registry, its files, and running it.

Every experiment TOML here says ``extends = "base.toml"``: base.toml holds the suite's problem, model and
detector, each file only its own differences. Datasets go to OUT/<experiment>/ (``RESULTS`` by default;
not committed: rerun to regenerate; finished chunks are reused). The GPU's packs (``gpu_runs.sh``, made by
``gpu_pack.py``) are unpacked under OUT/gpu/.

Every config the suite loads or derives passes through ``quick``: in quick mode (``set_quick``) the number
of seeds and the splitting estimates' sizes are capped, for a fast run of the whole pipeline (config_id
excludes [run] and [rare], so the ids stay those of the full suite).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

import jumpsim
from jumpsim import config as config_lib
from jumpsim import hazard, rare
from jumpsim import problem as problem_lib

import analysis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BASE = HERE / "base.toml"
START = HERE / "rank3_start.npz"
RANK2 = HERE / "rank2_start.npz"
RESULTS = ROOT / "data" / "results"
GPU = "gpu"  # the GPU's packs, unpacked under OUT/gpu/<pack>/

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
    "r_sampling",
    "s_batch2",
    "s_batch3",
    "s_batch4",
    "u_momentum",
    "u_adam",
    "u_up_momentum",
    "u_up_adam",
    "v_phase",
    "v_gd",
    "w_rank4_search",
    "x_rank_time",
]
# experiments that also run splitting estimates (jumpsim rare), by method
SPLITTING = {  # experiment -> splitting estimates run on each of its configs: method, or (method, rare overrides)
    "h_splitting": (
        "tams",
        "rate",
        ("tams", {"particles": 200, "replicas": 16}),
        # the first interface above the band sigma_3 fluctuates in: its crossings are collapses (o_escape_paths)
        ("rate", {"interface": 0.2, "flux_seeds": 4096}),
    ),
    # TAMS within 1e5 steps, the question at eta 0.05, and the rate form with a low first interface
    # (>= 10 replicas with crossings for an interval); every replica goes extinct: the level bound
    "i_small_eta": ("tams", ("rate", {"particles": 100, "flux_seeds": 512, "interface": "p90"})),
    "l_splitting_low": ("tams",),
    "l_splitting_layers": ("tams",),
    "n_one_way": ("tams",),
}
# the collapse-hazard experiments (each dataset's seeds are followed again): the base ridge first, then the others
HAZARD = [n for n in EXPERIMENTS if n.startswith("q_")]
# the GPU packs of each ridge's escape curve; seeds of packs with the same config_id are pooled
CURVE = {
    5e-4: ("j_curve_ridge0.0005",),
    1e-3: ("j_curve", "j_low", "j_low0.125", "j_low0.115"),
    2e-3: ("j_curve_ridge0.002",),
}


# ------------------------------------------------------------------------------------------
# configurations

_QUICK = False


def set_quick(on: bool) -> None:
    """Switch quick mode on or off for every later ``quick`` (the driver's --quick)."""
    global _QUICK
    _QUICK = bool(on)


def quick(cfg):
    """``cfg`` itself, or in quick mode with at most 32 seeds (chunk, traced seeds) and splitting estimates of at
    most 16 particles x 4 replicas and 64 flux seeds. The single point every config of the suite passes."""
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
    """The problem of ``cfg`` (default: the base's)."""
    return analysis.problem_of(cfg or base_config())


def splitting_configs(name: str, cfg) -> list:
    """The configs of the splitting estimates SPLITTING runs on ``cfg`` of experiment ``name``."""
    out = []
    for spec in SPLITTING.get(name, ()):
        method, extra = (spec, {}) if isinstance(spec, str) else spec
        out.append(quick(dataclasses.replace(cfg, rare=dataclasses.replace(cfg.rare, method=method, **extra))))
    return out


# ------------------------------------------------------------------------------------------
# the start files: gradient-descent minima


def start_path(ridge: float | None = None, depth: int = 3) -> Path:
    """The committed GD minimum for ``ridge`` and ``depth``: rank3_start.npz at the base's ridge (1e-3) and
    depth (3), else rank3_start_ridge{ridge}.npz / rank3_start_depth{depth}.npz (each curve starts from its
    own minimum)."""
    if depth != 3:
        return HERE / f"rank3_start_depth{depth}.npz"
    return START if ridge in (None, 1e-3) else HERE / f"rank3_start_ridge{ridge:g}.npz"


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
    ws = analysis.full_batch_gd(ws, prob, mc.gd_lr, ridge, mc.gd_steps, scale)
    np.savez(path, **{f"W{l + 1}": np.asarray(w, np.float64) for l, w in enumerate(ws)})
    facts = analysis.start_facts(path, base_config(), ridge)
    print(
        f"{path}: {mc.gd_steps:,} GD steps in {time.perf_counter() - t:.0f} s; rank {facts['rank']}, "
        f"residual gradient {facts['grad_norm']:.2e}, "
        f"singular values {np.round(facts['singular_values'][:4], 4).tolist()}"
    )
    _check_gd_start(cfg, facts)
    return facts


def _check_gd_start(cfg, facts: dict) -> None:
    """Compare a start file's ``facts`` with the start jumpsim's own init = "gd" makes for ``cfg``."""
    overrides = [
        'name="start-check"',
        'model.init="gd"',
        'train.batch="full"',
        f"train.steps={cfg.detect.every}",
        "run.seeds=1",
        "run.chunk=1",
        "run.trace_seeds=0",
        f"train.ridge={cfg.train.ridge.value_at(0)}",
        f"model.depth={cfg.model.depth}",
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


def make_rank2_start(path: Path = RANK2) -> dict:
    """Write the rank-2 minimum the one-way experiment (n_one_way) starts from: from rank3_start.npz, full-batch
    GD (lr = model.gd_lr) at ridge 5e-3 for 200k steps (the ridge removes the third singular value) and then at
    the base's ridge for 400k steps, in float64. Checks the result is a critical point of rank 2 (residual
    gradient < 1e-8)."""
    cfg = base_config()
    prob = suite_problem(cfg)
    with np.load(START) as z:
        ws0 = [np.asarray(z[f"W{l + 1}"], np.float64) for l in range(cfg.model.depth)]
    with jumpsim.dynamics.float64_scope():
        ws = tuple(jax.numpy.asarray(w) for w in ws0)
        ws = analysis.full_batch_gd(ws, prob, cfg.model.gd_lr, 5e-3, 200_000)
        ws = analysis.full_batch_gd(ws, prob, cfg.model.gd_lr, cfg.train.ridge.value_at(0), 400_000)
    np.savez(path, **{f"W{l + 1}": np.asarray(w, np.float64) for l, w in enumerate(ws)})
    facts = analysis.start_facts(path, cfg)
    print(
        f"{path}: rank {facts['rank']}, residual gradient {facts['grad_norm']:.2e}, "
        f"singular values {np.round(facts['singular_values'][:4], 4).tolist()}"
    )
    if facts["rank"] != 2 or facts["grad_norm"] > 1e-8:
        raise SystemExit("the rank-2 start is not a rank-2 critical point")
    return facts


RANK4 = HERE / "rank4_start.npz"
RANK4_RIDGE, RANK4_SEED = 5e-4, 5  # w_rank4_search: the first seed at this ridge (init scale 1) that held rank 4


def make_rank4_start(path: Path = RANK4) -> dict:
    """Write the rank-4 minimum the rank-against-time experiment (x_rank_time) starts from: seed RANK4_SEED's
    gaussian start of w_rank4_search at ridge RANK4_RIDGE (init scale 1), full-batch GD (lr = model.gd_lr) for
    400k steps in float32 as that run, then 3M more in float64 (sigma_4 converges slowly at this small ridge). Checks
    it is a critical point (residual gradient < 1e-8) of rank 4."""
    cfg = quick(
        jumpsim.load_config(HERE / "w_rank4_search.toml", [f"train.ridge={RANK4_RIDGE}", "model.init_scale=1.0"])
    )
    su = jumpsim.setup.setup(cfg)
    ws = jumpsim.setup.init_seed(RANK4_SEED, su).params
    prob = suite_problem(cfg)
    ws = analysis.full_batch_gd(ws, prob, cfg.model.gd_lr, RANK4_RIDGE, cfg.train.steps)
    with jumpsim.dynamics.float64_scope():
        ws = tuple(jax.numpy.asarray(w, jax.numpy.float64) for w in ws)
        ws = analysis.full_batch_gd(ws, prob, cfg.model.gd_lr, RANK4_RIDGE, 3_000_000)
    np.savez(path, **{f"W{l + 1}": np.asarray(w, np.float64) for l, w in enumerate(ws)})
    facts = analysis.start_facts(path, cfg, RANK4_RIDGE)
    print(
        f"{path}: rank {facts['rank']}, residual gradient {facts['grad_norm']:.2e}, "
        f"singular values {np.round(facts['singular_values'][:5], 4).tolist()}"
    )
    if facts["rank"] != 4 or facts["grad_norm"] > 1e-8:
        raise SystemExit("the rank-4 start is not a rank-4 critical point")
    return facts


# ------------------------------------------------------------------------------------------
# simulation


def run_all(names: list[str], out: Path, timings: dict) -> dict:
    """Simulate each experiment; an experiment whose chunks all existed keeps its timing. A TOML that gained configs
    adds them to its dataset (a config removed from it stays there: delete OUT/<experiment> to start over)."""
    for name in names:
        configs = load_experiment(HERE / f"{name}.toml")
        t = time.perf_counter()
        rep = jumpsim.run(configs, out / name, progress=True, append=True)
        done = []  # splitting estimates run now (False: its tables existed)
        for cfg in configs:
            for cfg_m in splitting_configs(name, cfg):
                done.append(not rare.run_rare(cfg_m, out / name, progress=True).skipped)
        if name == "o_escape_paths":
            replay_escape(out)
        if name in HAZARD:
            run_hazard(out / name, configs)
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


def replay_escape(out: Path) -> None:
    """The first escaping seed of o_escape_paths again, with a check (and a trace row) at every step up to its
    escape, into OUT/o_escape_replay: the collapse between two checks resolved step by step."""
    data = load(out, "o_escape_paths")
    hit = None if data is None else analysis.first_escape(data)
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


def run_hazard(d: Path, configs) -> None:
    """``jumpsim.hazard.collapse_hazard`` of a dataset's configs, written beside it to ``d``/hazard.parquet."""
    h = hazard.collapse_hazard(configs)
    d.mkdir(parents=True, exist_ok=True)
    h.to_parquet(d / "hazard.parquet")


# ------------------------------------------------------------------------------------------
# reading the results


def load(out: Path, name: str):
    """The dataset of experiment ``name`` under ``out`` (``jumpsim.read_dataset``), None if absent."""
    d = out / name
    return jumpsim.read_dataset(d) if (d / "experiments.parquet").exists() else None


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


def curve_rows(out: Path) -> pd.DataFrame:
    """One row per (ridge, eta) of the escape curve (``analysis.escape_rows`` of each ridge's GPU packs); where no
    pack is unpacked, the curve's summary a report wrote before (OUT/j_curve.parquet: the same rows), else empty."""
    rows = []
    for ridge, names in CURVE.items():
        data = load_pack(out, names)
        if data is not None:
            rows += analysis.escape_rows(data, ridge=ridge)
    if not rows and (out / "j_curve.parquet").exists():
        return pd.read_parquet(out / "j_curve.parquet")
    return pd.DataFrame(rows).sort_values(["ridge", "eta"]).reset_index(drop=True) if rows else pd.DataFrame()
