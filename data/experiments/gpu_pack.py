"""Pack a dataset for the trip back from a GPU machine (at most 16 MiB a file there).

    python data/experiments/gpu_pack.py DATASET OUT.tar

Writes DATASET's `jumpsim summarize --json` (summary.json) and a compact copy: experiments.parquet,
the events and passages tables whole, and the runs table without its per-seed singular values, test
error, balancedness gap and norm (190 of ~200 bytes a row), zstd-compressed, into one tar. The report
reads such packs (`suite.load_pack`) where the whole dataset is not at hand.
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

LIMIT = 16 << 20  # bytes a file may have to come back from the lent GPU machine
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
            try:
                t = ds.dataset(src, format="parquet", partitioning="hive").to_table()
            except Exception as e:  # a chunk half-written when the job was killed: keep the rest
                print(f"{dataset.name}/{table}: not packed ({type(e).__name__}: {e})", file=sys.stderr)
                continue
            t = t.select([c for c in t.column_names if c not in DROP])
            pq.write_table(t, d / f"{table}.parquet", compression="zstd", compression_level=9)
        with tarfile.open(out, "w") as tar:
            for f in sorted(d.iterdir()):
                tar.add(f, arcname=f"{dataset.name}/{f.name}")
    size = out.stat().st_size
    print(f"{out}: {size / 1e6:.1f} MB ({jumpsim.__version__})")
    if size > LIMIT:
        print(f"{out}: larger than the {LIMIT >> 20} MiB a file that comes back may be: split the job", file=sys.stderr)


if __name__ == "__main__":
    pack(Path(sys.argv[1]), Path(sys.argv[2]))
