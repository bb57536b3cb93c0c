//! A CG iteration recorded once as a CUDA graph and replayed.
//!
//! An iteration is about ten short launches (two products, two reductions of two or three stages,
//! the update, the direction and the one-thread rules between them). On small problems the gaps
//! between launches and the host's launch rate cost more than the kernels themselves (issue 16:
//! 0.181 ms an iteration at N = 10⁶, 2.8× its floor). The iteration's launches are recorded once by
//! stream capture — on a stream of their own, since the GPU's default stream cannot be captured —
//! and the graph is launched on the default stream in their place, so it stays ordered with
//! everything else there. Nothing else changes: the same kernels on the same blocks, the same bits.
//!
//! `HPSF_CUDA_GRAPHS=0` launches every kernel as before (for comparisons).

use super::ops::GpuScalars;
use super::{cuda_err, Gpu};
use crate::error::{Error, Result};
use cudarc::driver::{result, sys as cu, CudaContext, CudaStream};
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Graphs recorded, iterations launched as a graph, and recordings that failed, in this process.
static COUNTS: [AtomicUsize; 3] = [AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)];

/// The counts of [`COUNTS`] (for the tests and the bench).
pub(crate) fn counts() -> [usize; 3] {
    COUNTS.each_ref().map(|c| c.load(Ordering::Relaxed))
}

thread_local! {
    /// The stream this thread's launches go to while it records them (see [`Gpu::record`]), and
    /// whether the iteration did something a graph cannot replay.
    static RECORDING: RefCell<Option<(Arc<CudaStream>, bool)>> = const { RefCell::new(None) };
}

/// How a CG's iterations are launched.
pub(crate) enum Replay {
    /// None run yet: the first runs as plain launches (the operators make their work blocks there,
    /// and an allocation cannot be replayed).
    First,
    /// One has run: the next is recorded.
    Ready,
    /// The iteration as a graph.
    Recorded(Graph),
    /// Graphs switched off, or the driver could not record the iteration: plain launches.
    Plain,
}

impl Replay {
    /// The state of a new CG.
    pub fn new() -> Replay {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *ON.get_or_init(|| crate::backend::switched_on("HPSF_CUDA_GRAPHS")) {
            Replay::First
        } else {
            Replay::Plain
        }
    }
}

/// A recorded iteration: the graph, its executable, and the stream it was recorded on.
pub(crate) struct Graph {
    graph: cu::CUgraph,
    exec: cu::CUgraphExec,
    ctx: Arc<CudaContext>,
    _stream: Arc<CudaStream>,
}

impl Drop for Graph {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: both were made by `Gpu::record` and are destroyed once, here; an executable
        // still running is freed when it completes (cuGraphExecDestroy).
        unsafe {
            let _ = result::graph::exec_destroy(self.exec);
            let _ = result::graph::destroy(self.graph);
        }
    }
}

/// An open stream capture of this thread: ended (its graph destroyed) and the thread's recording
/// state cleared however the recording ends, a panic included.
struct Capture(cu::CUstream);

impl Capture {
    /// Ends the capture: the graph of what was recorded (an error where the capture broke).
    fn end(self) -> std::result::Result<cu::CUgraph, cudarc::driver::DriverError> {
        let stream = self.0;
        std::mem::forget(self);
        RECORDING.with(|r| r.borrow_mut().take());
        // SAFETY: the stream is alive (held by the caller) and captures on this thread.
        unsafe { result::stream::end_capture(stream) }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        RECORDING.with(|r| r.borrow_mut().take());
        // SAFETY: as in `end`; the graph, if any, is not used.
        if let Ok(graph) = unsafe { result::stream::end_capture(self.0) } {
            if !graph.is_null() {
                let _ = unsafe { result::graph::destroy(graph) };
            }
        }
    }
}

/// The stream this thread's launches go to while it records, if it does.
pub(super) fn recording_stream() -> Option<Arc<CudaStream>> {
    RECORDING.with(|r| r.borrow().as_ref().map(|(s, _)| s.clone()))
}

/// Fails while this thread records: `what` (an allocation, a copy to or from the host) cannot be
/// part of a replayed iteration. The recording is then dropped and the iterations launched as usual.
pub(super) fn unless_recording(what: &str) -> Result<()> {
    RECORDING.with(|r| match r.borrow_mut().as_mut() {
        None => Ok(()),
        Some((_, spoiled)) => {
            *spoiled = true;
            Err(Error::Cuda(format!("{what} inside a recorded CG iteration")))
        }
    })
}

impl Gpu {
    /// Runs `times` iterations of the CG of the scalars `c` (`body` makes one iteration's launches):
    /// its first as plain launches, its second recorded as a graph, and every one after that as the
    /// graph.
    pub(super) fn iterations(
        &self,
        c: &mut GpuScalars,
        mut times: usize,
        body: &mut dyn FnMut(&mut GpuScalars) -> Result<()>,
    ) -> Result<()> {
        while times > 0 {
            if matches!(c.replay, Replay::Ready) {
                let recorded = self.record(|| body(c))?;
                COUNTS[if recorded.is_some() { 0 } else { 2 }].fetch_add(1, Ordering::Relaxed);
                c.replay = recorded.map_or(Replay::Plain, Replay::Recorded);
                continue;
            }
            if let Replay::Recorded(graph) = &c.replay {
                self.bind()?;
                // SAFETY: the graph's executable is alive (owned by `graph`) and was recorded in this
                // GPU's context; the stream is this GPU's.
                unsafe { result::graph::launch(graph.exec, self.stream.cu_stream()) }
                    .map_err(cuda_err("launching a recorded CG iteration"))?;
                COUNTS[1].fetch_add(1, Ordering::Relaxed);
            } else {
                if matches!(c.replay, Replay::First) {
                    c.replay = Replay::Ready;
                }
                body(c)?;
            }
            times -= 1;
        }
        Ok(())
    }

    /// The launches `body` makes, recorded as a graph and not run. `Ok(None)` when the driver cannot
    /// record them (the caller then launches them as usual); `body`'s own error as it is.
    fn record(&self, body: impl FnOnce() -> Result<()>) -> Result<Option<Graph>> {
        self.bind()?;
        // a stream that does not wait for the default one: a blocking stream's capture would be
        // broken by any other thread's work on the default stream
        let Ok(stream) = self.ctx.new_stream() else { return Ok(None) };
        let mode = cu::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL;
        // SAFETY: the stream is alive (held until this function returns) and belongs to this context.
        if unsafe { result::stream::begin_capture(stream.cu_stream(), mode) }.is_err() {
            return Ok(None);
        }
        RECORDING.with(|r| *r.borrow_mut() = Some((stream.clone(), false)));
        let capture = Capture(stream.cu_stream());
        let ran = body();
        let spoiled = RECORDING.with(|r| r.borrow().as_ref().is_some_and(|(_, spoiled)| *spoiled));
        // a launch the driver would not record breaks the capture (an error here), and an iteration
        // that allocates or copies to the host cannot be replayed: launched as usual instead (where
        // a real error shows again)
        let graph = match capture.end() {
            Ok(graph) if !graph.is_null() => graph,
            _ => return Ok(None),
        };
        // SAFETY: the graph was just captured; it is destroyed with the executable (Graph's drop) or here.
        let exec = match unsafe { result::graph::instantiate(graph, cu::CUgraphInstantiate_flags(0)) } {
            Ok(exec) => exec,
            Err(_) => {
                let _ = unsafe { result::graph::destroy(graph) };
                return Ok(None);
            }
        };
        let recorded = Graph { graph, exec, ctx: self.ctx.clone(), _stream: stream };
        if spoiled {
            return Ok(None);
        }
        ran.map(|()| Some(recorded))
    }
}
