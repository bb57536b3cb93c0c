//! The CPU backend: rayon over the host copy of the operator, the reference for every other
//! backend.
//!
//! Work is split in chunks of [`CHUNK`] elements (samples or cells) whose boundaries depend on the
//! sizes only; reductions add in f64 in the tree of [`reduce`], the GPU's: results are bitwise
//! identical for any number of threads, and to the GPU's. The products and vector kernels are
//! const-generic over the common batch sizes (so the per-link loops unroll and vectorise), and
//! those of wider rows are compiled for AVX2 as well ([`simd`]); every variant performs the same
//! operations in the same order for each element, so results do not depend on the variant either.
//! The CG's scalar step and the active set's element rules are the C++ of `csrc/rules.h`, compiled
//! for the host by build.rs (`csrc/host.cpp`) — the same source the CUDA kernels compile.

use super::pages::{Block, Pool};
use super::{
    hpsf_box_args, layout, pages, reduce, simd, Axis, Backend, BoxBounds, BoxRule, CgInit, CgLayout, CgSnapshot,
    Gathered, LinkWeights, RowFacts, Scales, WeightInputs, FREE,
};
use crate::error::Result;
use crate::real::Real;
use crate::sparse::{CellLinks, SampleLinks};
use rayon::prelude::*;

/// Elements (samples or cells) per parallel chunk (a power of two: a chunk is a subtree of
/// [`reduce`]'s tree).
pub(crate) const CHUNK: usize = 2048;

/// Asks the processor to bring the cache line holding `x` into its caches: a hint, with no effect
/// on any result (nothing on other processors than x86-64).
#[inline(always)]
fn prefetch<T>(x: &T) {
    prefetch_line((x as *const T).cast());
}

/// Asks for the cache lines of the `bytes` bytes from `start` (as [`prefetch`], wherever `start`
/// points).
#[inline(always)]
pub(crate) fn prefetch_bytes(start: *const u8, bytes: usize) {
    for at in (0..bytes).step_by(64) {
        prefetch_line(start.wrapping_add(at));
    }
    if bytes > 0 {
        prefetch_line(start.wrapping_add(bytes - 1)); // the last line, when the bytes do not start at one
    }
}

/// Asks for the cache line holding the byte at `at`: a prefetch reads nothing the program sees and
/// never faults, wherever `at` points.
#[inline(always)]
fn prefetch_line(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and never faults, even out of bounds
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Asks for the cache lines of rows `rows` (of s values) of the block `v`.
#[inline(always)]
fn prefetch_rows<F>(v: &[F], s: usize, rows: impl Iterator<Item = usize>) {
    let per_line = (64 / std::mem::size_of::<F>()).max(1);
    for r in rows {
        let row = &v[r * s..(r + 1) * s];
        for x in row.iter().step_by(per_line) {
            prefetch(x);
        }
        if let Some(x) = row.last() {
            prefetch(x);
        }
    }
}

/// Elements (cells or samples) ahead of the one a product sums whose rows it asks the cache for.
const AHEAD: usize = 4;

/// Columns a wide product sums at a time in registers.
const TILE: usize = 16;
// (`weighted_rows` sums the last 1 to 15 columns of a row in one tile)
const _: () = assert!(TILE == 16);

/// Elements a narrow product sums at a time, interleaved.
const LANES: usize = 4;

/// The CPU backend's blocks of values: `Vec`s, which go back to the backend's pool when dropped.
type Vals<'a, F> = Block<'a, F>;

/// The operator's host data as a backend.
pub(crate) struct Cpu<'a, F: Real> {
    pub samples: &'a SampleLinks<F>,
    pub cells: &'a CellLinks<F>,
    pub dx: &'a [F],
    /// Where the large blocks come from and go back to (`None`: fresh blocks, freed when dropped);
    /// emptied when the backend is dropped, at the end of the call, unless it keeps its blocks.
    pub pool: Option<&'a Pool<F>>,
    /// On one rank of several (the distributed solve): how the reductions are combined over the
    /// ranks and where the products find the other ranks' values. `None`: one process.
    pub ranks: Option<&'a dyn Ranks<F>>,
}

/// What the CPU backend needs to run on one rank of several (`crate::distributed`): its
/// reductions combined over the ranks — the same numbers on every rank, so that every rank takes
/// the same CG steps — and the values of the other ranks' cells and samples its products read.
/// Called only from the thread that drives the solve, never from the parallel loops.
pub(crate) trait Ranks<F: Real>: Sync {
    /// The cells of all ranks.
    fn cells_total(&self) -> usize;
    /// Per-column sums: each rank's, added in rank order.
    fn sums(&self, local: Vec<f64>) -> Result<Vec<f64>>;
    /// Per-column maxima over the ranks.
    fn maxima(&self, local: Vec<f64>) -> Result<Vec<f64>>;
    /// What the rows hold over the ranks.
    fn facts(&self, local: Vec<RowFacts>) -> Result<Vec<RowFacts>>;
    /// Calls `f` with the K×s block of this rank's cells followed by the values of the other
    /// ranks' cells its samples link to.
    fn with_ghost_cells(&self, v: &[F], s: usize, f: &mut dyn FnMut(&[F])) -> Result<()>;
    /// Calls `f` with the N×s block of this rank's samples followed by those of the other ranks'
    /// samples its cells link to.
    fn with_ghost_samples(&self, u: &[F], s: usize, f: &mut dyn FnMut(&[F])) -> Result<()>;
}

impl<F: Real> Drop for Cpu<'_, F> {
    fn drop(&mut self) {
        if let Some(pool) = self.pool {
            pool.end_call();
        }
    }
}

impl<'a, F: Real> Cpu<'a, F> {
    /// `v` as one of this backend's blocks.
    fn block(&self, v: Vec<F>) -> Vals<'a, F> {
        Block::new(v, self.pool)
    }

    /// A block of `len` values of any content, to be written whole: from the pool where there is
    /// one, else fresh (calloc's zero pages, each made by its first write; read first, a page
    /// would be copied on write, see `zeros`).
    fn scratch(&self, len: usize) -> Vec<F> {
        match self.pool {
            Some(pool) => pool.scratch(len),
            None => pages::zeroed(len, F::ZERO),
        }
    }

    /// Per-column sums over the ranks (this process's alone without ranks).
    fn sums(&self, local: Vec<f64>) -> Result<Vec<f64>> {
        match self.ranks {
            Some(r) => r.sums(local),
            None => Ok(local),
        }
    }

    /// [`m_product`] over this rank's samples and those of the other ranks its cells link to:
    /// this rank's dots.
    fn m_product(&self, u: &[F], s: usize, out: &mut [F], extras: MExtras<'_, F>) -> Result<Vec<f64>> {
        match self.ranks {
            Some(r) => {
                let mut dots = Vec::new();
                r.with_ghost_samples(u, s, &mut |ext| dots = m_product(self.cells, ext, s, out, extras))?;
                Ok(dots)
            }
            None => Ok(m_product(self.cells, u, s, out, extras)),
        }
    }

    /// [`Backend::gather`], with [`Backend::gather_scaled`]'s factors when `scale` is given (on the
    /// samples' axis applied as the values are written).
    fn gather_with(
        &self,
        v: &[F],
        s: usize,
        axis: Axis<'_>,
        zero_nan: bool,
        mask: bool,
        scale: Option<&Scales<'_, F>>,
    ) -> Result<Gathered<Vals<'a, F>, Vec<u8>>> {
        axis.check_rows(v.len(), s)?;
        let all: Vec<usize> = (0..s).collect();
        // what the rows hold first (over every rank): the mask is made only if some row holds a
        // NaN — the same decision on every rank — and is otherwise all ones, not worth its bytes
        let facts = match axis {
            Axis::Cells(0) => vec![RowFacts::default(); s],
            Axis::Cells(k) => layout::row_facts(v, k, None),
            Axis::Samples { position, .. } => layout::row_facts(v, position.len(), Some(position)),
        };
        let facts = match self.ranks {
            Some(r) => r.facts(facts)?,
            None => facts,
        };
        let mask = mask && facts.iter().any(|f| f.nan > 0);
        let c = scale.map(|f| f(&facts));
        let (vals, valid) = match axis {
            Axis::Cells(k) => {
                let mut x = layout::interleave(self.scratch(k * s), v, k, &all);
                let valid = mask.then(|| x.par_iter().map(|y| !y.is_nan() as u8).collect());
                if zero_nan {
                    x.par_iter_mut().filter(|y| y.is_nan()).for_each(|y| *y = F::ZERO);
                }
                if let Some(c) = &c {
                    layout::scale_columns(&mut x, c);
                }
                (x, valid)
            }
            Axis::Samples { order, position } => {
                let y0 = self.scratch(order.len() * s);
                layout::sample_block(y0, v, &all, position, order.len(), mask, zero_nan, c.as_deref())
            }
        };
        Ok(Gathered { vals: self.block(vals), valid, facts })
    }

    /// [`Backend::scatter`], each column j multiplied by `c[j]` as it is written when `c` is given.
    fn scatter_with(&self, x: &[F], s: usize, axis: Axis<'_>, c: Option<&[F]>) -> Result<Vec<F>> {
        axis.check_block(x.len(), s)?;
        let position = match axis {
            Axis::Cells(_) => None,
            Axis::Samples { position, .. } => Some(position),
        };
        // the caller's block: a spent one of the same size where the pool has it
        Ok(layout::deinterleave(self.scratch(axis.width() * s), x, axis.width(), s, position, c))
    }
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
fn addr<T>(v: Option<&[T]>) -> *const std::ffi::c_void {
    v.map_or(std::ptr::null(), |v| v.as_ptr().cast())
}

impl<'a, F: Real> Backend<F> for Cpu<'a, F> {
    type Vals = Vals<'a, F>;
    type Mask = Vec<u8>;
    type Scalars = HostScalars;

    fn n(&self) -> usize {
        self.samples.hi.len() / self.samples.npt
    }
    fn k(&self) -> usize {
        self.dx.len()
    }
    fn k_total(&self) -> usize {
        self.ranks.map_or(self.dx.len(), |r| r.cells_total())
    }
    fn poll_every(&self) -> usize {
        1
    }

    fn zeros(&self, len: usize) -> Result<Vals<'a, F>> {
        // Written by the threads, not left to calloc's lazy zero pages: a block read before it is
        // written (x in the first CG update) would map the shared zero page on the read, then take
        // a second fault and a TLB shoot-down on the write (at B = 64 the first update took 13×
        // the others on a 2-vCPU machine).
        let mut v = self.scratch(len);
        v.par_chunks_mut(CHUNK * 16).for_each(|c| c.fill(F::ZERO));
        Ok(self.block(v))
    }
    fn copy_into(&self, dst: &mut Vals<'a, F>, src: &Vals<'a, F>) -> Result<()> {
        assert_eq!(dst.len(), src.len(), "copy_into: blocks of different lengths (a bug)");
        dst.par_chunks_mut(CHUNK * 16).zip(src.par_chunks(CHUNK * 16)).for_each(|(d, s)| d.copy_from_slice(s));
        Ok(())
    }
    fn output(&self, len: usize) -> Result<Vals<'a, F>> {
        Ok(self.block(self.scratch(len)))
    }
    fn duplicate(&self, v: &Vals<'a, F>, _len: usize) -> Result<Vals<'a, F>> {
        let mut out = self.block(self.scratch(v.len()));
        self.copy_into(&mut out, v)?;
        Ok(out)
    }
    fn upload_mask(&self, m: Vec<u8>) -> Result<Vec<u8>> {
        Ok(m)
    }
    fn download_mask(&self, m: &Vec<u8>) -> Result<Vec<u8>> {
        Ok(m.clone())
    }
    fn gather(
        &self,
        v: &[F],
        s: usize,
        axis: Axis<'_>,
        zero_nan: bool,
        mask: bool,
    ) -> Result<Gathered<Vals<'a, F>, Vec<u8>>> {
        self.gather_with(v, s, axis, zero_nan, mask, None)
    }
    fn gather_scaled(
        &self,
        v: &[F],
        s: usize,
        axis: Axis<'_>,
        zero_nan: bool,
        mask: bool,
        scale: &Scales<'_, F>,
    ) -> Result<Gathered<Vals<'a, F>, Vec<u8>>> {
        self.gather_with(v, s, axis, zero_nan, mask, Some(scale))
    }
    fn scatter(&self, x: &Vals<'a, F>, s: usize, axis: Axis<'_>) -> Result<Vec<F>> {
        self.scatter_with(x, s, axis, None)
    }
    fn scatter_scaled(&self, x: Vals<'a, F>, s: usize, axis: Axis<'_>, c: &[F]) -> Result<Vec<F>> {
        self.scatter_with(&x, s, axis, Some(c))
    }
    fn scale_columns(&self, v: &mut Vals<'a, F>, c: &[F]) -> Result<()> {
        layout::scale_columns(v, c);
        Ok(())
    }
    fn mask_values(&self, m: &Vec<u8>) -> Result<Vals<'a, F>> {
        Ok(self.block(m.par_iter().map(|&b| if b & FREE != 0 { F::ONE } else { F::ZERO }).collect()))
    }
    fn fill_masked(&self, v: &mut Vals<'a, F>, m: &Vec<u8>, fill: F) -> Result<()> {
        v.par_iter_mut().zip(m.par_iter()).filter(|(_, &b)| b & FREE == 0).for_each(|(x, _)| *x = fill);
        Ok(())
    }
    fn select(&self, v: &Vals<'a, F>, s: usize, cols: &[usize]) -> Result<Vals<'a, F>> {
        Ok(self.block(columns(v, s, cols)))
    }
    fn select_mask(&self, m: &Vec<u8>, s: usize, cols: &[usize]) -> Result<Vec<u8>> {
        Ok(columns(m, s, cols))
    }
    fn put_columns(
        &self,
        dst: &mut Vals<'a, F>,
        t: usize,
        src: &Vals<'a, F>,
        m: usize,
        pairs: &[(usize, usize)],
    ) -> Result<()> {
        for (d, r) in dst.chunks_exact_mut(t).zip(src.chunks_exact(m)) {
            for &(from, to) in pairs {
                d[to] = r[from];
            }
        }
        Ok(())
    }

    fn mt(
        &self,
        v: &Vals<'a, F>,
        s: usize,
        out: &mut Vals<'a, F>,
        valid: Option<&Vec<u8>>,
        cg: Option<&HostScalars>,
    ) -> Result<()> {
        if !cg.is_some_and(HostScalars::done) {
            let valid = valid.map(Vec::as_slice);
            match self.ranks {
                Some(r) => {
                    r.with_ghost_cells(v, s, &mut |ext| mt_product(self.samples, ext, s, out, valid, Put::Write))?
                }
                None => mt_product(self.samples, v, s, out, valid, Put::Write),
            }
        }
        Ok(())
    }
    fn mt_sub(&self, v: &Vals<'a, F>, s: usize, y: &mut Vals<'a, F>, valid: Option<&Vec<u8>>) -> Result<()> {
        let valid = valid.map(Vec::as_slice);
        match self.ranks {
            Some(r) => r.with_ghost_cells(v, s, &mut |ext| mt_product(self.samples, ext, s, y, valid, Put::Subtract)),
            None => {
                mt_product(self.samples, v, s, y, valid, Put::Subtract);
                Ok(())
            }
        }
    }
    fn m(
        &self,
        u: &Vals<'a, F>,
        s: usize,
        out: &mut Vals<'a, F>,
        add: Option<(F, &Vals<'a, F>)>,
        den: Option<&mut HostScalars>,
    ) -> Result<()> {
        if den.as_ref().is_some_and(|c| c.done()) {
            return Ok(());
        }
        let add = add.map(|(lam, v)| (lam, v.as_slice()));
        let dot_with = den.as_ref().and(add).map(|(_, p)| (Some(p), self.dx));
        let dots = self.m_product(u, s, out, MExtras { add, dot_with })?;
        if let Some(c) = den {
            let dots = self.sums(dots)?;
            let at = c.layout.den();
            c.f[at..at + s].copy_from_slice(&dots);
        }
        Ok(())
    }
    fn m_norms(&self, u: &Vals<'a, F>, s: usize, out: &mut Vals<'a, F>) -> Result<Vec<f64>> {
        let dots = self.m_product(u, s, out, MExtras { add: None, dot_with: Some((None, self.dx)) })?;
        self.sums(dots)
    }

    fn dots(
        &self,
        a: &Vals<'a, F>,
        b: Option<&Vals<'a, F>>,
        s: usize,
        weighted: bool,
        mask: Option<&Vec<u8>>,
    ) -> Result<Vec<f64>> {
        self.sums(dots(a, b.map(|b| b.as_slice()), s, weighted.then_some(self.dx), mask.map(Vec::as_slice)))
    }
    fn max_abs(&self, v: &Vals<'a, F>, s: usize) -> Result<Vec<f64>> {
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
        let local: Vec<f64> =
            partials.into_iter().fold(vec![0.0f64; s], |acc, p| acc.iter().zip(&p).map(|(a, b)| a.max(*b)).collect());
        match self.ranks {
            Some(r) => r.maxima(local),
            None => Ok(local),
        }
    }

    fn axpby(&self, y: &mut Vals<'a, F>, a: &[F], x: &Vals<'a, F>, b: F) -> Result<()> {
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
    fn mul_mask(&self, v: &mut Vals<'a, F>, mask: &Vec<u8>) -> Result<()> {
        v.par_chunks_mut(CHUNK).zip(mask.par_chunks(CHUNK)).for_each(|(vc, mc)| {
            for (x, &m) in vc.iter_mut().zip(mc) {
                *x *= if m & FREE != 0 { F::ONE } else { F::ZERO };
            }
        });
        Ok(())
    }
    fn renormalise(&self, x: &mut Vals<'a, F>, w: &Vals<'a, F>, rows: &[bool]) -> Result<Vec<u8>> {
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
    fn reciprocal_dx(&self) -> Result<Vals<'a, F>> {
        Ok(self.block(self.dx.iter().map(|&d| safe_div(F::ONE, d)).collect()))
    }
    fn broadcast(&self, src: &Vals<'a, F>, s: usize, scale: F, codes: Option<&Vec<u8>>) -> Result<Vals<'a, F>> {
        let mut out = self.scratch(src.len() * s);
        for (k, (row, &v)) in out.chunks_exact_mut(s).zip(src.iter()).enumerate() {
            for (j, o) in row.iter_mut().enumerate() {
                let keep = codes.is_none_or(|c| c[k * s + j] & FREE != 0);
                *o = if keep { v * scale } else { F::ZERO };
            }
        }
        Ok(self.block(out))
    }

    fn box_rule(&self, rule: BoxRule<'_, F, Vals<'a, F>, Vec<u8>>) -> Result<u64> {
        let (len, s) = rule.shape(|v| v.len(), Vec::len)?;
        let mut a = hpsf_box_args::new(rule.code(), len, s);
        let bounds = |b: &BoxBounds<'_, F, Vals<'a, F>>| {
            (b.lo.as_ptr().cast(), b.hi.as_ptr().cast(), addr(b.off.map(|o| o.as_slice())))
        };
        match rule {
            BoxRule::Clamp { x, b, codes } => {
                (a.lo, a.hi, a.off) = bounds(b);
                (a.x, a.codes) = (x.as_mut_ptr().cast(), addr(codes.map(|c| c.as_slice())) as *mut u8);
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
        // a count, exact in f64
        Ok(self.sums(vec![n as f64])?[0] as u64)
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
    fn cg_update(
        &self,
        x: &mut Vals<'a, F>,
        r: &mut Vals<'a, F>,
        p: &Vals<'a, F>,
        ap: &Vals<'a, F>,
        c: &mut HostScalars,
    ) -> Result<()> {
        if c.done() {
            return Ok(());
        }
        let alpha: Vec<F> = c.at(c.layout.alpha()).iter().map(|&a| F::from_f64(a)).collect();
        let rs_new = self.sums(cg_update(x, r, p, ap, &alpha, self.dx))?;
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
    fn cg_direction(&self, p: &mut Vals<'a, F>, r: &Vals<'a, F>, c: &HostScalars) -> Result<()> {
        if !c.done() {
            let beta: Vec<F> = c.at(c.layout.beta()).iter().map(|&b| F::from_f64(b)).collect();
            cg_direction(p, r, &beta);
        }
        Ok(())
    }
}

/// The columns `cols` of an E×s block.
fn columns<T: Copy>(v: &[T], s: usize, cols: &[usize]) -> Vec<T> {
    let mut out = pages::with_capacity(v.len() / s.max(1) * cols.len());
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

/// Calls `$f::<F, S>` with the number of rows `$s` as a constant up to 16 rows (the per-link loops
/// unroll and vectorise; a width left to the general version ran 3–4× slower, B = 3 88 ms an
/// iteration against 29 ms for B = 4 at N = 10⁶), and `$dynf` beyond (whose products sum their
/// rows in constant-width tiles), compiled for AVX2 too and run so where the processor has it
/// ([`simd::wide`]; `$dynf` must be `#[inline(always)]`). Every variant performs the same
/// operations in the same order for each element, so results do not depend on the variant.
macro_rules! dispatch_rows {
    ($s:expr, $f:ident, $dynf:ident, ($($arg:expr),*)) => {
        match $s {
            1 => $f::<F, 1>($($arg),*),
            2 => $f::<F, 2>($($arg),*),
            3 => $f::<F, 3>($($arg),*),
            4 => $f::<F, 4>($($arg),*),
            5 => $f::<F, 5>($($arg),*),
            6 => $f::<F, 6>($($arg),*),
            7 => $f::<F, 7>($($arg),*),
            8 => $f::<F, 8>($($arg),*),
            9 => $f::<F, 9>($($arg),*),
            10 => $f::<F, 10>($($arg),*),
            11 => $f::<F, 11>($($arg),*),
            12 => $f::<F, 12>($($arg),*),
            13 => $f::<F, 13>($($arg),*),
            14 => $f::<F, 14>($($arg),*),
            15 => $f::<F, 15>($($arg),*),
            16 => $f::<F, 16>($($arg),*),
            _ => simd::wide(|| $dynf($($arg),*)),
        }
    };
}

/// Where the rows of a `v·MT` product go: written over `out`, or subtracted from what `out` holds.
#[derive(Clone, Copy)]
pub(crate) enum Put {
    Write,
    Subtract,
}

/// `out (N×s) = (v (K×s) · MT) ⊙ valid` with [`Put::Write`], `out −= (v·MT) ⊙ valid` with
/// [`Put::Subtract`] (each element `out − t`, the rounding of `t` then `out + (−1)·t`): each sample
/// gathers its linked cells. Written, a value where `valid` (N×s, bit 0) is clear is 0 (a second,
/// cheap pass, so that the unmasked product stays as lean as it was); subtracted, it is `out − 0`.
pub(crate) fn mt_product<F: Real>(
    l: &SampleLinks<F>,
    v: &[F],
    s: usize,
    out: &mut [F],
    valid: Option<&[u8]>,
    put: Put,
) {
    let sub_valid = match put {
        Put::Write => None,
        Put::Subtract => valid,
    };
    out.par_chunks_mut(CHUNK * s).enumerate().for_each(|(c, chunk)| {
        let rows = MtRows { put, valid: sub_valid.map(|m| &m[c * CHUNK * s..][..chunk.len()]) };
        dispatch_rows!(s, mt_chunk, mt_chunk_dyn, (l, v, s, c * CHUNK, chunk, rows));
    });
    if let (Put::Write, Some(valid)) = (put, valid) {
        out.par_chunks_mut(CHUNK * s).zip(valid.par_chunks(CHUNK * s)).for_each(|(o, m)| {
            for (x, &mj) in o.iter_mut().zip(m) {
                if mj & FREE == 0 {
                    *x = F::ZERO;
                }
            }
        });
    }
}

/// How a chunk of `v·MT` puts its rows: as [`Put`] says, subtracting only where `valid` (the
/// chunk's part of the mask) is set when there is one.
#[derive(Clone, Copy)]
struct MtRows<'a> {
    put: Put,
    valid: Option<&'a [u8]>,
}

impl MtRows<'_> {
    /// Puts the sums `acc` of the chunk's row `di` into `o`.
    #[inline(always)]
    fn row<F: Real>(&self, o: &mut [F], acc: &[F], di: usize) {
        match (self.put, self.valid) {
            (Put::Write, _) => o.copy_from_slice(acc),
            (Put::Subtract, None) => o.iter_mut().zip(acc).for_each(|(x, &a)| *x -= a),
            (Put::Subtract, Some(m)) => {
                let m = &m[di * o.len()..][..o.len()];
                for ((x, &a), &mj) in o.iter_mut().zip(acc).zip(m) {
                    *x -= if mj & FREE != 0 { a } else { F::ZERO };
                }
            }
        }
    }
}

fn mt_chunk<F: Real, const S: usize>(
    l: &SampleLinks<F>,
    v: &[F],
    _s: usize,
    i0: usize,
    chunk: &mut [F],
    rows: MtRows<'_>,
) {
    let npt = l.npt;
    // narrow rows: LANES samples at a time, their sums interleaved (each still in its slots' order),
    // so that the additions of one sample do not wait for each other's latency
    let head = if S <= 2 { chunk.len() / S / LANES * LANES } else { 0 };
    for d0 in (0..head).step_by(LANES) {
        let mut acc = [[F::ZERO; S]; LANES];
        for t in 0..npt {
            for (q, aq) in acc.iter_mut().enumerate() {
                let at = (i0 + d0 + q) * npt + t;
                let h = l.hi[at];
                if h >= 0 {
                    let vk: &[F; S] = v[h as usize * S..(h as usize + 1) * S].try_into().expect("S values");
                    for j in 0..S {
                        aq[j] += l.mt[at] * vk[j];
                    }
                }
            }
        }
        for (q, aq) in acc.iter().enumerate() {
            rows.row(&mut chunk[(d0 + q) * S..(d0 + q + 1) * S], aq, d0 + q);
        }
    }
    for (di, o) in chunk.chunks_exact_mut(S).enumerate().skip(head) {
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
        rows.row(o, &acc, di);
    }
}

#[inline(always)]
fn mt_chunk_dyn<F: Real>(l: &SampleLinks<F>, v: &[F], s: usize, i0: usize, chunk: &mut [F], rows: MtRows<'_>) {
    let npt = l.npt;
    let mut acc = vec![F::ZERO; s];
    for (di, o) in chunk.chunks_exact_mut(s).enumerate() {
        let i = (i0 + di) * npt;
        if let Some(ahead) = l.hi.get(i + AHEAD * npt..i + (AHEAD + 1) * npt) {
            prefetch_rows(v, s, ahead.iter().filter(|&&h| h >= 0).map(|&h| h as usize));
        }
        let links = l.hi[i..i + npt].iter().zip(&l.mt[i..i + npt]).filter(|(&h, _)| h >= 0);
        weighted_rows(v, s, links.map(|(&h, &w)| (h as usize, w)), &mut acc);
        rows.row(o, &acc, di);
    }
}

/// `o = Σ w·x[i]` over the links (i, w), in their order, of rows of s values of the block `x`: tiles
/// of 128 bytes summed in registers (2·[`TILE`] columns of f32, [`TILE`] of f64; each link's part
/// of a row read once per tile: tiles of 16 f32 columns made B = 64 products 12–16 % slower), then
/// a tile of [`TILE`] columns where one fits, then the last columns in one tile of their width (each
/// element's sum is the same either way: its links in order, from zero).
#[inline(always)]
fn weighted_rows<F: Real, I: Iterator<Item = (usize, F)> + Clone>(x: &[F], s: usize, links: I, o: &mut [F]) {
    let mut tiles = 0;
    if std::mem::size_of::<F>() == 4 {
        while tiles + 2 * TILE <= s {
            weighted_tile::<F, { 2 * TILE }, I>(x, s, tiles, links.clone(), o);
            tiles += 2 * TILE;
        }
    }
    while tiles + TILE <= s {
        weighted_tile::<F, TILE, I>(x, s, tiles, links.clone(), o);
        tiles += TILE;
    }
    macro_rules! last_tile {
        ($($w:literal)*) => {
            match s - tiles {
                $($w => weighted_tile::<F, $w, I>(x, s, tiles, links, o),)*
                _ => {}
            }
        };
    }
    last_tile!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
}

/// Columns `t0..t0 + W` of [`weighted_rows`], summed in registers.
#[inline(always)]
fn weighted_tile<F: Real, const W: usize, I: Iterator<Item = (usize, F)>>(
    x: &[F],
    s: usize,
    t0: usize,
    links: I,
    o: &mut [F],
) {
    let mut a = [F::ZERO; W];
    for (i, w) in links {
        let xi: &[F; W] = x[i * s + t0..][..W].try_into().expect("W values");
        for j in 0..W {
            a[j] += w * xi[j];
        }
    }
    o[t0..t0 + W].copy_from_slice(&a);
}

/// Optional parts of a `u·M` product: `+ lam·v`, and the weighted dots `Σ_k out[k,j]·p[k,j]·w[k]`.
#[derive(Clone, Copy)]
pub(crate) struct MExtras<'a, F> {
    /// Adds `lam·v` (K×s) to the product.
    pub add: Option<(F, &'a [F])>,
    /// Returns the per-row dots of the result with `p` (K×s; `None`: the result itself) weighted
    /// by `w` (K).
    pub dot_with: Option<(Option<&'a [F]>, &'a [F])>,
}

/// `out (K×s) = u (N×s) · M` (+ the extras), each cell gathering its linked samples. Returns the
/// per-row dots asked for in `extras` (empty otherwise), summed in the tree of [`reduce`].
pub(crate) fn m_product<F: Real>(
    l: &CellLinks<F>,
    u: &[F],
    s: usize,
    out: &mut [F],
    extras: MExtras<'_, F>,
) -> Vec<f64> {
    let (add, dots) = (extras.add, extras.dot_with);
    let chunks = out.par_chunks_mut(CHUNK * s).enumerate().map(|(c, chunk)| {
        let k0 = c * CHUNK;
        if dots.is_none() {
            dispatch_rows!(s, m_chunk, m_chunk_dyn, (l, u, s, k0, chunk, add, None, &mut []));
            return Vec::new();
        }
        reduce::chunk_sums(chunk.len() / s, s, |r0, n, terms| {
            let rows = &mut chunk[r0 * s..(r0 + n) * s];
            dispatch_rows!(s, m_chunk, m_chunk_dyn, (l, u, s, k0 + r0, rows, add, dots, terms));
        })
    });
    let chunks: Vec<Vec<f64>> = chunks.collect();
    if dots.is_some() {
        reduce::total(chunks, s)
    } else {
        Vec::new()
    }
}

/// Rows k0.. of `u·M` (+ lam·v) into `chunk`; with `dots` = (p, w), the terms `out·p·w` (in f64, in
/// that order) of the rows into `terms`, summed per quad of rows (blocks of four cells at a time;
/// the last cells by the general version).
#[allow(clippy::too_many_arguments)]
fn m_chunk<F: Real, const S: usize>(
    l: &CellLinks<F>,
    u: &[F],
    _s: usize,
    k0: usize,
    chunk: &mut [F],
    add: Option<(F, &[F])>,
    dots: Option<(Option<&[F]>, &[F])>,
    terms: &mut [f64],
) {
    let Some((p, dx)) = dots else {
        for (dk, o) in chunk.chunks_exact_mut(S).enumerate() {
            o.copy_from_slice(&m_row::<F, S>(l, u, k0 + dk, add));
        }
        return;
    };
    let block = reduce::FOLD * S;
    let full = chunk.len() / block;
    let (head, tail) = chunk.split_at_mut(full * block);
    let (terms, terms_tail) = terms.split_at_mut(full * S);
    for (b, (ob, o)) in head.chunks_exact_mut(block).zip(terms.chunks_exact_mut(S)).enumerate() {
        let mut t = [[0.0f64; S]; 4];
        for (q, tq) in t.iter_mut().enumerate() {
            let k = k0 + b * reduce::FOLD + q;
            let acc = m_row::<F, S>(l, u, k, add);
            let wk = dx[k].to_f64();
            for j in 0..S {
                let pj = p.map_or(acc[j], |p| p[k * S + j]);
                tq[j] = acc[j].to_f64() * pj.to_f64() * wk;
            }
            ob[q * S..(q + 1) * S].copy_from_slice(&acc);
        }
        for j in 0..S {
            o[j] = (t[0][j] + t[1][j]) + (t[2][j] + t[3][j]);
        }
    }
    m_chunk_dyn(l, u, S, k0 + full * reduce::FOLD, tail, add, dots, terms_tail);
}

/// Row k of `u·M` (+ lam·v) for S columns: the cell's links in order, each product rounded before
/// it is added.
#[inline(always)]
fn m_row<F: Real, const S: usize>(l: &CellLinks<F>, u: &[F], k: usize, add: Option<(F, &[F])>) -> [F; S] {
    let mut acc = [F::ZERO; S];
    for p in l.ptr[k]..l.ptr[k + 1] {
        let w = l.m[p];
        let i = l.sample[p] as usize;
        let ui: &[F; S] = u[i * S..(i + 1) * S].try_into().expect("S values");
        for j in 0..S {
            acc[j] += w * ui[j];
        }
    }
    if let Some((lam, v)) = add {
        for j in 0..S {
            acc[j] += lam * v[k * S + j];
        }
    }
    acc
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn m_chunk_dyn<F: Real>(
    l: &CellLinks<F>,
    u: &[F],
    s: usize,
    k0: usize,
    chunk: &mut [F],
    add: Option<(F, &[F])>,
    dots: Option<(Option<&[F]>, &[F])>,
    terms: &mut [f64],
) {
    let mut quads = dots.is_some().then(|| reduce::Quads::new(s, terms));
    for (dk, o) in chunk.chunks_exact_mut(s).enumerate() {
        let k = k0 + dk;
        if k + AHEAD + 1 < l.ptr.len() {
            let ahead = l.ptr[k + AHEAD]..l.ptr[k + AHEAD + 1];
            prefetch_rows(u, s, l.sample[ahead].iter().map(|&i| i as usize));
        }
        let links = l.sample[l.ptr[k]..l.ptr[k + 1]].iter().zip(&l.m[l.ptr[k]..l.ptr[k + 1]]);
        weighted_rows(u, s, links.map(|(&i, &w)| (i as usize, w)), o);
        if let Some((lam, v)) = add {
            for (a, &b) in o.iter_mut().zip(&v[k * s..(k + 1) * s]) {
                *a += lam * b;
            }
        }
        if let (Some((p, dx)), Some(q)) = (dots, quads.as_mut()) {
            let wk = dx[k].to_f64();
            let p = p.map_or(&o[..], |p| &p[k * s..(k + 1) * s]);
            for ((t, &a), &b) in q.row().iter_mut().zip(o.iter()).zip(p) {
                *t = a.to_f64() * b.to_f64() * wk;
            }
        }
    }
    if let Some(q) = quads {
        q.finish();
    }
}

/// The terms `a·b·w` (in f64, in that order; b, w = 1 when absent, w empty = absent) of rows of s
/// columns into `terms`, where `mask` (bit 0) is set (+0.0 elsewhere); `w` from the rows' first.
fn weighted_terms<F: Real>(a: &[F], b: Option<&[F]>, w: &[F], mask: Option<&[u8]>, s: usize, terms: &mut [f64]) {
    let mut quads = reduce::Quads::new(s, terms);
    for (r, ra) in a.chunks_exact(s).enumerate() {
        let wk = if w.is_empty() { 1.0 } else { w[r].to_f64() };
        let t = quads.row();
        match (b, mask) {
            (Some(b), None) => {
                for ((t, &x), &y) in t.iter_mut().zip(ra).zip(&b[r * s..(r + 1) * s]) {
                    *t = x.to_f64() * y.to_f64() * wk;
                }
            }
            _ => {
                for (j, (t, &x)) in t.iter_mut().zip(ra).enumerate() {
                    let e = r * s + j;
                    *t = if mask.is_none_or(|m| m[e] & FREE != 0) {
                        x.to_f64() * b.map_or(1.0, |b| b[e].to_f64()) * wk
                    } else {
                        0.0
                    };
                }
            }
        }
    }
    quads.finish();
}

/// Per-row dot products `Σ_k a[k,j]·b[k,j]·w[k]·mask[k,j]` of E×s blocks (b, w = 1 and every
/// element counted when absent; the terms are formed as `a·b·w` in f64), in the tree of [`reduce`].
pub(crate) fn dots<F: Real>(a: &[F], b: Option<&[F]>, s: usize, w: Option<&[F]>, mask: Option<&[u8]>) -> Vec<f64> {
    let chunks: Vec<Vec<f64>> = a
        .par_chunks(CHUNK * s)
        .enumerate()
        .map(|(c, ca)| {
            let k0 = c * CHUNK;
            reduce::chunk_sums(ca.len() / s, s, |r0, n, terms| {
                let (at, len) = ((k0 + r0) * s, n * s);
                let wk = w.map_or(&[][..], |w| &w[k0 + r0..]);
                let (cb, cm) = (b.map(|b| &b[at..at + len]), mask.map(|m| &m[at..at + len]));
                weighted_terms(&a[at..at + len], cb, wk, cm, s, terms);
            })
        })
        .collect();
    reduce::total(chunks, s)
}

/// The CG update `x += α p; r −= α ap` (per row α), returning the new `<r, r>_w` per row (in the
/// tree of [`reduce`]).
pub(crate) fn cg_update<F: Real>(x: &mut [F], r: &mut [F], p: &[F], ap: &[F], alpha: &[F], w: &[F]) -> Vec<f64> {
    let s = alpha.len();
    let chunks: Vec<Vec<f64>> = x
        .par_chunks_mut(CHUNK * s)
        .zip(r.par_chunks_mut(CHUNK * s))
        .zip(p.par_chunks(CHUNK * s).zip(ap.par_chunks(CHUNK * s)))
        .enumerate()
        .map(|(c, ((cx, cr), (cp, cap)))| {
            let w = &w[c * CHUNK..];
            reduce::chunk_sums(cx.len() / s, s, |r0, n, terms| {
                let at = r0 * s..(r0 + n) * s;
                let (x, r, p, ap) = (&mut cx[at.clone()], &mut cr[at.clone()], &cp[at.clone()], &cap[at]);
                dispatch_rows!(s, update_chunk, update_chunk_dyn, (x, r, p, ap, alpha, &w[r0..], terms))
            })
        })
        .collect();
    reduce::total(chunks, s)
}

/// Updates rows of x and r and writes the terms `r²·w` of `<r, r>_w`, summed per quad of rows
/// (blocks of four rows at a time, so that the loop stays a vector loop; the last rows by the
/// general version).
fn update_chunk<F: Real, const S: usize>(
    x: &mut [F],
    r: &mut [F],
    p: &[F],
    ap: &[F],
    alpha: &[F],
    w: &[F],
    terms: &mut [f64],
) {
    let alpha: &[F; S] = alpha.try_into().expect("S values");
    let block = reduce::FOLD * S;
    let full = x.len() / block;
    let (x, x_tail) = x.split_at_mut(full * block);
    let (r, r_tail) = r.split_at_mut(full * block);
    let (terms, terms_tail) = terms.split_at_mut(full * S);
    for (((((bx, br), bp), bap), bw), o) in x
        .chunks_exact_mut(block)
        .zip(r.chunks_exact_mut(block))
        .zip(p.chunks_exact(block))
        .zip(ap.chunks_exact(block))
        .zip(w.chunks_exact(reduce::FOLD))
        .zip(terms.chunks_exact_mut(S))
    {
        let mut t = [[0.0f64; S]; 4];
        let rows = bx.chunks_exact_mut(S).zip(br.chunks_exact_mut(S)).zip(bp.chunks_exact(S)).zip(bap.chunks_exact(S));
        for ((((rx, rr), rp), rap), (tq, &wk)) in rows.zip(t.iter_mut().zip(bw)) {
            let wk = wk.to_f64();
            for j in 0..S {
                rx[j] += alpha[j] * rp[j];
                rr[j] -= alpha[j] * rap[j];
                let v = rr[j].to_f64();
                tq[j] = v * v * wk;
            }
        }
        for j in 0..S {
            o[j] = (t[0][j] + t[1][j]) + (t[2][j] + t[3][j]);
        }
    }
    let at = full * block;
    update_chunk_dyn(x_tail, r_tail, &p[at..], &ap[at..], alpha, &w[full * reduce::FOLD..], terms_tail);
}

#[inline(always)]
fn update_chunk_dyn<F: Real>(x: &mut [F], r: &mut [F], p: &[F], ap: &[F], alpha: &[F], w: &[F], terms: &mut [f64]) {
    let s = alpha.len();
    let mut quads = reduce::Quads::new(s, terms);
    for ((((rx, rr), rp), rap), &wk) in
        x.chunks_exact_mut(s).zip(r.chunks_exact_mut(s)).zip(p.chunks_exact(s)).zip(ap.chunks_exact(s)).zip(w)
    {
        let wk = wk.to_f64();
        let t = quads.row();
        for j in 0..s {
            rx[j] += alpha[j] * rp[j];
            rr[j] -= alpha[j] * rap[j];
            let v = rr[j].to_f64();
            t[j] = v * v * wk;
        }
    }
    quads.finish();
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

#[inline(always)]
fn direction_chunk_dyn<F: Real>(p: &mut [F], r: &[F], beta: &[F]) {
    let s = beta.len();
    for (rp, rr) in p.chunks_exact_mut(s).zip(r.chunks_exact(s)) {
        for j in 0..s {
            rp[j] = rr[j] + beta[j] * rp[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LEFT_OUT;

    /// The bits of the tree's sums of terms (K×s), as `reduce`'s tests define them.
    fn tree(terms: &[f64], rows: usize, s: usize) -> Vec<u64> {
        reduce::tests::reference(terms, rows, s).iter().map(|v| v.to_bits()).collect()
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        reduce::tests::terms(n, seed, 2).into_iter().map(|x| x as f32).collect()
    }

    /// Both products sum each element's links in their order, whatever the batch-size variant
    /// (interleaved narrow rows, tiles of wide ones, the rest) and instruction set (wide rows:
    /// AVX2 where the processor has it, and the baseline code): bit for bit a plain loop's sums.
    /// And `out −= v·MT` (masked or not) equals the product written into a block and subtracted by
    /// `axpby`.
    #[test]
    fn products_sum_links_in_order_and_subtracting_rounds_as_axpby() {
        if !simd::tests::has_avx2() {
            println!("NOTE: no AVX2 here: the wide kernels' AVX2 code is not exercised");
        }
        products_in_order();
        simd::tests::baseline(products_in_order);
    }

    fn products_in_order() {
        let (n, k, npt) = (3001usize, 700usize, 5usize);
        let hi: Vec<i32> = (0..n * npt).map(|p| if p % 7 == 3 { -1 } else { ((p * 131) % k) as i32 }).collect();
        let links = SampleLinks { npt, hi, mt: values(n * npt, 8) };
        // cells with 0 to 40 links each, ascending samples
        let mut cells = CellLinks { ptr: vec![0], sample: vec![], m: vec![] };
        for c in 0..k {
            cells.sample.extend((0..(c * 17) % 41).map(|t| ((c * 3 + t * 7) % n) as u32));
            cells.ptr.push(cells.sample.len());
        }
        cells.m = values(cells.sample.len(), 11);
        let cpu = Cpu { samples: &links, cells: &cells, dx: &[], ranks: None, pool: None };
        for &s in &[1usize, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17, 23, 31, 32, 33, 48, 50, 64] {
            let (v, y) = (values(k * s, 9), values(n * s, 10));
            let mut want = vec![0.0f32; n * s];
            for i in 0..n {
                for t in (0..npt).filter(|&t| links.hi[i * npt + t] >= 0) {
                    let (h, w) = (links.hi[i * npt + t] as usize, links.mt[i * npt + t]);
                    (0..s).for_each(|j| want[i * s + j] += w * v[h * s + j]);
                }
            }
            let mut got = vec![0.0f32; n * s];
            mt_product(&links, &v, s, &mut got, None, Put::Write);
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "v·MT s {s}");
            let mut want = vec![0.0f32; k * s];
            for c in 0..k {
                for p in cells.ptr[c]..cells.ptr[c + 1] {
                    let (i, w) = (cells.sample[p] as usize, cells.m[p]);
                    (0..s).for_each(|j| want[c * s + j] += w * y[i * s + j]);
                }
            }
            let mut got = vec![0.0f32; k * s];
            m_product(&cells, &y, s, &mut got, MExtras { add: None, dot_with: None });
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "u·M s {s}");

            let valid: Vec<u8> = (0..n * s).map(|e| (e % 3 != 1) as u8).collect();
            for mask in [None, Some(&valid[..])] {
                let mut t = vec![0.0f32; n * s];
                mt_product(&links, &v, s, &mut t, mask, Put::Write);
                let mut want = Block::new(y.clone(), None);
                cpu.axpby(&mut want, &vec![-1.0; s], &Block::new(t, None), 1.0).expect("host");
                let mut got = y.clone();
                mt_product(&links, &v, s, &mut got, mask, Put::Subtract);
                let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "s {s} mask {}", mask.is_some());
            }
        }
    }

    /// dots, the CG update's <r, r>_w and u·M's <out, p>_Dx sum their terms in the tree, for every
    /// batch-size variant (wide ones in both instruction sets) and lengths that end in partial
    /// quads, groups and chunks; the direction is `r + β·p`.
    #[test]
    fn the_reductions_add_their_terms_in_the_tree() {
        reductions_in_tree();
        simd::tests::baseline(reductions_in_tree);
    }

    fn reductions_in_tree() {
        for &s in &[1usize, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 40] {
            for &k in &[1usize, 5, 4099, 9 * CHUNK + 3] {
                let (a, b, w) = (values(k * s, 1), values(k * s, 2), values(k, 3));
                let mask: Vec<u8> = (0..k * s).map(|e| (e % 5 != 2) as u8).collect();
                let terms: Vec<f64> = (0..k * s)
                    .map(|e| if mask[e] & FREE != 0 { a[e] as f64 * b[e] as f64 * w[e / s] as f64 } else { 0.0 })
                    .collect();
                let got = dots(&a, Some(&b), s, Some(&w), Some(&mask));
                assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), tree(&terms, k, s), "dots s {s} k {k}");

                // the update: r − α·ap, then r²·w
                let alpha = values(s, 4);
                let (mut x, mut r) = (a.clone(), b.clone());
                let (p, ap) = (values(k * s, 5), values(k * s, 6));
                let got = cg_update(&mut x, &mut r, &p, &ap, &alpha, &w);
                let terms: Vec<f64> =
                    r.iter().enumerate().map(|(e, &v)| v as f64 * v as f64 * w[e / s] as f64).collect();
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    tree(&terms, k, s),
                    "update s {s} k {k}"
                );
                assert!(r.iter().zip(&b).zip(&ap).enumerate().all(|(e, ((&r, &b), &ap))| r == b - alpha[e % s] * ap));
                let mut d = p.clone();
                cg_direction(&mut d, &r, &alpha);
                assert!(d.iter().zip(&r).zip(&p).enumerate().all(|(e, ((&d, &r), &p))| d == r + alpha[e % s] * p));

                // u·M + λp with one link per cell (sample = cell), then <out, p>_w
                let cells = CellLinks { ptr: (0..=k).collect(), sample: (0..k as u32).collect(), m: values(k, 7) };
                let mut out = vec![0.0f32; k * s];
                let ex = MExtras { add: Some((0.5, &p[..])), dot_with: Some((Some(&p[..]), &w[..])) };
                let got = m_product(&cells, &a, s, &mut out, ex);
                let terms: Vec<f64> =
                    out.iter().enumerate().map(|(e, &o)| o as f64 * p[e] as f64 * w[e / s] as f64).collect();
                assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), tree(&terms, k, s), "u·M s {s} k {k}");
                // <out, out>_w summed as out is made: the bits of dots
                let mut own = vec![0.0f32; k * s];
                let got = m_product(&cells, &a, s, &mut own, MExtras { add: None, dot_with: Some((None, &w[..])) });
                let want = dots(&own, Some(&own), s, Some(&w), None);
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "own s {s} k {k}"
                );
            }
        }
    }

    /// The fused scaling of the CPU's gather and scatter against the two steps it replaces, bit
    /// for bit: both axes, a row without data (factor 1), NaN made 0, zeros of both signs.
    #[test]
    fn scaled_layouts_are_the_two_steps() {
        let (n, k) = (1003usize, 257usize);
        let links = SampleLinks { npt: 1, hi: vec![0; n], mt: vec![0.0f32; n] };
        let cells = CellLinks { ptr: vec![0; k + 1], sample: vec![], m: vec![] };
        let pool = Pool::new();
        let cpu = Cpu { samples: &links, cells: &cells, dx: &[], ranks: None, pool: Some(&pool) };
        let order: Vec<u32> = (0..n as u32).rev().filter(|i| i % 9 != 4).collect();
        let mut position = vec![LEFT_OUT; n];
        for (p, &i) in order.iter().enumerate() {
            position[i as usize] = p as u32;
        }
        let axes = [(Axis::Samples { order: &order, position: &position }, n), (Axis::Cells(k), k)];
        for (axis, width) in axes {
            for s in [1usize, 3, 6, 64] {
                let mut v: Vec<f32> = values(width * s, 12).iter().map(|x| x * 3.0e3).collect();
                v.iter_mut().step_by(13).for_each(|x| *x = f32::NAN);
                v.iter_mut().skip(5).step_by(17).for_each(|x| *x = -0.0);
                v[..width].iter_mut().for_each(|x| *x = f32::NAN); // row 0: no data
                let factors = |f: &[RowFacts]| -> Vec<f32> {
                    f.iter().map(|f| if f.max_abs() > 0.0 { 0.25 } else { 1.0 }).collect()
                };
                let mut two = cpu.gather(&v, s, axis, true, true).expect("host");
                cpu.scale_columns(&mut two.vals, &factors(&two.facts)).expect("host");
                let one = cpu.gather_scaled(&v, s, axis, true, true, &factors).expect("host");
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&one.vals), bits(&two.vals), "gather, s {s}");
                assert_eq!(one.valid, two.valid);
                let c: Vec<f32> = (0..s).map(|j| [4.0, 0.5, 1.0][j % 3]).collect();
                let mut scaled = cpu.duplicate(&one.vals, one.vals.len()).expect("host");
                cpu.scale_columns(&mut scaled, &c).expect("host");
                let two = cpu.scatter(&scaled, s, axis).expect("host");
                let one = cpu.scatter_scaled(one.vals, s, axis, &c).expect("host");
                assert_eq!(bits(&one), bits(&two), "scatter, s {s}");
            }
        }
    }
}
