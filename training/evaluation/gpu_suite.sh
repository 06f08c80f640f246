#!/usr/bin/env bash
# The evaluations that need a GPU, at their full settings, and the CUDA checks, on one CUDA machine:
#   - PGD-EOT 200 steps x EOT 20 on CIFAR-10 (docs/RESULTS.md, "CIFAR-10: on a GPU"),
#   - APGD-EOT 100 steps x EOT 20 on CIFAR-10 and MNIST (the "on a GPU" sections of both),
#   - counter-attacks A/B and BPDA+EOT 200 x 20 on CIFAR-10, so that its worst case per image can be
#     taken over the full-setting attacks,
#   - the detector-aware attacks (pgd-eot-detector, bpda-eot-detector, counter-b-detector) 200 x 20, with
#     rejection and 10 resubmissions, on CIFAR-10 at 8/255 and MNIST at eps = 0.3 (docs/DETECTION.md),
#   - the CUDA tests (tests/models/test_cuda.py) and `apudae bench --device cuda` (docs/PERFORMANCE.md).
#
# Usage:  APUDAE_DATA_DIR=/path/to/data bash training/evaluation/gpu_suite.sh [OUT_DIR]
# OUT_DIR (default results/gpu-suite) gets one folder per evaluation. The evaluations run side by side
# on the one GPU and save a checkpoint after every batch; running the script again continues the
# unfinished ones (`apudae evaluate --resume`) and skips the finished ones, so a host that limits each
# call's time (set LIMIT_S below that limit) finishes the suite over several calls, as long as OUT_DIR
# is kept between them. Each evaluation's log ($OUT_DIR/NAME.log) gathers every call's output.
#
# Environment: PARTS (default "tests evaluations bench") the parts to run, in that order; the bench runs
# only once every evaluation has finished. LIMIT_S (default 3000) stops every evaluation after that many
# seconds, leaving its checkpoint. THREADS (default 2) CPU threads per evaluation. DEVICE (default cuda).
# EXTRA: arguments appended to every `apudae evaluate` (a smoke run on a CPU: DEVICE=cpu EXTRA="--samples
# 2 --adaptive-steps 1 --adaptive-eot 1 --reduced-reason smoke" PARTS=evaluations).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-results/gpu-suite}"
LIMIT_S="${LIMIT_S:-3000}"
THREADS="${THREADS:-2}"
PARTS="${PARTS:-tests evaluations bench}"
read -r -a EXTRA <<< "${EXTRA:-}"
DEVICE="${DEVICE:-cuda}"
: "${APUDAE_DATA_DIR:?set APUDAE_DATA_DIR to the folder holding MNIST/raw and cifar10-jpeg.tar.gz}"
export APUDAE_DATA_DIR
mkdir -p "$OUT"
CIFAR10=(--bundle models/cifar10 --epsilon 0.0313725)
MNIST=(--bundle models/mnist --epsilon 0.1 --gamma 0.15)
MNIST_03=(--bundle models/mnist --epsilon 0.3 --gamma 0.15)
DETECTOR_AWARE=pgd-eot-detector,bpda-eot-detector,counter-b-detector

# evaluate NAME BATCH ARGS...: one evaluation of the 100 test images of the adaptive tables, seed 0
evaluate() {
  local name=$1 batch=$2
  shift 2
  if [[ -f "$OUT/$name/results.json" ]]; then
    echo "$name: finished before, skipped"
    return 0
  fi
  local resume=()
  [[ -f "$OUT/$name/checkpoint.safetensors" ]] && resume=(--resume)
  timeout --signal=TERM "$LIMIT_S" apudae evaluate "$@" --variant F --samples 100 --seed 0 \
    --batch-size "$batch" --device "$DEVICE" --threads "$THREADS" --out "$OUT/$name" "${resume[@]}" "${EXTRA[@]}" \
    >> "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc$([[ -f "$OUT/$name/results.json" ]] && echo ', finished')"
}

EVALUATIONS=(cifar10-pgd-eot-200x20 cifar10-apgd-eot-100x20 mnist-apgd-eot-100x20 cifar10-counter-bpda-200x20
             cifar10-detector-aware-200x20 mnist-eps0.3-detector-aware-200x20)

if [[ " $PARTS " == *" tests "* && ! -f "$OUT/cuda-tests.log" ]]; then
  python3 -m pytest -q -rs tests/models/test_cuda.py > "$OUT/cuda-tests.log" 2>&1
  echo "CUDA tests: exit $? ($(tail -1 "$OUT/cuda-tests.log"))"
fi

if [[ " $PARTS " == *" evaluations "* ]]; then
  evaluate "${EVALUATIONS[0]}" 25 "${CIFAR10[@]}" --attacks pgd-eot &
  evaluate "${EVALUATIONS[1]}" 25 "${CIFAR10[@]}" --attacks apgd-eot &
  evaluate "${EVALUATIONS[2]}" 100 "${MNIST[@]}" --attacks apgd-eot &
  evaluate "${EVALUATIONS[3]}" 25 "${CIFAR10[@]}" --attacks counter-a,counter-b,bpda-eot &
  evaluate "${EVALUATIONS[4]}" 25 "${CIFAR10[@]}" --attacks "$DETECTOR_AWARE" &
  evaluate "${EVALUATIONS[5]}" 100 "${MNIST_03[@]}" --attacks "fgsm,bim,$DETECTOR_AWARE" &
  wait
fi

unfinished=()
for name in "${EVALUATIONS[@]}"; do
  [[ -f "$OUT/$name/results.json" ]] || unfinished+=("$name")
done
if (( ${#unfinished[@]} )); then
  echo "unfinished: ${unfinished[*]} (run the script again with the same OUT_DIR; their logs are in $OUT)"
  exit 3
fi

if [[ " $PARTS " == *" bench "* && ! -f "$OUT/bench.json" ]]; then
  apudae bench --device "$DEVICE" --json "$OUT/bench.json" --markdown "$OUT/bench.md" > "$OUT/bench.log" 2>&1
  echo "bench: exit $?"
fi
