#!/usr/bin/env bash
# Makes sure the NetCDF-C library and headers are installed (the `cli` feature links them): installs
# libnetcdf-dev with apt-get when run as root, otherwise says what to install. Exit status 0 when present.
set -euo pipefail
if command -v nc-config >/dev/null && [ -n "$(nc-config --libs 2>/dev/null)" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing libnetcdf-dev (NetCDF-C, for the healpix-psf command)" >&2
  { apt-get install -y -qq libnetcdf-dev >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libnetcdf-dev >/dev/null; }; } && exit 0
fi
echo "the healpix-psf command needs the NetCDF-C library: install libnetcdf-dev (Debian/Ubuntu)," \
  "netcdf-devel (Fedora) or netcdf (Homebrew, conda-forge libnetcdf)" >&2
exit 1
