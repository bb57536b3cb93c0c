"""Saving, loading and pickling an operator: the same arrays and the same fits, to the bit; damaged,
truncated and foreign files raise ValueError, unreadable ones OSError."""

import pickle

import numpy as np
import pytest

from healpix_psf import PSFResampler
from healpix_psf import compat


def samples(n=3000, seed=3):
    rng = np.random.default_rng(seed)
    return rng.uniform(7.0, 9.0, n), rng.uniform(44.0, 46.0, n)


def values(lon, lat, rows=2):
    v = np.stack([np.sin(np.radians(lon) * (3 + r)) + lat / 50 + r for r in range(rows)])
    v[:, ::41] = np.nan
    return v


def assert_same(a, b):
    assert (a.N, a.K, a.Npt, a.level, a.nest, a.dtype, a.device) == (b.N, b.K, b.Npt, b.level, b.nest, b.dtype,
                                                                        b.device)
    assert (a.sigma_m, a.radius, a.threshold, a.ellipsoid) == (b.sigma_m, b.radius, b.threshold, b.ellipsoid)
    for name in ("cell_ids", "hi", "d_m", "area", "cell_weight"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    for name in ("M", "MT"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x != y).nnz == 0 and x.dtype == y.dtype, name


def assert_same_fits(a, b, val):
    for kw in ({"lam": 1e-3}, {"lam": 1e-3, "lower": "input", "conservative": True, "per_row": True}):
        ha, ra, ia = a.fit_resample(val, max_iter=40, return_info=True, **kw)
        hb, rb, ib = b.fit_resample(val, max_iter=40, return_info=True, **kw)
        assert ha.tobytes() == hb.tobytes() and ra.tobytes() == rb.tobytes()
        assert ia["row_iterations"] == ib["row_iterations"]


OPTIONS = [
    {},
    {"dtype": np.float32},
    {"nest": False, "ellipsoid": "sphere", "Npt": 16},
    {"sample_mask": "every seventh out"},
    {"out_cell_ids": "some", "fill_missing_out_cells": True, "threshold": 0.5},
]


@pytest.mark.parametrize("options", OPTIONS, ids=["plain", "f32", "ring-sphere-npt16", "mask", "out_cells"])
def test_pickle_save_and_load_give_the_same_operator(options, tmp_path):
    lon, lat = samples()
    kw = dict(options)
    if kw.get("sample_mask") is not None:
        kw["sample_mask"] = np.arange(lon.size) % 7 != 3
    if kw.get("out_cell_ids") is not None:
        kw["out_cell_ids"] = np.concatenate([PSFResampler(lon, lat, 11).cell_ids[::3], [5, 17]])
    op = PSFResampler(lon, lat, 11, **kw)
    val = values(lon, lat).astype(op.dtype)
    again = pickle.loads(pickle.dumps(op))
    assert_same(op, again)
    assert_same_fits(op, again, val)
    path = tmp_path / "op.hpsf"
    op.save(path)
    loaded = PSFResampler.load(str(path), num_threads=1)
    assert_same(op, loaded)
    assert_same_fits(op, loaded, val)
    # saved again: the same bytes
    assert loaded.__getstate__()["operator"] == again.__getstate__()["operator"]


def test_the_compat_shim_pickles():
    lon, lat = samples(800)
    op = compat.PSFResampler(lon, lat, 10)
    again = pickle.loads(pickle.dumps(op))
    val = values(lon, lat, 1)[0].astype(np.float32)
    a, b = op.resample(val, lam=1e-2), again.resample(val, lam=1e-2)
    assert np.asarray(a.cell_data).tobytes() == np.asarray(b.cell_data).tobytes()
    assert np.array_equal(a.cell_ids, b.cell_ids)


def test_bad_files(tmp_path):
    lon, lat = samples(500)
    op = PSFResampler(lon, lat, 10, dtype=np.float32)
    path = tmp_path / "op.hpsf"
    op.save(path)
    data = path.read_bytes()
    cases = {
        "cut": (data[: len(data) // 2], "truncated"),
        "flipped": (data[:100] + bytes([data[100] ^ 1]) + data[101:], "checksum"),
        "foreign": (b"CDF\x01" + data[4:], "not a healpix-psf operator file"),
        "version": (data[:8] + (999).to_bytes(4, "little") + data[12:], "format version 999"),
    }
    for name, (content, message) in cases.items():
        bad = tmp_path / f"{name}.hpsf"
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=message):
            PSFResampler.load(bad)
        with pytest.raises(ValueError, match=message):
            op.__setstate__({"operator": content, "device": "cpu", "num_threads": 0})
    with pytest.raises(OSError, match="none.hpsf"):
        PSFResampler.load(tmp_path / "none.hpsf")
    with pytest.raises(OSError):
        op.save(tmp_path / "no" / "such" / "folder" / "op.hpsf")
    with pytest.raises(ValueError, match="device"):
        PSFResampler.load(path, device="tpu")
    # the failed __setstate__ left the operator working
    assert op.fit(values(lon, lat, 1)[0].astype(np.float32)).shape == (op.K,)
