#!/usr/bin/env bash
# The meta-training protocol on magnetic_tile (issue: episodic meta-training): for each fold,
# train on three defect types and evaluate on the two the training never saw, trained head vs
# training-free features, and the ablations. Results: $OUT/<variant>/<fold>/eval.json.
#
#   scripts/train_folds.sh BPGG_BINARY DATA_ROOT OUT [variant ...]
# variants: full (default settings), no-reverse (--reverse-weight 0), no-normal
# (--normal-shots 0), baseline (no training: eval only).
set -euo pipefail
BIN=$1; DATA=$2; OUT=$3; shift 3
VARIANTS=${*:-baseline full no-reverse no-normal}
EPISODES=${EPISODES:-200}
SEEDS=${SEEDS:-5}
TYPES=(blowhole break crack fray uneven)
for variant in $VARIANTS; do
  for i in 0 1 2 3 4; do
    test1=${TYPES[$i]}; test2=${TYPES[$(( (i + 1) % 5 ))]}
    base=$(printf '%s\n' "${TYPES[@]}" | grep -vx "$test1" | grep -vx "$test2" | paste -sd,)
    fold="$test1+$test2"
    dir="$OUT/$variant/$fold"
    mkdir -p "$dir"
    [ -f "$dir/eval.json" ] && continue
    ckpt=()
    case $variant in
      baseline) extra=() ;;
      full) extra=() ;;
      no-reverse) extra=(--reverse-weight 0) ;;
      no-normal) extra=(--normal-shots 0) ;;
      *) echo "unknown variant $variant" >&2; exit 2 ;;
    esac
    if [ "$variant" != baseline ]; then
      [ -f "$dir/run/best.safetensors" ] || { rm -rf "$dir/run"; "$BIN" -q train --data "$DATA" --category magnetic_tile \
        --base-types "$base" --episodes "$EPISODES" --val-every 50 --checkpoint-every 50 \
        --val-episodes 10 "${extra[@]}" -o "$dir/run" > "$dir/train.txt"; }
      ckpt=(--checkpoint "$dir/run/best.safetensors")
    fi
    "$BIN" -q eval --data "$DATA" --category magnetic_tile --types "$test1,$test2" --shots 5 \
      --normal-shots 5 --seeds "$SEEDS" --scoring bpgg "${ckpt[@]}" --json "$dir/eval.json" > "$dir/eval.txt"
    echo "$variant $fold done"
  done
done
