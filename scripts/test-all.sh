#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): the CPU build with the command-line tool (NetCDF-C
# installed when missing) and the C and Fortran programs of the C ABI (gfortran and valgrind installed
# when missing), the Julia binding under Julia 1.5.3 (scripts/julia-setup.sh), the Python package
# under pytest (scripts/python-tests.sh, with the reference package in the same process), the
# distributed tests under mpirun (OpenMPI installed when missing), then the CUDA build. The CUDA build
# installs nvcc from PyPI and libclang if missing (scripts/setup-cuda.sh), compiles the kernels and
# runs every test; tests that need a GPU print a SKIP line when there is none.
set -euo pipefail
cd "$(dirname "$0")/.."
# gfortran and valgrind for the Fortran test program and the C program's memory check (those tests
# print SKIP without them)
for tool in gfortran valgrind; do
  if ! command -v "$tool" >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "test-all: installing $tool" >&2
    apt-get install -y -qq "$tool" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null; } ||
      echo "test-all: could not install $tool: its tests will SKIP" >&2
  fi
done
# the CPU suite with the command-line tool (needs NetCDF-C; without it, the suite without the tool);
# its output is checked with xdggs and easygems from a venv made here
if [ ! -x .venv-check/bin/python ]; then
  { python3 -m venv .venv-check && .venv-check/bin/pip install -q xarray netCDF4 xdggs easygems; } ||
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
  cargo test --release --features cli
else
  echo "SKIP: the healpix-psf command and its tests (no NetCDF-C library)" >&2
  cargo test --release
fi
# the distributed tests under mpirun on 1–4 ranks (OpenMPI installed when missing)
# the Python package: built by maturin (pip), tested by pytest (status 3: no Python environment: SKIP)
bash scripts/python-tests.sh || { s=$?; [ "$s" = 3 ] || exit "$s"; }
if bash scripts/mpi-dev.sh; then
  bash scripts/mpi-tests.sh
else
  echo "SKIP: the distributed (mpi) tests (no MPI library)" >&2
fi
eval "$(bash scripts/setup-cuda.sh | tail -1)"
cargo test --release --features cuda
echo "== GPU tests (SKIP lines mean no GPU here) =="
cargo test --release --features cuda --test cuda -- --nocapture
