#!/usr/bin/env bash
# The whole GPU benchmark in a few minutes, without network access.
#   bash benchmarks/gpu.sh [OUTDIR]        (default benchmarks/results)
# Needs jax with CUDA plus jumpsim's pure-Python dependencies (optax, pandas, pyarrow, scipy,
# tqdm) importable; run from the repository root. Writes JSON + markdown named after the card.
set -euo pipefail
out=${1:-benchmarks/results}
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)" PYTHONUNBUFFERED=1
mkdir -p "$out"
python3 - <<'PY' | tee "$out/gpu-info.txt"
import jax, jaxlib
print("jax", jax.__version__, "jaxlib", jaxlib.__version__, "backend", jax.default_backend(), jax.devices())
PY
# 1. precision: float32 singular values on the GPU against float64 numpy (no TF32 in products)
python3 -m pytest -q -p no:cacheprovider tests/test_model.py -k "precision or structured" 2>&1 | tail -3 | tee -a "$out/gpu-info.txt"
# 2. throughput sweep (seeds up to 262k, batch, depth, size) and the rank-check share
timeout 420 python3 benchmarks/bench.py --sweep gpu --out "$out"
# 3. a million seeds streamed in chunks: host memory stays flat
timeout 240 python3 benchmarks/memory.py --seeds 1000000 --chunk 262144 --steps 1000 --out "$out"
