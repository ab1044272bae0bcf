#!/usr/bin/env bash
# The splitting engine on a lent H100/H200, as ONE call of ~7 minutes (no network; jax with CUDA and
# jumpsim's dependencies already there):   bash benchmarks/gpu_splitting.sh OUT
#   1. engine speed on the DLN (TAMS, eta 0.14, 512 replicas x 50) against `jumpsim run` in the same process
#   2. the small-eta case: TAMS at eta 0.05 from the rank-3 minimum within 1e5 steps, with the
#      level-curve bound (packed as OUT/tams005.tar)
#   3. the engine's tests on the GPU (exact answers; bit-for-bit replays, resume and batch layout)
#   4. the rate form at eta 0.12 with a GPU-sized flux phase (packed as OUT/rate012.tar)
# Each step under its own timeout. Dry run on a CPU: SMALL=1 bash benchmarks/gpu_splitting.sh /tmp/x
set -u
out=${1:?usage: gpu_splitting.sh OUT}
mkdir -p "$out"
export PYTHONPATH="$(pwd)" PYTHONUNBUFFERED=1
E=data/experiments log="$out/log.txt" tmp=${TMPDIR:-/tmp}/jumpsim-gpu-splitting
rm -rf "$tmp" && mkdir -p "$tmp"
if [ -n "${SMALL:-}" ]; then R1=8 B1=256 R2=4 T2=2000 R4=4 F4=64 TESTS="level"; else
  R1=512 B1=65536 R2=32 T2=100000 R4=32 F4=131072 TESTS="walk or level or ar1 or birth or resume or combine or layout or replay or compiles"; fi
step() { echo "== $1 $(date +%T) (${SECONDS}s)" | tee -a "$log"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices())"; } 2>&1 | tee "$out/info.txt"
step speed
timeout 110 python3 benchmarks/splitting_speed.py $E/h_splitting.toml --set train.lr=0.14 --set rare.replicas=$R1 \
  --rounds --baseline-seeds $B1 --json "$out/splitting-speed.json" 2>&1 | tail -25 | tee -a "$log"
step tams005
timeout 150 python3 -m jumpsim.cli rare $E/b_escape.toml --set train.lr=0.05 --steps $T2 --replicas $R2 --particles 50 \
  --out "$tmp/tams005" 2>&1 | tail -14 | tee -a "$log"
tar cf "$out/tams005.tar" -C "$tmp" tams005
step tests
timeout 110 python3 -m pytest -q -p no:cacheprovider tests/test_splitting.py -k "$TESTS" 2>&1 | tail -15 | tee -a "$log"
step rate012
left=$(( 500 - SECONDS )); [ "$left" -lt 40 ] && left=40
timeout $left python3 -m jumpsim.cli rare $E/h_splitting.toml --method rate --set train.lr=0.12 --set rare.interface=0.2 \
  --set rare.flux_seeds=$F4 --set rare.max_steps=200000 --replicas $R4 --out "$tmp/rate012" 2>&1 | tail -14 | tee -a "$log"
tar cf "$out/rate012.tar" -C "$tmp" rate012
step "done"
