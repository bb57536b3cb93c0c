//! # healpix-psf
//!
//! Regrids unstructured longitude/latitude samples (satellite swaths, ocean and atmosphere model
//! grids, in-situ points) onto HEALPix cells with a Gaussian point-spread kernel.
//!
//! This crate re-implements `PSFResampler` of the Python package `healpix-resample` (2026.10.2) —
//! the same cells, links, weights, normalisations and conjugate-gradient solve — fast, deterministic
//! and with typed errors instead of panics.
//!
//! ```
//! use healpix_psf::{FitOptions, Params, PsfResampler};
//!
//! // samples on a small regular grid around 8°E 45°N
//! let (mut lon, mut lat) = (Vec::new(), Vec::new());
//! for i in 0..30 {
//!     for j in 0..30 {
//!         lon.push(8.0 + 0.01 * i as f64);
//!         lat.push(45.0 + 0.01 * j as f64);
//!     }
//! }
//! let op = PsfResampler::<f32>::new(&lon, &lat, &Params { npt: 9, ..Params::new(11) })?;
//! println!("N = {}, K = {} cells, {} links", op.n(), op.k(), op.nnz());
//! assert_eq!(op.hi().len(), op.n() * op.npt());
//!
//! // fit the cell field that explains a sampled field, and project it back to the samples
//! let val: Vec<f32> = lon.iter().zip(&lat).map(|(x, y)| (x + 2.0 * y) as f32).collect();
//! let fit = op.fit(&val, &FitOptions { lam: 1e-2, ..FitOptions::default() })?;
//! let back = op.resample(&fit.hval)?;
//! assert_eq!((fit.hval.len(), back.len()), (op.k(), op.n()));
//! # Ok::<(), healpix_psf::Error>(())
//! ```
//!
//! ## What is computed (SPEC §1–§3 of the reference)
//! 1. Each sample's HEALPix cell (WGS84 geodetic → authalic latitude, [`geometry`]).
//! 2. **Keep stage**: the candidate cells around each sample's cell are kept when their summed
//!    Gaussian weight `Σ exp(−2d²/s²)` reaches `threshold`.
//! 3. **Search stage**: the `npt` nearest kept cells of each sample (`hi`, `d_m`); kept cells no
//!    sample links to are dropped, leaving K cells (`cell_ids`, ascending).
//! 4. **Operators**: `M` (N×K, each column sums to 1, area-weighted) and `MT` (K×N, each sample's
//!    weights sum to 1), with `MT = Dx·Mᵀ·Dy⁻¹`, `Dx` = [`PsfResampler::cell_weight`].
//! 5. **Fit** ([`PsfResampler::fit`], SPEC §4): `hval = x_ref + δ` with `x_ref = y0·M` and δ the
//!    damped weighted least-squares update, by conjugate gradient in the `Dx` inner product;
//!    [`PsfResampler::resample`] returns `hval·MT`, the field's values at the samples.
//!
//! ## Deviations from the reference (documented choices)
//! * Distances use the chord between unit vectors (`2R·asin(|a−b|/2)`) instead of `R·acos(a·b)`,
//!   which is accurate at every scale; the reference loses accuracy below ~10 m (relative changes
//!   of `d_m` ~1e-8 at level 12).
//! * Exactly equidistant candidate cells are ordered by the lower cell index (the reference's order
//!   is an accident of torch's sort).
//! * `npt = 1` works (the reference fails there).
//! * Results are bitwise identical for any number of threads.
//! * The CG's breakdown test does not depend on the units of the data, and
//!   [`Stopping::PerRow`] offers per-row convergence next to the reference's pooled rule.
//! * Cells none of whose linked samples is valid come out NaN ([`EmptyCells`]), and the default
//!   area weights ([`Area::Auto`]) come from the sample spacing where the reference's estimate
//!   misfires (regional and curvilinear grids); the reference's behaviour is an option for both.
//! * A sample missing in a row is left out of that row's problem ([`MissingData::PerRow`]) instead
//!   of counting as 0 ([`MissingData::ZeroFill`], the reference's way, which pulls the field towards
//!   0 around every gap).
//!
//! ## Beyond the reference's first design
//! Bounds inside the fit ([`Bound`], active-set CG), exact conservation of the area-weighted mean
//! ([`FitOptions::conservative`]), per-row missing data ([`MissingData`]), land masks
//! (`Params::sample_mask`), restricted output (`Params::out_cell_ids`), per-row residual and
//! per-cell diagnostics, and kernel helpers in [`kernel`] (FWHM ↔ `sigma_m`, `recommend_npt`).
//!
//! ## Backends
//! An operator lives on a [`Device`]: the CPU (rayon) or, with the `cuda` feature, an NVIDIA GPU.
//! The solver — one conjugate gradient, the active-set and conservation layers, per-row missing
//! data — is written once, generically over a backend trait whose primitives are whole-array
//! operations (the two products, per-row dot products, the fused CG update, masks); the CG's scalar
//! step and the active set's element rules are one C++ source (`csrc/rules.h`) compiled for the
//! host and into the CUDA kernels. Every option gives the same answer on every backend — by design
//! the same bits: one source for the arithmetic, no FMA contraction, and one reduction tree on both
//! devices (the GPU's check awaits a GPU). A new backend is one module under `src/backend/`.
//!
//! ## Over MPI ranks
//! With the `mpi` feature, `distributed::DistributedResampler` builds the operator of the union of
//! the samples that each rank of a communicator passes (equal bit for bit to the single-process
//! operator), and fits on it collectively, each rank holding its own samples and cells.

#![warn(missing_docs)]

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod backend;
#[cfg(feature = "mpi")]
pub mod distributed;
pub mod error;
pub mod ffi;
pub mod geometry;
pub mod kernel;
mod operator;
mod parallel;
pub mod real;
pub mod solver;
pub mod sparse;

pub use backend::Device;
pub use error::{Error, Result};
pub use geometry::Ellipsoid;
pub use operator::{
    saved_file_precision, saved_precision, valid_samples, Area, BuildInfo, MemoryUse, Params, PsfResampler,
    FORMAT_VERSION,
};
pub use real::Real;
pub use solver::{Bound, EmptyCells, Fit, FitInfo, FitOptions, Interrupt, MissingData, Stopping};

/// CG iterations on a GPU in this process: `[graphs recorded, iterations launched as a graph,
/// recordings that failed]` (for the tests and the bench; see `src/backend/cuda/replay.rs`).
#[cfg(feature = "cuda")]
#[doc(hidden)]
pub fn cuda_graph_counts() -> [usize; 3] {
    backend::cuda::graph_counts()
}
