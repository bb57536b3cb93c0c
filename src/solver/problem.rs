//! The fit of a block of s rows on one backend (SPEC §4): `x_ref`, the right-hand side, and the
//! plain, bounded and conservative solves, with or without per-row missing data.

use super::bounded::{bounded_cg, conserve_rounds, conserve_shared, BoundedOut, Limits};
use super::cg::{cg, LinOp, Normal};
use super::{FitOptions, Stopping};
use crate::backend::{Backend, BoxBounds, BoxRule, FREE, HELD_HIGH, HELD_LOW};
use crate::error::Result;
use crate::real::Real;
use std::sync::Arc;

/// The inputs of a fit of s rows, in the solve's units (the data divided by powers of two): blocks
/// on the backend `B`, per-row values on the host.
pub(crate) struct Problem<'a, F: Real, B: Backend<F>> {
    /// Values at the operator's samples, N×s, 0 where missing.
    pub y0: B::Vals,
    /// Per-row missing data: bit 0 set where a sample is valid (N×s); `None` = every sample counts
    /// (the reference's zero-filling, or no sample missing).
    pub valid: Option<B::Mask>,
    /// The rows with a missing sample (renormalised; only with `valid`).
    pub masked_rows: Vec<bool>,
    /// The initial update (K×s), when not all zero.
    pub x0: Option<B::Vals>,
    /// The box of each row on the fitted values, when bounded.
    pub bounds: Option<(Vec<F>, Vec<F>)>,
    /// With `conservative`: each row's area-weighted mean of its valid samples (NaN: none).
    pub means: Option<Vec<f64>>,
    pub opts: &'a FitOptions<F>,
}

/// The fit of the s rows: the cell values (K×s, on the backend) and the record.
pub(crate) struct Solution<V> {
    pub hval: V,
    pub iterations: Vec<usize>,
    pub norms: Vec<Vec<f64>>,
    pub converged: Vec<bool>,
    pub outer: usize,
    /// K×s cell codes (bounded fits or per-row missing data): 0 = no data in the row, else
    /// `FREE` or the held bits.
    pub codes: Option<Vec<u8>>,
}

/// Fits the s rows of `p` on `b`.
pub(crate) fn solve<F: Real, B: Backend<F>>(b: &B, p: Problem<'_, F, B>) -> Result<Solution<B::Vals>> {
    let (k, s) = (b.k(), p.masked_rows.len());
    let o = p.opts;
    let lim = Limits { max_iter: o.max_iter, tol: o.tol, max_outer: o.max_outer };
    let plain = p.bounds.is_none();
    let Start { x_ref, rhs, rhs_dots, valid, codes, spent } = right_hand_side(b, p.y0, p.valid, &p.masked_rows, plain)?;
    let a = Normal { lam: F::from_f64(o.lam), valid: valid.map(Arc::new) };
    let mut x0 = p.x0;
    if let (Some(x0), Some(c)) = (x0.as_mut(), codes.as_ref()) {
        b.mul_mask(x0, c)?; // cells without data in a row take no part in its problem
    }
    // conservation targets: the mean × K, or × the cells with data (a count on the backend: over
    // every rank of a distributed solve; exact, as a sum of ones in f64)
    let targets = match p.means {
        None => None,
        Some(means) => {
            let counts: Vec<f64> = match &codes {
                None => vec![b.k_total() as f64; s],
                Some(c) => b.dots(&b.mask_values(c)?, None, s, false, None)?,
            };
            Some(means.iter().zip(&counts).map(|(&v, &n)| v * n).collect::<Vec<f64>>())
        }
    };

    let mut sol = Solution {
        hval: None,
        iterations: vec![0; s],
        norms: Vec::new(),
        converged: vec![false; s],
        outer: 0,
        codes: None,
    };
    let (hval, codes) = match &p.bounds {
        None => {
            let out = cg(b, &a, rhs, rhs_dots, x0, s, o.max_iter, o.tol, o.stopping, Some(spent))?;
            (sol.iterations, sol.norms, sol.converged) = (out.iterations, out.norms, out.converged);
            let mut hval = x_ref;
            b.axpby(&mut hval, &vec![F::ONE; s], &out.x, F::ONE)?;
            match (targets, codes) {
                (Some(t), None) => {
                    conserve_shared(b, &a, &mut hval, &t, lim)?;
                    (hval, None)
                }
                (Some(t), Some(c)) => {
                    let unbounded = BoxBounds { lo: &vec![-F::INFINITY; s], hi: &vec![F::INFINITY; s], off: None };
                    let (h, c) = conserve_rounds(b, &a, hval, &t, &unbounded, c, lim)?;
                    (h, Some(b.download_mask(&c)?))
                }
                (None, c) => (hval, c.map(|c| b.download_mask(&c)).transpose()?),
            }
        }
        Some((lo, hi)) => {
            drop(spent);
            let codes = match codes {
                Some(c) => c,
                None => b.upload_mask(vec![FREE; k * s])?,
            };
            let parts = Parts {
                a: &a,
                x_ref: &x_ref,
                rhs: &rhs,
                x0: x0.as_ref(),
                codes: &codes,
                lo,
                hi,
                targets: targets.as_deref(),
            };
            let (hval, codes) = solve_bounded(b, parts, o.stopping, lim, &mut sol)?;
            (hval, Some(codes))
        }
    };
    sol.codes = codes;
    let Solution { iterations, norms, converged, outer, codes, .. } = sol;
    Ok(Solution { hval, iterations, norms, converged, outer, codes })
}

/// The field a fit starts from, x_ref (K×s), with NaN in the cells where no valid sample carries
/// weight in a row with missing samples (see [`solve`] for the arguments).
pub(crate) fn reference_field<F: Real, B: Backend<F>>(
    b: &B,
    y0: B::Vals,
    valid: Option<B::Mask>,
    masked_rows: &[bool],
) -> Result<B::Vals> {
    let (mut x_ref, _, _, codes) = averages(b, y0, valid, masked_rows)?;
    if let Some(codes) = codes {
        b.fill_masked(&mut x_ref, &codes, F::from_f64(f64::NAN))?;
    }
    Ok(x_ref)
}

/// What a solve starts from (see [`right_hand_side`]).
struct Start<F: Real, B: Backend<F>> {
    x_ref: B::Vals,
    rhs: B::Vals,
    /// `<rhs, rhs>_Dx` per column, when asked for.
    rhs_dots: Option<Vec<f64>>,
    valid: Option<B::Mask>,
    codes: Option<B::Mask>,
    /// The N×s block the right-hand side was made in, of no further use.
    spent: B::Vals,
}

/// x_ref (K×s), the right-hand side `((y0 − x_ref·MT) ⊙ valid)·M` (K×s), the valid mask on the
/// backend and, with per-row missing data, the cell codes (0 where no valid sample carries weight in
/// a renormalised row); with `norms`, the right-hand side's `<rhs, rhs>_Dx` (summed as its rows are
/// made, where the backend can).
fn right_hand_side<F: Real, B: Backend<F>>(
    b: &B,
    y0: B::Vals,
    valid: Option<B::Mask>,
    masked_rows: &[bool],
    norms: bool,
) -> Result<Start<F, B>> {
    let (k, s) = (b.k(), masked_rows.len());
    let (x_ref, mut y, valid, codes) = averages(b, y0, valid, masked_rows)?;
    b.mt_sub(&x_ref, s, &mut y, valid.as_ref())?;
    let mut rhs = b.output(k * s)?;
    let rhs_dots = if norms {
        Some(b.m_norms(&y, s, &mut rhs)?)
    } else {
        b.m(&y, s, &mut rhs, None, None)?;
        None
    };
    Ok(Start { x_ref, rhs, rhs_dots, valid, codes, spent: y })
}

/// x_ref = y0·M, renormalised over the valid samples of the masked rows; y0, the valid mask and
/// the cell codes on the backend.
#[allow(clippy::type_complexity)]
fn averages<F: Real, B: Backend<F>>(
    b: &B,
    y0: B::Vals,
    valid: Option<B::Mask>,
    masked_rows: &[bool],
) -> Result<(B::Vals, B::Vals, Option<B::Mask>, Option<B::Mask>)> {
    let (k, s) = (b.k(), masked_rows.len());
    let mut x_ref = b.output(k * s)?;
    b.m(&y0, s, &mut x_ref, None, None)?;
    let (valid, codes) = match valid {
        None => (None, None),
        Some(v) => {
            // the weight of each row's valid samples in each cell: valid·M
            let weights = b.mask_values(&v)?;
            let mut w = b.output(k * s)?;
            b.m(&weights, s, &mut w, None, None)?;
            drop(weights);
            let codes = b.renormalise(&mut x_ref, &w, masked_rows)?;
            (Some(v), Some(codes))
        }
    };
    Ok((x_ref, y0, valid, codes))
}

/// What the bounded solve of s rows works from.
struct Parts<'a, F: Real, B: Backend<F>> {
    a: &'a Normal<F, B>,
    x_ref: &'a B::Vals,
    rhs: &'a B::Vals,
    x0: Option<&'a B::Vals>,
    codes: &'a B::Mask,
    lo: &'a [F],
    hi: &'a [F],
    targets: Option<&'a [f64]>,
}

/// The bounded fit (and its conservation correction) of s rows: the fitted values (K×s) and the
/// cell codes (host), with the CG record and passes written to `sol`. Rows are solved together with
/// the pooled rule, one by one with the per-row rule.
fn solve_bounded<F: Real, B: Backend<F>>(
    b: &B,
    p: Parts<'_, F, B>,
    stopping: Stopping,
    lim: Limits,
    sol: &mut Solution<Option<B::Vals>>,
) -> Result<(B::Vals, Vec<u8>)> {
    let (k, s) = (b.k(), p.lo.len());
    let groups: Vec<Vec<usize>> = match stopping {
        Stopping::Pooled => vec![(0..s).collect()],
        Stopping::PerRow => (0..s).map(|j| vec![j]).collect(),
    };
    let mut hval = b.zeros(k * s)?;
    let mut codes = vec![0u8; k * s];
    sol.norms = vec![Vec::new(); s];
    for group in groups {
        let g = group.len();
        let part = |v: &B::Vals| b.select(v, s, &group);
        let (xr, glo, ghi) = (part(p.x_ref)?, pick(p.lo, &group), pick(p.hi, &group));
        let a = p.a.select(b, s, &group)?;
        let x0 = p.x0.map(part).transpose()?;
        let gcodes = b.select_mask(p.codes, s, &group)?;
        let bx = BoxBounds { lo: &glo, hi: &ghi, off: Some(&xr) };
        let BoundedOut { x, codes: mut gc, iterations, mut norms, converged, outer } =
            bounded_cg(b, &a, &part(p.rhs)?, x0, &bx, gcodes, lim)?;
        let mut h = xr;
        b.axpby(&mut h, &vec![F::ONE; g], &x, F::ONE)?;
        let fitted = BoxBounds { lo: &glo, hi: &ghi, off: None };
        if let Some(t) = p.targets {
            (h, gc) = conserve_rounds(b, &a, h, &pick(t, &group), &fitted, gc, lim)?;
        }
        // remove the rounding of x_ref + (bound − x_ref)
        b.box_rule(BoxRule::Clamp { x: &mut h, b: &fitted, codes: Some(&gc) })?;
        b.put_columns(&mut hval, s, &h, g, &group.iter().copied().enumerate().collect::<Vec<_>>())?;
        let gc = b.download_mask(&gc)?;
        for (c, &j) in group.iter().enumerate() {
            for (dst, src) in codes.iter_mut().skip(j).step_by(s).zip(gc.iter().skip(c).step_by(g)) {
                *dst = *src;
            }
            sol.iterations[j] = iterations[c];
            sol.converged[j] = converged[c];
            sol.norms[j] = std::mem::take(&mut norms[c]);
        }
        sol.outer = sol.outer.max(outer);
    }
    Ok((hval, codes))
}

/// The values of the rows `group` of a per-row array.
fn pick<T: Copy>(v: &[T], group: &[usize]) -> Vec<T> {
    group.iter().map(|&j| v[j]).collect()
}

/// Cells held at the lower and the upper bound in each of s columns of K×s codes.
pub(crate) fn held_counts(codes: &[u8], s: usize, skip: &[u32]) -> (Vec<usize>, Vec<usize>) {
    let (mut low, mut high) = (vec![0; s], vec![0; s]);
    for (cell, row) in codes.chunks_exact(s).enumerate() {
        if skip.binary_search(&(cell as u32)).is_ok() {
            continue;
        }
        for (j, &c) in row.iter().enumerate() {
            low[j] += (c & HELD_LOW != 0) as usize;
            high[j] += (c & HELD_HIGH != 0) as usize;
        }
    }
    (low, high)
}
