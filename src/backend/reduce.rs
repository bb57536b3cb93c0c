//! The reduction tree of every backend, on the host.
//!
//! A reduction over the rows of an E×s block (a weighted dot product, `<r, r>`, `<p, Ap>`) is, per
//! column, the perfect binary tree that adds adjacent rows — rows 2i and 2i+1, then adjacent pairs
//! of those, and so on — with rows past E counting as +0.0, and the root + 0.0 (so that a zero
//! result is +0.0). The GPU kernels add in the same tree (`csrc/common.cuh`, `hpsf_tile_sum`, and
//! `hpsf_reduce`), so sums agree bit for bit across devices, and, as on the GPU, the result does not
//! depend on how the rows are split: every aligned power-of-two range of rows is a subtree.
//!
//! On the host a parallel chunk of rows (a power of two, aligned) buffers the terms of a small group
//! of rows, sums the group's tree in place, and merges the group sums as a binary counter merges
//! carries; the chunk sums are merged the same way in chunk order. Padding rows are never added:
//! `x + 0.0 = x` for every x but −0.0, and the final `+ 0.0` settles the sign of a zero, so leaving
//! them out changes no result.

/// Values (rows × columns) of a group buffered before it is summed (16 KiB, within a core's L1): a
/// group has `max(1, GROUP_VALUES / s')` rows, s' the power of two ≥ s.
const GROUP_VALUES: usize = 2048;

/// Subtree sums of consecutive equal, aligned ranges of rows, merged as they come.
pub(crate) struct TreeSum {
    s: usize,
    /// the subtree of 2^l ranges at level l, present where bit l of `count` is set
    levels: Vec<f64>,
    count: u64,
    /// scratch of s values
    cur: Vec<f64>,
}

impl TreeSum {
    pub(crate) fn new(s: usize) -> Self {
        TreeSum { s, levels: Vec::new(), count: 0, cur: vec![0.0; s] }
    }

    /// Adds the sums (s values) of the next range.
    pub(crate) fn push(&mut self, v: &[f64]) {
        let s = self.s;
        let mut cur = std::mem::take(&mut self.cur);
        cur.copy_from_slice(v);
        let mut l = 0;
        while self.count >> l & 1 == 1 {
            // left + right (IEEE addition commutes: the bits do not depend on the operands' order)
            for (c, &left) in cur.iter_mut().zip(&self.levels[l * s..(l + 1) * s]) {
                *c += left;
            }
            l += 1;
        }
        if self.levels.len() < (l + 1) * s {
            self.levels.resize((l + 1) * s, 0.0);
        }
        self.levels[l * s..(l + 1) * s].copy_from_slice(&cur);
        self.cur = cur;
        self.count += 1;
    }

    /// The sum of everything pushed, as the tree padded to a power of two would add it (without
    /// the final + 0.0); zeros when nothing was pushed.
    pub(crate) fn sum(&self) -> Vec<f64> {
        let s = self.s;
        let mut out: Option<Vec<f64>> = None;
        for l in 0..64 {
            if self.count >> l & 1 == 0 {
                continue;
            }
            let left = &self.levels[l * s..(l + 1) * s];
            out = Some(match out {
                None => left.to_vec(),
                Some(right) => left.iter().zip(right).map(|(&a, b)| a + b).collect(),
            });
        }
        out.unwrap_or_else(|| vec![0.0; s])
    }
}

/// Rows per group for s columns (a power of two).
fn group_rows(s: usize) -> usize {
    (GROUP_VALUES / s.max(1).next_power_of_two()).max(1)
}

/// Rows whose terms a fill callback of [`chunk_sums`] adds before it writes them: the tree's first
/// two levels, (t0 + t1) + (t2 + t3) per aligned quad of rows (by [`Quads`], or in registers by the
/// CPU backend's loops for the common batch sizes).
pub(crate) const FOLD: usize = 4;

/// The per-column sums of a chunk of `rows` rows that starts at an aligned row (a multiple of a
/// power of two ≥ the chunk's length): `fill(r0, n, terms)` writes the sums of the terms of the
/// chunk's rows r0 .. r0+n, quad by quad ([`Quads`]), into `terms` (⌈n/4⌉·s values, row-major).
pub(crate) fn chunk_sums(rows: usize, s: usize, mut fill: impl FnMut(usize, usize, &mut [f64])) -> Vec<f64> {
    let g = group_rows(s);
    let mut buf = vec![0.0f64; g * s];
    let mut tree = TreeSum::new(s);
    for r0 in (0..rows).step_by(g * FOLD) {
        let n = (g * FOLD).min(rows - r0);
        let q = n.div_ceil(FOLD);
        fill(r0, n, &mut buf[..q * s]);
        match s {
            1 => group_tree::<1>(&mut buf, q),
            2 => group_tree::<2>(&mut buf, q),
            4 => group_tree::<4>(&mut buf, q),
            8 => group_tree::<8>(&mut buf, q),
            16 => group_tree::<16>(&mut buf, q),
            _ => group_tree_dyn(&mut buf, q, s),
        }
        tree.push(&buf[..s]);
    }
    tree.sum()
}

/// The terms of consecutive rows (from an aligned one), summed per aligned quad as the tree adds
/// them and written to `out` quad by quad; a last, partial quad by [`Quads::finish`].
pub(crate) struct Quads<'a> {
    s: usize,
    t: [Vec<f64>; FOLD],
    m: usize,
    out: &'a mut [f64],
    at: usize,
}

impl<'a> Quads<'a> {
    pub(crate) fn new(s: usize, out: &'a mut [f64]) -> Self {
        Quads { s, t: std::array::from_fn(|_| vec![0.0; s]), m: 0, out, at: 0 }
    }

    /// The next row's s terms, to be written.
    #[inline]
    pub(crate) fn row(&mut self) -> &mut [f64] {
        if self.m == FOLD {
            self.flush();
        }
        self.m += 1;
        &mut self.t[self.m - 1]
    }

    fn flush(&mut self) {
        if self.m == 0 {
            return;
        }
        let s = self.s;
        let o = &mut self.out[self.at * s..(self.at + 1) * s];
        let [a, b, c, d] = &self.t;
        match self.m {
            4 => o.iter_mut().enumerate().for_each(|(j, o)| *o = (a[j] + b[j]) + (c[j] + d[j])),
            3 => o.iter_mut().enumerate().for_each(|(j, o)| *o = (a[j] + b[j]) + c[j]),
            2 => o.iter_mut().enumerate().for_each(|(j, o)| *o = a[j] + b[j]),
            1 => o.copy_from_slice(a),
            _ => return,
        }
        self.at += 1;
        self.m = 0;
    }

    /// Writes the last quad.
    pub(crate) fn finish(mut self) {
        self.flush();
    }
}

/// The tree over the first n rows of S columns in `buf`, in place (the sums end in row 0), for the
/// common batch sizes (so that a row's S additions are a vector operation).
fn group_tree<const S: usize>(buf: &mut [f64], n: usize) {
    let mut h = 1;
    while h < n {
        for r in (0..n - h).step_by(2 * h) {
            let (lo, hi) = buf.split_at_mut((r + h) * S);
            let a: &mut [f64; S] = (&mut lo[r * S..(r + 1) * S]).try_into().expect("S values");
            let b: &[f64; S] = hi[..S].try_into().expect("S values");
            for j in 0..S {
                a[j] += b[j];
            }
        }
        h *= 2;
    }
}

fn group_tree_dyn(buf: &mut [f64], n: usize, s: usize) {
    let mut h = 1;
    while h < n {
        for r in (0..n - h).step_by(2 * h) {
            let (lo, hi) = buf.split_at_mut((r + h) * s);
            for (a, &b) in lo[r * s..(r + 1) * s].iter_mut().zip(&hi[..s]) {
                *a += b;
            }
        }
        h *= 2;
    }
}

/// The result of a reduction from its chunks' sums (in chunk order; every chunk but the last of
/// the same power-of-two number of rows).
pub(crate) fn total(chunks: Vec<Vec<f64>>, s: usize) -> Vec<f64> {
    let mut tree = TreeSum::new(s);
    for c in &chunks {
        tree.push(c);
    }
    tree.sum().into_iter().map(|v| v + 0.0).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The definition: the tree over rows padded with +0.0 to a power of two, root + 0.0.
    pub(crate) fn reference(terms: &[f64], rows: usize, s: usize) -> Vec<f64> {
        fn node(t: &[f64], s: usize, j: usize, lo: usize, size: usize, rows: usize) -> f64 {
            if size == 1 {
                return if lo < rows { t[lo * s + j] } else { 0.0 };
            }
            node(t, s, j, lo, size / 2, rows) + node(t, s, j, lo + size / 2, size / 2, rows)
        }
        let size = rows.max(1).next_power_of_two();
        (0..s).map(|j| node(terms, s, j, 0, size, rows) + 0.0).collect()
    }

    fn host(terms: &[f64], rows: usize, s: usize, chunk: usize) -> Vec<f64> {
        let parts = (0..rows)
            .step_by(chunk)
            .map(|c0| {
                let n = chunk.min(rows - c0);
                chunk_sums(n, s, |r0, m, t| {
                    let rows = &terms[(c0 + r0) * s..(c0 + r0 + m) * s];
                    let mut q = Quads::new(s, t);
                    rows.chunks_exact(s).for_each(|r| q.row().copy_from_slice(r));
                    q.finish();
                })
            })
            .collect();
        total(parts, s)
    }

    /// `n` terms of both signs spread over 10^±`decades` (xorshift from `seed`), so that any other
    /// order of additions rounds differently.
    pub(crate) fn terms(n: usize, seed: u64, decades: i32) -> Vec<f64> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let m = (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                m * 10f64.powi((x % (2 * decades as u64 + 1)) as i32 - decades)
            })
            .collect()
    }

    #[test]
    fn the_host_tree_is_the_padded_tree_bit_for_bit() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next_terms = |n: usize| {
            seed += 1;
            terms(n, seed, 8)
        };
        for &s in &[1usize, 2, 3, 5, 8, 64, 100, 256, 300] {
            for &rows in &[0usize, 1, 2, 3, 7, 255, 256, 257, 1000, 2048, 5000] {
                let terms = next_terms(rows * s);
                let want = reference(&terms, rows, s);
                for &chunk in &[2048usize, 256, 64] {
                    let got = host(&terms, rows, s, chunk);
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "s {s}, rows {rows}, chunk {chunk}");
                }
            }
        }
    }

    /// The GPU's shape (`csrc/cg.cu`): tiles of 256/w rows (w the power of two ≥ s, at most 256),
    /// each summed as a tree that adds the padding zeros, then levels of tiles of 256/w' rows (w' at
    /// most 32) until one is left, + 0.0 there.
    fn gpu_shaped(terms: &[f64], rows: usize, s: usize) -> Vec<f64> {
        fn tiles(v: &[f64], rows: usize, s: usize, per: usize) -> Vec<f64> {
            let n = rows.div_ceil(per).max(1);
            let mut out = vec![0.0; n * s];
            for t in 0..n {
                for j in 0..s {
                    let mut sh: Vec<f64> =
                        (0..per).map(|r| if t * per + r < rows { v[(t * per + r) * s + j] } else { 0.0 }).collect();
                    let mut h = 1;
                    while h < per {
                        for r in (0..per).step_by(2 * h) {
                            sh[r] += sh[r + h];
                        }
                        h *= 2;
                    }
                    out[t * s + j] = sh[0];
                }
            }
            out
        }
        let per = |cap: usize| 256 / s.next_power_of_two().min(cap);
        let (mut v, mut g) = (tiles(terms, rows, s, per(256)), rows.div_ceil(per(256)));
        loop {
            let next = g.div_ceil(per(32)).max(1);
            v = tiles(&v, g, s, per(32));
            if next == 1 {
                return v.iter().map(|x| x + 0.0).collect();
            }
            g = next;
        }
    }

    #[test]
    fn the_gpus_tiles_add_as_the_host_tree() {
        for &s in &[1usize, 3, 8, 33, 256, 300] {
            for &rows in &[0usize, 1, 5, 256, 257, 3000, 70_000] {
                if rows * s > 3_000_000 {
                    continue;
                }
                let terms = terms(rows * s, (rows * 1000 + s) as u64, 6);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&host(&terms, rows, s, 2048)),
                    bits(&gpu_shaped(&terms, rows, s)),
                    "s {s}, rows {rows}"
                );
            }
        }
    }

    #[test]
    fn a_zero_sum_is_positive_zero() {
        let terms = [-0.0f64, -0.0];
        assert_eq!(host(&terms, 2, 1, 2048)[0].to_bits(), 0.0f64.to_bits());
        assert_eq!(host(&[], 0, 3, 2048), vec![0.0; 3]);
    }
}
