"""Write tests/fixtures/orca2_grid/ from iris-sample-data's orca2_votemper.nc.

Usage: <python with numpy and netCDF4> scripts/orca2_fixture.py PATH/TO/orca2_votemper.nc

Outputs little-endian float32 arrays of the 148 x 180 NEMO ORCA2 T-grid (C order, row = j):
lon.f32, lat.f32 (nav_lon, nav_lat as stored), sst.f32 (votemper, NaN on land) and area.f32,
the area in steradians of each cell's quadrilateral (nav_lon_bnds/nav_lat_bnds vertices joined by
great-circle arcs; two spherical triangles, Van Oosterom-Strackee formula) -- an estimate of the
true cell areas independent of the library's.
"""
import sys
import numpy as np
import netCDF4


def unit(lon, lat):
    lo, la = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], -1)


def triangle(a, b, c):
    dot = lambda u, v: np.einsum("...i,...i", u, v)
    num = np.abs(dot(a, np.cross(b, c)))
    return 2.0 * np.arctan2(num, 1.0 + dot(a, b) + dot(b, c) + dot(c, a))


def main(path, out="tests/fixtures/orca2_grid"):
    d = netCDF4.Dataset(path)
    lon = np.asarray(d["nav_lon"][:], np.float32).ravel()
    lat = np.asarray(d["nav_lat"][:], np.float32).ravel()
    sst = np.ma.filled(np.ma.asarray(d["votemper"][:]).astype(np.float32), np.nan).ravel()
    p = unit(np.asarray(d["nav_lon_bnds"][:], np.float64).reshape(-1, 4),
             np.asarray(d["nav_lat_bnds"][:], np.float64).reshape(-1, 4))
    area = triangle(p[:, 0], p[:, 1], p[:, 2]) + triangle(p[:, 0], p[:, 2], p[:, 3])
    for name, a in [("lon", lon), ("lat", lat), ("sst", sst), ("area", area.astype(np.float32))]:
        a.astype("<f4").tofile(f"{out}/{name}.f32")
    print(f"{lon.size} samples, {np.isnan(sst).sum()} on land, polygon areas sum {area.sum():.4f} sr")


if __name__ == "__main__":
    main(*sys.argv[1:])
