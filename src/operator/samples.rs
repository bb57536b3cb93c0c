//! Samples hashed to nested cells and grouped by cell.
//!
//! Samples are sorted by (nested cell, sample index); `unique` lists the distinct cells with the
//! range of sorted positions holding their samples. Samples of one cell share their neighbourhoods,
//! so the keep and search stages work per distinct cell, in blocks of [`BLOCK`] cells.

use crate::geometry::{portable, Grid};
use rayon::prelude::*;

/// Distinct cells per block of work. Fixed (never derived from the thread count) so that every
/// block-wise reduction is the same on any machine.
pub(crate) const BLOCK: usize = 256;

pub(crate) struct Samples {
    /// Unit vector of each sample (geodetic latitude), in sorted order (`xyz[p]` belongs to sample
    /// `order[p]`), so that the per-cell loops read them contiguously.
    pub xyz: Vec<[f64; 3]>,
    /// Sample indices sorted by (nested cell, index).
    pub order: Vec<u32>,
    /// Distinct nested cells, ascending.
    pub unique: Vec<u64>,
    /// `order[start[u]..start[u + 1]]` are the samples of `unique[u]`.
    pub start: Vec<usize>,
}

impl Samples {
    /// Hashes validated samples.
    pub fn new(grid: &Grid, lon: &[f64], lat: &[f64]) -> Self {
        let mut keyed: Vec<(u64, u32)> = lon
            .par_iter()
            .zip(lat.par_iter())
            .enumerate()
            .map(|(i, (&lo, &la))| (grid.hash_nested(lo, la), i as u32))
            .collect();
        keyed.par_sort_unstable();
        let order: Vec<u32> = keyed.par_iter().map(|&(_, i)| i).collect();
        let xyz = order.par_iter().map(|&i| portable::sample_xyz(lon[i as usize], lat[i as usize])).collect();
        let mut unique = Vec::new();
        let mut start = Vec::new();
        for (p, &(h, _)) in keyed.iter().enumerate() {
            if unique.last() != Some(&h) {
                unique.push(h);
                start.push(p);
            }
        }
        start.push(keyed.len());
        Samples { xyz, order, unique, start }
    }

    pub fn n(&self) -> usize {
        self.order.len()
    }

    pub fn n_unique(&self) -> usize {
        self.unique.len()
    }

    /// Ranges of distinct-cell indices, one per block.
    pub fn blocks(&self) -> Vec<std::ops::Range<usize>> {
        (0..self.unique.len()).step_by(BLOCK).map(|s| s..(s + BLOCK).min(self.unique.len())).collect()
    }

    /// Positions of the samples in the (2r+1)² square of cells around the nested `cell` of `grid`
    /// (the grid these samples were hashed with; r ≤ nside): cell by cell in the neighbourhood's
    /// order (cdshealpix's), ascending within a cell.
    pub fn around(&self, grid: &Grid, cell: u64, r: u32) -> impl Iterator<Item = usize> + '_ {
        grid.kth_neighbourhood_nested(cell, r)
            .into_iter()
            .filter_map(|c| self.unique.binary_search(&c).ok())
            .flat_map(|u| self.positions(u))
    }

    /// Sorted positions of the samples of distinct cell `u`.
    #[inline]
    pub fn positions(&self, u: usize) -> std::ops::Range<usize> {
        self.start[u]..self.start[u + 1]
    }
}
