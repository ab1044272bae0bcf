#!/usr/bin/env bash
# The splitting engine on a lent H100/H200, as ONE call of ~6 minutes (no network; jax with CUDA and
# jumpsim's dependencies already there):   bash benchmarks/gpu_splitting.sh OUT
#   1. slot-table throughput against its size (benchmarks/splitting_slots.py, 384 to 65,536 slots)
#   2. the engine's tests on the GPU (exact answers; bit-for-bit replays, resume, batch layout, one compile)
#   3. the rate form at eta 0.12 with a GPU-sized flux phase (2.6e9 SGD steps), packed as OUT/rate012.tar
#      (the tables only: the engine state of a killed run is too large to come back)
# Each step under its own timeout. What the first run of it (2026-11-27, H200) taught, and why it is this
# shape: benchmarks/results/gpu-splitting-NVIDIA-H200-2026-11-27.md (TAMS at eta 0.05 is not here: with
# tens of replicas the table has a few hundred slots, latency bound at ~1.5e6 SGD steps/s, no faster than
# the 2-core CPU). Dry run on a CPU: SMALL=1 bash benchmarks/gpu_splitting.sh /tmp/x
set -u
out=${1:?usage: gpu_splitting.sh OUT}
mkdir -p "$out"
export PYTHONPATH="$(pwd)" PYTHONUNBUFFERED=1
E=data/experiments log="$out/log.txt" tmp=${TMPDIR:-/tmp}/jumpsim-gpu-splitting
rm -rf "$tmp" && mkdir -p "$tmp"
if [ -n "${SMALL:-}" ]; then REPS="4 16" B1="512 --baseline-steps 500" R4=4 F4=64 TESTS="level"; else
  REPS="32 256 2048 8192" B1=65536 R4=32 F4=131072 TESTS="walk or level or ar1 or birth or resume or combine or layout or replay or compiles"; fi
step() { echo "== $1 $(date +%T) (${SECONDS}s)" | tee -a "$log"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices())"; } 2>&1 | tee "$out/info.txt"
step slots
timeout 120 python3 benchmarks/splitting_slots.py $E/h_splitting.toml --set train.lr=0.14 --steps 1000 --replicas $REPS \
  --baseline-seeds $B1 --json "$out/splitting-slots.json" 2>&1 | grep -v Warning | tee -a "$log"
step tests
timeout 110 python3 -m pytest -q -p no:cacheprovider tests/test_splitting.py -k "$TESTS" 2>&1 | tail -15 | tee -a "$log"
step rate012
left=$(( 330 - SECONDS )); [ "$left" -lt 40 ] && left=40
timeout $left python3 -m jumpsim.cli rare $E/h_splitting.toml --method rate --set train.lr=0.12 --set rare.interface=0.2 \
  --set rare.flux_seeds=$F4 --set rare.max_steps=200000 --replicas $R4 --out "$tmp/rate012" 2>&1 | tee "$tmp/rate012.log" \
  | grep -v "iterations " | tail -20 | tee -a "$log"
grep "iterations " "$tmp/rate012.log" | tail -3 | tee -a "$log"
tar cf "$out/rate012.tar" -C "$tmp" --exclude rare_state rate012
step "done"
