//! The sample nearest to each of a few points (cell centres), using the samples' cell buckets.
//!
//! Squares of cells of growing half-width around the point's cell are searched; once a sample is
//! found at half-width r, the square of half-width 2r + 1 is searched too (it holds every sample
//! as close as the one found), and the nearest among those wins (ties: the lower sample index).
//! Beyond a half-width of 16 cells all samples are scanned.

use super::samples::Samples;
use crate::geometry::{chord2, Grid};
use rayon::prelude::*;

const MAX_RING: u32 = 16;

/// The caller's index of the sample nearest to each point (unit vectors).
pub(crate) fn nearest_samples(grid: &Grid, smp: &Samples, points: &[[f64; 3]]) -> Vec<u32> {
    points.par_iter().map(|p| nearest(grid, smp, p)).collect()
}

fn nearest(grid: &Grid, smp: &Samples, p: &[f64; 3]) -> u32 {
    let (lon, lat) = lonlat_deg(p);
    let cell = grid.hash_nested(lon, lat);
    let best_in = |positions: &mut dyn Iterator<Item = usize>| -> Option<(f64, u32)> {
        positions.map(|q| (chord2(p, &smp.xyz[q]), smp.order[q])).min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
    };
    let square = |r: u32| best_in(&mut smp.around(grid, cell, r));
    let limit = MAX_RING.min(grid.nside() / 2);
    let mut r = 1;
    while r <= limit {
        if square(r).is_some() {
            let wide = (2 * r + 1).min(grid.nside());
            if let Some((_, i)) = square(wide) {
                return i;
            }
        }
        r *= 2;
    }
    best_in(&mut (0..smp.n())).map_or(0, |(_, i)| i)
}

fn lonlat_deg(p: &[f64; 3]) -> (f64, f64) {
    let lon = p[1].atan2(p[0]).to_degrees().rem_euclid(360.0);
    let lat = p[2].clamp(-1.0, 1.0).asin().to_degrees();
    (lon, lat)
}
