"""healpix-resample 2026.10.2's `PSFResampler` on this library: switch with one import line.

    # from healpix_resample import PSFResampler
    from healpix_psf.compat import PSFResampler

    op = PSFResampler(lon, lat, level, Npt=9)          # keyword-only options, float32 by default
    r = op.resample(val, lam=1e-2)                      # ResampleResults: r.cell_data (K,) or (B, K)
    back = op.invert(r.cell_data)                       # the field at the samples

The same names, defaults and results as the reference (its SPEC.md §0 and §4): float32 by default,
the reference's area estimate when `area` is None, missing samples counted as 0, cells without a
valid sample fitted, `clip=(lo, hi)` with None, a number or "input", `cg_residual_norms` of shape
(iterations + 1, rows with data), results in the operator's dtype, torch tensors in → torch
tensors out (numpy in → numpy out).
`batch_size` is accepted and ignored (the results do not depend on it); `device=None` means the
CPU (the reference picks a GPU when one is there: pass "cuda" for a `cuda` build). For this library's own
options (per-row missing data, per-row stopping, bounds with NaN cells left missing …) use
`healpix_psf.PSFResampler`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np

from . import PSFResampler as _Resampler

__all__ = ["PSFResampler", "ResampleResults"]


class ResampleResults(NamedTuple):
    """What the reference's `resample` returns."""

    cell_data: Any
    cell_ids: np.ndarray
    cg_residual_norms: np.ndarray
    cg_niters: int
    n_clipped_low: Optional[np.ndarray]
    n_clipped_high: Optional[np.ndarray]


def _numpy_dtype(dtype):
    """A numpy float dtype from a numpy or torch dtype (or its name); None = float32."""
    if dtype is None:
        return np.dtype(np.float32)
    name = str(dtype).replace("torch.", "")
    if name in ("float32", "float", "<class 'numpy.float32'>"):
        return np.dtype(np.float32)
    if name in ("float64", "double", "<class 'numpy.float64'>"):
        return np.dtype(np.float64)
    return np.dtype(dtype)


def _is_torch(x):
    return type(x).__module__.startswith("torch")


def _np(a):
    """A torch tensor's values as numpy, in float64 for floating tensors (bfloat16 has no numpy
    type); None and other array-likes as they are."""
    if not _is_torch(a):
        return a
    import torch

    a = a.detach().cpu()
    return (a.to(torch.float64) if a.is_floating_point() else a).numpy()


def _like(result, template):
    """`result` as a torch tensor when `template` is one (on the CPU), else as it is."""
    if _is_torch(template):
        import torch

        return torch.as_tensor(np.ascontiguousarray(result))
    return result


class PSFResampler:
    """healpix-resample's PSFResampler(lon_deg, lat_deg, level, *, out_cell_ids=None, device="cpu",
    dtype=float32, verbose=False, ellipsoid="WGS84", Npt=9, sigma_m=None, threshold=0.1, area=None,
    fill_missing_out_cells=False, nest=True, radius=6371000.0, ring_weight=None, ring_search_init=None,
    ring_search_max=None, num_threads=0, batch_size=None), computed by healpix_psf."""

    def __init__(self, lon_deg, lat_deg, level, *, out_cell_ids=None, device="cpu", dtype=None, verbose=False,
                 ellipsoid="WGS84", Npt=9, sigma_m=None, threshold=0.1, area=None, fill_missing_out_cells=False,
                 nest=True, radius=6371000.0, ring_weight=None, ring_search_init=None, ring_search_max=None,
                 num_threads=0, batch_size=None):
        del batch_size  # the reference's memory knob: the results do not depend on it
        self._op = _Resampler(
            _np(lon_deg), _np(lat_deg), level,
            Npt=Npt, sigma_m=sigma_m, threshold=threshold, nest=nest, radius=radius, ellipsoid=ellipsoid,
            dtype=_numpy_dtype(dtype), device="cpu" if device is None else str(device), ring_weight=ring_weight,
            ring_search_init=ring_search_init, ring_search_max=ring_search_max, num_threads=num_threads,
            verbose=verbose, area="reference" if area is None else area, out_cell_ids=out_cell_ids,
            fill_missing_out_cells=fill_missing_out_cells)

    def __getattr__(self, name):
        # N, K, level, nside, Npt, sigma_m, radius, threshold, cell_ids, hi, d_m, cell_weight, area,
        # MT, dtype, device, ellipsoid: the operator's
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._op, name)

    @property
    def M(self):
        """(N, K) scipy.sparse COO, as the reference's coalesced COO tensor."""
        return self._op.M.tocoo()

    @property
    def uncomputable_out_cells(self):
        """Indices into cell_ids of requested cells without enough support (NaN in every fit)."""
        return self._op._op.uncomputable_cells().astype(np.int64)

    def get_cell_ids(self):
        return self._op.get_cell_ids()

    def resample(self, val, *, lam=0.0, max_iter=100, tol=1e-8, x0=None, return_info=False, conservative=False,
                 clip=None, max_outer=10):
        """The reference's `resample`: the fitted cell field and the CG's record (ResampleResults)."""
        del return_info  # accepted and ignored, as by the reference
        if clip is None:
            lower, upper = None, None
        elif isinstance(clip, (tuple, list)) and len(clip) == 2:
            lower, upper = clip
        else:
            raise ValueError(f"clip: {clip!r}: give (lo, hi), each None, a number or \"input\"")
        # the reference computes and answers in its dtype, whatever the input's
        hval, info = self._op.fit(np.asarray(_np(val), dtype=self._op.dtype), lam=lam, max_iter=max_iter, tol=tol, x0=_np(x0), return_info=True, lower=lower,
                                  upper=upper, max_outer=max_outer, conservative=conservative, missing="zero_fill",
                                  empty_cells="fitted")
        dt = self._op.dtype
        rows = [np.asarray(n) for n, d in zip(info["residual_norms"], info["has_data"]) if d]
        # the reference's record: (iterations + 1, rows with data); one NaN row when no row has data
        norms = (np.stack(rows, axis=1) if rows else np.full((1, len(info["has_data"])), np.nan)).astype(dt)
        one = np.ndim(_np(val)) == 1
        held = clip is not None

        def count(c):
            c = np.asarray(c, dtype=np.int64)
            return _like(c[0] if one else c, val) if held else None

        return ResampleResults(
            cell_data=_like(hval, val),
            cell_ids=_like(self._op.cell_ids, val),
            cg_residual_norms=_like(norms, val),
            cg_niters=int(info["iterations"]),
            n_clipped_low=count(info["n_clipped_low"]),
            n_clipped_high=count(info["n_clipped_high"]),
        )

    def invert(self, hval):
        """hval @ MT: the cell field at the samples, (N,) or (B, N)."""
        return _like(self._op.resample(np.asarray(_np(hval), dtype=self._op.dtype)), hval)

    def __repr__(self):
        return "compat." + repr(self._op)
