#!/usr/bin/env bash
# Makes sure an MPI library, its headers and mpirun are installed (the `mpi` feature links the
# system's MPI through rsmpi), and libclang, which rsmpi's bindings generator (bindgen) loads:
# installs OpenMPI (libopenmpi-dev, openmpi-bin) and libclang-dev with apt-get when run as root,
# otherwise says what to install. Exit status 0 when present.
set -euo pipefail
have_mpi() { command -v mpicc >/dev/null && command -v mpirun >/dev/null; }
have_clang() { [ -n "${LIBCLANG_PATH:-}" ] || ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; }
if have_mpi && have_clang; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  pkgs=()
  have_mpi || pkgs+=(libopenmpi-dev openmpi-bin)
  have_clang || pkgs+=(libclang-dev)
  echo "installing ${pkgs[*]} (for the mpi feature)" >&2
  { apt-get install -y -qq "${pkgs[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${pkgs[@]}" >/dev/null; }; } && exit 0
fi
echo "the mpi feature needs an MPI library, mpirun and libclang: install libopenmpi-dev, openmpi-bin" \
  "and libclang-dev (Debian/Ubuntu), openmpi-devel and clang-devel (Fedora) or open-mpi and llvm" \
  "(Homebrew)" >&2
exit 1
