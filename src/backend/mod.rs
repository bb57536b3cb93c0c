//! Compute backends. The CPU backend is the crate's own code (`sparse`, `solver`, rayon); the CUDA
//! backend (feature `cuda`) runs the same products and CG on an NVIDIA GPU with the kernels of
//! `csrc/`.

#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// What a float type needs for the compiled backends: the launchers of its CUDA kernels when the
/// `cuda` feature is on, nothing otherwise. Implemented for `f32` and `f64` only.
#[doc(hidden)]
#[cfg(feature = "cuda")]
pub trait DeviceReal: cuda::GpuReal {}
#[cfg(feature = "cuda")]
impl<T: cuda::GpuReal> DeviceReal for T {}

/// What a float type needs for the compiled backends (nothing without the `cuda` feature).
#[doc(hidden)]
#[cfg(not(feature = "cuda"))]
pub trait DeviceReal {}
#[cfg(not(feature = "cuda"))]
impl<T> DeviceReal for T {}
