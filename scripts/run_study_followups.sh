#!/usr/bin/env bash
# Round 1's four follow-ups (docs/study/round1/README.md, "Follow-ups"), each testing one explanation
# the study could only offer as a guess. Same protocol and flags as scripts/run_study.sh, SST-2, sizes 100
# and 500, with one or two options changed:
#   lr5e-4     peak lr 5e-4 instead of 5e-5 at the deep depths 4, 5, 6 (is the collapse a learning-rate
#              artefact?), 3 seeds, and at depths 0 and 2 for one seed (does the higher lr hurt there?)
#   mean       --pooling mean instead of the [CLS] pooler at depths 4, 5, 6, 3 seeds, and depth 0 for one
#              seed (is the collapse this sentence-embedding model's untrained pooler?)
#   mean-lr5e-4  both changes together at depths 4, 5, 6, 3 seeds
#   halfepoch  evaluation every half epoch, the protocol as written, seed 0 at depths 0, 2, 4, 5, 6 (how
#              much did evaluating every 2 epochs lower the reported best scores?)
#
# Usage: STUDY_WORK=$HOME/minifreeze-study scripts/run_study_followups.sh [lr5e-4|mean|mean-lr5e-4|halfepoch ...]
#        REPORT_ONLY=1 scripts/run_study_followups.sh        (summary.md, runs.csv, plots -> docs/study/round1/followups/)
# Resumable like run_study.sh: finished runs are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export MINIFREEZE_DATA_DIR="${MINIFREEZE_DATA_DIR:-$(cd .. && pwd)/shared/data}"  # ../shared/data by default
WORK="${STUDY_WORK:-$HOME/minifreeze-study}"  # not /tmp: a machine restart may clear it

# Round 1's protocol: today's scripts/study_protocol.toml with round 1's weight decay and whole-set selection.
COMMON=(--config scripts/study_protocol.toml --weight-decay 0.01 --heldout 0
        --model bundled:minilm --dataset sst2 --metric accuracy
        --report accuracy,mcc --max-length 64 --eval-batch-size 128 --threads 1
        --cache-frozen --cache-dir none --train-sizes 100,500)
TWO_EPOCHS=(--eval-every 2ep)

run() {  # experiment extra-args...
    local name=$1
    shift
    python -m minifreeze.sweep "${COMMON[@]}" --out "$WORK/sst2-$name" "$@" ${REPORT_ONLY:+--report-only}
}

experiment() {
    case $1 in
        lr5e-4) if [ -n "${REPORT_ONLY:-}" ]; then
                    run lr5e-4 "${TWO_EPOCHS[@]}" --lr 5e-4 --freeze 0,2,4,5,6 --seeds 3
                else
                    run lr5e-4 "${TWO_EPOCHS[@]}" --lr 5e-4 --freeze 4,5,6 --seeds 3
                    run lr5e-4 "${TWO_EPOCHS[@]}" --lr 5e-4 --freeze 0,2 --seeds 1
                fi ;;
        mean) if [ -n "${REPORT_ONLY:-}" ]; then   # the report's grid covers both blocks
                  run mean "${TWO_EPOCHS[@]}" --pooling mean --freeze 0,4,5,6 --seeds 3
              else
                  run mean "${TWO_EPOCHS[@]}" --pooling mean --freeze 4,5,6 --seeds 3
                  run mean "${TWO_EPOCHS[@]}" --pooling mean --freeze 0 --seeds 1
              fi ;;
        mean-lr5e-4) run mean-lr5e-4 "${TWO_EPOCHS[@]}" --pooling mean --lr 5e-4 --freeze 4,5,6 --seeds 3 ;;
        halfepoch) run halfepoch --eval-every 0.5ep --freeze 0,2,4,5,6 --seeds 1 ;;
        *) echo "run_study_followups.sh: unknown experiment '$1' (use lr5e-4, mean, mean-lr5e-4 or halfepoch)" >&2; exit 2 ;;
    esac
}

names=("$@")
[ ${#names[@]} -eq 0 ] && names=(lr5e-4 mean mean-lr5e-4 halfepoch)
for name in "${names[@]}"; do
    experiment "$name"
    if [ -n "${REPORT_ONLY:-}" ]; then
        mkdir -p "docs/study/round1/followups/$name"
        cp "$WORK/sst2-$name"/{runs.csv,summary.md,*.png} "docs/study/round1/followups/$name/"
    fi
done
