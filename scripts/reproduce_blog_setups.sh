#!/usr/bin/env bash
# Reproduce the five published freezing set-ups with minifreeze.
#   bash scripts/reproduce_blog_setups.sh            # the Hub models named in each config (needs network)
#   QUICK=1 bash scripts/reproduce_blog_setups.sh    # here: the bundled MiniLM, 2,000 examples, 1 epoch
# Results land in runs/blog/<name>/summary.json. The freeze-depth grid on SST-2 and CoLA is the sweep:
# see scripts/run_study.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=()
if [[ "${QUICK:-0}" == 1 ]]; then
  extra=(--model bundled:minilm --train-size 2000 --epochs 1)
fi
for config in scripts/configs/*.toml; do
  name=$(basename "$config" .toml)
  args=("${extra[@]}")
  # amazon_polarity is not in the shared data: offline, use rotten_tomatoes for the same freezing recipe.
  if [[ "${QUICK:-0}" == 1 && "$name" == top2_amazon_polarity ]]; then
    args+=(--dataset rotten_tomatoes --max-length 128)
  fi
  echo "== $name"
  python -m minifreeze.train --config "$config" --out "runs/blog/$name" --overwrite "${args[@]}"
done
