//! Per-sample area weights (SPEC §3 step 1).
//!
//! Besides the reference's estimate (kept for parity), `spacing` estimates the area each sample
//! stands for from the distances to its neighbours, with no ring structure assumed. Let `q1` be the
//! nearest other sample and `q2` the nearest one in a direction at least 45° away from `q1`'s; the
//! spacing along each of the two directions is the mean of the distances to the nearest samples on
//! either side (one side alone at the edge of the samples), and the area is the product of the two
//! spacings. On a regular longitude/latitude grid of step Δ this is `R²Δ²·cos φ` (the cell's area,
//! edge rows included); on a stretched or curvilinear grid (NEMO ORCA) it is the area between the
//! midpoints to the neighbours — within 1 % of the cell polygons for 99.7 % of ORCA2's ocean points
//! (`tests/suite/orca2.rs`); on scattered points a noisy local density. Coincident samples share their
//! area. Each sample's estimate is `csrc/construct.h`'s `hpsf_spacing_area` (the code a GPU would
//! run), over the samples of the 25 cells around its own, offered in a fixed order.

use super::keep::IdHasher;
use super::Area;
use crate::backend::Target;
use crate::error::Result;
use crate::geometry::{portable, Ellipsoid, Grid};
use rayon::prelude::*;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// The area of each sample, in f64, for a validated `mode` (`None`: every area is 1); the ring test
/// and the spacing estimate on `target` where it offers them (the same answers: see
/// `hpsf_distinct_values`, `hpsf_spacing_areas`), else on the CPU.
pub(crate) fn areas(mode: &Area, lon: &[f64], lat: &[f64], radius: f64, target: &Target) -> Result<Option<Vec<f64>>> {
    let spacing_on = || target.spacing_areas(lon, lat, radius).unwrap_or_else(|| Ok(spacing(lon, lat, radius)));
    let rings = || -> Result<bool> {
        Ok(match target.distinct_values(lat) {
            Some(count) => rings_of(lat.len(), count?),
            None => latitude_rings(lat).is_some(),
        })
    };
    Ok(match mode {
        Area::Uniform => None,
        Area::Explicit(a) => Some(a.clone()),
        Area::ReferenceAuto => reference_auto(lat, radius),
        Area::Spacing => Some(spacing_on()?),
        Area::Auto if rings()? => Some(spacing_on()?),
        Area::Auto => None,
    })
}

/// The reference's test for a grid of latitude rings: at least 3 samples per distinct latitude on
/// average (n / distinct ≥ 3 ⇔ distinct ≤ ⌊n/3⌋).
pub(crate) fn rings_of(n: usize, distinct: usize) -> bool {
    distinct > 0 && distinct <= n / 3
}

/// Counts by latitude (as bits).
pub(crate) type LatitudeCounts = HashMap<u64, u64, BuildHasherDefault<IdHasher>>;

/// The distinct latitudes (as bits; −0 and 0 are one latitude) of `lat` with their sample counts,
/// or `None` as soon as there are more than `limit` of them (a hash map that gives up early).
pub(crate) fn latitude_counts(lat: impl IntoIterator<Item = f64>, limit: usize) -> Option<LatitudeCounts> {
    let mut seen = LatitudeCounts::default();
    for x in lat {
        *seen.entry((x + 0.0).to_bits()).or_default() += 1;
        if seen.len() > limit {
            return None;
        }
    }
    Some(seen)
}

/// The rings of `n` samples from their latitudes' counts: the distinct latitudes ascending and
/// their counts, when they pass the reference's test for a grid of latitude rings ([`rings_of`]).
pub(crate) fn rings_from(counts: impl IntoIterator<Item = (u64, u64)>, n: usize) -> Option<(Vec<f64>, Vec<u64>)> {
    let mut rings: Vec<(f64, u64)> = counts.into_iter().map(|(b, c)| (f64::from_bits(b), c)).collect();
    rings.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    rings_of(n, rings.len()).then(|| rings.into_iter().unzip())
}

/// The distinct latitudes, ascending, and their sample counts when the samples pass the reference's
/// test for a grid of latitude rings (at least 3 samples per distinct latitude on average); `None`
/// otherwise (scattered samples: known after a third of them).
fn latitude_rings(lat: &[f64]) -> Option<(Vec<f64>, Vec<u64>)> {
    rings_from(latitude_counts(lat.iter().copied(), lat.len() / 3)?, lat.len())
}

/// The spacing estimate of every sample's area in m² (see the module docs). Samples with no
/// neighbour found (isolated, or N = 1) get the median of the others (1 when there are none).
pub(crate) fn spacing(lon: &[f64], lat: &[f64], radius: f64) -> Vec<f64> {
    let mut bins = vec![0; fine_depth() as usize + 1];
    add_bins(&fine_cells(lon, lat), &mut bins);
    let level = bucket_depth(&bins, lon.len() as u64);
    let mut a = spacing_estimates(lon, lat, level, radius, &|_| true);
    let known: Vec<f64> = a.iter().copied().filter(|a| a.is_finite()).collect();
    fill_isolated(&mut a, median(known));
    a
}

/// Gives the samples without an estimate (isolated) the median of the others' (`median`), or 1
/// when no sample has one.
pub(crate) fn fill_isolated(a: &mut [f64], median: Option<f64>) {
    let fill = median.unwrap_or(1.0);
    a.iter_mut().filter(|a| !a.is_finite()).for_each(|a| *a = fill);
}

/// The depth at which the samples are hashed first to choose the spacing estimate's buckets.
pub(crate) fn fine_depth() -> u8 {
    // SAFETY: returns a constant.
    unsafe { portable::ffi::hpsf_con_area_fine_depth_host() as u8 }
}

/// The samples' cells at [`fine_depth`] (nested, on the sphere), ascending.
pub(crate) fn fine_cells(lon: &[f64], lat: &[f64]) -> Vec<u64> {
    let g = Grid::new(fine_depth(), true, Ellipsoid::Sphere).expect("valid level");
    let mut h: Vec<u64> = lon.par_iter().zip(lat.par_iter()).map(|(&x, &y)| g.hash_nested(x, y)).collect();
    h.par_sort_unstable();
    h
}

/// The counts of neighbouring pairs of sorted [`fine_cells`] by the depth at which they first
/// differ (construct.h's bins), added to `bins` (`fine_depth() + 1` entries).
pub(crate) fn add_bins(sorted: &[u64], bins: &mut [u64]) {
    assert_eq!(bins.len(), fine_depth() as usize + 1);
    // SAFETY: `sorted` holds its length in ids, `bins` one entry per depth to the fine one.
    unsafe { portable::ffi::hpsf_con_area_bins_host(sorted.as_ptr(), sorted.len() as i64, bins.as_mut_ptr()) }
}

/// The depth of the buckets for `n` samples whose sorted fine cells have the bins `bins`: the
/// finest level whose occupied cells hold ≥ 2 samples on average (construct.h's rule, which the
/// GPU applies too).
pub(crate) fn bucket_depth(bins: &[u64], n: u64) -> u8 {
    assert_eq!(bins.len(), fine_depth() as usize + 1);
    // SAFETY: `bins` holds one entry per depth to the fine one.
    unsafe { portable::ffi::hpsf_con_area_depth_host(bins.as_ptr(), n as i64) as u8 }
}

/// The spacing estimate of the samples `wanted(i)` (NaN for the others, and where no neighbour is
/// found), with buckets at `level`: each sample's candidates are the samples of the 25 buckets
/// around its own (all samples at level 0), offered bucket by bucket in the order of the bucket's
/// neighbourhood (cdshealpix's order, as `Samples::around` lists them) and, within a bucket, by position.
pub(crate) fn spacing_estimates(
    lon: &[f64],
    lat: &[f64],
    level: u8,
    radius: f64,
    wanted: &(dyn Fn(usize) -> bool + Sync),
) -> Vec<f64> {
    let grid = Grid::new(level, true, Ellipsoid::Sphere).expect("valid level");
    let smp = super::samples::Samples::new(&grid, lon, lat);
    let ring = 2u32.min(grid.nside());
    let xyz = smp.xyz.as_flattened();
    let by_position: Vec<f64> = (0..smp.unique.len())
        .into_par_iter()
        .map_init(Vec::<u32>::new, |near, u| {
            near.clear();
            let any = smp.positions(u).any(|p| wanted(smp.order[p] as usize));
            if any && level == 0 {
                near.extend(0..smp.n() as u32); // the whole sphere is a few cells
            } else if any {
                near.extend(smp.around(&grid, smp.unique[u], ring).map(|q| q as u32));
            }
            smp.positions(u)
                .map(|p| {
                    if !wanted(smp.order[p] as usize) {
                        return f64::NAN;
                    }
                    // SAFETY: xyz holds 3 values per position; near lists near.len() positions below n.
                    unsafe {
                        portable::ffi::hpsf_con_spacing_area_host(
                            xyz.as_ptr(),
                            near.as_ptr(),
                            near.len() as i64,
                            p as i64,
                            radius,
                        )
                    }
                })
                .collect::<Vec<f64>>()
        })
        .flatten_iter()
        .collect();
    let mut out = vec![f64::NAN; lon.len()];
    for (p, &i) in smp.order.iter().enumerate() {
        out[i as usize] = by_position[p];
    }
    out
}

/// The median of `v` (the element at index len/2 in ascending order), `None` when empty.
pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    let mid = v.len() / 2;
    (!v.is_empty()).then(|| *v.select_nth_unstable_by(mid, |a, b| a.total_cmp(b)).1)
}

/// The reference's `estimate_pixel_area`: samples sharing an exact latitude form a ring spanning
/// 360° of longitude between the mid-latitudes to the neighbouring rings (±90° at the ends); each
/// gets the ring's area over its sample count. `None` (uniform areas) when there are fewer than 3
/// samples per distinct latitude on average.
pub(crate) fn reference_auto(lat: &[f64], radius: f64) -> Option<Vec<f64>> {
    let (u, count) = latitude_rings(lat)?;
    Some(ring_areas(&u, &count, lat, radius))
}

/// [`reference_auto`]'s areas of the samples at latitudes `lat`, from the rings' distinct
/// latitudes `u` (ascending) and their sample counts.
pub(crate) fn ring_areas(u: &[f64], count: &[u64], lat: &[f64], radius: f64) -> Vec<f64> {
    let ring = |x: f64| u.partition_point(|&v| v < x);
    let mut sin_b = Vec::with_capacity(u.len() + 1);
    sin_b.push((-90f64).to_radians().sin());
    for w in u.windows(2) {
        sin_b.push(((w[0] + w[1]) / 2.0).to_radians().sin());
    }
    sin_b.push(90f64.to_radians().sin());
    let r2 = radius * radius;
    lat.iter()
        .map(|&x| {
            let r = ring(x);
            let dlon = 2.0 * std::f64::consts::PI / count[r] as f64;
            r2 * (sin_b[r + 1] - sin_b[r]) * dlon
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_partition_the_sphere() {
        // a global 1° grid: 180 rings of 360 points; the areas add up to the sphere's area
        let mut lat = Vec::new();
        for i in 0..180 {
            for _ in 0..360 {
                lat.push(-89.5 + i as f64);
            }
        }
        let a = reference_auto(&lat, 1.0).unwrap();
        let total: f64 = a.iter().sum();
        assert!((total - 4.0 * std::f64::consts::PI).abs() < 1e-9);
        // equatorial cell ≈ (1° in radians)² on the unit sphere
        let eq = a[90 * 360];
        assert!((eq / 1f64.to_radians().powi(2) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn spacing_gives_cell_areas_on_a_regular_grid() {
        // a regional 0.5° grid from 30°N to 60°N: area = R²·Δλ·(sin φ+ − sin φ−), edges included
        let (mut lon, mut lat) = (Vec::new(), Vec::new());
        for i in 0..61 {
            for j in 0..40 {
                lon.push(10.0 + 0.5 * j as f64);
                lat.push(30.0 + 0.5 * i as f64);
            }
        }
        let a = spacing(&lon, &lat, 1.0);
        let step = 0.5f64.to_radians();
        for (k, &y) in lat.iter().enumerate() {
            let phi = y.to_radians();
            let exact = step * ((phi + step / 2.0).sin() - (phi - step / 2.0).sin());
            assert!((a[k] / exact - 1.0).abs() < 2e-3, "lat {y}: {} vs {exact}", a[k]);
        }
        // the reference's estimate puts the southern row's bound at −90°
        let r = reference_auto(&lat, 1.0).unwrap();
        assert!(r[0] / r[40 * 30] > 20.0);
    }

    #[test]
    fn spacing_follows_a_stretched_grid() {
        // latitude rows whose spacing grows by 20 % a row (0.2° … 1.4°), 0.5° in longitude: the area
        // between the midpoints to the neighbouring rows, as the cell bounds of a model grid
        let mut rows = vec![0.0f64];
        for r in 0..12 {
            rows.push(rows[r] + 0.2 * 1.2f64.powi(r as i32));
        }
        let (mut lon, mut lat) = (Vec::new(), Vec::new());
        for &y in &rows {
            for j in 0..30 {
                lon.push(0.5 * j as f64);
                lat.push(y);
            }
        }
        let a = spacing(&lon, &lat, 1.0);
        for r in 1..rows.len() - 1 {
            let (lo, hi) = ((rows[r - 1] + rows[r]) / 2.0, (rows[r] + rows[r + 1]) / 2.0);
            let exact = 0.5f64.to_radians() * (hi.to_radians().sin() - lo.to_radians().sin());
            let k = r * 30 + 15;
            assert!((a[k] / exact - 1.0).abs() < 1e-3, "row {r}: {} vs {exact}", a[k]);
        }
    }

    #[test]
    fn coincident_samples_share_their_area() {
        let (mut lon, mut lat) = (Vec::new(), Vec::new());
        for i in 0..20 {
            for j in 0..20 {
                lon.push(j as f64 * 0.1);
                lat.push(i as f64 * 0.1);
            }
        }
        lon.push(lon[210]);
        lat.push(lat[210]);
        let a = spacing(&lon, &lat, 1.0);
        assert!((a[210] / a[211] - 0.5).abs() < 1e-3 && a[210] == a[400]);
        assert!(spacing(&[1.0], &[2.0], 1.0) == vec![1.0]);
    }

    #[test]
    fn too_few_points_per_latitude_gives_none() {
        assert!(reference_auto(&[1.0, 2.0, 3.0, 3.0], 1.0).is_none());
        // exactly 3 per latitude passes, one latitude more does not; −0 and 0 are one latitude
        assert_eq!(latitude_rings(&[5.0, -0.0, 5.0, 0.0, 5.0, 0.0]), Some((vec![0.0, 5.0], vec![3, 3])));
        assert_eq!(latitude_rings(&[5.0, 1.0, 5.0, 0.0, 5.0, 0.0]), None);
        assert_eq!(latitude_rings(&[]), None);
    }
}
