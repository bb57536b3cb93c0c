//! Assembly of the operators from the links (SPEC §3). Samples are in the operator's order (cell
//! order after a construction, see `PsfResampler::sample_order`); rows of the by-cell CSR list
//! sample positions ascending.
//!
//! In the operator's float type: `g = exp((−2·d²)/s²)` from the cast distances, `W = g·a`,
//! `Dy_i = Σ_t W_it`, `Dx_k = Σ_{links to k} W` (summed in the operator's sample order),
//! `MT[k,i] = W/Dy_i`, `M[i,k] = W/Dx_k`, with 0 wherever a denominator is exactly 0.

use super::{Config, PsfResampler, LEFT_OUT};
use crate::geometry::Grid;
use crate::real::Real;
use crate::sparse::{CellLinks, SampleLinks};
use rayon::prelude::*;

#[inline(always)]
fn safe_div<F: Real>(w: F, s: F) -> F {
    if s != F::ZERO {
        w / s
    } else {
        F::ZERO
    }
}

/// The links of an operator, samples in the operator's order.
pub(crate) struct Links<F> {
    /// Cell ids, ascending, in the operator's scheme.
    pub cell_ids: Vec<u64>,
    /// N×npt cell indices, −1 where missing.
    pub hi: Vec<i32>,
    /// N×npt distances (m), +∞ where missing.
    pub d_m: Vec<F>,
    /// Per-sample areas.
    pub area: Vec<f64>,
    /// Position → the caller's sample index.
    pub order: Vec<u32>,
}

pub(crate) fn assemble<F: Real>(grid: Grid, cfg: Config, links: Links<F>) -> PsfResampler<F> {
    let Links { cell_ids, hi, d_m, area, order } = links;
    let n = order.len();
    let npt = cfg.npt;
    let k_count = cell_ids.len();
    let area: Vec<F> = area.par_iter().map(|&x| F::from_f64(x)).collect();
    let s2 = F::from_f64(cfg.sigma_m * cfg.sigma_m);

    // Raw area-weighted weights W (kept in `mt` until normalised), Dy, and MT = W / Dy.
    let mut mt = vec![F::ZERO; n * npt];
    let mut sample_weight = vec![F::ZERO; n];
    mt.par_chunks_mut(npt).zip(sample_weight.par_iter_mut()).enumerate().for_each(|(i, (row, dy))| {
        let mut sum = F::ZERO;
        let links = hi[i * npt..(i + 1) * npt].iter().zip(&d_m[i * npt..(i + 1) * npt]);
        for (w, (&h, &dd)) in row.iter_mut().zip(links) {
            if h >= 0 {
                *w = gaussian(dd, s2) * area[i];
                sum += *w;
            }
        }
        *dy = sum;
    });

    // CSR by cell, holding W until normalised
    let (ptr, sample) = csr_pattern(&hi, npt, k_count);
    let mut m = vec![F::ZERO; sample.len()];
    let mut next = ptr[..k_count].to_vec();
    for (row_h, row_w) in hi.chunks_exact(npt).zip(mt.chunks_exact(npt)) {
        for (&h, &w) in row_h.iter().zip(row_w) {
            if h >= 0 {
                m[next[h as usize]] = w;
                next[h as usize] += 1;
            }
        }
    }
    // Dx per cell (links in sample order), then M = W / Dx.
    let mut cell_weight = vec![F::ZERO; k_count];
    {
        let mut rows: Vec<&mut [F]> = Vec::with_capacity(k_count);
        let mut rest = &mut m[..];
        for k in 0..k_count {
            let (row, r) = std::mem::take(&mut rest).split_at_mut(ptr[k + 1] - ptr[k]);
            rows.push(row);
            rest = r;
        }
        rows.into_par_iter().zip(cell_weight.par_iter_mut()).for_each(|(row, dx)| {
            let mut sum = F::ZERO;
            for &w in row.iter() {
                sum += w;
            }
            *dx = sum;
            for w in row.iter_mut() {
                *w = safe_div(*w, sum);
            }
        });
    }

    // MT = W / Dy.
    mt.par_chunks_mut(npt).zip(sample_weight.par_iter()).for_each(|(row, &dy)| {
        for w in row.iter_mut() {
            *w = safe_div(*w, dy);
        }
    });

    PsfResampler {
        grid,
        cfg,
        n,
        cell_ids,
        samples: SampleLinks { npt, hi, mt },
        cells: CellLinks { ptr, sample, m },
        d_m,
        area,
        cell_weight,
        sample_weight,
        position: inverse(&order, order.len()),
        order,
        info: Default::default(),
        uncomputable: Vec::new(),
        fill_from: Vec::new(),
        #[cfg(feature = "cuda")]
        cuda: None,
    }
}

/// The position of each of `n` samples on the axis `order` (position → sample): the inverse of
/// the permutation, [`LEFT_OUT`] for samples `order` does not list.
pub(crate) fn inverse(order: &[u32], n: usize) -> Vec<u32> {
    let mut pos = vec![LEFT_OUT; n];
    for (p, &i) in order.iter().enumerate() {
        pos[i as usize] = p as u32;
    }
    pos
}

/// The by-cell CSR pattern of the links: row offsets and, per row, the sample positions ascending
/// (a counting sort in sample order).
pub(crate) fn csr_pattern(hi: &[i32], npt: usize, k_count: usize) -> (Vec<usize>, Vec<u32>) {
    let mut ptr = vec![0usize; k_count + 1];
    for &h in hi {
        if h >= 0 {
            ptr[h as usize + 1] += 1;
        }
    }
    for k in 0..k_count {
        ptr[k + 1] += ptr[k];
    }
    let mut next = ptr[..k_count].to_vec();
    let mut sample = vec![0u32; ptr[k_count]];
    for (i, row) in hi.chunks_exact(npt).enumerate() {
        for &h in row.iter().filter(|&&h| h >= 0) {
            sample[next[h as usize]] = i as u32;
            next[h as usize] += 1;
        }
    }
    (ptr, sample)
}

/// The raw weight of a link at distance `d`, `exp((−2·(d·d)) / s²)`, in the type F and in torch's
/// order of operations (SPEC §3 step 2).
#[inline(always)]
fn gaussian<F: Real>(d: F, s2: F) -> F {
    (F::from_f64(-2.0) * (d * d) / s2).exp()
}

impl<F: Real> PsfResampler<F> {
    /// Cells whose raw (area-free) Gaussian support `Σ exp(−2d²/s²)` over their links is ≤ the
    /// threshold (SPEC §3.1; note ≤, where the keep rule is ≥), summed in the type F as the reference.
    pub(crate) fn weak_cells(&self) -> Vec<u32> {
        let s2 = F::from_f64(self.cfg.sigma_m * self.cfg.sigma_m);
        let thr = F::from_f64(self.cfg.threshold);
        let npt = self.cfg.npt;
        let mut raw = vec![F::ZERO; self.cell_ids.len()];
        for (row_h, row_d) in self.samples.hi.chunks_exact(npt).zip(self.d_m.chunks_exact(npt)) {
            for (&h, &d) in row_h.iter().zip(row_d) {
                if h >= 0 {
                    raw[h as usize] += gaussian(d, s2);
                }
            }
        }
        (0..raw.len() as u32).filter(|&k| raw[k as usize] <= thr).collect()
    }
}

/// The operator with weights computed on a GPU (see `backend::cuda`), kept there for the solve.
#[cfg(feature = "cuda")]
pub(crate) fn assemble_on_gpu<F: Real>(
    grid: Grid,
    cfg: Config,
    links: Links<F>,
    sample_xyz: &[[f64; 3]],
    cell_xyz: &[[f64; 3]],
    gpu: crate::backend::cuda::Gpu,
) -> crate::error::Result<PsfResampler<F>> {
    use crate::backend::cuda::{CudaOperator, WeightInputs};
    let Links { cell_ids, hi, area, order, .. } = links;
    let (ptr, sample) = csr_pattern(&hi, cfg.npt, cell_ids.len());
    let inputs = WeightInputs {
        sample_xyz,
        cell_xyz,
        hi: &hi,
        area: &area,
        ptr: &ptr,
        sample: &sample,
        npt: cfg.npt,
        radius: cfg.radius,
        sigma_m: cfg.sigma_m,
    };
    let (dev, w) = CudaOperator::<F>::build(gpu, &inputs)?;
    Ok(PsfResampler {
        grid,
        cfg,
        n: order.len(),
        cell_ids,
        samples: SampleLinks { npt: cfg.npt, hi, mt: w.mt },
        cells: CellLinks { ptr, sample, m: w.m },
        d_m: w.d_m,
        area: area.iter().map(|&a| F::from_f64(a)).collect(),
        cell_weight: w.dx,
        sample_weight: w.dy,
        position: inverse(&order, order.len()),
        order,
        info: Default::default(),
        uncomputable: Vec::new(),
        fill_from: Vec::new(),
        cuda: Some(std::sync::Arc::new(dev)),
    })
}
