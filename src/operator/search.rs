//! The search stage (SPEC §2.3–§2.5): the `npt` nearest kept cells of each sample, then pruning.
//!
//! For r = ring_search_init..=ring_search_max, a sample's candidates are the kept cells of the r-th
//! neighbourhood of its cell; the first r at which it has at least `npt` of them fixes its links: the
//! `npt` nearest, sorted by distance. A sample that never gets `npt` keeps what the last ring gave
//! (a partial row, padded with −1 / +∞). So links are the nearest kept cells *inside the first square
//! that holds enough*, as in the reference — not always the globally nearest.
//!
//! Exactly equidistant candidates (common for samples on HEALPix symmetry lines, SPEC §7.10) are
//! ordered by the lower cell index, i.e. the lower id in the operator's scheme (candidates are ranked
//! by the squared chord between unit vectors, a monotone function of the distance). The reference leaves
//! this to the accident of torch's sort; this rule is deterministic.

use super::keep::KeptCells;
use super::samples::Samples;
use super::Config;
use crate::geometry::{chord2, distance_from_chord2_m, Grid};
use crate::real::Real;
use rayon::prelude::*;

pub(crate) struct Found<F> {
    /// Keep index of each link, N×npt in cell order (row p is sample `order[p]`), −1 where missing.
    pub hi: Vec<i32>,
    /// Distance of each link (m) in the operator's type (the reference casts `d` to its dtype here),
    /// +∞ where missing.
    pub d: Vec<F>,
    pub n_partial: usize,
    pub n_empty: usize,
}

/// (squared chord, cell) ordering with the lower cell first among equal distances.
#[inline(always)]
fn before(a: (f64, u32), b: (f64, u32)) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 < b.1)
}

pub(crate) fn nearest<F: Real>(grid: &Grid, cfg: &Config, smp: &Samples, kept: &KeptCells) -> Found<F> {
    let npt = cfg.npt;
    let n = smp.n();
    // Work in cell order, where each block's samples are contiguous; the operator keeps this order.
    let mut hi_s = vec![-1i32; n * npt];
    let mut d_s = vec![F::INFINITY; n * npt];
    let mut jobs = Vec::new();
    {
        let (mut rest_h, mut rest_d) = (&mut hi_s[..], &mut d_s[..]);
        for b in smp.blocks() {
            let len = (smp.start[b.end] - smp.start[b.start]) * npt;
            let (h, rh) = std::mem::take(&mut rest_h).split_at_mut(len);
            let (d, rd) = std::mem::take(&mut rest_d).split_at_mut(len);
            rest_h = rh;
            rest_d = rd;
            jobs.push((b, h, d));
        }
    }
    let (n_partial, n_empty) = jobs
        .into_par_iter()
        .map(|(b, h, d)| search_block(grid, cfg, smp, kept, b, h, d))
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));

    Found { hi: hi_s, d: d_s, n_partial, n_empty }
}

/// Searches the samples of one block; `hi`/`d` are the block's rows in sorted order.
fn search_block<F: Real>(
    grid: &Grid,
    cfg: &Config,
    smp: &Samples,
    kept: &KeptCells,
    block: std::ops::Range<usize>,
    hi: &mut [i32],
    d: &mut [F],
) -> (usize, usize) {
    let npt = cfg.npt;
    let base = smp.start[block.start];
    let mut cand: Vec<(u32, [f64; 3])> = Vec::new();
    let mut best: Vec<(f64, u32)> = Vec::with_capacity(npt + 1);
    let mut pending: Vec<usize> = Vec::new();
    let (mut n_partial, mut n_empty) = (0, 0);
    for u in block {
        pending.clear();
        pending.extend(smp.positions(u));
        for r in cfg.ring_search_init..=cfg.ring_search_max {
            if pending.is_empty() {
                break;
            }
            cand.clear();
            for h in grid.kth_neighbourhood_nested(smp.unique[u], r) {
                if let Some(k) = kept.get(h) {
                    cand.push((k, kept.xyz[k as usize]));
                }
            }
            let last_ring = r == cfg.ring_search_max;
            pending.retain(|&p| {
                let a = &smp.xyz[p];
                best.clear();
                for &(k, ref c) in &cand {
                    let e = (chord2(a, c), k);
                    if best.len() == npt && !before(e, best[npt - 1]) {
                        continue;
                    }
                    let mut j = best.len();
                    while j > 0 && before(e, best[j - 1]) {
                        j -= 1;
                    }
                    best.insert(j, e);
                    best.truncate(npt);
                }
                let done = best.len() == npt;
                if done || last_ring {
                    let row = (p - base) * npt;
                    for (t, &(c2, k)) in best.iter().enumerate() {
                        hi[row + t] = k as i32;
                        d[row + t] = F::from_f64(distance_from_chord2_m(c2, cfg.radius));
                    }
                    if !done {
                        n_partial += 1;
                        n_empty += best.is_empty() as usize;
                    }
                }
                !done
            });
        }
    }
    (n_partial, n_empty)
}

/// Drops kept cells that no sample links to (SPEC §2.5; only with `prune`, which `out_cell_ids`
/// turns off) and renumbers `hi`.
/// Returns (cell_ids in the operator's scheme ascending, hi, d, the keep index of each cell).
pub(crate) fn prune<F: Real>(found: Found<F>, kept: &KeptCells, prune: bool) -> (Vec<u64>, Vec<i32>, Vec<F>, Vec<u32>) {
    let Found { mut hi, d, .. } = found;
    let mut used = vec![!prune; kept.len()];
    for &h in &hi {
        if h >= 0 {
            used[h as usize] = true;
        }
    }
    let mut new_index = vec![-1i32; kept.len()];
    let mut cell_ids = Vec::new();
    let mut kept_of = Vec::new();
    for (k, &u) in used.iter().enumerate() {
        if u {
            new_index[k] = cell_ids.len() as i32;
            cell_ids.push(kept.scheme[k]);
            kept_of.push(k as u32);
        }
    }
    hi.par_iter_mut().for_each(|h| {
        if *h >= 0 {
            *h = new_index[*h as usize];
        }
    });
    (cell_ids, hi, d, kept_of)
}
