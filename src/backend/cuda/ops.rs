//! The [`Backend`] primitives on a GPU: one launch each (a reduction: a launch, a fixed-order
//! reduction of its partials and, when the host needs the values, a copy back), every length the
//! launch relies on checked first.

use super::replay::Replay;
use super::{dtype, i32_len, need, reduction_space, sys, Buf, CudaOperator, Gpu};
use crate::backend::{hpsf_box_args, Axis, Backend, BoxBounds, BoxRule, CgInit, CgLayout, CgSnapshot, Gathered};
use crate::error::Result;
use crate::real::Real;
use std::ffi::c_void;

/// CG iterations between two looks at the device's scalars (iterations after the CG stops are
/// no-ops on the device).
const POLL_EVERY: usize = 8;

/// The CG scalars in device memory (the layout of [`CgLayout`]) and the partials of the reductions
/// fused into the iteration's kernels.
pub(crate) struct GpuScalars {
    layout: CgLayout,
    f: Buf<f64>,
    i: Buf<i32>,
    partials: Buf<f64>,
    /// How the CG's iterations are launched (recorded as a graph after the first).
    pub(super) replay: Replay,
}

impl GpuScalars {
    /// The C view, with device pointers.
    fn raw(&mut self, g: &Gpu) -> crate::backend::hpsf_cg_scalars {
        self.layout.raw(self.f.ptr_mut(g).cast(), self.i.ptr_mut(g).cast())
    }
    /// The device address of the f64 slot starting at `offset`.
    fn slot(&mut self, g: &Gpu, offset: usize) -> *mut f64 {
        self.f.ptr_mut(g).cast::<f64>().wrapping_add(offset)
    }
    fn done(&self, g: &Gpu) -> *const i32 {
        self.i.ptr(g).cast::<i32>().wrapping_add(self.layout.done())
    }
}

/// The lanes that read a cell's links together in `u·M` for s columns (`hpsf_m_product`): for one
/// column, the power of two from 4 to 32 that covers the cells' mean number of links; otherwise
/// none (a thread per cell and column). `HPSF_CUDA_M_GROUPS=0` asks for none, `=4`, `8`, `16` or
/// `32` for that many (for the tests and comparisons).
fn m_group(s: usize, nnz: usize, k: usize) -> i32 {
    static CHOICE: std::sync::OnceLock<Option<i32>> = std::sync::OnceLock::new();
    let choice = CHOICE.get_or_init(|| {
        let v = std::env::var("HPSF_CUDA_M_GROUPS").ok()?;
        v.trim().parse::<i32>().ok().filter(|g| [0, 4, 8, 16, 32].contains(g))
    });
    match (s, choice) {
        (1, Some(g)) => *g,
        (1, None) => [4, 8, 16, 32].into_iter().find(|&g| g >= nnz.div_ceil(k.max(1))).unwrap_or(32) as i32,
        _ => 0,
    }
}

/// Null for `None`.
fn opt<T>(g: &Gpu, b: Option<&Buf<T>>) -> *const c_void {
    b.map_or(std::ptr::null(), |b| b.ptr(g))
}

/// Column indices for the column kernel.
fn cols_of(cols: impl Iterator<Item = usize>) -> Result<Vec<i32>> {
    cols.map(|c| i32_len(c, "columns")).collect()
}

impl<F: Real> CudaOperator<F> {
    /// Sums (op 0) or maxima (op 1) per column of a reduction over `rows` rows of s columns from
    /// its partials, on the host.
    fn reduced(&self, partials: &mut Buf<f64>, rows: usize, s: usize, op: i32) -> Result<Vec<f64>> {
        let g = &self.gpu;
        need(partials.len(), reduction_space(rows, s)?, "the partials of a reduction")?;
        let mut out = g.alloc::<f64>(s)?;
        let s32 = i32_len(s, "rows")?;
        // SAFETY: partials hold the reduction's space (checked), out s values.
        g.launch("a reduction", |st| unsafe {
            sys::hpsf_reduce(
                partials.ptr_mut(g).cast(),
                rows as i64,
                s32,
                op,
                out.ptr_mut(g).cast(),
                std::ptr::null(),
                st,
            )
        })?;
        g.get(&out)
    }

    /// The column move `dst[·, to] = src[·, from]` for the pairs, over `rows` rows of elements of
    /// `elem` bytes (dst: rows×t, src: rows×m, lengths checked by the callers).
    #[allow(clippy::too_many_arguments)]
    fn move_columns(
        &self,
        dst: *mut c_void,
        t: usize,
        src: *const c_void,
        m: usize,
        pairs: &[(usize, usize)],
        rows: usize,
        elem: usize,
    ) -> Result<()> {
        let g = &self.gpu;
        if let Some(&(from, to)) = pairs.iter().find(|&&(from, to)| from >= m || to >= t) {
            return Err(crate::error::Error::Cuda(format!(
                "a column move from column {from} of {m} to column {to} of {t} (a bug in healpix-psf: please report it)"
            )));
        }
        let from = g.put(&cols_of(pairs.iter().map(|p| p.0))?)?;
        let to = g.put(&cols_of(pairs.iter().map(|p| p.1))?)?;
        let (t32, m32, nc) = (i32_len(t, "columns")?, i32_len(m, "columns")?, i32_len(pairs.len(), "columns")?);
        // SAFETY: dst holds rows·t and src rows·m elements of `elem` bytes (checked by the callers);
        // every column index is below t or m (checked above).
        g.launch("a column move", |st| unsafe {
            sys::hpsf_columns(
                dst,
                t32,
                to.ptr(g).cast(),
                src,
                m32,
                from.ptr(g).cast(),
                nc,
                rows as i64,
                elem as i32,
                st,
            )
        })
    }

    /// The columns `cols` of an E×s block of values or bytes, as an E×|cols| block.
    fn select_columns<T>(&self, v: &Buf<T>, s: usize, cols: &[usize]) -> Result<Buf<T>> {
        let rows = v.len() / s.max(1);
        need(v.len(), rows * s, "a block")?;
        let mut out = self.gpu.alloc::<T>(rows * cols.len())?;
        let pairs: Vec<(usize, usize)> = cols.iter().copied().zip(0..).collect();
        let dst = out.ptr_mut(&self.gpu);
        self.move_columns(dst, cols.len(), v.ptr(&self.gpu), s, &pairs, rows, std::mem::size_of::<T>())?;
        Ok(out)
    }

    /// The count of a counting box rule from its partials.
    fn count(&self, partials: &mut Buf<f64>, len: usize) -> Result<u64> {
        Ok(self.reduced(partials, len, 1, 0)?[0] as u64)
    }
}

impl<F: Real> Backend<F> for CudaOperator<F> {
    type Vals = Buf<F>;
    type Mask = Buf<u8>;
    type Scalars = GpuScalars;

    fn n(&self) -> usize {
        self.n
    }
    fn k(&self) -> usize {
        self.k
    }
    fn k_total(&self) -> usize {
        self.k
    }
    fn poll_every(&self) -> usize {
        POLL_EVERY
    }

    fn zeros(&self, len: usize) -> Result<Buf<F>> {
        self.gpu.alloc(len)
    }
    fn copy_into(&self, dst: &mut Buf<F>, src: &Buf<F>) -> Result<()> {
        self.gpu.copy(dst, src, "a copy")
    }
    fn upload_mask(&self, m: Vec<u8>) -> Result<Buf<u8>> {
        self.gpu.put(&m)
    }
    fn download_mask(&self, m: &Buf<u8>) -> Result<Vec<u8>> {
        self.gpu.get(m)
    }
    fn gather(
        &self,
        v: &[F],
        s: usize,
        axis: Axis<'_>,
        zero_nan: bool,
        mask: bool,
    ) -> Result<Gathered<Buf<F>, Buf<u8>>> {
        self.gather_rows(v, s, axis, zero_nan, mask)
    }
    fn scatter(&self, x: &Buf<F>, s: usize, axis: Axis<'_>) -> Result<Vec<F>> {
        self.scatter_rows(x, s, axis)
    }
    fn scale_columns(&self, v: &mut Buf<F>, c: &[F]) -> Result<()> {
        let g = &self.gpu;
        let s = c.len();
        if s == 0 {
            return need(v.len(), 0, "a block of no column");
        }
        need(v.len() % s, 0, "a block")?;
        let c = g.put(c)?;
        let s32 = i32_len(s, "rows")?;
        // SAFETY: v holds a whole number of rows of s values, c s values (checked).
        g.launch("scaling columns", |st| unsafe {
            sys::hpsf_scale_columns(dtype::<F>(), v.ptr_mut(g), c.ptr(g), v.len() as i64, s32, st)
        })
    }
    fn mask_values(&self, m: &Buf<u8>) -> Result<Buf<F>> {
        let g = &self.gpu;
        let mut out = g.alloc::<F>(m.len())?;
        // SAFETY: out and m hold len values.
        g.launch("a mask's values", |st| unsafe {
            sys::hpsf_mask_values(dtype::<F>(), out.ptr_mut(g), m.ptr(g).cast(), m.len() as i64, st)
        })?;
        Ok(out)
    }
    fn fill_masked(&self, v: &mut Buf<F>, m: &Buf<u8>, fill: F) -> Result<()> {
        let g = &self.gpu;
        need(m.len(), v.len(), "a mask")?;
        // SAFETY: v and m hold len values (checked).
        g.launch("filling masked values", |st| unsafe {
            sys::hpsf_fill_masked(dtype::<F>(), v.ptr_mut(g), m.ptr(g).cast(), fill.to_f64(), v.len() as i64, st)
        })
    }
    fn select(&self, v: &Buf<F>, s: usize, cols: &[usize]) -> Result<Buf<F>> {
        self.select_columns(v, s, cols)
    }
    fn select_mask(&self, m: &Buf<u8>, s: usize, cols: &[usize]) -> Result<Buf<u8>> {
        self.select_columns(m, s, cols)
    }
    fn put_columns(&self, dst: &mut Buf<F>, t: usize, src: &Buf<F>, m: usize, pairs: &[(usize, usize)]) -> Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let rows = src.len() / m.max(1);
        need(src.len(), rows * m, "a block")?;
        need(dst.len(), rows * t, "a block")?;
        let d = dst.ptr_mut(&self.gpu);
        self.move_columns(d, t, src.ptr(&self.gpu), m, pairs, rows, std::mem::size_of::<F>())
    }

    fn mt(
        &self,
        v: &Buf<F>,
        s: usize,
        out: &mut Buf<F>,
        valid: Option<&Buf<u8>>,
        cg: Option<&GpuScalars>,
    ) -> Result<()> {
        let g = &self.gpu;
        need(v.len(), self.k * s, "the cell values of v·MT")?;
        need(out.len(), self.n * s, "the result of v·MT")?;
        if let Some(m) = valid {
            need(m.len(), self.n * s, "the valid samples")?;
        }
        let done = cg.map_or(std::ptr::null(), |c| c.done(g));
        let (n32, npt32, s32) = (i32_len(self.n, "samples")?, i32_len(self.npt, "npt")?, i32_len(s, "rows")?);
        // SAFETY: hi and mt hold n·npt values (built so), v k·s, out and valid n·s (checked).
        g.launch("the MT product", |st| unsafe {
            sys::hpsf_mt_product(
                dtype::<F>(),
                self.hi.ptr(g).cast(),
                self.mt.ptr(g),
                n32,
                npt32,
                v.ptr(g),
                s32,
                opt(g, valid).cast(),
                out.ptr_mut(g),
                done,
                st,
            )
        })
    }
    fn m(
        &self,
        u: &Buf<F>,
        s: usize,
        out: &mut Buf<F>,
        add: Option<(F, &Buf<F>)>,
        den: Option<&mut GpuScalars>,
    ) -> Result<()> {
        let g = &self.gpu;
        need(u.len(), self.n * s, "the sample values of u·M")?;
        need(out.len(), self.k * s, "the result of u·M")?;
        if let Some((_, a)) = add {
            need(a.len(), self.k * s, "the added block of u·M")?;
        }
        let (k32, s32) = (i32_len(self.k, "cells")?, i32_len(s, "rows")?);
        let lam = add.map_or(0.0, |(l, _)| l.to_f64());
        let add_ptr = opt(g, add.map(|(_, a)| a));
        // inside a CG: the partials of <out, add>_Dx, reduced into the scalars' den; skipped once done
        let fused = match den {
            None => None,
            Some(c) => {
                need(add.is_some() as usize, 1, "the direction of <p, Ap>")?;
                need(c.layout.s, s, "the CG scalars")?;
                need(c.partials.len(), reduction_space(self.k, s)?, "the partials of <p, Ap>")?;
                Some((c.done(g), c.slot(g, c.layout.den()), c.partials.ptr_mut(g).cast::<f64>()))
            }
        };
        let (dx, partials, done) = match fused {
            Some((done, _, partials)) => (self.dx.ptr(g), partials, done),
            None => (std::ptr::null(), std::ptr::null_mut(), std::ptr::null()),
        };
        // SAFETY: ptr holds k+1 offsets into sample and m; u n·s, out and add k·s, dx k, partials
        // the reduction's space (checked).
        g.launch("the M product", |st| unsafe {
            sys::hpsf_m_product(
                dtype::<F>(),
                self.ptr.ptr(g).cast(),
                self.sample.ptr(g).cast(),
                self.m.ptr(g),
                k32,
                u.ptr(g),
                s32,
                lam,
                add_ptr,
                dx,
                partials,
                out.ptr_mut(g),
                done,
                m_group(s, self.m.len(), self.k),
                st,
            )
        })?;
        let Some((done, den_slot, partials)) = fused else { return Ok(()) };
        // SAFETY: partials hold the reduction's space, the den slot s doubles of the scalars.
        g.launch("the reduction of <p, Ap>", |st| unsafe {
            sys::hpsf_reduce(partials, self.k as i64, s32, 0, den_slot, done, st)
        })
    }

    fn dots(
        &self,
        a: &Buf<F>,
        b: Option<&Buf<F>>,
        s: usize,
        weighted: bool,
        mask: Option<&Buf<u8>>,
    ) -> Result<Vec<f64>> {
        let g = &self.gpu;
        let e = a.len() / s.max(1);
        need(a.len(), e * s, "a block")?;
        if let Some(b) = b {
            need(b.len(), a.len(), "the second block of a dot product")?;
        }
        if let Some(m) = mask {
            need(m.len(), a.len(), "the mask of a dot product")?;
        }
        if weighted {
            need(e, self.k, "the cells of a weighted dot product")?;
        }
        let mut partials = g.alloc::<f64>(reduction_space(e, s)?)?;
        let w = if weighted { self.dx.ptr(g) } else { std::ptr::null() };
        let s32 = i32_len(s, "rows")?;
        // SAFETY: a (and b, mask) hold e·s values, w e (checked), partials the reduction's space.
        g.launch("a dot product", |st| unsafe {
            sys::hpsf_row_dots(
                dtype::<F>(),
                a.ptr(g),
                opt(g, b),
                w,
                opt(g, mask).cast(),
                e as i64,
                s32,
                partials.ptr_mut(g).cast(),
                st,
            )
        })?;
        self.reduced(&mut partials, e, s, 0)
    }
    fn max_abs(&self, v: &Buf<F>, s: usize) -> Result<Vec<f64>> {
        let g = &self.gpu;
        let e = v.len() / s.max(1);
        need(v.len(), e * s, "a block")?;
        let mut partials = g.alloc::<f64>(reduction_space(e, s)?)?;
        let s32 = i32_len(s, "rows")?;
        // SAFETY: v holds e·s values, partials the reduction's space.
        g.launch("a maximum", |st| unsafe {
            sys::hpsf_row_max_abs(dtype::<F>(), v.ptr(g), e as i64, s32, partials.ptr_mut(g).cast(), st)
        })?;
        self.reduced(&mut partials, e, s, 1)
    }

    fn axpby(&self, y: &mut Buf<F>, a: &[F], x: &Buf<F>, b: F) -> Result<()> {
        let g = &self.gpu;
        let s = a.len();
        need(x.len(), y.len(), "the x of y = a·x + b·y")?;
        need(y.len() % s.max(1), 0, "a block")?;
        let a = g.put(a)?;
        let s32 = i32_len(s, "rows")?;
        // SAFETY: x and y hold len values, a s values (checked).
        g.launch("y = a·x + b·y", |st| unsafe {
            sys::hpsf_axpby(dtype::<F>(), y.ptr_mut(g), a.ptr(g), x.ptr(g), b.to_f64(), y.len() as i64, s32, st)
        })
    }
    fn mul_mask(&self, v: &mut Buf<F>, mask: &Buf<u8>) -> Result<()> {
        let g = &self.gpu;
        need(mask.len(), v.len(), "a mask")?;
        // SAFETY: v and mask hold len values (checked).
        g.launch("a mask", |st| unsafe {
            sys::hpsf_mul_mask(dtype::<F>(), v.ptr_mut(g), mask.ptr(g).cast(), v.len() as i64, st)
        })
    }
    fn renormalise(&self, x: &mut Buf<F>, w: &Buf<F>, rows: &[bool]) -> Result<Buf<u8>> {
        let g = &self.gpu;
        need(w.len(), x.len(), "the weights of a renormalisation")?;
        need(x.len() % rows.len().max(1), 0, "a block")?;
        let flags = g.put(&rows.iter().map(|&r| r as u8).collect::<Vec<u8>>())?;
        let mut codes = g.alloc::<u8>(x.len())?;
        let s32 = i32_len(rows.len(), "rows")?;
        // SAFETY: x, w and codes hold len values, flags s (checked).
        g.launch("the renormalisation", |st| unsafe {
            sys::hpsf_renormalise(
                dtype::<F>(),
                x.ptr_mut(g),
                w.ptr(g),
                flags.ptr(g).cast(),
                x.len() as i64,
                s32,
                codes.ptr_mut(g).cast(),
                st,
            )
        })?;
        Ok(codes)
    }
    fn reciprocal_dx(&self) -> Result<Buf<F>> {
        let g = &self.gpu;
        let mut out = g.alloc::<F>(self.k)?;
        // SAFETY: dx and out hold k values.
        g.launch("1/Dx", |st| unsafe {
            sys::hpsf_reciprocal(dtype::<F>(), out.ptr_mut(g), self.dx.ptr(g), self.k as i64, st)
        })?;
        Ok(out)
    }
    fn broadcast(&self, src: &Buf<F>, s: usize, scale: F, codes: Option<&Buf<u8>>) -> Result<Buf<F>> {
        let g = &self.gpu;
        let e = src.len();
        if let Some(c) = codes {
            need(c.len(), e * s, "the codes of a broadcast")?;
        }
        let mut out = g.alloc::<F>(e * s)?;
        let s32 = i32_len(s, "rows")?;
        // SAFETY: src holds e values, codes and out e·s (checked).
        g.launch("a broadcast", |st| unsafe {
            sys::hpsf_broadcast(
                dtype::<F>(),
                out.ptr_mut(g),
                src.ptr(g),
                scale.to_f64(),
                opt(g, codes).cast(),
                e as i64,
                s32,
                st,
            )
        })?;
        Ok(out)
    }

    fn box_rule(&self, rule: BoxRule<'_, F, Buf<F>, Buf<u8>>) -> Result<u64> {
        let g = &self.gpu;
        let (len, s) = rule.shape(Buf::len, Buf::len)?;
        let mut a = hpsf_box_args::new(rule.code(), len, s);
        // the per-column arrays on the device, alive until the launch has been enqueued
        let (mut lo, mut hi, mut kkt_d) = (None, None, None);
        let mut bounds = |b: &BoxBounds<'_, F, Buf<F>>, a: &mut hpsf_box_args| -> Result<()> {
            let (l, h) = (g.put(b.lo)?, g.put(b.hi)?);
            (a.lo, a.hi, a.off) = (l.ptr(g), h.ptr(g), opt(g, b.off));
            (lo, hi) = (Some(l), Some(h));
            Ok(())
        };
        let counts = matches!(rule, BoxRule::Step { .. } | BoxRule::Release { .. } | BoxRule::Hold { .. });
        match rule {
            BoxRule::Clamp { x, b, codes } => {
                bounds(b, &mut a)?;
                (a.x, a.codes) = (x.ptr_mut(g), opt(g, codes) as *mut u8);
            }
            BoxRule::Classify { x, r, b, kkt, codes } => {
                bounds(b, &mut a)?;
                let k = g.put(kkt)?;
                (a.x, a.r, a.kkt, a.codes) = (x.ptr(g) as *mut c_void, r.ptr(g), k.ptr(g), codes.ptr_mut(g).cast());
                kkt_d = Some(k);
            }
            BoxRule::Step { x, d, b, codes } => {
                bounds(b, &mut a)?;
                (a.x, a.d, a.codes) = (x.ptr_mut(g), d.ptr(g), codes.ptr(g) as *mut u8);
            }
            BoxRule::Release { r, kkt, codes } => {
                let k = g.put(kkt)?;
                (a.r, a.kkt, a.codes) = (r.ptr(g), k.ptr(g), codes.ptr(g) as *mut u8);
                kkt_d = Some(k);
            }
            BoxRule::Hold { cand, base, b, codes } => {
                bounds(b, &mut a)?;
                (a.cand, a.base, a.codes) = (cand.ptr(g), base.ptr_mut(g), codes.ptr_mut(g).cast());
            }
        }
        let mut partials = if counts { Some(g.alloc::<f64>(reduction_space(len, 1)?)?) } else { None };
        let p = partials.as_mut().map_or(std::ptr::null_mut(), |p| p.ptr_mut(g).cast::<f64>());
        // SAFETY: every block holds len elements and every per-column array s values (checked by
        // `shape`); the partials the space of a one-column reduction; the struct is copied into the launch.
        g.launch("a rule of the box", |st| unsafe { sys::hpsf_box(dtype::<F>(), &a, p, st) })?;
        drop((lo, hi, kkt_d));
        match partials {
            Some(mut p) => self.count(&mut p, len),
            None => Ok(0),
        }
    }

    fn cg_start(&self, init: &CgInit) -> Result<GpuScalars> {
        let layout = CgLayout::of(init);
        let (f, i) = layout.initial(init)?;
        let g = &self.gpu;
        let partials = g.alloc(reduction_space(self.k, layout.s)?)?;
        Ok(GpuScalars { layout, f: g.put(&f)?, i: g.put(&i)?, partials, replay: Replay::new() })
    }
    fn cg_read(&self, c: &GpuScalars) -> Result<CgSnapshot> {
        Ok(c.layout.snapshot(&self.gpu.get(&c.f)?, &self.gpu.get(&c.i)?))
    }
    fn cg_alpha(&self, c: &mut GpuScalars) -> Result<()> {
        let g = &self.gpu;
        let raw = c.raw(g);
        // SAFETY: the pointers address c's device buffers, laid out as the rule expects; the struct
        // is copied into the launch's arguments.
        g.launch("the CG step length", |st| unsafe { sys::hpsf_cg_alpha(&raw, st) })
    }
    fn cg_update(&self, x: &mut Buf<F>, r: &mut Buf<F>, p: &Buf<F>, ap: &Buf<F>, c: &mut GpuScalars) -> Result<()> {
        let g = &self.gpu;
        let s = c.layout.s;
        for (b, what) in [(&*x, "x"), (&*r, "r"), (p, "p"), (ap, "Ap")] {
            need(b.len(), self.k * s, what)?;
        }
        need(c.partials.len(), reduction_space(self.k, s)?, "the partials of <r, r>")?;
        let (done, alpha, rs_new) = (c.done(g), c.slot(g, c.layout.alpha()), c.slot(g, c.layout.rs_new()));
        let partials = c.partials.ptr_mut(g).cast::<f64>();
        let (k32, s32) = (i32_len(self.k, "cells")?, i32_len(s, "rows")?);
        // SAFETY: x, r, p, ap hold k·s values, dx k, partials the reduction's space (checked); alpha and rs_new are
        // s-value slots of the scalars.
        g.launch("the CG update", |st| unsafe {
            sys::hpsf_cg_update(
                dtype::<F>(),
                x.ptr_mut(g),
                r.ptr_mut(g),
                p.ptr(g),
                ap.ptr(g),
                alpha,
                self.dx.ptr(g),
                k32,
                s32,
                partials,
                done,
                st,
            )
        })?;
        // SAFETY: as in `m`.
        g.launch("the reduction of <r, r>", |st| unsafe {
            sys::hpsf_reduce(partials, self.k as i64, s32, 0, rs_new, done, st)
        })
    }
    fn cg_beta(&self, c: &mut GpuScalars) -> Result<()> {
        let g = &self.gpu;
        let raw = c.raw(g);
        // SAFETY: as in cg_alpha.
        g.launch("the CG direction factor", |st| unsafe { sys::hpsf_cg_beta(&raw, st) })
    }
    fn cg_repeat(
        &self,
        c: &mut GpuScalars,
        times: usize,
        body: &mut dyn FnMut(&mut GpuScalars) -> Result<()>,
    ) -> Result<()> {
        self.gpu.iterations(c, times, body)
    }
    fn cg_direction(&self, p: &mut Buf<F>, r: &Buf<F>, c: &GpuScalars) -> Result<()> {
        let g = &self.gpu;
        let s = c.layout.s;
        need(p.len(), self.k * s, "p")?;
        need(r.len(), self.k * s, "r")?;
        let beta = c.f.ptr(g).cast::<f64>().wrapping_add(c.layout.beta());
        let (k32, s32) = (i32_len(self.k, "cells")?, i32_len(s, "rows")?);
        // SAFETY: p and r hold k·s values (checked), beta is an s-value slot of the scalars.
        g.launch("the CG direction", |st| unsafe {
            sys::hpsf_cg_direction(dtype::<F>(), p.ptr_mut(g), r.ptr(g), beta, k32, s32, c.done(g), st)
        })
    }
}
