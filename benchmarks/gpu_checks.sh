#!/usr/bin/env bash
# The GPU checks of the speed issue, as one short script for a lent GPU machine (the `device` tool):
# stage 1 on a 2048 px and a 10 000 px core (bf16 and fp32, seconds, peak RSS, FLOPs, the bare matmul
# rate of the same dtype and the ratio to it), then a small cohort trained (one detector epoch, the
# tumour classifier, one stage-2 epoch) and predicted, printing cores per minute. About 6-8 minutes
# on one H200; NOT RUN YET: no GPU was lent to the sessions that wrote it, so treat its first run as
# its test, and put the figures in docs/ with the GPU named (nvidia-smi's line below).
#
# The device machine has PyTorch, Lightning, typer, tifffile, scikit-image... but not shapely or
# imagecodecs, and it cannot download. Before the call, here:
#   pip download shapely imagecodecs --python-version 3.12 --only-binary=:all: -d .wheels
#   echo /.wheels/ >> .git/info/exclude
# then: run(command="bash benchmarks/gpu_checks.sh", carry=[".wheels"], timeout_s=540)
set -euo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
if [ -d .wheels ]; then python3 -m pip install -q --no-index --find-links .wheels shapely imagecodecs; fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
maskllp() { python3 -m maskllp "$@"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'bf16', torch.cuda.is_bf16_supported())"

for size in 2048 10000; do
  for precision in bf16 32; do
    python3 benchmarks/bench_stage1.py --size "$size" --device cuda --precision "$precision" --threads 8 \
      2>&1 | tee -a "$OUT/bench_stage1.txt"
  done
done

C="$OUT/gpu.toml"
cat > "$C" <<'EOF'
[trainer]
accelerator = "gpu"
devices = "1"
progress_bar = false
[detector]
max_epochs = 1
[proportion]
max_epochs = 1
EOF
t0=$(date +%s)
maskllp synth --n 64 --size 1024 --out "$OUT/cohort"
t1=$(date +%s)
maskllp train detector "$OUT/cohort/cohort.csv" --out "$OUT/detector" -c "$C"
maskllp train tumour-classifier "$OUT/cohort/cohort.csv" --detector "$OUT/detector" --out "$OUT/stage1" -c "$C"
t2=$(date +%s)
maskllp train proportion "$OUT/cohort/cohort.csv" --stage1 "$OUT/stage1" --method ours --out "$OUT/ours" -c "$C"
t3=$(date +%s)
maskllp predict "$OUT/ours" "$OUT/cohort/cohort.csv" --out "$OUT/pred" --device cuda --no-figures -c "$C"
t4=$(date +%s)
echo "synth $((t1 - t0)) s; stage 1 training (1 detector epoch + classifier) $((t2 - t1)) s;" \
     "one stage-2 epoch over 64 cores incl. the stage-1 masks $((t3 - t2)) s;" \
     "predict 64 cores of 1024 px: $((t4 - t3)) s = $(python3 -c "print(f'{64 * 60 / max($t4 - $t3, 1):.0f}')") cores/min" \
  | tee "$OUT/cohort_times.txt"
