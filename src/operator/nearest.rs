//! The sample nearest to each of a few points (cell centres): an exact branch-and-bound search.
//!
//! The samples, sorted by cell, are cut into about √n *buckets* of whole cells sharing a parent
//! cell. Each bucket has a centre (the normalised mean of its samples' unit vectors) and a radius
//! R (the largest angle from the centre to one of its samples), so no sample of a bucket is nearer
//! to a point than angle(point, centre) − R. A point's search scans the bucket whose centre is
//! nearest, then every bucket that bound does not exclude with the best sample found so far (a
//! margin of 1e-12 in the cosine keeps rounding from excluding a bucket it should not). The answer
//! is that of a scan of every sample: the smallest chord distance between unit vectors, ties to the
//! lower sample index — whatever the bucketing, which only decides how much is scanned.
//!
//! The distributed build runs the same search on each rank's samples and keeps the smallest
//! (distance, global index) over the ranks (`crate::distributed`).

use super::samples::Samples;
use crate::geometry::{chord2, Grid};
use rayon::prelude::*;
use std::ops::Range;

/// The cosine margin below which a bucket is excluded (far above the rounding of a dot product of
/// unit vectors, ≈ 1e-16).
const MARGIN: f64 = 1e-12;

/// Groups of consecutive sorted positions (whole cells with one parent), with their bounding caps.
struct Buckets<'a> {
    smp: &'a Samples,
    positions: Vec<Range<usize>>,
    centre: Vec<[f64; 3]>,
    /// each cap's angular radius, its cosine and its sine
    radius: Vec<f64>,
    cos_r: Vec<f64>,
    sin_r: Vec<f64>,
}

/// The (squared chord distance, caller's index) of the sample nearest to each point (unit
/// vectors); (+∞, `u32::MAX`) where there is no sample.
pub(crate) fn nearest_samples(smp: &Samples, points: &[[f64; 3]]) -> Vec<(f64, u32)> {
    if smp.n() == 0 || points.is_empty() {
        return vec![(f64::INFINITY, u32::MAX); points.len()];
    }
    let buckets = Buckets::new(smp);
    points.par_iter().map(|p| buckets.nearest(p)).collect()
}

/// [`nearest_samples`] of samples given by their coordinates (degrees), hashed on `grid`: the
/// (squared chord distance, index into `lon`) of the nearest to each point.
#[allow(dead_code)] // the distributed build's (feature `mpi`)
pub(crate) fn nearest_of(grid: &Grid, lon: &[f64], lat: &[f64], points: &[[f64; 3]]) -> Vec<(f64, u32)> {
    if points.is_empty() {
        return Vec::new();
    }
    nearest_samples(&Samples::new(grid, lon, lat), points)
}

fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// The angle between two unit vectors (accurate near 0 and π).
fn angle(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let c = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
    dot(&c, &c).sqrt().atan2(dot(a, b))
}

impl<'a> Buckets<'a> {
    fn new(smp: &'a Samples) -> Self {
        let (unique, n) = (&smp.unique, smp.n());
        // the finest parent level with at most √n distinct parents (their count falls as the shift grows)
        let parents = |shift: u32| -> usize {
            let p = |u: u64| u.checked_shr(2 * shift).unwrap_or(0);
            1 + unique.windows(2).filter(|w| p(w[0]) != p(w[1])).count()
        };
        let target = (n as f64).sqrt().ceil().max(1.0) as usize;
        let (mut lo, mut hi) = (0u32, 32u32);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if parents(mid) <= target {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let parent = |u: usize| unique[u].checked_shr(2 * lo).unwrap_or(0);
        let mut positions = Vec::new();
        let mut first = 0;
        for u in 1..=unique.len() {
            if u == unique.len() || parent(u) != parent(first) {
                positions.push(smp.start[first]..smp.start[u]);
                first = u;
            }
        }
        let caps: Vec<([f64; 3], f64)> = positions.par_iter().map(|r| cap(&smp.xyz[r.clone()])).collect();
        let (centre, radius): (Vec<[f64; 3]>, Vec<f64>) = caps.into_iter().unzip();
        let (cos_r, sin_r) = radius.iter().map(|r| (r.cos(), r.sin())).unzip();
        Buckets { smp, positions, centre, radius, cos_r, sin_r }
    }

    /// The nearest sample to `p`: (squared chord, caller's index).
    fn nearest(&self, p: &[f64; 3]) -> (f64, u32) {
        let closest = (0..self.positions.len())
            .max_by(|&a, &b| dot(p, &self.centre[a]).total_cmp(&dot(p, &self.centre[b])))
            .expect("at least one bucket");
        let mut best = (f64::INFINITY, u32::MAX);
        self.scan(closest, p, &mut best);
        let mut angle = Angle::of(best.0);
        for b in (0..self.positions.len()).filter(|&b| b != closest) {
            if !self.excluded(b, p, &angle) {
                self.scan(b, p, &mut best);
                angle = Angle::of(best.0);
            }
        }
        best
    }

    /// Whether no sample of bucket `b` can be as near to `p` as the best so far (at `angle`): the
    /// angle from `p` to the centre exceeds that angle plus the radius.
    fn excluded(&self, b: usize, p: &[f64; 3], angle: &Angle) -> bool {
        if angle.theta + self.radius[b] >= std::f64::consts::PI - 1e-6 {
            return false;
        }
        let cos_limit = angle.cos * self.cos_r[b] - angle.sin * self.sin_r[b];
        dot(p, &self.centre[b]) < cos_limit - MARGIN
    }

    fn scan(&self, b: usize, p: &[f64; 3], best: &mut (f64, u32)) {
        for q in self.positions[b].clone() {
            let d = (chord2(p, &self.smp.xyz[q]), self.smp.order[q]);
            if d.0 < best.0 || (d.0 == best.0 && d.1 < best.1) {
                *best = d;
            }
        }
    }
}

/// The angle θ between unit vectors a squared chord c² apart, its cosine 1 − c²/2 and its sine
/// c·√(1 − c²/4).
struct Angle {
    theta: f64,
    cos: f64,
    sin: f64,
}

impl Angle {
    fn of(c2: f64) -> Angle {
        let c = c2.sqrt();
        Angle { theta: 2.0 * (c / 2.0).min(1.0).asin(), cos: 1.0 - c2 / 2.0, sin: c * (1.0 - c2 / 4.0).max(0.0).sqrt() }
    }
}

/// The bounding cap of unit vectors: the normalised mean (the first vector where the mean
/// vanishes) and the largest angle from it, rounded up.
fn cap(xyz: &[[f64; 3]]) -> ([f64; 3], f64) {
    let sum = xyz.iter().fold([0.0; 3], |s, v| [s[0] + v[0], s[1] + v[1], s[2] + v[2]]);
    let norm = dot(&sum, &sum).sqrt();
    let centre = if norm > 1e-9 * xyz.len() as f64 { sum.map(|s| s / norm) } else { xyz[0] };
    let radius = xyz.iter().map(|v| angle(&centre, v)).fold(0.0f64, f64::max);
    (centre, radius * (1.0 + 1e-12) + 1e-15)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::portable::sample_xyz;

    /// The search equals a scan of every sample, for clustered, uniform and duplicate samples,
    /// points near and far (the other side of the globe), at fine and coarse levels.
    #[test]
    fn equals_a_scan_of_every_sample() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let grid = Grid::new(8, true, Default::default()).unwrap();
        assert_eq!(nearest_of(&grid, &[], &[], &[[1.0, 0.0, 0.0]]), vec![(f64::INFINITY, u32::MAX)], "no sample");
        for (level, n, spread) in [(10u8, 3000usize, 3.0), (6, 500, 180.0), (12, 40, 0.01), (3, 1, 1.0)] {
            let grid = Grid::new(level, true, Default::default()).unwrap();
            let mut lon: Vec<f64> = (0..n).map(|_| 20.0 + spread * (next() - 0.5)).collect();
            let mut lat: Vec<f64> =
                (0..n).map(|_| (-10.0 + spread * (next() - 0.5) / 2.0).clamp(-90.0, 90.0)).collect();
            // duplicates: ties go to the lower index
            if n > 10 {
                (lon[7], lat[7]) = (lon[3], lat[3]);
            }
            lon.iter_mut().for_each(|x| *x = x.rem_euclid(360.0));
            let xyz: Vec<[f64; 3]> = lon.iter().zip(&lat).map(|(&x, &y)| sample_xyz(x, y)).collect();
            let mut points: Vec<[f64; 3]> = (0..200)
                .map(|_| sample_xyz(20.0 + 1.5 * spread * (next() - 0.5), -10.0 + spread * (next() - 0.5) / 2.0))
                .collect();
            points.push(sample_xyz(200.0, 10.0));
            points.push(xyz[n / 2]);
            let got = nearest_of(&grid, &lon, &lat, &points);
            for (p, &(d, i)) in points.iter().zip(&got) {
                let want = (0..n)
                    .map(|q| (chord2(p, &xyz[q]), q as u32))
                    .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
                    .unwrap();
                assert_eq!((d.to_bits(), i), (want.0.to_bits(), want.1), "level {level}, n {n}");
            }
        }
    }
}
