#!/usr/bin/env bash
# The GPU part of the experiment suite (sections j, k and the B_2 counts of c), as ONE call on a
# lent H100/H200 (about 9 minutes; jax with CUDA and jumpsim's dependencies already there):
#   bash data/experiments/gpu_runs.sh OUT
# Jobs run in order of value, each under its own timeout (a killed run keeps its finished chunks);
# each dataset comes back packed by gpu_pack.py as OUT/NAME.tar (summary JSON + compact tables);
# unpack into data/results/ and run `python data/experiments/run.py --report-only`.
# Dry run on a CPU: SEEDS=64 STEPS=2000 bash data/experiments/gpu_runs.sh /tmp/dry
set -u
out=${1:?usage: gpu_runs.sh OUT}
mkdir -p "$out" "${RESULTS:-/tmp/jumpsim-gpu-results}"
export PYTHONPATH="$(pwd)" PYTHONUNBUFFERED=1
E=data/experiments R=${RESULTS:-/tmp/jumpsim-gpu-results} log="$out/log.txt"
small=()
[ -n "${SEEDS:-}" ] && small+=(--set "run.seeds=$SEEDS" --set "run.chunk=$SEEDS")
[ -n "${STEPS:-}" ] && small+=(--steps "$STEPS")
js() { local t=$1 name=$2; shift 2; echo "== $name $(date +%T)" | tee -a "$log"
  timeout "$t" python3 -m jumpsim.cli run "$@" --out "$R/$name" --quiet "${small[@]}" > "$R/$name.log" 2>&1
  local rc=$?; cat "$R/$name.log" >> "$log"; tail -8 "$R/$name.log"
  [ $rc -eq 124 ] && echo "== $name: cut by its timeout after ${t}s (finished chunks kept)" | tee -a "$log"
  python3 $E/gpu_pack.py "$R/$name" "$out/$name.tar" 2>&1 | tee -a "$log"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices())"; } 2>&1 | tee "$out/info.txt"
if [ -n "${LOW:-}" ]; then
  for lr in $LOW; do
    js 95 "j_low$lr" $E/j_curve.toml --set "train.lr=$lr" --set run.seeds=524288 --set run.chunk=65536 --set run.seed_offset=65536
  done
  exit 0
fi
js 190 j_curve $E/j_curve.toml
js 80 c_b2 $E/c_one_way.toml --set run.seeds=65536 --set run.chunk=32768 --set run.trace_seeds=0 --set detect.absorbing=true
for r in 0.002 0.0005; do
  js 75 "j_curve_ridge$r" $E/j_curve.toml --set run.seeds=32768 --set "train.ridge=$r" --set "model.init_file=rank3_start_ridge$r.npz"
done
js 60 k_recipe $E/k_recipe.toml
echo "== fused $(date +%T)" | tee -a "$log"
timeout 40 PYTHONPATH=.:benchmarks python3 -c "from fused_bench import bench; [bench(s, 100) for s in (65536, 262144)]" 2>&1 | tee "$out/fused.txt"
# whatever time is left (of ~530 s) goes to the low end of the curve: more seeds at eta = 0.12 (the
# report's j_low; j_low0.125 and j_low0.115 were a second call: `LOW="0.125 0.115" bash gpu_runs.sh OUT`
# runs only those, 524,288 seeds each, ~70 s each on an H200)
left=$(( 530 - SECONDS ))
[ "$left" -gt 40 ] && js $(( left - 15 )) j_low $E/j_curve.toml --set train.lr=0.12 --set run.seeds=1048576 --set run.chunk=65536 --set run.seed_offset=65536
echo "== done $(date +%T) after ${SECONDS}s" | tee -a "$log"
