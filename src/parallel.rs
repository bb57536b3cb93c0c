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

    /// Reports a finished stage, described by `what` from its duration in seconds (called only
    /// when verbose), and returns that duration.
    pub(crate) fn stage(&mut self, what: impl FnOnce(f64) -> String) -> f64 {
        let now = Instant::now();
        let dt = (now - self.last).as_secs_f64();
        if self.verbose {
            eprintln!("[healpix-psf] {:>8.3} s (+{dt:.3} s) {}", (now - self.start).as_secs_f64(), what(dt));
        }
        self.last = now;
        dt
    }
}

thread_local! {
    /// Whether the CG of the fit running on this thread reports its progress (see
    /// [`report_cg_progress`]): set around a solve rather than passed down every solver layer.
    static CG_PROGRESS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Turns CG progress reports on this thread on (`on`) until the returned guard is dropped.
pub(crate) fn report_cg_progress(on: bool) -> impl Drop {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            CG_PROGRESS.with(|c| c.set(self.0));
        }
    }
    Restore(CG_PROGRESS.with(|c| c.replace(on)))
}

thread_local! {
    /// The caller's interrupt check of the fit running on this thread and when it last ran (see
    /// [`check_interrupts`]).
    static INTERRUPT: std::cell::RefCell<Option<(crate::solver::Interrupt, Instant)>> =
        const { std::cell::RefCell::new(None) };
}

/// Makes [`interrupted`] ask `check` on this thread until the returned guard is dropped.
pub(crate) fn check_interrupts(check: Option<crate::solver::Interrupt>) -> impl Drop {
    struct Restore(Option<(crate::solver::Interrupt, Instant)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            INTERRUPT.with(|c| *c.borrow_mut() = self.0.take());
        }
    }
    Restore(INTERRUPT.with(|c| c.replace(check.map(|i| (i, Instant::now())))))
}

/// `Err(Interrupted)` when the caller's check (if any) answers true; the check runs at most every
/// 50 ms, so that it costs nothing next to the iterations.
pub(crate) fn interrupted() -> crate::error::Result<()> {
    INTERRUPT.with(|c| match c.borrow_mut().as_mut() {
        Some((check, last)) if last.elapsed().as_millis() >= 50 => {
            *last = Instant::now();
            if (check.0)() {
                Err(crate::error::Error::Interrupted)
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    })
}

/// CG progress lines on stderr, at most every half second: iteration, residual, rate, time left.
pub(crate) struct CgProgress {
    max_iter: usize,
    start: Instant,
    last: Instant,
    /// (iteration, ln residual) of recent reports, for the convergence rate
    history: Vec<(usize, f64)>,
}

impl CgProgress {
    /// A reporter when progress is on for this thread.
    pub(crate) fn new(max_iter: usize) -> Option<Self> {
        CG_PROGRESS.with(|c| c.get()).then(|| {
            let now = Instant::now();
            CgProgress { max_iter, start: now, last: now, history: Vec::new() }
        })
    }

    /// Before iteration `it`: the worst row's residual `norm` and the one it must reach.
    pub(crate) fn iteration(&mut self, it: usize, norm: f64, wanted: f64) {
        let now = Instant::now();
        if norm > 0.0 && norm.is_finite() {
            self.history.push((it, norm.ln()));
        }
        if it == 0 || (now - self.last).as_secs_f64() < 0.5 {
            return;
        }
        self.last = now;
        let elapsed = (now - self.start).as_secs_f64();
        let rate = it as f64 / elapsed;
        // iterations left from the recent decrease of ln(residual), at most those max_iter allows
        let recent = self.history.iter().rev().find(|(i, _)| it - i >= 10).or(self.history.first());
        let by_rate = match (recent, self.history.last()) {
            (Some(&(i0, l0)), Some(&(i1, l1))) if i1 > i0 && l0 > l1 && wanted > 0.0 => {
                Some(((l1 - wanted.ln()) / ((l0 - l1) / (i1 - i0) as f64)).max(0.0))
            }
            _ => None,
        };
        let allowed = (self.max_iter - it) as f64;
        let left = by_rate.map_or(allowed, |n| n.min(allowed));
        eprintln!(
            "[healpix-psf] CG iteration {it}/{}: residual {norm:.3e} (wanted {wanted:.3e}), {rate:.1} it/s, \
             ETA {:.1} s",
            self.max_iter,
            left / rate
        );
    }
}
