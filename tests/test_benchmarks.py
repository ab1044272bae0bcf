"""The benchmark runs at a tiny size and writes valid JSON (no timing assertions)."""

import json
import sys
from pathlib import Path

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
