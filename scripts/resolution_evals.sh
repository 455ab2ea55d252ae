#!/usr/bin/env bash
# The resolution and tiling measurements of the README (issue: native resolution and tiles):
# each setting is one `bpgg eval` run, one after another (the machine is shared), written to
# $OUT/<name>.json and $OUT/<name>.txt with its wall time, peak RSS (/usr/bin/time -v) and load
# average.
#
#   scripts/resolution_evals.sh BPGG_BINARY DATA_ROOT OUT [name ...]
#
# names (default: all, in this order):
#   mt-square-working  magnetic_tile, 256x256, compared at 256x256 (the old protocol)
#   mt-square          magnetic_tile, 256x256, compared at each image's size
#   mt-long256         magnetic_tile, long side 256 (native aspect)
#   mt-long512         magnetic_tile, long side 512 (2x)
#   mt-tile256         magnetic_tile, native resolution, tiles of 256
#   a02-tile256 / a03-tile256        aitex_02 / aitex_03, native resolution, tiles of 256
#   a02-tile256-half   aitex_02, half resolution, tiles of 256
#   a02-square         aitex_02, 256x256 (the old squashing)
#   syn-*              the synthetic 2048x2048 set (blobs and scratches of about 8 px), made
#                      first under $OUT/synth with `bpgg data synth --size 2048 --defect-scale
#                      0.025`: syn-tile256 (native, tiles of 256), syn-tile256-half (half
#                      resolution, tiles), syn-long512 (long side 512, whole), each with the
#                      default scoring
# and any name followed by `-bpgg` (a02-tile256-bpgg): the same setting with prototype scoring
# only (the default hybrid scoring's k-NN search over every pixel of five native 4096 x 256 or
# 2048 x 2048 normal images is slow on 2 cores), or by `-mb` (a02-tile256-mb): the same setting
# with each memory bank capped at 32768 features drawn at random (`--max-bank 32768`).
set -euo pipefail
BIN=$1; DATA=$2; OUT=$3; shift 3
NAMES=${*:-mt-square-working a02-tile256 mt-square mt-long256 mt-tile256 a03-tile256 a02-square a02-tile256-half syn-tile256-bpgg syn-tile256-half-bpgg syn-long512-bpgg syn-tile256-half syn-long512 mt-long512}
SEEDS=${SEEDS:-5}
SYN_SEEDS=${SYN_SEEDS:-3}
mkdir -p "$OUT"
for name in $NAMES; do
  data=$DATA; seeds=$SEEDS
  # A suffix after a name: `-bpgg` prototype scoring only, `-mb` capped memory banks.
  base=${name%-bpgg}
  base=${base%-mb}
  case $base in
    mt-square-working) cat=magnetic_tile; args=(--size 256x256 --compare-at working) ;;
    mt-square) cat=magnetic_tile; args=(--size 256x256 --compare-at image) ;;
    mt-long256) cat=magnetic_tile; args=(--size 256 --compare-at image) ;;
    mt-long512) cat=magnetic_tile; args=(--size 512 --compare-at image) ;;
    mt-tile256) cat=magnetic_tile; args=(--tile 256) ;;
    a02-tile256) cat=aitex_02; args=(--tile 256) ;;
    a03-tile256) cat=aitex_03; args=(--tile 256) ;;
    a02-tile256-half) cat=aitex_02; args=(--tile 256 --scale 0.5) ;;
    a02-square) cat=aitex_02; args=(--size 256x256) ;;
    syn-*)
      data=$OUT/synth; cat=synthetic_2048; seeds=$SYN_SEEDS
      [ -d "$data/$cat" ] || "$BIN" -q data synth "$data" --category "$cat" --size 2048 \
        --train-good 10 --test-good 6 --per-type 6 --kinds blob,scratch --defect-scale 0.025
      case $base in
        syn-tile256) args=(--tile 256) ;;
        syn-tile256-half) args=(--tile 256 --scale 0.5) ;;
        syn-long512) args=(--size 512) ;;
        *) echo "unknown setting $name" >&2; exit 2 ;;
      esac ;;
    *) echo "unknown setting $name" >&2; exit 2 ;;
  esac
  case $name in
    *-bpgg) args+=(--scoring bpgg) ;;
    *-mb) args+=(--max-bank 32768) ;;
  esac
  [ -f "$OUT/$name.json" ] && continue
  start=$(date +%s)
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  /usr/bin/time -v -o "$OUT/$name.time" "$BIN" -q eval --data "$data" --category "$cat" --shots 1,5 --normal-shots 5 --seeds "$seeds" \
    "${args[@]}" --json "$OUT/$name.json" > "$OUT/$name.txt" 2> "$OUT/$name.err"
  end=$(date +%s)
  rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$OUT/$name.time")
  echo "wall $((end - start)) s; peak RSS $((rss / 1024)) MB; load average before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/$name.txt"
  echo "$name done in $((end - start)) s"
done
