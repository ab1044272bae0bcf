"""Host memory of a long `jumpsim run`: a million seeds streamed in chunks stay flat.

    python benchmarks/memory.py                      # 10^6 seeds x 100 steps, chunks of 65536
    python benchmarks/memory.py --seeds 200000 --chunk 16384

Runs `jumpsim run` in a child process and samples its resident set size (VmRSS) every 0.2 s,
then reports the peak RSS while each chunk was simulated and written. Flat means the peak
during the last chunks equals the peak during the first ones, whatever the number of chunks. Writes
JSON beside the other results.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=1_000_000)
    p.add_argument("--chunk", type=int, default=65536)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ds = Path(tmp) / "ds"
        cmd = [
            sys.executable,
            "-m",
            "jumpsim.cli",
            "run",
            "--quiet",
            "--out",
            str(ds),
            "--seeds",
            str(args.seeds),
            "--steps",
            str(args.steps),
            "--set",
            f"run.chunk={args.chunk}",
            "--set",
            "detect.every=100",
            "--set",
            "run.trace_seeds=0",
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=HERE.parent, stdout=subprocess.PIPE, text=True)
        samples = []  # (seconds, chunks written, rss MiB)
        while proc.poll() is None:
            r = rss_mib(proc.pid)
            runs = ds / "runs"
            done = sum(1 for _ in runs.rglob("part-*.parquet")) if runs.exists() else 0
            if r is not None:
                samples.append((time.perf_counter() - t0, done, r))
            time.sleep(0.2)
        out = proc.stdout.read()
        wall = time.perf_counter() - t0
        disk = sum(f.stat().st_size for f in ds.rglob("*.parquet")) / 2**20
    if proc.returncode != 0:
        print(out)
        return proc.returncode
    n_chunks = -(-args.seeds // args.chunk)
    peaks = {}  # peak RSS while chunk d+1 was being simulated and written
    for _, d, r in samples:
        peaks[d] = max(peaks.get(d, 0.0), r)
    first = [peaks[d] for d in sorted(peaks) if 0 < d <= 2]
    last = [peaks[d] for d in sorted(peaks) if n_chunks - 3 <= d < n_chunks]
    res = {
        "seeds": args.seeds,
        "chunk": args.chunk,
        "chunks": n_chunks,
        "steps": args.steps,
        "wall_s": wall,
        "rss_peak_chunks_2_3_mib": max(first) if first else None,
        "rss_peak_last_chunks_mib": max(last) if last else None,
        "rss_peak_per_chunk_mib": {int(k): v for k, v in sorted(peaks.items())},
        "rss_peak_mib": max(r for _, _, r in samples),
        "rss_last_mib": samples[-1][2],
        "dataset_mib": disk,
        "samples": samples[:: max(1, len(samples) // 200)],
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "summary": out.strip().splitlines()[0] if out.strip() else "",
    }
    print(
        f"{args.seeds:,} seeds in {n_chunks} chunks of {args.chunk:,}, {args.steps} steps: {wall:.0f} s; "
        f"peak RSS during chunks 2-3 {res['rss_peak_chunks_2_3_mib']:.0f} MiB, during the last chunks "
        f"{res['rss_peak_last_chunks_mib']:.0f} MiB, "
        f"overall {res['rss_peak_mib']:.0f} MiB; dataset {disk:.0f} MiB"
    )
    print(res["summary"])
    args.out.mkdir(parents=True, exist_ok=True)
    import jax

    dev = jax.devices()[0].device_kind.replace(" ", "_").lower()
    path = args.out / f"memory-{dev}-{args.seeds}-{res['date'][:10]}.json"
    path.write_text(json.dumps(res, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
