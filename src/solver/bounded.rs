//! Bounds and conservation inside the fit (SPEC §4 items 7–8).
//!
//! **Bounds** (`bounded_cg`): the same damped weighted least-squares problem under the box
//! `lower ≤ δ ≤ upper` per cell, by an active-set loop around the weighted CG. A cell at a bound
//! whose gradient points out of the box is held there (with `r = b − Aδ`: at the lower bound when
//! `r ≤ kkt`, at the upper when `r ≥ −kkt`); CG on the free cells (`v ↦ f·A(f·v)`, still
//! self-adjoint in the `Dx` product) finds the step, which is clamped to the box; the loop ends when
//! a pass clamps nothing and no held cell wants to be released (the KKT conditions), or after
//! `max_outer` passes. `kkt = max(tol, 100·ε)·max_k |b_k|` per row keeps a gradient that is zero up to
//! rounding from holding and releasing the same cell at every pass.
//!
//! **Conservation** (`conserve`): with `c = 1_K`, the minimum-`Dx`-distortion correction that makes
//! `Σ_k hval_k = F` is `hval + μ·w` with `A w = Dx⁻¹·c` and `μ = (F − Σ hval)/Σ w` (the KKT system of
//! the constrained problem). With bounds, the correction is restricted to the free cells and re-done,
//! holding the cells it pushes out of the box, until it stays inside.
//!
//! Both follow the reference's pooled rules: one decision for all rows of the block (any row
//! clamping starts another pass for all). The per-row stopping rule runs each row as its own block.

use super::{cg, pow2_scales, LinOp, Masked, Stopping};
use crate::real::Real;
use crate::sparse::wdot;

/// The outcome of a bounded fit for s rows (K×s interleaved).
pub(crate) struct BoundedOut<F> {
    pub x: Vec<F>,
    pub held_lo: Vec<bool>,
    pub held_hi: Vec<bool>,
    pub iterations: Vec<usize>,
    pub norms: Vec<Vec<f64>>,
    pub converged: Vec<bool>,
    pub outer: usize,
}

/// `b − A x` for all s rows.
fn residual<F: Real>(a: &impl LinOp<F>, b: &[F], x: &[F], s: usize, u: &mut Vec<F>) -> Vec<F> {
    let mut ax = vec![F::ZERO; b.len()];
    let rows: Vec<usize> = (0..s).collect();
    a.apply(x, &mut ax, &rows, u);
    b.iter().zip(&ax).map(|(&bi, &v)| bi - v).collect()
}

pub(crate) fn clamp<F: Real>(v: F, lo: F, hi: F) -> F {
    // as torch.minimum(torch.maximum(v, lo), hi)
    let v = if v < lo { lo } else { v };
    if v > hi {
        hi
    } else {
        v
    }
}

/// Solves `A δ = b` under `lower ≤ δ ≤ upper` (all K×s interleaved) from `x0`, pooled over the s
/// rows (see the module docs).
#[allow(clippy::too_many_arguments)]
pub(crate) fn bounded_cg<F: Real>(
    a: &impl LinOp<F>,
    b: &[F],
    x0: Option<&[F]>,
    lower: &[F],
    upper: &[F],
    s: usize,
    max_iter: usize,
    tol: f64,
    max_outer: usize,
) -> BoundedOut<F> {
    let mut u = Vec::new();
    let mut x: Vec<F> = match x0 {
        Some(x0) => x0.iter().zip(lower.iter().zip(upper)).map(|(&v, (&l, &h))| clamp(v, l, h)).collect(),
        None => lower.iter().zip(upper).map(|(&l, &h)| clamp(F::ZERO, l, h)).collect(),
    };
    let eps = F::from_f64(tol.max(100.0 * F::EPSILON.to_f64()));
    let mut bmax = vec![F::ZERO; s];
    for row in b.chunks_exact(s) {
        for (m, &v) in bmax.iter_mut().zip(row) {
            if v.abs() > *m {
                *m = v.abs();
            }
        }
    }
    let kkt: Vec<F> = bmax.iter().map(|&m| eps * m).collect();
    let held = |x: &[F], r: &[F]| -> (Vec<bool>, Vec<bool>) {
        let lo = (0..x.len()).map(|e| x[e] <= lower[e] && r[e] <= kkt[e % s]).collect();
        let hi = (0..x.len()).map(|e| x[e] >= upper[e] && r[e] >= -kkt[e % s]).collect();
        (lo, hi)
    };

    let mut out = BoundedOut {
        x: Vec::new(),
        held_lo: Vec::new(),
        held_hi: Vec::new(),
        iterations: vec![0; s],
        norms: vec![Vec::new(); s],
        converged: vec![false; s],
        outer: 0,
    };
    let mut settled = false;
    for outer in 1..=max_outer {
        out.outer = outer;
        let r = residual(a, b, &x, s, &mut u);
        let (at_lo, at_hi) = held(&x, &r);
        let free: Vec<F> = at_lo.iter().zip(&at_hi).map(|(&l, &h)| if l || h { F::ZERO } else { F::ONE }).collect();
        let rhs: Vec<F> = free.iter().zip(&r).map(|(&f, &v)| f * v).collect();
        let step = cg(&Masked { inner: a, free: &free, rows: s }, rhs, None, s, max_iter, tol, Stopping::Pooled);
        for j in 0..s {
            out.iterations[j] += step.iterations[j];
            out.norms[j].extend_from_slice(&step.norms[j]);
        }
        let mut crossed = false;
        for e in 0..x.len() {
            let v = x[e] + free[e] * step.x[e];
            crossed |= v < lower[e] || v > upper[e];
            x[e] = clamp(v, lower[e], upper[e]);
        }
        if crossed {
            continue;
        }
        let r = residual(a, b, &x, s, &mut u);
        let release = (0..x.len()).any(|e| (at_lo[e] && r[e] > kkt[e % s]) || (at_hi[e] && r[e] < -kkt[e % s]));
        if !release {
            settled = true;
            break;
        }
    }
    let r = residual(a, b, &x, s, &mut u);
    (out.held_lo, out.held_hi) = held(&x, &r);
    // converged: the active set settled and the residual on the free cells meets the tolerance
    // (relative to the right-hand sides pooled over the block, as the CG's own test)
    let free_r: Vec<F> = (0..r.len()).map(|e| if out.held_lo[e] || out.held_hi[e] { F::ZERO } else { r[e] }).collect();
    let rn = wdot(&free_r, &free_r, a.dx(), s);
    let bnorm = wdot(b, b, a.dx(), s).iter().sum::<f64>().sqrt();
    out.converged = rn.iter().map(|&v| settled && v.sqrt() <= tol * bnorm).collect();
    out.x = x;
    out
}

/// `Dx⁻¹·1` per cell (0 where `Dx` = 0: such a cell carries no weight).
pub(crate) fn inverse_weights<F: Real>(dx: &[F]) -> Vec<F> {
    dx.iter().map(|&d| if d != F::ZERO { F::ONE / d } else { F::ZERO }).collect()
}

/// Row sums of a K×s interleaved block, in f64.
pub(crate) fn column_sums<F: Real>(v: &[F], s: usize) -> Vec<f64> {
    let mut sums = vec![0.0f64; s];
    for row in v.chunks_exact(s) {
        for (t, &x) in sums.iter_mut().zip(row) {
            *t += x.to_f64();
        }
    }
    sums
}

/// The conservation correction of an unbounded fit: `hval += μ_j·w` per row so that
/// `Σ_k hval_jk = target_j` (rows with `target_j` NaN are left alone). `w` solves `A w = Dx⁻¹·1`.
pub(crate) fn conserve<F: Real>(
    a: &impl LinOp<F>,
    hval: &mut [F],
    target: &[f64],
    s: usize,
    max_iter: usize,
    tol: f64,
) -> Vec<F> {
    let rhs = scaled(inverse_weights(a.dx()));
    let w = cg(a, rhs, None, 1, max_iter, tol, Stopping::Pooled).x;
    let w_sum: f64 = w.iter().map(|v| v.to_f64()).sum();
    let have = column_sums(hval, s);
    for j in 0..s {
        if target[j].is_nan() || w_sum == 0.0 {
            continue;
        }
        let mu = F::from_f64((target[j] - have[j]) / w_sum);
        for (row, &wk) in hval.chunks_exact_mut(s).zip(&w) {
            row[j] += mu * wk;
        }
    }
    w
}

/// `v` divided by a power of two near its largest magnitude (exact): the correction `μ·w` does not
/// depend on the scale of w, but CG's absolute breakdown test would.
fn scaled<F: Real>(mut v: Vec<F>) -> Vec<F> {
    let f = F::from_f64(1.0 / pow2_scales(&v, 1, true)[0]);
    v.iter_mut().for_each(|x| *x *= f);
    v
}

/// The conservation correction of a bounded fit, for s rows pooled: the correction acts on the
/// cells the bounded fit left free; cells it pushes out of `[lo_j, hi_j]` are held at the bound they
/// cross (added to `held_lo`/`held_hi`) and the correction is computed again. Returns the corrected
/// field (not yet clamped).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conserve_bounded<F: Real>(
    a: &impl LinOp<F>,
    hval: &[F],
    target: &[f64],
    lo: &[F],
    hi: &[F],
    held_lo: &mut [bool],
    held_hi: &mut [bool],
    s: usize,
    max_iter: usize,
    tol: f64,
) -> Vec<F> {
    let k = a.dx().len();
    let dxinv = scaled(inverse_weights(a.dx()));
    let mut base = hval.to_vec();
    let mut cand = base.clone();
    for _ in 0..=k {
        let free: Vec<F> =
            held_lo.iter().zip(held_hi.iter()).map(|(&l, &h)| if l || h { F::ZERO } else { F::ONE }).collect();
        let rhs: Vec<F> = free.iter().enumerate().map(|(e, &f)| f * dxinv[e / s]).collect();
        let w = cg(&Masked { inner: a, free: &free, rows: s }, rhs, None, s, max_iter, tol, Stopping::Pooled).x;
        let w_sum = column_sums(&w, s);
        let have = column_sums(&base, s);
        let mu: Vec<F> = (0..s)
            .map(|j| {
                if w_sum[j] != 0.0 && !target[j].is_nan() {
                    F::from_f64((target[j] - have[j]) / w_sum[j])
                } else {
                    F::ZERO
                }
            })
            .collect();
        let mut moved = false;
        for e in 0..base.len() {
            let j = e % s;
            cand[e] = base[e] + mu[j] * w[e];
            let free_cell = free[e] != F::ZERO;
            let below = free_cell && cand[e] < lo[j];
            let above = free_cell && cand[e] > hi[j];
            if below {
                held_lo[e] = true;
            }
            if above {
                held_hi[e] = true;
            }
            moved |= below || above;
        }
        if !moved {
            break;
        }
        for e in 0..base.len() {
            let j = e % s;
            // the cells newly held go to their bound; the others restart from the fit
            if free_cell_now_held(&free, held_lo, held_hi, e) {
                base[e] = if held_lo[e] { lo[j] } else { hi[j] };
            }
        }
    }
    cand
}

/// A cell that was free at the start of this round and is held now.
fn free_cell_now_held<F: Real>(free: &[F], held_lo: &[bool], held_hi: &[bool], e: usize) -> bool {
    free[e] != F::ZERO && (held_lo[e] || held_hi[e])
}
