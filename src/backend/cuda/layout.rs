//! The batched values between the caller's layout and the solver's, on the GPU (`csrc/layout.cu`):
//! rows are copied to the device as the caller holds them (row-major, in chunks of at most
//! [`STAGE_BYTES`]) and interleaved, permuted into the operator's sample order and checked there;
//! results are de-interleaved on the device and copied back row by row. No pass over the values
//! runs on the host. (`HPSF_STAGE_BYTES` overrides the chunk size: the tests use it to make
//! several chunks of small batches.)

use super::{dtype, i32_len, need, sys, Buf, CudaOperator};
use crate::backend::{Axis, Gathered, RowFacts};
use crate::error::Result;
use crate::real::Real;

/// Most bytes of the caller's rows on the device at once, on their way in or out.
const STAGE_BYTES: usize = 256 << 20;

/// Rows per chunk of rows of `width` values of T.
fn rows_per_chunk<T>(width: usize, s: usize) -> usize {
    let stage = std::env::var("HPSF_STAGE_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(STAGE_BYTES);
    (stage / (width * std::mem::size_of::<T>()).max(1)).clamp(1, s.max(1))
}

impl<F: Real> CudaOperator<F> {
    /// The device copy of the sample axis (made at its first use; the operator's axis never
    /// changes once it is built).
    fn axis_on_device(&self, order: &[u32], position: &[u32]) -> Result<&(Buf<u32>, Buf<u32>)> {
        if self.sample_axis.get().is_none() {
            let copy = (self.gpu.put(order)?, self.gpu.put(position)?);
            let _ = self.sample_axis.set(copy);
        }
        let axis = self.sample_axis.get().expect("set above");
        need(axis.0.len(), order.len(), "the sample order on the GPU")?;
        need(axis.1.len(), position.len(), "the sample positions on the GPU")?;
        Ok(axis)
    }

    /// [`Backend::gather`](crate::backend::Backend::gather) on the GPU.
    pub(super) fn gather_rows(
        &self,
        v: &[F],
        s: usize,
        axis: Axis<'_>,
        zero_nan: bool,
        mask: bool,
    ) -> Result<Gathered<Buf<F>, Buf<u8>>> {
        let g = &self.gpu;
        axis.check_rows(v.len(), s)?;
        let (width, e) = (axis.width(), axis.elements());
        let (order, position) = match axis {
            Axis::Samples { order, position } => {
                let (o, p) = self.axis_on_device(order, position)?;
                (o.ptr(g).cast(), p.ptr(g).cast())
            }
            Axis::Cells(_) => (std::ptr::null(), std::ptr::null()),
        };
        let (s32, w64, e64) = (i32_len(s, "rows")?, width as i64, e as i64);
        let mut out = g.alloc::<F>(e * s)?;
        let per = rows_per_chunk::<F>(width, s);
        let mut stage = g.alloc::<F>(per * width)?;
        // what each row holds, read from the rows as uploaded (segment partials per chunk)
        let segments = width.div_ceil(sys::HPSF_FACTS_SEGMENT as usize).max(1);
        let mut partials = g.alloc::<f64>(4 * per * segments)?;
        // the counts of NaN and infinities and the lowest and highest finite value of each row,
        // one after the other
        let mut facts = g.alloc::<f64>(4 * s)?;
        let at = facts.ptr_mut(g).cast::<f64>();
        let (nan, inf, low, high) = (at, at.wrapping_add(s), at.wrapping_add(2 * s), at.wrapping_add(3 * s));
        for r0 in (0..s).step_by(per) {
            let c = per.min(s - r0);
            g.write(&mut stage, &v[r0 * width..(r0 + c) * width])?;
            let (c32, r032) = (c as i32, r0 as i32);
            // SAFETY: stage holds c rows of width values; position (when given) width entries;
            // partials 4·per·segments values; facts 4·s (nan, inf, low, high s each), rows r0..r0+c
            // below s.
            g.launch("checking rows", |st| unsafe {
                sys::hpsf_row_facts(
                    dtype::<F>(),
                    stage.ptr(g),
                    c32,
                    w64,
                    position,
                    r032,
                    partials.ptr_mut(g).cast(),
                    nan,
                    inf,
                    low,
                    high,
                    st,
                )
            })?;
            // SAFETY: stage holds c rows of width values; order (when given) e sample indices below
            // width; out e·s values, and columns r0..r0+c are below s.
            g.launch("gathering rows", |st| unsafe {
                sys::hpsf_gather_rows(dtype::<F>(), stage.ptr(g), c32, w64, order, e64, s32, r032, out.ptr_mut(g), st)
            })?;
        }
        drop((stage, partials));
        let mut valid = if mask { Some(g.alloc::<u8>(e * s)?) } else { None };
        let valid_ptr = valid.as_mut().map_or(std::ptr::null_mut(), |m| m.ptr_mut(g).cast());
        // SAFETY: out and valid hold e·s elements.
        g.launch("cleaning rows", |st| unsafe {
            sys::hpsf_clean_block(dtype::<F>(), out.ptr_mut(g), e64 * s as i64, zero_nan as i32, valid_ptr, st)
        })?;
        let f = g.get(&facts)?;
        let facts = (0..s)
            .map(|j| RowFacts { nan: f[j] as u64, inf: f[s + j] as u64, low: f[2 * s + j], high: f[3 * s + j] })
            .collect();
        Ok(Gathered { vals: out, valid, facts })
    }

    /// [`Backend::scatter`](crate::backend::Backend::scatter) on the GPU.
    pub(super) fn scatter_rows(&self, x: &Buf<F>, s: usize, axis: Axis<'_>) -> Result<Vec<F>> {
        let g = &self.gpu;
        let width = axis.width();
        axis.check_block(x.len(), s)?;
        let position = match axis {
            Axis::Samples { order, position } => self.axis_on_device(order, position)?.1.ptr(g).cast(),
            Axis::Cells(_) => std::ptr::null(),
        };
        let (s32, w64) = (i32_len(s, "rows")?, width as i64);
        let mut out = vec![F::ZERO; width * s];
        let per = rows_per_chunk::<F>(width, s);
        let mut stage = g.alloc::<F>(per * width)?;
        for r0 in (0..s).step_by(per) {
            let c = per.min(s - r0);
            let (c32, r032) = (c as i32, r0 as i32);
            // SAFETY: x holds e·s values and position (when given) width positions below e or
            // LEFT_OUT; stage holds c rows of width values.
            g.launch("scattering rows", |st| unsafe {
                sys::hpsf_scatter_rows(dtype::<F>(), x.ptr(g), s32, position, w64, r032, c32, stage.ptr_mut(g), st)
            })?;
            g.read_into(&mut out[r0 * width..(r0 + c) * width], &stage)?;
        }
        Ok(out)
    }
}
