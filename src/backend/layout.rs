//! The batched values between the caller's layout and the solver's: B rows of E values row-major
//! (the caller's) ↔ E×s interleaved blocks of the selected rows, element-major (the products'),
//! with the operator's sample order on the way in and back.
//!
//! Every move is a cache-blocked transpose: a chunk of elements of every selected row is read
//! sequentially and written into a block small enough to stay in cache (≤ [`BLOCK`] values), so
//! each cache line of either side is loaded once. The permutation into the operator's sample order
//! (cell order, random with respect to the caller's) moves whole cache lines: the rows are first
//! transposed in the caller's order, a cache line's worth of rows at a time, then gathered line by
//! line. The floor of each move is reading and writing its values once.

use super::cpu::{prefetch, CHUNK};
use super::{RowFacts, LEFT_OUT};
use crate::real::Real;
use rayon::prelude::*;

/// Most values in a block a chunk of the transposes writes (256 KiB of f64).
const BLOCK: usize = 1 << 15;

/// Elements per chunk of an E×s block: [`CHUNK`], fewer for wide blocks (≥ 64).
fn chunk_len(s: usize) -> usize {
    (BLOCK / s.max(1)).clamp(64, CHUNK)
}

/// Rows `sel` of a B×E row-major block, interleaved E×|sel|.
pub(crate) fn interleave<F: Real>(v: &[F], e: usize, sel: &[usize]) -> Vec<F> {
    let mut out = vec![F::ZERO; e * sel.len()];
    interleave_into(&mut out, v, e, sel);
    out
}

/// [`interleave`] into `out` (E×|sel| values).
fn interleave_into<F: Real>(out: &mut [F], v: &[F], e: usize, sel: &[usize]) {
    let s = sel.len();
    if s == 0 {
        return;
    }
    let chunk = chunk_len(s);
    out.par_chunks_mut(chunk * s).enumerate().for_each(|(c, block)| {
        let len = block.len() / s;
        for (r, &b) in sel.iter().enumerate() {
            let src = &v[b * e + c * chunk..][..len];
            for (dp, &x) in src.iter().enumerate() {
                block[dp * s + r] = x;
            }
        }
    });
}

/// Rows `sel` of B×N sample values at the operator's samples (`order`), interleaved N_used×|sel|,
/// NaN as 0 with `zero_nan`; with `mask`, also which values are not NaN (bit 0).
pub(crate) fn sample_block<F: Real>(
    v: &[F],
    n: usize,
    sel: &[usize],
    order: &[u32],
    mask: bool,
    zero_nan: bool,
) -> (Vec<F>, Option<Vec<u8>>) {
    let s = sel.len();
    let mut y0 = vec![F::ZERO; order.len() * s];
    // zeroed lazily: untouched (no page is ever written) without `mask`
    let mut valid = vec![0u8; order.len() * s];
    // a cache line of rows at a time: transposed in the caller's order, then gathered by line
    // (one buffer for every group: a fresh page costs a fault and the kernel's zeroing, more than
    // the copy that fills it)
    let g = (64 / std::mem::size_of::<F>()).clamp(1, s.max(1));
    let mut buf = if g > 1 { vec![F::ZERO; n * g] } else { Vec::new() };
    for (gi, rows) in sel.chunks(g).enumerate() {
        // a single row is its own N×1 block
        let t: &[F] = if let [b] = rows {
            &v[b * n..(b + 1) * n]
        } else {
            interleave_into(&mut buf[..n * rows.len()], v, n, rows);
            &buf[..n * rows.len()]
        };
        let cols = gi * g..gi * g + rows.len();
        let lines = Lines { t, g: rows.len(), order, s, cols, zero_nan };
        gather_lines(&lines, &mut y0, mask.then_some(&mut valid[..]));
    }
    (y0, mask.then_some(valid))
}

/// What [`gather_lines`] reads: the N×g block `t` of g rows, to go to columns `cols` of an E×s
/// block at the samples `order`.
struct Lines<'a, F> {
    t: &'a [F],
    g: usize,
    order: &'a [u32],
    s: usize,
    cols: std::ops::Range<usize>,
    zero_nan: bool,
}

/// Columns `cols` of the E×s block `y0` (and of `valid`) from the lines of `l.t` at the samples
/// `l.order` (NaN as 0 with `zero_nan`, valid = not NaN).
fn gather_lines<F: Real>(l: &Lines<'_, F>, y0: &mut [F], valid: Option<&mut [u8]>) {
    let s = l.s;
    let chunk = chunk_len(s);
    let fill = |c: usize, yb: &mut [F], mb: Option<&mut [u8]>| {
        let order = &l.order[c * chunk..][..yb.len() / s];
        if l.zero_nan {
            copy_lines::<F, true>(l, order, yb, mb);
        } else {
            copy_lines::<F, false>(l, order, yb, mb);
        }
    };
    match valid {
        Some(valid) => y0
            .par_chunks_mut(chunk * s)
            .zip(valid.par_chunks_mut(chunk * s))
            .enumerate()
            .for_each(|(c, (yb, mb))| fill(c, yb, Some(mb))),
        None => y0.par_chunks_mut(chunk * s).enumerate().for_each(|(c, yb)| fill(c, yb, None)),
    }
}

/// Samples ahead whose line [`copy_lines`] asks the cache for: the lines are read in a random
/// order, and a sample's copy is too short for the processor to look that far ahead by itself.
const AHEAD: usize = 16;

/// The lines of `l.t` at the samples `order` into rows of the block `yb` (and `mb`), NaN as 0
/// with `Z`.
#[inline(always)]
fn copy_lines<F: Real, const Z: bool>(l: &Lines<'_, F>, order: &[u32], yb: &mut [F], mut mb: Option<&mut [u8]>) {
    let (s, g) = (l.s, l.g);
    for (dp, &i) in order.iter().enumerate() {
        if let Some(&ahead) = order.get(dp + AHEAD) {
            prefetch(&l.t[ahead as usize * g]);
        }
        let line = &l.t[i as usize * g..][..g];
        let at = dp * s + l.cols.start;
        for (d, &y) in yb[at..at + g].iter_mut().zip(line) {
            *d = if Z && y.is_nan() { F::ZERO } else { y };
        }
        if let Some(m) = mb.as_deref_mut() {
            for (b, &y) in m[at..at + g].iter_mut().zip(line) {
                *b = !y.is_nan() as u8;
            }
        }
    }
}

/// What each row of `v` (rows of `width`) holds, over the elements with `position[i] != LEFT_OUT`
/// (all without `position`).
pub(crate) fn row_facts<F: Real>(v: &[F], width: usize, position: Option<&[u32]>) -> Vec<RowFacts> {
    let position = position.filter(|p| p.contains(&LEFT_OUT));
    v.par_chunks(width.max(1))
        .map(|row| {
            let mut f = RowFacts::default();
            for (i, &x) in row.iter().enumerate() {
                if position.is_some_and(|p| p[i] == LEFT_OUT) {
                    continue;
                }
                if x.is_nan() {
                    f.nan += 1;
                } else if !x.is_finite() {
                    f.inf += 1;
                } else {
                    f.low = f.low.min(x.to_f64());
                    f.high = f.high.max(x.to_f64());
                }
            }
            f
        })
        .collect()
}

/// An E×s interleaved block as s rows of E (row-major). With `position`, output element i is taken
/// from position `position[i]` (samples back to the caller's order; samples left out, [`LEFT_OUT`],
/// come back NaN).
pub(crate) fn deinterleave<F: Real>(v: &[F], e: usize, s: usize, position: Option<&[u32]>) -> Vec<F> {
    let mut out = vec![F::ZERO; e * s];
    scatter(v, s, out.chunks_mut(e.max(1)).collect(), position);
    out
}

/// The columns of the E×s block `v` into `rows` (s rows of E), chunk by chunk in parallel: each
/// chunk's block of `v` stays in cache while every row's part of the chunk is written in turn.
fn scatter<F: Real>(v: &[F], s: usize, rows: Vec<&mut [F]>, position: Option<&[u32]>) {
    let e = rows.first().map_or(0, |r| r.len());
    let chunk = chunk_len(s);
    let mut parts: Vec<Vec<&mut [F]>> = (0..e.div_ceil(chunk)).map(|_| Vec::with_capacity(s)).collect();
    for row in rows {
        for (c, part) in row.chunks_mut(chunk).enumerate() {
            parts[c].push(part);
        }
    }
    parts.into_par_iter().enumerate().for_each_init(Vec::new, |block, (c, mut rows)| {
        let base = c * chunk;
        let len = rows.first().map_or(0, |r| r.len());
        let src = match position {
            None => &v[base * s..(base + len) * s],
            Some(pos) => {
                // the chunk's samples' rows of v gathered first, whole rows into a block that stays
                // in cache, so that each row of the output is then written in one stream
                block.clear();
                for &p in &pos[base..base + len] {
                    match p {
                        LEFT_OUT => block.extend(std::iter::repeat_n(F::from_f64(f64::NAN), s)),
                        p => block.extend_from_slice(&v[p as usize * s..(p as usize + 1) * s]),
                    }
                }
                &block[..]
            }
        };
        for (j, row) in rows.iter_mut().enumerate() {
            for (di, x) in row.iter_mut().enumerate() {
                *x = src[di * s + j];
            }
        }
    });
}

/// Multiplies column j of an E×s block by `f[j]`.
pub(crate) fn scale_columns<F: Real>(v: &mut [F], f: &[F]) {
    let s = f.len();
    if s == 0 {
        return;
    }
    v.par_chunks_mut(CHUNK * s).for_each(|c| {
        for row in c.chunks_exact_mut(s) {
            for (x, &c) in row.iter_mut().zip(f) {
                *x *= c;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layouts against their definitions, on shapes around the chunk and group sizes.
    #[test]
    fn moves_match_their_definitions() {
        for &(b, e) in &[(1usize, 5usize), (3, 2049), (17, 4100), (40, 70), (70, 3000)] {
            let v: Vec<f64> = (0..b * e).map(|i| if i % 11 == 3 { f64::NAN } else { i as f64 }).collect();
            let sel: Vec<usize> = (0..b).filter(|r| r % 3 != 1).collect();
            let s = sel.len();
            let il = interleave(&v, e, &sel);
            for i in 0..e {
                for (j, &r) in sel.iter().enumerate() {
                    assert!(same(il[i * s + j], v[r * e + i]));
                }
            }
            // a permutation with samples left out
            let order: Vec<u32> = (0..e as u32).rev().filter(|i| i % 5 != 2).collect();
            let (y0, valid) = sample_block(&v, e, &sel, &order, true, true);
            let (raw, none) = sample_block(&v, e, &sel, &order, false, false);
            assert!(none.is_none());
            let valid = valid.expect("asked for");
            for (p, &i) in order.iter().enumerate() {
                for (j, &r) in sel.iter().enumerate() {
                    let x = v[r * e + i as usize];
                    assert_eq!(y0[p * s + j], if x.is_nan() { 0.0 } else { x });
                    assert!(same(raw[p * s + j], x));
                    assert_eq!(valid[p * s + j], !x.is_nan() as u8);
                }
            }
            // back: rows of the interleaved block, and samples back to their positions
            let back = deinterleave(&il, e, s, None);
            for (j, &r) in sel.iter().enumerate() {
                for i in 0..e {
                    assert!(same(back[j * e + i], v[r * e + i]));
                }
            }
            let mut position = vec![u32::MAX; e];
            for (p, &i) in order.iter().enumerate() {
                position[i as usize] = p as u32;
            }
            let caller = deinterleave(&y0, e, s, Some(&position));
            for (j, &r) in sel.iter().enumerate() {
                for i in 0..e {
                    let want = if position[i] == u32::MAX {
                        f64::NAN
                    } else if v[r * e + i].is_nan() {
                        0.0
                    } else {
                        v[r * e + i]
                    };
                    assert!(same(caller[j * e + i], want));
                }
            }
        }
    }

    /// The facts of rows against a plain count, with and without samples left out.
    #[test]
    fn row_facts_count_what_rows_hold() {
        let (b, e) = (5usize, 1000usize);
        let v: Vec<f64> = (0..b * e)
            .map(|i| match i % 13 {
                1 => f64::NAN,
                4 if i % 2 == 0 => f64::INFINITY,
                7 => -(i as f64),
                _ => i as f64 * 0.5,
            })
            .collect();
        let position: Vec<u32> = (0..e as u32).map(|i| if i % 7 == 3 { LEFT_OUT } else { i }).collect();
        for pos in [None, Some(&position[..])] {
            let facts = row_facts(&v, e, pos);
            for (r, f) in facts.iter().enumerate() {
                let used = || (0..e).filter(|&i| pos.is_none_or(|p| p[i] != LEFT_OUT)).map(|i| v[r * e + i]);
                assert_eq!(f.nan, used().filter(|x| x.is_nan()).count() as u64);
                assert_eq!(f.inf, used().filter(|x| x.is_infinite()).count() as u64);
                let max = used().filter(|x| x.is_finite()).fold(0.0f64, |m, x| m.max(x.abs()));
                assert_eq!(f.max_abs(), max);
                let low = used().filter(|x| x.is_finite()).fold(f64::INFINITY, f64::min);
                let high = used().filter(|x| x.is_finite()).fold(f64::NEG_INFINITY, f64::max);
                assert_eq!((f.low, f.high), (low, high));
            }
        }
    }

    fn same(a: f64, b: f64) -> bool {
        a == b || (a.is_nan() && b.is_nan())
    }
}
