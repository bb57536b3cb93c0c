"""xarray (and dask) front end: regrid a DataArray with longitude/latitude coordinates onto HEALPix.

>>> import xarray as xr, healpix_psf.xarray as hx                          # doctest: +SKIP
>>> sst = xr.open_dataset("nemo_orca1_sst.nc")["tos"]      # (time_counter, y, x), nav_lon/nav_lat
>>> cells = hx.regrid(sst, level=6, lam=1e-3)              # (time_counter, cells)
>>> import xdggs; xdggs.decode(cells.to_dataset())          # the cell_ids coordinate carries xdggs' attributes

The spatial dimensions are those of the longitude/latitude coordinates (found by their CF
`standard_name` or `units`, or by name: lon/longitude/nav_lon…, or given): 1-D coordinates on one
dimension (scattered points), 2-D coordinates (curvilinear grids such as NEMO's ORCA), or two 1-D
coordinates on their own dimensions (a regular grid). Every other dimension is kept, and each of its
elements is one row of the fit. A dask-backed array is fitted lazily, chunk by chunk over the other
dimensions (`xarray.apply_ufunc(..., dask="parallelized")`): the operator is built once, now, and
shipped to the workers by pickling. Rows stop on their own residual by default (`per_row=True`), so
the result does not depend on the chunking.
"""

from __future__ import annotations

import numpy as np

from . import PSFResampler, _core

__all__ = ["regrid", "build_operator", "spatial_dims"]

_LON_NAMES = ("lon", "longitude", "nav_lon", "glamt", "lont", "xlon", "x_lon")
_LAT_NAMES = ("lat", "latitude", "nav_lat", "gphit", "latt", "xlat", "y_lat")
_LON_UNITS = ("degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese")
_LAT_UNITS = ("degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn")


def _xr():
    try:
        import xarray
    except ImportError as e:  # pragma: no cover
        raise ImportError("healpix_psf.xarray needs xarray: pip install 'healpix-psf[xarray]'") from e
    return xarray


def _find(da, given, names, units, standard_name, what):
    """The coordinate `given` (a name or a DataArray), or the one the CF attributes or names mark."""
    xr = _xr()
    if isinstance(given, xr.DataArray):
        return given
    if given is not None:
        if given not in da.coords:
            raise ValueError(f"{what}: {given!r} is not a coordinate of the array (it has {sorted(map(str, da.coords))})")
        return da.coords[given]
    found = [c for c in da.coords.values() if c.attrs.get("standard_name") == standard_name]
    found = found or [c for c in da.coords.values()
                      if str(c.attrs.get("units", "")).lower().replace(" ", "") in units]
    found = found or [da.coords[n] for n in names if n in da.coords]
    if not found:
        raise ValueError(
            f"no {what} coordinate found: none has standard_name {standard_name!r} or units {units[0]!r}, or is "
            f"named {'/'.join(names[:3])}; give it with {what[:3]}=NAME")
    return found[0]


def spatial_dims(da, lon=None, lat=None):
    """(lon, lat, dims): the longitude and latitude coordinates of `da` broadcast over its spatial
    dimensions `dims` (in the array's order)."""
    xr = _xr()
    lo = _find(da, lon, _LON_NAMES, _LON_UNITS, "longitude", "longitude")
    la = _find(da, lat, _LAT_NAMES, _LAT_UNITS, "latitude", "latitude")
    dims = set(lo.dims) | set(la.dims)
    missing = dims - set(da.dims)
    if not dims or missing:
        raise ValueError(f"the longitude/latitude dimensions {sorted(map(str, dims))} are not all dimensions of "
                         f"the array {tuple(map(str, da.dims))}")
    order = tuple(d for d in da.dims if d in dims)
    lo, la = xr.broadcast(lo, la)
    return lo.transpose(*order), la.transpose(*order), order


def _sample_mask(da, dims, lon, lat, mask):
    """The samples to build from (flattened over `dims`), or None for all."""
    xr = _xr()
    finite = np.isfinite(np.asarray(lon, dtype=np.float64)) & np.isfinite(np.asarray(lat, dtype=np.float64))
    rest = [d for d in da.dims if d not in dims]
    if isinstance(mask, str):
        if mask == "any":
            m = da.notnull().any(rest) if rest else da.notnull()
        elif mask == "first":
            m = da.isel({d: 0 for d in rest}).notnull()
        else:
            raise ValueError(f"mask: {mask!r}: give 'any', 'first', None or booleans over {dims}")
        m = np.asarray(m.transpose(*dims).values, dtype=bool) & finite
    elif mask is None:
        m = finite
    else:
        m = mask.transpose(*dims).values if isinstance(mask, xr.DataArray) else np.asarray(mask)
        if m.shape != finite.shape:
            raise ValueError(f"mask: shape {m.shape}, the spatial dimensions {dims} have {finite.shape}")
        m = m.astype(bool) & finite
    return None if m.all() else m.ravel()


def build_operator(da, level, *, lon=None, lat=None, mask="any", **options):
    """The `PSFResampler` of the samples of `da` at `level` (0-29, or "auto": the finest level whose
    cells are at least as wide as the median spacing of the samples used — as the command line's
    `--level auto`; finer cells than samples make a weakly determined fit). What `regrid` builds; reuse it with
    `regrid(..., operator=op)` for other variables or files on the same grid). `mask`: "any"
    (default: the samples with a value in at least one element of the other dimensions — with
    dask, one pass over the data), "first" (those with a value in the first element: cheap with
    dask), None (all samples with finite coordinates) or booleans over the spatial dimensions.
    `options`: PSFResampler's (Npt, sigma_m, threshold, nest, ellipsoid, dtype — default the data's
    float32 or float64 —, device, num_threads, area, out_cell_ids …)."""
    lo, la, dims = spatial_dims(da, lon, lat)
    m = _sample_mask(da, dims, lo, la, mask)
    if m is not None and not m.any():
        raise ValueError("no sample has a value (and finite coordinates): nothing to regrid")
    options.setdefault("dtype", np.float32 if da.dtype == np.float32 else np.float64)
    lon_v = np.asarray(lo.values, dtype=np.float64).ravel()
    lat_v = np.asarray(la.values, dtype=np.float64).ravel()
    if m is not None:
        # left-out samples' coordinates are not read: make NaN ones harmless for the checks
        lon_v, lat_v = np.where(m, lon_v, 0.0), np.where(m, lat_v, 0.0)
    if isinstance(level, str):
        if level != "auto":
            raise ValueError(f"level: {level!r}: give 0-29 or 'auto'")
        used = slice(None) if m is None else m
        level, _ = _core.level_for_samples(np.ascontiguousarray(lon_v[used]), np.ascontiguousarray(lat_v[used]))
    return PSFResampler(lon_v, lat_v, level, sample_mask=m, **options)


def _healpix_attrs(op):
    attrs = {"grid_name": "healpix", "level": int(op.level), "indexing_scheme": "nested" if op.nest else "ring"}
    if op.ellipsoid.upper() == "WGS84":
        attrs["ellipsoid"] = "WGS84"
    return attrs


def regrid(da, level=None, *, lon=None, lat=None, mask="any", operator=None, cells_dim="cells", lam=0.0,
           max_iter=100, tol=1e-8, per_row=True, fit_options=None, **options):
    """`da` (a DataArray with longitude/latitude coordinates) fitted onto HEALPix cells of `level`
    (0-29 or "auto", see `build_operator`).

    Returns a DataArray on the other dimensions of `da` and `cells_dim`, with the coordinate
    `cell_ids` (int64, ascending, the xdggs attributes grid_name/level/indexing_scheme/ellipsoid:
    `xdggs.decode` reads it), `da`'s name, attributes (but those naming source-grid variables:
    cell_measures, coordinates, bounds, grid_mapping) and the coordinates of its other dimensions,
    in `da`'s float type (float32 stays float32). NaN marks missing samples (left out of their
    row's problem) and cells without any valid sample.

    lam, max_iter, tol, per_row: the fit's (see `PSFResampler.fit`; per-row stopping by default,
    so that every row's result is the same whatever the other rows and the chunks);
    fit_options: a dict of its other keywords (lower, upper, conservative, missing, empty_cells).
    lon, lat: coordinate names (or DataArrays) when they cannot be found from CF attributes.
    operator: a PSFResampler built before (`build_operator`) for these samples; else one is built
    from `level`, `mask` and `options` (see `build_operator`).

    With dask-backed data the result is lazy: each chunk of the other dimensions is fitted when
    computed (the spatial dimensions are put in one chunk).
    """
    xr = _xr()
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"regrid takes an xarray.DataArray, got {type(da).__name__}")
    if da.dtype.kind not in "fiu":
        raise TypeError(f"{da.name or 'the array'}: numbers expected, got dtype {da.dtype}")
    _, _, dims = spatial_dims(da, lon, lat)
    n = int(np.prod([da.sizes[d] for d in dims]))
    if operator is None:
        if level is None:
            raise TypeError("regrid: give level= (or operator=)")
        operator = build_operator(da, level, lon=lon, lat=lat, mask=mask, **options)
    elif options or level is not None:
        raise TypeError("regrid: with operator=, give neither level nor construction options")
    if operator.N != n:
        raise ValueError(f"operator: built for {operator.N} samples, the array has {n} over {dims}")
    if cells_dim in da.dims:
        raise ValueError(f"cells_dim: {cells_dim!r} is already a dimension of the array")
    out_dtype = np.dtype(np.float32) if da.dtype == np.float32 else np.dtype(np.float64)
    fit_kw = dict(fit_options or {}, lam=lam, max_iter=max_iter, tol=tol, per_row=per_row)
    k = operator.K

    def fit_block(values):
        # values: (..., *spatial) -> (..., K)
        lead = values.shape[: values.ndim - len(dims)]
        rows = values.reshape(-1, n)
        if rows.shape[0] == 0:
            return np.empty(lead + (k,), dtype=out_dtype)
        hval = np.asarray(operator.fit(rows, **fit_kw), dtype=out_dtype)
        return hval.reshape(lead + (k,))

    if da.chunks is not None:
        da = da.chunk({d: -1 for d in dims})
    out = xr.apply_ufunc(
        fit_block, da,
        input_core_dims=[list(dims)], output_core_dims=[[cells_dim]],
        dask="parallelized", output_dtypes=[out_dtype],
        dask_gufunc_kwargs={"output_sizes": {cells_dim: k}},
        keep_attrs=True,
    )
    # attributes that name variables of the source grid do not hold on the cells
    for key in ("cell_measures", "coordinates", "bounds", "grid_mapping"):
        out.attrs.pop(key, None)
    ids = xr.Variable((cells_dim,), operator.cell_ids, attrs=_healpix_attrs(operator))
    return out.assign_coords(cell_ids=ids)
