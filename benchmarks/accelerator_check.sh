#!/usr/bin/env bash
# The accelerator check: one run on a bare GPU machine (about 8 minutes on one GPU) that
#   1. installs jaxzoo with the CUDA extra (and torch) in a fresh virtual environment,
#   2. prints the devices JAX sees,
#   3. checks logits parity on the GPU for three families (ResNet, GoogLeNet, MobileNet V3),
#   4. times jaxzoo beside torch (AMP, channels_last) for resnet50, resnet18 and
#      mobilenet_v3_large in bfloat16 at 224 px, train step and inference, in one process,
#   5. trains ResNet-34 briefly on the built-in shapes dataset with train.py (bf16),
# and writes everything under $OUT (default ./accelerator_check): devices.txt, parity.txt,
# bench.md, bench.csv, train.log, metrics.jsonl, summary.txt.
#
#   bash benchmarks/accelerator_check.sh                  # on the GPU machine
#   JAXZOO_EXTRA=none JAXZOO_CHECK_QUICK=1 bash benchmarks/accelerator_check.sh
#       # the CPU install and small sizes: what the tests run, so the script works the first
#       # time a GPU is at hand
#
# JAXZOO_EXTRA: the install extra (cuda12, tpu, or none for the CPU install); JAXZOO_VENV: the
# virtual environment to create (default .venv-accel) or, with JAXZOO_SKIP_INSTALL=1, to use as
# it is; JAXZOO_CHECK_MODELS: other models for the parity and bench steps.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-$PWD/accelerator_check}
EXTRA=${JAXZOO_EXTRA:-cuda12}
QUICK=${JAXZOO_CHECK_QUICK:-0}
VENV=${JAXZOO_VENV:-.venv-accel}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
summary() { echo "$*" | tee -a "$OUT/summary.txt"; }
: > "$OUT/summary.txt"
started=$SECONDS

if [ "${JAXZOO_SKIP_INSTALL:-0}" != 1 ]; then
  python3 -m venv "$VENV"
  extras=torch
  [ "$EXTRA" != none ] && extras="torch,$EXTRA"
  "$VENV/bin/python" -m pip install -q -e ".[$extras]"
fi
. "$VENV/bin/activate"
summary "install: done in $((SECONDS - started)) s (extra: $EXTRA)"

models=(${JAXZOO_CHECK_MODELS:-resnet50 googlenet mobilenet_v3_large})
bench_models=(${JAXZOO_CHECK_MODELS:-resnet50 resnet18 mobilenet_v3_large})
if [ "$QUICK" = 1 ]; then
  parity_size=32; bench_size=32; batch=4; steps=1; repeats=1; threads=2
  train_args=(--config=inception10:shapes --config.dataset=shapes/tiny --config.num_epochs=1
              --config.batch_size=16)
else
  parity_size=224; bench_size=224; batch=128; steps=5; repeats=3; threads=$(nproc)
  train_args=(--config=resnet34:shapes --config.num_epochs=1 --config.batch_size=256)
fi

python -c "import jax; print(jax.devices()); print(jax.devices()[0].device_kind)" \
  | tee "$OUT/devices.txt"
summary "devices: $(head -n 1 "$OUT/devices.txt")"

: > "$OUT/parity.txt"
for model in "${models[@]}"; do
  python -m jaxzoo check "$model" --size "$parity_size" --batch 4 2>&1 | tee -a "$OUT/parity.txt"
done
summary "parity: $(grep -c '^PASS' "$OUT/parity.txt") of ${#models[@]} PASS"

python -m jaxzoo bench --models "${bench_models[@]}" --mode both \
  --dtype bfloat16 --size "$bench_size" --batch "$batch" --steps "$steps" --repeats "$repeats" \
  --threads "$threads" --out "$OUT/bench.md" 2>&1 | tail -n 12
summary "bench: $OUT/bench.md"

rm -rf "$OUT/train_run"
python train.py "${train_args[@]}" --config.dtype=bfloat16 --workdir="$OUT/train_run" \
  --config.compilation_cache_dir=off 2>&1 | tr '\r' '\n' | grep -v '^epoch' | tee "$OUT/train.log"
cp "$OUT/train_run/metrics.jsonl" "$OUT/metrics.jsonl"
rm -rf "$OUT/train_run"
summary "train: $(grep -E '^\[epoch' "$OUT/train.log" | tail -n 1)"
summary "total: $((SECONDS - started)) s"
