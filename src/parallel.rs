//! Thread control and progress messages.
//!
//! Work is split into blocks whose boundaries depend on the data only, never on the number of
//! threads, and every reduction runs over blocks in a fixed order: results are bitwise identical for
//! any `num_threads` and on every run.

use crate::error::{Error, Result};
use std::time::Instant;

/// Runs `f` on `num_threads` worker threads (0 = rayon's global pool, i.e. all cores).
pub(crate) fn with_threads<R: Send>(num_threads: usize, f: impl FnOnce() -> R + Send) -> Result<R> {
    if num_threads == 0 {
        return Ok(f());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(num_threads)
        .build()
        .map_err(|e| Error::ThreadPool { threads: num_threads, message: e.to_string() })?;
    Ok(pool.install(f))
}

/// Progress lines on stderr when `verbose` is set, each with the time since the previous one.
pub(crate) struct Progress {
    verbose: bool,
    start: Instant,
    last: Instant,
}

impl Progress {
    pub(crate) fn new(verbose: bool) -> Self {
        let now = Instant::now();
        Progress { verbose, start: now, last: now }
    }

    /// Reports a finished stage and returns its duration in seconds.
    pub(crate) fn stage(&mut self, what: std::fmt::Arguments<'_>) -> f64 {
        let now = Instant::now();
        let dt = (now - self.last).as_secs_f64();
        if self.verbose {
            eprintln!(
                "[healpix-psf] {:>8.3} s (+{:.3} s) {}",
                (now - self.start).as_secs_f64(),
                (now - self.last).as_secs_f64(),
                what
            );
        }
        self.last = now;
        dt
    }
}
