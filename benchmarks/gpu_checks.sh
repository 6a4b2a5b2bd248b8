#!/usr/bin/env bash
# The GPU checks of the speed issue, as one short script for a lent GPU machine (the `device` tool):
# stage 1 on a 2048 px and a 10 000 px core (bf16 and fp32: seconds, peak RSS and GPU memory, FLOPs,
# the bare matmul rate of the same dtype and the ratio to it), then a small synthetic cohort trained
# (one detector epoch, the tumour classifier, one stage-2 epoch of Ours) and predicted under bf16 and
# fp32, printing cores per minute and how far the two precisions' TPS differ.
#
# The device machine has PyTorch, Lightning, typer, tifffile, scikit-image... but not shapely or
# imagecodecs, and it cannot download. Before the call, here:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl shapely imagecodecs
# then: run(command="bash benchmarks/gpu_checks.sh", carry=[".whl"], timeout_s=540)
#
# Each step has its own time limit and a failed step does not stop the others; the logs come back
# as $OUT/gpu_logs.tar.gz. Dry run on a CPU (small, to test the script itself):
#   DEVICE=cpu SIZES=512 N_CORES=6 CORE_PX=256 THREADS=2 T1_CORES=16 LONG_EPOCHS=2 \
#   T1_EXTRA='[detector]\nmax_epochs = 1\n[proportion]\nmax_epochs = 1' OUT=/tmp/gpu-dry bash benchmarks/gpu_checks.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-runs/gpu}
DEVICE=${DEVICE:-cuda}
SIZES=${SIZES:-2048 10000}
N_CORES=${N_CORES:-64}
CORE_PX=${CORE_PX:-1024}
THREADS=${THREADS:-8}
BUDGET_S=${BUDGET_S:-540}  # every step is cut to end by then, so the logs are packed before the call's limit
TABLE1=${TABLE1:-1}        # then the Table 1 cohort on the GPU: Ours at the benchmark's budget and a longer one
DEADLINE=$(( $(date +%s) + BUDGET_S ))
R=/tmp/gpu-run; L="$R/logs"; rm -rf "$R"; mkdir -p "$OUT" "$L"  # $OUT takes 8 files: logs go in one tarball
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
M="python3 -m maskllp"  # not a function: `timeout` runs programs only
step() {  # step NAME SECONDS CMD...: run with a limit, log to $L/NAME.log, say how it ended
  local name=$1 limit=$2; shift 2
  local t0; t0=$(date +%s)
  local left=$(( DEADLINE - t0 - 10 ))
  if [ "$left" -lt 20 ]; then echo "== $name: skipped, no time left"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  timeout "$limit" "$@" > "$L/$name.log" 2>&1
  local rc=$?
  echo "== $name: rc $rc, $(( $(date +%s) - t0 )) s"; tail -n 12 "$L/$name.log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch; c = torch.cuda.is_available(); print('torch', torch.__version__, 'cuda', c,
    'bf16', c and torch.cuda.is_bf16_supported(), 'cpu threads', torch.get_num_threads())"; } | tee "$L/gpu.txt"

for size in $SIZES; do
  for precision in bf16 32; do
    step "stage1_${size}_${precision}" 150 python3 benchmarks/bench_stage1.py --size "$size" \
      --device "$DEVICE" --precision "$precision" --threads "$THREADS"
  done
done

C="$L/run.toml"
accelerator=gpu; [ "$DEVICE" = cpu ] && accelerator=cpu
cat > "$C" <<EOF
[trainer]
accelerator = "$accelerator"
devices = "1"
progress_bar = false
[detector]
max_epochs = 1
[proportion]
max_epochs = 1
EOF
printf '[inference]\nprecision = "32"\n' > "$L/fp32.toml"
printf '[inference]\nprecision = "bf16"\n' > "$L/bf16.toml"
t0=$(date +%s); step synth 120 $M synth --n "$N_CORES" --size "$CORE_PX" --out "$R/cohort"
t1=$(date +%s); step detector 180 $M train detector "$R/cohort/cohort.csv" --out "$R/detector" -c "$C"
step classifier 120 $M train tumour-classifier "$R/cohort/cohort.csv" --detector "$R/detector" \
  --out "$R/stage1" -c "$C"
t2=$(date +%s); step ours 180 $M train proportion "$R/cohort/cohort.csv" --stage1 "$R/stage1" \
  --method ours --out "$R/ours" -c "$C"
t3=$(date +%s); step predict_bf16 150 $M predict "$R/ours" "$R/cohort/cohort.csv" --out "$R/pred_bf16" \
  --device "$DEVICE" --no-figures -c "$C" -c "$L/bf16.toml"
t4=$(date +%s); step predict_fp32 150 $M predict "$R/ours" "$R/cohort/cohort.csv" --out "$R/pred_fp32" \
  --device "$DEVICE" --no-figures -c "$C" -c "$L/fp32.toml"
t5=$(date +%s)
cp "$R/pred_bf16/predictions.csv" "$L/predictions_bf16.csv" 2>/dev/null
cp "$R/pred_fp32/predictions.csv" "$L/predictions_fp32.csv" 2>/dev/null
if [ -f "$R/pred_fp32/predictions.csv" ] && [ -f "$R/pred_bf16/predictions.csv" ]; then
  python3 benchmarks/compare_predictions.py "$R/pred_fp32" "$R/pred_bf16" 2>&1 | tee "$L/bf16_vs_fp32.txt"
fi
echo "synth $((t1 - t0)) s; stage 1 training (1 detector epoch + classifier) $((t2 - t1)) s;" \
     "one epoch of Ours over $N_CORES cores incl. their stage-1 masks $((t3 - t2)) s;" \
     "predict $N_CORES cores of $CORE_PX px: bf16 $((t4 - t3)) s =" \
     "$(python3 -c "print(f'{$N_CORES * 60 / max($t4 - $t3, 1):.0f}')") cores/min, fp32 $((t5 - t4)) s" \
     "(each including start-up and loading)" | tee "$L/cohort_times.txt"

if [ "$TABLE1" = 1 ]; then
  # The Table 1 cohort (benchmarks/table1.toml: 200 cores of 384 px, seed 2026), stage 1 and Ours
  # trained on the GPU; then Ours again at about the paper's epoch budget (100, patience 30).
  printf '[trainer]\naccelerator = "%s"\ndevices = "1"\nprogress_bar = false\n%b\n' "$accelerator" \
    "${T1_EXTRA:-}" > "$L/t1.toml"
  printf '[proportion]\nmax_epochs = %s\npatience = 30\n' "${LONG_EPOCHS:-100}" > "$L/long.toml"
  T=$R/t1
  step table1_ours 300 python3 benchmarks/table1_synthetic.py --out "$T" --cores "${T1_CORES:-200}" --methods ours \
    --skip ablations,oracle --config "$L/t1.toml" --threads "$THREADS" --device "$DEVICE"
  cp "$T/benchmark.md" "$L/table1_benchmark.md" 2>/dev/null
  step table1_ours_100_epochs 400 $M cv "$T/cohort/cohort.csv" --methods ours --folds 4 \
    --stage1 "$T/models/stage1" --truth "$T/cohort/truth.csv" --out "$T/cv-long" -c "$T/config.yaml" \
    -c "$L/long.toml"
fi
tar czf "$OUT/gpu_logs.tar.gz" -C "$R" logs
