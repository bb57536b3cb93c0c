#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): the CPU build, then the CUDA build. The CUDA build
# installs nvcc from PyPI and libclang if missing (scripts/setup-cuda.sh), compiles the kernels and
# runs every test; tests that need a GPU print a SKIP line when there is none.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release
eval "$(bash scripts/setup-cuda.sh | tail -1)"
cargo test --release --features cuda
echo "== GPU tests (SKIP lines mean no GPU here) =="
cargo test --release --features cuda --test cuda -- --nocapture
