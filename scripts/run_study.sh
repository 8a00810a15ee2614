#!/usr/bin/env bash
# The freeze study as it was run for docs/study.md: real MiniLM (bundled:minilm), SST-2 and CoLA.
#
# Usage: scripts/run_study.sh [sst2|cola ...]          (default: both, one after the other)
#        STUDY_WORK=/tmp/minifreeze-study scripts/run_study.sh sst2 &   (one dataset per process)
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
export MINIFREEZE_DATA_DIR="${MINIFREEZE_DATA_DIR:-/work/shared/data}"
WORK="${STUDY_WORK:-/tmp/minifreeze-study}"

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
for dataset in "${datasets[@]}"; do
    metric=accuracy
    [ "$dataset" = cola ] && metric=mcc
    if [ -z "${REPORT_ONLY:-}" ]; then
        # Phase 1: depths 0, 2, 4, 6 (of 6 layers) at n=100 and n=500, seeds 0-2 (seed-major order).
        sweep "$dataset" "$metric" --freeze 0,2,4,6 --train-sizes 100,500 --seeds 3
    fi
    # Phase 2: all depths -1, 0..6 (same sizes and seeds) as far as time allows; with REPORT_ONLY=1 it
    # only rebuilds runs.csv, summary.md and the plots from what finished.
    sweep "$dataset" "$metric" --freeze=-1,0,1,2,3,4,5,6 --train-sizes 100,500 --seeds 3 \
        ${REPORT_ONLY:+--report-only}
    mkdir -p "docs/study/$dataset"
    cp "$WORK/$dataset"/{runs.csv,summary.md,*.png} "docs/study/$dataset/"
done
