//! The C ABI of the distributed operator (feature `mpi`; `#if defined(HPSF_MPI)` in the header):
//! `hpsf_mpi_*_f64` / `hpsf_mpi_*_f32`, every one collective over the communicator it was built on.
//!
//! The communicator is passed as a Fortran handle (`MPI_Fint`, an `int`): C calls
//! `hpsf_mpi_new_f64(MPI_Comm_c2f(comm), …)`, Fortran passes `comm%MPI_VAL` (mpi_f08) or its
//! integer handle (mpi) — one entry point for both, and no `mpi.h` in the header. The operator
//! works on its own duplicate of the communicator (`MPI_Comm_dup`: its messages never mix with the
//! caller's), freed by `hpsf_mpi_free_*` (collective, as `MPI_Comm_free`).
//!
//! A call either succeeds on every rank or fails on every rank: the checks of the caller's
//! arguments are agreed over the ranks before any collective step (a rank with a NULL pointer or a
//! wrong length fails with its own status, the others with `HPSF_STATUS_OTHER_RANK`). A NULL
//! operator handle cannot be agreed on (there is no communicator): passing one on some ranks only is
//! a caller's bug that leaves the others waiting.

use super::{
    array, fit_impl, keep_blocks_impl, null, run, scalar, slice, write_out, Fail, Fits, HpsfFitInfo, HpsfFitOptions,
    HpsfParams, HpsfStatus,
};
use crate::distributed::{collective_with, DistributedResampler};
use crate::{Error, Fit, FitOptions, Real};
use mpi::raw::FromRaw;
use mpi::topology::SimpleCommunicator;

/// One rank's part of a distributed operator and its communicator.
struct Dist<F: Real> {
    op: DistributedResampler<F>,
    comm: SimpleCommunicator,
}

/// One rank's part of a distributed single-precision operator (opaque).
pub struct HpsfMpiOpF32(Dist<f32>);
/// One rank's part of a distributed double-precision operator (opaque).
pub struct HpsfMpiOpF64(Dist<f64>);

impl<F: Real> Fits<F> for Dist<F> {
    fn fit(&self, val: &[F], opts: &FitOptions<F>) -> crate::Result<Fit<F>> {
        self.op.fit(&self.comm, val, opts)
    }
    fn fit_resample(&self, val: &[F], opts: &FitOptions<F>) -> crate::Result<(Fit<F>, Vec<F>)> {
        self.op.fit_resample(&self.comm, val, opts)
    }
    fn keep_blocks(&self, keep: bool) -> usize {
        self.op.keep_blocks(keep);
        self.op.kept_bytes()
    }
    fn recycle(&self, v: Vec<F>) {
        self.op.recycle(v);
    }
    fn agree<T>(&self, local: Result<T, Fail>) -> Result<T, Fail> {
        agree(&self.comm, local)
    }
}

/// `local` where every rank's checks passed; else this rank's failure, or `OTHER_RANK` naming
/// the lowest failing rank. Collective.
fn agree<T>(comm: &SimpleCommunicator, local: Result<T, Fail>) -> Result<T, Fail> {
    collective_with(comm, local, |f| f.1.clone(), |rank, message| Error::OtherRank { rank, message }.into())
}

/// A duplicate of the caller's communicator (Fortran handle `comm`), owned by the operator.
///
/// # Safety
/// `comm` must be a valid Fortran handle of an intra-communicator.
unsafe fn duplicate(comm: i32) -> Result<SimpleCommunicator, Fail> {
    let mut initialised = 0;
    mpi::ffi::MPI_Initialized(&mut initialised);
    if initialised == 0 {
        return Err(Fail(HpsfStatus::InvalidParameter, "MPI is not initialised: call MPI_Init first".into()));
    }
    let raw = mpi::ffi::RSMPI_Comm_f2c(comm);
    if raw == mpi::ffi::RSMPI_COMM_NULL {
        return Err(Fail(HpsfStatus::InvalidParameter, "comm is MPI_COMM_NULL".into()));
    }
    let mut dup = mpi::ffi::RSMPI_COMM_NULL;
    if mpi::ffi::MPI_Comm_dup(raw, &mut dup) != 0 {
        return Err(Fail(HpsfStatus::InvalidParameter, "MPI_Comm_dup failed on comm".into()));
    }
    Ok(SimpleCommunicator::from_raw(dup))
}

/// # Safety
/// As for `hpsf_mpi_new_f64`.
unsafe fn new_impl<F: Real>(
    comm: i32,
    lon: *const f64,
    lat: *const f64,
    n: usize,
    params: *const HpsfParams,
) -> Result<Dist<F>, Fail> {
    let comm = duplicate(comm)?;
    let args = || -> Result<_, Fail> {
        let p = if params.is_null() {
            HpsfParams::defaults(10)
        } else {
            super::read_versioned(params, HpsfParams::defaults(10))
        };
        Ok((p.to_params()?, slice(lon, n, "lon")?, slice(lat, n, "lat")?))
    };
    let (p, lon, lat) = agree(&comm, args())?;
    let op = DistributedResampler::<F>::new(&comm, lon, lat, &p)?;
    Ok(Dist { op, comm })
}

/// # Safety
/// As for `hpsf_mpi_resample_f64`.
unsafe fn resample_impl<F: Real>(
    d: &Dist<F>,
    hval: *const F,
    hval_len: usize,
    out: *mut F,
    out_len: usize,
) -> Result<(), Fail> {
    let hval = agree(&d.comm, slice(hval, hval_len, "hval"))?;
    let back = d.op.resample(&d.comm, hval)?;
    write_out(out, out_len, &back, "out")?;
    d.op.recycle(back);
    Ok(())
}

/// # Safety
/// As for `hpsf_mpi_gather_f64`.
#[allow(clippy::too_many_arguments)]
unsafe fn gather_impl<F: Real>(
    d: &Dist<F>,
    root: i32,
    hval: *const F,
    hval_len: usize,
    ids: *mut u64,
    ids_len: usize,
    out: *mut F,
    out_len: usize,
) -> Result<(), Fail> {
    let hval = agree(&d.comm, slice(hval, hval_len, "hval"))?;
    let root = usize::try_from(root).map_err(|_| Error::param("root", root, "a rank is ≥ 0"))?;
    if let Some((all_ids, all)) = d.op.gather(&d.comm, root, hval)? {
        super::check_out(ids, ids_len, all_ids.len(), "ids")?;
        super::check_out(out, out_len, all.len(), "out")?;
        write_out(ids, ids_len, &all_ids, "ids")?;
        write_out(out, out_len, &all, "out")?;
    }
    Ok(())
}

// ---- double precision ---------------------------------------------------------------------------

/// Builds, collectively on every rank of `comm` (a Fortran handle: `MPI_Comm_c2f(comm)` in
/// C), the part this rank owns of the operator of every rank's samples: this rank passes its
/// own `n` sample longitudes and latitudes (degrees) and the parameters every rank passes
/// alike (`params` NULL = the defaults at level 10). On success `*out` receives the handle
/// (free it with the matching `hpsf_mpi_free_*`, collectively); on failure, on every rank,
/// `*out` is left untouched.
///
/// # Safety
/// `comm` must be a valid communicator handle; `lon` and `lat` must point to `n` values,
/// `params` to an initialised `hpsf_params` (or be NULL), `out` to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_new_f64(
    comm: i32,
    lon: *const f64,
    lat: *const f64,
    n: usize,
    params: *const HpsfParams,
    out: *mut *mut HpsfMpiOpF64,
) -> HpsfStatus {
    run(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        let d = new_impl::<f64>(comm, lon, lat, n, params)?;
        out.write(Box::into_raw(Box::new(HpsfMpiOpF64(d))));
        Ok(())
    })
}

/// Frees an operator (NULL accepted). Collective: its communicator is freed too.
///
/// # Safety
/// `op` must be NULL or a handle from the matching `hpsf_mpi_new_*`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_free_f64(op: *mut HpsfMpiOpF64) {
    if !op.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(op))));
    }
}

/// The samples this rank passed.
///
/// # Safety
/// `op` must be NULL or live, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_n_f64(op: *const HpsfMpiOpF64, out: *mut usize) -> HpsfStatus {
    scalar(op, out, |h| h.0.op.n())
}

/// The cells this rank owns (the length of a row of its fitted values).
///
/// # Safety
/// `op` must be NULL or live, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_k_f64(op: *const HpsfMpiOpF64, out: *mut usize) -> HpsfStatus {
    scalar(op, out, |h| h.0.op.cell_ids().len())
}

/// With `keep` = 1, this rank keeps the large working blocks of its fits and resamples for the
/// next call, as `hpsf_keep_blocks_f64` does (0, the default: gives them back). Each rank decides
/// for itself: not collective. `kept_bytes` (NULL or writable) receives the bytes held now.
///
/// # Safety
/// `op` must be NULL or live, `kept_bytes` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_keep_blocks_f64(
    op: *const HpsfMpiOpF64,
    keep: i32,
    kept_bytes: *mut usize,
) -> HpsfStatus {
    keep_blocks_impl(op.as_ref().map(|h| &h.0), keep, kept_bytes)
}

/// The cells of every rank (the length of a row of the gathered field).
///
/// # Safety
/// `op` must be NULL or live, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_k_total_f64(op: *const HpsfMpiOpF64, out: *mut usize) -> HpsfStatus {
    scalar(op, out, |h| h.0.op.cells_total())
}

/// The ids of the cells this rank owns, ascending (`len` = the count of its `k`).
///
/// # Safety
/// `op` must be NULL or live, `out` point to `len` writable values.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_cell_ids_f64(op: *const HpsfMpiOpF64, out: *mut u64, len: usize) -> HpsfStatus {
    array(op, out, len, "out", |h| h.0.op.cell_ids().to_vec())
}

/// Fits, collectively, the field of every rank's samples: this rank passes B rows of
/// values at its own samples (`val`, B·n; NaN = missing) and gets its own cells' values
/// (`hval`, B·k, in the order of its cell ids); `x0` NULL or B·k, `options` and `info` as
/// for `hpsf_fit_f64`. Every rank passes the same B and options.
///
/// # Safety
/// Every non-NULL pointer must point to the number of values its length says.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_fit_f64(
    op: *const HpsfMpiOpF64,
    val: *const f64,
    val_len: usize,
    options: *const HpsfFitOptions,
    x0: *const f64,
    x0_len: usize,
    hval: *mut f64,
    hval_len: usize,
    info: *mut HpsfFitInfo,
) -> HpsfStatus {
    run(|| {
        let op = op.as_ref().ok_or_else(|| null("op"))?;
        fit_impl(&op.0, val, val_len, options, x0, x0_len, hval, hval_len, None, info)
    })
}

/// Values at this rank's samples (`out`, B·n) of B fields given on each rank's own cells
/// (`hval`, B·k). Collective.
///
/// # Safety
/// `hval` must point to `hval_len` values, `out` to `out_len` writable values.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_resample_f64(
    op: *const HpsfMpiOpF64,
    hval: *const f64,
    hval_len: usize,
    out: *mut f64,
    out_len: usize,
) -> HpsfStatus {
    run(|| resample_impl(&op.as_ref().ok_or_else(|| null("op"))?.0, hval, hval_len, out, out_len))
}

/// The fit, then the fitted field at this rank's samples (`resampled`, B·n). Collective.
///
/// # Safety
/// As for the fit; `resampled` must point to `resampled_len` writable values.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_fit_resample_f64(
    op: *const HpsfMpiOpF64,
    val: *const f64,
    val_len: usize,
    options: *const HpsfFitOptions,
    x0: *const f64,
    x0_len: usize,
    hval: *mut f64,
    hval_len: usize,
    resampled: *mut f64,
    resampled_len: usize,
    info: *mut HpsfFitInfo,
) -> HpsfStatus {
    run(|| {
        let op = op.as_ref().ok_or_else(|| null("op"))?;
        let back = Some((resampled, resampled_len));
        fit_impl(&op.0, val, val_len, options, x0, x0_len, hval, hval_len, back, info)
    })
}

/// Assembles on rank `root` the whole field from every rank's B rows of its own cells
/// (`hval`, B·k): `ids` (k_total, ascending — the single-process operator's cell ids) and
/// `out` (B·k_total, row-major, in that order). The other ranks pass NULL and 0 for both.
/// Collective.
///
/// # Safety
/// `hval` must point to `hval_len` values; on `root`, `ids` and `out` to `ids_len` and
/// `out_len` writable values.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_gather_f64(
    op: *const HpsfMpiOpF64,
    root: i32,
    hval: *const f64,
    hval_len: usize,
    ids: *mut u64,
    ids_len: usize,
    out: *mut f64,
    out_len: usize,
) -> HpsfStatus {
    run(|| gather_impl(&op.as_ref().ok_or_else(|| null("op"))?.0, root, hval, hval_len, ids, ids_len, out, out_len))
}

// ---- single precision (as the f64 functions) ----------------------------------------------------

/// Builds, collectively on every rank of `comm` (a Fortran handle: `MPI_Comm_c2f(comm)` in
/// C), the part this rank owns of the operator of every rank's samples: this rank passes its
/// own `n` sample longitudes and latitudes (degrees) and the parameters every rank passes
/// alike (`params` NULL = the defaults at level 10). On success `*out` receives the handle
/// (free it with the matching `hpsf_mpi_free_*`, collectively); on failure, on every rank,
/// `*out` is left untouched.
///
/// # Safety
/// `comm` must be a valid communicator handle; `lon` and `lat` must point to `n` values,
/// `params` to an initialised `hpsf_params` (or be NULL), `out` to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_new_f32(
    comm: i32,
    lon: *const f64,
    lat: *const f64,
    n: usize,
    params: *const HpsfParams,
    out: *mut *mut HpsfMpiOpF32,
) -> HpsfStatus {
    run(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        let d = new_impl::<f32>(comm, lon, lat, n, params)?;
        out.write(Box::into_raw(Box::new(HpsfMpiOpF32(d))));
        Ok(())
    })
}

/// Frees an operator (NULL accepted). Collective: its communicator is freed too.
///
/// # Safety
/// `op` must be NULL or a handle from the matching `hpsf_mpi_new_*`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_free_f32(op: *mut HpsfMpiOpF32) {
    if !op.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(op))));
    }
}

/// The samples this rank passed.
///
/// # Safety
/// `op` must be NULL or live, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_n_f32(op: *const HpsfMpiOpF32, out: *mut usize) -> HpsfStatus {
    scalar(op, out, |h| h.0.op.n())
}

/// The cells this rank owns (the length of a row of its fitted values).
///
/// # Safety
/// `op` must be NULL or live, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_k_f32(op: *const HpsfMpiOpF32, out: *mut usize) -> HpsfStatus {
    scalar(op, out, |h| h.0.op.cell_ids().len())
}

/// As `hpsf_mpi_keep_blocks_f64`.
///
/// # Safety
/// As for `hpsf_mpi_keep_blocks_f64`.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_keep_blocks_f32(
    op: *const HpsfMpiOpF32,
    keep: i32,
    kept_bytes: *mut usize,
) -> HpsfStatus {
    keep_blocks_impl(op.as_ref().map(|h| &h.0), keep, kept_bytes)
}

/// The cells of every rank (the length of a row of the gathered field).
///
/// # Safety
/// `op` must be NULL or live, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_k_total_f32(op: *const HpsfMpiOpF32, out: *mut usize) -> HpsfStatus {
    scalar(op, out, |h| h.0.op.cells_total())
}

/// The ids of the cells this rank owns, ascending (`len` = the count of its `k`).
///
/// # Safety
/// `op` must be NULL or live, `out` point to `len` writable values.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_cell_ids_f32(op: *const HpsfMpiOpF32, out: *mut u64, len: usize) -> HpsfStatus {
    array(op, out, len, "out", |h| h.0.op.cell_ids().to_vec())
}

/// Fits, collectively, the field of every rank's samples: this rank passes B rows of
/// values at its own samples (`val`, B·n; NaN = missing) and gets its own cells' values
/// (`hval`, B·k, in the order of its cell ids); `x0` NULL or B·k, `options` and `info` as
/// for `hpsf_fit_f64`. Every rank passes the same B and options.
///
/// # Safety
/// Every non-NULL pointer must point to the number of values its length says.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_fit_f32(
    op: *const HpsfMpiOpF32,
    val: *const f32,
    val_len: usize,
    options: *const HpsfFitOptions,
    x0: *const f32,
    x0_len: usize,
    hval: *mut f32,
    hval_len: usize,
    info: *mut HpsfFitInfo,
) -> HpsfStatus {
    run(|| {
        let op = op.as_ref().ok_or_else(|| null("op"))?;
        fit_impl(&op.0, val, val_len, options, x0, x0_len, hval, hval_len, None, info)
    })
}

/// Values at this rank's samples (`out`, B·n) of B fields given on each rank's own cells
/// (`hval`, B·k). Collective.
///
/// # Safety
/// `hval` must point to `hval_len` values, `out` to `out_len` writable values.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_resample_f32(
    op: *const HpsfMpiOpF32,
    hval: *const f32,
    hval_len: usize,
    out: *mut f32,
    out_len: usize,
) -> HpsfStatus {
    run(|| resample_impl(&op.as_ref().ok_or_else(|| null("op"))?.0, hval, hval_len, out, out_len))
}

/// The fit, then the fitted field at this rank's samples (`resampled`, B·n). Collective.
///
/// # Safety
/// As for the fit; `resampled` must point to `resampled_len` writable values.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_fit_resample_f32(
    op: *const HpsfMpiOpF32,
    val: *const f32,
    val_len: usize,
    options: *const HpsfFitOptions,
    x0: *const f32,
    x0_len: usize,
    hval: *mut f32,
    hval_len: usize,
    resampled: *mut f32,
    resampled_len: usize,
    info: *mut HpsfFitInfo,
) -> HpsfStatus {
    run(|| {
        let op = op.as_ref().ok_or_else(|| null("op"))?;
        let back = Some((resampled, resampled_len));
        fit_impl(&op.0, val, val_len, options, x0, x0_len, hval, hval_len, back, info)
    })
}

/// Assembles on rank `root` the whole field from every rank's B rows of its own cells
/// (`hval`, B·k): `ids` (k_total, ascending — the single-process operator's cell ids) and
/// `out` (B·k_total, row-major, in that order). The other ranks pass NULL and 0 for both.
/// Collective.
///
/// # Safety
/// `hval` must point to `hval_len` values; on `root`, `ids` and `out` to `ids_len` and
/// `out_len` writable values.
#[no_mangle]
pub unsafe extern "C" fn hpsf_mpi_gather_f32(
    op: *const HpsfMpiOpF32,
    root: i32,
    hval: *const f32,
    hval_len: usize,
    ids: *mut u64,
    ids_len: usize,
    out: *mut f32,
    out_len: usize,
) -> HpsfStatus {
    run(|| gather_impl(&op.as_ref().ok_or_else(|| null("op"))?.0, root, hval, hval_len, ids, ids_len, out, out_len))
}
