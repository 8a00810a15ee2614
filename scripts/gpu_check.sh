#!/usr/bin/env bash
# One call on a GPU machine: the CUDA tests, then the headline GPU numbers, every result under OUTDIR.
#   bash scripts/gpu_check.sh OUTDIR                        # on a CUDA machine (under 8 minutes on one H200)
#   bash scripts/gpu_check.sh OUTDIR --device cpu --tiny    # the same steps on a tiny config (CI checks this)
# The data: MINIFREEZE_DATA_DIR, else .gpu_data/ (make it with `python scripts/gpu_data.py .gpu_data` and
# carry that folder). Nothing is installed: the project runs from this working tree through PYTHONPATH.
# Each part runs even when an earlier one failed; the last lines list every part's exit status.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash scripts/gpu_check.sh OUTDIR [--device cpu --tiny]}
shift
device=cuda tiny=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --tiny) tiny=1; shift ;;
    *) echo "error: unknown option $1 (use --device cpu|cuda and --tiny)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PYTHONPATH="$PWD:$PWD/kernels${PYTHONPATH:+:$PYTHONPATH}"
export MINIFREEZE_DATA_DIR="${MINIFREEZE_DATA_DIR:-$PWD/.gpu_data}"
log=$out/gpu_check.log
: >"$log"
status=()

part() {  # part NAME COMMAND...: run one part, log it, remember its exit status, keep going
  local name=$1
  shift
  echo "== $name: $*" | tee -a "$log"
  local started=$SECONDS
  "$@" >>"$log" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - started)) s" | tee -a "$log"
  status+=("$name=$rc")
}

if [[ $tiny == 1 ]]; then
  step=(--model tiny --batch-size 4 --seq-len 16 --rows 0,1,head --steps 1 --warmup 1 --bound-reps 1)
  epoch=(--model tiny --train-size 48 --batch-size 16 --rows 0,3 --warmup 1)
  kernel=(--cases tiny --warmup 1 --repeats 2)
  dtype=fp32
else
  step=(--model bert-base --batch-size 32 --seq-len 128 --rows 0,4,8,12,head,bitfit --steps 10 --warmup 3)
  epoch=(--model minilm --train-size 2000 --batch-size 32 --max-length 64)
  kernel=()
  dtype=bf16
fi
results=(--results-root "$out/results")

part tests python -m pytest -q -rs tests/gpu
part freeze_depth python benchmarks/freeze_depth.py "${step[@]}" --dtype "$dtype" --device "$device" \
  --no-profile-misses --name freeze_depth_step "${results[@]}"
part epoch_speed python benchmarks/epoch_speed.py "${epoch[@]}" --cache --dtype "$dtype" --device "$device" \
  --name epoch_cache "${results[@]}"
part kernel_speed python benchmarks/kernel_speed.py "${kernel[@]}" "${results[@]}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$log" 2>&1 || true
echo "parts: ${status[*]}" | tee -a "$log"
find "$out" -type f | sort | tee -a "$log"
for s in "${status[@]}"; do [[ ${s#*=} == 0 ]] || exit 1; done
