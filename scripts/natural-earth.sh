#!/usr/bin/env bash
# Fetches the Natural Earth 1:110m countries (public domain) that the PNG maps of `healpix-psf` draw
# their coastlines from. They come from a package registry, not from this repository: the PyPI wheel
# geopandas 0.14.4 (pure Python, 1.1 MB) ships them as
# geopandas/datasets/naturalearth_lowres/naturalearth_lowres.shp. The wheel is downloaded with pip
# into the git-ignored .cache/natural-earth/, its sha256 checked against the pinned value, and the
# .shp extracted next to it, where build.rs looks for it (a build with the `cli` feature embeds it).
#
# Idempotent: does nothing when the .shp is already there. When the download or the check fails it
# says so and exits 0 without the file: the maps are then drawn without coastlines.
set -euo pipefail

WHEEL=geopandas-0.14.4-py3-none-any.whl
SHA256=3bb6473cb59d51e1a7fe2dbc24a1a063fb0ebdeddf3ce08ddbf8c7ddc99689aa
MEMBER=geopandas/datasets/naturalearth_lowres/naturalearth_lowres.shp

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache/natural-earth"
shp="$cache/naturalearth_lowres.shp"

if [ -s "$shp" ]; then
  echo "natural-earth: $shp is already there"
  exit 0
fi

give_up() {
  echo "natural-earth: $1; the maps will be drawn without coastlines" \
    "(run this script again when the package index can be reached)" >&2
  exit 0
}

mkdir -p "$cache"
python=$(command -v python3 || command -v python || true)
[ -n "$python" ] || give_up "no python3 to run pip with"

if [ ! -f "$cache/$WHEEL" ]; then
  "$python" -m pip download --quiet --no-deps --only-binary=:all: "geopandas==0.14.4" -d "$cache" \
    || give_up "pip could not download geopandas==0.14.4"
fi
[ -f "$cache/$WHEEL" ] || give_up "pip did not leave $WHEEL in $cache"

got=$("$python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' \
  "$cache/$WHEEL")
if [ "$got" != "$SHA256" ]; then
  rm -f "$cache/$WHEEL"
  give_up "$WHEEL has sha256 $got, not the pinned $SHA256 (removed)"
fi

# a wheel is a zip archive: extract the one member with Python's zipfile (no unzip needed)
"$python" - "$cache/$WHEEL" "$MEMBER" "$shp" <<'PY' || give_up "could not extract $MEMBER from $WHEEL"
import sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    data = z.read(member)
with open(dest + ".tmp", "wb") as f:
    f.write(data)
import os
os.replace(dest + ".tmp", dest)
PY
echo "natural-earth: wrote $shp ($(wc -c <"$shp") bytes, Natural Earth 1:110m admin-0 countries)"
