//! The CUDA backend: device buffers through cudarc's driver API, kernels from `csrc/` launched
//! through the `extern "C"` launchers of `include/hpsf_kernels.h` (bindings made by bindgen).
//!
//! The CUDA runtime (statically linked) and cudarc's driver context share the device's primary
//! context, so buffers allocated here are valid for the launchers. All work runs on one stream.
//! Every length is checked before a launch (`unsafe` is confined to the launch calls).

use crate::error::{Error, Result};
use crate::real::Real;
use crate::solver::{CgOut, FitOptions, Stopping};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, ValidAsZeroBits};
use std::sync::Arc;

#[allow(non_camel_case_types, non_upper_case_globals, non_snake_case, dead_code, missing_docs, clippy::all)]
mod sys {
    include!(concat!(env!("OUT_DIR"), "/hpsf_kernels.rs"));
}

/// Threads per block of the kernels (one reduction partial per block and row).
const BLOCK: usize = sys::HPSF_BLOCK as usize;
/// CG iterations between two looks at the device's `done` flag (iterations after it are no-ops).
const POLL_EVERY: usize = 8;

fn blocks(elements: usize) -> usize {
    elements.div_ceil(BLOCK)
}

fn cuda_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
    move |e| Error::Cuda(format!("{what}: {e}"))
}

fn launched(code: i32, what: &str) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(Error::Cuda(format!("launching {what} failed (cudaError {code})")))
    }
}

fn i32_len(n: usize, what: &'static str) -> Result<i32> {
    i32::try_from(n).map_err(|_| Error::TooLarge { what, value: n as u64, limit: i32::MAX as u64 })
}

/// A GPU: its primary context and the stream all work runs on.
#[derive(Clone)]
pub(crate) struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    ordinal: usize,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu(cuda:{})", self.ordinal)
    }
}

impl Gpu {
    /// Opens GPU `ordinal`, or explains why there is none.
    pub fn new(ordinal: usize) -> Result<Gpu> {
        // With dynamic loading, cudarc panics if libcuda is missing: ask first.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(Error::DeviceUnavailable(
                "no CUDA driver (libcuda.so) on this machine: the CUDA device needs an NVIDIA GPU and its driver"
                    .into(),
            ));
        }
        let count = CudaContext::device_count().map_err(|e| Error::DeviceUnavailable(format!("CUDA driver: {e}")))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::DeviceUnavailable(format!("no CUDA device {ordinal}: this machine has {count}")));
        }
        let ctx =
            CudaContext::new(ordinal).map_err(|e| Error::DeviceUnavailable(format!("CUDA device {ordinal}: {e}")))?;
        // SAFETY: every buffer of this crate is used on this context's single default stream, so no
        // cross-stream synchronisation is needed and the per-use event records are pure overhead.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        Ok(Gpu { ctx, stream, ordinal })
    }

    /// Fails with a clear message when `bytes` more do not fit in the GPU's free memory.
    fn ensure_free(&self, bytes: usize, what: &str) -> Result<()> {
        let (free, total) = self.ctx.mem_get_info().map_err(cuda_err("querying GPU memory"))?;
        if bytes > free {
            return Err(Error::Cuda(format!(
                "{what} needs {:.1} MiB of GPU memory, but cuda:{} has {:.1} MiB free of {:.1} MiB",
                bytes as f64 / 1048576.0,
                self.ordinal,
                free as f64 / 1048576.0,
                total as f64 / 1048576.0
            )));
        }
        Ok(())
    }

    fn upload<T: DeviceRepr>(&self, v: &[T]) -> Result<CudaSlice<T>> {
        self.stream.clone_htod(v).map_err(cuda_err("copying to the GPU"))
    }

    fn zeros<T: DeviceRepr + ValidAsZeroBits>(&self, n: usize) -> Result<CudaSlice<T>> {
        self.stream.alloc_zeros(n.max(1)).map_err(cuda_err("allocating GPU memory"))
    }

    fn download<T: DeviceRepr>(&self, v: &CudaSlice<T>) -> Result<Vec<T>> {
        self.stream.clone_dtoh(v).map_err(cuda_err("copying from the GPU"))
    }

    fn stream(&self) -> sys::hpsf_stream {
        self.stream.cu_stream() as sys::hpsf_stream
    }

    /// Makes this GPU's context current on the calling thread: the launchers use the CUDA runtime,
    /// which launches into the thread's current context (fits run on worker threads).
    fn bind(&self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(cuda_err("binding the CUDA context"))
    }
}

// Raw device pointers for a launch; the guards must outlive it (bind them to named variables).
macro_rules! dptr {
    ($gpu:expr, $buf:expr) => {
        $buf.device_ptr(&$gpu.stream)
    };
}
macro_rules! dptr_mut {
    ($gpu:expr, $buf:expr) => {
        $buf.device_ptr_mut(&$gpu.stream)
    };
}

/// The launchers of one float type, as function pointers into the bindgen declarations.
#[doc(hidden)]
#[allow(missing_docs)]
pub struct Launchers<T> {
    pub weights_by_sample: unsafe extern "C" fn(
        *const f64,
        *const f64,
        *const i32,
        *const T,
        i32,
        i32,
        f64,
        f64,
        *mut T,
        *mut T,
        *mut T,
        sys::hpsf_stream,
    ) -> i32,
    pub weights_by_cell: unsafe extern "C" fn(
        *const f64,
        *const f64,
        *const i64,
        *const u32,
        *const T,
        i32,
        f64,
        f64,
        *mut T,
        *mut T,
        sys::hpsf_stream,
    ) -> i32,
    pub mt_product: unsafe extern "C" fn(
        *const i32,
        *const T,
        i32,
        i32,
        *const T,
        i32,
        *mut T,
        *const i32,
        sys::hpsf_stream,
    ) -> i32,
    pub m_product: unsafe extern "C" fn(
        *const i64,
        *const u32,
        *const T,
        i32,
        *const T,
        i32,
        T,
        *const T,
        *const T,
        *mut f64,
        *mut T,
        *const i32,
        sys::hpsf_stream,
    ) -> i32,
    pub wdot: unsafe extern "C" fn(*const T, *const T, *const T, i32, i32, *mut f64, sys::hpsf_stream) -> i32,
    pub cg_update: unsafe extern "C" fn(
        *mut T,
        *mut T,
        *const T,
        *const T,
        *const T,
        *const T,
        i32,
        i32,
        *mut f64,
        *const i32,
        sys::hpsf_stream,
    ) -> i32,
    pub cg_direction: unsafe extern "C" fn(*mut T, *const T, *const T, i32, i32, *const i32, sys::hpsf_stream) -> i32,
    pub cg_alpha: unsafe extern "C" fn(*mut f64, i32, i32, *mut i32, *mut T, *mut i32, sys::hpsf_stream) -> i32,
    pub cg_beta:
        unsafe extern "C" fn(*mut f64, i32, i32, i32, *mut i32, *mut i32, *mut T, *mut i32, sys::hpsf_stream) -> i32,
}

/// A float type with CUDA kernels (`f32`, `f64`).
#[doc(hidden)]
pub trait GpuReal: Copy + DeviceRepr + ValidAsZeroBits + Send + Sync + Sized + 'static {
    /// Its launchers.
    const KERNELS: Launchers<Self>;
}

macro_rules! gpu_real {
    ($t:ty: $($field:ident = $f:ident),* $(,)?) => {
        impl GpuReal for $t {
            const KERNELS: Launchers<$t> = Launchers { $($field: sys::$f),* };
        }
    };
}
gpu_real!(f32: weights_by_sample = hpsf_weights_by_sample_f32, weights_by_cell = hpsf_weights_by_cell_f32,
    mt_product = hpsf_mt_product_f32, m_product = hpsf_m_product_f32, wdot = hpsf_wdot_f32,
    cg_update = hpsf_cg_update_f32, cg_direction = hpsf_cg_direction_f32, cg_alpha = hpsf_cg_alpha_f32,
    cg_beta = hpsf_cg_beta_f32);
gpu_real!(f64: weights_by_sample = hpsf_weights_by_sample_f64, weights_by_cell = hpsf_weights_by_cell_f64,
    mt_product = hpsf_mt_product_f64, m_product = hpsf_m_product_f64, wdot = hpsf_wdot_f64,
    cg_update = hpsf_cg_update_f64, cg_direction = hpsf_cg_direction_f64, cg_alpha = hpsf_cg_alpha_f64,
    cg_beta = hpsf_cg_beta_f64);

/// Host inputs of the GPU weight computation (samples in the operator's order).
pub(crate) struct WeightInputs<'a> {
    pub sample_xyz: &'a [[f64; 3]],
    pub cell_xyz: &'a [[f64; 3]],
    pub hi: &'a [i32],
    pub area: &'a [f64],
    pub ptr: &'a [usize],
    pub sample: &'a [u32],
    pub npt: usize,
    pub radius: f64,
    pub sigma_m: f64,
}

/// The weights computed on the GPU, downloaded for the host copy of the operator.
pub(crate) struct Weights<F> {
    pub d_m: Vec<F>,
    pub mt: Vec<F>,
    pub dy: Vec<F>,
    pub m: Vec<F>,
    pub dx: Vec<F>,
}

/// The operator's links and values on a GPU.
pub(crate) struct CudaOperator<F: Real> {
    gpu: Gpu,
    n: usize,
    k: usize,
    npt: usize,
    hi: CudaSlice<i32>,
    mt: CudaSlice<F>,
    ptr: CudaSlice<i64>,
    sample: CudaSlice<u32>,
    m: CudaSlice<F>,
    dx: CudaSlice<F>,
}

impl<F: Real> std::fmt::Debug for CudaOperator<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaOperator({:?}, n = {}, k = {}, npt = {})", self.gpu, self.n, self.k, self.npt)
    }
}

impl<F: Real> CudaOperator<F> {
    /// Computes the weights of the links on the GPU (the fused gather-weight kernels) and keeps the
    /// operator there; returns the weights for the host copy.
    pub fn build(gpu: Gpu, w: &WeightInputs<'_>) -> Result<(Self, Weights<F>)> {
        let (n, k, npt) = (w.sample_xyz.len(), w.cell_xyz.len(), w.npt);
        let nnz = w.sample.len();
        if w.hi.len() != n * npt || w.area.len() != n || w.ptr.len() != k + 1 || w.ptr[k] != nnz {
            return Err(Error::Cuda("inconsistent operator arrays for the GPU (a bug: please report it)".into()));
        }
        let (n32, k32, npt32) = (i32_len(n, "samples")?, i32_len(k, "cells")?, i32_len(npt, "npt")?);
        let fsz = std::mem::size_of::<F>();
        gpu.bind()?;
        gpu.ensure_free(
            (n + k) * 24 + n * npt * (4 + 2 * fsz) + nnz * (12 + fsz) + (n + 2 * k) * 8,
            "building the operator",
        )?;
        let xyz = gpu.upload(w.sample_xyz.as_flattened())?;
        let cxyz = gpu.upload(w.cell_xyz.as_flattened())?;
        let hi = gpu.upload(w.hi)?;
        let area_f: Vec<F> = w.area.iter().map(|&a| F::from_f64(a)).collect();
        let area = gpu.upload(&area_f)?;
        let ptr64: Vec<i64> = w.ptr.iter().map(|&p| p as i64).collect();
        let ptr = gpu.upload(&ptr64)?;
        let sample = gpu.upload(w.sample)?;
        let mut d_m = gpu.zeros::<F>(n * npt)?;
        let mut mt = gpu.zeros::<F>(n * npt)?;
        let mut dy = gpu.zeros::<F>(n)?;
        let mut m = gpu.zeros::<F>(nnz)?;
        let mut dx = gpu.zeros::<F>(k)?;
        let s2 = w.sigma_m * w.sigma_m;
        {
            let (p_xyz, _g1) = dptr!(gpu, xyz);
            let (p_cxyz, _g2) = dptr!(gpu, cxyz);
            let (p_hi, _g3) = dptr!(gpu, hi);
            let (p_area, _g4) = dptr!(gpu, area);
            let (p_ptr, _g5) = dptr!(gpu, ptr);
            let (p_sample, _g6) = dptr!(gpu, sample);
            let (p_dm, _g7) = dptr_mut!(gpu, d_m);
            let (p_mt, _g8) = dptr_mut!(gpu, mt);
            let (p_dy, _g9) = dptr_mut!(gpu, dy);
            let (p_m, _g10) = dptr_mut!(gpu, m);
            let (p_dx, _g11) = dptr_mut!(gpu, dx);
            // SAFETY: every buffer was allocated above with the lengths the launchers read (checked).
            unsafe {
                launched(
                    (F::KERNELS.weights_by_sample)(
                        p_xyz as _,
                        p_cxyz as _,
                        p_hi as _,
                        p_area as _,
                        n32,
                        npt32,
                        w.radius,
                        s2,
                        p_dm as _,
                        p_mt as _,
                        p_dy as _,
                        gpu.stream(),
                    ),
                    "the weights by sample",
                )?;
                launched(
                    (F::KERNELS.weights_by_cell)(
                        p_xyz as _,
                        p_cxyz as _,
                        p_ptr as _,
                        p_sample as _,
                        p_area as _,
                        k32,
                        w.radius,
                        s2,
                        p_m as _,
                        p_dx as _,
                        gpu.stream(),
                    ),
                    "the weights by cell",
                )?;
            }
        }
        let weights = Weights {
            d_m: gpu.download(&d_m)?[..n * npt].to_vec(),
            mt: gpu.download(&mt)?[..n * npt].to_vec(),
            dy: gpu.download(&dy)?[..n].to_vec(),
            m: gpu.download(&m)?[..nnz].to_vec(),
            dx: gpu.download(&dx)?[..k].to_vec(),
        };
        Ok((CudaOperator { gpu, n, k, npt, hi, mt, ptr, sample, m, dx }, weights))
    }

    /// `out (N×s) = v (K×s)·MT` for a device block `v`.
    fn mt_product(
        &self,
        v: &CudaSlice<F>,
        s: usize,
        out: &mut CudaSlice<F>,
        done: Option<&CudaSlice<i32>>,
    ) -> Result<()> {
        let g = &self.gpu;
        let (p_hi, _a) = dptr!(g, self.hi);
        let (p_mt, _b) = dptr!(g, self.mt);
        let (p_v, _c) = dptr!(g, v);
        let (p_out, _d) = dptr_mut!(g, out);
        let done_g = done.map(|d| dptr!(g, d));
        let p_done = done_g.as_ref().map_or(std::ptr::null(), |(p, _)| *p as *const i32);
        // SAFETY: hi and mt hold n·npt entries, v k·s, out n·s (allocated by the callers).
        launched(
            unsafe {
                (F::KERNELS.mt_product)(
                    p_hi as _,
                    p_mt as _,
                    self.n as i32,
                    self.npt as i32,
                    p_v as _,
                    s as i32,
                    p_out as _,
                    p_done,
                    g.stream(),
                )
            },
            "the MT product",
        )
    }

    /// `out (K×s) = u (N×s)·M (+ lam·add)`, with the dot partials of `out·add·Dx` when `partials`.
    #[allow(clippy::too_many_arguments)]
    fn m_product(
        &self,
        u: &CudaSlice<F>,
        s: usize,
        lam: F,
        add: Option<&CudaSlice<F>>,
        partials: Option<&mut CudaSlice<f64>>,
        out: &mut CudaSlice<F>,
        done: Option<&CudaSlice<i32>>,
    ) -> Result<()> {
        let g = &self.gpu;
        let (p_ptr, _a) = dptr!(g, self.ptr);
        let (p_sample, _b) = dptr!(g, self.sample);
        let (p_m, _c) = dptr!(g, self.m);
        let (p_u, _d) = dptr!(g, u);
        let (p_out, _e) = dptr_mut!(g, out);
        let add_g = add.map(|a| dptr!(g, a));
        let p_add = add_g.as_ref().map_or(std::ptr::null(), |(p, _)| *p as *const F);
        let dx_g = partials.is_some().then(|| dptr!(g, self.dx));
        let p_dx = dx_g.as_ref().map_or(std::ptr::null(), |(p, _)| *p as *const F);
        let mut part_g = partials.map(|pp| dptr_mut!(g, pp));
        let p_part = part_g.as_mut().map_or(std::ptr::null_mut(), |(p, _)| *p as *mut f64);
        let done_g = done.map(|d| dptr!(g, d));
        let p_done = done_g.as_ref().map_or(std::ptr::null(), |(p, _)| *p as *const i32);
        // SAFETY: ptr holds k+1 offsets into sample/m; u n·s, out and add k·s, partials blocks(k·s)·s.
        launched(
            unsafe {
                (F::KERNELS.m_product)(
                    p_ptr as _,
                    p_sample as _,
                    p_m as _,
                    self.k as i32,
                    p_u as _,
                    s as i32,
                    lam,
                    p_add,
                    p_dx,
                    p_part,
                    p_out as _,
                    p_done,
                    g.stream(),
                )
            },
            "the M product",
        )
    }

    /// Per-row sums of a partials buffer into `out` (at `offset` doubles from its start).
    fn reduce(
        &self,
        partials: &CudaSlice<f64>,
        nblocks: usize,
        s: usize,
        out: &mut CudaSlice<f64>,
        offset: usize,
        done: Option<&CudaSlice<i32>>,
    ) -> Result<()> {
        let g = &self.gpu;
        let (p_part, _a) = dptr!(g, partials);
        let (p_out, _b) = dptr_mut!(g, out);
        let done_g = done.map(|d| dptr!(g, d));
        let p_done = done_g.as_ref().map_or(std::ptr::null(), |(p, _)| *p as *const i32);
        // SAFETY: partials holds nblocks·s values, out at least offset + s.
        launched(
            unsafe {
                sys::hpsf_reduce_partials(
                    p_part as _,
                    nblocks as i32,
                    s as i32,
                    (p_out as *mut f64).wrapping_add(offset),
                    p_done,
                    g.stream(),
                )
            },
            "the reduction",
        )
    }

    /// Weighted per-row dots `<a, b>_Dx` of two K×s device blocks, on the host.
    fn wdot(&self, a: &CudaSlice<F>, b: &CudaSlice<F>, s: usize, partials: &mut CudaSlice<f64>) -> Result<Vec<f64>> {
        let g = &self.gpu;
        {
            let (p_a, _a) = dptr!(g, a);
            let (p_b, _b) = dptr!(g, b);
            let (p_w, _c) = dptr!(g, self.dx);
            let (p_part, _d) = dptr_mut!(g, partials);
            // SAFETY: a, b hold k·s, dx k, partials blocks(k·s)·s values.
            launched(
                unsafe {
                    (F::KERNELS.wdot)(p_a as _, p_b as _, p_w as _, self.k as i32, s as i32, p_part as _, g.stream())
                },
                "a dot product",
            )?;
        }
        let mut out = g.zeros::<f64>(s)?;
        self.reduce(partials, blocks(self.k * s), s, &mut out, 0, None)?;
        Ok(g.download(&out)?[..s].to_vec())
    }

    /// `dst = r + beta·dst` with one beta for all rows (used for differences: beta = −1).
    fn combine(
        &self,
        dst: &mut CudaSlice<F>,
        r: &CudaSlice<F>,
        beta: F,
        s: usize,
        not_done: &CudaSlice<i32>,
    ) -> Result<()> {
        let g = &self.gpu;
        let b = g.upload(&vec![beta; s])?;
        let (p_dst, _a) = dptr_mut!(g, dst);
        let (p_r, _b) = dptr!(g, r);
        let (p_beta, _c) = dptr!(g, b);
        let (p_done, _d) = dptr!(g, not_done);
        // SAFETY: dst and r hold k·s values, beta s, the flag one int (0).
        launched(
            unsafe {
                (F::KERNELS.cg_direction)(
                    p_dst as _,
                    p_r as _,
                    p_beta as _,
                    self.k as i32,
                    s as i32,
                    p_done as _,
                    g.stream(),
                )
            },
            "a vector update",
        )
    }

    /// `y0·M` (K×s interleaved) on the GPU for a host block y0 (N×s, the operator's sample order).
    pub fn apply_m(&self, y0: &[F], s: usize) -> Result<Vec<F>> {
        let g = &self.gpu;
        g.bind()?;
        g.ensure_free((self.n + self.k) * s * std::mem::size_of::<F>(), "this product")?;
        let u = g.upload(y0)?;
        let mut out = g.zeros::<F>(self.k * s)?;
        self.m_product(&u, s, F::ZERO, None, None, &mut out, None)?;
        Ok(g.download(&out)?[..self.k * s].to_vec())
    }

    /// `v·MT` (N×s interleaved) on the GPU for a host block v (K×s).
    pub fn apply_mt(&self, v: &[F], s: usize) -> Result<Vec<F>> {
        let g = &self.gpu;
        g.bind()?;
        g.ensure_free((self.n + self.k) * s * std::mem::size_of::<F>(), "this product")?;
        let dv = g.upload(v)?;
        let mut out = g.zeros::<F>(self.n * s)?;
        self.mt_product(&dv, s, &mut out, None)?;
        Ok(g.download(&out)?[..self.n * s].to_vec())
    }

    /// The fit on the GPU for s selected rows (the same algorithm as `solver::cg`, SPEC §4), from
    /// y0 (N×s, scaled, the operator's order) and x0 (K×s): returns x_ref and the CG outcome.
    pub fn solve(&self, y0: &[F], x0: Option<Vec<F>>, s: usize, opts: &FitOptions<F>) -> Result<(Vec<F>, CgOut<F>)> {
        let (lam, max_iter, tol, stopping) = (F::from_f64(opts.lam), opts.max_iter, opts.tol, opts.stopping);
        let g = &self.gpu;
        let (n, k) = (self.n, self.k);
        let fsz = std::mem::size_of::<F>();
        let nb = blocks(k * s);
        g.bind()?;
        g.ensure_free(2 * n * s * fsz + 6 * k * s * fsz + (nb * s + (max_iter + 5) * s) * 8, "this fit")?;
        let zero_flag = g.zeros::<i32>(1)?;
        // x_ref = y0·M; rhs = x_ref − (x_ref·MT)·M
        let dy0 = g.upload(y0)?;
        let mut x_ref = g.zeros::<F>(k * s)?;
        self.m_product(&dy0, s, F::ZERO, None, None, &mut x_ref, None)?;
        let mut t = g.zeros::<F>(n * s)?;
        self.mt_product(&x_ref, s, &mut t, None)?;
        let mut rhs = g.zeros::<F>(k * s)?;
        self.m_product(&t, s, F::ZERO, None, None, &mut rhs, None)?;
        self.combine(&mut rhs, &x_ref, -F::ONE, s, &zero_flag)?;
        let mut partials = g.zeros::<f64>(nb * s)?;
        let rhs_dots = self.wdot(&rhs, &rhs, s, &mut partials)?;

        // x = x0, r = rhs − A x0
        let x0_nonzero = x0.as_ref().is_some_and(|v| v.iter().any(|&a| a != F::ZERO));
        let mut x = match &x0 {
            Some(v) => g.upload(v)?,
            None => g.zeros::<F>(k * s)?,
        };
        let mut r = rhs;
        let mut ap = g.zeros::<F>(k * s)?;
        if x0_nonzero {
            self.mt_product(&x, s, &mut t, None)?;
            self.m_product(&t, s, lam, Some(&x), None, &mut ap, None)?;
            self.combine(&mut ap, &r, -F::ONE, s, &zero_flag)?;
            std::mem::swap(&mut r, &mut ap);
        }
        let rs = self.wdot(&r, &r, s, &mut partials)?;

        // thresholds and the rows that start finished (as solver::cg)
        let pooled = tol * rhs_dots.iter().sum::<f64>().sqrt();
        let thr: Vec<f64> = match stopping {
            Stopping::Pooled => vec![pooled; s],
            Stopping::PerRow => rhs_dots.iter().map(|d| tol * d.sqrt()).collect(),
        };
        // rows with nothing to solve: the pooled rule returns x0 (as the reference), the per-row rule δ = 0
        let idle: Vec<bool> = match stopping {
            Stopping::Pooled => vec![pooled == 0.0; s],
            Stopping::PerRow => thr.iter().map(|&t| t == 0.0).collect(),
        };
        let zero_rows: Vec<bool> = idle.iter().map(|&i| i && stopping == Stopping::PerRow).collect();
        let flags: Vec<i32> = idle.iter().map(|&i| i as i32).collect();
        let running = flags.contains(&0) && max_iter > 0;
        let mut state_h = vec![0.0f64; (4 + max_iter + 1) * s];
        state_h[..s].copy_from_slice(&rs);
        state_h[3 * s..4 * s].copy_from_slice(&thr);
        for j in 0..s {
            state_h[4 * s + j] = rs[j].sqrt();
        }
        let mut state = g.upload(&state_h)?;
        let mut d_flags = g.upload(&flags)?;
        let mut counters = g.zeros::<i32>(1 + s)?;
        let mut done = g.upload(&[if running { 0i32 } else { 1 }])?;
        let mut alpha = g.zeros::<F>(s)?;
        let mut beta = g.zeros::<F>(s)?;
        let mut p = g.stream.clone_dtod(&r).map_err(cuda_err("copying on the GPU"))?;
        let per_row = (stopping == Stopping::PerRow) as i32;
        let max_iter32 = i32_len(max_iter, "max_iter")?;

        let mut it = 0;
        while running && it < max_iter {
            self.mt_product(&p, s, &mut t, Some(&done))?;
            self.m_product(&t, s, lam, Some(&p), Some(&mut partials), &mut ap, Some(&done))?;
            self.reduce(&partials, nb, s, &mut state, s, Some(&done))?;
            {
                let (p_state, _a) = dptr_mut!(g, state);
                let (p_flags, _b) = dptr_mut!(g, d_flags);
                let (p_alpha, _c) = dptr_mut!(g, alpha);
                let (p_done, _d) = dptr_mut!(g, done);
                // SAFETY: state holds (5 + max_iter)·s doubles, flags and alpha s, done one.
                launched(
                    unsafe {
                        (F::KERNELS.cg_alpha)(
                            p_state as _,
                            s as i32,
                            per_row,
                            p_flags as _,
                            p_alpha as _,
                            p_done as _,
                            g.stream(),
                        )
                    },
                    "the CG step length",
                )?;
            }
            {
                let (p_x, _a) = dptr_mut!(g, x);
                let (p_r, _b) = dptr_mut!(g, r);
                let (p_p, _c) = dptr!(g, p);
                let (p_ap, _d) = dptr!(g, ap);
                let (p_alpha, _e) = dptr!(g, alpha);
                let (p_w, _f) = dptr!(g, self.dx);
                let (p_part, _h) = dptr_mut!(g, partials);
                let (p_done, _i) = dptr!(g, done);
                // SAFETY: x, r, p, ap hold k·s, alpha s, dx k, partials nb·s.
                launched(
                    unsafe {
                        (F::KERNELS.cg_update)(
                            p_x as _,
                            p_r as _,
                            p_p as _,
                            p_ap as _,
                            p_alpha as _,
                            p_w as _,
                            k as i32,
                            s as i32,
                            p_part as _,
                            p_done as _,
                            g.stream(),
                        )
                    },
                    "the CG update",
                )?;
            }
            self.reduce(&partials, nb, s, &mut state, 2 * s, Some(&done))?;
            {
                let (p_state, _a) = dptr_mut!(g, state);
                let (p_flags, _b) = dptr_mut!(g, d_flags);
                let (p_count, _c) = dptr_mut!(g, counters);
                let (p_beta, _d) = dptr_mut!(g, beta);
                let (p_done, _e) = dptr_mut!(g, done);
                // SAFETY: as for cg_alpha; counters hold 1 + s ints.
                launched(
                    unsafe {
                        (F::KERNELS.cg_beta)(
                            p_state as _,
                            s as i32,
                            per_row,
                            max_iter32,
                            p_flags as _,
                            p_count as _,
                            p_beta as _,
                            p_done as _,
                            g.stream(),
                        )
                    },
                    "the CG direction update",
                )?;
            }
            {
                let (p_p, _a) = dptr_mut!(g, p);
                let (p_r, _b) = dptr!(g, r);
                let (p_beta, _c) = dptr!(g, beta);
                let (p_done, _d) = dptr!(g, done);
                // SAFETY: p and r hold k·s values, beta s.
                launched(
                    unsafe {
                        (F::KERNELS.cg_direction)(
                            p_p as _,
                            p_r as _,
                            p_beta as _,
                            k as i32,
                            s as i32,
                            p_done as _,
                            g.stream(),
                        )
                    },
                    "the CG direction",
                )?;
            }
            it += 1;
            if it % POLL_EVERY == 0 && g.download(&done)?[0] != 0 {
                break;
            }
        }

        let x_ref_h = g.download(&x_ref)?[..k * s].to_vec();
        let mut x_h = g.download(&x)?[..k * s].to_vec();
        let state_h = g.download(&state)?;
        let counters_h = g.download(&counters)?;
        let flags_h = g.download(&d_flags)?;
        for (j, _) in zero_rows.iter().enumerate().filter(|(_, &z)| z) {
            for row in x_h.chunks_exact_mut(s) {
                row[j] = F::ZERO; // per-row rule: a zero right-hand side gives δ = 0
            }
        }
        let iterations: Vec<usize> = (0..s).map(|j| counters_h[1 + j].max(0) as usize).collect();
        let norms: Vec<Vec<f64>> =
            (0..s)
                .map(|j| {
                    if zero_rows[j] {
                        vec![0.0]
                    } else {
                        (0..=iterations[j]).map(|t| state_h[(4 + t) * s + j]).collect()
                    }
                })
                .collect();
        let converged = (0..s)
            .map(|j| match (idle[j], stopping) {
                (true, Stopping::Pooled) => rs[j] == 0.0,
                (true, Stopping::PerRow) => true,
                (false, _) => flags_h[j] == 1 || norms[j].last().is_some_and(|&v| v <= thr[j]),
            })
            .collect();
        Ok((x_ref_h, CgOut { x: x_h, iterations, norms, converged }))
    }
}
