"""Pack a dataset for the trip back from a GPU machine (at most 16 MiB a file there).

    python data/experiments/gpu_pack.py DATASET OUT.tar

Writes DATASET's `jumpsim summarize --json` (summary.json) and a compact copy: experiments.parquet,
the events and passages tables whole, and the runs table without its per-seed singular values, test
error, balancedness gap and norm (190 of ~200 bytes a row), zstd-compressed, into one tar. run.py
reads such packs (`load_pack`) where the whole dataset is not at hand.
"""

import json
import sys
import tarfile
import tempfile
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq

import jumpsim
from jumpsim import summary

DROP = ("final_singular_values", "final_test_error", "final_balance_gap", "final_param_norm2")


def pack(dataset: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        try:
            summ = summary.summarize_json(dataset)
        except Exception as e:  # a run killed before its first chunk: pack what there is
            summ = {"error": f"{type(e).__name__}: {e}"}
        (d / "summary.json").write_text(json.dumps(summ, default=str))
        for table in ("experiments", "runs", "events", "passages"):
            src = dataset / (table + ".parquet" if table == "experiments" else table)
            if not src.exists():
                continue
            t = ds.dataset(src, format="parquet", partitioning="hive").to_table()
            t = t.select([c for c in t.column_names if c not in DROP])
            pq.write_table(t, d / f"{table}.parquet", compression="zstd", compression_level=9)
        with tarfile.open(out, "w") as tar:
            for f in sorted(d.iterdir()):
                tar.add(f, arcname=f"{dataset.name}/{f.name}")
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB ({jumpsim.__version__})")


if __name__ == "__main__":
    pack(Path(sys.argv[1]), Path(sys.argv[2]))
