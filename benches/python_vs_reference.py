"""The reference (healpix-resample 2026.10.2, PyTorch sparse, CPU) against this package, from Python in
the same process: construction and a 100-iteration fit on N samples at ~1.5 per cell (bench's box).

    .venv-ref/bin/pip install ./python && .venv-ref/bin/python benches/python_vs_reference.py 1e5 1e6

Prints one JSON line per N: times (s), K, the CG iterations of each, and the largest difference of
the fitted fields relative to the reference's largest value. float64, lam = 0, tol 1e-30 (all 100
iterations run), the threads each library uses by default (torch's and rayon's: all cores).
"""
import json
import math
import sys
import time

import numpy as np
import torch
from healpix_resample import PSFResampler as Reference

from healpix_psf import PSFResampler


def samples(n, level, density=1.5, seed=0):
    """n samples uniform on the sphere in a box centred on 8°E 45°N holding ~density per cell."""
    cell = 4 * math.pi / (12 * 4.0**level)
    omega = n / density * cell
    h = 0.5 * math.sqrt(omega)
    lat0, lat1 = 45 - math.degrees(h), 45 + math.degrees(h)
    band = math.sin(math.radians(lat1)) - math.sin(math.radians(lat0))
    width = math.degrees(min(omega / band, 2 * math.pi))
    rng = np.random.default_rng(seed)
    lon = rng.uniform(8 - width / 2, 8 + width / 2, n)
    lat = np.degrees(np.arcsin(rng.uniform(math.sin(math.radians(lat0)), math.sin(math.radians(lat1)), n)))
    return lon, lat


for arg in sys.argv[1:]:
    n = int(float(arg))
    level = 12 if n >= 10**6 else 10
    lon, lat = samples(n, level)
    val = np.sin(np.radians(3 * lon)) + np.cos(np.radians(2 * lat))
    t = time.perf_counter()
    ref = Reference(lon, lat, level, Npt=9, dtype=torch.float64, device="cpu")
    t_ref_build = time.perf_counter() - t
    t = time.perf_counter()
    r = ref.resample(val, lam=0.0, max_iter=100, tol=1e-30)
    t_ref_fit = time.perf_counter() - t
    t = time.perf_counter()
    op = PSFResampler(lon, lat, level, Npt=9, dtype=np.float64, area="reference")
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    hval, info = op.fit(val, lam=0.0, max_iter=100, tol=1e-30, return_info=True, missing="zero_fill",
                        empty_cells="fitted")
    t_fit = time.perf_counter() - t
    want = np.asarray(r.cell_data)
    same_cells = op.K == len(want) and np.array_equal(op.cell_ids, np.asarray(ref.cell_ids))
    diff = float(np.max(np.abs(hval - want)) / np.max(np.abs(want))) if same_cells else float("nan")
    print(json.dumps({"n": n, "level": level, "k": op.K, "k_reference": len(want), "same_cells": bool(same_cells),
                      "reference_build_s": round(t_ref_build, 3), "build_s": round(t_build, 3),
                      "reference_fit_s": round(t_ref_fit, 3), "fit_s": round(t_fit, 3),
                      "reference_iterations": int(r.cg_niters), "iterations": info["iterations"],
                      "hval_rel_diff": diff, "torch_threads": torch.get_num_threads()}), flush=True)
