#!/usr/bin/env bash
# The GPU tests (tests/suite/cuda.rs) on the host's CUDA emulator (csrc/emu/README.md): no GPU, no
# nvcc. The kernels are built from the same sources with HPSF_CUDA_EMULATE=1 into their own target
# folder (target/emu unless CARGO_TARGET_DIR is set), and run with the emulator's libcuda.so; a
# missing device fails the tests instead of skipping them (HPSF_TEST_NEED_GPU).
#
#   bash scripts/cuda-emu-tests.sh                 # every test of cuda::
#   bash scripts/cuda-emu-tests.sh cuda::gpu_matches  # the tests whose names contain this (the
#                                                  # test harness's arguments, passed on)
# Slow: each GPU thread is a fiber of the host (the bit-for-bit tests take minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
export HPSF_CUDA_EMULATE=1 CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/emu}
exe=$(bash scripts/test-binary.sh suite --features cuda)
[ -x "$exe" ] || { echo "cuda-emu-tests: the test binary was not built" >&2; exit 1; }
lib=$(cd "$CARGO_TARGET_DIR/release/cuda-emu" && pwd)
[ -f "$lib/libcuda.so" ] || { echo "cuda-emu-tests: no emulator driver at $lib/libcuda.so" >&2; exit 1; }
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" HPSF_TEST_NEED_GPU=1
[ $# -gt 0 ] || set -- cuda::
exec "$exe" --test-threads=1 "$@"
