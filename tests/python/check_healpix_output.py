"""Checks that an output of `healpix-psf regrid` is read by xdggs and easygems as intended.

Usage: python check_healpix_output.py OUTPUT.nc VAR LEVEL
Prints one line per check; exits non-zero on the first failure.
"""
import sys

import numpy as np
import xarray as xr
import xdggs
import easygems.healpix as egh

path, var, level = sys.argv[1], sys.argv[2], int(sys.argv[3])
ds = xr.open_dataset(path)

# xdggs: decode the cell ids and recompute the cell centres with its own HEALPix backend
dec = ds.pipe(xdggs.decode)
info = dec.dggs.grid_info
assert info.level == level and info.indexing_scheme == "nested", info
lon, lat = info.cell_ids2geographic(dec.cell_ids.values)
dlon = np.abs((lon - ds.lon.values + 180.0) % 360.0 - 180.0).max()
dlat = np.abs(lat - ds.lat.values).max()
assert dlon < 1e-9 and dlat < 1e-9, (dlon, dlat)
print(f"xdggs {xdggs.__version__}: level {info.level}, {info.indexing_scheme}, ellipsoid {info.ellipsoid}; "
      f"cell centres equal the file's to {max(dlon, dlat):.1e} deg")

# easygems on the variable as xarray opens it
da = ds[var]
nside, nested, index = egh.get_nside(da), egh.is_nested(da), egh.get_index(da).values
assert nside == 2**level and nested, (nside, nested)
assert np.array_equal(index, ds.cell_ids.values)
print(f"easygems: nside {nside}, nested {nested}, index '{egh.get_index_name(da)}' = cell_ids")
