//! NEMO ORCA grids flattened by `scripts/orca_fixture.py` (lon/lat/sst/area `.f32` files), and the
//! measures the ORCA test and example take of them.

use std::collections::HashMap;
use std::path::Path;

/// The committed ORCA2 fixture.
pub fn fixture_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/orca2_grid")
}

pub struct Orca {
    pub lon: Vec<f64>,
    pub lat: Vec<f64>,
    /// Sea temperature (°C), NaN on land.
    pub sst: Vec<f64>,
    /// Cell polygon area (sr) shared among the samples at the same position (the north fold
    /// repeats points).
    pub exact: Vec<f64>,
}

fn read_f32(dir: &Path, name: &str) -> Vec<f64> {
    let path = dir.join(format!("{name}.f32"));
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect()
}

impl Orca {
    pub fn read(dir: &Path) -> Orca {
        let [lon, lat, sst, poly] = ["lon", "lat", "sst", "area"].map(|name| read_f32(dir, name));
        let key = |i: usize| (lon[i].to_bits(), lat[i].to_bits());
        let mut count: HashMap<(u64, u64), usize> = HashMap::new();
        (0..lon.len()).for_each(|i| *count.entry(key(i)).or_default() += 1);
        let exact = (0..lon.len()).map(|i| poly[i] / count[&key(i)] as f64).collect();
        Orca { lon, lat, sst, exact }
    }

    /// Indices of the ocean (valid) samples.
    pub fn ocean(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.sst.len()).filter(|&i| self.sst[i].is_finite())
    }

    /// The `w`-weighted mean of the ocean values.
    pub fn weighted_mean(&self, w: &[f64]) -> f64 {
        let (s, ws) = self.ocean().fold((0.0, 0.0), |(s, ws), i| (s + w[i] * self.sst[i], ws + w[i]));
        s / ws
    }

    /// The ratios of the areas `a` to the polygon areas over the ocean samples, divided by their
    /// median, sorted.
    pub fn ratios(&self, a: &[f64]) -> Vec<f64> {
        let mut r: Vec<f64> = self.ocean().map(|i| a[i] / self.exact[i]).collect();
        r.sort_by(f64::total_cmp);
        let med = r[r.len() / 2];
        r.iter().map(|x| x / med).collect()
    }
}

/// Cells whose fitted temperature is outside [−3, 35] °C (sea water is never there).
pub fn implausible(h: &[f64]) -> usize {
    h.iter().filter(|v| v.is_finite() && !(-3.0..=35.0).contains(*v)).count()
}

/// A synthetic cloud mask over the valid points (`valid`): discs of radius 150–400 km at random
/// places (seeded), added until about `fraction` of the valid points are under one. Returns the
/// mask (true = under a cloud) and the fraction reached.
pub fn clouds(lon: &[f64], lat: &[f64], valid: &[bool], fraction: f64, seed: u64) -> (Vec<bool>, f64) {
    let mut rng = super::synth::Rng::new(seed);
    let unit = |lo: f64, la: f64| {
        let (lo, la) = (lo.to_radians(), la.to_radians());
        [la.cos() * lo.cos(), la.cos() * lo.sin(), la.sin()]
    };
    let points: Vec<[f64; 3]> = lon.iter().zip(lat).map(|(&x, &y)| unit(x, y)).collect();
    let total = valid.iter().filter(|&&v| v).count();
    let mut under = vec![false; lon.len()];
    let mut covered = 0usize;
    while (covered as f64) < fraction * total as f64 {
        // a centre at a valid point, so that clouds fall where there are data
        let i = (rng.uniform() * lon.len() as f64) as usize;
        if !valid[i] {
            continue;
        }
        let radius = rng.range(150e3, 400e3) / 6_371e3;
        let cos_r = radius.cos();
        let c = points[i];
        for (p, u) in points.iter().zip(under.iter_mut()) {
            if !*u && p[0] * c[0] + p[1] * c[1] + p[2] * c[2] >= cos_r {
                *u = true;
            }
        }
        covered = under.iter().zip(valid).filter(|(&u, &v)| u && v).count();
    }
    (under, covered as f64 / total as f64)
}

/// RMS and largest |a − b| over the cells where both are numbers, and how many.
pub fn field_error(a: &[f64], b: &[f64]) -> (f64, f64, usize) {
    let d: Vec<f64> = a.iter().zip(b).filter(|(x, y)| x.is_finite() && y.is_finite()).map(|(x, y)| x - y).collect();
    let rms = (d.iter().map(|x| x * x).sum::<f64>() / d.len().max(1) as f64).sqrt();
    (rms, d.iter().fold(0.0f64, |m, x| m.max(x.abs())), d.len())
}
