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

mod bounded;

use crate::real::Real;
use crate::sparse::{cg_direction, cg_update, m_product, mt_product, wdot, CellLinks, MExtras, SampleLinks};
pub(crate) use bounded::{bounded_cg, clamp, conserve, conserve_bounded, BoundedOut};

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
    /// The fitted number, as the reference does (for parity).
    Fitted,
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

/// A linear operator CG can run on: self-adjoint and positive semi-definite in the `Dx` inner
/// product, applied to K×m interleaved blocks.
pub(crate) trait LinOp<F: Real> {
    /// The CG weight `Dx` (K).
    fn dx(&self) -> &[F];
    /// `ap = A p` for a K×m block whose columns are the rows `rows` of the problem (so that a
    /// per-row operator can pick its own data); `u` is scratch. Returns `<p, Ap>_w` per column.
    fn apply(&self, p: &[F], ap: &mut [F], rows: &[usize], u: &mut Vec<F>) -> Vec<f64>;
}

/// The normal operator `v ↦ (v·MT)·M + λv` over K×s interleaved blocks.
pub(crate) struct Normal<'a, F: Real> {
    pub samples: &'a SampleLinks<F>,
    pub cells: &'a CellLinks<F>,
    pub dx: &'a [F],
    pub lam: F,
    pub n: usize,
}

impl<F: Real> LinOp<F> for Normal<'_, F> {
    fn dx(&self) -> &[F] {
        self.dx
    }
    fn apply(&self, p: &[F], ap: &mut [F], rows: &[usize], u: &mut Vec<F>) -> Vec<f64> {
        let s = rows.len();
        u.resize(self.n * s, F::ZERO);
        mt_product(self.samples, p, s, u);
        m_product(self.cells, u, s, ap, MExtras { add: Some((self.lam, p)), dot_with: Some((p, self.dx)) })
    }
}

/// `v ↦ f·A(f·v)` with `f` a 0/1 mask per cell and row (K×rows interleaved): the operator restricted
/// to the free cells of a bounded fit. Still self-adjoint and semi-definite in the `Dx` product.
pub(crate) struct Masked<'a, F: Real, O: LinOp<F>> {
    pub inner: &'a O,
    /// K×`rows` interleaved 0/1 mask.
    pub free: &'a [F],
    pub rows: usize,
}

impl<F: Real, O: LinOp<F>> LinOp<F> for Masked<'_, F, O> {
    fn dx(&self) -> &[F] {
        self.inner.dx()
    }
    fn apply(&self, p: &[F], ap: &mut [F], rows: &[usize], u: &mut Vec<F>) -> Vec<f64> {
        let m = rows.len();
        let mut fp = p.to_vec();
        for (fr, mr) in fp.chunks_exact_mut(m).zip(self.free.chunks_exact(self.rows)) {
            for (x, &j) in fr.iter_mut().zip(rows) {
                *x *= mr[j];
            }
        }
        // <f·p, A(f·p)>_w = <p, f·A(f·p)>_w for a 0/1 mask
        let dots = self.inner.apply(&fp, ap, rows, u);
        for (ar, mr) in ap.chunks_exact_mut(m).zip(self.free.chunks_exact(self.rows)) {
            for (x, &j) in ar.iter_mut().zip(rows) {
                *x *= mr[j];
            }
        }
        dots
    }
}

/// Per-column powers of two near the magnitude of an E×s block (the largest |value| rounded down to
/// a power of two, 1 for an all-zero column); with `common`, one factor (the largest) for all.
pub(crate) fn pow2_scales<F: Real>(v: &[F], s: usize, common: bool) -> Vec<f64> {
    let mut m = vec![0.0f64; s];
    for row in v.chunks_exact(s) {
        for (mj, x) in m.iter_mut().zip(row) {
            *mj = mj.max(x.abs().to_f64());
        }
    }
    if common {
        let top = m.iter().copied().fold(0.0, f64::max);
        m.iter_mut().for_each(|x| *x = top);
    }
    // keep 1/scale representable in f32 too
    m.iter()
        .map(|&x| if x > 0.0 && x.is_finite() { 2f64.powi((x.log2().floor() as i32).clamp(-100, 100)) } else { 1.0 })
        .collect()
}

/// CG outcome for the selected rows: δ (K×s interleaved) and per-row info.
pub(crate) struct CgOut<F> {
    pub x: Vec<F>,
    pub iterations: Vec<usize>,
    pub norms: Vec<Vec<f64>>,
    pub converged: Vec<bool>,
}

/// Keeps the columns `keep` of a E×s interleaved block.
pub(crate) fn keep_columns<F: Copy>(v: &[F], s: usize, keep: &[usize]) -> Vec<F> {
    let mut out = Vec::with_capacity(v.len() / s * keep.len());
    for row in v.chunks_exact(s) {
        out.extend(keep.iter().map(|&j| row[j]));
    }
    out
}

/// Writes column `j` of an E×s block into column `col` of an E×t block.
pub(crate) fn put_column<F: Copy>(dst: &mut [F], t: usize, col: usize, src: &[F], s: usize, j: usize) {
    for (d, r) in dst.chunks_exact_mut(t).zip(src.chunks_exact(s)) {
        d[col] = r[j];
    }
}

/// Solves `A δ = rhs` for s rows (K×s interleaved) from `x0` (K×s, or zeros).
pub(crate) fn cg<F: Real>(
    a: &impl LinOp<F>,
    rhs: Vec<F>,
    x0: Option<Vec<F>>,
    s: usize,
    max_iter: usize,
    tol: f64,
    stopping: Stopping,
) -> CgOut<F> {
    let k = a.dx().len();
    let mut u = Vec::new();
    let mut x = x0.unwrap_or_else(|| vec![F::ZERO; k * s]);
    let rhs_dots = wdot(&rhs, &rhs, a.dx(), s);
    let mut r = rhs;
    if x.iter().any(|&v| v != F::ZERO) {
        let mut ax = vec![F::ZERO; k * s];
        a.apply(&x, &mut ax, &(0..s).collect::<Vec<_>>(), &mut u);
        for (ri, &v) in r.iter_mut().zip(&ax) {
            *ri -= v;
        }
    }
    let mut rs = wdot(&r, &r, a.dx(), s);

    let mut out = CgOut {
        x: vec![F::ZERO; k * s],
        iterations: vec![0; s],
        norms: rs.iter().map(|v| vec![v.sqrt()]).collect(),
        converged: vec![false; s],
    };
    // stopping thresholds per row
    let pooled = tol * rhs_dots.iter().sum::<f64>().sqrt();
    let thr: Vec<f64> = match stopping {
        Stopping::Pooled => vec![pooled; s],
        Stopping::PerRow => rhs_dots.iter().map(|d| tol * d.sqrt()).collect(),
    };
    // rows still iterating (indices into 0..s). With a zero right-hand side the minimiser is δ = 0:
    // the per-row rule returns it; the pooled rule returns x0 untouched, as the reference does, and
    // calls it converged only if x0 leaves no residual.
    let mut active: Vec<usize> = match stopping {
        Stopping::Pooled if pooled == 0.0 => vec![],
        Stopping::Pooled => (0..s).collect(),
        Stopping::PerRow => (0..s).filter(|&j| thr[j] > 0.0).collect(),
    };
    for (j, &rsj) in rs.iter().enumerate().filter(|(j, _)| !active.contains(j)) {
        match stopping {
            Stopping::Pooled => {
                out.converged[j] = rsj == 0.0;
                put_column(&mut out.x, s, j, &x, s, j);
            }
            Stopping::PerRow => {
                out.converged[j] = true;
                out.norms[j] = vec![0.0];
            }
        }
    }
    if active.len() < s {
        x = keep_columns(&x, s, &active);
        r = keep_columns(&r, s, &active);
        rs = active.iter().map(|&j| rs[j]).collect();
    }
    let mut p = r.clone();
    let mut ap = vec![F::ZERO; k * active.len()];
    let mut report = crate::parallel::CgProgress::new(max_iter);

    for it in 0..max_iter {
        let m = active.len();
        if m == 0 {
            break;
        }
        if let Some(report) = report.as_mut() {
            // the active row furthest from its threshold
            let worst =
                (0..m).map(|j| (rs[j].sqrt(), thr[active[j]])).max_by(|a, b| (a.0 * b.1).total_cmp(&(b.0 * a.1)));
            if let Some((norm, wanted)) = worst {
                report.iteration(it, norm, wanted);
            }
        }
        let den = a.apply(&p, &mut ap, &active, &mut u);
        // breakdown: the reference stops everything; per row, only the rows concerned
        let broken: Vec<bool> = match stopping {
            Stopping::Pooled => vec![den.iter().fold(0.0f64, |acc, d| acc.max(d.abs())) < 1e-30; m],
            Stopping::PerRow => den.iter().map(|d| d.abs() < 1e-30).collect(),
        };
        let alpha: Vec<F> =
            (0..m).map(|j| if den[j] != 0.0 && !broken[j] { F::from_f64(rs[j] / den[j]) } else { F::ZERO }).collect();
        let rs_new = cg_update(&mut x, &mut r, &p, &ap, &alpha, a.dx());
        let mut done = vec![false; m];
        for j in 0..m {
            if broken[j] {
                done[j] = true; // no step was taken: no new norm
                continue;
            }
            let row = active[j];
            out.iterations[row] += 1;
            out.norms[row].push(rs_new[j].sqrt());
        }
        let converged_now: Vec<bool> = match stopping {
            Stopping::Pooled => {
                // every row within the pooled threshold (a NaN norm never passes)
                let all_within = rs_new.iter().all(|v| v.sqrt() <= pooled);
                vec![all_within && !broken[0]; m]
            }
            Stopping::PerRow => (0..m).map(|j| !broken[j] && rs_new[j].sqrt() <= thr[active[j]]).collect(),
        };
        for j in 0..m {
            if converged_now[j] {
                done[j] = true;
                out.converged[active[j]] = true;
            }
        }
        let beta: Vec<F> =
            (0..m).map(|j| if rs[j] != 0.0 { F::from_f64(rs_new[j] / rs[j]) } else { F::ZERO }).collect();
        rs = rs_new;
        if done.iter().any(|&d| d) {
            let keep: Vec<usize> = (0..m).filter(|&j| !done[j]).collect();
            for j in (0..m).filter(|&j| done[j]) {
                put_column(&mut out.x, s, active[j], &x, m, j);
            }
            if keep.is_empty() {
                active.clear();
                break;
            }
            x = keep_columns(&x, m, &keep);
            r = keep_columns(&r, m, &keep);
            p = keep_columns(&p, m, &keep);
            ap.truncate(k * keep.len());
            rs = keep.iter().map(|&j| rs[j]).collect();
            let beta: Vec<F> = keep.iter().map(|&j| beta[j]).collect();
            active = keep.iter().map(|&j| active[j]).collect();
            cg_direction(&mut p, &r, &beta);
        } else {
            cg_direction(&mut p, &r, &beta);
        }
    }
    // rows that ran out of iterations
    let m = active.len();
    for (j, &row) in active.iter().enumerate() {
        put_column(&mut out.x, s, row, &x, m, j);
    }
    for ((conv, norms), &t) in out.converged.iter_mut().zip(&out.norms).zip(&thr) {
        if !*conv {
            *conv = norms.last().is_some_and(|&v| v <= t);
        }
    }
    out
}
