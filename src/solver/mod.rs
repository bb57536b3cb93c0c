//! Damped weighted least squares by conjugate gradient (SPEC §4).
//!
//! For the selected rows (those with at least one valid sample) the update δ solves
//! `(v ↦ (v·MT)·M + λv) δ = (y0 − x_ref·MT)·M`, the stationarity condition of
//! `min_δ ‖δ·MT − (y0 − x_ref·MT)‖²_Dy + λ‖δ‖²_Dx`. The operator is self-adjoint and positive
//! semi-definite in the `Dx`-weighted inner product `<u,v>_w = Σ_k u_k v_k Dx_k`, so CG runs in that
//! inner product, one α and β per row with zero guards (a row with nothing left to solve takes zero
//! steps) and the residual updated recursively (Hestenes & Stiefel 1952).
//!
//! Scale: the solve runs on the data divided by a power of two near its magnitude (one factor for
//! all rows with the pooled rule, one per row with the per-row rule), which is exact, so that the
//! reference's absolute breakdown threshold (`|<p, Ap>_w| < 1e-30`) does not depend on the data's
//! units (mixing ratios of 1e-12 would otherwise stop CG at once).
//!
//! Stopping: [`Stopping::Pooled`] is the reference's rule — all rows iterate until the worst row's
//! residual norm is ≤ `tol` × the norm of the right-hand sides pooled over all rows, and a
//! breakdown (`max_rows |<p, Ap>_w| < 1e-30`) stops every row. It under-solves rows whose right-hand
//! side is small next to the others (SPEC §7.2). [`Stopping::PerRow`] holds each row to its own
//! right-hand side and drops converged rows from the work.
//!
//! Missing data ([`MissingData`]): by default each row's problem is restricted to its valid samples
//! — `x_ref_b` is each cell's Gaussian average renormalised over the row's valid samples and the
//! operator of row b is `v ↦ ((v·MT) ⊙ valid_b)·M + λv` — so that a gap pulls nothing towards zero;
//! [`MissingData::ZeroFill`] is the reference's way (a missing sample counts as 0).
//!
//! Layout: `cg` is the one conjugate gradient, `bounded` the active-set and conservation layers
//! around it, `problem` the fit of a block of rows (x_ref, right-hand side, dispatch); all are
//! generic over the `Backend` trait (src/backend), so every backend runs exactly this algorithm.

mod bounded;
mod cg;
mod problem;

pub(crate) use problem::{held_counts, reference_field, solve, Problem};

/// When the CG stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stopping {
    /// The reference's rule (default, for parity): every row iterates until
    /// `max_rows ‖r_b‖ ≤ tol · sqrt(Σ_rows ‖rhs_b‖²)`.
    #[default]
    Pooled,
    /// Each row stops when `‖r_b‖ ≤ tol · ‖rhs_b‖` (norms in the Dx inner product); converged rows
    /// stop costing work.
    PerRow,
}

/// Options of [`crate::PsfResampler::fit`].
///
/// # Examples
/// ```
/// use healpix_psf::{FitOptions, Stopping};
/// let o = FitOptions::<f32> { lam: 1e-3, stopping: Stopping::PerRow, ..FitOptions::default() };
/// assert_eq!(o.max_iter, 100);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions<F> {
    /// Damping λ ≥ 0 (default 0, the reference's). λ > 0 regularises cells with little support;
    /// with λ = 0 the problem is singular where cells outnumber samples locally (SPEC §7.13).
    pub lam: f64,
    /// Most CG iterations (default 100). 0 returns `x_ref + x0` (no iteration).
    pub max_iter: usize,
    /// Relative tolerance > 0 (default 1e-8), see [`Stopping`].
    pub tol: f64,
    /// Initial update δ₀, B×K row-major (default zeros).
    pub x0: Option<Vec<F>>,
    /// Return a [`FitInfo`] with the result (default false).
    pub return_info: bool,
    /// The stopping rule (default [`Stopping::Pooled`]).
    pub stopping: Stopping,
    /// Lower bound on the fitted values, imposed inside the fit (default [`Bound::Unbounded`]).
    pub lower: Bound,
    /// Upper bound on the fitted values, imposed inside the fit (default [`Bound::Unbounded`]).
    pub upper: Bound,
    /// With bounds, the most hold/solve/release passes of the active-set loop (default 10, ≥ 1).
    pub max_outer: usize,
    /// Make the mean of each fitted row equal the area-weighted mean of its valid samples exactly,
    /// by the minimum-distortion correction (default false; SPEC §4 item 7).
    pub conservative: bool,
    /// What becomes of cells none of whose linked samples is valid in a row (default
    /// [`EmptyCells::Missing`]).
    pub empty_cells: EmptyCells,
    /// Report the CG's progress on stderr about twice a second: iteration, residual against the
    /// one wanted, iteration rate and an estimate of the time left (default false).
    pub progress: bool,
    /// How a sample missing (NaN) in some rows only enters those rows' fits (default
    /// [`MissingData::PerRow`]).
    pub missing: MissingData,
    /// A check made between CG iterations (at most every 50 ms): when it answers `true` the fit
    /// stops with [`crate::Error::Interrupted`] (default none). For a caller that must react to its
    /// user during a long fit — Ctrl-C in Python. Not for a distributed fit (ignored there: every
    /// rank must take the same steps).
    pub interrupt: Option<Interrupt>,
}

/// The check of [`FitOptions::interrupt`]: called on the fit's thread between iterations.
#[derive(Clone)]
pub struct Interrupt(pub std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interrupt(..)")
    }
}

impl PartialEq for Interrupt {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<F> Default for FitOptions<F> {
    fn default() -> Self {
        FitOptions {
            lam: 0.0,
            max_iter: 100,
            tol: 1e-8,
            x0: None,
            return_info: false,
            stopping: Stopping::Pooled,
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
            max_outer: 10,
            conservative: false,
            empty_cells: EmptyCells::Missing,
            progress: false,
            missing: MissingData::PerRow,
            interrupt: None,
        }
    }
}

impl<F> FitOptions<F> {
    /// Whether a side of the box is set.
    pub fn is_bounded(&self) -> bool {
        self.lower != Bound::Unbounded || self.upper != Bound::Unbounded
    }
}

/// One side of the box the fitted values must stay in ([`FitOptions::lower`], [`FitOptions::upper`]).
///
/// The bounds are hard constraints of the fit (an active-set bounded CG, SPEC §4 item 8), not a clip
/// of its result: a cell held at 0 makes its neighbours take up what it cannot explain.
///
/// # Examples
/// ```
/// use healpix_psf::{Bound, FitOptions};
/// // a non-negative field (precipitation, reflectance)
/// let o = FitOptions::<f32> { lam: 1e-3, lower: Bound::Value(0.0), ..FitOptions::default() };
/// // within the range of each row's valid samples
/// let p = FitOptions::<f32> { lower: Bound::Input, upper: Bound::Input, ..o.clone() };
/// assert!(o.is_bounded() && p.is_bounded());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub enum Bound {
    /// No bound on this side (default).
    #[default]
    Unbounded,
    /// A fixed value for every row (±infinity = no bound; NaN is an error).
    Value(f64),
    /// The row's smallest (for `lower`) or largest (for `upper`) valid sample.
    Input,
}

/// What a fit returns for a cell none of whose linked samples is valid in a row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmptyCells {
    /// NaN (default): such a cell has no data. The reference returns a number there, fitted to the
    /// zeros that stand for missing samples (−124 to 199 °C on NEMO ORCA1 SST, SPEC §7.11).
    #[default]
    Missing,
    /// The fitted number, as the reference does (for parity). Only with
    /// [`MissingData::ZeroFill`]: with per-row missing data such a cell is not part of the row's
    /// problem and has no number (asking for one is an error).
    Fitted,
}

/// How a fit treats a sample that is missing (NaN) in a row.
///
/// # Examples
/// ```
/// use healpix_psf::{FitOptions, MissingData};
/// // the reference's behaviour, for parity
/// let o = FitOptions::<f64> { missing: MissingData::ZeroFill, ..FitOptions::default() };
/// assert_eq!(FitOptions::<f64>::default().missing, MissingData::PerRow);
/// # let _ = o;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingData {
    /// The sample is left out of that row's problem (default): with `valid_b` the row's valid
    /// samples, `x_ref_b` is each cell's Gaussian average renormalised over them,
    /// `x_ref_b[k] = Σ_i valid_b[i]·y_b[i]·M[i,k] / Σ_i valid_b[i]·M[i,k]`, and δ solves
    /// `((δ·MT) ⊙ valid_b)·M + λδ = ((y_b − x_ref_b·MT) ⊙ valid_b)·M`, the normal equations of
    /// `min_δ ‖((x_ref_b + δ)·MT − y_b) ⊙ valid_b‖²_Dy + λ‖δ‖²_Dx`. A cell in which no valid sample
    /// carries weight has no data in that row: it is not part of the row's problem and comes back
    /// NaN. One operator serves all rows; a row without missing samples is solved exactly as with
    /// `ZeroFill`.
    #[default]
    PerRow,
    /// The reference's behaviour (SPEC §4 step 1): a missing sample counts as 0 in the row's fit,
    /// which pulls the field towards zero around every gap.
    ZeroFill,
}

/// How the CG went, per input row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FitInfo {
    /// CG iterations run: shared by all rows with [`Stopping::Pooled`], the most of any row with
    /// [`Stopping::PerRow`].
    pub iterations: usize,
    /// Iterations of each row (0 for a row without valid samples).
    pub row_iterations: Vec<usize>,
    /// Each row's residual norm `‖r‖_Dx` before the first iteration and after each one (empty for a
    /// row without valid samples).
    pub residual_norms: Vec<Vec<f64>>,
    /// Whether each row met its stopping test (false for a row without valid samples).
    pub converged: Vec<bool>,
    /// Whether each row had at least one valid (non-NaN) sample; rows without come back all NaN.
    pub has_data: Vec<bool>,
    /// Active-set passes of a bounded fit (0 without bounds; the most of any row).
    pub outer_passes: usize,
    /// Cells held at the lower bound, per row (0 without bounds).
    pub n_clipped_low: Vec<usize>,
    /// Cells held at the upper bound, per row (0 without bounds).
    pub n_clipped_high: Vec<usize>,
    /// Cells none of whose linked samples is valid, per row (NaN in the result with
    /// [`EmptyCells::Missing`]; all K for a row without data).
    pub empty_cells: Vec<usize>,
    /// Root mean square of the fit's residual `hval·MT − y` over each row's valid samples where it
    /// is a number (NaN for a row without data).
    pub residual_rms: Vec<f64>,
    /// Largest |residual| over each row's valid samples (NaN for a row without data).
    pub residual_max: Vec<f64>,
}

/// The result of a fit: the cell values `hval` (B×K row-major) and, when asked for, the CG info.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit<F> {
    /// Cell values, B×K row-major (K values when B = 1).
    pub hval: Vec<F>,
    /// Number of rows B.
    pub rows: usize,
    /// The CG info when `return_info` was set.
    pub info: Option<FitInfo>,
}

/// Per-column powers of two near the magnitude of a block, from each column's largest |value|
/// (rounded down to a power of two, 1 for an all-zero column); with `common`, one factor (the
/// largest) for all.
pub(crate) fn pow2_scales(max_abs: &[f64], common: bool) -> Vec<f64> {
    let mut m = max_abs.to_vec();
    if common {
        let top = m.iter().copied().fold(0.0, f64::max);
        m.iter_mut().for_each(|x| *x = top);
    }
    // keep 1/scale representable in f32 too
    m.iter()
        .map(|&x| if x > 0.0 && x.is_finite() { 2f64.powi((x.log2().floor() as i32).clamp(-100, 100)) } else { 1.0 })
        .collect()
}
