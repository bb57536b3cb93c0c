//! The keep stage (SPEC §2.2): which candidate cells carry enough Gaussian weight to be kept.
//!
//! Each sample's candidates are the cells of the `ring_weight`-th neighbourhood of its own cell,
//! padded to (2·ring_weight+1)² slots by repeating the last cell (the reference pads with −1 and
//! fills each −1 with the row's last valid entry, so near the 8 special base-cell vertices that cell
//! counts several times — kept for parity). A cell is kept when Σ over samples and slots of
//! `exp(−2d²/s²)` is ≥ `threshold`.
//!
//! The sums are added in a fixed order that the GPU construction (`csrc/construct.cu`) follows too,
//! so that both keep the same cells: the *share* of slot t of distinct cell u is the sum over the
//! cell's samples, in sample order, of their weights at the slot's candidate (`construct.h`'s
//! `hpsf_weight_sum`, with the portable exp); within a block of [`BLOCK`](super::samples::BLOCK)
//! distinct cells a candidate's shares are added in (u, t) order; the block partials are added in
//! block order. The result does not depend on the thread count or the device.

use super::samples::Samples;
use super::Config;
use crate::error::{Error, Result};
use crate::geometry::{portable, Grid};
use rayon::prelude::*;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

pub(crate) struct KeepResult {
    /// Kept cells (nested ids, ascending).
    pub nested: Vec<u64>,
    /// Number of distinct candidate cells.
    pub n_candidates: usize,
}

pub(crate) fn keep_stage(grid: &Grid, cfg: &Config, smp: &Samples) -> Result<KeepResult> {
    let sums = candidate_sums(grid, cfg, smp);
    let n_candidates = sums.len();
    let max_sum = sums.iter().fold(0.0f64, |m, &(_, s)| m.max(s));
    let nested: Vec<u64> = sums.iter().filter(|&&(_, s)| s >= cfg.threshold).map(|&(c, _)| c).collect();
    drop(sums);
    if nested.is_empty() {
        return Err(Error::NoCellPassedThreshold {
            max_weight_sum: max_sum,
            threshold: cfg.threshold,
            sigma_m: cfg.sigma_m,
        });
    }
    Ok(KeepResult { nested, n_candidates })
}

/// Every candidate cell's weight sum, by cell ascending.
pub(crate) fn candidate_sums(grid: &Grid, cfg: &Config, smp: &Samples) -> Vec<(u64, f64)> {
    let partials: Vec<(Vec<u64>, Vec<f64>)> =
        smp.blocks().into_par_iter().map(|b| block_sums(grid, cfg, smp, b)).collect();

    // Add the partials of each cell in block order (a stable sort keeps that order).
    let mut pairs: Vec<(u64, f64)> = Vec::with_capacity(partials.iter().map(|p| p.0.len()).sum());
    for (cells, sums) in &partials {
        pairs.extend(cells.iter().copied().zip(sums.iter().copied()));
    }
    drop(partials);
    pairs.par_sort_by_key(|&(c, _)| c);
    // each cell's sum into the first of its entries, in place
    let mut len = 0;
    for p in 0..pairs.len() {
        let (c, w) = pairs[p];
        if len > 0 && pairs[len - 1].0 == c {
            pairs[len - 1].1 += w;
        } else {
            pairs[len] = (c, w);
            len += 1;
        }
    }
    pairs.truncate(len);
    pairs
}

/// Weight sums of one block of distinct sample cells over its own candidate cells.
fn block_sums(grid: &Grid, cfg: &Config, smp: &Samples, block: std::ops::Range<usize>) -> (Vec<u64>, Vec<f64>) {
    let rw = cfg.ring_weight;
    let slots = (2 * rw as usize + 1).pow(2);
    let s2 = cfg.sigma_m * cfg.sigma_m;
    let radius = cfg.radius;

    let mut rows: Vec<u64> = Vec::with_capacity(block.len() * slots);
    let mut row_start: Vec<usize> = Vec::with_capacity(block.len() + 1);
    for u in block.clone() {
        row_start.push(rows.len());
        rows.extend(grid.kth_neighbourhood_nested(smp.unique[u], rw));
    }
    row_start.push(rows.len());

    let mut cand = rows.clone();
    cand.sort_unstable();
    cand.dedup();
    let centres: Vec<[f64; 3]> = cand.iter().map(|&c| grid.center_nested_xyz(c)).collect();
    let pos: Vec<u32> = rows.iter().map(|c| cand.binary_search(c).expect("candidate listed") as u32).collect();

    let mut sums = vec![0.0f64; cand.len()];
    for (r, u) in block.enumerate() {
        let row = &pos[row_start[r]..row_start[r + 1]];
        let share = add_shares(&smp.xyz[smp.positions(u)], &centres, row, radius, s2, &mut sums);
        // the padding slots repeat the last cell, and so its share
        let last = row[row.len() - 1] as usize;
        for _ in row.len()..slots {
            sums[last] += share;
        }
    }
    (cand, sums)
}

/// Adds the shares of one distinct cell (samples `xyz`) to the sums of its candidates `row` (indices
/// into `centres` and `sums`), in row order; returns the last one's share. The shares are computed
/// by construct.h (`hpsf_weight_sum`) a stack buffer at a time: a heap buffer per cell, freed among
/// the long-lived block lists, keeps ~80 MB of freed memory resident at N = 10⁶ (glibc cannot trim
/// its heap past it).
fn add_shares(xyz: &[[f64; 3]], centres: &[[f64; 3]], row: &[u32], radius: f64, s2: f64, sums: &mut [f64]) -> f64 {
    let mut buf = [0.0f64; 64];
    for part in row.chunks(buf.len()) {
        let shares = &mut buf[..part.len()];
        // SAFETY: xyz holds xyz.len() unit vectors, centres one per candidate (part indexes them),
        // shares part.len() values.
        unsafe {
            portable::ffi::hpsf_con_shares_host(
                xyz.as_flattened().as_ptr(),
                xyz.len() as i64,
                centres.as_flattened().as_ptr(),
                part.as_ptr(),
                part.len() as i64,
                radius,
                s2,
                shares.as_mut_ptr(),
            )
        };
        for (&q, &share) in part.iter().zip(shares.iter()) {
            sums[q as usize] += share;
        }
    }
    buf[(row.len() - 1) % buf.len()]
}

/// A fast hasher for cell ids (a multiplicative hash folded onto its low bits).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ b as u64);
        }
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        let h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

/// Kept cells indexed in the order of their ids in the operator's scheme (the order of `cell_ids`).
pub(crate) struct KeptCells {
    /// Ids in the operator's scheme, ascending; position = keep index.
    pub scheme: Vec<u64>,
    /// Centre unit vectors by keep index.
    pub xyz: Vec<[f64; 3]>,
    index: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
}

impl KeptCells {
    pub fn index(grid: &Grid, nested: Vec<u64>) -> Self {
        let mut pairs: Vec<(u64, u64)> = nested.par_iter().map(|&h| (grid.scheme_id(h), h)).collect();
        if !grid.nest() {
            pairs.par_sort_unstable();
        }
        let xyz = pairs.par_iter().map(|&(_, h)| grid.center_nested_xyz(h)).collect();
        let mut index = HashMap::with_capacity_and_hasher(pairs.len(), Default::default());
        for (k, &(_, h)) in pairs.iter().enumerate() {
            index.insert(h, k as u32);
        }
        KeptCells { scheme: pairs.into_iter().map(|(s, _)| s).collect(), xyz, index }
    }

    pub fn len(&self) -> usize {
        self.scheme.len()
    }

    /// Keep index of a nested id, if kept.
    #[inline]
    pub fn get(&self, nested: u64) -> Option<u32> {
        self.index.get(&nested).copied()
    }
}
