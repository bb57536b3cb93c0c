//! Geometry against independent formulas: the closed-form authalic latitude, exact arcs along a
//! meridian, centre ↔ cell round trips, neighbourhood structure.

use healpix_psf::geometry::{
    authalic_to_geodetic, cell_size_m, geodetic_to_authalic, great_circle_distance_m, Ellipsoid, Grid,
};

/// (geodetic latitude in degrees, authalic latitude in radians) on WGS84, evaluated from the closed
/// form ξ = asin(q(φ)/q_p) (Snyder 1987, eqs. 3-11, 3-12) with 50-digit arithmetic (mpmath), then
/// rounded to f64.
const AUTHALIC_EXACT: &[(f64, f64)] = &[
    (-89.99, -1.5706210107477203),
    (-75.0, -1.3078754861347732),
    (-41.9378539, -0.7297276560497247),
    (-12.5, -0.21722145539481924),
    (0.1, 0.0017375278003418087),
    (1.0, 0.01737529359784016),
    (10.0, 0.17376843780722873),
    (23.44, 0.4074728489323238),
    (45.0, 0.7831589561180227),
    (60.0, 1.0452564932153647),
    (66.56, 1.160054569845243),
    (80.0, 1.3954961748149721),
    (85.0, 1.4831402994082157),
    (89.0, 1.553264738069262),
    (89.9, 1.5690431663389701),
    (89.999, 1.5707787951901773),
];

#[test]
fn authalic_series_matches_high_precision_values() {
    for &(deg, exact) in AUTHALIC_EXACT {
        let xi = geodetic_to_authalic(deg.to_radians());
        assert!((xi - exact).abs() <= 4.5e-16, "φ = {deg}°: {xi} vs {exact} ({:e})", xi - exact);
    }
    for i in 0..=1800 {
        let phi = (-90.0 + 0.1 * i as f64).to_radians();
        // the inverse series undoes the forward one to ~1e-16 rad
        assert!((authalic_to_geodetic(geodetic_to_authalic(phi)) - phi).abs() < 1e-15, "round trip at {phi}");
    }
    // the authalic latitude is lower than the geodetic one in the northern hemisphere, by ~0.128° at 45°
    let d = 45f64.to_radians() - geodetic_to_authalic(45f64.to_radians());
    assert!((d.to_degrees() - 0.1283).abs() < 1e-3, "{}", d.to_degrees());
    assert_eq!(geodetic_to_authalic(0.0), 0.0);
}

#[test]
fn distances_are_accurate_at_every_scale() {
    let r = 6_371_000.0;
    // along a meridian the arc between latitudes φ and φ+Δ is exactly R·Δ
    for &delta in &[1e-10f64, 1e-9, 1e-7, 1e-5, 1e-3, 0.1, 1.0, 2.5] {
        for &phi0 in &[-60.0f64, 0.0, 10.0, 45.0] {
            let phi1 = phi0.to_radians();
            let phi2 = phi1 + delta;
            let d = great_circle_distance_m(30.0, phi1.to_degrees(), 30.0, phi2.to_degrees(), r);
            let exact = r * ((phi2.to_degrees()).to_radians() - (phi1.to_degrees()).to_radians());
            let rel = (d - exact).abs() / exact;
            // unit vectors carry ~1e-16 absolute error, so ~1e-16/Δ relative at small Δ
            let tol = 1e-15 + 4e-16 / delta;
            assert!(rel < tol, "Δ = {delta:e} rad at φ = {phi0}: rel error {rel:e} > {tol:e}");
        }
    }
    // 1 mm apart on the equator: the acos formula would be off by ~0.1 m here
    let dlon = (1e-3 / r).to_degrees();
    assert!((great_circle_distance_m(0.0, 0.0, dlon, 0.0, r) - 1e-3).abs() < 1e-9);
    // antipodes: half the circumference
    let d = great_circle_distance_m(0.0, 0.0, 180.0, 0.0, r);
    assert!((d - std::f64::consts::PI * r).abs() < 1e-6);
}

#[test]
fn default_kernel_scale_is_the_cell_size() {
    // SPEC §2.1: level 10 → 6366.81 m
    assert!((cell_size_m(10, 6_371_000.0) - 6366.81).abs() < 0.005);
    // 12·4^level cells tile the sphere
    let s = cell_size_m(3, 1.0);
    assert!((s * s * 12.0 * 64.0 - 4.0 * std::f64::consts::PI).abs() < 1e-12);
}

#[test]
fn longitudes_wrap() {
    let g = Grid::new(12, true, Ellipsoid::Wgs84).unwrap();
    for &(lon, lat) in &[(8.3f64, 45.2f64), (179.99, -10.0), (0.0, 41.9378), (359.7, 89.9)] {
        let c = g.cell(lon, lat).unwrap();
        for k in [-3.0f64, -1.0, 1.0, 2.0] {
            assert_eq!(g.cell(lon + 360.0 * k, lat).unwrap(), c, "lon {lon} + {k}·360");
        }
    }
}

#[test]
fn centres_round_trip_and_are_geodetic() {
    for level in [0u8, 3, 8, 12, 20, 29] {
        for nest in [true, false] {
            for ell in [Ellipsoid::Wgs84, Ellipsoid::Sphere] {
                let g = Grid::new(level, nest, ell).unwrap();
                let n = g.n_cells();
                for j in 0..200u64 {
                    let c = (j.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 3) % n;
                    let (lon, lat) = g.center(c).unwrap();
                    assert!((0.0..360.0).contains(&lon) && (-90.0..=90.0).contains(&lat));
                    assert_eq!(g.cell(lon, lat).unwrap(), c, "level {level} nest {nest} {ell:?} cell {c}");
                }
            }
        }
    }
    // the same cell's centre is further from the equator on WGS84 (geodetic) than on the sphere
    let w = Grid::new(6, true, Ellipsoid::Wgs84).unwrap();
    let s = Grid::new(6, true, Ellipsoid::Sphere).unwrap();
    let c = s.cell(10.0, 45.0).unwrap();
    let (_, lat_w) = w.center(c).unwrap();
    let (_, lat_s) = s.center(c).unwrap();
    assert!((lat_w - geodetic_from_authalic_deg(lat_s)).abs() < 1e-12 && lat_w > lat_s);
}

fn geodetic_from_authalic_deg(lat: f64) -> f64 {
    authalic_to_geodetic(lat.to_radians()).to_degrees()
}

#[test]
fn ring_and_nested_schemes_name_the_same_cells() {
    let gn = Grid::new(9, true, Ellipsoid::Wgs84).unwrap();
    let gr = Grid::new(9, false, Ellipsoid::Wgs84).unwrap();
    for i in 0..500 {
        let lon = -180.0 + 0.7213 * i as f64;
        let lat = -89.0 + 0.3561 * i as f64;
        let (a, b) = (gn.cell(lon, lat).unwrap(), gr.cell(lon, lat).unwrap());
        assert_eq!(gn.center(a).unwrap(), gr.center(b).unwrap());
    }
    // ring ids grow from north to south
    assert!(gr.cell(0.0, 80.0).unwrap() < gr.cell(0.0, 10.0).unwrap());
    assert!(gr.cell(0.0, 10.0).unwrap() < gr.cell(0.0, -80.0).unwrap());
}

#[test]
fn neighbourhoods_are_squares_of_nearby_cells() {
    let g = Grid::new(10, true, Ellipsoid::Wgs84).unwrap();
    let c = g.cell(8.0, 45.0).unwrap();
    let (lon0, lat0) = g.center(c).unwrap();
    let size = cell_size_m(10, 6_371_000.0);
    for k in 0..=4u32 {
        let nb = g.kth_neighbourhood(c, k).unwrap();
        assert_eq!(nb[0], c);
        assert_eq!(nb.len(), ((2 * k + 1) * (2 * k + 1)) as usize);
        let mut u = nb.clone();
        u.sort_unstable();
        u.dedup();
        assert_eq!(u.len(), nb.len(), "distinct cells");
        // prefix property: the (k−1)-th neighbourhood is the start of the k-th
        if k > 0 {
            assert_eq!(&nb[..((2 * k - 1) * (2 * k - 1)) as usize], &g.kth_neighbourhood(c, k - 1).unwrap()[..]);
        }
        for &h in &nb {
            let (lon, lat) = g.center(h).unwrap();
            let d = great_circle_distance_m(lon0, lat0, lon, lat, 6_371_000.0);
            // HEALPix cells are diamonds: the neighbour across a vertex is ~2 cell sizes away
            assert!(d <= 2.1 * size * k as f64 + 1.0, "cell {h} at {d} m from the centre (k = {k})");
        }
    }
    // at a base-cell vertex where only two base cells meet, the neighbourhood is shorter
    let v = g.cell(0.0, 41.9378539).unwrap();
    assert!(g.kth_neighbourhood(v, 1).unwrap().len() < 9);
}
