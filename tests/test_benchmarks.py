"""The benchmark runs at a tiny size and writes valid JSON (no timing assertions)."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_quick_benchmark_writes_json(tmp_path):
    import bench

    assert bench.main(["--quick", "--out", str(tmp_path), "--baseline-seeds", "1"]) == 0
    (js,) = tmp_path.glob("*.json")
    res = json.loads(js.read_text())
    assert res["info"]["backend"] == "cpu" and res["info"]["jax"]
    row = res["jumpsim"][0]
    assert row["seed_steps_per_s"] > 0 and row["compile_s"] >= 0 and row["bytes_per_seed"] > 1000
    assert res["numpy_loop"]["seed_steps_per_s"] > 0
    assert res["speedups"]["vs_numpy"] > 0
    assert (tmp_path / js.name.replace(".json", ".md")).read_text().startswith("# ")


def test_splitting_speed_benchmark_writes_json(tmp_path):
    """The splitting engine's speed benchmark runs a tiny TAMS estimate and `jumpsim run` in one process."""
    import splitting_speed

    cfg = Path(__file__).resolve().parents[1] / "data" / "experiments" / "h_splitting.toml"
    out = tmp_path / "s.json"
    sets = ["train.lr=0.14", "train.steps=1000", "rare.particles=8", "rare.replicas=2"]
    splitting_speed.main(
        [str(cfg), *sum((["--set", x] for x in sets), []), "--rounds", "--baseline-seeds", "32", "--json", str(out)]
    )
    res = json.loads(out.read_text())
    assert res["splitting_steps_per_s"] > 0 and res["run_steps_per_s"] > 0 and res["ratio"] > 0
    assert res["slot_table"]["rounds"] > 0 and res["backend"] == "cpu" and res["jax_version"]


def test_splitting_slots_benchmark_writes_json(tmp_path):
    """The slot-table sweep runs tiny initial populations at two table sizes and a short `jumpsim run`."""
    import splitting_slots

    cfg = Path(__file__).resolve().parents[1] / "data" / "experiments" / "h_splitting.toml"
    out = tmp_path / "s.json"
    args = ["--set", "train.lr=0.14", "--steps", "200", "--replicas", "1", "4", "--particles", "8"]
    splitting_slots.main([str(cfg), *args, "--baseline-seeds", "32", "--baseline-steps", "200", "--json", str(out)])
    res = json.loads(out.read_text())
    assert [t["replicas"] for t in res["tables"]] == [1, 4]
    assert all(t["sgd_steps"] > 0 and t["steps_per_s"] > 0 and t["slots"] >= 16 for t in res["tables"])
    assert res["run_after_compile"] > 0 and res["run_steps"] == 200 and res["backend"] == "cpu"


def test_fused_bench_runs():
    """Smoke test of the fused kernel's micro-benchmark only (interpret mode is not timed meaningfully)."""
    import fused_bench
    from test_fused import RTOL

    r = fused_bench.bench(S=3, K=2, n=4, m=3, width=4, depth=2, reps=1, interpret=True)
    assert r["pallas"] > 0 and r["xla"] > 0 and r["max_rel_diff"] < RTOL


def test_collapse_anatomy_runs_small(tmp_path):
    """The escape-anatomy measurement (windows of a collapse, carry-through from crossings) at a tiny size."""
    import collapse_anatomy

    out = tmp_path / "a.json"
    assert collapse_anatomy.main(["--quick", "--lr", "0.14", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [w["fall"] for w in res["windows"]] == [2.0, 4.0, 10.0]
    assert all(w["states"] > 0 and 0 <= w["p_draw"] <= 1 for w in res["windows"])
    c = res["carry"]
    assert c["crossings"] == len(res["crossings"]) and c["crossings"] > 0
    assert all(r["hits"] + r["back"] + r["open"] == 4 for r in res["crossings"])
    f = res["forced"]
    assert f["paths"] == 4 and f["tilted_steps_mean"] > 0 and f["hits"] <= 4 and f["p"] >= 0


def test_small_eta_brackets_runs_small(tmp_path):
    """The bracket at a small learning rate (quick: one rate, T = 2e4, 16 trajectories per probe): a finite lower
    bound below the upper one, its width and prefix recorded."""
    import small_eta_brackets

    out = tmp_path / "b.json"
    assert small_eta_brackets.main(["--quick", "--lrs", "0.11", "--json", str(out)]) == 0
    (r,) = json.loads(out.read_text())["rows"]
    assert r["lr"] == 0.11 and r["horizon"] == 20_000 and r["prefix_steps"] > 0
    assert -1e4 < r["log10_lower"] < math.log10(r["upper"]) <= 0 and r["width_decades"] > 0


def test_importance_dln_runs_small_and_reads_brute_force(tmp_path):
    """The DLN benchmark of importance sampling (quick: one rate, T = 2e3, 8 particles x 2 replicas): a row with an
    estimate and its cost; no brute force at that horizon, so nothing compared. At T = 2e4 it finds REPORT (j)'s
    brute force (65 of 65,536 seeds at eta 0.13)."""
    import importance_dln

    out = tmp_path / "i.json"
    assert importance_dln.main(["--quick", "--lrs", "0.14", "--methods", "tams:static", "--json", str(out)]) == 0
    (r,) = json.loads(out.read_text())["rows"]
    assert r["lr"] == 0.14 and r["horizon"] == 2_000 and r["proposal"] == "static" and r["brute_force"] is None
    assert 0 <= r["p"] <= 1 and r["seed_steps"] > 0 and r["agrees"] is None and r["efficiency"] is None
    bf = importance_dln.brute_force(0.13, 20_000)
    assert bf is not None and bf["reached"] == 65 and bf["seeds"] == 65_536
    assert importance_dln.brute_force(0.13, 12_345) is None


def test_importance_dln_compares_only_two_sided_intervals():
    """``compare``: agreement and efficiency from a two-sided interval only (not where the weights left it out, an
    end is missing, it reaches 1 or the estimate is 0); brute force's steps for 20 % wherever brute force saw any."""
    from importance_dln import brute_steps, compare

    bf = {"p": 1e-3, "p_low": 8e-4, "p_high": 1.2e-3}
    row = {"p": 1e-3, "p_low": 1e-3 / math.e, "p_high": 1e-3 * math.e, "resolved": True, "seed_steps": 1e6}
    row["horizon"] = 20_000
    c = compare(row, bf)
    assert c["rel_error"] == pytest.approx(1 / 1.96) and c["agrees"] is True
    assert c["efficiency"] == pytest.approx((1 - 1e-3) / (1e-3 / 1.96**2) * 20_000 / 1e6)
    assert c["brute_steps_20pct"] == pytest.approx(brute_steps(1e-3, 0.2, 20_000))
    assert brute_steps(1e-3, 0.2, 20_000) == pytest.approx(0.999e3 / 0.04 * 2e4)
    assert compare(row | {"p": 1e-2, "p_low": 5e-3, "p_high": 2e-2}, bf)["agrees"] is False
    for other in ({"resolved": False}, {"p_low": None}, {"p_high": 1.0}, {"p": 0.0, "p_low": 0.0}, {"p_low": row["p"]}):
        c = compare(row | other, bf)
        assert c["rel_error"] is None and c["agrees"] is None and c["efficiency"] is None, other
        assert c["brute_steps_20pct"] > 0
    assert compare(row, None)["brute_steps_20pct"] is None and compare(row, None)["agrees"] is None
    assert compare(row, bf | {"p": 0.0})["efficiency"] is None  # brute force saw nothing: no comparison, no crash
