//! Compute backends: where an operator's links live and the solver's primitives run.
//!
//! [`Backend`] is the seam. The solver (`crate::solver`: one conjugate gradient, the active-set and
//! conservation layers, per-row missing data) is written once, generically over it; a backend only
//! stores blocks of values and performs whole-array operations on them — the two products, per-row
//! weighted dot products, the fused CG update and direction, masks, and the rules of
//! `csrc/rules.h` (the CG's per-column scalar step and the element rules of the active set), which
//! every backend compiles from the same source.
//!
//! * [`cpu`] — the reference for every other backend: rayon over the host copy of the operator.
//! * `cuda` (feature `cuda`) — cudarc device buffers and the kernels of `csrc/`, launched through
//!   wrappers that check every length first; no algorithm of its own.
//!
//! A new backend is a module here implementing [`Backend`], a variant of [`Placed`] (where an
//! operator lives) and of [`Target`] (the opened device), and its arms in [`with_backend!`] and
//! [`open`]: `cfg(feature = …)` appears in this module tree only.
//!
//! Blocks hold s columns (the rows of a batch) interleaved: element (e, j) of an E×s block is at
//! `e·s + j`, so that each link gathers s contiguous values.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub(crate) mod layout;
pub(crate) mod pages;
pub(crate) mod reduce;
pub(crate) mod simd;

use crate::error::{Error, Result};
use crate::real::Real;
use std::ffi::c_void;

/// Whether the switch `var` of the environment is on: unset or anything but `0` (the CPU's
/// `HPSF_HUGE_PAGES` and `HPSF_SIMD`, read once each).
fn switched_on(var: &str) -> bool {
    std::env::var(var).map_or(true, |v| v.trim() != "0")
}

/// Factors of the columns of a gathered block, chosen from what its rows hold (see
/// [`Backend::gather_scaled`]): the facts as gathered and combined over the ranks, before a zero
/// extreme is made +0, so the factors must not depend on the sign of a zero.
pub(crate) type Scales<'a, F> = dyn Fn(&[RowFacts]) -> Vec<F> + 'a;

/// The solver's primitives on one operator (the links by sample holding `MT`, the links by cell
/// holding `M`, and `Dx`). Every method is a whole-array operation; those returning host values
/// (`dots`, `max_abs`, `box_rule`, `cg_read`, `download*`) wait for the backend, the others may
/// run asynchronously (a GPU backend only enqueues them).
pub(crate) trait Backend<F: Real>: Sync {
    /// An E×s block of values.
    type Vals: Send;
    /// An E×s block of bytes: a valid-sample mask (bit 0 = valid) or the cell codes of
    /// `csrc/rules.h` (bit 0 = free, [`HELD_LOW`], [`HELD_HIGH`]; 0 = not part of the problem).
    type Mask: Send;
    /// The scalars of a running CG, where the kernels read and write them.
    type Scalars;

    /// Samples the operator is built from.
    fn n(&self) -> usize;
    /// Cells (the length of a block on cells).
    fn k(&self) -> usize;
    /// Cells of the whole problem: [`Backend::k`] in one process, the sum over the ranks on one
    /// rank of several (the count a conservation target and a loop bound take, equal on every rank).
    fn k_total(&self) -> usize;
    /// CG iterations between two looks at its scalars from the host (1 = every iteration).
    fn poll_every(&self) -> usize;

    /// A block of `len` zeros.
    fn zeros(&self, len: usize) -> Result<Self::Vals>;
    /// `dst = src` (same lengths).
    fn copy_into(&self, dst: &mut Self::Vals, src: &Self::Vals) -> Result<()>;
    /// A block of `len` values whose values nothing uses before the next product writes it
    /// entirely: zeros by default (on the CPU calloc's zeros, the pages made by the threads' first
    /// writes).
    fn output(&self, len: usize) -> Result<Self::Vals> {
        self.zeros(len)
    }
    /// A copy of the block `v` of `len` values.
    fn duplicate(&self, v: &Self::Vals, len: usize) -> Result<Self::Vals> {
        let mut d = self.zeros(len)?;
        self.copy_into(&mut d, v)?;
        Ok(d)
    }
    /// A mask holding `m`.
    fn upload_mask(&self, m: Vec<u8>) -> Result<Self::Mask>;
    /// The bytes of a mask.
    fn download_mask(&self, m: &Self::Mask) -> Result<Vec<u8>>;
    /// The s rows of `v` (row-major, as the caller holds them: s rows of `axis.width()` values; a
    /// width of 0, a rank of several that owns no cell, holds s empty rows) as
    /// an E×s block on `axis` (E = `axis.elements()`), NaN → 0 with `zero_nan`; with `mask`, also
    /// the mask of the values that are not NaN (bit 0), which a backend may leave out (`None`)
    /// when no row holds a NaN (on any rank); and per row what the gathered values hold.
    fn gather(
        &self,
        v: &[F],
        s: usize,
        axis: Axis<'_>,
        zero_nan: bool,
        mask: bool,
    ) -> Result<Gathered<Self::Vals, Self::Mask>>;
    /// [`Backend::gather`], then column j multiplied by `scale(facts)[j]` (factors chosen from what
    /// the rows hold, every rank's rows combined): in the gather's own pass where the backend can,
    /// with the bits of the two steps.
    fn gather_scaled(
        &self,
        v: &[F],
        s: usize,
        axis: Axis<'_>,
        zero_nan: bool,
        mask: bool,
        scale: &Scales<'_, F>,
    ) -> Result<Gathered<Self::Vals, Self::Mask>> {
        let mut g = self.gather(v, s, axis, zero_nan, mask)?;
        self.scale_columns(&mut g.vals, &scale(&g.facts))?;
        Ok(g)
    }
    /// An E×s block on `axis` as s rows in the caller's layout (NaN for the samples left out).
    fn scatter(&self, x: &Self::Vals, s: usize, axis: Axis<'_>) -> Result<Vec<F>>;
    /// `x` with column j multiplied by `c[j]`, then [`Backend::scatter`]ed: in one pass where the
    /// backend can, with the bits of the two steps.
    fn scatter_scaled(&self, mut x: Self::Vals, s: usize, axis: Axis<'_>, c: &[F]) -> Result<Vec<F>> {
        self.scale_columns(&mut x, c)?;
        self.scatter(&x, s, axis)
    }
    /// `v[e, j] ·= c[j]` (c.len() = s).
    fn scale_columns(&self, v: &mut Self::Vals, c: &[F]) -> Result<()>;
    /// The mask as values: 1 where bit 0 is set, else 0.
    fn mask_values(&self, m: &Self::Mask) -> Result<Self::Vals>;
    /// `v = fill` where the mask's bit 0 is clear.
    fn fill_masked(&self, v: &mut Self::Vals, m: &Self::Mask, fill: F) -> Result<()>;
    /// The columns `cols` of an E×s block, as an E×|cols| block.
    fn select(&self, v: &Self::Vals, s: usize, cols: &[usize]) -> Result<Self::Vals>;
    /// The columns `cols` of an E×s mask.
    fn select_mask(&self, m: &Self::Mask, s: usize, cols: &[usize]) -> Result<Self::Mask>;
    /// Column `from` of the E×m block `src` into column `to` of the E×t block `dst`, for each pair.
    fn put_columns(
        &self,
        dst: &mut Self::Vals,
        t: usize,
        src: &Self::Vals,
        m: usize,
        pairs: &[(usize, usize)],
    ) -> Result<()>;

    /// `out (N×s) = (v (K×s)·MT) ⊙ valid`; skipped once the CG `cg` is done.
    fn mt(
        &self,
        v: &Self::Vals,
        s: usize,
        out: &mut Self::Vals,
        valid: Option<&Self::Mask>,
        cg: Option<&Self::Scalars>,
    ) -> Result<()>;
    /// `y (N×s) −= (v (K×s)·MT) ⊙ valid`, each element rounded as `mt` into a block `t` then
    /// `axpby(y, −1, t, 1)` would (that is the default; a backend may fuse it).
    fn mt_sub(&self, v: &Self::Vals, s: usize, y: &mut Self::Vals, valid: Option<&Self::Mask>) -> Result<()> {
        let mut t = self.output(self.n() * s)?;
        self.mt(v, s, &mut t, valid, None)?;
        self.axpby(y, &vec![-F::ONE; s], &t, F::ONE)
    }
    /// `out (K×s) = u (N×s)·M + lam·add`. With `den` (and `add`): skipped once that CG is done, and
    /// `<out, add>_Dx` per column is written as its `den`.
    fn m(
        &self,
        u: &Self::Vals,
        s: usize,
        out: &mut Self::Vals,
        add: Option<(F, &Self::Vals)>,
        den: Option<&mut Self::Scalars>,
    ) -> Result<()>;

    /// `out = u·M` (as [`Backend::m`]) and per column `<out, out>_Dx`, the bits of
    /// [`Backend::dots`]`(out, out, weighted)`: on the CPU summed as the rows are made (one pass over
    /// a K×s block less in a fit's setup).
    fn m_norms(&self, u: &Self::Vals, s: usize, out: &mut Self::Vals) -> Result<Vec<f64>> {
        self.m(u, s, out, None, None)?;
        self.dots(out, Some(out), s, true, None)
    }

    /// Per column `Σ_e a·b·Dx_k·mask` (b = 1 when `None`, Dx = 1 unless `weighted`, mask bit 0 = 1
    /// when `None`), in f64, in an order that depends on the sizes only.
    fn dots(
        &self,
        a: &Self::Vals,
        b: Option<&Self::Vals>,
        s: usize,
        weighted: bool,
        mask: Option<&Self::Mask>,
    ) -> Result<Vec<f64>>;
    /// Per column the largest |value|.
    fn max_abs(&self, v: &Self::Vals, s: usize) -> Result<Vec<f64>>;

    /// `y = a_j·x + b·y` (a per column, `a.len()` = s).
    fn axpby(&self, y: &mut Self::Vals, a: &[F], x: &Self::Vals, b: F) -> Result<()>;
    /// `v = v·(mask bit 0)`.
    fn mul_mask(&self, v: &mut Self::Vals, mask: &Self::Mask) -> Result<()>;
    /// Per-row missing data: in the columns j with `rows[j]`, `x = x / w` where w ≠ 0 and 0 where
    /// w = 0 (x, w: K×s). Returns the cell codes: free, but 0 where such a column has w = 0.
    fn renormalise(&self, x: &mut Self::Vals, w: &Self::Vals, rows: &[bool]) -> Result<Self::Mask>;
    /// `1/Dx` per cell (0 where Dx = 0), K×1.
    fn reciprocal_dx(&self) -> Result<Self::Vals>;
    /// `scale·src` (K×1) in each of s columns, 0 where `codes` (K×s) has bit 0 clear.
    fn broadcast(&self, src: &Self::Vals, s: usize, scale: F, codes: Option<&Self::Mask>) -> Result<Self::Vals>;

    /// Applies a rule of the box of a bounded fit (`csrc/rules.h`) to every element; returns the
    /// number of elements it counted (0 for the rules that count nothing).
    fn box_rule(&self, rule: BoxRule<'_, F, Self::Vals, Self::Mask>) -> Result<u64>;

    /// The scalars of a new CG.
    fn cg_start(&self, init: &CgInit) -> Result<Self::Scalars>;
    /// Its state, read on the host.
    fn cg_read(&self, c: &Self::Scalars) -> Result<CgSnapshot>;
    /// The rule after the product: breakdown test and α.
    fn cg_alpha(&self, c: &mut Self::Scalars) -> Result<()>;
    /// `x += α p; r −= α Ap`, writing `<r, r>_Dx` as the scalars' `rs_new`.
    fn cg_update(
        &self,
        x: &mut Self::Vals,
        r: &mut Self::Vals,
        p: &Self::Vals,
        ap: &Self::Vals,
        c: &mut Self::Scalars,
    ) -> Result<()>;
    /// The rule after the update: count, record, stop, β.
    fn cg_beta(&self, c: &mut Self::Scalars) -> Result<()>;
    /// `p = r + β p`.
    fn cg_direction(&self, p: &mut Self::Vals, r: &Self::Vals, c: &Self::Scalars) -> Result<()>;
    /// Runs `body`, one iteration of the CG of `c`, `times` times. `body` makes the same launches
    /// on the same blocks every time and reads nothing back, so a GPU may record it once and
    /// replay the record (the CUDA backend does, as a graph); others just run it.
    fn cg_repeat(
        &self,
        c: &mut Self::Scalars,
        times: usize,
        body: &mut dyn FnMut(&mut Self::Scalars) -> Result<()>,
    ) -> Result<()> {
        for _ in 0..times {
            body(c)?;
        }
        Ok(())
    }
}

/// The axis of the operator the caller's rows of values lie on, and how the caller's elements map
/// to the block's.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Axis<'a> {
    /// The K cells, in the caller's order.
    Cells(usize),
    /// The samples, kept in cell order: the block's element p is the caller's sample `order[p]`;
    /// `position[i]` is the element of the caller's sample i ([`LEFT_OUT`] for one left out).
    Samples { order: &'a [u32], position: &'a [u32] },
}

/// `position` of a sample left out of the operator.
pub(crate) const LEFT_OUT: u32 = u32::MAX;

impl Axis<'_> {
    /// Values per row in the caller's layout.
    pub fn width(&self) -> usize {
        match self {
            Axis::Cells(k) => *k,
            Axis::Samples { position, .. } => position.len(),
        }
    }
    /// Elements per column of the block.
    pub fn elements(&self) -> usize {
        match self {
            Axis::Cells(k) => *k,
            Axis::Samples { order, .. } => order.len(),
        }
    }
    /// Fails unless `len` values are s rows in the caller's layout.
    pub fn check_rows(&self, len: usize, s: usize) -> Result<()> {
        let w = self.width();
        if len != w * s {
            return Err(Error::Cuda(format!(
                "{len} values are not {s} rows of {w} (a bug in healpix-psf: please report it)"
            )));
        }
        Ok(())
    }
    /// Fails unless `len` values are a block of `axis.elements()` elements × s rows.
    pub fn check_block(&self, len: usize, s: usize) -> Result<()> {
        let e = self.elements();
        if len != e * s {
            return Err(Error::Cuda(format!(
                "a block of {len} values is not {e} elements × {s} rows (a bug in healpix-psf: please report it)"
            )));
        }
        Ok(())
    }
}

/// What a row of gathered values holds (over the block's elements: samples left out do not count).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RowFacts {
    /// NaN values.
    pub nan: u64,
    /// Infinite values.
    pub inf: u64,
    /// The lowest value but NaN (+∞ when none); finite unless `inf` > 0, which the fits refuse. A
    /// zero extreme is +0 (`gather_finite`), whichever zero a device or rank met first.
    pub low: f64,
    /// The highest value but NaN (−∞ when none); finite unless `inf` > 0.
    pub high: f64,
}

impl Default for RowFacts {
    fn default() -> Self {
        RowFacts { nan: 0, inf: 0, low: f64::INFINITY, high: f64::NEG_INFINITY }
    }
}

impl RowFacts {
    /// The largest |value| of the values but NaN (0 when none).
    pub fn max_abs(&self) -> f64 {
        if self.low > self.high {
            0.0
        } else {
            self.low.abs().max(self.high.abs())
        }
    }
}

/// The caller's rows as a block, with their mask and facts (see [`Backend::gather`]).
pub(crate) struct Gathered<V, M> {
    pub vals: V,
    pub valid: Option<M>,
    pub facts: Vec<RowFacts>,
}

/// Where the operator lives and its products run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Device {
    /// The CPU, with `num_threads` worker threads.
    #[default]
    Cpu,
    /// An NVIDIA GPU by ordinal (needs the `cuda` feature).
    Cuda(usize),
}

impl std::str::FromStr for Device {
    type Err = crate::error::Error;
    /// `"cpu"`, `"cuda"` (GPU 0) or `"cuda:N"`.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| crate::error::Error::param("device", s, "use \"cpu\", \"cuda\" or \"cuda:N\"")),
        }
    }
}

/// The device backends compiled into this build.
pub(crate) const COMPILED_DEVICES: &[&str] = &[
    #[cfg(feature = "cuda")]
    "cuda",
];

/// Code bit of a cell held at its lower bound (`HPSF_AT_LOW` of `csrc/rules.h`).
pub(crate) const HELD_LOW: u8 = 2;
/// Code bit of a cell held at its upper bound (`HPSF_AT_HIGH`).
pub(crate) const HELD_HIGH: u8 = 4;
/// Code of a free cell, and mask value of a valid sample (`HPSF_FREE`).
pub(crate) const FREE: u8 = 1;

/// The box of a bounded fit: per column bounds `lo`, `hi` on the fitted values; the bounds of an
/// element of the update are those minus its offset `off` (x_ref; none: the bounds themselves).
pub(crate) struct BoxBounds<'a, F, V> {
    pub lo: &'a [F],
    pub hi: &'a [F],
    pub off: Option<&'a V>,
}

/// A rule of the box of a bounded fit, with the blocks it reads and writes (all E×s, the bounds
/// and `kkt` s values each).
pub(crate) enum BoxRule<'a, F, V, M> {
    /// x clamped into the box (cells with code 0 left alone; with no codes, every cell).
    Clamp { x: &'a mut V, b: &'a BoxBounds<'a, F, V>, codes: Option<&'a M> },
    /// The codes of the cells in the problem, recomputed from the update x and the residual
    /// r = b − A x (`kkt` per column).
    Classify { x: &'a V, r: &'a V, b: &'a BoxBounds<'a, F, V>, kkt: &'a [F], codes: &'a mut M },
    /// `x = clamp(x + d on the free cells)`; counts the cells whose unclamped value left the box.
    Step { x: &'a mut V, d: &'a V, b: &'a BoxBounds<'a, F, V>, codes: &'a M },
    /// Counts the held cells that want to be released (their gradient points into the box).
    Release { r: &'a V, kkt: &'a [F], codes: &'a M },
    /// Holds the free cells whose `cand` leaves the box (bounds on the fitted values, no offset) at
    /// the bound crossed, their `base` set to it; counts them.
    Hold { cand: &'a V, base: &'a mut V, b: &'a BoxBounds<'a, F, V>, codes: &'a mut M },
}

impl<F, V, M> BoxRule<'_, F, V, M> {
    /// The rule's number in `csrc/rules.h` (`HPSF_BOX_*`).
    pub fn code(&self) -> i32 {
        match self {
            BoxRule::Clamp { .. } => 0,
            BoxRule::Classify { .. } => 1,
            BoxRule::Step { .. } => 2,
            BoxRule::Release { .. } => 3,
            BoxRule::Hold { .. } => 4,
        }
    }

    /// (elements, columns), after checking that every block and mask has as many elements and
    /// every per-column array as many values (`len` gives the lengths of blocks, `mlen` of masks).
    pub fn shape(&self, len: impl Fn(&V) -> usize, mlen: impl Fn(&M) -> usize) -> Result<(usize, usize)> {
        let bounds = |b: &BoxBounds<'_, F, V>| vec![b.lo.len(), b.hi.len()];
        let off = |b: &BoxBounds<'_, F, V>| b.off.map(&len);
        let (blocks, cols): (Vec<Option<usize>>, Vec<usize>) = match self {
            BoxRule::Clamp { x, b, codes } => (vec![Some(len(x)), off(b), codes.map(&mlen)], bounds(b)),
            BoxRule::Classify { x, r, b, kkt, codes } => {
                (vec![Some(len(x)), Some(len(r)), off(b), Some(mlen(codes))], [bounds(b), vec![kkt.len()]].concat())
            }
            BoxRule::Step { x, d, b, codes } => {
                (vec![Some(len(x)), Some(len(d)), off(b), Some(mlen(codes))], bounds(b))
            }
            BoxRule::Release { r, kkt, codes } => (vec![Some(len(r)), Some(mlen(codes))], vec![kkt.len()]),
            BoxRule::Hold { cand, base, b, codes } => {
                (vec![Some(len(cand)), Some(len(base)), off(b), Some(mlen(codes))], bounds(b))
            }
        };
        let blocks: Vec<usize> = blocks.into_iter().flatten().collect();
        let (e, s) = (blocks[0], cols[0]);
        if blocks.iter().any(|&l| l != e) || cols.iter().any(|&l| l != s) || s == 0 || e % s != 0 {
            return Err(Error::Cuda(format!(
                "a box rule on blocks of {blocks:?} elements with {cols:?} columns (a bug in healpix-psf: please report it)"
            )));
        }
        Ok((e, s))
    }
}

/// The C arguments of a box rule (`hpsf_box_args` in `csrc/rules.h`): host or device addresses.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct hpsf_box_args {
    pub len: i64,
    pub s: i32,
    pub rule: i32,
    pub lo: *const c_void,
    pub hi: *const c_void,
    pub off: *const c_void,
    pub x: *mut c_void,
    pub r: *const c_void,
    pub d: *const c_void,
    pub kkt: *const c_void,
    pub cand: *const c_void,
    pub base: *mut c_void,
    pub codes: *mut u8,
}

impl hpsf_box_args {
    /// The arguments of rule `rule` over `len` elements of s columns, every address null.
    pub fn new(rule: i32, len: usize, s: usize) -> Self {
        let null = std::ptr::null();
        hpsf_box_args {
            len: len as i64,
            s: s as i32,
            rule,
            lo: null,
            hi: null,
            off: null,
            x: std::ptr::null_mut(),
            r: null,
            d: null,
            kkt: null,
            cand: null,
            base: std::ptr::null_mut(),
            codes: std::ptr::null_mut(),
        }
    }
}

/// How a CG starts: per column its `<r, r>_Dx` and stopping threshold.
pub(crate) struct CgInit {
    pub rs: Vec<f64>,
    pub thr: Vec<f64>,
    pub per_row: bool,
    pub max_iter: usize,
    /// Entries of the residual record per column (at least `poll_every() + 1`).
    pub ring: usize,
}

/// The state of a CG as the host sees it.
#[derive(Debug, Clone)]
pub(crate) struct CgSnapshot {
    /// Iterations run.
    pub it: usize,
    /// Whether it has stopped.
    pub done: bool,
    /// Per column: 0 running, 1 converged, 2 broken down (`HPSF_CG_*`).
    pub flags: Vec<i32>,
    /// Per column: iterations.
    pub iters: Vec<usize>,
    /// Per column: the current `<r, r>_Dx`.
    pub rs: Vec<f64>,
    norms: Vec<f64>,
    ring: usize,
}

impl CgSnapshot {
    /// `‖r‖` of column j after its t-th iteration (valid for the last `ring − 1` iterations).
    pub fn norm(&self, j: usize, t: usize) -> f64 {
        self.norms[(t % self.ring) * self.flags.len() + j]
    }
}

/// The C layout of the CG scalars (`hpsf_cg_scalars` in `csrc/rules.h`): pointers into one f64
/// and one i32 buffer laid out by [`CgLayout`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct hpsf_cg_scalars {
    s: i32,
    per_row: i32,
    max_iter: i32,
    ring: i32,
    rs: *mut f64,
    den: *mut f64,
    rs_new: *mut f64,
    thr: *mut f64,
    alpha: *mut f64,
    beta: *mut f64,
    norms: *mut f64,
    flags: *mut i32,
    iters: *mut i32,
    it: *mut i32,
    done: *mut i32,
}

/// Where each CG scalar sits in the two buffers a backend keeps them in: f64 `[rs, den, rs_new,
/// thr, alpha, beta]` × s then `norms` ring × s; i32 `[flags, iters]` × s, `it`, `done`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CgLayout {
    pub s: usize,
    pub ring: usize,
    pub per_row: bool,
    pub max_iter: usize,
}

impl CgLayout {
    const RS: usize = 0;
    const DEN: usize = 1;
    const RS_NEW: usize = 2;
    const THR: usize = 3;
    const ALPHA: usize = 4;
    const BETA: usize = 5;
    const NORMS: usize = 6;

    pub fn of(init: &CgInit) -> Self {
        CgLayout { s: init.rs.len(), ring: init.ring.max(2), per_row: init.per_row, max_iter: init.max_iter }
    }
    pub fn f64_len(&self) -> usize {
        (Self::NORMS + self.ring) * self.s
    }
    pub fn i32_len(&self) -> usize {
        2 * self.s + 2
    }
    /// Offset (in f64) of `den` and of `rs_new`, where the products and the update write.
    pub fn den(&self) -> usize {
        Self::DEN * self.s
    }
    pub fn rs_new(&self) -> usize {
        Self::RS_NEW * self.s
    }
    pub fn alpha(&self) -> usize {
        Self::ALPHA * self.s
    }
    pub fn beta(&self) -> usize {
        Self::BETA * self.s
    }
    /// Offset (in i32) of `done`.
    pub fn done(&self) -> usize {
        2 * self.s + 1
    }
    /// The initial contents of both buffers.
    pub fn initial(&self, init: &CgInit) -> Result<(Vec<f64>, Vec<i32>)> {
        let s = self.s;
        i32::try_from(init.max_iter).map_err(|_| Error::param("max_iter", init.max_iter, "at most 2^31 − 1"))?;
        let mut f = vec![0.0; self.f64_len()];
        f[Self::RS * s..(Self::RS + 1) * s].copy_from_slice(&init.rs);
        f[Self::THR * s..(Self::THR + 1) * s].copy_from_slice(&init.thr);
        let mut i = vec![0; self.i32_len()];
        i[self.done()] = (init.max_iter == 0 || s == 0) as i32;
        Ok((f, i))
    }
    /// The host's view of both buffers.
    pub fn snapshot(&self, f: &[f64], i: &[i32]) -> CgSnapshot {
        let s = self.s;
        CgSnapshot {
            it: i[2 * s].max(0) as usize,
            done: i[self.done()] != 0,
            flags: i[..s].to_vec(),
            iters: i[s..2 * s].iter().map(|&t| t.max(0) as usize).collect(),
            rs: f[Self::RS * s..(Self::RS + 1) * s].to_vec(),
            norms: f[Self::NORMS * s..].to_vec(),
            ring: self.ring,
        }
    }
    /// The C view of buffers starting at `f` (f64_len values) and `i` (i32_len values).
    pub fn raw(&self, f: *mut f64, i: *mut i32) -> hpsf_cg_scalars {
        let s = self.s;
        let at = |slot: usize| f.wrapping_add(slot * s);
        hpsf_cg_scalars {
            s: s as i32,
            per_row: self.per_row as i32,
            max_iter: self.max_iter as i32,
            ring: self.ring as i32,
            rs: at(Self::RS),
            den: at(Self::DEN),
            rs_new: at(Self::RS_NEW),
            thr: at(Self::THR),
            alpha: at(Self::ALPHA),
            beta: at(Self::BETA),
            norms: at(Self::NORMS),
            flags: i,
            iters: i.wrapping_add(s),
            it: i.wrapping_add(2 * s),
            done: i.wrapping_add(2 * s + 1),
        }
    }
}

/// The links' weights of an operator as its backend computed them (samples in the operator's
/// order; see `operator::assemble`).
pub(crate) struct LinkWeights<F> {
    /// Distances (m), N×npt, +∞ where there is no link.
    pub d_m: Vec<F>,
    /// `MT` by sample, N×npt.
    pub mt: Vec<F>,
    /// `Dy` per sample.
    pub dy: Vec<F>,
    /// `M` by cell, in the CSR order.
    pub m: Vec<F>,
    /// `Dx` per cell.
    pub dx: Vec<F>,
}

/// What the weights are computed from.
pub(crate) struct WeightInputs<'a, F> {
    /// Cell index of each link, N×npt, −1 where missing.
    pub hi: &'a [i32],
    /// The distances of the links as found by the search (cast to F).
    pub d_m: Vec<F>,
    /// Per-sample areas.
    pub area: &'a [f64],
    /// The by-cell CSR pattern: row offsets and sample positions.
    pub ptr: &'a [usize],
    pub sample: &'a [u32],
    pub npt: usize,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub radius: f64,
    pub sigma_m: f64,
    /// Unit vectors of the samples and of the cells (given when [`Target::needs_coordinates`]).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub sample_xyz: &'a [[f64; 3]],
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub cell_xyz: Vec<[f64; 3]>,
}

/// An opened device, before an operator is built on it.
#[derive(Debug)]
pub(crate) enum Target {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda(cuda::Gpu),
}

impl Target {
    /// Whether the weights are computed from the unit vectors of samples and cells.
    pub fn needs_coordinates(&self) -> bool {
        !matches!(self, Target::Cpu)
    }

    /// The links of validated samples built on the device (hashing, keep stage, search, pruning),
    /// or `None` where the CPU stages build them (see [`Target::builder`]: the links, N·npt, count;
    /// and a keep stage too large for the device's sorts).
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub fn construct(&self, lon: &[f64], lat: &[f64], a: &ConstructArgs) -> Option<Result<Constructed>> {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = self.builder(lon.len().saturating_mul(a.npt.max(1))) {
            return cuda::construct(gpu, lon, lat, a).transpose();
        }
        None
    }

    /// The spacing estimate of the samples' areas (`Area::Spacing`) computed on the device, or
    /// `None` where the CPU computes it (see [`Target::builder`]: the samples count).
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub fn spacing_areas(&self, lon: &[f64], lat: &[f64], radius: f64) -> Option<Result<Vec<f64>>> {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = self.builder(lon.len()) {
            return Some(cuda::spacing_areas(gpu, lon, lat, radius));
        }
        None
    }

    /// How many distinct values `v` (no NaN) holds, counted on the device (−0 and 0 once), or `None`
    /// where the CPU counts (see [`Target::builder`]).
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub fn distinct_values(&self, v: &[f64]) -> Option<Result<usize>> {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = self.builder(v.len()) {
            return Some(cuda::distinct_values(gpu, v));
        }
        None
    }

    /// The GPU that runs a construction step over `items` entries, or `None` where the CPU runs it:
    /// on the CPU, for no entries or 2^31 − 1 and more (CUB's counts are ints), and when the
    /// environment variable `HPSF_HOST_CONSTRUCTION=1` asks for the host stages.
    #[cfg(feature = "cuda")]
    fn builder(&self, items: usize) -> Option<&cuda::Gpu> {
        match self {
            Target::Cuda(gpu) if items > 0 && items < cuda::MAX_LINKS && !host_construction_asked() => Some(gpu),
            _ => None,
        }
    }
}

/// Whether `HPSF_HOST_CONSTRUCTION=1` asks a device operator's links to be built by the CPU stages
/// (a diagnostic switch: the products and the solve still run on the device).
#[cfg(feature = "cuda")]
fn host_construction_asked() -> bool {
    std::env::var("HPSF_HOST_CONSTRUCTION").is_ok_and(|v| v == "1")
}

/// What the construction of an operator's links needs (the resolved settings).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) struct ConstructArgs {
    pub level: u8,
    pub wgs84: bool,
    pub nest: bool,
    pub ring_weight: u32,
    pub ring_init: u32,
    pub ring_max: u32,
    pub npt: usize,
    pub radius: f64,
    pub sigma_m: f64,
    pub threshold: f64,
}

/// Links built on a device: on the host the sample order and the cell ids, the links themselves
/// (by sample and by cell) and the unit vectors on the device.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) struct Constructed {
    /// The caller's sample at each position (positions by (cell, index)).
    pub order: Vec<u32>,
    /// Cell ids in the grid's scheme, ascending.
    pub cell_ids: Vec<u64>,
    pub nnz: usize,
    pub n_unique: usize,
    pub n_candidates: usize,
    pub n_kept: usize,
    pub n_partial: usize,
    pub n_empty: usize,
    pub links: DeviceLinks,
}

/// The links a device built, where it keeps them.
pub(crate) enum DeviceLinks {
    #[cfg(feature = "cuda")]
    Cuda(Box<cuda::LinksOnGpu>),
    #[doc(hidden)]
    #[allow(dead_code)]
    _Never(std::convert::Infallible),
}

/// The operator of links a device built, its weights computed there from the per-position areas
/// `area` (SPEC §3).
#[cfg_attr(not(feature = "cuda"), allow(unused_variables, dead_code))]
pub(crate) fn place_links<F: Real>(links: DeviceLinks, area: &[f64], radius: f64, sigma_m: f64) -> Result<Placed<F>> {
    match links {
        #[cfg(feature = "cuda")]
        DeviceLinks::Cuda(l) => {
            Ok(Placed::Cuda(std::sync::Arc::new(cuda::CudaOperator::from_gpu_links(*l, area, radius, sigma_m)?)))
        }
        DeviceLinks::_Never(never) => match never {},
    }
}

/// Opens the device an operator is to be built on, or says why it cannot be.
/// Whether `device`'s backend is compiled into this build (without opening the device).
pub(crate) fn check_compiled(device: Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => Ok(()),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => Err(not_compiled()),
    }
}

#[cfg(not(feature = "cuda"))]
fn not_compiled() -> Error {
    Error::DeviceUnavailable("this build of healpix-psf was not compiled with CUDA (enable the `cuda` feature)".into())
}

pub(crate) fn open(device: Device) -> Result<Target> {
    match device {
        Device::Cpu => Ok(Target::Cpu),
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) => cuda::Gpu::new(ordinal).map(Target::Cuda),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => Err(not_compiled()),
    }
}

/// Where an operator lives: the host copy always exists (the links' views, triplets and the CPU
/// products use it); with a device, the products and the solve run there.
#[derive(Debug, Clone, Default)]
pub(crate) enum Placed<F: Real> {
    #[default]
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda(std::sync::Arc<cuda::CudaOperator<F>>),
    #[doc(hidden)]
    #[allow(dead_code)]
    _Never(std::convert::Infallible, std::marker::PhantomData<F>),
}

/// Computes the links' weights on `target` and keeps the operator there; the weights come back to
/// the host where they were computed there (the CPU; links given without coordinates), else they
/// stay on the device.
pub(crate) fn link_weights<F: Real>(
    target: Target,
    w: WeightInputs<'_, F>,
) -> Result<(Option<LinkWeights<F>>, Placed<F>)> {
    match target {
        Target::Cpu => Ok((Some(cpu::link_weights(w)), Placed::Cpu)),
        #[cfg(feature = "cuda")]
        Target::Cuda(gpu) => {
            let (op, weights) = cuda::CudaOperator::build(gpu, w)?;
            Ok((weights, Placed::Cuda(std::sync::Arc::new(op))))
        }
    }
}

/// What a device operator holds and can copy to the host: `d_m`, `area` and `dy` by sample
/// position, `dx` by cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceValues {
    DistM,
    Area,
    Dx,
    Dy,
}

#[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
impl<F: Real> Placed<F> {
    /// The links by sample position, copied from the device.
    pub fn sample_links(&self) -> Result<crate::sparse::SampleLinks<F>> {
        match self {
            #[cfg(feature = "cuda")]
            Placed::Cuda(op) => op.sample_links(),
            _ => Err(no_device_copy()),
        }
    }
    /// The links by cell, copied from the device.
    pub fn cell_links(&self) -> Result<crate::sparse::CellLinks<F>> {
        match self {
            #[cfg(feature = "cuda")]
            Placed::Cuda(op) => op.cell_links(),
            _ => Err(no_device_copy()),
        }
    }
    /// Values copied from the device.
    pub fn values(&self, which: DeviceValues) -> Result<Vec<F>> {
        match self {
            #[cfg(feature = "cuda")]
            Placed::Cuda(op) => op.values(which),
            _ => Err(no_device_copy()),
        }
    }
    /// Bytes the operator holds on its device (0 on the CPU).
    pub fn device_bytes(&self) -> usize {
        match self {
            #[cfg(feature = "cuda")]
            Placed::Cuda(op) => op.device_bytes(),
            _ => 0,
        }
    }
}

/// A host copy asked of an operator that has no device copy (a bug).
fn no_device_copy() -> Error {
    Error::Cuda("an operator on the CPU has no device copy (a bug in healpix-psf: please report it)".into())
}

/// Runs `$body` with `$b` bound to the backend an operator is placed on: `$cpu` (an expression
/// making the CPU backend, evaluated only when it is the one) or the device operator.
macro_rules! with_backend {
    ($placed:expr, $cpu:expr, |$b:ident| $body:expr) => {
        match $placed {
            $crate::backend::Placed::Cpu => {
                let $b = &$cpu;
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::backend::Placed::Cuda(op) => {
                let $b = &**op;
                $body
            }
            $crate::backend::Placed::_Never(never, _) => match *never {},
        }
    };
}
pub(crate) use with_backend;
