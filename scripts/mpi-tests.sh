#!/usr/bin/env bash
# The distributed tests (feature `mpi`): tests/mpi.rs on 1, 2, 3 and 4 ranks of one machine
# (--oversubscribe: more ranks than cores). As root, OpenMPI needs its allow-run-as-root variables.
set -euo pipefail
cd "$(dirname "$0")/.."
# One build serves every step below: features mpi, and cli where the NetCDF-C library is there (the
# command line as an MPI program, last). (cargo's progress and any build error on stderr: a failed
# build must say why.)
if bash scripts/netcdf-dev.sh >/dev/null 2>&1; then features=cli,mpi; else features=mpi; fi
exe=$(bash scripts/test-binary.sh mpi --features $features)
[ -x "$exe" ] || { echo "mpi-tests: the test binary was not built" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
for np in 1 2 3 4; do
  echo "== tests/mpi.rs on $np rank(s)"
  # a hang is a failure too
  timeout 300 mpirun --oversubscribe -np "$np" "$exe"
done

# the C ABI's distributed entry points from C (mpicc) and Fortran (mpif90, mpi_f08), linked to the
# library that build made (next to the test's executable; a copy of it: a later build with other
# features overwrites it)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$(dirname "$exe")/libhealpix_psf.so" "$tmp/"
mpicc -std=c99 -Wall -Wextra -Werror -O1 -I include tests/c/mpi_test.c -L "$tmp" -Wl,-rpath,"$tmp" \
  -lhealpix_psf -lm -o "$tmp/mpi_test_c"
progs=mpi_test_c
if command -v gfortran >/dev/null; then
  fflags="-std=f2018 -Wall -Werror -J $tmp"
  mpif90 $fflags -Wno-unused-dummy-argument -c include/healpix_psf.f90 -o "$tmp/healpix_psf.o"
  mpif90 $fflags -Wno-unused-dummy-argument -c include/healpix_psf_mpi.f90 -o "$tmp/healpix_psf_mpi.o"
  mpif90 $fflags tests/fortran/test_mpi.f90 "$tmp/healpix_psf.o" "$tmp/healpix_psf_mpi.o" -L "$tmp" \
    -Wl,-rpath,"$tmp" -lhealpix_psf -o "$tmp/mpi_test_f"
  progs="$progs mpi_test_f"
else
  echo "SKIP: the Fortran program of the distributed C ABI (no gfortran)" >&2
fi
for prog in $progs; do
  for np in 1 2 3 4; do
    echo "== $prog on $np rank(s)"
    timeout 120 mpirun --oversubscribe -np "$np" "$tmp/$prog"
  done
done

# the command line as an MPI program (features cli and mpi): the ORCA1 file and a regular grid split
# into tiles on 1-4 ranks write the single process's file (tests/cli_mpi.rs)
if [ "$features" = cli,mpi ]; then
  echo "== tests/cli_mpi.rs: healpix-psf regrid --distributed under mpirun"
  timeout 600 cargo test --release --features "$features" --test cli_mpi -- --nocapture
else
  echo "SKIP: the distributed command line (no NetCDF-C library)" >&2
fi
