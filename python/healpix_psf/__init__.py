"""healpix-psf: regrid unstructured longitude/latitude samples onto HEALPix cells with a Gaussian
point-spread kernel, and fit the HEALPix field that best explains the samples (damped least squares
by conjugate gradient). A Rust library; this is its Python interface.

>>> import numpy as np
>>> from healpix_psf import PSFResampler
>>> rng = np.random.default_rng(0)
>>> lon, lat = rng.uniform(7.0, 9.0, 5000), rng.uniform(44.0, 46.0, 5000)
>>> op = PSFResampler(lon, lat, level=10)
>>> hval = op.fit(np.sin(np.radians(lon)) + lat / 100, lam=1e-2)   # (K,): one value per cell
>>> hval.shape == (op.K,)
True

Values are `(N,)` or `(B, N)` (B rows solved together; NaN = missing); cell fields `(K,)` or
`(B, K)` over `op.cell_ids`. Units: degrees for coordinates, metres for `sigma_m`, `radius` and
`d_m`, the areas' own unit (m² for the estimates) for `area`.
"""

from __future__ import annotations

import numpy as np

from . import _core

__all__ = ["PSFResampler", "__version__"]
__version__ = _core.version()

_AREA_MODES = ("auto", "spacing", "reference", "uniform")


def _as_values(val, name, n):
    """An array-like (numpy, lists, torch CPU tensors: anything numpy can read) as an array of
    shape (B, n), whether it was 1-D, and the float dtype of results (float32 for float32 input,
    else float64)."""
    a = np.asarray(val)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name}: numbers expected, got dtype {a.dtype}")
    # results in float32 or float64: float32 stays, anything else becomes float64
    dtype = np.dtype(np.float32) if a.dtype == np.float32 else np.dtype(np.float64)
    if a.ndim == 1:
        one = True
        a = a.reshape(1, -1)
    elif a.ndim == 2:
        one = False
    else:
        raise ValueError(f"{name}: shape {a.shape}: give ({n},) or (B, {n})")
    if a.shape[1] != n:
        raise ValueError(f"{name}: shape {np.asarray(val).shape}: give ({n},) or (B, {n})")
    return a, one, dtype


class PSFResampler:
    """The PSF operator of samples at `lon_deg`, `lat_deg` (degrees) onto HEALPix cells of `level`.

    Parameters (the reference's, keyword-compatible):
        level: HEALPix level (0-29); cells are about 6 500 km / 2**level wide.
        Npt: links per sample (cells each sample feeds; default 9).
        sigma_m: Gaussian kernel scale in metres (default: the cell size at `level`).
        threshold: a cell is kept when its summed kernel weight reaches this (default 0.1).
        nest: NESTED cell ids (default) or RING (False).
        radius: sphere radius in metres for the distances (default 6 371 000).
        ellipsoid: "WGS84" (geodetic latitudes, default) or "sphere".
        dtype: np.float64 (default) or np.float32: the operator's precision.
        device: "cpu" (default), "cuda" or "cuda:N" (a build with the `cuda` feature).
        ring_weight, ring_search_init, ring_search_max: the search rings (None: the reference's rules).
        num_threads: CPU threads (0: all).
        verbose: print the construction's stages.
    And this library's:
        area: "auto" (default: from the sample spacing on a grid of latitude rings, else uniform),
            "spacing", "reference" (the reference's ring estimate), "uniform", or N areas.
        out_cell_ids: restrict the output to these cells (ids in the scheme of `nest`).
        fill_missing_out_cells: with out_cell_ids, give cells without support the nearest sample's value.
        sample_mask: N booleans, the samples to build from (e.g. the points that are not land).

    Attributes: N, K, Npt, level, sigma_m, radius, threshold, nest, dtype, device, cell_ids (K,)
    int64, hi (N, Npt) int64 (-1: no link), d_m (N, Npt) metres, area (N,), cell_weight (K,), and M
    (N×K) and MT (K×N) as scipy.sparse CSR matrices (scipy needed).

    An operator pickles (for dask workers and multiprocessing: the library's saved format, loaded
    on the same device), and `save(path)` / `PSFResampler.load(path)` keep it in a file.
    """

    def __init__(self, lon_deg, lat_deg, level, Npt=9, sigma_m=None, threshold=0.1, nest=True,
                 radius=6371000.0, ellipsoid="WGS84", dtype=np.float64, device="cpu", ring_weight=None,
                 ring_search_init=None, ring_search_max=None, num_threads=0, verbose=False, *, area="auto",
                 out_cell_ids=None, fill_missing_out_cells=False, sample_mask=None):
        lon = np.ascontiguousarray(np.asarray(lon_deg, dtype=np.float64).ravel())
        lat = np.ascontiguousarray(np.asarray(lat_deg, dtype=np.float64).ravel())
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise TypeError(f"dtype: {dt}: give np.float64 or np.float32")
        if isinstance(area, str):
            if area not in _AREA_MODES:
                raise ValueError(f"area: {area!r} is not one of {', '.join(_AREA_MODES)}, or an array of N areas")
            mode, areas = area, None
        elif area is None:
            mode, areas = "auto", None
        else:
            mode, areas = "explicit", np.ascontiguousarray(np.asarray(area, dtype=np.float64).ravel())
        cells = None if out_cell_ids is None else np.ascontiguousarray(np.asarray(out_cell_ids).ravel().astype(np.uint64))
        mask = None if sample_mask is None else np.ascontiguousarray(np.asarray(sample_mask, dtype=bool).ravel())
        self._op = _core.Operator(
            lon, lat, int(level), int(Npt), None if sigma_m is None else float(sigma_m), float(threshold),
            bool(nest), float(radius), str(ellipsoid), dt == np.float32, str(device),
            ring_weight, ring_search_init, ring_search_max, int(num_threads), bool(verbose), mode, areas,
            cells, bool(fill_missing_out_cells), mask)
        self._adopt(self._op, str(device), int(num_threads))

    def _adopt(self, op, device, num_threads):
        """Takes `op` (a built or loaded _core.Operator) as this object's operator."""
        self._op = op
        self.dtype = np.dtype(np.float32) if op.single else np.dtype(np.float64)
        self.device = device
        self.ellipsoid = op.ellipsoid
        self._num_threads = num_threads
        self._m = {}

    # ---- saving, loading, pickling ----
    def save(self, path):
        """Saves the operator into the file `path` (a versioned binary format, written whole or not at
        all: about N*Npt*(4 + itemsize) bytes); `PSFResampler.load(path)` reads it back, in another run
        or process, to the same bits."""
        import os
        self._op.save(os.fspath(path))

    @classmethod
    def load(cls, path, device="cpu", num_threads=0):
        """The operator saved in `path` by `save`, on `device`, in the precision it was saved in.
        Raises ValueError for a file of another format version, damaged or truncated, OSError when
        it cannot be read."""
        import os
        self = cls.__new__(cls)
        self._adopt(_core.Operator.load(os.fspath(path), str(device), int(num_threads)), str(device),
                    int(num_threads))
        return self

    def __getstate__(self):
        # the operator in the saved format; the scipy matrices are made again on demand
        return {"operator": self._op.to_bytes(), "device": self.device, "num_threads": self._num_threads}

    def __setstate__(self, state):
        op = _core.Operator.from_bytes(state["operator"], state["device"], state["num_threads"])
        self._adopt(op, state["device"], state["num_threads"])

    # ---- sizes and parameters ----
    @property
    def N(self):
        """Number of samples."""
        return self._op.n

    @property
    def K(self):
        """Number of cells."""
        return self._op.k

    @property
    def Npt(self):
        """Links per sample."""
        return self._op.npt

    @property
    def level(self):
        return self._op.level

    @property
    def nside(self):
        return 1 << self._op.level

    @property
    def nest(self):
        return self._op.nest

    @property
    def sigma_m(self):
        """Kernel scale, metres."""
        return self._op.sigma_m

    @property
    def radius(self):
        return self._op.radius

    @property
    def threshold(self):
        return self._op.threshold

    # ---- the operator's arrays ----
    @property
    def cell_ids(self):
        """(K,) int64, ascending: the cells' ids in the scheme of `nest`."""
        return self._op.cell_ids().astype(np.int64)

    def get_cell_ids(self):
        """The cells' ids, (K,) int64 (a copy)."""
        return self.cell_ids

    @property
    def hi(self):
        """(N, Npt) int64: each sample's linked cells as indices into cell_ids (-1: no link)."""
        return self._op.hi().astype(np.int64)

    @property
    def d_m(self):
        """(N, Npt): the distances of the links in metres (inf: no link)."""
        return self._op.d_m()

    @property
    def area(self):
        """(N,): each sample's area weight (0 for samples left out by sample_mask)."""
        return self._op.area()

    @property
    def cell_weight(self):
        """(K,): Dx, each cell's summed area-weighted kernel weight."""
        return self._op.cell_weight()

    def _sparse(self, transpose):
        if transpose not in self._m:
            try:
                import scipy.sparse as sp
            except ImportError as e:  # pragma: no cover
                raise ImportError("M and MT are scipy.sparse matrices: pip install scipy") from e
            r, c, v, shape = self._op.triplets(transpose)
            self._m[transpose] = sp.csr_matrix((v, (r.astype(np.int64), c.astype(np.int64))), shape=shape)
        return self._m[transpose]

    @property
    def M(self):
        """(N, K) scipy.sparse CSR: values at the samples to cells (x_ref = y @ M)."""
        return self._sparse(False)

    @property
    def MT(self):
        """(K, N) scipy.sparse CSR: a cell field to the samples (hval @ MT)."""
        return self._sparse(True)

    # ---- fits ----
    def _fit(self, val, lam, max_iter, tol, x0, return_info, per_row, lower, upper, max_outer, conservative,
             empty_cells, missing, resample):
        v, one, dtype = _as_values(val, "val", self.N)
        v = np.ascontiguousarray(v, dtype=self.dtype)
        if x0 is not None:
            x, x_one, _ = _as_values(x0, "x0", self.K)
            if x_one != one:
                raise ValueError(f"x0: shape {np.shape(x0)}: give ({self.K},) for 1-D values, (B, {self.K}) for (B, N)")
            x0 = np.ascontiguousarray(x, dtype=self.dtype)
        hval, back, info = self._op.fit(v, float(lam), int(max_iter), float(tol), x0, bool(return_info),
                                        bool(per_row), lower, upper, int(max_outer), bool(conservative),
                                        str(empty_cells), str(missing), bool(resample))
        shape = (lambda a: a[0]) if one else (lambda a: a)
        hval = shape(hval).astype(dtype, copy=False)
        back = None if back is None else shape(back).astype(dtype, copy=False)
        return hval, back, info

    def fit(self, val, lam=0.0, max_iter=100, tol=1e-8, x0=None, return_info=False, *, per_row=False, lower=None,
            upper=None, max_outer=10, conservative=False, empty_cells="missing", missing="per_row"):
        """The cell field that best explains `val`: (K,) for (N,) values, (B, K) for (B, N).

        Solves min ||(x_ref + d) @ MT - y||^2 + lam ||d||^2 (both weighted) for the update d of
        x_ref = y @ M by conjugate gradient, to the relative residual `tol` or `max_iter` iterations.
        `x0`: a start for d. `per_row`: each row stops on its own residual. `lower`/`upper`: None, a
        number, or "input" (each row's valid range), imposed inside the fit (at most `max_outer`
        active-set passes). `conservative`: keep each row's area-weighted mean exactly.
        `missing`: "per_row" (a NaN sample is left out of its row's problem) or "zero_fill" (counted
        as 0: the reference's behaviour). `empty_cells`: cells with no valid sample in a row are
        "missing" (NaN) or "fitted". The result is float32 for float32 input, else float64; with
        `return_info`,
        (hval, info) with the iterations, convergence, residual norms and held cells per row.
        """
        hval, _, info = self._fit(val, lam, max_iter, tol, x0, return_info, per_row, lower, upper, max_outer,
                                  conservative, empty_cells, missing, False)
        return (hval, info) if return_info else hval

    def fit_resample(self, val, lam=0.0, max_iter=100, tol=1e-8, x0=None, return_info=False, **options):
        """`fit` and the fitted field at the samples: (hval, resampled[, info])."""
        unknown = set(options) - {"per_row", "lower", "upper", "max_outer", "conservative", "empty_cells", "missing"}
        if unknown:
            raise TypeError(f"fit_resample: unexpected keywords {sorted(unknown)}")
        hval, back, info = self._fit(val, lam, max_iter, tol, x0, return_info, options.pop("per_row", False),
                                     options.pop("lower", None), options.pop("upper", None),
                                     options.pop("max_outer", 10), options.pop("conservative", False),
                                     options.pop("empty_cells", "missing"), options.pop("missing", "per_row"), True)
        return (hval, back, info) if return_info else (hval, back)

    def resample(self, hval):
        """The values at the samples of a cell field: (N,) for (K,), (B, N) for (B, K) (hval @ MT)."""
        h, one, dtype = _as_values(hval, "hval", self.K)
        out = self._op.resample(np.ascontiguousarray(h, dtype=self.dtype))
        return (out[0] if one else out).astype(dtype, copy=False)

    def keep_blocks(self, keep=True):
        """Keeps (True) the large working blocks of fits and resamples on the CPU for the next call, or
        gives them back (False, the default). A series of calls of one shape (the time steps of a
        dataset) then makes them once; the operator holds about one call's working memory between
        calls. Results are the same bit for bit. Returns the bytes held now."""
        return self._op.keep_blocks(bool(keep))

    def __repr__(self):
        return (f"PSFResampler(N={self.N}, K={self.K}, level={self.level}, Npt={self.Npt}, "
                f"dtype={self.dtype.name}, device={self.device!r})")
