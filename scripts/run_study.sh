#!/usr/bin/env bash
# The freeze study as it was run for docs/study.md: real MiniLM (bundled:minilm), SST-2 and CoLA.
#
# Usage: scripts/run_study.sh [sst2|cola ...]          (default: both, phase by phase)
#        STUDY_WORK=$HOME/minifreeze-study scripts/run_study.sh sst2 &   (one dataset per process)
#        REPORT_ONLY=1 scripts/run_study.sh                 (tables and plots from what finished)
#
# Resumable: stop it any time (kill -TERM the python process: the current run stops at its next step and
# is redone on restart) and run the same command again; finished runs are skipped.
# Run folders (summary.json, metrics.jsonl, config.json per run; no models) live in $STUDY_WORK; only
# runs.csv, summary.md and the plots are copied to docs/study/<dataset>/.
#
# The protocol is scripts/study_protocol.toml; the flags below are the deviations forced by two shared
# CPU cores (see docs/study.md, "What was run"): evaluation every 2 epochs instead of every half epoch,
# sentences cut at 64 tokens (0.01% of SST-2 train, no validation sentence, no CoLA sentence is longer),
# the frozen-prefix cache (exact in fp32), one thread per process. The grid is run in phases, most
# informative first, the second a superset of the first, so that what finishes first is a complete block.
set -euo pipefail
cd "$(dirname "$0")/.."
export MINIFREEZE_DATA_DIR="${MINIFREEZE_DATA_DIR:-$(cd .. && pwd)/shared/data}"  # ../shared/data by default
WORK="${STUDY_WORK:-$HOME/minifreeze-study}"  # not /tmp: a machine restart may clear it

COMMON=(--config scripts/study_protocol.toml --model bundled:minilm
        --eval-every 2ep --max-length 64 --eval-batch-size 128 --threads 1
        --cache-frozen --cache-dir none)

sweep() {  # dataset metric extra-args...
    local dataset=$1 metric=$2
    shift 2
    python -m minifreeze.sweep "${COMMON[@]}" --dataset "$dataset" --metric "$metric" \
        --report accuracy,mcc --out "$WORK/$dataset" "$@"
}

datasets=("$@")
[ ${#datasets[@]} -eq 0 ] && datasets=(sst2 cola)
metric_of() { if [ "$1" = cola ]; then echo mcc; else echo accuracy; fi; }
ALL_DEPTHS=(--freeze=-1,0,1,2,3,4,5,6)
if [ -z "${REPORT_ONLY:-}" ]; then
    # Phases, outer loop: each phase is finished on every dataset before the next one starts, and each is a
    # superset of the one before (finished runs are skipped), so what exists at any stop is a complete block.
    for dataset in "${datasets[@]}"; do   # 1: depths 0, 2, 4, 6 at n=100 and n=500, seeds 0-2 (seed-major)
        sweep "$dataset" "$(metric_of "$dataset")" --freeze 0,2,4,6 --train-sizes 100,500 --seeds 3
    done
    for dataset in "${datasets[@]}"; do   # 2: every depth -1, 0..6
        sweep "$dataset" "$(metric_of "$dataset")" "${ALL_DEPTHS[@]}" --train-sizes 100,500 --seeds 3
    done
    for dataset in "${datasets[@]}"; do   # 3: the small sizes 50 and 200
        sweep "$dataset" "$(metric_of "$dataset")" "${ALL_DEPTHS[@]}" --train-sizes 50,100,200,500 --seeds 3
    done
    for dataset in "${datasets[@]}"; do   # 4: n=1000, the study's full grid of sizes
        sweep "$dataset" "$(metric_of "$dataset")" "${ALL_DEPTHS[@]}" --train-sizes 50,100,200,500,1000 --seeds 3
    done
fi
# Report: rebuild runs.csv, summary.md and the plots from every finished run of the largest grid, and copy
# them to docs/study/<dataset>/.
for dataset in "${datasets[@]}"; do
    sweep "$dataset" "$(metric_of "$dataset")" "${ALL_DEPTHS[@]}" --train-sizes 50,100,200,500,1000 --seeds 3 \
        --report-only
    mkdir -p "docs/study/$dataset"
    cp "$WORK/$dataset"/{runs.csv,summary.md,*.png} "docs/study/$dataset/"
done
