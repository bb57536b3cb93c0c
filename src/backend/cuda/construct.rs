//! An operator's links built on the GPU (`csrc/construct.cu`): hashing, the keep stage, the search,
//! the pruning and the links by cell run on the device with the steps of `csrc/construct.h` (which
//! the host tests hold to the CPU stages). The links stay there; only the sample order and the cell
//! ids come to the host.

use super::{sys, Buf, Gpu};
use crate::backend::{ConstructArgs, Constructed, DeviceLinks};
use crate::error::{Error, Result};

/// Links (N·npt) the GPU construction takes, exclusive (CUB's counts are ints); more are built by
/// the CPU stages.
pub(crate) const MAX_LINKS: usize = i32::MAX as usize;

/// The device's results, freed on drop.
struct Handle(*mut sys::hpsf_construction);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from hpsf_construct_run (or is null) and is freed once.
        unsafe { sys::hpsf_construct_free(self.0) };
    }
}

/// The links of the samples (lon, lat in degrees, validated) built on `gpu`; `None` when the keep
/// stage's lists outgrow CUB's 32-bit counts (the host stages then build them).
pub(crate) fn construct(gpu: &Gpu, lon: &[f64], lat: &[f64], a: &ConstructArgs) -> Result<Option<Constructed>> {
    let n = lon.len();
    if lat.len() != n {
        return Err(Error::LengthMismatch { what: "lat_deg", expected: n, got: lat.len() });
    }
    let links = n.saturating_mul(a.npt);
    if links >= MAX_LINKS {
        return Err(Error::TooLarge { what: "links (N·npt)", value: links as u64, limit: MAX_LINKS as u64 - 1 });
    }
    let args = sys::hpsf_construct_args {
        depth: a.level as i32,
        wgs84: a.wgs84 as i32,
        nest: a.nest as i32,
        ring_weight: a.ring_weight,
        ring_init: a.ring_init,
        ring_max: a.ring_max,
        npt: i32::try_from(a.npt).map_err(|_| Error::param("npt", a.npt, "at most 2^31 − 1"))?,
        radius: a.radius,
        sigma_m: a.sigma_m,
        threshold: a.threshold,
    };
    let mut sizes = sys::hpsf_construct_sizes {
        n_unique: 0,
        n_candidates: 0,
        n_kept: 0,
        k: 0,
        n_partial: 0,
        n_empty: 0,
        nnz: 0,
        max_sum: 0.0,
    };
    let mut raw: *mut sys::hpsf_construction = std::ptr::null_mut();
    gpu.bind()?;
    // SAFETY: lon and lat hold n host values; args, raw and sizes are live locals.
    let code = unsafe {
        sys::hpsf_construct_run(&args, lon.as_ptr(), lat.as_ptr(), n as i64, &mut raw, &mut sizes, gpu.stream())
    };
    let handle = Handle(raw);
    match code {
        0 => {}
        c if c == sys::HPSF_ERR_TOO_LARGE as i32 => return Ok(None),
        c => status(gpu, c, "the construction")?,
    }
    if sizes.n_kept == 0 {
        return Err(Error::NoCellPassedThreshold {
            max_weight_sum: sizes.max_sum,
            threshold: a.threshold,
            sigma_m: a.sigma_m,
        });
    }
    let (k, nnz) = (sizes.k as usize, sizes.nnz as usize);
    let mut order = vec![0u32; n];
    let mut cell_ids = vec![0u64; k];
    let mut on_gpu = LinksOnGpu {
        gpu: gpu.clone(),
        n,
        k,
        npt: a.npt,
        hi: gpu.alloc(links)?,
        ptr: gpu.alloc(k + 1)?,
        sample: gpu.alloc(nnz)?,
        xyz: gpu.alloc(3 * n)?,
        cell_xyz: gpu.alloc(3 * k)?,
    };
    let g = gpu;
    // SAFETY: the host arrays hold n and k values, the device buffers n·npt, k + 1, nnz, 3n and 3k
    // (the handle's sizes), as hpsf_construct_fetch copies them.
    let code = unsafe {
        sys::hpsf_construct_fetch(
            handle.0,
            order.as_mut_ptr(),
            on_gpu.xyz.ptr_mut(g).cast(),
            on_gpu.hi.ptr_mut(g).cast(),
            cell_ids.as_mut_ptr(),
            on_gpu.cell_xyz.ptr_mut(g).cast(),
            on_gpu.ptr.ptr_mut(g).cast(),
            on_gpu.sample.ptr_mut(g).cast(),
        )
    };
    if code != 0 {
        return Err(Error::Cuda(format!("copying the construction's results failed (cudaError {code})")));
    }
    drop(handle);
    Ok(Some(Constructed {
        order,
        cell_ids,
        nnz,
        n_unique: sizes.n_unique as usize,
        n_candidates: sizes.n_candidates as usize,
        n_kept: sizes.n_kept as usize,
        n_partial: sizes.n_partial as usize,
        n_empty: sizes.n_empty as usize,
        links: DeviceLinks::Cuda(Box::new(on_gpu)),
    }))
}

/// The links a GPU construction built, on that GPU: by sample position (`hi`), by cell (`ptr`,
/// `sample`), and the unit vectors of samples (by position) and cells.
pub(crate) struct LinksOnGpu {
    pub(super) gpu: Gpu,
    pub(super) n: usize,
    pub(super) k: usize,
    pub(super) npt: usize,
    pub(super) hi: Buf<i32>,
    pub(super) ptr: Buf<i64>,
    pub(super) sample: Buf<u32>,
    pub(super) xyz: Buf<f64>,
    pub(super) cell_xyz: Buf<f64>,
}

/// The spacing estimate of each sample's area (`Area::Spacing`; lon, lat in degrees, validated)
/// computed on `gpu`, by sample: `csrc/construct.cu`'s `spacing_areas`, the CPU's estimate bit for
/// bit (the same buckets, candidates and order; `construct.h`'s `hpsf_spacing_area`).
pub(crate) fn spacing_areas(gpu: &Gpu, lon: &[f64], lat: &[f64], radius: f64) -> Result<Vec<f64>> {
    let n = lon.len();
    if lat.len() != n {
        return Err(Error::LengthMismatch { what: "lat_deg", expected: n, got: lat.len() });
    }
    let mut out = vec![0.0f64; n];
    gpu.bind()?;
    // SAFETY: lon, lat and out hold n host values.
    let code = unsafe {
        sys::hpsf_spacing_areas(lon.as_ptr(), lat.as_ptr(), n as i64, radius, out.as_mut_ptr(), gpu.stream())
    };
    status(gpu, code, "the sample areas").map(|()| out)
}

/// How many distinct values `v` holds (−0 and 0 count once; no NaN), counted on `gpu`: the ring
/// test of the automatic areas.
pub(crate) fn distinct_values(gpu: &Gpu, v: &[f64]) -> Result<usize> {
    let mut count = 0i64;
    gpu.bind()?;
    // SAFETY: v holds v.len() host values; count is a live local.
    let code = unsafe { sys::hpsf_distinct_values(v.as_ptr(), v.len() as i64, &mut count, gpu.stream()) };
    status(gpu, code, "counting latitudes").map(|()| count as usize)
}

/// The result of a construction entry point's status `code` (a cudaError) during `what`.
fn status(gpu: &Gpu, code: i32, what: &str) -> Result<()> {
    match code {
        0 => Ok(()),
        2 => Err(gpu.out_of_memory_during(what)),
        super::CUDA_ERROR_INSUFFICIENT_DRIVER => Err(gpu.old_driver()),
        c => Err(Error::Cuda(format!("{what} on the GPU failed (cudaError {c})"))),
    }
}
