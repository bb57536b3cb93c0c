//! The CPU backend: rayon over the host copy of the operator, the reference for every other
//! backend.
//!
//! Work is split in chunks of [`CHUNK`] elements (samples or cells) whose boundaries depend on the
//! sizes only; reductions add the chunk partials in chunk order, in f64: results are bitwise
//! identical for any number of threads. The products and vector kernels are const-generic over the
//! common batch sizes (so the per-link loops unroll and vectorise); every variant performs the same
//! operations in the same order for each element, so results do not depend on the variant either.
//! The CG's scalar step and the active set's element rules are the C++ of `csrc/rules.h`, compiled
//! for the host by build.rs (`csrc/host.cpp`) — the same source the CUDA kernels compile.

use super::{
    hpsf_box_args, layout, Axis, Backend, BoxBounds, BoxRule, CgInit, CgLayout, CgSnapshot, Gathered, LinkWeights,
    WeightInputs, FREE,
};
use crate::error::Result;
use crate::real::Real;
use crate::sparse::{CellLinks, SampleLinks};
use rayon::prelude::*;

/// Elements (samples or cells) per parallel chunk.
pub(crate) const CHUNK: usize = 2048;

/// The operator's host data as a backend.
pub(crate) struct Cpu<'a, F: Real> {
    pub samples: &'a SampleLinks<F>,
    pub cells: &'a CellLinks<F>,
    pub dx: &'a [F],
}

/// The CG scalars in host memory (the layout of [`CgLayout`]).
pub(crate) struct HostScalars {
    layout: CgLayout,
    f: Vec<f64>,
    i: Vec<i32>,
}

impl HostScalars {
    fn done(&self) -> bool {
        self.i[self.layout.done()] != 0
    }
    fn at(&self, offset: usize) -> &[f64] {
        &self.f[offset..offset + self.layout.s]
    }
    fn raw(&mut self) -> super::hpsf_cg_scalars {
        self.layout.raw(self.f.as_mut_ptr(), self.i.as_mut_ptr())
    }
}

mod rules {
    use crate::backend::{hpsf_box_args, hpsf_cg_scalars};
    extern "C" {
        pub fn hpsf_cg_alpha_host(c: *const hpsf_cg_scalars);
        pub fn hpsf_cg_beta_host(c: *const hpsf_cg_scalars);
        pub fn hpsf_box_host(f64: i32, a: *const hpsf_box_args, begin: i64, end: i64) -> i64;
    }
}

/// The arguments of a box rule, shared by the rayon tasks that apply it to disjoint element ranges.
struct Shared(hpsf_box_args);
// SAFETY: each task reads the per-column arrays and reads or writes only the elements of its own
// range [begin, end) of the blocks (the rules of csrc/rules.h touch element e alone).
unsafe impl Sync for Shared {}

/// The host address of a block, or null.
fn addr<T>(v: Option<&Vec<T>>) -> *const std::ffi::c_void {
    v.map_or(std::ptr::null(), |v| v.as_ptr().cast())
}

impl<F: Real> Backend<F> for Cpu<'_, F> {
    type Vals = Vec<F>;
    type Mask = Vec<u8>;
    type Scalars = HostScalars;

    fn n(&self) -> usize {
        self.samples.hi.len() / self.samples.npt
    }
    fn k(&self) -> usize {
        self.dx.len()
    }
    fn poll_every(&self) -> usize {
        1
    }

    fn zeros(&self, len: usize) -> Result<Vec<F>> {
        Ok(vec![F::ZERO; len])
    }
    fn copy_into(&self, dst: &mut Vec<F>, src: &Vec<F>) -> Result<()> {
        dst.copy_from_slice(src);
        Ok(())
    }
    fn upload_mask(&self, m: Vec<u8>) -> Result<Vec<u8>> {
        Ok(m)
    }
    fn download_mask(&self, m: &Vec<u8>) -> Result<Vec<u8>> {
        Ok(m.clone())
    }
    fn gather(&self, v: &[F], axis: Axis<'_>, zero_nan: bool, mask: bool) -> Result<Gathered<Vec<F>, Vec<u8>>> {
        let s = axis.rows(v.len())?;
        let all: Vec<usize> = (0..s).collect();
        let (vals, valid, facts) = match axis {
            Axis::Cells(k) => {
                let mut x = layout::interleave(v, k, &all);
                let valid = mask.then(|| x.par_iter().map(|y| !y.is_nan() as u8).collect());
                if zero_nan {
                    x.par_iter_mut().filter(|y| y.is_nan()).for_each(|y| *y = F::ZERO);
                }
                (x, valid, layout::row_facts(v, k, None))
            }
            Axis::Samples { order, position } => {
                let n = position.len();
                let (x, valid) = layout::sample_block(v, n, &all, order, mask, zero_nan);
                (x, valid, layout::row_facts(v, n, Some(position)))
            }
        };
        Ok(Gathered { vals, valid, facts })
    }
    fn scatter(&self, x: &Vec<F>, s: usize, axis: Axis<'_>) -> Result<Vec<F>> {
        axis.check_block(x.len(), s)?;
        let position = match axis {
            Axis::Cells(_) => None,
            Axis::Samples { position, .. } => Some(position),
        };
        Ok(layout::deinterleave(x, axis.width(), s, position))
    }
    fn scale_columns(&self, v: &mut Vec<F>, c: &[F]) -> Result<()> {
        layout::scale_columns(v, c);
        Ok(())
    }
    fn mask_values(&self, m: &Vec<u8>) -> Result<Vec<F>> {
        Ok(m.par_iter().map(|&b| if b & FREE != 0 { F::ONE } else { F::ZERO }).collect())
    }
    fn fill_masked(&self, v: &mut Vec<F>, m: &Vec<u8>, fill: F) -> Result<()> {
        v.par_iter_mut().zip(m.par_iter()).filter(|(_, &b)| b & FREE == 0).for_each(|(x, _)| *x = fill);
        Ok(())
    }
    fn select(&self, v: &Vec<F>, s: usize, cols: &[usize]) -> Result<Vec<F>> {
        Ok(columns(v, s, cols))
    }
    fn select_mask(&self, m: &Vec<u8>, s: usize, cols: &[usize]) -> Result<Vec<u8>> {
        Ok(columns(m, s, cols))
    }
    fn put_columns(&self, dst: &mut Vec<F>, t: usize, src: &Vec<F>, m: usize, pairs: &[(usize, usize)]) -> Result<()> {
        for (d, r) in dst.chunks_exact_mut(t).zip(src.chunks_exact(m)) {
            for &(from, to) in pairs {
                d[to] = r[from];
            }
        }
        Ok(())
    }

    fn mt(
        &self,
        v: &Vec<F>,
        s: usize,
        out: &mut Vec<F>,
        valid: Option<&Vec<u8>>,
        cg: Option<&HostScalars>,
    ) -> Result<()> {
        if !cg.is_some_and(HostScalars::done) {
            mt_product(self.samples, v, s, out, valid.map(Vec::as_slice));
        }
        Ok(())
    }
    fn m(
        &self,
        u: &Vec<F>,
        s: usize,
        out: &mut Vec<F>,
        add: Option<(F, &Vec<F>)>,
        den: Option<&mut HostScalars>,
    ) -> Result<()> {
        if den.as_ref().is_some_and(|c| c.done()) {
            return Ok(());
        }
        let add = add.map(|(lam, v)| (lam, v.as_slice()));
        let dot_with = den.as_ref().and(add).map(|(_, p)| (p, self.dx));
        let dots = m_product(self.cells, u, s, out, MExtras { add, dot_with });
        if let Some(c) = den {
            let at = c.layout.den();
            c.f[at..at + s].copy_from_slice(&dots);
        }
        Ok(())
    }

    fn dots(
        &self,
        a: &Vec<F>,
        b: Option<&Vec<F>>,
        s: usize,
        weighted: bool,
        mask: Option<&Vec<u8>>,
    ) -> Result<Vec<f64>> {
        Ok(dots(a, b.map(Vec::as_slice), s, weighted.then_some(self.dx), mask.map(Vec::as_slice)))
    }
    fn max_abs(&self, v: &Vec<F>, s: usize) -> Result<Vec<f64>> {
        let partials: Vec<Vec<f64>> = v
            .par_chunks(CHUNK * s)
            .map(|c| {
                let mut m = vec![0.0f64; s];
                for row in c.chunks_exact(s) {
                    for (mj, x) in m.iter_mut().zip(row) {
                        *mj = mj.max(x.abs().to_f64());
                    }
                }
                m
            })
            .collect();
        Ok(partials.into_iter().fold(vec![0.0; s], |acc, p| acc.iter().zip(&p).map(|(a, b)| a.max(*b)).collect()))
    }

    fn axpby(&self, y: &mut Vec<F>, a: &[F], x: &Vec<F>, b: F) -> Result<()> {
        let s = a.len();
        y.par_chunks_mut(CHUNK * s).zip(x.par_chunks(CHUNK * s)).for_each(|(yc, xc)| {
            for (yr, xr) in yc.chunks_exact_mut(s).zip(xc.chunks_exact(s)) {
                for ((yv, &xv), &aj) in yr.iter_mut().zip(xr).zip(a) {
                    *yv = aj * xv + b * *yv;
                }
            }
        });
        Ok(())
    }
    fn mul_mask(&self, v: &mut Vec<F>, mask: &Vec<u8>) -> Result<()> {
        v.par_chunks_mut(CHUNK).zip(mask.par_chunks(CHUNK)).for_each(|(vc, mc)| {
            for (x, &m) in vc.iter_mut().zip(mc) {
                *x *= if m & FREE != 0 { F::ONE } else { F::ZERO };
            }
        });
        Ok(())
    }
    fn renormalise(&self, x: &mut Vec<F>, w: &Vec<F>, rows: &[bool]) -> Result<Vec<u8>> {
        let s = rows.len();
        let mut codes = vec![FREE; x.len()];
        x.par_chunks_mut(CHUNK * s).zip(w.par_chunks(CHUNK * s)).zip(codes.par_chunks_mut(CHUNK * s)).for_each(
            |((xc, wc), cc)| {
                for (e, (xv, (&wv, code))) in xc.iter_mut().zip(wc.iter().zip(cc.iter_mut())).enumerate() {
                    if rows[e % s] {
                        (*xv, *code) = if wv != F::ZERO { (*xv / wv, FREE) } else { (F::ZERO, 0) };
                    }
                }
            },
        );
        Ok(codes)
    }
    fn reciprocal_dx(&self) -> Result<Vec<F>> {
        Ok(self.dx.iter().map(|&d| safe_div(F::ONE, d)).collect())
    }
    fn broadcast(&self, src: &Vec<F>, s: usize, scale: F, codes: Option<&Vec<u8>>) -> Result<Vec<F>> {
        let mut out = vec![F::ZERO; src.len() * s];
        for (k, (row, &v)) in out.chunks_exact_mut(s).zip(src).enumerate() {
            for (j, o) in row.iter_mut().enumerate() {
                let keep = codes.is_none_or(|c| c[k * s + j] & FREE != 0);
                *o = if keep { v * scale } else { F::ZERO };
            }
        }
        Ok(out)
    }

    fn box_rule(&self, rule: BoxRule<'_, F, Vec<F>, Vec<u8>>) -> Result<u64> {
        let (len, s) = rule.shape(Vec::len, Vec::len)?;
        let mut a = hpsf_box_args::new(rule.code(), len, s);
        let bounds = |b: &BoxBounds<'_, F, Vec<F>>| (b.lo.as_ptr().cast(), b.hi.as_ptr().cast(), addr(b.off));
        match rule {
            BoxRule::Clamp { x, b, codes } => {
                (a.lo, a.hi, a.off) = bounds(b);
                (a.x, a.codes) = (x.as_mut_ptr().cast(), addr(codes) as *mut u8);
            }
            BoxRule::Classify { x, r, b, kkt, codes } => {
                (a.lo, a.hi, a.off) = bounds(b);
                (a.x, a.r, a.kkt, a.codes) =
                    (x.as_ptr() as *mut _, r.as_ptr().cast(), kkt.as_ptr().cast(), codes.as_mut_ptr());
            }
            BoxRule::Step { x, d, b, codes } => {
                (a.lo, a.hi, a.off) = bounds(b);
                (a.x, a.d, a.codes) = (x.as_mut_ptr().cast(), d.as_ptr().cast(), codes.as_ptr() as *mut u8);
            }
            BoxRule::Release { r, kkt, codes } => {
                (a.r, a.kkt, a.codes) = (r.as_ptr().cast(), kkt.as_ptr().cast(), codes.as_ptr() as *mut u8);
            }
            BoxRule::Hold { cand, base, b, codes } => {
                (a.lo, a.hi, a.off) = bounds(b);
                (a.cand, a.base, a.codes) = (cand.as_ptr().cast(), base.as_mut_ptr().cast(), codes.as_mut_ptr());
            }
        }
        let shared = Shared(a);
        let a = &shared; // the closure must capture the Sync wrapper, not the field
        let step = CHUNK * s;
        let n: i64 = (0..len.div_ceil(step))
            .into_par_iter()
            .map(|c| {
                let (begin, end) = (c * step, ((c + 1) * step).min(len));
                // SAFETY: every block holds `len` elements and every per-column array s values (checked by
                // `shape`); the rules only write what the rule owns mutably (x, base, codes), element by
                // element, in this task's range.
                unsafe { rules::hpsf_box_host(F::IS_F64 as i32, &a.0, begin as i64, end as i64) }
            })
            .sum();
        Ok(n as u64)
    }

    fn cg_start(&self, init: &CgInit) -> Result<HostScalars> {
        let layout = CgLayout::of(init);
        let (f, i) = layout.initial(init)?;
        Ok(HostScalars { layout, f, i })
    }
    fn cg_read(&self, c: &HostScalars) -> Result<CgSnapshot> {
        Ok(c.layout.snapshot(&c.f, &c.i))
    }
    fn cg_alpha(&self, c: &mut HostScalars) -> Result<()> {
        let raw = c.raw();
        // SAFETY: the pointers address c's buffers, laid out as the rule expects, borrowed mutably.
        unsafe { rules::hpsf_cg_alpha_host(&raw) };
        Ok(())
    }
    fn cg_update(&self, x: &mut Vec<F>, r: &mut Vec<F>, p: &Vec<F>, ap: &Vec<F>, c: &mut HostScalars) -> Result<()> {
        if c.done() {
            return Ok(());
        }
        let alpha: Vec<F> = c.at(c.layout.alpha()).iter().map(|&a| F::from_f64(a)).collect();
        let rs_new = cg_update(x, r, p, ap, &alpha, self.dx);
        let at = c.layout.rs_new();
        c.f[at..at + alpha.len()].copy_from_slice(&rs_new);
        Ok(())
    }
    fn cg_beta(&self, c: &mut HostScalars) -> Result<()> {
        let raw = c.raw();
        // SAFETY: as in cg_alpha.
        unsafe { rules::hpsf_cg_beta_host(&raw) };
        Ok(())
    }
    fn cg_direction(&self, p: &mut Vec<F>, r: &Vec<F>, c: &HostScalars) -> Result<()> {
        if !c.done() {
            let beta: Vec<F> = c.at(c.layout.beta()).iter().map(|&b| F::from_f64(b)).collect();
            cg_direction(p, r, &beta);
        }
        Ok(())
    }
}

/// The columns `cols` of an E×s block.
fn columns<T: Copy>(v: &[T], s: usize, cols: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len() / s.max(1) * cols.len());
    for row in v.chunks_exact(s) {
        out.extend(cols.iter().map(|&j| row[j]));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Link weights (SPEC §3).
// ---------------------------------------------------------------------------------------------

#[inline(always)]
fn safe_div<F: Real>(w: F, s: F) -> F {
    if s != F::ZERO {
        w / s
    } else {
        F::ZERO
    }
}

/// The raw weight of a link at distance `d`, `exp((−2·(d·d)) / s²)`, in the type F and in torch's
/// order of operations (SPEC §3 step 2).
#[inline(always)]
pub(crate) fn gaussian<F: Real>(d: F, s2: F) -> F {
    (F::from_f64(-2.0) * (d * d) / s2).exp()
}

/// In the operator's float type: `g = exp((−2·d²)/s²)` from the cast distances, `W = g·a`,
/// `Dy_i = Σ_t W_it`, `Dx_k = Σ_{links to k} W` (summed in the operator's sample order),
/// `MT[k,i] = W/Dy_i`, `M[i,k] = W/Dx_k`, with 0 wherever a denominator is exactly 0.
pub(crate) fn link_weights<F: Real>(w: WeightInputs<'_, F>) -> LinkWeights<F> {
    let WeightInputs { hi, d_m, area, ptr, sample, npt, sigma_m, .. } = w;
    let n = area.len();
    let k_count = ptr.len() - 1;
    let area: Vec<F> = area.par_iter().map(|&x| F::from_f64(x)).collect();
    let s2 = F::from_f64(sigma_m * sigma_m);

    // Raw area-weighted weights W (kept in `mt` until normalised) and Dy.
    let mut mt = vec![F::ZERO; n * npt];
    let mut dy = vec![F::ZERO; n];
    mt.par_chunks_mut(npt).zip(dy.par_iter_mut()).enumerate().for_each(|(i, (row, dy))| {
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

    // By cell in the CSR order (sample positions ascending), holding W until normalised.
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
    // Dx per cell, then M = W / Dx.
    let mut dx = vec![F::ZERO; k_count];
    {
        let mut rows: Vec<&mut [F]> = Vec::with_capacity(k_count);
        let mut rest = &mut m[..];
        for k in 0..k_count {
            let (row, r) = std::mem::take(&mut rest).split_at_mut(ptr[k + 1] - ptr[k]);
            rows.push(row);
            rest = r;
        }
        rows.into_par_iter().zip(dx.par_iter_mut()).for_each(|(row, dx)| {
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
    mt.par_chunks_mut(npt).zip(dy.par_iter()).for_each(|(row, &dy)| {
        for w in row.iter_mut() {
            *w = safe_div(*w, dy);
        }
    });
    LinkWeights { d_m, mt, dy, m, dx }
}

// ---------------------------------------------------------------------------------------------
// Products and vector kernels.
// ---------------------------------------------------------------------------------------------

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

/// `out (N×s) = (v (K×s) · MT) ⊙ valid`: each sample gathers its linked cells; where `valid` (N×s,
/// bit 0) is clear, 0 (a second, cheap pass, so that the unmasked product stays as lean as it was).
pub(crate) fn mt_product<F: Real>(l: &SampleLinks<F>, v: &[F], s: usize, out: &mut [F], valid: Option<&[u8]>) {
    out.par_chunks_mut(CHUNK * s).enumerate().for_each(|(c, chunk)| {
        dispatch_rows!(s, mt_chunk, mt_chunk_dyn, (l, v, s, c * CHUNK, chunk));
    });
    if let Some(valid) = valid {
        out.par_chunks_mut(CHUNK * s).zip(valid.par_chunks(CHUNK * s)).for_each(|(o, m)| {
            for (x, &mj) in o.iter_mut().zip(m) {
                if mj & FREE == 0 {
                    *x = F::ZERO;
                }
            }
        });
    }
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

/// Per-row dot products `Σ_k a[k,j]·b[k,j]·w[k]·mask[k,j]` of E×s blocks (b, w = 1 and every
/// element counted when absent; the terms are formed as `a·b·w` in f64).
pub(crate) fn dots<F: Real>(a: &[F], b: Option<&[F]>, s: usize, w: Option<&[F]>, mask: Option<&[u8]>) -> Vec<f64> {
    let partials: Vec<Vec<f64>> = a
        .par_chunks(CHUNK * s)
        .enumerate()
        .map(|(c, ca)| {
            let (at, k0) = (c * CHUNK * s, c * CHUNK);
            let mut dots = vec![0.0f64; s];
            // the options are decided once per chunk, not per element
            let cb = b.map(|b| &b[at..at + ca.len()]);
            let cm = mask.map(|m| &m[at..at + ca.len()]);
            for (dk, ra) in ca.chunks_exact(s).enumerate() {
                let wk = w.map_or(1.0, |w| w[k0 + dk].to_f64());
                let (rb, rm) = (cb.map(|v| &v[dk * s..(dk + 1) * s]), cm.map(|v| &v[dk * s..(dk + 1) * s]));
                match (rb, rm) {
                    (Some(rb), None) => {
                        for ((d, &x), &y) in dots.iter_mut().zip(ra).zip(rb) {
                            *d += x.to_f64() * y.to_f64() * wk;
                        }
                    }
                    _ => {
                        for (j, (d, &x)) in dots.iter_mut().zip(ra).enumerate() {
                            if rm.is_none_or(|m| m[j] & FREE != 0) {
                                *d += x.to_f64() * rb.map_or(1.0, |v| v[j].to_f64()) * wk;
                            }
                        }
                    }
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
