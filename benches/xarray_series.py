"""ORCA1 time series through healpix_psf.xarray: in memory against dask chunks (threads), and the
operator's save/load/pickle. Prints what it measured.

    .venv-ref/bin/python benches/xarray_series.py [STEPS] [CHUNK]
"""

import pathlib
import pickle
import sys
import time

import numpy as np
import xarray as xr

import healpix_psf.xarray as hx

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 24
chunk = int(sys.argv[2]) if len(sys.argv) > 2 else 3
root = pathlib.Path(__file__).resolve().parents[1]
tos = xr.open_dataset(root / "tests" / "data" / "nemo_orca1_sst_2015-01.nc")["tos"].load()
t = np.arange(steps)
v = tos.values[0][None] + 0.5 * np.sin(t)[:, None, None] * np.cos(np.radians(tos["nav_lat"].values))[None]
da = xr.DataArray(v.astype(np.float32), dims=("time", "y", "x"), name="tos", attrs=tos.attrs,
                  coords={"time": t, "nav_lon": tos["nav_lon"], "nav_lat": tos["nav_lat"]})


def best(f, reps=3):
    out, s = None, float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        out = f()
        s = min(s, time.perf_counter() - t0)
    return out, s


op, build_s = best(lambda: hx.build_operator(da, 6))
eager, eager_s = best(lambda: hx.regrid(da, operator=op, lam=1e-3))
lazy, lazy_s = best(lambda: hx.regrid(da.chunk({"time": chunk}), operator=op, lam=1e-3).compute())
whole, whole_s = best(lambda: hx.regrid(da, level=6, lam=1e-3))
blob, pickle_s = best(lambda: pickle.dumps(op))
_, unpickle_s = best(lambda: pickle.loads(blob))
print(f"ORCA1 x {steps} steps (N = {op.N}, {int(np.sum(~np.isnan(v[0])))} ocean points, K = {op.K}, level 6, f32)")
print(f"build_operator {build_s:.3f} s; fit in memory {eager_s:.3f} s; dask {steps // chunk} chunks of {chunk} "
      f"(threads) {lazy_s:.3f} s; regrid with the build {whole_s:.3f} s; identical: "
      f"{eager.values.tobytes() == lazy.values.tobytes()}")
print(f"pickle {pickle_s * 1e3:.1f} ms, {len(blob) / 1e6:.1f} MB; unpickle {unpickle_s * 1e3:.1f} ms")
