//! Synthetic samples like the reference generator's (`ref_case.py --region regional --density D`):
//! uniform on the sphere inside a lon/lat box centred on (lon_c, lat_c) holding n/density cells.

/// SplitMix64: a small, fast, well-mixed deterministic generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x853c_49e6_748f_ea9b)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    pub fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.uniform()
    }
}

/// (lon0, lon1, lat0, lat1) of the box holding n/density cells of `level` around (lon_c, lat_c).
pub fn box_for_density(n: usize, level: u8, density: f64, lon_c: f64, lat_c: f64) -> (f64, f64, f64, f64) {
    let cell = 4.0 * std::f64::consts::PI / (12.0 * 4f64.powi(level as i32));
    let omega = n as f64 / density * cell;
    let h = 0.5 * omega.sqrt();
    let lat0 = (lat_c - h.to_degrees()).max(-89.9);
    let lat1 = (lat_c + h.to_degrees()).min(89.9);
    let band = lat1.to_radians().sin() - lat0.to_radians().sin();
    let width = (omega / band).min(2.0 * std::f64::consts::PI);
    (lon_c - width.to_degrees() / 2.0, lon_c + width.to_degrees() / 2.0, lat0, lat1)
}

/// n samples uniform on the sphere inside a lon/lat box.
pub fn sample_box(rng: &mut Rng, n: usize, b: (f64, f64, f64, f64)) -> (Vec<f64>, Vec<f64>) {
    let (s0, s1) = (b.2.to_radians().sin(), b.3.to_radians().sin());
    let mut lon = Vec::with_capacity(n);
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        lon.push(rng.range(b.0, b.1));
        lat.push(rng.range(s0, s1).clamp(-1.0, 1.0).asin().to_degrees());
    }
    (lon, lat)
}

/// The benchmark workload: n samples at ~density per cell in a box centred on 8°E 45°N.
pub fn regional(n: usize, level: u8, density: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    sample_box(&mut rng, n, box_for_density(n, level, density, 8.0, 45.0))
}

/// About n samples on a regular longitude/latitude grid over the box of [`regional`] (the same
/// degrees in both directions): latitude rings, where the automatic areas come from the spacing.
pub fn regional_grid(n: usize, level: u8, density: f64) -> (Vec<f64>, Vec<f64>) {
    let (lon0, lon1, lat0, lat1) = box_for_density(n, level, density, 8.0, 45.0);
    let step = ((lon1 - lon0) * (lat1 - lat0) / n as f64).sqrt();
    let (nx, ny) = (((lon1 - lon0) / step).round() as usize, ((lat1 - lat0) / step).round() as usize);
    (0..nx * ny).map(|q| (lon0 + step * (q % nx) as f64, lat0 + step * (q / nx) as f64)).unzip()
}

/// A random regional sample set for property tests: n samples at ~density per cell of `level`, in a
/// box centred on (lon_c, lat_c); `wrap` stores longitudes in [-180, 180) (a box across the
/// antimeridian then jumps from 180 to -180).
#[derive(Debug, Clone)]
pub struct Region {
    pub n: usize,
    pub level: u8,
    pub npt: usize,
    pub lon_c: f64,
    pub lat_c: f64,
    pub density: f64,
    pub seed: u64,
    pub wrap: bool,
}

impl Region {
    pub fn samples(&self) -> (Vec<f64>, Vec<f64>) {
        let mut rng = Rng::new(self.seed);
        let b = box_for_density(self.n, self.level, self.density, self.lon_c, self.lat_c);
        let (mut lon, lat) = sample_box(&mut rng, self.n, b);
        if self.wrap {
            lon.iter_mut().for_each(|x| *x = (*x + 180.0).rem_euclid(360.0) - 180.0);
        }
        (lon, lat)
    }
}
