//! The CPU kernels of wide rows compiled twice, for the baseline instruction set and for AVX2,
//! and the second chosen when the processor has it.
//!
//! The library is built for the x86-64 baseline (SSE2), so that one binary runs on every x86-64
//! processor. The kernels of rows wider than 16 values (batches of B > 16: the products, the CG
//! update and direction) are also compiled with AVX2, and run that way where the processor has it:
//! the same operations per element in the same order, so the same bits (AVX2 without FMA: nothing
//! is contracted, Rust never reorders floating-point arithmetic). On the 2-vCPU AMD EPYC (Zen 1,
//! whose AVX2 units are 128 bits wide) of benches/RESULTS.md the setup's three products at
//! N = 10⁶, B = 64 f32 took 7–11 % less (processors with full-width AVX2 units were not measured).
//! `HPSF_SIMD=0` keeps the baseline code.

/// Runs `f` (inlined: its kernels must be `#[inline(always)]` to be compiled for AVX2 as well),
/// compiled for AVX2 where the processor has it.
#[inline(always)]
pub(crate) fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the processor has AVX2 (checked)
        return unsafe { with_avx2(f) };
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Whether [`wide`] takes the AVX2 code: the processor has it, and `HPSF_SIMD` is not 0.
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    #[cfg(test)]
    if tests::BASELINE.load(std::sync::atomic::Ordering::SeqCst) {
        return false;
    }
    *ON.get_or_init(|| super::switched_on("HPSF_SIMD") && std::arch::is_x86_feature_detected!("avx2"))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Set while [`baseline`] runs: [`super::wide`] takes the baseline code on every thread.
    pub(super) static BASELINE: AtomicBool = AtomicBool::new(false);

    /// Runs `f` with the baseline code only (other tests running meanwhile take it too, and
    /// compute the same bits).
    pub(crate) fn baseline<R>(f: impl FnOnce() -> R) -> R {
        BASELINE.store(true, Ordering::SeqCst);
        let r = f();
        BASELINE.store(false, Ordering::SeqCst);
        r
    }

    /// Whether this processor runs the AVX2 code at all (else both runs of a test take the same).
    pub(crate) fn has_avx2() -> bool {
        #[cfg(target_arch = "x86_64")]
        return super::avx2();
        #[cfg(not(target_arch = "x86_64"))]
        false
    }
}
