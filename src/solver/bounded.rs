//! Bounds and conservation inside the fit (SPEC §4 items 7–8), generic over the backend; the element
//! rules (which cells are held, the clamped step, the release test) are those of `csrc/rules.h`.
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
//! **Conservation**: with `c = 1_K`, the minimum-`Dx`-distortion correction that makes
//! `Σ_k hval_k = F` is `hval + μ·w` with `A w = Dx⁻¹·c` and `μ = (F − Σ hval)/Σ w` (the KKT system of
//! the constrained problem). `conserve_shared` solves for one w shared by all rows (the reference's
//! way, for rows sharing one operator); `conserve_rounds` solves per row on the free cells and, with
//! bounds, re-does it holding the cells it pushes out of the box until it stays inside.
//!
//! Both follow the reference's pooled rules: one decision for all rows of the block (any row
//! clamping starts another pass for all). The per-row stopping rule runs each row as its own block.
//! Cells whose code is 0 (no data in the row) take no part: they stay at 0.

use super::cg::{cg, LinOp, Masked, Normal, Work};
use super::{pow2_scales, Stopping};
use crate::backend::{Backend, BoxBounds, BoxRule};
use crate::error::Result;
use crate::real::Real;

/// The outcome of a bounded fit for s columns: δ (K×s), the final cell codes and the CG record.
pub(crate) struct BoundedOut<V, M> {
    pub x: V,
    pub codes: M,
    pub iterations: Vec<usize>,
    pub norms: Vec<Vec<f64>>,
    pub converged: Vec<bool>,
    pub outer: usize,
}

/// `rhs − A x` for s columns.
fn residual<F: Real, B: Backend<F>>(
    b: &B,
    a: &Normal<F, B>,
    rhs: &B::Vals,
    x: &B::Vals,
    s: usize,
    work: &mut Work<F, B>,
) -> Result<B::Vals> {
    let mut ax = b.output(b.k() * s)?;
    a.apply(b, x, &mut ax, s, work, None)?;
    let mut r = b.duplicate(rhs, b.k() * s)?;
    b.axpby(&mut r, &vec![-F::ONE; s], &ax, F::ONE)?;
    Ok(r)
}

/// The iteration limits of the solves.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub max_iter: usize,
    pub tol: f64,
    pub max_outer: usize,
}

/// Solves `A δ = rhs` inside the box `bx` (bounds minus x_ref) for s columns from `x0`, the cells
/// of `codes` (free, or 0 = not in the problem) only, pooled over the s columns (see the module
/// docs). `x0` must be 0 where the code is 0.
pub(crate) fn bounded_cg<F: Real, B: Backend<F>>(
    b: &B,
    a: &Normal<F, B>,
    rhs: &B::Vals,
    x0: Option<B::Vals>,
    bx: &BoxBounds<'_, F, B::Vals>,
    mut codes: B::Mask,
    lim: Limits,
) -> Result<BoundedOut<B::Vals, B::Mask>> {
    let s = bx.lo.len();
    let mut work = Work::new(None);
    let mut x = match x0 {
        Some(x0) => x0,
        None => b.zeros(b.k() * s)?,
    };
    b.box_rule(BoxRule::Clamp { x: &mut x, b: bx, codes: Some(&codes) })?;
    let eps = F::from_f64(lim.tol.max(100.0 * F::EPSILON.to_f64()));
    let kkt: Vec<F> = b.max_abs(rhs, s)?.iter().map(|&m| eps * F::from_f64(m)).collect();
    let (mut iterations, mut norms) = (vec![0; s], vec![Vec::new(); s]);
    let (mut settled, mut outer) = (false, 0);
    for pass in 1..=lim.max_outer {
        outer = pass;
        let r = residual(b, a, rhs, &x, s, &mut work)?;
        b.box_rule(BoxRule::Classify { x: &x, r: &r, b: bx, kkt: &kkt, codes: &mut codes })?;
        let mut rhs_free = r;
        b.mul_mask(&mut rhs_free, &codes)?;
        let masked = Masked { inner: a.clone(), codes };
        let step = cg(b, &masked, rhs_free, None, None, s, lim.max_iter, lim.tol, Stopping::Pooled, None)?;
        codes = masked.codes;
        for j in 0..s {
            iterations[j] += step.iterations[j];
            norms[j].extend_from_slice(&step.norms[j]);
        }
        if b.box_rule(BoxRule::Step { x: &mut x, d: &step.x, b: bx, codes: &codes })? > 0 {
            continue;
        }
        let r = residual(b, a, rhs, &x, s, &mut work)?;
        if b.box_rule(BoxRule::Release { r: &r, kkt: &kkt, codes: &codes })? == 0 {
            settled = true;
            break;
        }
    }
    let r = residual(b, a, rhs, &x, s, &mut work)?;
    b.box_rule(BoxRule::Classify { x: &x, r: &r, b: bx, kkt: &kkt, codes: &mut codes })?;
    // converged: the active set settled and the residual on the free cells meets the tolerance
    // (relative to the right-hand sides pooled over the block, as the CG's own test)
    let rn = b.dots(&r, Some(&r), s, true, Some(&codes))?;
    let bnorm = b.dots(rhs, Some(rhs), s, true, None)?.iter().sum::<f64>().sqrt();
    let converged = rn.iter().map(|&v| settled && v.sqrt() <= lim.tol * bnorm).collect();
    Ok(BoundedOut { x, codes, iterations, norms, converged, outer })
}

/// `Dx⁻¹·1` (K×1) divided by a power of two near its largest value (exact), and that factor's
/// inverse: the correction `μ·w` does not depend on the scale of w, but CG's absolute breakdown
/// test would.
fn scaled_inverse_dx<F: Real, B: Backend<F>>(b: &B) -> Result<(B::Vals, F)> {
    let dxinv = b.reciprocal_dx()?;
    let top = b.max_abs(&dxinv, 1)?;
    Ok((dxinv, F::from_f64(1.0 / pow2_scales(&[F::from_f64(top[0]).abs().to_f64()], true)[0])))
}

/// `μ_j = (target_j − Σ_k hval_jk) / Σ_k w_jk` (0 where the target is NaN or w sums to 0).
fn corrections<F: Real>(target: &[f64], have: &[f64], w_sum: &[f64]) -> Vec<F> {
    (0..target.len())
        .map(|j| {
            if w_sum[j] != 0.0 && !target[j].is_nan() {
                F::from_f64((target[j] - have[j]) / w_sum[j])
            } else {
                F::ZERO
            }
        })
        .collect()
}

/// The conservation correction of an unbounded fit of s rows sharing one operator (no per-row
/// data mask): `hval += μ_j·w` so that `Σ_k hval_jk = target_j`, with one w (`A w = Dx⁻¹·1`).
pub(crate) fn conserve_shared<F: Real, B: Backend<F>>(
    b: &B,
    a: &Normal<F, B>,
    hval: &mut B::Vals,
    target: &[f64],
    lim: Limits,
) -> Result<()> {
    let s = target.len();
    let (dxinv, f) = scaled_inverse_dx(b)?;
    let rhs = b.broadcast(&dxinv, 1, f, None)?;
    let w = cg(b, a, rhs, None, None, 1, lim.max_iter, lim.tol, Stopping::Pooled, None)?.x;
    let w_sum = b.dots(&w, None, 1, false, None)?;
    let have = b.dots(hval, None, s, false, None)?;
    let mu = corrections::<F>(target, &have, &vec![w_sum[0]; s]);
    let w_all = b.broadcast(&w, s, F::ONE, None)?;
    b.axpby(hval, &mu, &w_all, F::ONE)
}

/// The conservation correction of s rows on their free cells (codes bit 0), each row with its own
/// w: `cand = hval + μ_j·w_j`. Free cells it pushes out of the box `bx` (bounds on the fitted
/// values; ±∞ for none) are held at the bound they cross (their codes updated) and the correction is
/// computed again. Returns the corrected field (not yet clamped) and the codes.
pub(crate) fn conserve_rounds<F: Real, B: Backend<F>>(
    b: &B,
    a: &Normal<F, B>,
    hval: B::Vals,
    target: &[f64],
    bx: &BoxBounds<'_, F, B::Vals>,
    mut codes: B::Mask,
    lim: Limits,
) -> Result<(B::Vals, B::Mask)> {
    let (k, s) = (b.k(), target.len());
    let (dxinv, f) = scaled_inverse_dx(b)?;
    let mut base = hval;
    let mut cand = b.zeros(k * s)?;
    // each round holds at least one more cell: at most K_total + 1 rounds, the same on every rank
    for _ in 0..=b.k_total() {
        let rhs = b.broadcast(&dxinv, s, f, Some(&codes))?;
        let masked = Masked { inner: a.clone(), codes };
        let w = cg(b, &masked, rhs, None, None, s, lim.max_iter, lim.tol, Stopping::Pooled, None)?.x;
        codes = masked.codes;
        let w_sum = b.dots(&w, None, s, false, None)?;
        let have = b.dots(&base, None, s, false, None)?;
        let mu = corrections::<F>(target, &have, &w_sum);
        b.copy_into(&mut cand, &base)?;
        b.axpby(&mut cand, &mu, &w, F::ONE)?;
        if b.box_rule(BoxRule::Hold { cand: &cand, base: &mut base, b: bx, codes: &mut codes })? == 0 {
            break;
        }
    }
    Ok((cand, codes))
}
