//! The public solve API: `fit`, `resample`, `fit_resample`, `apply_m` (SPEC §4–§5).
//!
//! Values are row-major: B rows of N sample values in, B rows of K cell values out (one row is just
//! N or K values). Internally the selected rows are interleaved (element-major), see `sparse`.

use super::PsfResampler;
use crate::error::{Error, Result};
use crate::parallel::with_threads;
use crate::real::Real;
use crate::solver::{cg, CgOut, Fit, FitInfo, FitOptions, Normal, Stopping};
use crate::sparse::{m_product, mt_product, MExtras, CHUNK};
use rayon::prelude::*;

/// Number of rows of a row-major block of `len` values of width `width`.
fn rows_of(len: usize, width: usize, what: &'static str) -> Result<usize> {
    if len == 0 || width == 0 || !len.is_multiple_of(width) {
        return Err(Error::LengthMismatch { what, expected: width, got: len });
    }
    Ok(len / width)
}

/// Rows `sel` of a B×E row-major block, interleaved E×|sel|. With `order`, element p of the result
/// is element `order[p]` of the input (samples into the operator's order); NaN becomes 0 when
/// `zero_nan` (missing samples).
fn interleave<F: Real>(v: &[F], e: usize, sel: &[usize], order: Option<&[u32]>, zero_nan: bool) -> Vec<F> {
    let s = sel.len();
    let mut out = vec![F::ZERO; e * s];
    out.par_chunks_mut(CHUNK * s).enumerate().for_each(|(c, chunk)| {
        for (dp, o) in chunk.chunks_exact_mut(s).enumerate() {
            let p = c * CHUNK + dp;
            let i = order.map_or(p, |ord| ord[p] as usize);
            for (x, &b) in o.iter_mut().zip(sel) {
                let y = v[b * e + i];
                *x = if zero_nan && y.is_nan() { F::ZERO } else { y };
            }
        }
    });
    out
}

/// An E×s interleaved block as s rows of E (row-major). With `position`, output element i is taken
/// from position `position[i]` (samples back to the caller's order). Each output row is written
/// sequentially, chunk by chunk in parallel.
fn deinterleave<F: Real>(v: &[F], e: usize, s: usize, position: Option<&[u32]>) -> Vec<F> {
    let mut out = vec![F::ZERO; e * s];
    let mut parts: Vec<Vec<&mut [F]>> = (0..e.div_ceil(CHUNK)).map(|_| Vec::with_capacity(s)).collect();
    for row in out.chunks_mut(e) {
        for (c, part) in row.chunks_mut(CHUNK).enumerate() {
            parts[c].push(part);
        }
    }
    parts.into_par_iter().enumerate().for_each(|(c, mut rows)| {
        for di in 0..rows.first().map_or(0, |r| r.len()) {
            let i = c * CHUNK + di;
            let p = position.map_or(i, |pos| pos[i] as usize);
            for (j, row) in rows.iter_mut().enumerate() {
                row[di] = v[p * s + j];
            }
        }
    });
    out
}

/// Per-column powers of two near the magnitude of an E×s block (the largest |value| rounded down to
/// a power of two, 1 for an all-zero column); with `common`, one factor (the largest) for all.
fn pow2_scales<F: Real>(v: &[F], s: usize, common: bool) -> Vec<f64> {
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

/// Multiplies column j of an E×s block by `f[j]`.
fn scale_columns<F: Real>(v: &mut [F], f: &[F]) {
    for row in v.chunks_exact_mut(f.len()) {
        for (x, &c) in row.iter_mut().zip(f) {
            *x *= c;
        }
    }
}

/// Column j of an E×s interleaved block.
fn column<F: Real>(v: &[F], s: usize, j: usize) -> impl Iterator<Item = F> + '_ {
    v.chunks_exact(s).map(move |r| r[j])
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
        check_no_infinity(val, "val")?;
        let all: Vec<usize> = (0..b).collect();
        with_threads(self.cfg.num_threads, || -> Result<Vec<F>> {
            let y0 = interleave(val, self.n, &all, Some(&self.order), true);
            let x = match self.gpu() {
                #[cfg(feature = "cuda")]
                Some(dev) => dev.apply_m(&y0, b)?,
                _ => {
                    let mut x = vec![F::ZERO; self.k() * b];
                    m_product(&self.cells, &y0, b, &mut x, MExtras::none());
                    x
                }
            };
            Ok(deinterleave(&x, self.k(), b, None))
        })?
    }

    /// Values at the samples of B cell fields: `hval·MT`, each sample's normalised Gaussian
    /// interpolation of its linked cells. `hval` is B×K row-major; returns B×N. A NaN cell reaches
    /// only the samples linked to it; a sample with no link gets 0. Infinite values are an error.
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
        check_no_infinity(hval, "hval")?;
        let all: Vec<usize> = (0..b).collect();
        with_threads(self.cfg.num_threads, || -> Result<Vec<F>> {
            // NaN cells stay NaN: they reach only the samples linked to them
            let v = interleave(hval, self.k(), &all, None, false);
            let out = match self.gpu() {
                #[cfg(feature = "cuda")]
                Some(dev) => dev.apply_mt(&v, b)?,
                _ => {
                    let mut out = vec![F::ZERO; self.n * b];
                    mt_product(&self.samples, &v, b, &mut out);
                    out
                }
            };
            Ok(deinterleave(&out, self.n, b, Some(&self.position)))
        })?
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
        let (n, k) = (self.n, self.k());
        let b = rows_of(val.len(), n, "val")?;
        check_no_infinity(val, "val")?;
        if !(opts.lam.is_finite() && opts.lam >= 0.0 && F::from_f64(opts.lam).is_finite()) {
            return Err(Error::param("lam", opts.lam, format!("the damping must be finite in {} and ≥ 0", F::NAME)));
        }
        if !(opts.tol.is_finite() && opts.tol > 0.0) {
            return Err(Error::param("tol", opts.tol, "the tolerance must be a positive number"));
        }
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
        let has_data: Vec<bool> = val.chunks_exact(n).map(|r| r.iter().any(|v| !v.is_nan())).collect();
        let sel: Vec<usize> = (0..b).filter(|&r| has_data[r]).collect();
        let s = sel.len();

        let mut hval = vec![F::from_f64(f64::NAN); b * k];
        let mut info = FitInfo {
            iterations: 0,
            row_iterations: vec![0; b],
            residual_norms: vec![Vec::new(); b],
            converged: vec![false; b],
            has_data: has_data.clone(),
        };
        if s > 0 {
            let out = with_threads(self.cfg.num_threads, || -> Result<_> {
                // work on the data divided by a power of two (exact): see `solver`
                let mut y0 = interleave(val, n, &sel, Some(&self.order), true);
                let scale = pow2_scales(&y0, s, opts.stopping == Stopping::Pooled);
                let inv: Vec<F> = scale.iter().map(|&c| F::from_f64(1.0 / c)).collect();
                scale_columns(&mut y0, &inv);
                let x0 = opts.x0.as_ref().map(|x0| {
                    let mut x0 = interleave(x0, k, &sel, None, false);
                    scale_columns(&mut x0, &inv);
                    x0
                });
                let lam = F::from_f64(opts.lam);
                let (mut x_ref, mut out) = match self.gpu() {
                    #[cfg(feature = "cuda")]
                    Some(dev) => dev.solve(&y0, x0, s, opts)?,
                    _ => self.solve_cpu(y0, x0, s, lam, opts),
                };
                let back: Vec<F> = scale.iter().map(|&c| F::from_f64(c)).collect();
                scale_columns(&mut x_ref, &back);
                scale_columns(&mut out.x, &back);
                for (norms, &c) in out.norms.iter_mut().zip(&scale) {
                    norms.iter_mut().for_each(|v| *v *= c);
                }
                Ok((x_ref, out))
            })??;
            let (x_ref, cg_out) = out;
            for (j, &row) in sel.iter().enumerate() {
                let dst = &mut hval[row * k..(row + 1) * k];
                for ((h, xr), d) in dst.iter_mut().zip(column(&x_ref, s, j)).zip(column(&cg_out.x, s, j)) {
                    *h = xr + d;
                }
                info.row_iterations[row] = cg_out.iterations[j];
                info.converged[row] = cg_out.converged[j];
            }
            info.iterations = cg_out.iterations.iter().copied().max().unwrap_or(0);
            for (j, norms) in cg_out.norms.into_iter().enumerate() {
                info.residual_norms[sel[j]] = norms;
            }
        }
        Ok(Fit { hval, rows: b, info: opts.return_info.then_some(info) })
    }

    /// x_ref and the CG outcome on the CPU for s selected rows (y0: N×s in the operator's order).
    fn solve_cpu(
        &self,
        mut y0: Vec<F>,
        x0: Option<Vec<F>>,
        s: usize,
        lam: F,
        opts: &FitOptions<F>,
    ) -> (Vec<F>, CgOut<F>) {
        let (n, k) = (self.n, self.k());
        let a = Normal { samples: &self.samples, cells: &self.cells, dx: &self.cell_weight, lam, n };
        // x_ref = y0·M; rhs = (y0 − x_ref·MT)·M
        let mut x_ref = vec![F::ZERO; k * s];
        m_product(&self.cells, &y0, s, &mut x_ref, MExtras::none());
        let mut t = vec![F::ZERO; n * s];
        mt_product(&self.samples, &x_ref, s, &mut t);
        for (y, &v) in y0.iter_mut().zip(&t) {
            *y -= v;
        }
        drop(t);
        let mut rhs = vec![F::ZERO; k * s];
        m_product(&self.cells, &y0, s, &mut rhs, MExtras::none());
        drop(y0);
        let out = cg(&a, rhs, x0, s, opts.max_iter, opts.tol, opts.stopping);
        (x_ref, out)
    }

    /// The operator on a GPU, when it was built there.
    #[cfg(feature = "cuda")]
    fn gpu(&self) -> Option<&crate::backend::cuda::CudaOperator<F>> {
        self.cuda.as_deref()
    }

    /// Without the `cuda` feature there is never a GPU operator.
    #[cfg(not(feature = "cuda"))]
    fn gpu(&self) -> Option<std::convert::Infallible> {
        None
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
        let fit = self.fit(val, opts)?;
        let back = self.resample(&fit.hval)?;
        Ok((fit, back))
    }
}

fn check_no_infinity<F: Real>(v: &[F], what: &'static str) -> Result<()> {
    match v.iter().position(|x| !x.is_finite() && !x.is_nan()) {
        None => Ok(()),
        Some(index) => Err(Error::InvalidValue {
            what,
            index,
            value: v[index].to_f64(),
            reason: "values must be finite (NaN marks a missing sample)",
        }),
    }
}
