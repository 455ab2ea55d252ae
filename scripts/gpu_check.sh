#!/usr/bin/env bash
# The device check of the CUDA build, in one run on a machine with an NVIDIA GPU: parity with the
# CPU (backbone features, maps of fitted models, a short training run's losses), the CLI on the
# GPU, and the benchmarks on the GPU next to the same benchmarks on the CPU. Everything it
# prints goes to $OUT (default out/gpu-check): gpu_check.log (all of it), summary.txt (the
# figures), parity.json, bench.txt, history_cpu.csv, history_gpu.csv, tests.log.
#
#   scripts/build_cuda.sh                       # on any machine: target/cuda/bpgg(.xz), no GPU
#   scripts/gpu_check.sh                        # on the GPU machine, with target/cuda/bpgg.xz
#                                               # there (carried: the tree + 10 MB)
#
#   # a rehearsal on a CPU build (every step, smaller numbers, the CPU compared with itself):
#   BPGG_BIN=target/release/bpgg BPGG_DEVICE=cpu BPGG_QUICK=1 OUT=/tmp/gpu-check scripts/gpu_check.sh
#
# Environment: BPGG_BIN (default target/cuda/bpgg), BPGG_DEVICE (default cuda:0), OUT,
# BPGG_QUICK=1 (fewer repeats and images: a rehearsal, not a measurement), BPGG_DATA (an
# MVTec-layout root with magnetic_tile, default ../shared/data: used when present; the GPU
# machine gets only the repository, so the other checks use `bpgg data synth`).
# Test binaries built by `BPGG_CUDA_TESTS=1 scripts/build_cuda.sh` (target/cuda/tests/lib.xz,
# it.xz) run too when present: every unit test of the bpgg crate, and the integration tests of
# `device::` (the others read fixtures by their path on the build machine), with
# BPGG_REQUIRE_CUDA=1 so that none of their CUDA cases skips.
#
# The run takes about 5 minutes on a 16-core H200 machine (each step has its own time limit, so
# a hang costs one step, not the run). It exits 1 if a parity criterion or a step failed, after
# running every step.
set -uo pipefail
cd "$(dirname "$0")/.."

bin="${BPGG_BIN:-target/cuda/bpgg}"
dev="${BPGG_DEVICE:-cuda:0}"
out="${OUT:-out/gpu-check}"
quick="${BPGG_QUICK:-0}"
data="${BPGG_DATA:-../shared/data}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
log="$out/gpu_check.log"
summary="$out/summary.txt"
bench="$out/bench.txt"
: > "$log"; : > "$summary"; : > "$bench"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
start_all=$(date +%s)

say() { echo "$*" | tee -a "$log" "$summary"; }

# step NAME LIMIT_S CMD...: runs CMD with a time limit, its output appended to the log (and to
# FILE when STEP_TEE=FILE); records a failure without stopping the run.
step() {
    local name="$1" limit="$2"; shift 2
    local t0=$(date +%s) rc
    echo "== $name: $*" >> "$log"
    if [ -n "${STEP_TEE:-}" ]; then
        timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log" >> "$STEP_TEE"
        rc=${PIPESTATUS[0]}
    else
        timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
        rc=$?
    fi
    local took=$(( $(date +%s) - t0 ))
    if [ "$rc" -eq 0 ]; then
        say "ok     $name (${took} s)"
    else
        [ "$rc" -eq 124 ] && rc="$rc: time limit ${limit} s"
        say "FAILED $name (exit $rc, ${took} s)"
        failed+=("$name")
    fi
}

# Small numbers for a rehearsal; the measurement's otherwise.
if [ "$quick" = 1 ]; then
    repeats=2; images=8; episodes=4; batches=1,8; train_batches="5 5 2 1"; knn_normal=1,5
    big_train="5 5 4 2"
else
    repeats=10; images=64; episodes=20; batches=1,8,32,64; train_batches="5 5 2 1"
    knn_normal=1,5,20,200; big_train="10 10 16 8"
fi

# Unpacks FILE.xz next to it (xz, or Python's lzma where there is no xz) unless FILE is there.
unpack() {
    [ -x "$1" ] && return 0
    [ -f "$1.xz" ] || return 1
    if command -v xz >/dev/null 2>&1; then
        xz -dc "$1.xz" > "$1.tmp"
    else
        python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' \
            "$1.xz" > "$1.tmp"
    fi && chmod +x "$1.tmp" && mv "$1.tmp" "$1"
}
unpack "$bin"

say "bpgg device check: $bin on $dev, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores"
[ "$quick" = 1 ] && say "BPGG_QUICK=1: a rehearsal with small numbers, not a measurement"

# --- 1. the machine and the binary ------------------------------------------------------------
if [ ! -x "$bin" ]; then
    say "FAILED: no executable $bin (build it with scripts/build_cuda.sh and carry it)"
    exit 1
fi
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 \
        | tee -a "$log" "$summary"
else
    say "no nvidia-smi on this machine"
fi

# The CUDA build links libcuda.so.1 (the driver's) and CUDA 13's cuBLAS, cuRAND, NVRTC and
# runtime. Where the loader does not find one, look in the CUDA installation and in Python's
# nvidia-* packages (PyTorch's CUDA libraries), and put its folder on LD_LIBRARY_PATH.
missing=$(ldd "$bin" 2>/dev/null | awk '/not found/ {print $1}')
if [ -n "$missing" ]; then
    dirs=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64
          /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64)
    for py in python3 /opt/torch/.venv/bin/python3; do
        site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null) \
            || continue
        for d in "$site"/nvidia/cu13/lib "$site"/nvidia/*/lib; do
            [ -d "$d" ] && dirs+=("$d")
        done
    done
    extra=""
    for lib in $missing; do
        found=""
        for d in "${dirs[@]}"; do
            if [ -e "$d/$lib" ]; then found="$d"; break; fi
        done
        if [ -z "$found" ]; then
            found=$(find /usr /opt -name "$lib" 2>/dev/null | head -1)
            found="${found%/*}"
        fi
        if [ -n "$found" ]; then
            echo "$lib: $found" >> "$log"
            case ":$extra:" in *":$found:"*) ;; *) extra="$extra:$found" ;; esac
        else
            say "not found anywhere: $lib"
        fi
    done
    export LD_LIBRARY_PATH="${extra#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
fi
ldd "$bin" >> "$log" 2>&1
if ldd "$bin" 2>/dev/null | grep -q 'not found'; then
    say "FAILED: $bin still misses: $(ldd "$bin" | awk '/not found/ {print $1}' | tr '\n' ' ')"
    exit 1
fi
step "version" 30 "$bin" --version
step "a first computation on $dev (bench knn, one image)" 120 "$bin" -v bench knn --normal 1 \
    --queries 1 --repeats 1 --warmup 0 --reference none --device "$dev"

# --- 2. parity with the CPU -------------------------------------------------------------------
STEP_TEE="$out/parity.txt" step "parity on synthetic data" 300 \
    "$bin" bench parity --device "$dev" --episodes "$episodes" --json "$out/parity.json"
if [ -d "$data/magnetic_tile" ]; then
    STEP_TEE="$out/parity.txt" step "parity on magnetic_tile" 300 \
        "$bin" bench parity --device "$dev" --data "$data" --category magnetic_tile \
        --episodes "$episodes" --backbones efficientnet-lite0 --json "$work/parity-mt.json"
else
    say "skipped parity on real data: no $data/magnetic_tile on this machine"
fi

# --- 3. the CLI on the device -----------------------------------------------------------------
synth="$work/synth"
step "data synth" 120 "$bin" data synth "$synth" --size 256 --train-good 8 --test-good 8 \
    --per-type 8
cat_dir="$synth/synthetic_tile"
step "fit on $dev" 120 "$bin" -v fit --device "$dev" --data "$synth" --category synthetic_tile \
    --shots 5 --normal-shots 5 -o "$work/model.bpgg"
step "predict on $dev" 120 "$bin" -q predict --device "$dev" --model "$work/model.bpgg" \
    "$cat_dir/test" -o "$work/pred-dev"
step "predict on cpu" 120 "$bin" -q predict --device cpu --model "$work/model.bpgg" \
    "$cat_dir/test" -o "$work/pred-cpu"
# Image scores of the two predict runs, image by image (results.jsonl, same order).
if [ -f "$work/pred-dev/results.jsonl" ] && [ -f "$work/pred-cpu/results.jsonl" ]; then
    scores() { sed -n 's/.*"image_score":\([^,}]*\).*/\1/p' "$1" ; }
    worst=$(paste <(scores "$work/pred-cpu/results.jsonl") <(scores "$work/pred-dev/results.jsonl") \
        | awk 'BEGIN {w = 0} {d = $1 - $2; if (d < 0) d = -d; if (d > w) w = d} END {printf "%.2e", w}')
    n=$(wc -l < "$work/pred-dev/results.jsonl")
    say "predict CLI: $n image scores, largest |cpu - $dev| $worst"
fi
STEP_TEE="$work/eval-dev.txt" step "eval on $dev" 300 "$bin" -q eval --device "$dev" \
    --data "$synth" --category synthetic_tile --shots 1,5 --seeds 2
STEP_TEE="$work/eval-cpu.txt" step "eval on cpu" 300 "$bin" -q eval --device cpu \
    --data "$synth" --category synthetic_tile --shots 1,5 --seeds 2
if [ -s "$work/eval-dev.txt" ] && [ -s "$work/eval-cpu.txt" ]; then
    if cmp -s <(grep '^|' "$work/eval-cpu.txt") <(grep '^|' "$work/eval-dev.txt"); then
        say "eval CLI: the same metric tables (3 decimals) on cpu and $dev"
    else
        say "eval CLI: the metric tables of cpu (<) and $dev (>) differ:"
        diff <(grep '^|' "$work/eval-cpu.txt") <(grep '^|' "$work/eval-dev.txt") \
            | tee -a "$log" >> "$summary"
    fi
    for f in cpu dev; do
        sed -n "s/^.*defect shot(s), \(.*\) per query image/eval on $f: \1 per query image/p" \
            "$work/eval-$f.txt" | tee -a "$log" >> "$summary"
    done
fi
# The device first, then the CPU (once when the device is the CPU).
devices=("$dev")
[ "$dev" = cpu ] || devices+=(cpu)
for d in "${devices[@]}"; do
    tag=$([ "$d" = cpu ] && echo cpu || echo gpu)
    step "train on $d" 300 "$bin" -q train --device "$d" --data "$synth" \
        --category synthetic_tile --base-types blob,crack,scratch --val-types stain \
        --episodes "$((2 * episodes))" --val-every "$episodes" --checkpoint-every "$episodes" \
        --shots 2 --normal-shots 2 --queries 2 --normal-queries 1 -o "$work/train-$tag"
    [ -f "$work/train-$tag/history.csv" ] && cp "$work/train-$tag/history.csv" "$out/history_$tag.csv"
done

# --- 4. benchmarks: the device, then the CPU of the same machine ------------------------------
for d in "${devices[@]}"; do
    # PyTorch references on the GPU (where python3 has torch); none on the CPU, to keep the
    # run short (the README's CPU table has them).
    ref=$([ "$d" = cpu ] && echo none || echo auto)
    export STEP_TEE="$bench"
    step "bench backbone on $d" 300 "$bin" bench backbone --device "$d" --batch "$batches" \
        --repeats "$repeats" --reference "$ref"
    step "bench predict on $d, batch 8" 300 "$bin" bench predict --device "$d" \
        --images "$images" --batch 8 --repeats "$repeats" --reference "$ref"
    step "bench predict on $d, batch 32" 300 "$bin" bench predict --device "$d" \
        --images "$images" --batch 32 --repeats "$repeats" --reference "$ref"
    step "bench predict on $d, hybrid" 300 "$bin" bench predict --device "$d" \
        --images "$images" --batch 32 --scoring hybrid --repeats "$repeats" --reference none
    read -r s n q nq <<< "$train_batches"
    step "bench train on $d" 300 "$bin" bench train --device "$d" --shots "$s" \
        --normal-shots "$n" --queries "$q" --normal-queries "$nq" --repeats "$((2 * repeats))" \
        --reference "$ref"
    read -r s n q nq <<< "$big_train"
    step "bench train on $d, large episodes" 300 "$bin" bench train --device "$d" --shots "$s" \
        --normal-shots "$n" --queries "$q" --normal-queries "$nq" --repeats "$repeats" \
        --reference "$ref"
    step "bench knn on $d" 300 "$bin" bench knn --device "$d" --normal "$knn_normal" \
        --repeats "$repeats" --reference "$ref"
    unset STEP_TEE
done

# --- 5. test binaries, when carried -----------------------------------------------------------
tests_run=0
for name in lib it; do
    t="target/cuda/tests/$name"
    unpack "$t" || continue
    tests_run=1
    filter=$([ "$name" = it ] && echo "device::" || echo "")
    STEP_TEE="$out/tests.log" BPGG_REQUIRE_CUDA=1 step "tests $name $filter" 300 \
        "$t" --test-threads 4 $filter
done
[ "$tests_run" = 1 ] || say "no test binaries in target/cuda/tests (BPGG_CUDA_TESTS=1 \
scripts/build_cuda.sh builds them)"

# --- the figures ------------------------------------------------------------------------------
{
    echo
    echo "== parity"
    grep -E 'FAILED|parity|features|model |  fitted|training|losses|validation' \
        "$out/parity.txt" 2>/dev/null
    echo
    echo "== benchmarks"
    grep -E 'load average|ms/img|images/s|train step|normal images|bpgg / fastest|^  torch' \
        "$bench" 2>/dev/null
} >> "$summary"
say "done in $(( $(date +%s) - start_all )) s; failed steps: ${#failed[@]}${failed:+ (${failed[*]})}"
[ "${#failed[@]}" -eq 0 ]
