//! The public solve API: `fit`, `resample`, `fit_resample`, `apply_m` (SPEC §4–§5).
//!
//! Values are row-major: B rows of N sample values in, B rows of K cell values out (one row is just
//! N or K values). The backend gathers the caller's rows into its blocks (the rows interleaved,
//! samples in the operator's order; on a GPU, on the device) and scatters results back
//! (`Backend::gather`, `Backend::scatter`).

use super::{PsfResampler, LEFT_OUT};
use crate::backend::cpu::Cpu;
use crate::backend::{with_backend, Axis, Backend, Gathered, Placed, RowFacts, Scales};
use crate::error::{Error, Result};
use crate::parallel::with_threads;
use crate::real::Real;
use crate::solver::{
    self, held_counts, pow2_scales, Bound, EmptyCells, Fit, FitInfo, FitOptions, MissingData, Problem, Stopping,
};
use rayon::prelude::*;

/// Number of rows of a row-major block of `len` values of width `width`.
fn rows_of(len: usize, width: usize, what: &'static str) -> Result<usize> {
    if len == 0 || width == 0 || !len.is_multiple_of(width) {
        return Err(Error::LengthMismatch { what, expected: width, got: len });
    }
    Ok(len / width)
}

impl<F: Real> PsfResampler<F> {
    /// `y0·M` for B rows of N sample values (NaN samples count as 0, as in the reference): the
    /// area-weighted Gaussian average of the samples around each cell, `x_ref` of the fit. B×K.
    ///
    /// # Examples
    /// ```
    /// use healpix_psf::{Params, PsfResampler};
    /// let (lon, lat): (Vec<f64>, Vec<f64>) = (0..400).map(|i| (8.0 + 0.01 * (i % 20) as f64, 45.0 + 0.01 * (i / 20) as f64)).unzip();
    /// let op = PsfResampler::<f64>::new(&lon, &lat, &Params::new(10))?;
    /// // a constant field averages to the same constant in every cell
    /// let x = op.apply_m(&vec![3.0; op.n()])?;
    /// assert!(x.iter().all(|v| (v - 3.0).abs() < 1e-12));
    /// # Ok::<(), healpix_psf::Error>(())
    /// ```
    pub fn apply_m(&self, val: &[F]) -> Result<Vec<F>> {
        let b = rows_of(val.len(), self.n, "val")?;
        with_threads(self.cfg.num_threads, || {
            with_backend!(&self.placed, self.cpu(), |be| self.apply_m_on(be, val, b))
        })?
    }

    fn apply_m_on<B: Backend<F>>(&self, be: &B, val: &[F], b: usize) -> Result<Vec<F>> {
        let g = self.gather_samples(be, val, b, true, false)?;
        let mut out = be.output(self.k() * b)?;
        be.m(&g.vals, b, &mut out, None, None)?;
        be.scatter(&out, b, Axis::Cells(self.k()))
    }

    /// The field a fit of B rows of N sample values starts from, `x_ref` (B×K; see
    /// [`MissingData`]): each cell's area-weighted Gaussian average of the samples, over the row's
    /// valid samples with [`MissingData::PerRow`] (NaN in a cell where none carries weight), or with
    /// missing samples counted as 0 with [`MissingData::ZeroFill`] (then equal to
    /// [`PsfResampler::apply_m`]). A fit's `x0` is an update of this field: to start from an
    /// earlier fit `h`, give `x0 = h − x_ref`. Rows without valid samples are NaN.
    ///
    /// # Examples
    /// ```
    /// use healpix_psf::{MissingData, Params, PsfResampler};
    /// let (lon, lat): (Vec<f64>, Vec<f64>) = (0..400).map(|i| (8.0 + 0.01 * (i % 20) as f64, 45.0 + 0.01 * (i / 20) as f64)).unzip();
    /// let op = PsfResampler::<f64>::new(&lon, &lat, &Params::new(10))?;
    /// // a constant field with a gap
    /// let mut val = vec![3.0; op.n()];
    /// val[..40].iter_mut().for_each(|v| *v = f64::NAN);
    /// // over the valid samples, the average of a constant is that constant
    /// let x = op.x_ref(&val, MissingData::PerRow)?;
    /// assert!(x.iter().all(|v| v.is_nan() || (v - 3.0).abs() < 1e-12));
    /// // counting the gap as zeros pulls the cells near it down
    /// let z = op.x_ref(&val, MissingData::ZeroFill)?;
    /// assert!(z.iter().any(|&v| v < 2.9));
    /// assert_eq!(z, op.apply_m(&val)?);
    /// # Ok::<(), healpix_psf::Error>(())
    /// ```
    pub fn x_ref(&self, val: &[F], missing: MissingData) -> Result<Vec<F>> {
        let b = rows_of(val.len(), self.n, "val")?;
        let per_row = missing == MissingData::PerRow;
        let (axis, k, n_used) = (self.samples_axis(), self.k(), self.n_used());
        let infinite = || infinite_error(val, axis, "val");
        let (x, sel) = with_threads(self.cfg.num_threads, || {
            with_backend!(&self.placed, self.cpu(), |be| reference_rows(be, val, axis, k, n_used, per_row, &infinite))
        })??;
        Ok(expand_rows(x, b, self.k(), &sel))
    }

    /// Values at the samples of B cell fields: `hval·MT`, each sample's normalised Gaussian
    /// interpolation of its linked cells. `hval` is B×K row-major; returns B×N. A NaN cell reaches
    /// only the samples linked to it; a sample with no link gets 0, one left out by `sample_mask`
    /// NaN. Infinite values are an error.
    ///
    /// # Examples
    /// ```
    /// use healpix_psf::{Params, PsfResampler};
    /// let (lon, lat): (Vec<f64>, Vec<f64>) = (0..400).map(|i| (8.0 + 0.01 * (i % 20) as f64, 45.0 + 0.01 * (i / 20) as f64)).unzip();
    /// let op = PsfResampler::<f32>::new(&lon, &lat, &Params::new(10))?;
    /// // two cell fields: a constant interpolates to the same constant at every sample
    /// let mut h = vec![2.0f32; 2 * op.k()];
    /// h[op.k()..].iter_mut().for_each(|v| *v = -1.0);
    /// let at_samples = op.resample(&h)?;
    /// assert!(at_samples[..op.n()].iter().all(|v| (v - 2.0).abs() < 1e-5));
    /// assert!(at_samples[op.n()..].iter().all(|v| (v + 1.0).abs() < 1e-5));
    /// # Ok::<(), healpix_psf::Error>(())
    /// ```
    pub fn resample(&self, hval: &[F]) -> Result<Vec<F>> {
        let b = rows_of(hval.len(), self.k(), "hval")?;
        with_threads(self.cfg.num_threads, || {
            with_backend!(&self.placed, self.cpu(), |be| self.resample_on(be, hval, b))
        })?
    }

    fn resample_on<B: Backend<F>>(&self, be: &B, hval: &[F], b: usize) -> Result<Vec<F>> {
        let infinite = || infinite_error(hval, Axis::Cells(self.k()), "hval");
        resample_rows(be, hval, b, self.k(), self.samples_axis(), &infinite)
    }

    /// The operator's sample axis: the caller's samples in cell order.
    fn samples_axis(&self) -> Axis<'_> {
        Axis::Samples { order: &self.order, position: &self.position }
    }

    /// The s rows of sample values `val` gathered on `be` (see [`Backend::gather`]); an infinite
    /// value (of a sample the operator uses) is an error naming it.
    fn gather_samples<B: Backend<F>>(
        &self,
        be: &B,
        val: &[F],
        s: usize,
        zero_nan: bool,
        mask: bool,
    ) -> Result<Gathered<B::Vals, B::Mask>> {
        let axis = self.samples_axis();
        gather_finite(be, val, s, axis, zero_nan, mask, None, &|| infinite_error(val, axis, "val"))
    }

    /// Fits the cell field that best explains B rows of N sample values (row-major; NaN = missing):
    /// `hval = x_ref + δ` with `x_ref = y0·M` and δ the damped weighted least-squares update found
    /// by conjugate gradient (SPEC §4). Rows without any valid sample come back all NaN and take no
    /// part in the solve. Infinite values are an error.
    ///
    /// # Examples
    /// ```
    /// use healpix_psf::{FitOptions, Params, PsfResampler};
    /// let (lon, lat): (Vec<f64>, Vec<f64>) = (0..900).map(|i| (8.0 + 0.01 * (i % 30) as f64, 45.0 + 0.01 * (i / 30) as f64)).unzip();
    /// let op = PsfResampler::<f64>::new(&lon, &lat, &Params::new(11))?;
    /// let val: Vec<f64> = lon.iter().zip(&lat).map(|(x, y)| (x * 3.0).sin() + (y * 2.0).cos()).collect();
    /// let fit = op.fit(&val, &FitOptions { lam: 1e-3, return_info: true, ..FitOptions::default() })?;
    /// assert_eq!(fit.hval.len(), op.k());
    /// // the fit reproduces the samples better than the Gaussian average x_ref does
    /// let rms = |v: &[f64]| (v.iter().zip(&val).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / val.len() as f64).sqrt();
    /// let fitted = rms(&op.resample(&fit.hval)?);
    /// let smoothed = rms(&op.resample(&op.apply_m(&val)?)?);
    /// assert!(fitted < smoothed, "{fitted} vs {smoothed}");
    /// assert!(fit.info.unwrap().iterations > 0);
    /// # Ok::<(), healpix_psf::Error>(())
    /// ```
    pub fn fit(&self, val: &[F], opts: &FitOptions<F>) -> Result<Fit<F>> {
        Ok(self.fit_and_back(val, opts)?.0)
    }

    /// [`PsfResampler::fit`], and with `return_info` the resampled fit its residual statistics were
    /// taken from (so that `fit_resample` does not compute it again).
    fn fit_and_back(&self, val: &[F], opts: &FitOptions<F>) -> Result<(Fit<F>, Option<Vec<F>>)> {
        let (n, k) = (self.n, self.k());
        let b = rows_of(val.len(), n, "val")?;
        check_fit_options(b, k, opts)?;
        let mut solved = with_threads(self.cfg.num_threads, || {
            with_backend!(&self.placed, self.cpu(), |be| self.solve_rows(be, val, opts))
        })??;
        let sel = solved.sel.clone();
        let mut info = solved.info(b, k);
        let mut hval = expand_rows(std::mem::take(&mut solved.hval), b, k, &sel);
        let mut back = None;
        if !sel.is_empty() {
            let s = sel.len();
            let missing = opts.empty_cells == EmptyCells::Missing;
            for (j, &row) in sel.iter().enumerate().filter(|_| missing || opts.return_info) {
                let empty: std::borrow::Cow<'_, [u32]> = match solved.empty_rule(j) {
                    EmptyRule::NoneMissing => std::borrow::Cow::Borrowed(&self.unlinked),
                    EmptyRule::Renormalised(codes) => std::borrow::Cow::Owned(without_data(codes, k, s, j)),
                    EmptyRule::ZeroFilled => std::borrow::Cow::Owned(self.empty_cells(&val[row * n..(row + 1) * n])?),
                };
                info.empty_cells[row] = empty.len();
                if missing {
                    for &c in empty.iter() {
                        hval[row * k + c as usize] = F::from_f64(f64::NAN);
                    }
                }
            }
            // requested cells without enough support (out_cell_ids): NaN, or the nearest sample
            for &row in &sel {
                for (i, &c) in self.uncomputable.iter().enumerate() {
                    hval[row * k + c as usize] = match self.fill_from.get(i) {
                        Some(&smp) => val[row * n + smp as usize],
                        None => F::from_f64(f64::NAN),
                    };
                }
            }
            if opts.return_info {
                let resampled = self.resample(&hval)?;
                for &row in &sel {
                    let (rms, max) = residual_stats(&resampled[row * n..(row + 1) * n], &val[row * n..(row + 1) * n]);
                    info.residual_rms[row] = rms;
                    info.residual_max[row] = max;
                }
                back = Some(resampled);
            }
        }
        Ok((Fit { hval, rows: b, info: opts.return_info.then_some(info) }, back))
    }

    /// The fit on `be` of the rows of `val` with a valid sample (see [`solve_rows`]).
    fn solve_rows<B: Backend<F>>(&self, be: &B, val: &[F], opts: &FitOptions<F>) -> Result<Solved<F>> {
        let side = Side {
            axis: self.samples_axis(),
            k: self.k(),
            n_used: self.n_used(),
            skip: &self.uncomputable,
            means: &|sel, inv| self.conservation_means(val, sel, inv),
            infinite: &|| infinite_error(val, self.samples_axis(), "val"),
            x0: opts.x0.as_deref().filter(|x0| x0.iter().any(|&v| v != F::ZERO)),
        };
        solve_rows(be, val, opts, &side)
    }

    /// The area-weighted mean of each selected row's valid samples, in the scaled units (NaN where
    /// the valid samples have no area): the mean the conservative fit keeps.
    fn conservation_means(&self, val: &[F], sel: &[usize], inv: &[F]) -> Result<Vec<f64>> {
        let n = self.n;
        let area = self.try_host_area()?;
        Ok(sel
            .iter()
            .zip(inv)
            .map(|(&row, &c)| {
                let used = (0..n).filter(|&i| self.position[i] != LEFT_OUT);
                let (num, den) =
                    area_sums(&val[row * n..(row + 1) * n], used.map(|i| (i, area[self.position[i] as usize])));
                mean_of(num, den, c)
            })
            .collect())
    }

    /// Cells none of whose linked samples is valid in this row of N values, ascending.
    fn empty_cells(&self, row: &[F]) -> Result<Vec<u32>> {
        let cells = self.try_host_cells()?;
        let ptr = &cells.ptr;
        let empty: Vec<bool> = (0..self.k())
            .into_par_iter()
            .map(|c| !cells.sample[ptr[c]..ptr[c + 1]].iter().any(|&p| !row[self.order[p as usize] as usize].is_nan()))
            .collect();
        Ok((0..self.k() as u32).filter(|&c| empty[c as usize]).collect())
    }

    /// Keeps the large blocks (8 MB and more) that calls on the CPU work in — `fit`, `resample`,
    /// `fit_resample`, `apply_m`, `x_ref` — for the next call, instead of giving them back to the
    /// system when the call ends. A series of calls of one shape (a model's time steps, the rows of
    /// a long file) then makes its blocks once: fresh memory costs the kernel a fault and a zeroing
    /// per page, about a fifth of a fit's setup at N = 10⁶ and B = 64 on a 2-core machine
    /// (benches/RESULTS.md). Between calls the operator then holds about one call's working memory
    /// ([`PsfResampler::kept_bytes`]); the first block a call needs and does not find at its
    /// length makes the operator give back every block it holds, so a call of another shape never
    /// holds more than fresh blocks would. Results are the same bit for bit either way. `false`,
    /// the default, gives the blocks held back at once. Calls on a GPU work in device memory: no
    /// effect there.
    ///
    /// # Examples
    /// ```
    /// use healpix_psf::{FitOptions, Params, PsfResampler};
    /// let (lon, lat): (Vec<f64>, Vec<f64>) = (0..400).map(|i| (8.0 + 0.01 * (i % 20) as f64, 45.0 + 0.01 * (i / 20) as f64)).unzip();
    /// let op = PsfResampler::<f64>::new(&lon, &lat, &Params::new(10))?;
    /// let val: Vec<f64> = lat.iter().map(|y| 20.0 - 0.5 * y).collect();
    /// let before = op.fit(&val, &FitOptions::default())?;
    /// op.keep_blocks(true);
    /// for _step in 0..3 {
    ///     assert_eq!(op.fit(&val, &FitOptions::default())?.hval, before.hval);
    /// }
    /// assert_eq!(op.kept_bytes(), 0); // blocks this small are never kept
    /// op.keep_blocks(false);
    /// # Ok::<(), healpix_psf::Error>(())
    /// ```
    pub fn keep_blocks(&self, keep: bool) {
        self.blocks.set_keep(keep);
    }

    /// Bytes of working blocks the operator holds between calls ([`PsfResampler::keep_blocks`]).
    pub fn kept_bytes(&self) -> usize {
        self.blocks.bytes()
    }

    /// Hands a result the caller no longer needs (a fit's `hval`, a resample's values, once copied
    /// elsewhere) back to the operator's kept blocks, where the next call's result of that size
    /// takes it instead of fresh memory; freed at once when the operator does not keep its blocks
    /// ([`PsfResampler::keep_blocks`]). The C ABI does this with every result it copies out.
    pub fn recycle(&self, v: Vec<F>) {
        // a device operator's calls never take host blocks from the pool: it keeps none
        if matches!(self.placed, Placed::Cpu) {
            self.blocks.recycle(v);
        }
    }

    /// The operator's host copy as the CPU backend.
    fn cpu(&self) -> Cpu<'_, F> {
        let (samples, cells, dx) = (self.host_samples(), self.host_cells(), self.host_dx());
        Cpu { samples, cells, dx, ranks: None, pool: Some(&self.blocks) }
    }

    /// [`PsfResampler::fit`] followed by [`PsfResampler::resample`] of its result: the fitted field
    /// and its values at the samples (B×N).
    ///
    /// # Examples
    /// ```
    /// use healpix_psf::{FitOptions, Params, PsfResampler};
    /// let (lon, lat): (Vec<f64>, Vec<f64>) = (0..400).map(|i| (8.0 + 0.01 * (i % 20) as f64, 45.0 + 0.01 * (i / 20) as f64)).unzip();
    /// let op = PsfResampler::<f64>::new(&lon, &lat, &Params::new(10))?;
    /// let val: Vec<f64> = lat.iter().map(|y| 20.0 - 0.5 * y).collect();
    /// let (fit, back) = op.fit_resample(&val, &FitOptions { lam: 1e-2, ..FitOptions::default() })?;
    /// assert_eq!((fit.rows, fit.hval.len(), back.len()), (1, op.k(), op.n()));
    /// # Ok::<(), healpix_psf::Error>(())
    /// ```
    pub fn fit_resample(&self, val: &[F], opts: &FitOptions<F>) -> Result<(Fit<F>, Vec<F>)> {
        let (fit, back) = self.fit_and_back(val, opts)?;
        let back = match back {
            Some(back) => back,
            None => self.resample(&fit.hval)?,
        };
        Ok((fit, back))
    }
}

/// What `solve_rows` returns: the s selected rows and their fit, and the facts of every row.
#[derive(Default)]
pub(crate) struct Solved<F> {
    /// The rows with a valid sample.
    pub(crate) sel: Vec<usize>,
    /// What each of the B rows holds.
    pub(crate) facts: Vec<RowFacts>,
    /// The fitted values, s rows of K.
    pub(crate) hval: Vec<F>,
    pub(crate) iterations: Vec<usize>,
    pub(crate) norms: Vec<Vec<f64>>,
    pub(crate) converged: Vec<bool>,
    pub(crate) n_low: Vec<usize>,
    pub(crate) n_high: Vec<usize>,
    pub(crate) outer: usize,
    /// K×s cell codes when the solve made them (0: no data in the row).
    pub(crate) no_data: Option<Vec<u8>>,
    /// Rows solved with per-row missing data.
    pub(crate) masked_rows: Vec<bool>,
}

impl<F> Solved<F> {
    /// The record of a fit of `b` rows (rows without data: `empty` empty cells), with the CG and
    /// active-set record of the selected rows (their residual norms moved out of `self`); the empty
    /// cells of the selected rows and the residual statistics are the caller's to fill.
    pub(crate) fn info(&mut self, b: usize, empty: usize) -> FitInfo {
        let mut info = FitInfo {
            iterations: self.iterations.iter().copied().max().unwrap_or(0),
            row_iterations: vec![0; b],
            residual_norms: vec![Vec::new(); b],
            converged: vec![false; b],
            has_data: vec![false; b],
            outer_passes: self.outer,
            n_clipped_low: vec![0; b],
            n_clipped_high: vec![0; b],
            empty_cells: vec![empty; b],
            residual_rms: vec![f64::NAN; b],
            residual_max: vec![f64::NAN; b],
        };
        for (j, &row) in self.sel.iter().enumerate() {
            info.has_data[row] = true;
            info.row_iterations[row] = self.iterations[j];
            info.converged[row] = self.converged[j];
            info.n_clipped_low[row] = self.n_low[j];
            info.n_clipped_high[row] = self.n_high[j];
            info.residual_norms[row] = std::mem::take(&mut self.norms[j]);
        }
        info
    }
}

/// How the cells without data of a selected row of a fit are found (the cells where no valid
/// sample carries weight: they have no fitted number).
pub(crate) enum EmptyRule<'a> {
    /// Every sample valid: the cells without a link.
    NoneMissing,
    /// A row renormalised over its valid samples: the cells the solve's codes (K×s) mark 0.
    Renormalised(&'a [u8]),
    /// A row with missing samples counted as 0: the cells none of whose linked samples is valid.
    ZeroFilled,
}

impl<F> Solved<F> {
    /// The rule for the empty cells of selected row j.
    pub(crate) fn empty_rule(&self, j: usize) -> EmptyRule<'_> {
        match self.no_data.as_deref().filter(|_| self.masked_rows[j]) {
            _ if self.facts[self.sel[j]].nan == 0 => EmptyRule::NoneMissing,
            Some(codes) => EmptyRule::Renormalised(codes),
            None => EmptyRule::ZeroFilled,
        }
    }
}

/// The cells (of k) whose code in column j of K×s `codes` is 0: no valid sample carries weight.
pub(crate) fn without_data(codes: &[u8], k: usize, s: usize, j: usize) -> Vec<u32> {
    (0..k as u32).filter(|&c| codes[c as usize * s + j] == 0).collect()
}

/// The conservation means of the selected rows `sel`, times their factors `inv`.
pub(crate) type MeansOf<'a, F> = dyn Fn(&[usize], &[F]) -> Result<Vec<f64>> + 'a;

/// What a fit of rows takes from the operator it runs on: one process's operator, or one rank's
/// part of a distributed one.
pub(crate) struct Side<'a, F> {
    /// The samples axis of the backend's blocks.
    pub axis: Axis<'a>,
    /// Cells of the backend's blocks.
    pub k: usize,
    /// Samples used by the whole operator (over every rank).
    pub n_used: usize,
    /// Cells left out of the held counts (the uncomputable ones).
    pub skip: &'a [u32],
    /// The area-weighted mean of each selected row's valid samples times the row's factor
    /// (`inv`), for a conservative fit.
    pub means: &'a MeansOf<'a, F>,
    /// The error to report once the gathered rows turn out to hold an infinite value.
    pub infinite: &'a dyn Fn() -> Error,
    /// The initial update (B×k), unless it is zero (on every rank of a distributed fit alike).
    pub x0: Option<&'a [F]>,
}

/// The fit on `be` of the rows of `val` with a valid sample: their fitted values (rows of K, in
/// the caller's units) with the CG and active-set record (held counts of this side's cells), and
/// what every row holds.
pub(crate) fn solve_rows<F: Real, B: Backend<F>>(
    be: &B,
    val: &[F],
    opts: &FitOptions<F>,
    side: &Side<'_, F>,
) -> Result<Solved<F>> {
    let k = side.k;
    let per_row = opts.missing == MissingData::PerRow;
    let b = val.len() / side.axis.width();
    // work on the data divided by a power of two (exact; see `solver`), divided as it is gathered
    let pooled = opts.stopping == Stopping::Pooled;
    let divisors = |facts: &[RowFacts]| {
        let (rows, scale) = data_scales(facts, side.n_used, per_row, pooled);
        let mut inv = vec![F::ONE; facts.len()];
        for (&r, &c) in rows.sel.iter().zip(&scale) {
            inv[r] = F::from_f64(1.0 / c);
        }
        inv
    };
    let g = gather_finite(be, val, b, side.axis, true, per_row, Some(&divisors), side.infinite)?;
    let facts = g.facts.clone();
    let (rows, scale) = data_scales(&facts, side.n_used, per_row, pooled);
    let (sel, s) = (rows.sel.clone(), rows.sel.len());
    if s == 0 {
        return Ok(Solved { facts, ..Solved::default() });
    }
    let boxes = if opts.is_bounded() { Some(row_bounds(&facts, &sel, opts)?) } else { None };
    let _progress = crate::parallel::report_cg_progress(opts.progress);
    let _interrupt = crate::parallel::check_interrupts(opts.interrupt.clone());
    let (y0, valid) = rows.pick(be, g)?;
    let inv: Vec<F> = scale.iter().map(|&c| F::from_f64(1.0 / c)).collect();
    let x0 = match side.x0 {
        None => None,
        Some(x0) => {
            let mut x0 = rows.select(be, be.gather(x0, b, Axis::Cells(k), false, false)?.vals)?;
            be.scale_columns(&mut x0, &inv)?;
            Some(x0)
        }
    };
    let scaled = |v: &[F]| -> Vec<F> { v.iter().zip(&inv).map(|(&x, &c)| x * c).collect() };
    let problem = Problem {
        y0,
        valid,
        masked_rows: rows.masked.clone(),
        x0,
        bounds: boxes.as_ref().map(|(lo, hi)| (scaled(lo), scaled(hi))),
        means: opts.conservative.then(|| (side.means)(&sel, &inv)).transpose()?,
        opts,
    };
    let sol = solver::solve(be, problem)?;
    let back: Vec<F> = scale.iter().map(|&c| F::from_f64(c)).collect();
    let hval = be.scatter_scaled(sol.hval, s, Axis::Cells(k), &back)?;
    let mut norms = sol.norms;
    for (norms, &c) in norms.iter_mut().zip(&scale) {
        norms.iter_mut().for_each(|v| *v *= c);
    }
    let (n_low, n_high) = match (&sol.codes, &boxes) {
        (Some(codes), Some(_)) => held_counts(codes, s, side.skip),
        _ => (vec![0; s], vec![0; s]),
    };
    Ok(Solved {
        sel,
        facts,
        hval,
        iterations: sol.iterations,
        norms,
        converged: sol.converged,
        n_low,
        n_high,
        outer: sol.outer,
        no_data: sol.codes,
        masked_rows: rows.masked,
    })
}

/// The s rows of `v` gathered on `axis` of `be` (see [`Backend::gather`]); `infinite` is the
/// error once the rows' facts find an infinite value (of an element the operator uses).
#[allow(clippy::too_many_arguments)]
fn gather_finite<F: Real, B: Backend<F>>(
    be: &B,
    v: &[F],
    s: usize,
    axis: Axis<'_>,
    zero_nan: bool,
    mask: bool,
    scale: Option<&Scales<'_, F>>,
    infinite: &dyn Fn() -> Error,
) -> Result<Gathered<B::Vals, B::Mask>> {
    let mut g = match scale {
        None => be.gather(v, s, axis, zero_nan, mask)?,
        Some(scale) => be.gather_scaled(v, s, axis, zero_nan, mask, scale)?,
    };
    if g.facts.iter().any(|f| f.inf > 0) {
        return Err(infinite());
    }
    // a zero extreme is +0 whichever zero came first (the order differs between devices and ranks)
    for f in &mut g.facts {
        (f.low, f.high) = (f.low + 0.0, f.high + 0.0);
    }
    Ok(g)
}

/// `hval·MT` on `be` for b rows of k cell values (see [`PsfResampler::resample`]), scattered on
/// `samples`; `infinite` is the error once the gathered rows turn out to hold an infinite value.
pub(crate) fn resample_rows<F: Real, B: Backend<F>>(
    be: &B,
    hval: &[F],
    b: usize,
    k: usize,
    samples: Axis<'_>,
    infinite: &dyn Fn() -> Error,
) -> Result<Vec<F>> {
    // NaN cells stay NaN: they reach only the samples linked to them
    let g = gather_finite(be, hval, b, Axis::Cells(k), false, false, None, infinite)?;
    let mut out = be.output(samples.elements() * b)?;
    be.mt(&g.vals, b, &mut out, None, None)?;
    be.scatter(&out, b, samples)
}

/// x_ref (`y0·M`, per-row renormalised where `per_row`) of the rows of `val` with a valid sample
/// (on `axis`; `n_used` samples in all), as rows of `k` cells, and those rows.
pub(crate) fn reference_rows<F: Real, B: Backend<F>>(
    be: &B,
    val: &[F],
    axis: Axis<'_>,
    k: usize,
    n_used: usize,
    per_row: bool,
    infinite: &dyn Fn() -> Error,
) -> Result<(Vec<F>, Vec<usize>)> {
    let g = gather_finite(be, val, val.len() / axis.width(), axis, true, per_row, None, infinite)?;
    let rows = Rows::of(&g.facts, n_used, per_row);
    if rows.sel.is_empty() {
        return Ok((Vec::new(), rows.sel));
    }
    let (y0, valid) = rows.pick(be, g)?;
    let x = solver::reference_field(be, y0, valid, &rows.masked)?;
    Ok((be.scatter(&x, rows.sel.len(), Axis::Cells(k))?, rows.sel))
}

/// `(Σ v·a, Σ a)` over the valid values `v = row[i]` of the samples `(i, a)` (caller's index,
/// area), in their order.
pub(crate) fn area_sums<F: Real>(row: &[F], samples: impl Iterator<Item = (usize, F)>) -> (f64, f64) {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (i, a) in samples {
        let v = row[i];
        if !v.is_nan() {
            num += v.to_f64() * a.to_f64();
            den += a.to_f64();
        }
    }
    (num, den)
}

/// The mean `num / den` times `c` (NaN where the valid samples have no area).
pub(crate) fn mean_of<F: Real>(num: f64, den: f64, c: F) -> f64 {
    if den > 0.0 {
        num / den * c.to_f64()
    } else {
        f64::NAN
    }
}

/// The error of the first infinite value of `v` (rows on `axis`) at an element used by the
/// operator, if there is one.
pub(crate) fn first_infinite<F: Real>(v: &[F], axis: Axis<'_>, what: &'static str) -> Option<Error> {
    let used = |i: usize| match axis {
        Axis::Samples { position, .. } => position[i % position.len()] != LEFT_OUT,
        Axis::Cells(_) => true,
    };
    (0..v.len()).find(|&i| !v[i].is_finite() && !v[i].is_nan() && used(i)).map(|i| infinite_at(v, i, what))
}

/// The error of the first infinite value of `v` (rows on `axis`), once the gathered rows' facts
/// found one (element 0 if it cannot be named: a bug).
fn infinite_error<F: Real>(v: &[F], axis: Axis<'_>, what: &'static str) -> Error {
    first_infinite(v, axis, what).unwrap_or_else(|| infinite_at(v, 0, what))
}

fn infinite_at<F: Real>(v: &[F], index: usize, what: &'static str) -> Error {
    Error::InvalidValue {
        what,
        index,
        value: v[index].to_f64(),
        reason: "values must be finite (NaN marks a missing sample)",
    }
}

/// The rows of a batch that take part in a solve: those with a valid sample (`sel`, of `b`), and
/// which of them miss some with per-row missing data.
pub(crate) struct Rows {
    b: usize,
    pub(crate) sel: Vec<usize>,
    pub(crate) masked: Vec<bool>,
}

impl Rows {
    pub(crate) fn of(facts: &[RowFacts], n_used: usize, per_row: bool) -> Rows {
        let sel: Vec<usize> = (0..facts.len()).filter(|&r| facts[r].nan < n_used as u64).collect();
        let masked = sel.iter().map(|&r| per_row && facts[r].nan > 0).collect();
        Rows { b: facts.len(), sel, masked }
    }

    /// Whether every row is selected.
    fn all(&self) -> bool {
        self.sel.len() == self.b
    }

    /// The selected columns of a block of the b rows.
    fn select<F: Real, B: Backend<F>>(&self, be: &B, v: B::Vals) -> Result<B::Vals> {
        if self.all() {
            Ok(v)
        } else {
            be.select(&v, self.b, &self.sel)
        }
    }

    /// The selected columns of a gathered block, with its mask when a selected row is masked.
    pub(crate) fn pick<F: Real, B: Backend<F>>(
        &self,
        be: &B,
        g: Gathered<B::Vals, B::Mask>,
    ) -> Result<(B::Vals, Option<B::Mask>)> {
        let valid = match g.valid {
            Some(m) if self.masked.contains(&true) => {
                Some(if self.all() { m } else { be.select_mask(&m, self.b, &self.sel)? })
            }
            _ => None,
        };
        Ok((self.select(be, g.vals)?, valid))
    }
}

/// The rows with a valid sample (of `n_used`) and the power of two each selected row's data is
/// divided by for the solve (one for all with `common`), from what the rows hold.
fn data_scales(facts: &[RowFacts], n_used: usize, per_row: bool, common: bool) -> (Rows, Vec<f64>) {
    let rows = Rows::of(facts, n_used, per_row);
    let max_abs: Vec<f64> = rows.sel.iter().map(|&r| facts[r].max_abs()).collect();
    let scale = pow2_scales(&max_abs, common);
    (rows, scale)
}

/// The s = |sel| rows of `x` (rows of `e`) as rows `sel` of b rows, the others NaN.
pub(crate) fn expand_rows<F: Real>(x: Vec<F>, b: usize, e: usize, sel: &[usize]) -> Vec<F> {
    if sel.len() == b {
        return x;
    }
    let mut out = vec![F::from_f64(f64::NAN); b * e];
    for (j, &r) in sel.iter().enumerate() {
        out[r * e..(r + 1) * e].copy_from_slice(&x[j * e..(j + 1) * e]);
    }
    out
}

/// RMS and largest |back − y| over the valid samples where `back` is a number.
fn residual_stats<F: Real>(back: &[F], y: &[F]) -> (f64, f64) {
    let (sum, max, m) = residual_sums(back, y);
    rms_of(sum, max, m)
}

/// Σ (back − y)², the largest |back − y| and the count, over the valid samples where `back` is a
/// number.
pub(crate) fn residual_sums<F: Real>(back: &[F], y: &[F]) -> (f64, f64, usize) {
    let (mut sum, mut max, mut m) = (0.0f64, 0.0f64, 0usize);
    for (&b, &v) in back.iter().zip(y) {
        if !v.is_nan() && !b.is_nan() {
            let d = (b - v).to_f64();
            sum += d * d;
            max = max.max(d.abs());
            m += 1;
        }
    }
    (sum, max, m)
}

/// The RMS and the largest residual from [`residual_sums`] (NaN without a sample).
pub(crate) fn rms_of(sum: f64, max: f64, m: usize) -> (f64, f64) {
    if m == 0 {
        (f64::NAN, f64::NAN)
    } else {
        ((sum / m as f64).sqrt(), max)
    }
}

/// The box of each selected row on the fitted values (lower, upper), from the options and the row's
/// valid samples.
fn row_bounds<F: Real>(facts: &[RowFacts], sel: &[usize], opts: &FitOptions<F>) -> Result<(Vec<F>, Vec<F>)> {
    let side = |bound: Bound, low: bool| -> Vec<F> {
        sel.iter()
            .map(|&row| match bound {
                Bound::Value(v) => F::from_f64(v),
                // the row's lowest or highest valid value (exact: a value of F in f64)
                Bound::Input => F::from_f64(if low { facts[row].low } else { facts[row].high }),
                _ => {
                    if low {
                        -F::INFINITY
                    } else {
                        F::INFINITY
                    }
                }
            })
            .collect()
    };
    let (lo, hi) = (side(opts.lower, true), side(opts.upper, false));
    for (j, (&l, &h)) in lo.iter().zip(&hi).enumerate() {
        if l > h || l == F::INFINITY || h == -F::INFINITY {
            return Err(Error::param(
                "lower",
                l.to_f64(),
                format!("the lower bound is above the upper bound {h} in row {} (or the box is empty)", sel[j]),
            ));
        }
    }
    Ok((lo, hi))
}

/// Validates the fit options against B rows of values and K cells (the values themselves are
/// checked as they are gathered).
pub(crate) fn check_fit_options<F: Real>(b: usize, k: usize, opts: &FitOptions<F>) -> Result<()> {
    opts.check()?;
    if let Some(x0) = &opts.x0 {
        if x0.len() != b * k {
            return Err(Error::LengthMismatch { what: "x0", expected: b * k, got: x0.len() });
        }
        if let Some(index) = x0.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidValue {
                what: "x0",
                index,
                value: x0[index].to_f64(),
                reason: "the initial update must be finite",
            });
        }
    }
    Ok(())
}

impl<F: Real> FitOptions<F> {
    /// Checks the options that do not depend on the data (damping representable in `F`, tolerance,
    /// bounds, empty cells against missing data, active-set passes), as `fit` does first. Lets a
    /// program reject bad settings before it reads its data.
    pub fn check(&self) -> Result<()> {
        if !(self.lam.is_finite() && self.lam >= 0.0 && F::from_f64(self.lam).is_finite()) {
            return Err(Error::param("lam", self.lam, format!("the damping must be finite in {} and ≥ 0", F::NAME)));
        }
        if !(self.tol.is_finite() && self.tol > 0.0) {
            return Err(Error::param("tol", self.tol, "the tolerance must be a positive number"));
        }
        for (name, bound) in [("lower", self.lower), ("upper", self.upper)] {
            if let Bound::Value(v) = bound {
                if v.is_nan() {
                    return Err(Error::param(name, v, "a bound must be a number (±infinity for none), not NaN"));
                }
            }
        }
        if self.empty_cells == EmptyCells::Fitted && self.missing == MissingData::PerRow {
            return Err(Error::param(
                "empty_cells",
                "Fitted",
                "cells without a valid sample have no fitted number with per-row missing data; the reference's \
                 number (fitted to zero-filled samples) needs its zero-filling as well: missing = \
                 MissingData::ZeroFill (C: missing = 1, Fortran: zero_fill = .true., Julia: zero_fill = true)",
            ));
        }
        if self.is_bounded() && self.max_outer == 0 {
            return Err(Error::param("max_outer", 0.0, "a bounded fit needs at least one active-set pass"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::pages::Pool;
    use crate::Params;

    /// A fit's blocks lent again — within a call, and kept from call to call — change no bit of any
    /// call's result. In this crate's unit tests every block is pooled and a lent block holds NaN
    /// (`Pool::scratch`), so a value read before it is written would show.
    #[test]
    fn pooled_blocks_change_no_bit() {
        pooled_blocks_change_no_bit_of::<f64>();
        pooled_blocks_change_no_bit_of::<f32>();
    }

    fn pooled_blocks_change_no_bit_of<F: Real>() {
        let (lon, lat): (Vec<f64>, Vec<f64>) = (0..1500)
            .map(|i| (8.0 + 0.013 * (i % 50) as f64, 45.0 + 0.011 * (i / 50) as f64 + 0.001 * (i % 7) as f64))
            .unzip();
        // every seventh sample left out: the samples' axis is shorter than the caller's rows
        let mask: Vec<bool> = (0..lon.len()).map(|i| i % 7 != 3).collect();
        for params in [Params::new(11), Params { sample_mask: Some(mask), ..Params::new(11) }] {
            pooled_calls_change_no_bit(PsfResampler::<F>::new(&lon, &lat, &params).expect("an operator"), &lon, &lat);
        }
    }

    fn pooled_calls_change_no_bit<F: Real>(mut op: PsfResampler<F>, lon: &[f64], lat: &[f64]) {
        op.blocks = Pool::off();
        let want = calls(&op, lon, lat);
        op.blocks = Pool::new();
        assert_eq!(calls(&op, lon, lat), want, "blocks lent within a call");
        assert_eq!(op.kept_bytes(), 0, "given back at the end of each call");
        op.keep_blocks(true);
        assert_eq!(calls(&op, lon, lat), want, "blocks kept, made by the first calls");
        assert!(op.kept_bytes() > 0);
        assert_eq!(calls(&op, lon, lat), want, "blocks kept, lent again");
        op.keep_blocks(false);
        assert_eq!(op.kept_bytes(), 0);
    }

    /// The bits of every call's results on rows of several widths, with and without missing values,
    /// plain, bounded and conservative.
    fn calls<F: Real>(op: &PsfResampler<F>, lon: &[f64], lat: &[f64]) -> Vec<Vec<u64>> {
        let bits = |v: &[F]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<u64>>();
        // each result handed back once read (as the C ABI does): with blocks kept, a later
        // result is written into it
        let take = |v: Vec<F>| {
            let b = bits(&v);
            op.recycle(v);
            b
        };
        let mut out = Vec::new();
        for b in [1usize, 3, 17] {
            let mut val: Vec<F> = (0..b)
                .flat_map(|j| {
                    lon.iter().zip(lat).map(move |(x, y)| F::from_f64(4.0 + (x * 3.0 + j as f64).sin() + y.cos()))
                })
                .collect();
            let plain = FitOptions::<F> { lam: 1e-3, return_info: true, ..FitOptions::default() };
            let (fit, back) = op.fit_resample(&val, &plain).expect("a fit");
            out.extend([bits(&fit.hval), bits(&back), vec![fit.info.expect("asked").iterations as u64]]);
            out.push(take(op.apply_m(&val).expect("M")));
            out.push(take(op.resample(&fit.hval).expect("MT")));
            op.recycle(back);
            val.iter_mut().step_by(13).for_each(|v| *v = F::from_f64(f64::NAN));
            out.push(take(op.x_ref(&val, MissingData::PerRow).expect("x_ref")));
            for opts in [
                FitOptions { max_iter: 0, ..plain.clone() },
                FitOptions { missing: MissingData::ZeroFill, ..plain.clone() },
                FitOptions { lower: Bound::Input, upper: Bound::Value(5.5), ..plain.clone() },
                FitOptions { conservative: true, ..plain.clone() },
                FitOptions { x0: Some(vec![F::from_f64(0.25); b * op.k()]), ..plain.clone() },
            ] {
                out.push(take(op.fit(&val, &opts).expect("a fit").hval));
            }
        }
        out
    }
}
