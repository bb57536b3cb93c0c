//! The batched values between the caller's layout and the solver's: B rows of E values row-major
//! (the caller's) ↔ E×s interleaved blocks of the selected rows, element-major (the products'),
//! with the operator's sample order on the way in and back.
//!
//! Every move is a cache-blocked transpose: a chunk of elements of every selected row is read
//! sequentially and written into a block small enough to stay in cache (≤ [`BLOCK`] values), so
//! each cache line of either side is loaded once. The permutation into the operator's sample order
//! (cell order, random with respect to the caller's) moves whole rows of the block: on the way in,
//! a chunk of samples is transposed in the caller's order and each sample's row written whole at
//! its position; on the way back, a chunk's rows are gathered from their positions into a block in
//! cache, then written out row by row. The floor of each move is reading and writing its values
//! once.

use super::cpu::{prefetch_bytes, CHUNK};
use super::{pages, RowFacts, LEFT_OUT};
use crate::real::Real;
use rayon::prelude::*;

/// Most values in a block a chunk of the transposes writes (256 KiB of f64).
const BLOCK: usize = 1 << 15;

/// Elements per chunk of an E×s block: [`CHUNK`], fewer for wide blocks (≥ 64).
fn chunk_len(s: usize) -> usize {
    (BLOCK / s.max(1)).clamp(64, CHUNK)
}

/// Rows `sel` of a B×E row-major block, interleaved E×|sel|, written over `out` (E×|sel| values,
/// of any content: every one is written).
pub(crate) fn interleave<F: Real>(mut out: Vec<F>, v: &[F], e: usize, sel: &[usize]) -> Vec<F> {
    let s = sel.len();
    assert_eq!(out.len(), e * s, "interleave: an output block of another size (a bug)");
    if s > 0 {
        let chunk = chunk_len(s);
        out.par_chunks_mut(chunk * s).enumerate().for_each(|(c, block)| transpose_chunk(block, v, e, sel, c * chunk));
    }
    out
}

/// Elements i0.. of the rows `sel` of the row-major block `v` (rows of e), interleaved into
/// `block` (|sel| values per element, as many elements as it holds): each row's part read in one
/// stream, the block small enough to stay in cache.
fn transpose_chunk<F: Copy + 'static>(block: &mut [F], v: &[F], e: usize, sel: &[usize], i0: usize) {
    let s = sel.len();
    let len = block.len() / s.max(1);
    let row = |r: usize| &v[sel[r] * e + i0..][..len];
    let mut r = 0;
    // four rows at a time, in tiles of 4×4: a tile's four rows stored whole
    while r + 4 <= s {
        let src = [row(r), row(r + 1), row(r + 2), row(r + 3)];
        let mut d = 0;
        while d + 4 <= len {
            let t = tile4(src.map(|x| -> [F; 4] { x[d..d + 4].try_into().expect("4") }));
            for (j, t) in t.iter().enumerate() {
                block[(d + j) * s + r..][..4].copy_from_slice(t);
            }
            d += 4;
        }
        for d in d..len {
            for (i, x) in src.iter().enumerate() {
                block[d * s + r + i] = x[d];
            }
        }
        r += 4;
    }
    for r in r..s {
        for (dp, &x) in row(r).iter().enumerate() {
            block[dp * s + r] = x;
        }
    }
}

/// The transpose of a 4×4 tile (`out[j][i] = t[i][j]`), in vector registers on x86-64.
#[inline(always)]
fn tile4<F: Copy + 'static>(t: [[F; 4]; 4]) -> [[F; 4]; 4] {
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<F>() == std::any::TypeId::of::<f32>() {
        use std::arch::x86_64::*;
        // SAFETY: F is f32 (checked), so both arrays are [[f32; 4]; 4]; SSE is part of x86-64
        unsafe {
            let t: [[f32; 4]; 4] = std::mem::transmute_copy(&t);
            let [a, b, c, d] = t.map(|r| _mm_loadu_ps(r.as_ptr()));
            let (ab_lo, cd_lo) = (_mm_unpacklo_ps(a, b), _mm_unpacklo_ps(c, d)); // a0 b0 a1 b1, c0 d0 c1 d1
            let (ab_hi, cd_hi) = (_mm_unpackhi_ps(a, b), _mm_unpackhi_ps(c, d)); // a2 b2 a3 b3, c2 d2 c3 d3
            let rows = [
                _mm_movelh_ps(ab_lo, cd_lo),
                _mm_movehl_ps(cd_lo, ab_lo),
                _mm_movelh_ps(ab_hi, cd_hi),
                _mm_movehl_ps(cd_hi, ab_hi),
            ];
            let mut out = [[0.0f32; 4]; 4];
            for (o, r) in out.iter_mut().zip(rows) {
                _mm_storeu_ps(o.as_mut_ptr(), r);
            }
            return std::mem::transmute_copy(&out);
        }
    }
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<F>() == std::any::TypeId::of::<f64>() {
        use std::arch::x86_64::*;
        // SAFETY: F is f64 (checked), so both arrays are [[f64; 4]; 4]; SSE2 is part of x86-64
        unsafe {
            let t: [[f64; 4]; 4] = std::mem::transmute_copy(&t);
            let [a, b, c, d] = t;
            let mut out = [[0.0f64; 4]; 4];
            for h in [0, 2] {
                let [a, b, c, d] = [a, b, c, d].map(|r| _mm_loadu_pd(r[h..].as_ptr())); // values h, h + 1
                let [lo, hi] = &mut out[h..h + 2] else { unreachable!() };
                _mm_storeu_pd(lo.as_mut_ptr(), _mm_unpacklo_pd(a, b));
                _mm_storeu_pd(lo[2..].as_mut_ptr(), _mm_unpacklo_pd(c, d));
                _mm_storeu_pd(hi.as_mut_ptr(), _mm_unpackhi_pd(a, b));
                _mm_storeu_pd(hi[2..].as_mut_ptr(), _mm_unpackhi_pd(c, d));
            }
            return std::mem::transmute_copy(&out);
        }
    }
    std::array::from_fn(|j| std::array::from_fn(|i| t[i][j]))
}

/// The block `src` (elements of s values) into the rows `out` (one column each), column j times
/// `scale[j]` where given: the inverse of [`transpose_chunk`]. Four elements at a time: their rows
/// of `src` are read in one stream (1 KiB at s = 64 f32) while every output row receives their four
/// values, in tiles of 4×4 where four columns remain (four columns at a time over all elements, each
/// 16-byte piece of `src` came from another line: 10–15 % slower at s = 64).
fn untranspose_chunk<F: Real>(out: &mut [&mut [F]], src: &[F], s: usize, scale: Option<&[F]>) {
    let len = out.first().map_or(0, |r| r.len());
    let factor = |j: usize| scale.map(|c| c[j]);
    let put = |row: &mut [F], x: &[F], c: Option<F>| match c {
        None => row.copy_from_slice(x),
        Some(c) => row.iter_mut().zip(x).for_each(|(o, &x)| *o = x * c),
    };
    let tiled = s / 4 * 4; // the columns in whole tiles
    let mut i = 0;
    while i + 4 <= len {
        for j in (0..tiled).step_by(4) {
            let t = tile4(std::array::from_fn(|t| src[(i + t) * s + j..][..4].try_into().expect("4")));
            for (q, t) in t.iter().enumerate() {
                put(&mut out[j + q][i..i + 4], t, factor(j + q));
            }
        }
        i += 4;
    }
    for i in i..len {
        for (j, row) in out.iter_mut().enumerate().take(tiled) {
            put(&mut row[i..i + 1], &src[i * s + j..][..1], factor(j));
        }
    }
    for (j, row) in out.iter_mut().enumerate().skip(tiled) {
        let c = factor(j);
        for (i, x) in row.iter_mut().enumerate() {
            put(std::slice::from_mut(x), &src[i * s + j..][..1], c);
        }
    }
}

/// Rows `sel` of B×N sample values at the operator's samples, interleaved E×|sel| (E the samples
/// used: sample i goes to row `position[i]`, none where it is [`LEFT_OUT`]), NaN as 0 with
/// `zero_nan`, column j times `scale[j]` where given (each value stored once, finished); with
/// `mask`, also which values are not NaN (bit 0). `y0` (E×|sel| values) is written over: the rows
/// no sample goes to hold 0, whatever they held.
///
/// A chunk of samples at a time in the caller's order: every selected row's part of the chunk is
/// read in one stream and transposed into a block that stays in cache, whose rows are then written
/// to their positions, each a whole row at once (random in the block, but every cache line of it
/// written once, and the caller's values read once).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sample_block<F: Real>(
    mut y0: Vec<F>,
    v: &[F],
    sel: &[usize],
    position: &[u32],
    e: usize,
    mask: bool,
    zero_nan: bool,
    scale: Option<&[F]>,
) -> (Vec<F>, Option<Vec<u8>>) {
    let (n, s) = (position.len(), sel.len());
    assert_eq!(y0.len(), e * s, "sample_block: an output block of another size (a bug)");
    // calloc's pages, each made by the first write into it
    let mut valid = pages::zeroed(if mask { e * s } else { 0 }, 0u8);
    let hit = injection(position, e).expect("the operator's sample positions are not distinct (a bug)");
    if hit < e {
        y0.par_chunks_mut(CHUNK * s.max(1)).for_each(|c| c.fill(F::ZERO)); // rows no sample writes
    }
    let rows = Rows { y0: y0.as_mut_ptr(), valid: mask.then_some(valid.as_mut_ptr()), s, scale };
    let rows = &rows; // the closure must capture the Sync wrapper, not its fields
    let chunk = chunk_len(s);
    (0..n.div_ceil(chunk)).into_par_iter().for_each_init(Vec::new, |block: &mut Vec<F>, c| {
        let (i0, len) = (c * chunk, chunk.min(n - c * chunk));
        block.resize(len * s, F::ZERO);
        transpose_chunk(block, v, n, sel, i0);
        let positions = &position[i0..i0 + len];
        for (di, &p) in positions.iter().enumerate() {
            if let Some(&q) = positions.get(di + ROWS_AHEAD).filter(|&&q| q != LEFT_OUT) {
                rows.prefetch(q as usize);
            }
            if p != LEFT_OUT {
                // SAFETY: p < e and the positions other than LEFT_OUT are distinct (checked above), so
                // row p of y0 and valid is written by this task alone, and nothing reads them here
                unsafe { rows.put(p as usize, &block[di * s..(di + 1) * s], zero_nan) };
            }
        }
    });
    (y0, mask.then_some(valid))
}

/// Rows ahead of the one `sample_block` stores (or `scatter` loads) whose cache lines it asks for:
/// the rows lie at random places, and each waited for its lines (at B = 64 f32, 16 rows ahead made
/// the gather of 10⁶ random positions 120–133 → 103–115 ms; 4 and 24 did no better).
const ROWS_AHEAD: usize = 16;

/// How many values of `position` are not [`LEFT_OUT`], if they are distinct and below `e`.
fn injection(position: &[u32], e: usize) -> Option<usize> {
    let mut seen = vec![false; e];
    let mut hit = 0;
    for &p in position.iter().filter(|&&p| p != LEFT_OUT) {
        if p >= e as u32 || std::mem::replace(&mut seen[p as usize], true) {
            return None;
        }
        hit += 1;
    }
    Some(hit)
}

/// The rows of the E×s blocks `sample_block` writes from its parallel tasks, each row by one task.
struct Rows<'a, F> {
    y0: *mut F,
    valid: Option<*mut u8>,
    s: usize,
    /// factors of the columns, applied as the values are written
    scale: Option<&'a [F]>,
}

// SAFETY: the tasks write disjoint rows (see `sample_block`), values of F sent from the tasks'
// threads; `scale` is only read.
unsafe impl<F: Send + Sync> Sync for Rows<'_, F> {}

impl<F: Real> Rows<'_, F> {
    /// Asks the cache for row p of y0, about to be written (a hint: reads nothing).
    #[inline(always)]
    fn prefetch(&self, p: usize) {
        prefetch_bytes(self.y0.wrapping_add(p * self.s).cast(), self.s * size_of::<F>());
    }

    /// Writes `x` (s values, times the column factors) into row p of y0 (NaN as 0 with `zero_nan`)
    /// and its mask into row p of valid.
    ///
    /// # Safety
    /// Row p exists, and no other thread reads or writes it meanwhile.
    #[inline(always)]
    unsafe fn put(&self, p: usize, x: &[F], zero_nan: bool) {
        let y = std::slice::from_raw_parts_mut(self.y0.add(p * self.s), self.s);
        let value = |x: F| if zero_nan && x.is_nan() { F::ZERO } else { x };
        // each value stored once, finished: reading back a row just stored at a random place
        // waits for its cache line (one memory latency per row)
        match self.scale {
            None => y.iter_mut().zip(x).for_each(|(d, &x)| *d = value(x)),
            Some(c) => y.iter_mut().zip(x).zip(c).for_each(|((d, &x), &c)| *d = value(x) * c),
        }
        if let Some(m) = self.valid {
            let m = std::slice::from_raw_parts_mut(m.add(p * self.s), self.s);
            for (b, &x) in m.iter_mut().zip(x) {
                *b = !x.is_nan() as u8;
            }
        }
    }
}

/// What each row of `v` (rows of `width`) holds, over the elements with `position[i] != LEFT_OUT`
/// (all without `position`).
pub(crate) fn row_facts<F: Real>(v: &[F], width: usize, position: Option<&[u32]>) -> Vec<RowFacts> {
    let left_out = position.map_or(0, |p| p.iter().filter(|&&p| p == LEFT_OUT).count());
    let position = position.filter(|_| left_out > 0);
    v.par_chunks(width.max(1))
        .map(|row| {
            let mut f = facts_of(row, position);
            f.nan -= left_out as u64; // counted as NaN by the lanes
            f
        })
        .collect()
}

/// [`row_facts`] in L independent lanes, in the values' own type: counts, minima and maxima do not
/// depend on the order, and the lanes make a loop the compiler vectorises. The extremes are over
/// every value but NaN: an infinity is one (it is counted, and the fits refuse it). Lanes of 64
/// bytes (16 f32, 8 f64): each lane's minimum and maximum is a chain of dependent comparisons, and
/// 8 lanes of f32 (two SSE registers) waited on them — 2.0× slower (1.3 against 0.65 ns a value).
struct Lanes<F, const L: usize> {
    nan: [u32; L],
    inf: [u32; L],
    low: [F; L],
    high: [F; L],
}

/// The facts of `values`, where those at `position` [`LEFT_OUT`] count as NaN.
fn facts_of<F: Real>(values: &[F], position: Option<&[u32]>) -> RowFacts {
    if std::mem::size_of::<F>() == 4 {
        Lanes::<F, 16>::of(values, position)
    } else {
        Lanes::<F, 8>::of(values, position)
    }
}

impl<F: Real, const L: usize> Lanes<F, L> {
    fn of(values: &[F], position: Option<&[u32]>) -> RowFacts {
        let nan = F::from_f64(f64::NAN);
        let mut l = Lanes { nan: [0; L], inf: [0; L], low: [F::INFINITY; L], high: [-F::INFINITY; L] };
        let chunks = values.chunks_exact(L);
        let rest = chunks.remainder();
        match position {
            None => chunks.for_each(|xs| l.add(xs.try_into().expect("L values"))),
            Some(p) => {
                for (xs, ps) in chunks.zip(p.chunks_exact(L)) {
                    l.add(&std::array::from_fn(|q| if ps[q] == LEFT_OUT { nan } else { xs[q] }));
                }
            }
        }
        let at = values.len() - rest.len();
        let mut last = [nan; L]; // the lanes past the end count as NaN, taken off below
        for (q, &x) in rest.iter().enumerate() {
            last[q] = if position.is_some_and(|p| p[at + q] == LEFT_OUT) { nan } else { x };
        }
        l.add(&last);
        let mut f = RowFacts::default();
        for q in 0..L {
            f.nan += l.nan[q] as u64;
            f.inf += l.inf[q] as u64;
            f.low = f.low.min(l.low[q].to_f64());
            f.high = f.high.max(l.high[q].to_f64());
        }
        f.nan -= (L - rest.len()) as u64;
        f
    }

    #[inline(always)]
    fn add(&mut self, xs: &[F; L]) {
        for (q, &x) in xs.iter().enumerate() {
            self.nan[q] += x.is_nan() as u32;
            self.inf[q] += (x.abs() == F::INFINITY) as u32;
            // (a NaN compares false: never an extreme)
            self.low[q] = if x < self.low[q] { x } else { self.low[q] };
            self.high[q] = if x > self.high[q] { x } else { self.high[q] };
        }
    }
}

/// An E×s interleaved block as s rows of E (row-major). With `position`, output element i is taken
/// from position `position[i]` (samples back to the caller's order; samples left out, [`LEFT_OUT`],
/// come back NaN). With `scale`, output row j is multiplied by `scale[j]`. Written over `out`
/// (E×s values, of any content: every one is written).
pub(crate) fn deinterleave<F: Real>(
    mut out: Vec<F>,
    v: &[F],
    e: usize,
    s: usize,
    position: Option<&[u32]>,
    scale: Option<&[F]>,
) -> Vec<F> {
    assert_eq!(out.len(), e * s, "deinterleave: an output block of another size (a bug)");
    scatter(v, s, out.chunks_mut(e.max(1)).collect(), position, scale);
    out
}

/// The columns of the E×s block `v` into `rows` (s rows of E), column j times `scale[j]` where
/// given, chunk by chunk in parallel: each chunk's block of `v` stays in cache while every row's
/// part of the chunk is written in turn.
fn scatter<F: Real>(v: &[F], s: usize, rows: Vec<&mut [F]>, position: Option<&[u32]>, scale: Option<&[F]>) {
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
                let pos = &pos[base..base + len];
                for (i, &p) in pos.iter().enumerate() {
                    if let Some(&q) = pos.get(i + ROWS_AHEAD).filter(|&&q| q != LEFT_OUT) {
                        prefetch_bytes(v[q as usize * s..].as_ptr().cast(), s * size_of::<F>());
                    }
                    match p {
                        LEFT_OUT => block.extend(std::iter::repeat_n(F::from_f64(f64::NAN), s)),
                        p => block.extend_from_slice(&v[p as usize * s..(p as usize + 1) * s]),
                    }
                }
                &block[..]
            }
        };
        untranspose_chunk(&mut rows, src, s, scale);
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

    /// The layouts against their definitions, on shapes around the chunk, group and tile sizes
    /// (f32 and f64 take their own vector tiles on x86-64).
    #[test]
    fn moves_match_their_definitions() {
        moves_match::<f32>();
        moves_match::<f64>();
    }

    fn moves_match<F: Real>() {
        let nan = F::from_f64(f64::NAN);
        for &(b, e) in &[(1usize, 5usize), (3, 2049), (17, 4100), (40, 70), (70, 3000), (9, 4099)] {
            let v: Vec<F> = (0..b * e).map(|i| if i % 11 == 3 { nan } else { F::from_f64(i as f64) }).collect();
            let sel: Vec<usize> = (0..b).filter(|r| r % 3 != 1).collect();
            let s = sel.len();
            let il = interleave(junk(e * s), &v, e, &sel);
            for i in 0..e {
                for (j, &r) in sel.iter().enumerate() {
                    assert!(same(il[i * s + j], v[r * e + i]));
                }
            }
            // a permutation with samples left out
            let order: Vec<u32> = (0..e as u32).rev().filter(|i| i % 5 != 2).collect();
            let mut position = vec![u32::MAX; e];
            for (p, &i) in order.iter().enumerate() {
                position[i as usize] = p as u32;
            }
            let (y0, valid) = sample_block(junk(order.len() * s), &v, &sel, &position, order.len(), true, true, None);
            let (raw, none) = sample_block(junk(order.len() * s), &v, &sel, &position, order.len(), false, false, None);
            // column factors (powers of two) applied as written: the bits of scaling afterwards
            let c: Vec<F> = (0..s).map(|j| F::from_f64([0.5, 1.0, 4.0][j % 3])).collect();
            let (mut scaled, _) =
                sample_block(junk(order.len() * s), &v, &sel, &position, order.len(), false, true, Some(&c));
            scale_columns(&mut scaled, &c);
            let (mut twice, _) =
                sample_block(junk(order.len() * s), &v, &sel, &position, order.len(), false, true, None);
            scale_columns(&mut twice, &c);
            scale_columns(&mut twice, &c);
            assert!(scaled.iter().zip(&twice).all(|(a, b)| a.to_f64().to_bits() == b.to_f64().to_bits()));
            assert!(none.is_none());
            let valid = valid.expect("asked for");
            for (p, &i) in order.iter().enumerate() {
                for (j, &r) in sel.iter().enumerate() {
                    let x = v[r * e + i as usize];
                    assert_eq!(y0[p * s + j], if x.is_nan() { F::ZERO } else { x });
                    assert!(same(raw[p * s + j], x));
                    assert_eq!(valid[p * s + j], !x.is_nan() as u8);
                }
            }
            // back: rows of the interleaved block, and samples back to their positions
            let back = deinterleave(junk(e * s), &il, e, s, None, None);
            let mut il_scaled = il.clone();
            scale_columns(&mut il_scaled, &c);
            let plain = deinterleave(junk(e * s), &il_scaled, e, s, Some(&position), None);
            let fused = deinterleave(junk(e * s), &il, e, s, Some(&position), Some(&c));
            assert!(plain.iter().zip(&fused).all(|(a, b)| a.to_f64().to_bits() == b.to_f64().to_bits()));
            for (j, &r) in sel.iter().enumerate() {
                for i in 0..e {
                    assert!(same(back[j * e + i], v[r * e + i]));
                }
            }
            let caller = deinterleave(junk(e * s), &y0, e, s, Some(&position), None);
            for (j, &r) in sel.iter().enumerate() {
                for i in 0..e {
                    let want = if position[i] == u32::MAX {
                        nan
                    } else if v[r * e + i].is_nan() {
                        F::ZERO
                    } else {
                        v[r * e + i]
                    };
                    assert!(same(caller[j * e + i], want));
                }
            }
        }
    }

    /// The facts of rows against a plain count, with and without samples left out, in both types
    /// (16 lanes for f32, 8 for f64) and for rows that fill their lanes or not.
    #[test]
    fn row_facts_count_what_rows_hold() {
        row_facts_of::<f64>();
        row_facts_of::<f32>();
    }

    fn row_facts_of<F: Real>() {
        for (b, e) in [(6usize, 1000usize), (4, 1003), (2, 5), (3, 16), (3, 33)] {
            // rows 0 and 1 without infinities
            let v: Vec<F> = (0..b * e)
                .map(|i| match i % 13 {
                    1 => F::from_f64(f64::NAN),
                    4 if i % 2 == 0 && i >= 2 * e => F::INFINITY,
                    7 => F::from_f64(-(i as f64)),
                    _ => F::from_f64(i as f64 * 0.5),
                })
                .collect();
            let position: Vec<u32> = (0..e as u32).map(|i| if i % 7 == 3 { LEFT_OUT } else { i }).collect();
            for pos in [None, Some(&position[..])] {
                let facts = row_facts(&v, e, pos);
                for (r, f) in facts.iter().enumerate() {
                    let used =
                        || (0..e).filter(|&i| pos.is_none_or(|p| p[i] != LEFT_OUT)).map(|i| v[r * e + i].to_f64());
                    assert_eq!(f.nan, used().filter(|x| x.is_nan()).count() as u64);
                    assert_eq!(f.inf, used().filter(|x| x.is_infinite()).count() as u64);
                    if f.inf == 0 {
                        let max = used().filter(|x| x.is_finite()).fold(0.0f64, |m, x| m.max(x.abs()));
                        assert_eq!(f.max_abs(), max);
                    }
                    let low = used().filter(|x| !x.is_nan()).fold(f64::INFINITY, f64::min);
                    let high = used().filter(|x| !x.is_nan()).fold(f64::NEG_INFINITY, f64::max);
                    assert_eq!((f.low, f.high), (low, high), "b {b} e {e} row {r}");
                }
            }
        }
    }

    /// An output block of garbage (a value no move writes): the moves must write every value.
    fn junk<F: Real>(len: usize) -> Vec<F> {
        vec![F::from_f64(-12345.5); len]
    }

    /// A sample block whose rows do not all receive a sample holds zeros there, whatever its block
    /// held before.
    #[test]
    fn rows_without_a_sample_are_zero() {
        let (e, s) = (6usize, 3usize);
        let v: Vec<f64> = (0..s * 4).map(|i| i as f64 + 1.0).collect();
        let position = [5u32, LEFT_OUT, 0, 2];
        let (y0, _) = sample_block(junk(e * s), &v, &[0, 1, 2], &position, e, false, false, None);
        for (p, row) in y0.chunks_exact(s).enumerate() {
            match position.iter().position(|&q| q == p as u32) {
                Some(i) => assert_eq!(row, [v[i], v[4 + i], v[8 + i]]),
                None => assert_eq!(row, [0.0; 3]),
            }
        }
    }

    fn same<F: Real>(a: F, b: F) -> bool {
        a == b || (a.is_nan() && b.is_nan())
    }
}
