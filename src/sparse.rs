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

// ---------------------------------------------------------------------------------------------
// Products and vector kernels of the solver.
//
// Vectors hold `s` right-hand sides interleaved: element (e, j) of an E×s block is `v[e*s + j]`, so
// both products gather s contiguous values per link. Work is split in chunks of CHUNK elements whose
// boundaries depend on the sizes only; reductions add the chunk partials in chunk order, in f64:
// results are bitwise identical for any number of threads.
// ---------------------------------------------------------------------------------------------

use rayon::prelude::*;

/// Elements (samples or cells) per parallel chunk.
pub(crate) const CHUNK: usize = 2048;

/// Calls `$f::<F, S>` with the number of rows `$s` as a constant for the common batch sizes (so the
/// per-link loops unroll and vectorise), and `$dynf` otherwise. Every variant performs the same
/// operations in the same order for each element, so results do not depend on the variant.
macro_rules! dispatch_rows {
    ($s:expr, $f:ident, $dynf:ident, ($($arg:expr),*)) => {
        match $s {
            1 => $f::<F, 1>($($arg),*),
            2 => $f::<F, 2>($($arg),*),
            4 => $f::<F, 4>($($arg),*),
            8 => $f::<F, 8>($($arg),*),
            16 => $f::<F, 16>($($arg),*),
            _ => $dynf($($arg),*),
        }
    };
}

/// `out (N×s) = v (K×s) · MT`: each sample gathers its linked cells.
pub(crate) fn mt_product<F: Real>(l: &SampleLinks<F>, v: &[F], s: usize, out: &mut [F]) {
    out.par_chunks_mut(CHUNK * s).enumerate().for_each(|(c, chunk)| {
        dispatch_rows!(s, mt_chunk, mt_chunk_dyn, (l, v, s, c * CHUNK, chunk));
    });
}

fn mt_chunk<F: Real, const S: usize>(l: &SampleLinks<F>, v: &[F], _s: usize, i0: usize, chunk: &mut [F]) {
    let npt = l.npt;
    for (di, o) in chunk.chunks_exact_mut(S).enumerate() {
        let i = (i0 + di) * npt;
        let mut acc = [F::ZERO; S];
        for (&h, &w) in l.hi[i..i + npt].iter().zip(&l.mt[i..i + npt]) {
            if h >= 0 {
                let vk: &[F; S] = v[h as usize * S..(h as usize + 1) * S].try_into().expect("S values");
                for j in 0..S {
                    acc[j] += w * vk[j];
                }
            }
        }
        o.copy_from_slice(&acc);
    }
}

fn mt_chunk_dyn<F: Real>(l: &SampleLinks<F>, v: &[F], s: usize, i0: usize, chunk: &mut [F]) {
    let npt = l.npt;
    for (di, o) in chunk.chunks_exact_mut(s).enumerate() {
        let i = (i0 + di) * npt;
        o.fill(F::ZERO);
        for (&h, &w) in l.hi[i..i + npt].iter().zip(&l.mt[i..i + npt]) {
            if h >= 0 {
                for (a, &b) in o.iter_mut().zip(&v[h as usize * s..(h as usize + 1) * s]) {
                    *a += w * b;
                }
            }
        }
    }
}

/// Optional parts of a `u·M` product: `+ lam·v`, and the weighted dots `Σ_k out[k,j]·p[k,j]·w[k]`.
#[derive(Clone, Copy)]
pub(crate) struct MExtras<'a, F> {
    /// Adds `lam·v` (K×s) to the product.
    pub add: Option<(F, &'a [F])>,
    /// Returns the per-row dots of the result with `p` (K×s) weighted by `w` (K).
    pub dot_with: Option<(&'a [F], &'a [F])>,
}

impl<F> MExtras<'_, F> {
    /// The plain product.
    pub(crate) fn none() -> Self {
        MExtras { add: None, dot_with: None }
    }
}

/// `out (K×s) = u (N×s) · M` (+ the extras), each cell gathering its linked samples. Returns the
/// per-row dots asked for in `extras` (empty otherwise).
pub(crate) fn m_product<F: Real>(
    l: &CellLinks<F>,
    u: &[F],
    s: usize,
    out: &mut [F],
    extras: MExtras<'_, F>,
) -> Vec<f64> {
    let partials: Vec<Vec<f64>> = out
        .par_chunks_mut(CHUNK * s)
        .enumerate()
        .map(|(c, chunk)| dispatch_rows!(s, m_chunk, m_chunk_dyn, (l, u, s, c * CHUNK, chunk, extras)))
        .collect();
    sum_partials(partials, if extras.dot_with.is_some() { s } else { 0 })
}

fn m_chunk<F: Real, const S: usize>(
    l: &CellLinks<F>,
    u: &[F],
    _s: usize,
    k0: usize,
    chunk: &mut [F],
    ex: MExtras<'_, F>,
) -> Vec<f64> {
    let mut dots = [0.0f64; S];
    for (dk, o) in chunk.chunks_exact_mut(S).enumerate() {
        let k = k0 + dk;
        let mut acc = [F::ZERO; S];
        for p in l.ptr[k]..l.ptr[k + 1] {
            let w = l.m[p];
            let i = l.sample[p] as usize;
            let ui: &[F; S] = u[i * S..(i + 1) * S].try_into().expect("S values");
            for j in 0..S {
                acc[j] += w * ui[j];
            }
        }
        if let Some((lam, v)) = ex.add {
            for j in 0..S {
                acc[j] += lam * v[k * S + j];
            }
        }
        if let Some((p, dx)) = ex.dot_with {
            let wk = dx[k].to_f64();
            for j in 0..S {
                dots[j] += acc[j].to_f64() * p[k * S + j].to_f64() * wk;
            }
        }
        o.copy_from_slice(&acc);
    }
    if ex.dot_with.is_some() {
        dots.to_vec()
    } else {
        Vec::new()
    }
}

fn m_chunk_dyn<F: Real>(
    l: &CellLinks<F>,
    u: &[F],
    s: usize,
    k0: usize,
    chunk: &mut [F],
    ex: MExtras<'_, F>,
) -> Vec<f64> {
    let mut dots = vec![0.0f64; if ex.dot_with.is_some() { s } else { 0 }];
    for (dk, o) in chunk.chunks_exact_mut(s).enumerate() {
        let k = k0 + dk;
        o.fill(F::ZERO);
        for p in l.ptr[k]..l.ptr[k + 1] {
            let w = l.m[p];
            let i = l.sample[p] as usize;
            for (a, &b) in o.iter_mut().zip(&u[i * s..(i + 1) * s]) {
                *a += w * b;
            }
        }
        if let Some((lam, v)) = ex.add {
            for (a, &b) in o.iter_mut().zip(&v[k * s..(k + 1) * s]) {
                *a += lam * b;
            }
        }
        if let Some((p, dx)) = ex.dot_with {
            let wk = dx[k].to_f64();
            for (j, (&a, &b)) in o.iter().zip(&p[k * s..(k + 1) * s]).enumerate() {
                dots[j] += a.to_f64() * b.to_f64() * wk;
            }
        }
    }
    dots
}

fn sum_partials(partials: Vec<Vec<f64>>, s: usize) -> Vec<f64> {
    let mut total = vec![0.0f64; s];
    for p in partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// Per-row weighted dot products `Σ_k a[k,j]·b[k,j]·w[k]` of two K×s blocks.
pub(crate) fn wdot<F: Real>(a: &[F], b: &[F], w: &[F], s: usize) -> Vec<f64> {
    let partials: Vec<Vec<f64>> = a
        .par_chunks(CHUNK * s)
        .zip(b.par_chunks(CHUNK * s))
        .enumerate()
        .map(|(c, (ca, cb))| {
            let mut dots = vec![0.0f64; s];
            for (dk, (ra, rb)) in ca.chunks_exact(s).zip(cb.chunks_exact(s)).enumerate() {
                let wk = w[c * CHUNK + dk].to_f64();
                for (j, (&x, &y)) in ra.iter().zip(rb).enumerate() {
                    dots[j] += x.to_f64() * y.to_f64() * wk;
                }
            }
            dots
        })
        .collect();
    sum_partials(partials, s)
}

/// The CG update `x += α p; r −= α ap` (per row α), returning the new `<r, r>_w` per row.
pub(crate) fn cg_update<F: Real>(x: &mut [F], r: &mut [F], p: &[F], ap: &[F], alpha: &[F], w: &[F]) -> Vec<f64> {
    let s = alpha.len();
    let partials: Vec<Vec<f64>> = x
        .par_chunks_mut(CHUNK * s)
        .zip(r.par_chunks_mut(CHUNK * s))
        .zip(p.par_chunks(CHUNK * s).zip(ap.par_chunks(CHUNK * s)))
        .enumerate()
        .map(|(c, ((cx, cr), (cp, cap)))| {
            let w = &w[c * CHUNK..];
            dispatch_rows!(s, update_chunk, update_chunk_dyn, (cx, cr, cp, cap, alpha, w))
        })
        .collect();
    sum_partials(partials, s)
}

fn update_chunk<F: Real, const S: usize>(
    x: &mut [F],
    r: &mut [F],
    p: &[F],
    ap: &[F],
    alpha: &[F],
    w: &[F],
) -> Vec<f64> {
    let alpha: &[F; S] = alpha.try_into().expect("S values");
    let mut dots = [0.0f64; S];
    for ((((rx, rr), rp), rap), &wk) in
        x.chunks_exact_mut(S).zip(r.chunks_exact_mut(S)).zip(p.chunks_exact(S)).zip(ap.chunks_exact(S)).zip(w)
    {
        let wk = wk.to_f64();
        for j in 0..S {
            rx[j] += alpha[j] * rp[j];
            rr[j] -= alpha[j] * rap[j];
            let v = rr[j].to_f64();
            dots[j] += v * v * wk;
        }
    }
    dots.to_vec()
}

fn update_chunk_dyn<F: Real>(x: &mut [F], r: &mut [F], p: &[F], ap: &[F], alpha: &[F], w: &[F]) -> Vec<f64> {
    let s = alpha.len();
    let mut dots = vec![0.0f64; s];
    for ((((rx, rr), rp), rap), &wk) in
        x.chunks_exact_mut(s).zip(r.chunks_exact_mut(s)).zip(p.chunks_exact(s)).zip(ap.chunks_exact(s)).zip(w)
    {
        let wk = wk.to_f64();
        for j in 0..s {
            rx[j] += alpha[j] * rp[j];
            rr[j] -= alpha[j] * rap[j];
            let v = rr[j].to_f64();
            dots[j] += v * v * wk;
        }
    }
    dots
}

/// The new search direction `p = r + β p` (per row β).
pub(crate) fn cg_direction<F: Real>(p: &mut [F], r: &[F], beta: &[F]) {
    let s = beta.len();
    p.par_chunks_mut(CHUNK * s)
        .zip(r.par_chunks(CHUNK * s))
        .for_each(|(cp, cr)| dispatch_rows!(s, direction_chunk, direction_chunk_dyn, (cp, cr, beta)));
}

fn direction_chunk<F: Real, const S: usize>(p: &mut [F], r: &[F], beta: &[F]) {
    let beta: &[F; S] = beta.try_into().expect("S values");
    for (rp, rr) in p.chunks_exact_mut(S).zip(r.chunks_exact(S)) {
        for j in 0..S {
            rp[j] = rr[j] + beta[j] * rp[j];
        }
    }
}

fn direction_chunk_dyn<F: Real>(p: &mut [F], r: &[F], beta: &[F]) {
    let s = beta.len();
    for (rp, rr) in p.chunks_exact_mut(s).zip(r.chunks_exact(s)) {
        for j in 0..s {
            rp[j] = rr[j] + beta[j] * rp[j];
        }
    }
}
