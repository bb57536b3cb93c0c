//! Assembly of the operators from the links (SPEC §3). Samples are in the operator's order (cell
//! order after a construction, see `PsfResampler::sample_order`); rows of the by-cell CSR list
//! sample positions ascending.
//!
//! The weights themselves (`g = exp((−2·d²)/s²)`, `W = g·a`, `Dy`, `Dx`, `M = W/Dx`, `MT = W/Dy`,
//! SPEC §3) are computed by the backend the operator is built on (`backend::link_weights`).

use super::host::HostArrays;
use super::{Config, PsfResampler, LEFT_OUT};
use crate::backend::cpu::gaussian;
use crate::backend::pages::Pool;
use crate::backend::{self, LinkWeights, Target, WeightInputs};
use crate::error::Result;
use crate::geometry::Grid;
use crate::real::Real;
use crate::sparse::{CellLinks, SampleLinks};

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

/// The operator of the links, with its weights computed on `target` (where it then lives);
/// `sample_xyz` and `cell_xyz` are the unit vectors of samples and cells when
/// [`Target::needs_coordinates`] (else empty).
pub(crate) fn assemble<F: Real>(
    grid: Grid,
    cfg: Config,
    links: Links<F>,
    target: Target,
    sample_xyz: &[[f64; 3]],
    cell_xyz: Vec<[f64; 3]>,
) -> Result<PsfResampler<F>> {
    let Links { cell_ids, hi, d_m, area, order } = links;
    let (ptr, sample) = csr_pattern(&hi, cfg.npt, cell_ids.len());
    let inputs = WeightInputs {
        hi: &hi,
        d_m,
        area: &area,
        ptr: &ptr,
        sample: &sample,
        npt: cfg.npt,
        radius: cfg.radius,
        sigma_m: cfg.sigma_m,
        sample_xyz,
        cell_xyz,
    };
    let (weights, placed) = backend::link_weights(target, inputs)?;
    let nnz = sample.len();
    let unlinked = (0..cell_ids.len() as u32).filter(|&c| ptr[c as usize] == ptr[c as usize + 1]).collect();
    // the host keeps the links and weights where they were computed here; a device keeps its own
    let host = match weights {
        Some(LinkWeights { d_m, mt, dy, m, dx }) => HostArrays::all(
            SampleLinks { npt: cfg.npt, hi, mt },
            CellLinks { ptr, sample, m },
            d_m,
            area.iter().map(|&a| F::from_f64(a)).collect(),
            dx,
            dy,
        ),
        None => HostArrays::none(),
    };
    Ok(PsfResampler {
        grid,
        cfg,
        n: order.len(),
        cell_ids,
        nnz,
        host,
        position: inverse(&order, order.len()),
        order,
        info: Default::default(),
        uncomputable: Vec::new(),
        fill_from: Vec::new(),
        unlinked,
        placed,
        blocks: Pool::new(),
    })
}

/// The operator of links a device built and keeps (`placed`): on the host the sample order and the
/// cell ids; every cell has a link (the construction pruned the others).
pub(crate) fn on_device<F: Real>(
    grid: Grid,
    cfg: Config,
    order: Vec<u32>,
    cell_ids: Vec<u64>,
    nnz: usize,
    placed: backend::Placed<F>,
) -> PsfResampler<F> {
    PsfResampler {
        grid,
        cfg,
        n: order.len(),
        cell_ids,
        nnz,
        host: HostArrays::none(),
        position: inverse(&order, order.len()),
        order,
        info: Default::default(),
        uncomputable: Vec::new(),
        fill_from: Vec::new(),
        unlinked: Vec::new(),
        placed,
        blocks: Pool::new(),
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

impl<F: Real> PsfResampler<F> {
    /// Cells whose raw (area-free) Gaussian support `Σ exp(−2d²/s²)` over their links is ≤ the
    /// threshold (SPEC §3.1; note ≤, where the keep rule is ≥), summed in the type F as the reference.
    pub(crate) fn weak_cells(&self) -> Vec<u32> {
        let s2 = F::from_f64(self.cfg.sigma_m * self.cfg.sigma_m);
        let thr = F::from_f64(self.cfg.threshold);
        let npt = self.cfg.npt;
        let mut raw = vec![F::ZERO; self.cell_ids.len()];
        for (row_h, row_d) in self.host_samples().hi.chunks_exact(npt).zip(self.host_d_m().chunks_exact(npt)) {
            for (&h, &d) in row_h.iter().zip(row_d) {
                if h >= 0 {
                    raw[h as usize] += gaussian(d, s2);
                }
            }
        }
        (0..raw.len() as u32).filter(|&k| raw[k as usize] <= thr).collect()
    }
}
