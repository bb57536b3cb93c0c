#!/usr/bin/env bash
# The main job: regrid real ocean-model output (NEMO ORCA1 sea-surface temperature, January 2015, from
# iris-sample-data, Open Government Licence: tests/data/README.md) to HEALPix with the command-line
# tool, writing out/sst_healpix.nc (CF/xdggs NetCDF) and out/sst_healpix.png (input beside output).
# Extra arguments go to `healpix-psf regrid` (e.g. --level 7 --lower input --upper input).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/netcdf-dev.sh
bash scripts/natural-earth.sh # coastlines for the map (it is drawn without them if this fails)
mkdir -p out
cargo run --release --features cli -- regrid tests/data/nemo_orca1_sst_2015-01.nc --var tos \
  -o out/sst_healpix.nc --png out/sst_healpix.png --png-input "$@"
