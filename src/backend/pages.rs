//! Large blocks on the kernel's huge pages.
//!
//! A fit at N = 10⁶ and B = 64 makes about a gigabyte of fresh blocks, and with 4 KiB pages every
//! one of them costs a page fault on its first write (≈ 60 ms per 256 MB on a 2-vCPU machine, as
//! much as the writes themselves). Linux backs a region with 2 MiB pages when the region asks for
//! it (`madvise(MADV_HUGEPAGE)`, honoured where transparent huge pages are `madvise` or `always`,
//! the distributions' defaults): 512 times fewer faults. Blocks are asked for zeroed (calloc, whose
//! large blocks are usually fresh mappings, untouched), advised, then written — the advice must
//! come before the first write to count; on memory glibc reuses from its heap it is merely late.
//! It changes no value, and it is only advice: elsewhere, or if the kernel declines, the block is
//! an ordinary one. `HPSF_HUGE_PAGES=0` turns it off.

use std::sync::OnceLock;

/// Blocks smaller than this stay on ordinary pages (a huge page half used is memory wasted).
const MIN_BYTES: usize = 8 << 20;

/// `len` copies of `zero` (a value of all zero bits: 0.0, 0u8) on fresh, untouched pages (calloc),
/// advised to be huge where large: for a block whose first access is a write. Read before it is
/// written, its pages would be the shared zero page, faulted a second time on the write.
pub(crate) fn zeroed<T: Clone>(len: usize, zero: T) -> Vec<T> {
    let v = vec![zero; len];
    advise(v.as_ptr().cast(), len * size_of::<T>());
    v
}

/// A block of `len` uninitialised-capacity elements advised to be huge: for `extend`/`collect`
/// into a fresh block that is written once in order.
pub(crate) fn with_capacity<T>(len: usize) -> Vec<T> {
    let v: Vec<T> = Vec::with_capacity(len);
    advise(v.as_ptr().cast(), len * size_of::<T>());
    v
}

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| super::switched_on("HPSF_HUGE_PAGES"))
}

#[cfg(target_os = "linux")]
fn advise(ptr: *const u8, bytes: usize) {
    const HUGE: usize = 2 << 20;
    if bytes < MIN_BYTES || !enabled() {
        return;
    }
    // the whole huge pages inside the block; the ends stay ordinary
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + bytes) / HUGE * HUGE;
    if end > start {
        // SAFETY: the range lies inside a live allocation of this process; MADV_HUGEPAGE changes
        // how its pages are backed, never their contents. A refusal (old kernel, THP off) is fine.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_ptr: *const u8, _bytes: usize) {
    let _ = (MIN_BYTES, enabled as fn() -> bool);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks above and below the advice's threshold hold zeros and keep what is written.
    #[test]
    fn advised_blocks_are_ordinary_blocks() {
        for len in [0, 1000, (MIN_BYTES >> 2) + 12345, 3 * (MIN_BYTES >> 2)] {
            let mut z = zeroed(len, 0.0f32);
            assert!(z.iter().all(|&x| x.to_bits() == 0));
            z.iter_mut().enumerate().for_each(|(i, x)| *x = i as f32);
            assert!(z.iter().enumerate().all(|(i, &x)| x == i as f32));
            let mut c: Vec<f64> = with_capacity(len);
            c.extend((0..len).map(|i| i as f64));
            assert_eq!(c.len(), len);
            assert_eq!(c.last().copied(), len.checked_sub(1).map(|i| i as f64));
        }
    }
}
