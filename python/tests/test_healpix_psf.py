"""The Python interface against the reference's golden cases (tests/fixtures: arrays written by the
reference, healpix-resample 2026.10.2), and its shapes, dtypes and errors.

    pip install ./python[test] && pytest python/tests
"""

import json
import pathlib

import numpy as np
import pytest

from healpix_psf import PSFResampler

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures"
CASES = ["regional_l10_npt9_b1", "corner_l11_npt9_b3_nan", "polar_l8_npt16_b3", "ring_l9_npt9_b2",
         "grid_l8_npt9_b1_area", "regional_l12_npt9_b1_f32", "global_l5_npt9_b2_bigsigma"]


class Case:
    def __init__(self, name):
        self.dir = FIXTURES / name
        self.meta = json.loads((self.dir / "meta.json").read_text())
        self.p = self.meta["params"]

    def read(self, name):
        a = self.meta["arrays"][name]
        return np.fromfile(self.dir / f"{name}.bin", dtype=np.dtype(a["dtype"]).newbyteorder("<")).reshape(a["shape"])

    def build(self, **kw):
        p = self.p
        kw.setdefault("dtype", np.float32 if p["dtype"] == "float32" else np.float64)
        return PSFResampler(self.read("lon"), self.read("lat"), p["level"], Npt=p["Npt"], sigma_m=p["sigma_m_arg"],
                            threshold=p["threshold"], nest=p.get("nest", True), radius=p.get("radius", 6371000.0),
                            ellipsoid=p.get("ellipsoid", "WGS84"), area="reference", **kw)


def rel(a, b):
    m = np.isfinite(b)
    assert np.array_equal(np.isnan(a), np.isnan(b)), "NaN at other places"
    return np.max(np.abs(a[m] - b[m])) / max(np.max(np.abs(b[m])), 1e-300)


@pytest.mark.parametrize("name", CASES)
def test_golden_case(name):
    c = Case(name)
    op = c.build()
    f32 = c.p["dtype"] == "float32"
    # the Rust parity tests' tolerances: the reference's acos distances are good to ~1e-8
    tol, tol_area, tol_fit = (1e-4, 1e-6, 1e-2) if f32 else (1e-7, 1e-12, 1e-5)
    assert (op.N, op.K, op.Npt) == (c.p["N"], c.meta["result"]["K"], c.p["Npt"])
    assert np.array_equal(op.cell_ids, c.read("cell_ids")) and op.cell_ids.dtype == np.int64
    assert np.array_equal(op.get_cell_ids(), op.cell_ids)
    assert op.hi.shape == (op.N, op.Npt) and op.hi.dtype == np.int64
    # links: the reference's where it has no distance tie (ties may order differently: SPEC)
    assert np.mean(op.hi == c.read("hi")) > 0.99
    assert rel(op.cell_weight.astype(np.float64), c.read("cell_weight")) < tol
    assert rel(op.area.astype(np.float64), c.read("area")) < tol_area
    # M and MT as scipy.sparse: the reference's entries
    assert op.M.shape == (op.N, op.K) and op.MT.shape == (op.K, op.N)
    assert rel(op.M.toarray().astype(np.float64), _dense(c, "M", op.N, op.K)) < tol
    assert rel(op.MT.toarray().astype(np.float64), _dense(c, "MT", op.K, op.N)) < tol
    # the fit as the reference runs it: missing samples as 0, empty cells fitted
    val = c.read("val")
    hval, info = op.fit(val, lam=c.p["lam"], max_iter=c.p["max_iter"], tol=c.p["tol"], return_info=True,
                        missing="zero_fill", empty_cells="fitted")
    assert hval.shape == (c.read("hval").shape) and hval.dtype == val.dtype
    assert rel(hval.astype(np.float64), c.read("hval")) < tol_fit
    if not f32:
        assert info["iterations"] == c.meta["result"]["cg_niters"]
    back = op.resample(hval)
    assert back.shape == val.shape
    assert rel(back.astype(np.float64), c.read("invert")) < tol_fit


def _dense(c, name, rows, cols):
    d = np.zeros((rows, cols))
    d[c.read(f"{name}_rows"), c.read(f"{name}_cols")] = c.read(f"{name}_vals")
    return d


def test_shapes_dtypes_and_array_likes():
    c = Case("corner_l11_npt9_b3_nan")
    op = c.build()
    val = c.read("val")  # (3, N) with NaN
    h2 = op.fit(val, lam=0.01, per_row=True)
    assert h2.shape == (3, op.K) and h2.dtype == np.float64
    h1 = op.fit(val[1], lam=0.01, per_row=True)  # each row stops on its own: the same as in the batch
    assert h1.shape == (op.K,)
    np.testing.assert_allclose(h1, h2[1], rtol=1e-12, equal_nan=True)
    # float32 in: float32 out (the operator computes in its own precision)
    h32 = op.fit(val.astype(np.float32), lam=0.01)
    assert h32.dtype == np.float32
    # lists and integer arrays are array-likes too
    hl = op.fit(np.nan_to_num(val[0]).tolist(), lam=0.01)
    assert hl.shape == (op.K,) and hl.dtype == np.float64
    hval, back = op.fit_resample(val, lam=0.01)
    assert back.shape == val.shape
    np.testing.assert_allclose(op.resample(hval), back, rtol=1e-12, equal_nan=True)
    # a float32 operator
    op32 = c.build(dtype=np.float32)
    assert op32.dtype == np.float32 and op32.d_m.dtype == np.float32
    # bounds, per-row stopping, conservation
    hb, info = op.fit(val, lam=0.01, lower="input", upper="input", per_row=True, conservative=True, return_info=True)
    lo, hi = np.nanmin(val, axis=1), np.nanmax(val, axis=1)
    assert np.all((hb >= lo[:, None] - 1e-9) | np.isnan(hb)) and np.all((hb <= hi[:, None] + 1e-9) | np.isnan(hb))
    assert len(info["row_iterations"]) == 3


def test_kept_blocks_change_no_bit():
    # large enough (N·B·8 bytes ≥ 8 MB) for the blocks to be kept
    rng = np.random.default_rng(5)
    lon, lat = 8 + 2 * rng.random(80_000), 45 + 2 * rng.random(80_000)
    op = PSFResampler(lon, lat, 10, dtype=np.float64)
    val = np.sin(3 * lon)[None, :] + np.cos(2 * lat)[None, :] * np.arange(1, 19)[:, None]
    want = op.fit(val, lam=1e-3, max_iter=5)
    back = op.resample(want)
    assert op.keep_blocks(True) == 0
    for _ in range(2):
        assert np.array_equal(op.fit(val, lam=1e-3, max_iter=5), want, equal_nan=True)
        assert np.array_equal(op.resample(want), back, equal_nan=True)
    assert op.keep_blocks(True) > 8 << 20
    assert op.keep_blocks(False) == 0


def test_torch_tensors():
    """torch CPU tensors through the array protocol (where torch is installed)."""
    torch = pytest.importorskip("torch")
    c = Case("corner_l11_npt9_b3_nan")
    op = c.build()
    val = c.read("val")
    ht = op.fit(torch.from_numpy(val), lam=0.01)
    np.testing.assert_allclose(ht, op.fit(val, lam=0.01), rtol=1e-12, equal_nan=True)


def test_bad_input_raises():
    c = Case("regional_l10_npt9_b1")
    lon, lat = c.read("lon"), c.read("lat")
    with pytest.raises(ValueError, match="lat_deg"):
        PSFResampler(lon, lat[:-1], 10)
    bad = lat.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="sample 3"):
        PSFResampler(lon, bad, 10)
    with pytest.raises(ValueError, match="level"):
        PSFResampler(lon, lat, 40)
    with pytest.raises(ValueError):
        PSFResampler([], [], 10)
    with pytest.raises(RuntimeError, match="threshold"):
        PSFResampler(lon, lat, 10, threshold=1e9)
    with pytest.raises(TypeError, match="dtype"):
        PSFResampler(lon, lat, 10, dtype=np.int32)
    with pytest.raises(ValueError, match="area"):
        PSFResampler(lon, lat, 10, area="exact")
    with pytest.raises(ValueError, match="device"):
        PSFResampler(lon, lat, 10, device="gpu")
    op = PSFResampler(lon, lat, 10)
    with pytest.raises(ValueError, match="shape"):
        op.fit(np.zeros(op.N + 1))
    with pytest.raises(ValueError, match="shape"):
        op.fit(np.zeros((2, 3, op.N)))
    with pytest.raises(TypeError):
        op.fit(np.array(["a"] * op.N))
    with pytest.raises(ValueError, match="lam"):
        op.fit(np.zeros(op.N), lam=-1.0)
    with pytest.raises(ValueError, match="lower"):
        op.fit(np.zeros(op.N), lower="data")
    inf = np.zeros(op.N)
    inf[5] = np.inf
    with pytest.raises(ValueError):
        op.fit(inf)
    with pytest.raises(ValueError, match="shape"):
        op.resample(np.zeros(op.K + 1))
    with pytest.raises(ValueError, match="x0"):
        op.fit(np.zeros((2, op.N)), x0=np.zeros((op.K, 2)))
    with pytest.raises(ValueError, match="x0"):
        op.fit(np.zeros(op.N), x0=np.zeros((1, op.K)))
    with pytest.raises(TypeError, match="unexpected"):
        op.fit_resample(np.zeros(op.N), lamda=1.0)


def test_help_reads_well():
    assert "lon_deg" in PSFResampler.__doc__ and "Npt" in PSFResampler.__doc__
    assert "lam" in PSFResampler.fit.__doc__


def test_ctrl_c_interrupts_a_long_fit():
    """SIGINT during a fit (GIL released, on its own thread) raises KeyboardInterrupt between two
    iterations, long before the fit would end; the operator is unharmed."""
    import os
    import signal
    import threading
    import time

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        # e.g. a run started in the background by a shell without job control, which ignores
        # SIGINT for it: Python then keeps it ignored, and no Ctrl-C reaches any code
        pytest.skip("SIGINT is not Python's KeyboardInterrupt in this process (ignored by whoever started it)")
    rng = np.random.default_rng(1)
    n = 200000
    lon, lat = rng.uniform(5.0, 9.0, n), rng.uniform(40.0, 43.0, n)
    op = PSFResampler(lon, lat, 12)
    val = np.stack([np.sin(np.radians(7 * lon)) + np.cos(np.radians(5 * lat)), np.cos(np.radians(3 * lon))])
    # undamped to an unreachable tolerance: ~1 000 iterations until the CG breaks down
    t = time.perf_counter()
    whole = op.fit(val, tol=1e-300, max_iter=5000)
    full = time.perf_counter() - t
    if full < 1.0:
        pytest.skip(f"the uninterrupted fit took {full:.2f} s: too fast here to tell an interrupt from its end")
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    t = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        op.fit(val, tol=1e-300, max_iter=5000)
    stopped = time.perf_counter() - t
    timer.join()
    assert stopped < 0.3 + 0.5 * (full - 0.3), (full, stopped)
    np.testing.assert_array_equal(op.fit(val, tol=1e-300, max_iter=5000), whole)
