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

use std::ops::{Deref, DerefMut};
#[cfg(test)]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::real::Real;

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

/// Large blocks a backend's calls have finished with, lent again to the next block of the same
/// length instead of a fresh one (whose pages the kernel must zero and fault in: at N = 10⁶,
/// B = 64 on a 2-vCPU machine, 10–20 ms per 172 MB block beyond writing it). A block taken from the
/// pool holds whatever its last user left: only for blocks written whole before they are read.
///
/// A miss (no free block of that length) first gives every free block back to the system, so the
/// pool never makes a call's peak memory higher than fresh blocks would. Between calls the pool is
/// emptied ([`Pool::end_call`]) unless it keeps its blocks ([`Pool::set_keep`]): then a series of
/// fits of one shape makes its blocks once, and holds them (about a fit's working memory) until
/// the pool is told otherwise or dropped.
pub(crate) struct Pool<T> {
    /// The free blocks, and whether they stay between calls: one lock, so that a block handed back
    /// as keeping is turned off cannot stay behind.
    state: Mutex<Free<T>>,
    #[cfg(test)]
    off: AtomicBool,
}

struct Free<T> {
    blocks: Vec<Vec<T>>,
    keep: bool,
}

impl<T: Real> Pool<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(Free { blocks: Vec::new(), keep: false }),
            #[cfg(test)]
            off: AtomicBool::new(false),
        }
    }

    /// A pool that never lends (every block fresh, as without a pool): the tests' reference.
    #[cfg(test)]
    pub(crate) fn off() -> Self {
        let p = Self::new();
        p.off.store(true, Ordering::Relaxed);
        p
    }

    /// Whether blocks stay between calls.
    pub(crate) fn keeps(&self) -> bool {
        self.lock().keep
    }

    /// Keeps blocks between calls or not (then lets go of those it holds).
    pub(crate) fn set_keep(&self, keep: bool) {
        self.lock().keep = keep;
        self.end_call();
    }

    /// The end of a call: lets go of the free blocks unless they are kept.
    pub(crate) fn end_call(&self) {
        let let_go = {
            let mut state = self.lock();
            if state.keep {
                Vec::new()
            } else {
                std::mem::take(&mut state.blocks)
            }
        };
        drop(let_go); // freed outside the lock
    }

    /// Bytes held in free blocks.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().blocks.iter().map(|v| v.len() * size_of::<T>()).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Free<T>> {
        // a block list stays consistent whatever panicked while it was held
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A block of `len` values that will be written whole before it is read: a free one of that
    /// length (its old values; NaN in this crate's unit tests, to catch a reader), or zeros on
    /// fresh pages as [`zeroed`].
    pub(crate) fn scratch(&self, len: usize) -> Vec<T> {
        if len * size_of::<T>() >= POOLED_BYTES {
            let let_go = {
                let mut state = self.lock();
                if let Some(at) = state.blocks.iter().position(|v| v.len() == len) {
                    #[allow(unused_mut)]
                    let mut v = state.blocks.swap_remove(at);
                    drop(state);
                    #[cfg(test)]
                    v.fill(T::from_f64(f64::NAN));
                    return v;
                }
                std::mem::take(&mut state.blocks)
            };
            drop(let_go); // a miss: the system gets them back before it makes a fresh block
        }
        zeroed(len, T::ZERO)
    }

    /// Takes back a block of values its owner no longer needs (a result the caller has copied)
    /// where blocks are kept between calls; frees it otherwise.
    pub(crate) fn recycle(&self, v: Vec<T>) {
        self.put(v, true);
    }

    /// Takes back a block whose values nobody needs any more (`only_kept`: only where blocks are
    /// kept between calls).
    fn put(&self, v: Vec<T>, only_kept: bool) {
        #[cfg(test)]
        if self.off.load(Ordering::Relaxed) {
            return;
        }
        if v.len() * size_of::<T>() >= POOLED_BYTES && v.len() == v.capacity() {
            let mut state = self.lock();
            // beyond what a call uses (a caller handing back results of its own): let it go
            if (state.keep || !only_kept) && state.blocks.len() < MAX_FREE {
                state.blocks.push(v);
            }
        }
    }
}

impl<T: Real> Clone for Pool<T> {
    /// An empty pool that keeps its blocks as this one does.
    fn clone(&self) -> Self {
        let p = Self::new();
        p.lock().keep = self.keeps();
        p
    }
}

impl<T: Real> std::fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("keep", &self.keeps()).field("bytes", &self.bytes()).finish()
    }
}

/// Most free blocks a pool holds (a bounded fit uses about a dozen).
const MAX_FREE: usize = 32;

/// Blocks below this size are not worth pooling (in this crate's unit tests every block is, so that
/// small problems exercise reuse).
const POOLED_BYTES: usize = if cfg!(test) { 1 } else { MIN_BYTES };

/// A block of a backend's working values that goes back to its [`Pool`] when dropped (a plain
/// `Vec` without a pool). It is the `Vec` it holds for every other purpose.
pub(crate) struct Block<'p, T: Real> {
    v: Vec<T>,
    pool: Option<&'p Pool<T>>,
}

impl<'p, T: Real> Block<'p, T> {
    pub(crate) fn new(v: Vec<T>, pool: Option<&'p Pool<T>>) -> Self {
        Self { v, pool }
    }
}

impl<T: Real> Deref for Block<'_, T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.v
    }
}

impl<T: Real> DerefMut for Block<'_, T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.v
    }
}

impl<'b, T: Real> IntoIterator for &'b Block<'_, T> {
    type Item = &'b T;
    type IntoIter = std::slice::Iter<'b, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.v.iter()
    }
}

impl<T: Real> Drop for Block<'_, T> {
    fn drop(&mut self) {
        if let Some(pool) = self.pool {
            pool.put(std::mem::take(&mut self.v), false);
        }
    }
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
