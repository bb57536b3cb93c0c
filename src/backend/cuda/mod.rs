//! The CUDA backend: device buffers through cudarc's driver API and the kernels of `csrc/`, launched
//! through the `extern "C"` launchers of `include/hpsf_kernels.h` (declarations made by bindgen).
//!
//! No algorithm lives here: [`ops`] implements the [`super::Backend`] primitives, each a launch
//! preceded by a check of every length it relies on (a mismatch is an [`Error::Cuda`], never a
//! kernel reading out of bounds). The CUDA runtime (statically linked) and cudarc's driver context
//! share the device's primary context, so buffers allocated here are valid for the launchers. All
//! work runs on one stream, in order; cudarc's per-buffer event tracking is off.

mod construct;
mod layout;
mod ops;
mod replay;

pub(crate) use construct::{construct, distinct_values, spacing_areas, LinksOnGpu, MAX_LINKS};
pub(crate) use replay::counts as graph_counts;

use super::{cpu, DeviceValues, LinkWeights, WeightInputs};
use crate::error::{Error, Result};
use crate::real::Real;
use crate::sparse::{CellLinks, SampleLinks};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::Arc;

#[allow(non_camel_case_types, non_upper_case_globals, non_snake_case, dead_code, missing_docs, clippy::all)]
mod sys {
    include!(concat!(env!("OUT_DIR"), "/hpsf_kernels.rs"));
}

/// `cudaErrorInsufficientDriver`: the installed driver is older than the runtime.
pub(super) const CUDA_ERROR_INSUFFICIENT_DRIVER: i32 = 35;

/// The doubles of scratch a reduction over `rows` rows of `s` columns needs (its tiles' partials
/// and the levels of the tree above them, `csrc/cg.cu`).
fn reduction_space(rows: usize, s: usize) -> Result<usize> {
    let s32 = i32_len(s, "rows of a batch")?;
    // SAFETY: a pure host function of two integers.
    Ok(unsafe { sys::hpsf_reduction_space(rows as i64, s32) } as usize)
}

fn cuda_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
    move |e| Error::Cuda(format!("{what}: {e}"))
}

/// A size as the kernels' 32-bit count.
fn i32_len(n: usize, what: &'static str) -> Result<i32> {
    i32::try_from(n).map_err(|_| Error::TooLarge { what, value: n as u64, limit: i32::MAX as u64 })
}

/// Fails unless a buffer holds what a launch will read or write.
fn need(got: usize, expected: usize, what: &str) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::Cuda(format!(
            "{what} holds {got} values where the kernel needs {expected} (a bug in healpix-psf: please report it)"
        )))
    }
}

/// The bytes of a slice of plain numbers (f32, f64 and the integer types used here: no padding,
/// every bit pattern valid).
fn bytes_of<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: T is a plain number type (see above); the byte view covers exactly v's memory.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

fn bytes_of_mut<T: Copy>(v: &mut [T]) -> &mut [u8] {
    // SAFETY: as in bytes_of; any bytes written are a valid T.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), std::mem::size_of_val(v)) }
}

/// The name csrc/emu/libcuda.cpp gives its device.
const EMULATOR: &str = "healpix-psf CUDA emulator";

/// Fails unless the kernels and the driver agree on where kernels run: nvcc's kernels need NVIDIA's
/// driver, the host emulator's (a build with `HPSF_CUDA_EMULATE=1`, csrc/emu) its own libcuda.so.
fn check_emulation(ctx: &CudaContext) -> Result<()> {
    // SAFETY: a constant of the kernels' library.
    let emulated = unsafe { sys::hpsf_emulated() } != 0;
    let driver_emulates = ctx.name().is_ok_and(|n| n == EMULATOR);
    match (emulated, driver_emulates) {
        (true, false) => Err(Error::DeviceUnavailable(
            "this build runs its kernels on the host's CUDA emulator (HPSF_CUDA_EMULATE=1), but the libcuda.so \
             loaded is not the emulator's: put <target>/<profile>/cuda-emu on LD_LIBRARY_PATH, or build without \
             HPSF_CUDA_EMULATE"
                .into(),
        )),
        (false, true) => Err(Error::DeviceUnavailable(
            "the libcuda.so loaded is the CUDA emulator's (csrc/emu), but this build's kernels were compiled by \
             nvcc for a GPU: take the emulator's folder off LD_LIBRARY_PATH"
                .into(),
        )),
        _ => Ok(()),
    }
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

/// A device array of `len` values of T, kept as bytes (so that any of the sealed float types and
/// the index types can be held without further bounds).
pub(crate) struct Buf<T> {
    bytes: CudaSlice<u8>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T> Drop for Buf<T> {
    fn drop(&mut self) {
        // cudarc frees the memory without making its context current: an operator dropped on a
        // thread that never used CUDA (freed through the C ABI, say) would otherwise leak it
        let _ = self.bytes.context().bind_to_thread();
    }
}

impl<T> Buf<T> {
    fn len(&self) -> usize {
        self.len
    }
    /// The device address, for a launch on the GPU's stream (event tracking is off, so cudarc's
    /// guard has nothing to record and is dropped at once).
    fn ptr(&self, g: &Gpu) -> *const c_void {
        let (p, _guard) = self.bytes.device_ptr(&g.stream);
        p as usize as *const c_void
    }
    fn ptr_mut(&mut self, g: &Gpu) -> *mut c_void {
        let (p, _guard) = self.bytes.device_ptr_mut(&g.stream);
        p as usize as *mut c_void
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
        check_emulation(&ctx)?;
        // SAFETY: every buffer of this crate is used on this context's single default stream, so no
        // cross-stream synchronisation is needed and the per-use event records are pure overhead.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        Ok(Gpu { ctx, stream, ordinal })
    }

    /// The error of a failed allocation of `bytes`, with the GPU's free memory.
    fn out_of_memory(&self, bytes: usize, e: cudarc::driver::DriverError) -> Error {
        let mib = bytes as f64 / 1048576.0;
        Error::Cuda(format!("allocating {mib:.1} MiB on cuda:{} failed ({e}){}", self.ordinal, self.free_memory()))
    }

    /// The error of a runtime that needs a newer driver than the machine's.
    fn old_driver(&self) -> Error {
        Error::DeviceUnavailable(format!(
            "the NVIDIA driver of cuda:{} is older than the CUDA 13 runtime this build links: update the driver \
             (R580 or newer)",
            self.ordinal
        ))
    }

    /// The error of running out of device memory during `what`, with the GPU's free memory.
    fn out_of_memory_during(&self, what: &str) -> Error {
        Error::Cuda(format!("{what} ran out of memory on cuda:{}{}", self.ordinal, self.free_memory()))
    }

    /// ": F MiB free of T MiB" (nothing when the driver cannot say).
    fn free_memory(&self) -> String {
        let mib = |b: usize| b as f64 / 1048576.0;
        self.ctx
            .mem_get_info()
            .map_or(String::new(), |(free, total)| format!(": {:.1} MiB free of {:.1} MiB", mib(free), mib(total)))
    }

    /// `len` zeros.
    fn alloc<T>(&self, len: usize) -> Result<Buf<T>> {
        let bytes = len * std::mem::size_of::<T>();
        replay::unless_recording("an allocation")?;
        self.bind()?;
        let buf = self.stream.alloc_zeros::<u8>(bytes.max(1)).map_err(|e| self.out_of_memory(bytes, e))?;
        Ok(Buf { bytes: buf, len, _t: PhantomData })
    }

    /// A device copy of `v`.
    fn put<T: Copy>(&self, v: &[T]) -> Result<Buf<T>> {
        let mut buf = self.alloc::<T>(v.len())?;
        self.write(&mut buf, v)?;
        Ok(buf)
    }

    /// `src` copied into the first `src.len()` values of `dst`.
    fn write<T: Copy>(&self, dst: &mut Buf<T>, src: &[T]) -> Result<()> {
        if src.len() > dst.len {
            return Err(Error::Cuda(format!(
                "copying {} values into a buffer of {} (a bug in healpix-psf: please report it)",
                src.len(),
                dst.len
            )));
        }
        if !src.is_empty() {
            replay::unless_recording("a copy to the GPU")?;
            self.bind()?;
            let mut d = dst.bytes.slice_mut(..std::mem::size_of_val(src));
            self.stream.memcpy_htod(bytes_of(src), &mut d).map_err(cuda_err("copying to the GPU"))?;
        }
        Ok(())
    }

    /// The first `dst.len()` values of `src` copied into `dst` (waits for the work before it).
    fn read_into<T: Copy>(&self, dst: &mut [T], src: &Buf<T>) -> Result<()> {
        need(src.len.min(dst.len()), dst.len(), "a copy back")?;
        if !dst.is_empty() {
            replay::unless_recording("a copy from the GPU")?;
            self.bind()?;
            let s = src.bytes.slice(..std::mem::size_of_val(dst));
            self.stream.memcpy_dtoh(&s, bytes_of_mut(dst)).map_err(cuda_err("copying from the GPU"))?;
        }
        Ok(())
    }

    /// The values of a device array (waits for the work before it).
    fn get<T: Copy + Default>(&self, b: &Buf<T>) -> Result<Vec<T>> {
        let mut v = vec![T::default(); b.len];
        self.read_into(&mut v, b)?;
        Ok(v)
    }

    /// `dst = src` on the device (same lengths).
    fn copy<T>(&self, dst: &mut Buf<T>, src: &Buf<T>, what: &str) -> Result<()> {
        need(dst.len, src.len, what)?;
        if src.len > 0 {
            self.bind()?;
            let n = src.len * std::mem::size_of::<T>();
            let mut d = dst.bytes.slice_mut(..n);
            self.on().memcpy_dtod(&src.bytes.slice(..n), &mut d).map_err(cuda_err("copying on the GPU"))?;
        }
        Ok(())
    }

    /// The stream launches and copies on the device go to: the GPU's, or the one this thread
    /// records an iteration on.
    fn on(&self) -> Arc<CudaStream> {
        replay::recording_stream().unwrap_or_else(|| self.stream.clone())
    }

    /// [`Gpu::on`] as the launchers take it.
    fn stream(&self) -> sys::hpsf_stream {
        self.on().cu_stream() as sys::hpsf_stream
    }

    /// Makes this GPU's context current on the calling thread: the launchers use the CUDA runtime,
    /// which launches into the thread's current context (fits run on worker threads).
    fn bind(&self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(cuda_err("binding the CUDA context"))
    }

    /// Runs a launch (after binding the context) and turns its status into a result.
    fn launch(&self, what: &str, f: impl FnOnce(sys::hpsf_stream) -> i32) -> Result<()> {
        self.bind()?;
        match f(self.stream()) {
            0 => Ok(()),
            CUDA_ERROR_INSUFFICIENT_DRIVER => Err(self.old_driver()),
            code => Err(Error::Cuda(format!("launching {what} failed (cudaError {code})"))),
        }
    }
}

/// The kernels' element type of F.
fn dtype<F: Real>() -> i32 {
    if F::IS_F64 {
        sys::HPSF_F64 as i32
    } else {
        sys::HPSF_F32 as i32
    }
}

/// The operator's links and values on a GPU.
pub(crate) struct CudaOperator<F: Real> {
    gpu: Gpu,
    n: usize,
    k: usize,
    npt: usize,
    hi: Buf<i32>,
    mt: Buf<F>,
    ptr: Buf<i64>,
    sample: Buf<u32>,
    m: Buf<F>,
    dx: Buf<F>,
    /// `d_m`, `area` and `Dy` by sample position (kept for the host's accessors; `None` where the
    /// weights were computed on the host, which keeps them).
    d_m: Option<Buf<F>>,
    area: Option<Buf<F>>,
    dy: Option<Buf<F>>,
    /// The sample axis (`order`, `position`) on the device, copied at its first use.
    sample_axis: std::sync::OnceLock<(Buf<u32>, Buf<u32>)>,
}

impl<F: Real> std::fmt::Debug for CudaOperator<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaOperator({:?}, n = {}, k = {}, npt = {})", self.gpu, self.n, self.k, self.npt)
    }
}

impl<F: Real> CudaOperator<F> {
    /// The operator of the links `w` on the GPU: weights computed on the GPU (the fused
    /// gather-weight kernels) from the unit vectors of samples and cells, where they stay; or, for
    /// links given without coordinates (`PsfResampler::from_links`), on the CPU, copied to the GPU
    /// and returned for the host copy.
    pub fn build(gpu: Gpu, w: WeightInputs<'_, F>) -> Result<(Self, Option<LinkWeights<F>>)> {
        let (n, k, npt, nnz) = (w.area.len(), w.ptr.len() - 1, w.npt, w.sample.len());
        need(w.hi.len(), n * npt, "the links by sample")?;
        need(w.ptr[k], nnz, "the links by cell")?;
        i32_len(n, "samples")?;
        i32_len(k, "cells")?;
        i32_len(npt, "npt")?;
        let ptr64: Vec<i64> = w.ptr.iter().map(|&p| p as i64).collect();
        let (hi, ptr, sample) = (gpu.put(w.hi)?, gpu.put(&ptr64)?, gpu.put(w.sample)?);
        if w.sample_xyz.len() != n || w.cell_xyz.len() != k {
            let weights = cpu::link_weights(w);
            let op = CudaOperator {
                mt: gpu.put(&weights.mt)?,
                m: gpu.put(&weights.m)?,
                dx: gpu.put(&weights.dx)?,
                gpu,
                n,
                k,
                npt,
                hi,
                ptr,
                sample,
                d_m: None,
                area: None,
                dy: None,
                sample_axis: Default::default(),
            };
            return Ok((op, Some(weights)));
        }
        let xyz = gpu.put(w.sample_xyz.as_flattened())?;
        let cxyz = gpu.put(w.cell_xyz.as_flattened())?;
        let links = LinksOnGpu { gpu, n, k, npt, hi, ptr, sample, xyz, cell_xyz: cxyz };
        Ok((Self::from_gpu_links(links, w.area, w.radius, w.sigma_m)?, None))
    }

    /// The operator of links on the GPU, its weights computed there (the fused gather-weight
    /// kernels) from the unit vectors and the per-position areas `area`; they stay there.
    pub fn from_gpu_links(links: LinksOnGpu, area: &[f64], radius: f64, sigma_m: f64) -> Result<Self> {
        let LinksOnGpu { gpu, n, k, npt, hi, ptr, sample, xyz, cell_xyz } = links;
        let nnz = sample.len();
        need(area.len(), n, "the areas")?;
        need(hi.len(), n * npt, "the links by sample")?;
        need(ptr.len(), k + 1, "the links by cell")?;
        need(xyz.len(), 3 * n, "the samples' unit vectors")?;
        need(cell_xyz.len(), 3 * k, "the cells' unit vectors")?;
        let (n32, k32, npt32) = (i32_len(n, "samples")?, i32_len(k, "cells")?, i32_len(npt, "npt")?);
        let area = gpu.put(&area.iter().map(|&a| F::from_f64(a)).collect::<Vec<F>>())?;
        let (mut d_m, mut mt, mut dy) = (gpu.alloc::<F>(n * npt)?, gpu.alloc::<F>(n * npt)?, gpu.alloc::<F>(n)?);
        let (mut m, mut dx) = (gpu.alloc::<F>(nnz)?, gpu.alloc::<F>(k)?);
        let s2 = sigma_m * sigma_m;
        let g = &gpu;
        // SAFETY (both launches): every buffer holds the lengths the launchers read and write (n
        // samples of npt links, k cells, nnz links; checked above or allocated so). The pattern's
        // entries (cell indices below k, sample positions below n, ptr within nnz) are the
        // construction's or were checked by the caller of `build`.
        g.launch("the weights by sample", |st| unsafe {
            sys::hpsf_weights_by_sample(
                dtype::<F>(),
                xyz.ptr(g).cast(),
                cell_xyz.ptr(g).cast(),
                hi.ptr(g).cast(),
                area.ptr(g),
                n32,
                npt32,
                radius,
                s2,
                d_m.ptr_mut(g),
                mt.ptr_mut(g),
                dy.ptr_mut(g),
                st,
            )
        })?;
        g.launch("the weights by cell", |st| unsafe {
            sys::hpsf_weights_by_cell(
                dtype::<F>(),
                xyz.ptr(g).cast(),
                cell_xyz.ptr(g).cast(),
                ptr.ptr(g).cast(),
                sample.ptr(g).cast(),
                area.ptr(g),
                k32,
                radius,
                s2,
                m.ptr_mut(g),
                dx.ptr_mut(g),
                st,
            )
        })?;
        let (d_m, area, dy) = (Some(d_m), Some(area), Some(dy));
        let sample_axis = Default::default();
        Ok(CudaOperator { gpu, n, k, npt, hi, mt, ptr, sample, m, dx, d_m, area, dy, sample_axis })
    }

    /// The links by sample position, copied to the host.
    pub fn sample_links(&self) -> Result<SampleLinks<F>> {
        Ok(SampleLinks { npt: self.npt, hi: self.gpu.get(&self.hi)?, mt: self.gpu.get(&self.mt)? })
    }

    /// The links by cell, copied to the host.
    pub fn cell_links(&self) -> Result<CellLinks<F>> {
        let ptr = self.gpu.get(&self.ptr)?.into_iter().map(|p| p as usize).collect();
        Ok(CellLinks { ptr, sample: self.gpu.get(&self.sample)?, m: self.gpu.get(&self.m)? })
    }

    /// Values copied to the host.
    pub fn values(&self, which: DeviceValues) -> Result<Vec<F>> {
        let buf = match which {
            DeviceValues::Dx => Some(&self.dx),
            DeviceValues::DistM => self.d_m.as_ref(),
            DeviceValues::Area => self.area.as_ref(),
            DeviceValues::Dy => self.dy.as_ref(),
        };
        match buf {
            Some(b) => self.gpu.get(b),
            None => Err(Error::Cuda(format!(
                "{which:?} is not on the GPU: its host copy should exist (a bug in healpix-psf: please report it)"
            ))),
        }
    }

    /// Bytes held on the GPU.
    pub fn device_bytes(&self) -> usize {
        let f = std::mem::size_of::<F>();
        let opt = |b: &Option<Buf<F>>| b.as_ref().map_or(0, |b| b.len() * f);
        let axis = self.sample_axis.get().map_or(0, |(o, p)| 4 * (o.len() + p.len()));
        self.hi.len() * 4
            + self.mt.len() * f
            + self.ptr.len() * 8
            + self.sample.len() * 4
            + self.m.len() * f
            + self.dx.len() * f
            + opt(&self.d_m)
            + opt(&self.area)
            + opt(&self.dy)
            + axis
    }
}
