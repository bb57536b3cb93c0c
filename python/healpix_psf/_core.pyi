# Type stubs of the Rust extension (python/src/lib.rs); the user-facing layer is healpix_psf/__init__.py.
from typing import Any, Optional, Tuple

import numpy as np
import numpy.typing as npt

def version() -> str: ...
def level_for_samples(lon_deg: npt.NDArray[np.float64], lat_deg: npt.NDArray[np.float64]) -> Tuple[int, float]: ...

class Operator:
    def __init__(
        self,
        lon_deg: npt.NDArray[np.float64],
        lat_deg: npt.NDArray[np.float64],
        level: int,
        npt: int,
        sigma_m: Optional[float],
        threshold: float,
        nest: bool,
        radius: float,
        ellipsoid: str,
        single: bool,
        device: str,
        ring_weight: Optional[int],
        ring_search_init: Optional[int],
        ring_search_max: Optional[int],
        num_threads: int,
        verbose: bool,
        area_mode: str,
        area: Optional[npt.NDArray[np.float64]],
        out_cell_ids: Optional[npt.NDArray[np.uint64]],
        fill_missing_out_cells: bool,
        sample_mask: Optional[npt.NDArray[np.bool_]],
    ) -> None: ...
    single: bool
    n: int
    n_used: int
    k: int
    npt: int
    nnz: int
    level: int
    nest: bool
    sigma_m: float
    radius: float
    threshold: float
    ellipsoid: str
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes, device: str, num_threads: int) -> "Operator": ...
    def save(self, path: str) -> None: ...
    @staticmethod
    def load(path: str, device: str, num_threads: int) -> "Operator": ...
    def cell_ids(self) -> npt.NDArray[np.uint64]: ...
    def hi(self) -> npt.NDArray[np.int32]: ...
    def d_m(self) -> npt.NDArray[Any]: ...
    def area(self) -> npt.NDArray[Any]: ...
    def cell_weight(self) -> npt.NDArray[Any]: ...
    def uncomputable_cells(self) -> npt.NDArray[np.uint32]: ...
    def triplets(self, transpose: bool) -> Tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[Any], Tuple[int, int]]: ...
    def fit(
        self,
        val: npt.NDArray[Any],
        lam: float,
        max_iter: int,
        tol: float,
        x0: Optional[npt.NDArray[Any]],
        return_info: bool,
        per_row: bool,
        lower: Any,
        upper: Any,
        max_outer: int,
        conservative: bool,
        empty_cells: str,
        missing: str,
        resample: bool,
    ) -> Tuple[npt.NDArray[Any], Optional[npt.NDArray[Any]], Optional[dict]]: ...
    def resample(self, hval: npt.NDArray[Any]) -> npt.NDArray[Any]: ...
