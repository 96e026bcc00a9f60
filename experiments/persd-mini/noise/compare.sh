#!/bin/bash
# Is llama-server's greedy decoding batch-invariant? The same GGUF on HumanEval's first 24 tasks with 8 parallel
# slots and with 1, for the stock build and a variant (VARIANT=path to its llama-server); then diff the answers.
#   bash experiments/persd-mini/noise/compare.sh MODEL.gguf OUTDIR [VARIANT]
set -eu
M=$1; OUT=$2; VARIANT=${3:-}
for v in stock ${VARIANT:+variant}; do
  if [ $v = variant ]; then export ITERKD_LLAMA_SERVER=$VARIANT; else unset ITERKD_LLAMA_SERVER; fi
  for b in 8 1; do
    s=$(date +%s)
    iterkd eval -q --model "$M" --benchmark humaneval --limit 24 --backend llama-server --batch-size $b \
      --workers 1 --out "$OUT/ev-$v-b$b" > "$OUT/ev-$v-b$b.log" 2>&1
    echo "$v b$b $(( $(date +%s) - s )) s"
  done
done
python "$(dirname "$0")/diff.py" "$OUT"
