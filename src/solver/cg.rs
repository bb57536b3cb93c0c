//! The conjugate gradient (SPEC §4), once, for every backend.
//!
//! The vector work of an iteration is the backend's (`Ap` with `<p, Ap>_Dx` fused into the product,
//! the update with `<r, r>_Dx` fused, the direction); the per-column scalar step between them — the
//! zero guards, the breakdown test, the stopping rules, the record of residual norms — is the rule
//! of `csrc/rules.h`, which runs where the backend keeps the scalars. The host looks at them every
//! [`Backend::poll_every`] iterations (every iteration on the CPU; every few on a GPU, which
//! therefore never waits inside an iteration): to record the norms, report progress, stop, and
//! with the per-row rule to drop the columns that have stopped from the work.

use super::Stopping;
use crate::backend::{Backend, CgInit, CgSnapshot};
use crate::error::Result;
use crate::parallel::CgProgress;
use crate::real::Real;
use std::sync::Arc;

/// A linear operator CG can run on: self-adjoint and positive semi-definite in the `Dx` inner
/// product, applied to K×s blocks whose columns are rows of the problem.
pub(crate) trait LinOp<F: Real, B: Backend<F>>: Sized {
    /// `ap = A p`. Inside a CG (`cg`): skipped once it is done, and `<p, Ap>_Dx` per column written
    /// as its `den`.
    fn apply(
        &self,
        b: &B,
        p: &B::Vals,
        ap: &mut B::Vals,
        s: usize,
        work: &mut Work<F, B>,
        cg: Option<&mut B::Scalars>,
    ) -> Result<()>;
    /// The operator of the columns `cols` of its s only.
    fn select(&self, b: &B, s: usize, cols: &[usize]) -> Result<Self>;
}

/// Scratch blocks of the operators, kept across iterations.
pub(crate) struct Work<F: Real, B: Backend<F>> {
    u: Option<(usize, B::Vals)>,
    fp: Option<(usize, B::Vals)>,
}

impl<F: Real, B: Backend<F>> Work<F, B> {
    /// With `u`, an N×s block the operators may overwrite (the right-hand side's, spent).
    pub fn new(u: Option<(usize, B::Vals)>) -> Self {
        Work { u, fp: None }
    }
    /// A block of `len` values from `slot` (reused when its length matches).
    fn take(slot: &mut Option<(usize, B::Vals)>, b: &B, len: usize) -> Result<B::Vals> {
        match slot.take() {
            Some((l, v)) if l == len => Ok(v),
            _ => b.output(len),
        }
    }
}

/// The normal operator `v ↦ ((v·MT) ⊙ valid)·M + λv`, `valid` the per-row valid samples (N×s; all
/// valid when `None`).
pub(crate) struct Normal<F: Real, B: Backend<F>> {
    pub lam: F,
    pub valid: Option<Arc<B::Mask>>,
}

impl<F: Real, B: Backend<F>> Clone for Normal<F, B> {
    fn clone(&self) -> Self {
        Normal { lam: self.lam, valid: self.valid.clone() }
    }
}

impl<F: Real, B: Backend<F>> LinOp<F, B> for Normal<F, B> {
    fn apply(
        &self,
        b: &B,
        p: &B::Vals,
        ap: &mut B::Vals,
        s: usize,
        work: &mut Work<F, B>,
        cg: Option<&mut B::Scalars>,
    ) -> Result<()> {
        let len = b.n() * s;
        let mut u = Work::take(&mut work.u, b, len)?;
        b.mt(p, s, &mut u, self.valid.as_deref(), cg.as_deref())?;
        b.m(&u, s, ap, Some((self.lam, p)), cg)?;
        work.u = Some((len, u));
        Ok(())
    }
    fn select(&self, b: &B, s: usize, cols: &[usize]) -> Result<Self> {
        let valid = match &self.valid {
            Some(v) if !is_all(cols, s) => Some(Arc::new(b.select_mask(v, s, cols)?)),
            other => other.clone(),
        };
        Ok(Normal { lam: self.lam, valid })
    }
}

/// `v ↦ f·A(f·v)` with `f` the free cells of the codes (K×s, bit 0): the operator restricted to the
/// free cells of a bounded fit. Still self-adjoint and semi-definite in the `Dx` product, and
/// `<f·p, A(f·p)> = <p, f·A(f·p)>` for a 0/1 mask.
pub(crate) struct Masked<F: Real, B: Backend<F>> {
    pub inner: Normal<F, B>,
    pub codes: B::Mask,
}

impl<F: Real, B: Backend<F>> LinOp<F, B> for Masked<F, B> {
    fn apply(
        &self,
        b: &B,
        p: &B::Vals,
        ap: &mut B::Vals,
        s: usize,
        work: &mut Work<F, B>,
        cg: Option<&mut B::Scalars>,
    ) -> Result<()> {
        let len = b.k() * s;
        let mut fp = Work::take(&mut work.fp, b, len)?;
        b.copy_into(&mut fp, p)?;
        b.mul_mask(&mut fp, &self.codes)?;
        self.inner.apply(b, &fp, ap, s, work, cg)?;
        b.mul_mask(ap, &self.codes)?;
        work.fp = Some((len, fp));
        Ok(())
    }
    fn select(&self, b: &B, s: usize, cols: &[usize]) -> Result<Self> {
        Ok(Masked { inner: self.inner.select(b, s, cols)?, codes: b.select_mask(&self.codes, s, cols)? })
    }
}

fn is_all(cols: &[usize], s: usize) -> bool {
    cols.len() == s && cols.iter().enumerate().all(|(c, &j)| c == j)
}

/// What a CG returns for its s columns: δ (K×s on the backend) and per column the iterations, the
/// residual norms before the first iteration and after each, and whether it met its stopping test.
pub(crate) struct CgOut<V> {
    pub x: V,
    pub iterations: Vec<usize>,
    pub norms: Vec<Vec<f64>>,
    pub converged: Vec<bool>,
}

/// The columns a CG is still iterating on: `rows[c]` is the row of working column c.
struct Running<F: Real, B: Backend<F>, A> {
    rows: Vec<usize>,
    /// The operator restricted to them (None: the full one).
    a: Option<A>,
    x: B::Vals,
    r: B::Vals,
    p: B::Vals,
    ap: B::Vals,
    scalars: B::Scalars,
    /// Iterations of each column already copied into the output.
    recorded: Vec<usize>,
    /// Iterations run by the scalars this CG started before these.
    it_base: usize,
}

/// Solves `A δ = rhs` for s columns (K×s) from `x0` (K×s and not all zero; `None` = zeros);
/// `rhs_dots`, `<rhs, rhs>_Dx` per column where the caller has it (the bits [`Backend::dots`]
/// gives); `scratch`, an N×s block of no further use, serves as the operator's work block.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cg<F: Real, B: Backend<F>, A: LinOp<F, B>>(
    b: &B,
    a: &A,
    rhs: B::Vals,
    rhs_dots: Option<Vec<f64>>,
    x0: Option<B::Vals>,
    s: usize,
    max_iter: usize,
    tol: f64,
    stopping: Stopping,
    scratch: Option<B::Vals>,
) -> Result<CgOut<B::Vals>> {
    let k = b.k();
    let mut work = Work::new(scratch.map(|u| (b.n() * s, u)));
    let rhs_dots = match rhs_dots {
        Some(d) => d,
        None => b.dots(&rhs, Some(&rhs), s, true, None)?,
    };
    let mut r = rhs;
    let no_x0 = x0.is_none();
    let x = match x0 {
        Some(x0) => {
            let mut ax = b.output(k * s)?;
            a.apply(b, &x0, &mut ax, s, &mut work, None)?;
            b.axpby(&mut r, &vec![-F::ONE; s], &ax, F::ONE)?;
            x0
        }
        None => b.zeros(k * s)?,
    };
    let rs = if no_x0 {
        rhs_dots.clone() // r is the right-hand side itself
    } else {
        b.dots(&r, Some(&r), s, true, None)?
    };
    let mut out = CgOut {
        x: None,
        iterations: vec![0; s],
        norms: rs.iter().map(|v| vec![v.sqrt()]).collect(),
        converged: vec![false; s],
    };
    // stopping thresholds per row
    let pooled = tol * rhs_dots.iter().sum::<f64>().sqrt();
    let thr: Vec<f64> = match stopping {
        Stopping::Pooled => vec![pooled; s],
        Stopping::PerRow => rhs_dots.iter().map(|d| tol * d.sqrt()).collect(),
    };
    // rows that iterate. With a zero right-hand side the minimiser is δ = 0: the per-row rule returns
    // it; the pooled rule returns x0 untouched, as the reference does, and calls it converged only if
    // x0 leaves no residual.
    let active: Vec<usize> = match stopping {
        Stopping::Pooled if pooled == 0.0 => vec![],
        Stopping::Pooled => (0..s).collect(),
        Stopping::PerRow => (0..s).filter(|&j| thr[j] > 0.0).collect(),
    };
    let mut untouched = Vec::new();
    for j in (0..s).filter(|j| !active.contains(j)) {
        match stopping {
            Stopping::Pooled => {
                out.converged[j] = rs[j] == 0.0;
                untouched.push((j, j));
            }
            Stopping::PerRow => {
                out.converged[j] = true;
                out.norms[j] = vec![0.0];
            }
        }
    }
    collect(b, &mut out.x, s, &x, s, &untouched)?;
    if !active.is_empty() {
        let rules = Rules { thr: &thr, per_row: stopping == Stopping::PerRow, max_iter, poll: b.poll_every().max(1) };
        let init = rules.init(active.iter().map(|&j| rs[j]).collect(), &active, 0);
        let run = start(b, a, s, active, init, x, r)?;
        iterate(b, a, run, &rules, &mut out, &mut work)?;
    }
    for ((conv, norms), &t) in out.converged.iter_mut().zip(&out.norms).zip(&thr) {
        if !*conv {
            *conv = norms.last().is_some_and(|&v| v <= t);
        }
    }
    let CgOut { x, iterations, norms, converged } = out;
    let x = match x {
        Some(x) => x,
        None => b.zeros(k * s)?, // no column (s = 0)
    };
    Ok(CgOut { x, iterations, norms, converged })
}

/// The running state for the columns `rows` of blocks of s columns (x, r: K×s).
fn start<F: Real, B: Backend<F>, A: LinOp<F, B>>(
    b: &B,
    a: &A,
    s: usize,
    rows: Vec<usize>,
    init: CgInit,
    x: B::Vals,
    r: B::Vals,
) -> Result<Running<F, B, A>> {
    let k = b.k();
    let m = rows.len();
    let whole = is_all(&rows, s);
    let (a, x, r) = if whole {
        (None, x, r)
    } else {
        (Some(a.select(b, s, &rows)?), b.select(&x, s, &rows)?, b.select(&r, s, &rows)?)
    };
    let p = b.duplicate(&r, k * m)?;
    let scalars = b.cg_start(&init)?;
    Ok(Running { rows, a, x, r, p, ap: b.output(k * m)?, scalars, recorded: vec![0; m], it_base: 0 })
}

/// The stopping rules of a CG: per-row thresholds, the rule, the iteration budget, and how often
/// the host looks.
struct Rules<'a> {
    thr: &'a [f64],
    per_row: bool,
    max_iter: usize,
    poll: usize,
}

impl Rules<'_> {
    /// The scalars' start for the rows `rows` at their `<r, r>` values `rs`, after `it_base`
    /// iterations.
    fn init(&self, rs: Vec<f64>, rows: &[usize], it_base: usize) -> CgInit {
        CgInit {
            thr: rows.iter().map(|&j| self.thr[j]).collect(),
            rs,
            per_row: self.per_row,
            max_iter: self.max_iter - it_base,
            ring: self.poll + 1,
        }
    }
}

/// Iterates until every column has stopped or `max_iter` iterations have run, writing each
/// column's δ, iterations, norms and convergence into `out` (x: K×s).
fn iterate<F: Real, B: Backend<F>, A: LinOp<F, B>>(
    b: &B,
    a: &A,
    mut run: Running<F, B, A>,
    rules: &Rules<'_>,
    out: &mut CgOut<Option<B::Vals>>,
    work: &mut Work<F, B>,
) -> Result<()> {
    let s = out.iterations.len();
    let (poll, max_iter) = (rules.poll, rules.max_iter);
    let mut report = CgProgress::new(max_iter);
    let mut launched = 0;
    loop {
        if launched % poll == 0 || launched == max_iter {
            crate::parallel::interrupted()?;
            let snap = b.cg_read(&run.scalars)?;
            record(&snap, &mut run, out);
            if let Some(report) = report.as_mut() {
                progress(report, &snap, &run.rows, rules.thr, run.it_base + snap.it);
            }
            if snap.done || launched >= max_iter {
                if is_all(&run.rows, s) {
                    // every column of the problem is here, in order: the result is x itself
                    for (c, &flag) in snap.flags.iter().enumerate() {
                        out.converged[c] = flag == 1;
                    }
                    out.x = Some(run.x);
                } else {
                    finish(b, &run, &snap, (0..run.rows.len()).collect(), s, out)?;
                }
                return Ok(());
            }
            let stopped: Vec<usize> = (0..run.rows.len()).filter(|&c| snap.flags[c] != 0).collect();
            if !stopped.is_empty() {
                // the per-row rule: drop the columns that have stopped from the work
                finish(b, &run, &snap, stopped, s, out)?;
                let keep: Vec<usize> = (0..run.rows.len()).filter(|&c| snap.flags[c] == 0).collect();
                run = compact(b, a, run, &snap, &keep, rules)?;
            }
        }
        // the iterations up to the next look, each the same launches on the same blocks
        let times = (poll - launched % poll).min(max_iter - launched);
        let Running { a: ra, rows, x, r, p, ap, scalars, .. } = &mut run;
        let (op, m) = (ra.as_ref().unwrap_or(a), rows.len());
        b.cg_repeat(scalars, times, &mut |c| {
            op.apply(b, p, ap, m, work, Some(&mut *c))?;
            b.cg_alpha(c)?;
            b.cg_update(x, r, p, ap, c)?;
            b.cg_beta(c)?;
            b.cg_direction(p, r, c)
        })?;
        launched += times;
    }
}

/// Copies the columns `pairs` (from, to) of `src` (K×m) into the result `x` (K×s), made (zeros)
/// on the first copy: most CGs run every column to the end and return their x itself.
fn collect<F: Real, B: Backend<F>>(
    b: &B,
    x: &mut Option<B::Vals>,
    s: usize,
    src: &B::Vals,
    m: usize,
    pairs: &[(usize, usize)],
) -> Result<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    let dst = match x {
        Some(x) => x,
        None => x.insert(b.zeros(b.k() * s)?),
    };
    b.put_columns(dst, s, src, m, pairs)
}

/// Copies the iterations and norms each column made since the last look into `out`.
fn record<F: Real, B: Backend<F>, A>(snap: &CgSnapshot, run: &mut Running<F, B, A>, out: &mut CgOut<Option<B::Vals>>) {
    for (c, &row) in run.rows.iter().enumerate() {
        for t in run.recorded[c] + 1..=snap.iters[c] {
            out.norms[row].push(snap.norm(c, t));
            out.iterations[row] += 1;
        }
        run.recorded[c] = snap.iters[c];
    }
}

/// Writes the working columns `cols` into `out` (their δ, and converged where their flag says so).
fn finish<F: Real, B: Backend<F>, A>(
    b: &B,
    run: &Running<F, B, A>,
    snap: &CgSnapshot,
    cols: Vec<usize>,
    s: usize,
    out: &mut CgOut<Option<B::Vals>>,
) -> Result<()> {
    let pairs: Vec<(usize, usize)> = cols.iter().map(|&c| (c, run.rows[c])).collect();
    collect(b, &mut out.x, s, &run.x, run.rows.len(), &pairs)?;
    for &c in &cols {
        out.converged[run.rows[c]] = snap.flags[c] == 1;
    }
    Ok(())
}

/// The running state restricted to its working columns `keep`, with new scalars.
fn compact<F: Real, B: Backend<F>, A: LinOp<F, B>>(
    b: &B,
    a: &A,
    run: Running<F, B, A>,
    snap: &CgSnapshot,
    keep: &[usize],
    rules: &Rules<'_>,
) -> Result<Running<F, B, A>> {
    let (k, m) = (b.k(), run.rows.len());
    let rows: Vec<usize> = keep.iter().map(|&c| run.rows[c]).collect();
    let it_base = run.it_base + snap.it;
    let op = match &run.a {
        Some(op) => op.select(b, m, keep)?,
        None => a.select(b, m, keep)?,
    };
    let init = rules.init(keep.iter().map(|&c| snap.rs[c]).collect(), &rows, it_base);
    Ok(Running {
        a: Some(op),
        x: b.select(&run.x, m, keep)?,
        r: b.select(&run.r, m, keep)?,
        p: b.select(&run.p, m, keep)?,
        ap: b.output(k * keep.len())?,
        scalars: b.cg_start(&init)?,
        recorded: vec![0; keep.len()],
        rows,
        it_base,
    })
}

/// Reports the running column furthest from its threshold.
fn progress(report: &mut CgProgress, snap: &CgSnapshot, rows: &[usize], thr: &[f64], it: usize) {
    let worst = (0..rows.len())
        .filter(|&c| snap.flags[c] == 0)
        .map(|c| (snap.rs[c].sqrt(), thr[rows[c]]))
        .max_by(|a, b| (a.0 * b.1).total_cmp(&(b.0 * a.1)));
    if let Some((norm, wanted)) = worst {
        report.iteration(it, norm, wanted);
    }
}
