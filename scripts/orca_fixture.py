"""Write a NEMO ORCA T-grid and its sea temperature as flat float32 arrays.

Usage: <python with numpy and netCDF4> scripts/orca_fixture.py NC_FILE [OUT_DIR]

NC_FILE is one of iris-sample-data's NEMO files: orca2_votemper.nc (ORCA2, 148 x 180; OUT_DIR
defaults to tests/fixtures/orca2_grid) or NEMO/nemo_1m_*_grid-T.nc (ORCA1, 330 x 360, variable tos).
Outputs little-endian float32 arrays (C order, row = j): lon.f32, lat.f32 (nav_lon, nav_lat as
stored), sst.f32 (votemper or tos, NaN on land) and area.f32,
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
    v = d.variables
    lon = np.asarray(d["nav_lon"][:], np.float32).ravel()
    lat = np.asarray(d["nav_lat"][:], np.float32).ravel()
    name = "votemper" if "votemper" in v else "tos"
    sst = np.ma.filled(np.ma.asarray(d[name][:]).astype(np.float32), np.nan).ravel()
    blon, blat = ("nav_lon_bnds", "nav_lat_bnds") if "nav_lon_bnds" in v else ("bounds_lon", "bounds_lat")
    p = unit(np.asarray(d[blon][:], np.float64).reshape(-1, 4), np.asarray(d[blat][:], np.float64).reshape(-1, 4))
    area = triangle(p[:, 0], p[:, 1], p[:, 2]) + triangle(p[:, 0], p[:, 2], p[:, 3])
    for name, a in [("lon", lon), ("lat", lat), ("sst", sst), ("area", area.astype(np.float32))]:
        a.astype("<f4").tofile(f"{out}/{name}.f32")
    print(f"{lon.size} samples, {np.isnan(sst).sum()} on land, polygon areas sum {area.sum():.4f} sr")


if __name__ == "__main__":
    main(*sys.argv[1:])
