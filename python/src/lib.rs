//! `healpix_psf._core`: the Python extension over the Rust library (PyO3 + numpy). It takes and
//! returns contiguous numpy arrays in the operator's precision; `healpix_psf/__init__.py` is the
//! user-facing layer (shapes, dtypes, defaults, docstrings, scipy matrices). Construction and fits
//! release the GIL.

use healpix_psf::{
    saved_file_precision, saved_precision, Area, Bound as Clip, EmptyCells, Error, Fit, FitInfo, FitOptions, Interrupt,
    MissingData, Params, PsfResampler, Real, Stopping,
};
use numpy::ndarray::Array2;
use numpy::{Element, IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// The library's error as a Python exception: what the caller passed wrong is a `ValueError`;
/// a problem with no valid answer for these samples or a failing device is a `RuntimeError`.
fn py_err(e: Error) -> PyErr {
    match e {
        Error::NoCellPassedThreshold { .. }
        | Error::NoSampleLinked { .. }
        | Error::DeviceUnavailable(_)
        | Error::Cuda(_)
        | Error::ThreadPool { .. }
        | Error::TooLarge { .. } => PyRuntimeError::new_err(e.to_string()),
        Error::Interrupted => pyo3::exceptions::PyKeyboardInterrupt::new_err(e.to_string()),
        Error::Io { .. } => pyo3::exceptions::PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

enum Op {
    F64(PsfResampler<f64>),
    F32(PsfResampler<f32>),
}

/// Runs `$body` with `$op` bound to the operator whatever its precision (`$F` its float type).
macro_rules! with_op {
    ($self:expr, $op:ident, $F:ident => $body:expr) => {
        match &$self.op {
            Op::F64($op) => {
                #[allow(dead_code)]
                type $F = f64;
                $body
            }
            Op::F32($op) => {
                #[allow(dead_code)]
                type $F = f32;
                $body
            }
        }
    };
}

/// A built operator (see `healpix_psf.PSFResampler`).
#[pyclass(module = "healpix_psf._core", name = "Operator", frozen)]
struct Operator {
    op: Op,
}

fn area_of(mode: &str, area: Option<PyReadonlyArray1<'_, f64>>) -> PyResult<Area> {
    Ok(match (mode, area) {
        ("explicit", Some(a)) => Area::Explicit(a.as_array().to_vec()),
        ("auto", None) => Area::Auto,
        ("spacing", None) => Area::Spacing,
        ("reference", None) => Area::ReferenceAuto,
        ("uniform", None) => Area::Uniform,
        (m, _) => {
            return Err(PyValueError::new_err(format!(
                "area: {m:?} is not auto, spacing, reference, uniform or an array"
            )))
        }
    })
}

fn bound_of(b: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Clip> {
    match b {
        None => Ok(Clip::Unbounded),
        Some(v) if v.is_none() => Ok(Clip::Unbounded),
        Some(v) => match v.extract::<String>() {
            Ok(s) if s == "input" => Ok(Clip::Input),
            Ok(s) => Err(PyValueError::new_err(format!("{name}: {s:?}: give a number, \"input\" or None"))),
            Err(_) => v.extract::<f64>().map(Clip::Value),
        },
    }
}

fn info_dict<'py>(py: Python<'py>, i: &FitInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("iterations", i.iterations)?;
    d.set_item("row_iterations", i.row_iterations.clone())?;
    d.set_item("converged", i.converged.clone())?;
    d.set_item("has_data", i.has_data.clone())?;
    d.set_item("residual_norms", i.residual_norms.clone())?;
    d.set_item("outer_passes", i.outer_passes)?;
    d.set_item("n_clipped_low", i.n_clipped_low.clone())?;
    d.set_item("n_clipped_high", i.n_clipped_high.clone())?;
    d.set_item("empty_cells", i.empty_cells.clone())?;
    d.set_item("residual_rms", i.residual_rms.clone())?;
    d.set_item("residual_max", i.residual_max.clone())?;
    Ok(d)
}

/// B rows of `width` values as a (B, width) array.
fn rows<'py, F: Element>(py: Python<'py>, v: Vec<F>, width: usize) -> PyResult<Bound<'py, PyArray2<F>>> {
    let b = v.len().checked_div(width).unwrap_or(0);
    Ok(Array2::from_shape_vec((b, width), v).map_err(|e| PyRuntimeError::new_err(e.to_string()))?.into_pyarray(py))
}

/// The fit options from the keywords (the values already checked for type by Python).
#[allow(clippy::too_many_arguments)]
fn options<F: Real + Element>(
    lam: f64,
    max_iter: usize,
    tol: f64,
    x0: Option<&Bound<'_, PyAny>>,
    return_info: bool,
    per_row: bool,
    lower: Option<&Bound<'_, PyAny>>,
    upper: Option<&Bound<'_, PyAny>>,
    max_outer: usize,
    conservative: bool,
    empty_cells: &str,
    missing: &str,
) -> PyResult<FitOptions<F>> {
    let x0 = match x0 {
        Some(x) if !x.is_none() => Some(x.extract::<PyReadonlyArray2<'_, F>>()?.as_array().iter().copied().collect()),
        _ => None,
    };
    Ok(FitOptions {
        lam,
        max_iter,
        tol,
        x0,
        return_info,
        stopping: if per_row { Stopping::PerRow } else { Stopping::Pooled },
        lower: bound_of(lower, "lower")?,
        upper: bound_of(upper, "upper")?,
        max_outer,
        conservative,
        empty_cells: match empty_cells {
            "missing" => EmptyCells::Missing,
            "fitted" => EmptyCells::Fitted,
            s => return Err(PyValueError::new_err(format!("empty_cells: {s:?} is not \"missing\" or \"fitted\""))),
        },
        progress: false,
        interrupt: None,
        missing: match missing {
            "per_row" => MissingData::PerRow,
            "zero_fill" => MissingData::ZeroFill,
            s => return Err(PyValueError::new_err(format!("missing: {s:?} is not \"per_row\" or \"zero_fill\""))),
        },
    })
}

/// A fit's result: the fit and, when asked for, the resampled field.
type Fitted<F> = Result<(Fit<F>, Option<Vec<F>>), Error>;

/// Runs `work` on a thread of its own while this (the main) thread waits without the GIL and looks
/// for signals every 50 ms: on Ctrl-C the fit is told to stop (`stop`, read by its interrupt check
/// between iterations) and the KeyboardInterrupt is raised once it has. Python runs signal handlers
/// on its main thread only, so the fit's own threads could not see them.
fn interruptible<F: Real>(
    py: Python<'_>,
    stop: &AtomicBool,
    work: impl FnOnce() -> Fitted<F> + Send,
) -> PyResult<Fitted<F>> {
    std::thread::scope(|s| {
        let (tx, mut rx) = mpsc::channel();
        s.spawn(move || {
            // a panic (a bug) becomes a message, not a panic of the scope
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
        });
        let panicked = |p: Box<dyn std::any::Any + Send>| {
            let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
            PyRuntimeError::new_err(format!("a bug: the fit panicked ({})", what.unwrap_or_default()))
        };
        loop {
            // the receiver moves into the GIL-free wait and back (it is Send, not Sync)
            let (got, back) = py.allow_threads(move || (rx.recv_timeout(Duration::from_millis(50)), rx));
            rx = back;
            match got {
                Ok(done) => return done.map_err(panicked),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(PyRuntimeError::new_err("the fit's thread ended without a result"))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = py.check_signals() {
                        stop.store(true, Ordering::Relaxed);
                        // the fit stops at its next iteration; wait for it before raising
                        let _ = py.allow_threads(move || rx.recv());
                        return Err(e);
                    }
                }
            }
        }
    })
}

/// The fit (and with `back`, the resampled field) of (B, N) values, without the GIL, stopped by
/// Ctrl-C between iterations.
fn fit_rows<'py, F: Real + Element>(
    py: Python<'py>,
    op: &PsfResampler<F>,
    val: &Bound<'py, PyAny>,
    mut opts: FitOptions<F>,
    back: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let v: Vec<F> = val.extract::<PyReadonlyArray2<'_, F>>()?.as_array().iter().copied().collect();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    opts.interrupt = Some(Interrupt(Arc::new(move || flag.load(Ordering::Relaxed))));
    let done = interruptible(py, &stop, || {
        if back {
            op.fit_resample(&v, &opts).map(|(f, r)| (f, Some(r)))
        } else {
            op.fit(&v, &opts).map(|f| (f, None))
        }
    })?;
    let (fit, resampled) = done.map_err(py_err)?;
    let info = fit.info.as_ref().map(|i| info_dict(py, i)).transpose()?;
    let hval = rows(py, fit.hval, op.k())?;
    let resampled = resampled.map(|r| rows(py, r, op.n())).transpose()?;
    (hval, resampled, info).into_pyobject(py).map(|t| t.into_any())
}

#[pymethods]
impl Operator {
    #[new]
    #[pyo3(signature = (lon_deg, lat_deg, level, npt, sigma_m, threshold, nest, radius, ellipsoid, single, device,
                        ring_weight, ring_search_init, ring_search_max, num_threads, verbose, area_mode, area,
                        out_cell_ids, fill_missing_out_cells, sample_mask))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        lon_deg: PyReadonlyArray1<'_, f64>,
        lat_deg: PyReadonlyArray1<'_, f64>,
        level: u8,
        npt: usize,
        sigma_m: Option<f64>,
        threshold: f64,
        nest: bool,
        radius: f64,
        ellipsoid: &str,
        single: bool,
        device: &str,
        ring_weight: Option<u32>,
        ring_search_init: Option<u32>,
        ring_search_max: Option<u32>,
        num_threads: usize,
        verbose: bool,
        area_mode: &str,
        area: Option<PyReadonlyArray1<'_, f64>>,
        out_cell_ids: Option<PyReadonlyArray1<'_, u64>>,
        fill_missing_out_cells: bool,
        sample_mask: Option<PyReadonlyArray1<'_, bool>>,
    ) -> PyResult<Self> {
        let params = Params {
            level,
            npt,
            sigma_m,
            threshold,
            nest,
            radius,
            ellipsoid: ellipsoid.parse().map_err(py_err)?,
            ring_weight,
            ring_search_init,
            ring_search_max,
            num_threads,
            verbose,
            area: area_of(area_mode, area)?,
            device: device.parse().map_err(py_err)?,
            out_cell_ids: out_cell_ids.map(|c| c.as_array().to_vec()),
            fill_missing_out_cells,
            sample_mask: sample_mask.map(|m| m.as_array().to_vec()),
        };
        let (lon, lat) = (lon_deg.as_array().to_vec(), lat_deg.as_array().to_vec());
        let op = py.allow_threads(|| {
            if single {
                PsfResampler::<f32>::new(&lon, &lat, &params).map(Op::F32)
            } else {
                PsfResampler::<f64>::new(&lon, &lat, &params).map(Op::F64)
            }
        });
        Ok(Operator { op: op.map_err(py_err)? })
    }

    /// The operator in the library's saved format (for pickling).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let bytes = py.allow_threads(|| with_op!(self, op, F => op.to_bytes()));
        PyBytes::new(py, &bytes)
    }

    /// An operator from `to_bytes`'s bytes, on `device`, in the precision it was saved in.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8], device: &str, num_threads: usize) -> PyResult<Self> {
        let device = device.parse().map_err(py_err)?;
        let precision = saved_precision(data).map_err(py_err)?;
        let op = py.allow_threads(|| {
            let mut r = data;
            match precision {
                "f32" => PsfResampler::<f32>::load(&mut r, device, num_threads).map(Op::F32),
                _ => PsfResampler::<f64>::load(&mut r, device, num_threads).map(Op::F64),
            }
        });
        Ok(Operator { op: op.map_err(py_err)? })
    }

    /// Saves the operator into the file `path` (written whole or not at all).
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        py.allow_threads(|| with_op!(self, op, F => op.save_file(&path))).map_err(py_err)
    }

    /// An operator saved by `save`, on `device`, in the precision it was saved in.
    #[staticmethod]
    fn load(py: Python<'_>, path: std::path::PathBuf, device: &str, num_threads: usize) -> PyResult<Self> {
        let device = device.parse().map_err(py_err)?;
        let op = py.allow_threads(|| {
            let precision = saved_file_precision(&path)?;
            match precision {
                "f32" => PsfResampler::<f32>::load_file(&path, device, num_threads).map(Op::F32),
                _ => PsfResampler::<f64>::load_file(&path, device, num_threads).map(Op::F64),
            }
        });
        Ok(Operator { op: op.map_err(py_err)? })
    }

    #[getter]
    fn ellipsoid(&self) -> &'static str {
        with_op!(self, op, F => op.ellipsoid().name())
    }

    #[getter]
    fn single(&self) -> bool {
        matches!(self.op, Op::F32(_))
    }
    #[getter]
    fn n(&self) -> usize {
        with_op!(self, op, F => op.n())
    }
    #[getter]
    fn n_used(&self) -> usize {
        with_op!(self, op, F => op.n_used())
    }
    #[getter]
    fn k(&self) -> usize {
        with_op!(self, op, F => op.k())
    }
    #[getter]
    fn npt(&self) -> usize {
        with_op!(self, op, F => op.npt())
    }
    #[getter]
    fn nnz(&self) -> usize {
        with_op!(self, op, F => op.nnz())
    }
    #[getter]
    fn level(&self) -> u8 {
        with_op!(self, op, F => op.level())
    }
    #[getter]
    fn nest(&self) -> bool {
        with_op!(self, op, F => op.nest())
    }
    #[getter]
    fn sigma_m(&self) -> f64 {
        with_op!(self, op, F => op.sigma_m())
    }
    #[getter]
    fn radius(&self) -> f64 {
        with_op!(self, op, F => op.radius())
    }
    #[getter]
    fn threshold(&self) -> f64 {
        with_op!(self, op, F => op.threshold())
    }

    fn cell_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        with_op!(self, op, F => op.cell_ids().to_vec().into_pyarray(py))
    }
    fn hi<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<i32>>> {
        with_op!(self, op, F => rows(py, op.hi(), op.npt()))
    }
    fn d_m<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        with_op!(self, op, F => rows(py, op.d_m(), op.npt()).map(|a| a.into_any()))
    }
    fn area<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        with_op!(self, op, F => op.area().into_pyarray(py).into_any())
    }
    fn cell_weight<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        with_op!(self, op, F => op.cell_weight().to_vec().into_pyarray(py).into_any())
    }
    fn uncomputable_cells<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u32>> {
        with_op!(self, op, F => op.uncomputable_cells().to_vec().into_pyarray(py))
    }
    /// `M` (N×K, `transpose` false) or `MT` (K×N) as (rows, cols, values, shape) triplets.
    fn triplets<'py>(&self, py: Python<'py>, transpose: bool) -> PyResult<Bound<'py, PyAny>> {
        with_op!(self, op, F => {
            let t = if transpose { op.mt_triplets() } else { op.m_triplets() };
            let shape = (t.n_rows, t.n_cols);
            (t.rows.into_pyarray(py), t.cols.into_pyarray(py), t.vals.into_pyarray(py), shape)
                .into_pyobject(py)
                .map(|t| t.into_any())
        })
    }

    /// Fits (B, N) values: (hval (B, K), None, info dict or None); with `resample`, the resampled
    /// field (B, N) in the middle.
    #[pyo3(signature = (val, lam, max_iter, tol, x0, return_info, per_row, lower, upper, max_outer, conservative,
                        empty_cells, missing, resample))]
    #[allow(clippy::too_many_arguments)]
    fn fit<'py>(
        &self,
        py: Python<'py>,
        val: &Bound<'py, PyAny>,
        lam: f64,
        max_iter: usize,
        tol: f64,
        x0: Option<&Bound<'py, PyAny>>,
        return_info: bool,
        per_row: bool,
        lower: Option<&Bound<'py, PyAny>>,
        upper: Option<&Bound<'py, PyAny>>,
        max_outer: usize,
        conservative: bool,
        empty_cells: &str,
        missing: &str,
        resample: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        with_op!(self, op, F => {
            let o = options::<F>(
                lam, max_iter, tol, x0, return_info, per_row, lower, upper, max_outer, conservative, empty_cells, missing,
            )?;
            fit_rows(py, op, val, o, resample)
        })
    }

    /// Keeps the working blocks between calls or gives them back; the bytes held now.
    fn keep_blocks(&self, keep: bool) -> usize {
        with_op!(self, op, F => {
            op.keep_blocks(keep);
            op.kept_bytes()
        })
    }

    /// The values at the samples (B, N) of B cell fields (B, K).
    fn resample<'py>(&self, py: Python<'py>, hval: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        with_op!(self, op, F => {
            let h: Vec<F> = hval.extract::<PyReadonlyArray2<'_, F>>()?.as_array().iter().copied().collect();
            let out = py.allow_threads(|| op.resample(&h)).map_err(py_err)?;
            rows(py, out, op.n()).map(|a| a.into_any())
        })
    }
}

/// (level, spacing in metres): the finest HEALPix level whose cells are at least as wide as the
/// median spacing of the samples (what the command line's `--level auto` picks).
#[pyfunction]
fn level_for_samples(
    py: Python<'_>,
    lon_deg: PyReadonlyArray1<'_, f64>,
    lat_deg: PyReadonlyArray1<'_, f64>,
) -> PyResult<(u8, f64)> {
    let (lon, lat) = (lon_deg.as_array().to_vec(), lat_deg.as_array().to_vec());
    py.allow_threads(|| {
        let d = healpix_psf::kernel::sample_spacing_m(&lon, &lat)?;
        Ok((healpix_psf::kernel::level_for_spacing(d)?, d))
    })
    .map_err(py_err)
}

/// The library's version.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Operator>()?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(level_for_samples, m)?)?;
    Ok(())
}
