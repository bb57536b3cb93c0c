#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run). One release build with the command-line tool and the
# CUDA backend (features cli,cuda; NetCDF-C installed when missing, nvcc 13.0 from PyPI and libclang by
# scripts/setup-cuda.sh) runs every test: the library's, the command line's, the C and Fortran
# programs of the C ABI (gfortran and valgrind installed when missing), the Julia binding under Julia
# 1.5.3 (scripts/julia-setup.sh) and the GPU tests, which print a SKIP line when there is no GPU. Then
# the Python package under pytest (scripts/python-tests.sh, with the reference package in the same
# process), the distributed tests under mpirun (OpenMPI installed when missing), and, on the MPI
# build's library (no CUDA backend), the tests whose checks differ when the CUDA backend is not
# compiled. Each stage prints its wall time ("== stage ... s") to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
# One codegen unit per crate for this script's builds (the Python wheel's and the MPI stage's too):
# on CI's two cores a build is bound by its total CPU work, and cargo's release default of 16 units
# compiles the code inlined into each unit again in each. The suite's build: 10m09 of CPU instead of
# 13m10, 5m24 instead of 6m55 (benches/RESULTS.md). Results do not depend on it (no fast-math; the
# tests compare bits across devices and thread counts). A plain `cargo build` keeps the default, so
# after this script it compiles again.
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=${CARGO_PROFILE_RELEASE_CODEGEN_UNITS:-1}
t0=$SECONDS
stage() { echo "== stage $1: $((SECONDS - t0)) s" >&2; t0=$SECONDS; }
# gfortran and valgrind for the Fortran test program and the C program's memory check (those tests
# print SKIP without them)
for tool in gfortran valgrind; do
  if ! command -v "$tool" >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "test-all: installing $tool" >&2
    apt-get install -y -qq "$tool" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null; } ||
      echo "test-all: could not install $tool: its tests will SKIP" >&2
  fi
done
# the command-line tool's tests (they need NetCDF-C; without it, the suite runs without the tool):
# its output is checked with xdggs and easygems from a venv made here
# (--no-compile: pip would byte-compile every module of the ~870 MB this pulls in, 35 s of a 2-core
# machine; Python compiles the few it imports when it imports them)
if [ ! -x .venv-check/bin/python ]; then
  { python3 -m venv .venv-check &&
    .venv-check/bin/pip install -q --disable-pip-version-check --no-compile xarray netCDF4 xdggs easygems; } ||
    { echo "test-all: could not make .venv-check: the xdggs/easygems check will SKIP" >&2; rm -rf .venv-check; }
fi
# Julia 1.5.3 (Debian bullseye's packages, unpacked into .cache/) runs the Julia binding's test
if jl=$(bash scripts/julia-setup.sh | tail -1) && [ -x "$jl" ]; then
  export HPSF_JULIA=$jl
else
  echo "test-all: Julia could not be set up: the Julia binding's run will SKIP (its static check still runs)" >&2
fi
if bash scripts/netcdf-dev.sh; then
  # the coastlines of the maps (Natural Earth, from a PyPI package; the maps draw without them)
  bash scripts/natural-earth.sh
  cli=cli
else
  echo "SKIP: the healpix-psf command and its tests (no NetCDF-C library)" >&2
  cli=
fi
eval "$(bash scripts/setup-cuda.sh | tail -1)"
stage setup
features=${cli:+$cli,}cuda
# the tests of every target but the examples, then the documentation's examples; the examples are
# type-checked only (compiling them takes as long as the suite: each instantiates the library anew)
cargo test --release --features "$features" --tests
cargo test --release --features "$features" --doc
cargo check --release --features "$features" --examples
stage "the suite (features $features)"
echo "== GPU tests (SKIP lines mean no GPU here) =="
cargo test --release --features "$features" --test suite -- cuda:: --nocapture
# the Python package: built by maturin (pip), tested by pytest (status 3: no Python environment: SKIP)
bash scripts/python-tests.sh || { s=$?; [ "$s" = 3 ] || exit "$s"; }
stage python
# the distributed tests under mpirun on 1–4 ranks (OpenMPI installed when missing); then, with the
# library that build made (no CUDA backend), the tests that check what a build without it says
if bash scripts/mpi-dev.sh; then
  bash scripts/mpi-tests.sh
  stage mpi
  nocuda=${cli:+$cli,}mpi
else
  echo "SKIP: the distributed (mpi) tests (no MPI library)" >&2
  nocuda=$cli
fi
cargo test --release ${nocuda:+--features "$nocuda"} --test suite -- bad_input:: save_load::
if [ -n "$cli" ]; then cargo test --release --features "$nocuda" --test cli; fi
stage "without the CUDA backend (features ${nocuda:-none})"
