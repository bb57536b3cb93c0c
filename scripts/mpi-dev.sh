#!/usr/bin/env bash
# Makes sure an MPI library, its headers and mpirun are installed (the `mpi` feature links the
# system's MPI through rsmpi): installs OpenMPI (libopenmpi-dev, openmpi-bin) with apt-get when run
# as root, otherwise says what to install. Exit status 0 when present.
set -euo pipefail
if command -v mpicc >/dev/null && command -v mpirun >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing OpenMPI (libopenmpi-dev openmpi-bin, for the mpi feature)" >&2
  { apt-get install -y -qq libopenmpi-dev openmpi-bin >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq libopenmpi-dev openmpi-bin >/dev/null; }; } && exit 0
fi
echo "the mpi feature needs an MPI library and mpirun: install libopenmpi-dev and openmpi-bin" \
  "(Debian/Ubuntu), openmpi-devel (Fedora) or open-mpi (Homebrew)" >&2
exit 1
