"""healpix_psf.xarray: the bundled NEMO ORCA1 file regridded through xarray equals the direct call
and decodes with xdggs; regular and scattered layouts; a dask-backed time series in three chunks
(threads and processes, the operator pickled to the latter) equals the in-memory result; bad input."""

import pathlib

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
hx = pytest.importorskip("healpix_psf.xarray")
from healpix_psf import PSFResampler  # noqa: E402

ORCA1 = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "nemo_orca1_sst_2015-01.nc"


@pytest.fixture(scope="module")
def tos():
    pytest.importorskip("netCDF4")
    with xr.open_dataset(ORCA1) as ds:
        return ds["tos"].load()


def direct(lon, lat, values, level, **kw):
    """The same fit through PSFResampler: samples valid in some row, per-row stopping."""
    lon, lat = np.asarray(lon, np.float64).ravel(), np.asarray(lat, np.float64).ravel()
    rows = values.reshape(-1, lon.size)
    mask = ~np.isnan(rows).all(axis=0)
    op = PSFResampler(lon, lat, level, sample_mask=mask, dtype=rows.dtype)
    return op, op.fit(rows, per_row=True, **kw)


def test_orca1_round_trip_with_xdggs(tos):
    xdggs = pytest.importorskip("xdggs")
    out = hx.regrid(tos, level=6, lam=1e-3)
    assert out.dims == ("time_counter", "cells") and out.dtype == np.float32 and out.name == "tos"
    assert out.attrs["units"] == "degree_C" and "cell_measures" not in out.attrs
    assert np.array_equal(out["time_counter"], tos["time_counter"])
    op, hval = direct(tos["nav_lon"], tos["nav_lat"], tos.values, 6, lam=1e-3)
    assert np.array_equal(out["cell_ids"], op.cell_ids)
    assert out.values.tobytes() == hval.astype(np.float32).tobytes()
    assert out["cell_ids"].attrs == {"grid_name": "healpix", "level": 6, "indexing_scheme": "nested",
                                     "ellipsoid": "WGS84"}
    ds = xdggs.decode(out.to_dataset())
    info = ds.dggs.grid_info
    assert (info.level, info.indexing_scheme) == (6, "nested")
    # the decoded cells lie where the ocean samples are: each cell centre within two cells' width
    # (2 x 100 km at level 6) of a sample with a value, and the fit close to the samples' average
    centres = ds.dggs.cell_centers()
    clon, clat = np.radians(centres["longitude"].values), np.radians(centres["latitude"].values)
    lon, lat = np.radians(tos["nav_lon"].values.ravel()), np.radians(tos["nav_lat"].values.ravel())
    wet = ~np.isnan(tos.values[0].ravel())
    xyz = np.stack([np.cos(lat[wet]) * np.cos(lon[wet]), np.cos(lat[wet]) * np.sin(lon[wet]), np.sin(lat[wet])], 1)
    cxyz = np.stack([np.cos(clat) * np.cos(clon), np.cos(clat) * np.sin(clon), np.sin(clat)], 1)
    pick = np.arange(0, len(cxyz), 97)
    nearest = np.max(cxyz[pick] @ xyz.T, axis=1)
    assert np.all(np.degrees(np.arccos(np.clip(nearest, -1, 1))) * 111.2 < 200)
    # the field explains the data: back at the ocean points within 0.2 degrees C (RMS)
    y = tos.values[0].ravel()
    back = op.resample(out.values[0])
    assert np.sqrt(np.mean((back[wet] - y[wet]) ** 2)) < 0.2
    # level="auto": from the median spacing of the ocean points (69 km: level 6, as the command line)
    auto = hx.regrid(tos, level="auto", lam=1e-3)
    assert auto["cell_ids"].attrs["level"] == 6 and auto.values.tobytes() == out.values.tobytes()


def test_regular_and_scattered_layouts():
    lat = np.linspace(40.0, 50.0, 41)
    lon = np.linspace(0.0, 12.0, 49)
    time = np.arange(3)
    field = (np.sin(np.radians(lon))[None, None, :] * np.cos(np.radians(lat))[None, :, None] + time[:, None, None])
    da = xr.DataArray(field, dims=("time", "lat", "lon"), name="f",
                      coords={"time": time, "lat": ("lat", lat, {"units": "degrees_north"}),
                              "lon": ("lon", lon, {"units": "degrees_east"})})
    out = hx.regrid(da, level=7, nest=False, lam=1e-2, mask=None)
    glon, glat = np.meshgrid(lon, lat)
    op = PSFResampler(glon.ravel(), glat.ravel(), 7, nest=False)
    assert out.dims == ("time", "cells") and out.dtype == np.float64
    assert out["cell_ids"].attrs["indexing_scheme"] == "ring"
    assert out.values.tobytes() == op.fit(field.reshape(3, -1), lam=1e-2, per_row=True).tobytes()
    # the same grid given lat-last: the spatial order follows the array
    out2 = hx.regrid(da.transpose("lon", "time", "lat"), level=7, nest=False, lam=1e-2, mask=None)
    assert out2.dims == ("time", "cells")
    op2 = PSFResampler(glon.T.ravel(), glat.T.ravel(), 7, nest=False)
    assert np.array_equal(out2["cell_ids"], op2.cell_ids)
    # scattered points on one dimension, coordinates named by their standard_name
    pts = xr.DataArray(field[:, ::3, ::3].reshape(3, -1).T, dims=("obs", "time"),
                       coords={"X": ("obs", glon[::3, ::3].ravel(), {"standard_name": "longitude"}),
                               "Y": ("obs", glat[::3, ::3].ravel(), {"standard_name": "latitude"})})
    out3 = hx.regrid(pts, level=6)
    assert out3.dims == ("time", "cells") and out3.sizes["time"] == 3
    # an operator built once, reused
    op3 = hx.build_operator(pts, 6)
    assert hx.regrid(pts, operator=op3).values.tobytes() == out3.values.tobytes()


def series(tos, steps=6):
    """A 6-step time series from the ORCA1 field (the land mask fixed)."""
    t = np.arange(steps)
    v = tos.values[0][None] + 0.5 * np.sin(t)[:, None, None] * np.cos(np.radians(tos["nav_lat"].values))[None]
    return xr.DataArray(v.astype(np.float32), dims=("time", "y", "x"), name="tos", attrs=tos.attrs,
                        coords={"time": t, "nav_lon": tos["nav_lon"], "nav_lat": tos["nav_lat"]})


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_dask_three_chunks_equal_the_in_memory_call(tos, scheduler):
    dask = pytest.importorskip("dask")
    da = series(tos)
    eager = hx.regrid(da, level=5, lam=1e-3)
    lazy = hx.regrid(da.chunk({"time": 2, "y": 110}), level=5, lam=1e-3)
    assert lazy.chunks is not None and len(lazy.chunks[0]) == 3
    with dask.config.set(scheduler=scheduler):
        got = lazy.compute()
    assert got.dims == eager.dims and np.array_equal(got["cell_ids"], eager["cell_ids"])
    assert got.values.tobytes() == eager.values.tobytes()
    assert got["cell_ids"].attrs == eager["cell_ids"].attrs
    # "first": the mask from the first step only (the same here: the land does not move)
    first = hx.regrid(da.chunk({"time": 2}), level=5, lam=1e-3, mask="first")
    assert first.compute().values.tobytes() == eager.values.tobytes()


def test_bad_input(tos):
    with pytest.raises(ValueError, match="no longitude coordinate"):
        hx.regrid(xr.DataArray(np.zeros((3, 4)), dims=("a", "b")), level=3)
    with pytest.raises(ValueError, match="not a coordinate"):
        hx.regrid(tos, level=6, lon="glam")
    with pytest.raises(TypeError, match="numbers expected"):
        hx.regrid(tos.astype(str), level=6)
    with pytest.raises(TypeError, match="DataArray"):
        hx.regrid(tos.values, level=6)
    with pytest.raises(TypeError, match="level"):
        hx.regrid(tos)
    with pytest.raises(ValueError, match="mask"):
        hx.regrid(tos, level=6, mask=np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="mask"):
        hx.regrid(tos, level=6, mask="most")
    with pytest.raises(ValueError, match="nothing to regrid"):
        hx.regrid(tos * np.nan, level=6)
    with pytest.raises(ValueError, match="already a dimension"):
        hx.regrid(tos, level=6, cells_dim="x")
    small = hx.build_operator(tos.isel(y=slice(0, 100)), 5)
    with pytest.raises(ValueError, match="built for"):
        hx.regrid(tos, operator=small)
    with pytest.raises(TypeError, match="neither level"):
        hx.regrid(tos, level=5, operator=small)
    with pytest.raises(ValueError, match="level"):      # the library's own check
        hx.regrid(tos, level=40)
    nan_coords = tos.copy()
    nan_coords["nav_lat"] = nan_coords["nav_lat"].where(nan_coords["nav_lat"] < 80)
    # samples with NaN coordinates are left out of the operator; with mask=None as well
    assert hx.regrid(nan_coords, level=5, mask=None).sizes["cells"] > 0
