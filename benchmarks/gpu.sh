#!/usr/bin/env bash
# The whole GPU benchmark in a few minutes, without network access.
#   bash benchmarks/gpu.sh [OUTDIR]        (default benchmarks/results)
# Needs jax with CUDA plus jumpsim's pure-Python dependencies (optax, pandas, pyarrow, scipy,
# tqdm) importable (the lent H100/H200 image has them all, with jax 0.11); run from the
# repository root. Writes JSON + markdown named after the card.
# A dry run on a CPU: JUMPSIM_BENCH_SWEEP=quick JUMPSIM_MEMORY_ARGS="--seeds 4000 --chunk 1000" bash benchmarks/gpu.sh /tmp/x
# JUMPSIM_TORCH_ARGS passes options to the batched PyTorch step, e.g. "--torch-seeds 65536 --torch-unroll 100".
set -euo pipefail
out=${1:-benchmarks/results}
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)" PYTHONUNBUFFERED=1
mkdir -p "$out"
python3 - <<'PY' | tee "$out/gpu-info.txt"
import jax, jaxlib
print("jax", jax.__version__, "jaxlib", jaxlib.__version__, "backend", jax.default_backend(), jax.devices())
PY
# 1. precision: float32 singular values on the GPU against float64 numpy (no TF32 in products)
python3 -m pytest -q -p no:cacheprovider tests/test_spectrum.py tests/test_model.py -k "float32_vs_numpy or numerical_rank or structured or analytic" 2>&1 | tail -3 | tee -a "$out/gpu-info.txt"
# 2. throughput sweep (seeds up to 262k, batch, depth, size) and the rank-check share
timeout 420 python3 benchmarks/bench.py --sweep "${JUMPSIM_BENCH_SWEEP:-gpu}" --no-batched --out "$out"
# 2b. jumpsim (65,536 seeds) in turns with batched PyTorch on CUDA, eager and torch.compile
#     (reduce-overhead: CUDA graphs), 65,536 and 262,144 seeds; needs torch with CUDA (skipped
#     with a note otherwise); a failure here does not stop the rest
timeout 300 python3 benchmarks/bench.py --sweep "${JUMPSIM_BENCH_SWEEP:-gpu}" --only-batched ${JUMPSIM_TORCH_ARGS:-} --out "$out" \
  || echo "batched PyTorch baselines failed or timed out (exit $?)" | tee -a "$out/gpu-info.txt"
# 3. a million seeds streamed in chunks: host memory stays flat
timeout 240 python3 benchmarks/memory.py ${JUMPSIM_MEMORY_ARGS:---seeds 1000000 --chunk 262144 --steps 1000} --out "$out"
