#!/usr/bin/env bash
# The runs whose numbers the README quotes, each kept under docs/results/<name>/ (summary.json,
# metrics.jsonl, config.json; never the weights) with the exact command, the machine's load before and
# after, and /usr/bin/time's report (peak RSS). tests/test_readme_figures.py checks the README against them.
#   MINIFREEZE_DATA_DIR=../shared/data bash scripts/readme_runs.sh [default] [real_run] [setups]
# Run it on an otherwise idle machine: the wall times are only meaningful then (the load is recorded).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${MINIFREEZE_DATA_DIR:?set MINIFREEZE_DATA_DIR to the folder holding sst2/, rotten_tomatoes/, cola/}"
export MINIFREEZE_DATA_DIR
wanted=("${@:-default real_run setups}")
wanted=(${wanted[*]})

keep() {  # keep NAME RUN_DIR COMMAND...: copy a finished run's records into docs/results/NAME
  local name=$1 run=$2
  shift 2
  local dest=docs/results/$name
  rm -rf "$dest" && mkdir -p "$dest"
  cp "$run/summary.json" "$run/metrics.jsonl" "$run/config.json" "$dest/"
  printf '%s\n' "$*" >"$dest/command.txt"
}

timed() {  # timed NAME RUN_DIR COMMAND...: run the command alone, with load and peak memory recorded
  local name=$1 run=$2
  shift 2
  local before
  before=$(cut -d' ' -f1-3 /proc/loadavg)
  /usr/bin/time -v -o "/tmp/readme-$name.time" "$@"
  keep "$name" "$run" "$@"
  {
    echo "load average before: $before"
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "cores: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
    grep -E "Elapsed|Maximum resident" "/tmp/readme-$name.time"
  } >"docs/results/$name/machine.txt"
}

for what in "${wanted[@]}"; do
  case $what in
    default)  # the no-argument demo (bundled MiniLM, 4,000 SST-2 examples, freeze 2, 2 epochs), in its own
      # folder: given any option, --train-size defaults to the whole training set, so the demo's 4000 is spelled out
      timed default runs/readme/default python -m minifreeze.train --train-size 4000 --out runs/readme/default \
        --overwrite
      ;;
    real_run)
      timed real_run runs/readme/real_run python -m minifreeze.train --model bundled:minilm --dataset sst2 \
        --train-size 1000 --freeze 2 --epochs 3 --out runs/readme/real_run --overwrite
      ;;
    setups)  # the five published set-ups, QUICK (bundled MiniLM, 2,000 examples), one thread
      before=$(cut -d' ' -f1-3 /proc/loadavg)
      OMP_NUM_THREADS=1 QUICK=1 bash scripts/reproduce_blog_setups.sh
      for run in runs/blog/*/; do
        name=$(basename "$run")
        keep "setups/$name" "$run" "OMP_NUM_THREADS=1 QUICK=1 bash scripts/reproduce_blog_setups.sh"
      done
      echo "load average before: $before; after: $(cut -d' ' -f1-3 /proc/loadavg); one thread" \
        >docs/results/setups/machine.txt
      ;;
    *) echo "unknown run '$what': use default, real_run or setups" >&2; exit 2 ;;
  esac
done
