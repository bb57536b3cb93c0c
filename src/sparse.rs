//! Link storage of the PSF operators.
//!
//! Every link (sample i, cell k) is stored once per direction, so that both products are
//! deterministic gathers with no atomics:
//!
//! * [`SampleLinks`] — by sample, fixed width `npt`: `hi[i·npt + t]` is the cell index of sample i's
//!   t-th link (−1 where missing), `mt[i·npt + t]` the value `MT[k, i]`. Gathering over a sample's
//!   slots computes `v·MT` (cells → samples).
//! * [`CellLinks`] — by cell, CSR: the links of cell k are `ptr[k]..ptr[k+1]`, holding the sample
//!   index `sample[p]` (ascending) and the value `m[p] = M[i, k]`. Gathering over a cell's row
//!   computes `u·M` (samples → cells).
//!
//! The products themselves are the backends' (`backend::cpu` on the host).
//!
//! ```text
//!   samples (npt = 2)          cells (CSR)
//!   i  hi      mt              k  ptr  sample  m
//!   0  [1, 0]  [.7, .3]        0  0    [0, 1]  [M00, M10]
//!   1  [0,-1]  [1., 0.]        1  2    [0]     [M01]
//!                                 3
//! ```

use crate::real::Real;

/// Links by sample position (see `PsfResampler::sample_order`): fixed width `npt`, sentinel −1 for
/// a missing link.
#[derive(Debug, Clone)]
pub struct SampleLinks<F: Real> {
    pub(crate) npt: usize,
    pub(crate) hi: Vec<i32>,
    pub(crate) mt: Vec<F>,
}

impl<F: Real> SampleLinks<F> {
    /// Links per sample.
    pub fn npt(&self) -> usize {
        self.npt
    }
    /// Cell index of each link, N×npt row-major by sample position, −1 where missing.
    pub fn hi(&self) -> &[i32] {
        &self.hi
    }
    /// `MT[hi[p,t], order[p]]` for each slot, N×npt row-major by sample position (0 where missing).
    pub fn mt_values(&self) -> &[F] {
        &self.mt
    }
}

/// Links by cell: CSR over cells with ascending sample positions in each row.
#[derive(Debug, Clone)]
pub struct CellLinks<F: Real> {
    pub(crate) ptr: Vec<usize>,
    pub(crate) sample: Vec<u32>,
    pub(crate) m: Vec<F>,
}

impl<F: Real> CellLinks<F> {
    /// Row offsets, K+1 entries.
    pub fn ptr(&self) -> &[usize] {
        &self.ptr
    }
    /// Sample position of each link (ascending within a cell).
    pub fn sample(&self) -> &[u32] {
        &self.sample
    }
    /// `M[sample, k]` of each link.
    pub fn m_values(&self) -> &[F] {
        &self.m
    }
}

/// A sparse matrix as sorted triplets (COO), row-major order, no duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct Triplets<F> {
    /// Number of rows.
    pub n_rows: usize,
    /// Number of columns.
    pub n_cols: usize,
    /// Row index of each entry.
    pub rows: Vec<u64>,
    /// Column index of each entry.
    pub cols: Vec<u64>,
    /// Value of each entry.
    pub vals: Vec<F>,
}

impl<F: Real> SampleLinks<F> {
    /// The slot t with `hi[i, t] == k` (links of a sample are distinct cells).
    pub(crate) fn slot_of(&self, i: usize, k: u32) -> usize {
        let row = &self.hi[i * self.npt..(i + 1) * self.npt];
        row.iter().position(|&h| h == k as i32).expect("link present in both layouts")
    }
}

/// `MT` (K×N) as triplets sorted by (k, i) with i the caller's sample index (`order[p]` for
/// position p): the CSR order of the reference.
/// `n` is the caller's number of samples (`order` may list only some of them).
pub(crate) fn mt_triplets<F: Real>(s: &SampleLinks<F>, c: &CellLinks<F>, order: &[u32], n: usize) -> Triplets<F> {
    let k_count = c.ptr.len() - 1;
    let nnz = c.sample.len();
    let (mut rows, mut cols, mut vals) = (Vec::with_capacity(nnz), Vec::with_capacity(nnz), Vec::with_capacity(nnz));
    let mut row: Vec<(u32, F)> = Vec::new();
    for k in 0..k_count {
        row.clear();
        for &p in &c.sample[c.ptr[k]..c.ptr[k + 1]] {
            let t = s.slot_of(p as usize, k as u32);
            row.push((order[p as usize], s.mt[p as usize * s.npt + t]));
        }
        row.sort_unstable_by_key(|e| e.0);
        for &(i, v) in &row {
            rows.push(k as u64);
            cols.push(i as u64);
            vals.push(v);
        }
    }
    Triplets { n_rows: k_count, n_cols: n, rows, cols, vals }
}

/// `M` (N×K) as triplets sorted by (i, k) with i the caller's sample index: the coalesced COO
/// order of the reference.
/// `position[i]` is the position of the caller's sample i (the inverse of the operator's order;
/// `LEFT_OUT` for samples the operator was not built from).
pub(crate) fn m_triplets<F: Real>(s: &SampleLinks<F>, c: &CellLinks<F>, position: &[u32]) -> Triplets<F> {
    let k_count = c.ptr.len() - 1;
    let n = position.len();
    let nnz = c.sample.len();
    let (mut rows, mut cols, mut vals) = (Vec::with_capacity(nnz), Vec::with_capacity(nnz), Vec::with_capacity(nnz));
    let mut ks: Vec<u32> = Vec::with_capacity(s.npt);
    for (i, &p) in position.iter().enumerate().filter(|(_, &p)| p != crate::operator::LEFT_OUT) {
        let p = p as usize;
        ks.clear();
        ks.extend(s.hi[p * s.npt..(p + 1) * s.npt].iter().filter(|&&h| h >= 0).map(|&h| h as u32));
        ks.sort_unstable();
        for &k in &ks {
            let row = &c.sample[c.ptr[k as usize]..c.ptr[k as usize + 1]];
            let q = c.ptr[k as usize] + row.binary_search(&(p as u32)).expect("link present in both layouts");
            rows.push(i as u64);
            cols.push(k as u64);
            vals.push(c.m[q]);
        }
    }
    Triplets { n_rows: n, n_cols: k_count, rows, cols, vals }
}
