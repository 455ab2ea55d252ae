#!/usr/bin/env bash
# Builds `target/release/bpgg` with candle's CUDA backend (`--features cuda`) on a machine that
# has no GPU and no CUDA toolkit, from PyPI's CUDA wheels only.
#
#   scripts/build_cuda.sh [COMPUTE_CAP]      # default 90 (H100 / H200)
#
# What it does:
# 1. creates a virtual environment (.cuda/venv, or $BPGG_CUDA_DIR/venv) and installs, from PyPI,
#    the CUDA 13.0 toolkit parts the build needs (every wheel lands in one tree,
#    site-packages/nvidia/cu13: bin/, include/, lib/, nvvm/):
#      nvidia-cuda-nvcc     nvcc, ptxas, fatbinary, nvlink (compiles candle's kernels)
#      nvidia-nvvm          cicc and libdevice (nvcc's device front end)
#      nvidia-cuda-crt      nvcc's crt/ headers
#      nvidia-cuda-runtime  cuda.h, cuda_runtime.h, cuda_fp16/bf16/fp8.h, libcudart.so.13
#      nvidia-cuda-cccl     thrust, cub and libcu++ headers (candle's sort and MoE kernels)
#      nvidia-cublas        libcublas.so.13, libcublasLt.so.13   (linked: candle's matmul)
#      nvidia-curand        libcurand.so.10                      (linked: candle's rand)
#      nvidia-cuda-nvrtc    libnvrtc.so.13                       (linked by cudarc)
#    CUDA 13.0, not 12.x or a newer 13.x: the GPU machine this build is checked on has the
#    CUDA 13.0 driver (580) and CUDA 13 libraries; PTX from a newer nvcc is refused by an older
#    driver, and a CUDA 12 build would need libcublas.so.12, which is not there.
# 2. links the libraries under their unversioned names in nvidia/cu13/lib (a toolkit ships
#    those links; the wheels do not), and builds a link-time stub of the driver library,
#    nvidia/cu13/lib/stubs/libcuda.so (soname libcuda.so.1), from the driver functions that
#    cudarc declares. A toolkit ships that stub too; no wheel does. At run time the real
#    libcuda.so.1 of the NVIDIA driver is used.
# 3. runs `cargo build --release -p bpgg-cli --features cuda` with nvcc on PATH, CUDA_ROOT /
#    CUDA_PATH / CUDA_HOME at that tree and CUDA_COMPUTE_CAP given (there is no GPU to detect);
# 4. writes a copy without debug info to target/cuda/bpgg and that copy compressed,
#    target/cuda/bpgg.xz (about 10 MB: what fits the 64 MiB a device run carries;
#    scripts/gpu_check.sh unpacks it), and lists the shared libraries it needs;
# 5. with BPGG_CUDA_TESTS=1, also builds the bpgg crate's test binaries with the feature (its unit
#    tests and the `it` integration tests) into target/cuda/tests/{lib,it}.xz, which
#    scripts/gpu_check.sh runs on the GPU when they are there.
#
# Everything comes from PyPI and crates.io; nothing else is downloaded. The default build and
# CI stay CPU-only: this script is the check of the CUDA build.
#
# Environment: BPGG_CUDA_DIR (default .cuda: the venv), CARGO_BUILD_JOBS (default 2; nvcc gets
# as many threads through CUDAFORGE_THREADS), BPGG_CUDA_TESTS=1 (step 5),
# BPGG_CUDA_CLIPPY=1 to also run `cargo clippy --features cuda` in the same environment.
#
# Time: 46 min from scratch on 2 shared cores (load average 6-14), about 27 of them nvcc
# compiling candle's kernels (its quantized-matmul kernels for sm_90a: a few minutes each);
# a rebuild after a change to bpgg takes a few minutes. Disk: 1.3 GB for the venv, about
# 1.5 GB more under target/release.
# `scripts/build_cuda.sh --env` prints the environment (to `eval`) without building.
set -euo pipefail
cd "$(dirname "$0")/.."

print_env_only=0
if [ "${1:-}" = "--env" ]; then
    print_env_only=1
    shift
fi
compute_cap="${1:-90}"
case "$compute_cap" in
    ''|*[!0-9a-z]*) echo "error: COMPUTE_CAP must look like 90, 89 or 90a, got '$compute_cap'" >&2; exit 2 ;;
esac

cuda_dir="${BPGG_CUDA_DIR:-$PWD/.cuda}"
venv="$cuda_dir/venv"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$CARGO_BUILD_JOBS}"

# One CUDA release (13.0): every version pinned so that a rerun installs the same toolkit.
wheels=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85
    nvidia-cublas==13.0.2.14
    nvidia-curand==10.4.0.35
    nvidia-cuda-nvrtc==13.0.88
)

log() { [ "$print_env_only" = 1 ] || echo "== $*" >&2; }
start=$(date +%s)

if [ ! -x "$venv/bin/python" ]; then
    log "virtual environment $venv"
    mkdir -p "$cuda_dir"
    python3 -m venv "$venv"
fi
stamp="$venv/.bpgg-wheels"
if [ "$(cat "$stamp" 2>/dev/null)" != "${wheels[*]}" ]; then
    log "installing the CUDA wheels from PyPI (about 0.6 GB, most of it cuBLAS)"
    "$venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check "${wheels[@]}"
    echo "${wheels[*]}" > "$stamp"
fi

site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cuda_root="$site/nvidia/cu13"
[ -x "$cuda_root/bin/nvcc" ] || { echo "error: no nvcc in $cuda_root/bin after the install" >&2; exit 1; }

# Unversioned names for the linker (-lcublas finds libcublas.so), as a toolkit's lib64 has them.
for lib in "$cuda_root"/lib/lib*.so.*; do
    base=$(basename "$lib")
    case "$base" in *.alt.so*|libnvrtc-builtins*) continue ;; esac
    ln -sfn "$base" "$cuda_root/lib/${base%%.so.*}.so"
done

# The driver library's link-time stub: every driver function cudarc may call, each an empty
# symbol, under the driver's soname. Rebuilt when cudarc's version changes.
cudarc_sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$(
    sed -n '/^name = "cudarc"$/{n;s/^version = "\(.*\)"$/\1/p}' Cargo.lock)"/src/driver/sys/mod.rs 2>/dev/null | head -1 || true)
if [ -z "$cudarc_sys" ]; then
    log "fetching crates (cudarc's driver bindings name the stub's functions)"
    cargo fetch --quiet
    cudarc_sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$(
        sed -n '/^name = "cudarc"$/{n;s/^version = "\(.*\)"$/\1/p}' Cargo.lock)"/src/driver/sys/mod.rs | head -1)
fi
stub_dir="$cuda_root/lib/stubs"
if [ ! -f "$stub_dir/libcuda.so" ] || [ "$cudarc_sys" -nt "$stub_dir/libcuda.so" ]; then
    log "driver stub libcuda.so from $(dirname "$(dirname "$(dirname "$(dirname "$cudarc_sys")")")")"
    mkdir -p "$stub_dir"
    grep -ohE '^pub unsafe fn cu[A-Za-z0-9_]+' "$cudarc_sys" | sed 's/^pub unsafe fn //' | sort -u \
        | sed 's/.*/void &(void) {}/' > "$stub_dir/libcuda_stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub_dir/libcuda.so" "$stub_dir/libcuda_stub.c"
fi

export PATH="$cuda_root/bin:$PATH"
export CUDA_ROOT="$cuda_root" CUDA_PATH="$cuda_root" CUDA_HOME="$cuda_root"
export CUDA_COMPUTE_CAP="$compute_cap"
if [ "$print_env_only" = 1 ]; then
    printf 'export PATH=%q CUDA_ROOT=%q CUDA_PATH=%q CUDA_HOME=%q CUDA_COMPUTE_CAP=%q\n' \
        "$PATH" "$CUDA_ROOT" "$CUDA_PATH" "$CUDA_HOME" "$CUDA_COMPUTE_CAP"
    exit 0
fi
log "$(nvcc --version | tail -2 | head -1); compute capability $compute_cap; $(( $(date +%s) - start )) s so far"

log "cargo build --release -p bpgg-cli --features cuda (-j$CARGO_BUILD_JOBS)"
cargo build --release -p bpgg-cli --features cuda
built=$(date +%s)

# A copy without debug info, and that copy compressed (what a device run carries).
pack() {
    objcopy --strip-debug "$1" "$2.tmp"
    mv "$2.tmp" "$2"
    xz -T"$CARGO_BUILD_JOBS" -6 -c "$2" > "$2.xz.tmp"
    mv "$2.xz.tmp" "$2.xz"
}
mkdir -p target/cuda
pack target/release/bpgg target/cuda/bpgg
log "target/release/bpgg built; target/cuda/bpgg (no debug info): $(du -h target/cuda/bpgg | cut -f1), \
target/cuda/bpgg.xz (to carry): $(du -h target/cuda/bpgg.xz | cut -f1)"
echo "shared libraries it needs (the CUDA ones come from the driver and the CUDA 13 runtime):"
readelf -d target/cuda/bpgg | sed -n 's/.*(NEEDED).*\[\(.*\)\]/  \1/p'

if [ "${BPGG_CUDA_TESTS:-0}" = 1 ]; then
    log "cargo test --release -p bpgg --features cuda --no-run (the test binaries)"
    mkdir -p target/cuda/tests
    cargo test --release -p bpgg --features cuda --no-run --message-format=json \
        > target/cuda/tests/build.json
    for name in lib it; do
        target=$([ "$name" = lib ] && echo bpgg || echo it)
        exe=$(grep "\"name\":\"$target\",\"src_path\"" target/cuda/tests/build.json \
            | grep '"test":true' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
        [ -n "$exe" ] || { echo "error: no test executable for $target" >&2; exit 1; }
        pack "$exe" "target/cuda/tests/$name"
        rm -f "target/cuda/tests/$name"
        log "target/cuda/tests/$name.xz: $(du -h "target/cuda/tests/$name.xz" | cut -f1)"
    done
    rm -f target/cuda/tests/build.json
fi

if [ "${BPGG_CUDA_CLIPPY:-0}" = 1 ]; then
    # In the release profile: it reuses the kernels nvcc compiled above (a dev-profile check
    # would compile them all again).
    log "cargo clippy --release --workspace --all-targets --features bpgg/cuda,bpgg-cli/cuda"
    cargo clippy --release --workspace --all-targets --features bpgg/cuda,bpgg-cli/cuda \
        -- -D warnings
fi
log "done in $(( $(date +%s) - start )) s (cargo build: $(( built - start )) s from the start)"
