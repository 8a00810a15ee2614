#!/usr/bin/env bash
# The freeze study (docs/study.md), phase by phase: real MiniLM (bundled:minilm) on the shared data.
#
# Usage: scripts/run_study.sh PHASE [sweep flags...]     run (or resume) one phase; extra flags narrow it,
#                                                         e.g. a block of the grid: grid --train-sizes 100
#        REPORT_ONLY=1 scripts/run_study.sh PHASE         tables and plots of the phase's whole grid, from
#                                                         what finished, copied to docs/study/PHASE/
#        STUDY_WORK=$HOME/minifreeze-study (default)      where the run folders live (no models are kept)
# Phases (issue 24):
#   grid      SST-2, depths -1..6 x n = 50, 100, 200, 500, 1000 x 5 seeds; 3 data subsets at n <= 200
#   cola      CoLA, depths -1..6 x n = 200, 500, 1000 x 5 seeds, checkpoint chosen by MCC
#   lr        SST-2 n = 1000, depths 0, 2, 4, 5, 6 x lr 2e-5, 5e-5, 1e-4, 5e-4 x [CLS] and mean pooling x 3 seeds
#             ([CLS] at lr 5e-5 is the grid's own n = 1000 runs of seeds 0-2: copied from it, not rerun)
#   headonly  rotten_tomatoes n = 1000: only the head trains (head) vs everything (0), 5 seeds; the head
#             also at lr 1e-3 and 1e-2 (its own learning rates), on the [CLS] pooler and on mean pooling
#   matched   SST-2 n = 500, one trainable fraction two ways: depth 4 (16.28% trains) and random:0.843
#             (16.26%, element-wise), against BitFit (0.12%; also at lr 1e-3) and full fine-tuning, 5 seeds
# Every phase reads scripts/study_protocol.toml, the protocol as run (half of validation selects, the other
# half reports). Resumable: stop it any time (kill -TERM the python process; the current run is redone on
# restart) and run the same command again. Two processes may share a phase if their seeds differ
# (grid --seeds 0,1,2 and grid --seeds 3,4): each run has its own folder. One seed alone takes a comma
# (--seeds 4,): --seeds 4 means a count, seeds 0-3. Time per run is CPU time.
set -euo pipefail
cd "$(dirname "$0")/.."
export MINIFREEZE_DATA_DIR="${MINIFREEZE_DATA_DIR:-$(cd .. && pwd)/shared/data}"  # ../shared/data by default
WORK="${STUDY_WORK:-$HOME/minifreeze-study}"  # not /tmp: a machine restart may clear it
ALL_DEPTHS=--freeze=-1,0,1,2,3,4,5,6

sweep() {  # folder, then sweep flags
    local folder=$1
    shift
    python -m minifreeze.sweep --config scripts/study_protocol.toml --report accuracy,mcc \
        --out "$WORK/$folder" "$@" ${REPORT_ONLY:+--report-only}
    if [ -n "${REPORT_ONLY:-}" ]; then
        mkdir -p "docs/study/$folder"
        cp "$WORK/$folder"/{runs.csv,summary.md} "docs/study/$folder/"
        cp "$WORK/$folder"/*.png "docs/study/$folder/" 2>/dev/null || true
    fi
}

reuse_grid_runs() {  # lr 5e-5 on [CLS] is the protocol itself: the grid's n=1000 runs, seeds 0-2, subset 0
    local into="$WORK/lr/cls-lr5e-5/runs" from d s  # the sweep checks their options before it skips them
    for from in "$WORK/grid/runs" docs/study/grid/runs; do
        for d in 0 2 4 5 6; do
            for s in 0 1 2; do
                if [ -f "$from/freeze$d-n1000-s$s-d0/summary.json" ] && [ ! -e "$into/freeze$d-n1000-s$s" ]; then
                    mkdir -p "$into" && cp -r "$from/freeze$d-n1000-s$s-d0" "$into/freeze$d-n1000-s$s"
                fi
            done
        done
    done
}

phase=${1:?"usage: scripts/run_study.sh grid|cola|lr|headonly|matched [sweep flags]"}
shift
case $phase in
    grid) sweep grid --dataset sst2 "$ALL_DEPTHS" --train-sizes 50,100,200,500,1000 --seeds 5 \
              --data-seeds 3 --subsets-up-to 200 "$@" ;;
    cola) sweep cola --dataset cola --metric mcc "$ALL_DEPTHS" --train-sizes 200,500,1000 --seeds 5 "$@" ;;
    lr) reuse_grid_runs
        for pooling in cls mean; do
            for lr in 2e-5 5e-5 1e-4 5e-4; do
                sweep "lr/$pooling-lr$lr" --dataset sst2 --pooling "$pooling" --lr "$lr" --freeze 0,2,4,5,6 \
                    --train-sizes 1000 --seeds 3 "$@"
            done
        done ;;
    headonly) sweep headonly --dataset rotten_tomatoes --freeze head,0 --train-sizes 1000 --seeds 5 "$@"
              for lr in 1e-3 1e-2; do  # 770 weights at lr 5e-5 hardly move: the head's own learning rates,
                  for pooling in cls mean; do  # on the frozen [CLS] pooler (as the post) and on the mean
                      sweep "headonly-$pooling-lr$lr" --dataset rotten_tomatoes --freeze head --lr "$lr" \
                          --pooling "$pooling" --train-sizes 1000 --seeds 5 "$@"
                  done
              done ;;
    matched) sweep matched --dataset sst2 --freeze 0,4,random:0.843,bitfit --train-sizes 500 --seeds 5 "$@"
             # BitFit at its paper's learning rate too (Ben Zaken et al. tune 1e-4..1e-3; 5e-5 is too low)
             sweep matched-bitfit-lr1e-3 --dataset sst2 --freeze bitfit --lr 1e-3 --train-sizes 500 --seeds 5 "$@" ;;
    *) echo "run_study.sh: unknown phase '$phase' (use grid, cola, lr, headonly or matched)" >&2; exit 2 ;;
esac
