//! Per-sample area weights (SPEC §3 step 1).

use super::Area;

/// The area of each sample, in f64, for a validated `mode`.
pub(crate) fn areas(mode: &Area, _lon: &[f64], lat: &[f64], radius: f64) -> Vec<f64> {
    match mode {
        Area::Uniform => vec![1.0; lat.len()],
        Area::Explicit(a) => a.clone(),
        Area::ReferenceAuto => reference_auto(lat, radius).unwrap_or_else(|| vec![1.0; lat.len()]),
    }
}

/// The reference's `estimate_pixel_area`: samples sharing an exact latitude form a ring spanning
/// 360° of longitude between the mid-latitudes to the neighbouring rings (±90° at the ends); each
/// gets the ring's area over its sample count. `None` (uniform areas) when there are fewer than 3
/// samples per distinct latitude on average.
pub(crate) fn reference_auto(lat: &[f64], radius: f64) -> Option<Vec<f64>> {
    let n = lat.len();
    let mut u: Vec<f64> = lat.to_vec();
    u.sort_unstable_by(|a, b| a.partial_cmp(b).expect("latitudes are validated"));
    u.dedup_by(|a, b| a == b);
    let j = u.len();
    if j == 0 || (n as f64) / (j as f64) < 3.0 {
        return None;
    }
    let ring = |x: f64| u.partition_point(|&v| v < x);
    let mut count = vec![0usize; j];
    for &x in lat {
        count[ring(x)] += 1;
    }
    let mut sin_b = Vec::with_capacity(j + 1);
    sin_b.push((-90f64).to_radians().sin());
    for w in u.windows(2) {
        sin_b.push(((w[0] + w[1]) / 2.0).to_radians().sin());
    }
    sin_b.push(90f64.to_radians().sin());
    let r2 = radius * radius;
    Some(
        lat.iter()
            .map(|&x| {
                let r = ring(x);
                let dlon = 2.0 * std::f64::consts::PI / count[r] as f64;
                r2 * (sin_b[r + 1] - sin_b[r]) * dlon
            })
            .collect(),
    )
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
    fn too_few_points_per_latitude_gives_none() {
        assert!(reference_auto(&[1.0, 2.0, 3.0, 3.0], 1.0).is_none());
    }
}
