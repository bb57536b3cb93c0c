//! Bad input never panics: every kind of invalid argument to `PsfResampler::new`,
//! `PsfResampler::from_links` and `geometry::Grid` gives a clear, typed `healpix_psf::Error`
//! (exact variant and fields checked), and the valid edge cases (one sample, wrapped longitudes,
//! poles, `npt = 1`, uniform areas, threshold 0) work. A proptest fuzzes the constructor.
//!

use healpix_psf::geometry::{cell_size_m, great_circle_distance_m, Grid, EARTH_RADIUS_M};
use healpix_psf::{Area, Ellipsoid, Error, Params, PsfResampler, Real};
use proptest::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// Runs `f`, failing the test with `what` if it panics.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: panicked instead of returning an error: {msg}")
        }
    }
}

/// `PsfResampler::<F>::new`, asserting it does not panic.
fn build<F: Real>(lon: &[f64], lat: &[f64], p: &Params) -> Result<PsfResampler<F>, Error> {
    no_panic(&format!("PsfResampler::<{}>::new", F::NAME), || PsfResampler::<F>::new(lon, lat, p))
}

/// The error of `new` in f64 and f32; both must fail, with the same error.
fn err_both(lon: &[f64], lat: &[f64], p: &Params) -> Error {
    let e64 = match build::<f64>(lon, lat, p) {
        Ok(op) => panic!("f64: expected an error, got an operator with K = {}", op.k()),
        Err(e) => e,
    };
    let e32 = match build::<f32>(lon, lat, p) {
        Ok(op) => panic!("f32: expected an error, got an operator with K = {}", op.k()),
        Err(e) => e,
    };
    // Debug text, not `==`: InvalidCoordinate may hold NaN.
    assert_eq!(format!("{e64:?}"), format!("{e32:?}"), "f64 and f32 errors differ");
    assert!(!e64.to_string().is_empty());
    e64
}

/// Asserts `e` is `InvalidParameter` for `name`; returns its (value, reason).
fn expect_param(e: Error, name: &str) -> (String, String) {
    match e {
        Error::InvalidParameter { name: got, value, reason } => {
            assert_eq!(got, name, "wrong parameter named (value {value}: {reason})");
            assert!(!reason.is_empty());
            (value, reason)
        }
        other => panic!("expected InvalidParameter {{ name: {name:?} }}, got {other:?}"),
    }
}

/// `new` in f64 and f32 must both fail with `InvalidParameter { name }`; returns (value, reason).
fn param_err(lon: &[f64], lat: &[f64], p: &Params, name: &str) -> (String, String) {
    expect_param(err_both(lon, lat, p), name)
}

/// Asserts `e` is `InvalidValue { what, index }`; returns its value.
fn expect_value(e: Error, what: &str, index: usize) -> f64 {
    match e {
        Error::InvalidValue { what: w, index: i, value, reason } => {
            assert_eq!((w, i), (what, index), "InvalidValue on the wrong entry ({reason})");
            assert!(!reason.is_empty());
            value
        }
        other => panic!("expected InvalidValue {{ what: {what:?}, index: {index} }}, got {other:?}"),
    }
}

/// Asserts `e` is `InvalidCoordinate { index }`; returns (lon, lat, reason).
fn expect_coord(e: Error, index: usize) -> (f64, f64, &'static str) {
    match e {
        Error::InvalidCoordinate { index: i, lon_deg, lat_deg, reason } => {
            assert_eq!(i, index, "InvalidCoordinate names the wrong sample ({reason})");
            (lon_deg, lat_deg, reason)
        }
        other => panic!("expected InvalidCoordinate {{ index: {index} }}, got {other:?}"),
    }
}

/// Equality that treats NaN as equal to NaN.
fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Checks the invariants of a constructed operator over `n` samples with `npt` links each.
fn check_sane<F: Real>(op: &PsfResampler<F>, n: usize, npt: usize) {
    let k = op.k();
    assert!(k > 0, "an operator must have at least one cell");
    assert_eq!(op.n(), n);
    assert_eq!(op.npt(), npt);
    assert_eq!(op.cell_ids().len(), k);
    assert!(op.cell_ids().windows(2).all(|w| w[0] < w[1]), "cell_ids not strictly ascending");
    let n_cells = op.grid().n_cells();
    assert!(op.cell_ids().iter().all(|&c| c < n_cells), "a cell id is beyond the level");
    assert_eq!(op.hi().len(), n * npt);
    assert_eq!(op.d_m().len(), n * npt);
    assert_eq!(op.area().len(), n);
    let mut linked = vec![false; k];
    for (i, (row, d)) in op.hi().chunks_exact(npt).zip(op.d_m().chunks_exact(npt)).enumerate() {
        for (t, (&h, &dd)) in row.iter().zip(d).enumerate() {
            assert!((-1..k as i64).contains(&(h as i64)), "hi[{i}, {t}] = {h} with K = {k}");
            if h >= 0 {
                linked[h as usize] = true;
                let dd = dd.to_f64();
                assert!(dd.is_finite() && dd >= 0.0, "d_m[{i}, {t}] = {dd} for a link");
                assert!(!row[..t].contains(&h), "sample {i} links to cell {h} twice: {row:?}");
            } else {
                assert_eq!(dd.to_f64(), f64::INFINITY, "d_m[{i}, {t}] where there is no link");
            }
        }
    }
    assert!(linked.iter().all(|&l| l), "a cell no sample links to was not pruned");
    assert_eq!(op.nnz(), op.hi().iter().filter(|&&h| h >= 0).count());
}

/// `new` in f64 and f32 must both succeed with a sane operator, the same cells and links.
fn ok_both(lon: &[f64], lat: &[f64], p: &Params) -> (PsfResampler<f64>, PsfResampler<f32>) {
    let a = build::<f64>(lon, lat, p).unwrap_or_else(|e| panic!("f64: unexpected error: {e}"));
    let b = build::<f32>(lon, lat, p).unwrap_or_else(|e| panic!("f32: unexpected error: {e}"));
    check_sane(&a, lon.len(), p.npt);
    check_sane(&b, lon.len(), p.npt);
    assert_eq!(a.cell_ids(), b.cell_ids(), "f64 and f32 keep different cells");
    assert_eq!(a.hi(), b.hi(), "f64 and f32 link differently");
    (a, b)
}

/// A deterministic pseudo-random generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` random samples in the box [lon0, lon0 + w) × [lat0, lat0 + h).
fn random_box(seed: u64, n: usize, lon0: f64, lat0: f64, w: f64, h: f64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng(seed);
    (0..n).map(|_| (lon0 + w * rng.uniform(), lat0 + h * rng.uniform())).unzip()
}

/// A small valid data set: 100 random samples in a 0.5° box around 8°E 45°N.
fn cluster() -> (Vec<f64>, Vec<f64>) {
    random_box(1, 100, 8.0, 45.0, 0.5, 0.5)
}

/// Level 9 (cells ≈ 0.11°) with otherwise default parameters: valid for [`cluster`].
fn p9() -> Params {
    Params::new(9)
}

// ---------------------------------------------------------------------------------------------
// PsfResampler::new: bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_input_is_rejected() {
    assert_eq!(err_both(&[], &[], &p9()), Error::EmptyInput);
    // one side empty is a length mismatch, not an empty input
    assert_eq!(err_both(&[], &[1.0], &p9()), Error::LengthMismatch { what: "lat_deg", expected: 0, got: 1 });
    assert_eq!(err_both(&[1.0], &[], &p9()), Error::LengthMismatch { what: "lat_deg", expected: 1, got: 0 });
}

#[test]
fn lon_lat_length_mismatch_is_rejected() {
    let (lon, lat) = cluster();
    assert_eq!(err_both(&lon, &lat[..99], &p9()), Error::LengthMismatch { what: "lat_deg", expected: 100, got: 99 });
    let mut lat2 = lat.clone();
    lat2.push(45.0);
    assert_eq!(err_both(&lon, &lat2, &p9()), Error::LengthMismatch { what: "lat_deg", expected: 100, got: 101 });
}

#[test]
fn bad_coordinates_name_the_first_bad_sample() {
    let (lon, lat) = cluster();
    // (is_lon, bad value, expected reason fragment)
    let cases = [
        (true, f64::NAN, "longitude"),
        (true, f64::INFINITY, "longitude"),
        (true, f64::NEG_INFINITY, "longitude"),
        (false, f64::NAN, "latitude"),
        (false, f64::INFINITY, "latitude"),
        (false, 90.0001, "[-90, 90]"),
        (false, -91.0, "[-90, 90]"),
        (false, 1e300, "[-90, 90]"),
    ];
    for (is_lon, bad, fragment) in cases {
        for first in [0, 37, 99] {
            let (mut lo, mut la) = (lon.clone(), lat.clone());
            let v = if is_lon { &mut lo } else { &mut la };
            v[first] = bad;
            // a second bad sample later must not be the one reported
            if first < 99 {
                v[99] = bad;
            }
            let (elon, elat, reason) = expect_coord(err_both(&lo, &la, &p9()), first);
            assert!(same(elon, lo[first]) && same(elat, la[first]), "fields {elon}, {elat}");
            assert!(reason.contains(fragment), "{bad} in {}: reason {reason:?}", first);
        }
    }
    // the first bad sample wins whatever is wrong with the later ones
    let (mut lo, mut la) = (lon.clone(), lat.clone());
    la[5] = -91.0;
    lo[6] = f64::NAN;
    la[7] = f64::NAN;
    let (elon, elat, _) = expect_coord(err_both(&lo, &la, &p9()), 5);
    assert_eq!((elon, elat), (lon[5], -91.0));
}

#[test]
fn levels_above_29_are_rejected() {
    let (lon, lat) = cluster();
    for level in [30u8, 31, 64, 255] {
        let (value, reason) = param_err(&lon, &lat, &Params::new(level), "level");
        assert_eq!(value, level.to_string());
        assert!(reason.contains("29"), "{reason}");
    }
}

#[test]
fn npt_zero_is_rejected() {
    let (lon, lat) = cluster();
    let (value, _) = param_err(&lon, &lat, &Params { npt: 0, ..p9() }, "npt");
    assert_eq!(value, "0");
}

#[test]
fn npt_beyond_the_largest_search_square_is_rejected() {
    let (lon, lat) = cluster();
    // 9×9 = 81 cells at ring_search_max 4: 82 links cannot fit
    let p = Params { npt: 82, ring_search_init: Some(1), ring_search_max: Some(4), ..p9() };
    let (value, reason) = param_err(&lon, &lat, &p, "npt");
    assert_eq!(value, "82");
    assert!(reason.contains("ring_search_max"), "{reason}");
    // 81 fit
    ok_both(&lon, &lat, &Params { npt: 81, ..p });
    // 2 links cannot fit in the single cell of ring 0
    let p = Params { npt: 2, ring_search_init: Some(0), ring_search_max: Some(0), ..p9() };
    assert_eq!(param_err(&lon, &lat, &p, "npt").0, "2");
}

#[test]
fn bad_sigma_is_rejected() {
    let (lon, lat) = cluster();
    for s in [0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let (value, reason) = param_err(&lon, &lat, &Params { sigma_m: Some(s), ..p9() }, "sigma_m");
        assert_eq!(value, s.to_string());
        assert!(reason.contains("positive"), "{reason}");
    }
}

#[test]
fn bad_threshold_is_rejected() {
    let (lon, lat) = cluster();
    for t in [-0.1, -1e-300, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let (value, _) = param_err(&lon, &lat, &Params { threshold: t, ..p9() }, "threshold");
        assert_eq!(value, t.to_string());
    }
}

#[test]
fn bad_radius_is_rejected() {
    let (lon, lat) = cluster();
    for r in [0.0, -6.4e6, f64::NAN, f64::INFINITY] {
        let (value, _) = param_err(&lon, &lat, &Params { radius: r, ..p9() }, "radius");
        assert_eq!(value, r.to_string());
    }
}

#[test]
fn bad_explicit_area_is_rejected() {
    let (lon, lat) = cluster();
    let with_area = |a: Vec<f64>| Params { area: Area::Explicit(a), ..p9() };
    for len in [0, 1, 99, 101] {
        assert_eq!(
            err_both(&lon, &lat, &with_area(vec![1.0; len])),
            Error::LengthMismatch { what: "area", expected: 100, got: len }
        );
    }
    for bad in [-1.0, -1e-300, f64::NAN, f64::INFINITY] {
        let mut a = vec![1.0; 100];
        a[42] = bad;
        a[77] = -5.0;
        let value = expect_value(err_both(&lon, &lat, &with_area(a)), "area", 42);
        assert!(same(value, bad), "value {value} for {bad}");
    }
    // zero areas are allowed
    let mut a = vec![1.0; 100];
    a[3] = 0.0;
    let (op, _) = ok_both(&lon, &lat, &with_area(a.clone()));
    assert_eq!(op.area(), &a[..]);
}

#[test]
fn default_rings_beyond_nside_are_rejected() {
    // level 1 (nside 2): npt 9 asks for ring_weight 3
    let (v, reason) = param_err(&[8.0], &[45.0], &Params::new(1), "ring_weight");
    assert_eq!(v, "3");
    assert!(reason.contains("nside = 2"), "{reason}");
    // level 0 (nside 1): even npt 1 asks for ring_weight 2
    let (v, reason) = param_err(&[8.0], &[45.0], &Params { npt: 1, ..Params::new(0) }, "ring_weight");
    assert_eq!(v, "2");
    assert!(reason.contains("nside = 1"), "{reason}");
    // explicit rings are checked too, whichever is too large
    let p = Params { ring_weight: Some(2), ring_search_init: Some(3), ..Params::new(1) };
    assert_eq!(param_err(&[8.0], &[45.0], &p, "ring_search_init").0, "3");
    let p =
        Params { npt: 1, ring_weight: Some(1), ring_search_init: Some(1), ring_search_max: Some(5), ..Params::new(2) };
    assert_eq!(param_err(&[8.0], &[45.0], &p, "ring_search_max").0, "5");
    // rings equal to nside are fine
    let p =
        Params { npt: 1, ring_weight: Some(1), ring_search_init: Some(1), ring_search_max: Some(1), ..Params::new(0) };
    let (op, _) = ok_both(&[8.0, 100.0], &[45.0, -60.0], &p);
    assert_eq!(op.rings(), (1, 1, 1));
    // the keep stage's candidate squares have a size limit, explicit or from npt
    let p = Params { ring_weight: Some(128), ..Params::new(12) };
    let (v, reason) = param_err(&[8.0], &[45.0], &p, "ring_weight");
    assert_eq!(v, "128");
    assert!(reason.contains("at most 127"), "{reason}");
    let (v, reason) = param_err(&[8.0], &[45.0], &Params { npt: 70_000, ..Params::new(12) }, "ring_weight");
    assert_eq!(v, "134");
    assert!(reason.contains("npt = 70000"), "{reason}");
    let p = Params { ring_weight: Some(127), ring_search_init: Some(1), ring_search_max: Some(3), ..Params::new(12) };
    let (op, _) = ok_both(&[8.0, 8.01], &[45.0, 45.01], &p);
    assert_eq!(op.rings().0, 127);
}

#[test]
fn threshold_nobody_reaches_names_the_fix() {
    let (lon, lat) = cluster();
    let e = err_both(&lon, &lat, &Params { threshold: 1e9, ..p9() });
    match &e {
        Error::NoCellPassedThreshold { max_weight_sum, threshold, sigma_m } => {
            assert_eq!(*threshold, 1e9);
            assert_eq!(*sigma_m, cell_size_m(9, EARTH_RADIUS_M));
            // 100 samples in a few cells: the best cell sums some weight, far below 1e9
            assert!(*max_weight_sum > 1.0 && *max_weight_sum < 100.0 * 25.0, "{max_weight_sum}");
        }
        other => panic!("expected NoCellPassedThreshold, got {other:?}"),
    }
    let msg = e.to_string();
    for fragment in ["threshold", "1000000000", "Lower `threshold`", "sigma_m", "level"] {
        assert!(msg.contains(fragment), "message lacks {fragment:?}: {msg}");
    }
    // a tiny kernel: no cell gets any weight worth keeping
    let e = err_both(&lon, &lat, &Params { sigma_m: Some(1e-3), threshold: 0.5, ..p9() });
    assert!(matches!(e, Error::NoCellPassedThreshold { threshold, .. } if threshold == 0.5), "{e:?}");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_device_is_unavailable_without_the_feature() {
    let (lon, lat) = cluster();
    for ordinal in [0, 3] {
        match err_both(&lon, &lat, &Params { device: healpix_psf::Device::Cuda(ordinal), ..p9() }) {
            Error::DeviceUnavailable(msg) => {
                assert!(msg.contains("not compiled with CUDA"), "{msg}");
                assert!(msg.contains("`cuda` feature"), "{msg}");
            }
            other => panic!("expected DeviceUnavailable, got {other:?}"),
        }
    }
    // the device is checked before anything else
    let e = err_both(&[], &[], &Params { device: healpix_psf::Device::Cuda(0), npt: 0, ..Params::new(30) });
    assert!(matches!(e, Error::DeviceUnavailable(_)), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// PsfResampler::new: valid edge cases
// ---------------------------------------------------------------------------------------------

#[test]
fn a_single_sample_works() {
    for (lon, lat) in [(8.3, 45.2), (0.0, 0.0), (-179.99, -33.0)] {
        let (op, _) = ok_both(&[lon], &[lat], &p9());
        assert_eq!(op.n(), 1);
        assert!(op.hi()[0] >= 0, "the single sample has no link: {:?}", op.hi());
        // its interpolation weights sum to one
        let s: f64 = op.mt_triplets().vals.iter().sum();
        assert!((s - 1.0).abs() < 1e-12, "{s}");
        // the sample's own cell is among its links
        let own = op.grid().cell(lon, lat).unwrap();
        let links: Vec<u64> = op.hi().iter().filter(|&&h| h >= 0).map(|&h| op.cell_ids()[h as usize]).collect();
        assert!(links.contains(&own), "own cell {own} not in {links:?}");
    }
}

#[test]
fn longitudes_are_wrapped() {
    // 725 ≡ 5, -1e6 ≡ 80, 365.5 ≡ 5.5, -354.5 ≡ 5.5, -0.25 ≡ 359.75 (mod 360)
    let raw: [f64; 6] = [725.0, -1e6, 365.5, -354.5, -0.25, 1085.25];
    let wrapped = [5.0, 80.0, 5.5, 5.5, 359.75, 5.25];
    let lat = [45.0, -10.0, 45.1, 44.9, 0.3, 45.05];
    for (r, w) in raw.iter().zip(&wrapped) {
        assert_eq!(r.rem_euclid(360.0), *w, "test data");
    }
    for nest in [true, false] {
        let p = Params { nest, ..p9() };
        let (a, _) = ok_both(&raw, &lat, &p);
        let (b, _) = ok_both(&wrapped, &lat, &p);
        assert_eq!(a.cell_ids(), b.cell_ids());
        assert_eq!(a.hi(), b.hi());
        assert_eq!(a.d_m(), b.d_m());
        let g = Grid::new(9, nest, Ellipsoid::Wgs84).unwrap();
        assert_eq!(g.cells(&raw, &lat).unwrap(), g.cells(&wrapped, &lat).unwrap());
    }
}

#[test]
fn samples_at_the_poles_work() {
    let lon = [0.0, 90.0, 217.0, -45.0, 0.0, 123.0];
    let lat = [90.0, 90.0, 90.0, -90.0, -90.0, -90.0];
    for ellipsoid in [Ellipsoid::Wgs84, Ellipsoid::Sphere] {
        for nest in [true, false] {
            let p = Params { ellipsoid, nest, ..Params::new(6) };
            let (op, _) = ok_both(&lon, &lat, &p);
            let centres = op.cell_lonlat();
            for (i, row) in op.hi().chunks_exact(op.npt()).enumerate() {
                assert!(row[0] >= 0, "pole sample {i} has no link");
                for &h in row.iter().filter(|&&h| h >= 0) {
                    let clat = centres[h as usize].1;
                    assert!(clat * lat[i] > 0.0 && clat.abs() > 80.0, "sample {i} → lat {clat}");
                }
            }
        }
    }
}

#[test]
fn npt_one_links_each_sample_to_its_nearest_kept_cell() {
    let (mut lon, mut lat) = random_box(7, 300, 8.0, 45.0, 0.6, 0.4);
    // isolated samples too (their own weight keeps their neighbourhood)
    lon.extend([-120.0, 30.0, 179.99]);
    lat.extend([10.0, -70.0, 0.0]);
    let rings = (Some(3), Some(1), Some(3));
    let with =
        |npt: usize| Params { npt, ring_weight: rings.0, ring_search_init: rings.1, ring_search_max: rings.2, ..p9() };
    let (one, one32) = ok_both(&lon, &lat, &with(1));
    // the same kept cells, more of them linked: candidates to compare with
    let (nine, _) = ok_both(&lon, &lat, &with(9));
    let mut candidates: Vec<(u64, (f64, f64))> = one.cell_ids().iter().copied().zip(one.cell_lonlat()).collect();
    candidates.extend(nine.cell_ids().iter().copied().zip(nine.cell_lonlat()));
    assert_eq!(one.nnz(), lon.len(), "every sample has exactly one link");
    for i in 0..lon.len() {
        let h = one.hi()[i];
        assert!(h >= 0, "sample {i} has no link");
        let linked = one.cell_ids()[h as usize];
        let (best, best_d) = candidates
            .iter()
            .map(|&(c, (clon, clat))| (c, great_circle_distance_m(lon[i], lat[i], clon, clat, EARTH_RADIUS_M)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert_eq!(linked, best, "sample {i}: linked {linked}, nearest kept {best}");
        let d = one.d_m()[i];
        assert!((d - best_d).abs() <= 1e-9 * best_d + 1e-6, "sample {i}: d_m {d} vs {best_d}");
        assert!((one32.d_m()[i] as f64 - d).abs() <= 1e-6 * d + 1e-3);
        // with one link, a sample's interpolation weight is 1
        assert_eq!(one.sample_links().mt_values()[i], 1.0);
    }
}

#[test]
fn uniform_area_works() {
    let (lon, lat) = cluster();
    let (op, op32) = ok_both(&lon, &lat, &Params { area: Area::Uniform, ..p9() });
    assert!(op.area().iter().all(|&a| a == 1.0));
    assert!(op32.area().iter().all(|&a| a == 1.0));
}

#[test]
fn threshold_zero_works() {
    let (lon, lat) = cluster();
    let (op, _) = ok_both(&lon, &lat, &Params { threshold: 0.0, ..p9() });
    assert_eq!(op.threshold(), 0.0);
    // every candidate is kept, so every sample gets all its npt links
    assert_eq!(op.nnz(), lon.len() * op.npt());
}

// ---------------------------------------------------------------------------------------------
// PsfResampler::from_links
// ---------------------------------------------------------------------------------------------

/// Two samples, two cells at level 8, npt 2 (sample 0 → cells 0 and 1, sample 1 → cell 1).
struct Links {
    n: usize,
    cell_ids: Vec<u64>,
    hi: Vec<i32>,
    d_m: Vec<f64>,
    area: Vec<f64>,
    params: Params,
}

impl Links {
    fn valid() -> Self {
        Links {
            n: 2,
            cell_ids: vec![10, 11],
            hi: vec![0, 1, 1, -1],
            d_m: vec![0.0, 500.0, 100.0, f64::INFINITY],
            area: vec![1.0, 1.0],
            params: Params { npt: 2, sigma_m: Some(1000.0), ..Params::new(8) },
        }
    }

    fn run<F: Real>(&self) -> Result<PsfResampler<F>, Error> {
        no_panic(&format!("PsfResampler::<{}>::from_links", F::NAME), || {
            PsfResampler::<F>::from_links(self.n, &self.cell_ids, &self.hi, &self.d_m, &self.area, &self.params)
        })
    }

    /// The error in f64 and f32 (they must agree).
    fn err(&self) -> Error {
        let e64 = self.run::<f64>().map(|op| op.k()).expect_err("f64: expected an error, got K cells");
        let e32 = self.run::<f32>().map(|op| op.k()).expect_err("f32: expected an error, got K cells");
        assert_eq!(format!("{e64:?}"), format!("{e32:?}"));
        e64
    }

    fn ok(&self) -> PsfResampler<f64> {
        let op = self.run::<f64>().unwrap_or_else(|e| panic!("unexpected error: {e}"));
        let op32 = self.run::<f32>().unwrap_or_else(|e| panic!("f32: unexpected error: {e}"));
        assert_eq!(op.hi(), op32.hi());
        assert_eq!(op.cell_ids(), &self.cell_ids[..]);
        op
    }
}

#[test]
fn from_links_valid_baseline() {
    let op = Links::valid().ok();
    assert_eq!((op.n(), op.k(), op.nnz()), (2, 2, 3));
    assert_eq!(op.hi(), &[0, 1, 1, -1]);
}

#[test]
fn from_links_rejects_wrong_lengths() {
    for len in [0, 3, 5] {
        let mut l = Links::valid();
        l.hi.resize(len, 0);
        assert_eq!(l.err(), Error::LengthMismatch { what: "hi", expected: 4, got: len });
        let mut l = Links::valid();
        l.d_m.resize(len, 0.0);
        assert_eq!(l.err(), Error::LengthMismatch { what: "d_m", expected: 4, got: len });
    }
    let mut l = Links::valid();
    l.area = vec![1.0];
    assert_eq!(l.err(), Error::LengthMismatch { what: "area", expected: 2, got: 1 });
    let mut l = Links::valid();
    l.area[1] = -1.0;
    assert_eq!(expect_value(l.err(), "area", 1), -1.0);
}

#[test]
fn from_links_rejects_hi_out_of_range() {
    for (index, bad) in [(1, 2), (2, 2), (0, -2), (3, i32::MIN), (1, i32::MAX)] {
        let mut l = Links::valid();
        l.hi[index] = bad;
        assert_eq!(expect_value(l.err(), "hi", index), bad as f64);
    }
}

#[test]
fn from_links_rejects_a_cell_twice_in_a_row() {
    let mut l = Links::valid();
    l.hi = vec![1, 1, 1, -1];
    match l.err() {
        Error::InvalidValue { what: "hi", index: 1, value, reason } => {
            assert_eq!(value, 1.0);
            assert!(reason.contains("twice"), "{reason}");
        }
        other => panic!("expected InvalidValue on hi[1], got {other:?}"),
    }
    // several missing links in a row are fine
    let mut l = Links::valid();
    l.hi = vec![0, 1, -1, -1];
    assert_eq!(l.ok().nnz(), 2);
}

#[test]
fn from_links_rejects_bad_linked_distances() {
    for bad in [-1.0, -1e-300, f64::NAN] {
        let mut l = Links::valid();
        l.d_m[2] = bad;
        assert!(same(expect_value(l.err(), "d_m", 2), bad));
    }
    // where there is no link the distance is not looked at
    let mut l = Links::valid();
    l.d_m[3] = -1.0;
    let op = l.ok();
    assert_eq!(op.d_m()[3], f64::INFINITY);
}

#[test]
fn from_links_rejects_unsorted_cell_ids() {
    for ids in [vec![11, 10], vec![10, 10]] {
        let mut l = Links::valid();
        l.cell_ids = ids.clone();
        assert_eq!(expect_value(l.err(), "cell_ids", 1), ids[1] as f64);
    }
}

#[test]
fn from_links_rejects_cells_beyond_the_level() {
    let n_cells = 12u64 << 16; // level 8
    for nest in [true, false] {
        let mut l = Links::valid();
        l.params.nest = nest;
        l.cell_ids = vec![10, n_cells];
        assert_eq!(expect_value(l.err(), "cell_ids", 1), n_cells as f64);
        l.cell_ids = vec![10, n_cells - 1];
        assert_eq!(l.ok().cell_ids()[1], n_cells - 1);
    }
}

#[test]
fn from_links_rejects_no_samples_and_bad_params() {
    let mut l = Links::valid();
    l.n = 0;
    l.hi.clear();
    l.d_m.clear();
    l.area.clear();
    assert_eq!(l.err(), Error::EmptyInput);

    let mut l = Links::valid();
    l.params.level = 30;
    expect_param(l.err(), "level");
    let mut l = Links::valid();
    l.params.sigma_m = Some(f64::NAN);
    expect_param(l.err(), "sigma_m");
    let mut l = Links::valid();
    l.params.npt = 0;
    expect_param(l.err(), "npt");
}

// ---------------------------------------------------------------------------------------------
// geometry::Grid
// ---------------------------------------------------------------------------------------------

#[test]
fn grid_rejects_levels_above_29() {
    for level in [30u8, 31, 255] {
        for nest in [true, false] {
            let e = no_panic("Grid::new", || Grid::new(level, nest, Ellipsoid::Wgs84)).unwrap_err();
            assert_eq!(expect_param(e, "level").0, level.to_string());
        }
    }
    let g = Grid::new(29, true, Ellipsoid::Sphere).unwrap();
    assert_eq!(g.n_cells(), 12u64 << 58);
}

#[test]
fn grid_cell_rejects_bad_coordinates() {
    let g = Grid::new(10, true, Ellipsoid::Wgs84).unwrap();
    for (lon, lat) in [(0.0, 90.0001), (0.0, -91.0), (0.0, f64::NAN), (f64::NAN, 0.0), (f64::INFINITY, 0.0)] {
        let e = no_panic("Grid::cell", || g.cell(lon, lat)).unwrap_err();
        let (elon, elat, _) = expect_coord(e, 0);
        assert!(same(elon, lon) && same(elat, lat));
    }
    assert_eq!(g.cell(725.0, 45.0).unwrap(), g.cell(5.0, 45.0).unwrap());
    assert!(g.cell(0.0, 90.0).unwrap() < g.n_cells());
    // many positions: the first bad one is named
    let e = g.cells(&[1.0, 2.0, 3.0, 4.0], &[0.0, 0.0, 95.0, -95.0]).unwrap_err();
    expect_coord(e, 2);
    let e = g.cells(&[1.0, 2.0], &[0.0]).unwrap_err();
    assert_eq!(e, Error::LengthMismatch { what: "lat_deg", expected: 2, got: 1 });
}

#[test]
fn grid_rejects_out_of_range_cells() {
    for nest in [true, false] {
        let g = Grid::new(3, nest, Ellipsoid::Wgs84).unwrap();
        let n = g.n_cells();
        assert_eq!(n, 768);
        for bad in [n, n + 1, u64::MAX] {
            let e = no_panic("Grid::center", || g.center(bad)).unwrap_err();
            assert_eq!(expect_param(e, "cell").0, bad.to_string());
            let e = no_panic("Grid::kth_neighbourhood", || g.kth_neighbourhood(bad, 1)).unwrap_err();
            assert_eq!(expect_param(e, "cell").0, bad.to_string());
        }
        let (lon, lat) = g.center(n - 1).unwrap();
        assert!((0.0..360.0).contains(&lon) && (-90.0..=90.0).contains(&lat));
    }
}

#[test]
fn grid_rejects_rings_beyond_nside() {
    for level in [0u8, 1, 4] {
        for nest in [true, false] {
            let g = Grid::new(level, nest, Ellipsoid::Wgs84).unwrap();
            let nside = g.nside();
            for cell in [0, g.n_cells() / 2, g.n_cells() - 1] {
                for k in [nside + 1, 2 * nside + 7, u32::MAX] {
                    let e = no_panic("kth_neighbourhood", || g.kth_neighbourhood(cell, k)).unwrap_err();
                    let (v, reason) = expect_param(e, "k");
                    assert_eq!(v, k.to_string());
                    assert!(reason.contains(&format!("nside = {nside}")), "{reason}");
                }
                // k = nside is the largest allowed
                let nb = no_panic("kth_neighbourhood", || g.kth_neighbourhood(cell, nside)).unwrap();
                assert_eq!(nb[0], cell);
                assert!(nb.iter().all(|&c| c < g.n_cells()));
                assert_eq!(g.kth_neighbourhood(cell, 0).unwrap(), vec![cell]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// fuzzing the constructor
// ---------------------------------------------------------------------------------------------

/// A coordinate value: mostly `base + offset`, sometimes something nasty.
fn nasty() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(1e300),
        Just(-1e300),
        Just(90.0),
        Just(-90.0),
        Just(90.0001),
        Just(-91.0),
        Just(-0.0),
        Just(-1e-300),
        -1e7..1e7f64,
    ]
}

/// (lon, lat): a cluster of `n` samples at a random place and spread, then up to 3 lon or lat values
/// replaced by nasty ones; lat has its own length a quarter of the time.
fn samples() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    let spread = prop_oneof![Just(1e-9), Just(0.01), Just(1.0), Just(30.0), Just(400.0)];
    (
        0usize..40,
        prop::option::weighted(0.1, 0usize..40),
        (-1e3..1e3f64, -90.0..=90.0f64, spread),
        prop_oneof![
            3 => Just(vec![]),
            1 => prop::collection::vec((any::<bool>(), any::<prop::sample::Index>(), nasty()), 1..4),
        ],
        prop::collection::vec((0.0..1.0f64, 0.0..1.0f64), 40),
    )
        .prop_map(|(n, n_lat, (lon0, lat0, spread), poison, unit)| {
            let mut lon: Vec<f64> = unit[..n].iter().map(|u| lon0 + spread * (u.0 - 0.5)).collect();
            let mut lat: Vec<f64> =
                unit[..n_lat.unwrap_or(n)].iter().map(|u| (lat0 + spread * (u.1 - 0.5)).clamp(-90.0, 90.0)).collect();
            for (on_lon, at, v) in poison {
                let target = if on_lon { &mut lon } else { &mut lat };
                if !target.is_empty() {
                    let i = at.index(target.len());
                    target[i] = v;
                }
            }
            (lon, lat)
        })
}

fn any_sigma() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        5 => Just(None),
        4 => (1.0..1e7f64).prop_map(Some),
        1 => prop_oneof![
            Just(Some(0.0)),
            Just(Some(-1.0)),
            Just(Some(f64::NAN)),
            Just(Some(f64::INFINITY)),
            Just(Some(1e-300)),
        ],
    ]
}

fn any_threshold() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => Just(0.1),
        3 => 0.0..3.0f64,
        1 => Just(0.0),
        1 => Just(1e9),
        1 => prop_oneof![Just(-0.1), Just(f64::NAN), Just(f64::INFINITY)],
    ]
}

fn any_area() -> impl Strategy<Value = Area> {
    prop_oneof![
        3 => Just(Area::Auto),
        3 => Just(Area::ReferenceAuto),
        2 => Just(Area::Spacing),
        1 => Just(Area::Uniform),
        1 => prop::collection::vec(prop_oneof![4 => 0.0..10.0f64, 1 => Just(-1.0), 1 => Just(f64::NAN)], 0..40)
            .prop_map(Area::Explicit),
    ]
}

fn any_params() -> impl Strategy<Value = Params> {
    (
        (prop_oneof![9 => 4u8..=29, 1 => 0u8..=31], 0usize..100, any_sigma(), any_threshold()),
        (
            prop::option::weighted(0.3, 0u32..12),
            prop::option::weighted(0.3, 0u32..12),
            prop::option::weighted(0.3, 0u32..12),
        ),
        (any::<bool>(), any::<bool>(), any_area()),
    )
        .prop_map(|((level, npt, sigma_m, threshold), (rw, ri, rm), (nest, sphere, area))| Params {
            npt,
            sigma_m,
            threshold,
            nest,
            ellipsoid: if sphere { Ellipsoid::Sphere } else { Ellipsoid::Wgs84 },
            ring_weight: rw,
            ring_search_init: ri,
            ring_search_max: rm,
            area,
            ..Params::new(level)
        })
}

/// Index of the first sample with a non-finite longitude or a latitude outside [-90, 90].
fn first_bad_coordinate(lon: &[f64], lat: &[f64]) -> Option<usize> {
    lon.iter().zip(lat).position(|(lo, la)| !lo.is_finite() || !(-90.0..=90.0).contains(la))
}

/// Checks one constructor call in type F: no panic; errors that must occur do; errors name the right
/// thing; operators are sane.
fn fuzz_one<F: Real>(lon: &[f64], lat: &[f64], p: &Params) -> Result<(Vec<u64>, Vec<i32>), String> {
    let r = build::<F>(lon, lat, p);
    let bad_sample = first_bad_coordinate(lon, lat);
    let must_fail = lon.is_empty()
        || lon.len() != lat.len()
        || bad_sample.is_some()
        || p.level > 29
        || p.npt == 0
        || !p.threshold.is_finite()
        || p.threshold < 0.0
        || p.sigma_m.is_some_and(|s| !(s.is_finite() && s > 0.0))
        || matches!(&p.area, Area::Explicit(a) if a.len() != lon.len() || a.iter().any(|x| x.is_nan() || *x < 0.0));
    match r {
        Ok(op) => {
            assert!(!must_fail, "accepted bad input: {} samples, {p:?}", lon.len());
            check_sane(&op, lon.len(), p.npt);
            Ok((op.cell_ids().to_vec(), op.hi().to_vec()))
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            match &e {
                Error::EmptyInput => assert!(lon.is_empty() && lat.is_empty()),
                Error::LengthMismatch { what: "lat_deg", expected, got } => {
                    assert_eq!((*expected, *got), (lon.len(), lat.len()))
                }
                Error::InvalidCoordinate { index, .. } => {
                    assert_eq!(lon.len(), lat.len());
                    assert_eq!(Some(*index), bad_sample, "wrong sample named");
                }
                Error::NoCellPassedThreshold { .. }
                | Error::NoSampleLinked { .. }
                | Error::InvalidValue { what: "area", .. } => {
                    assert!(lon.len() == lat.len() && bad_sample.is_none(), "{e:?}")
                }
                Error::LengthMismatch { what: "area", .. } | Error::InvalidParameter { .. } => {}
                other => panic!("unexpected error kind: {other:?}"),
            }
            Err(format!("{e:?}"))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn constructor_never_panics((lon, lat) in samples(), p in any_params()) {
        let r64 = fuzz_one::<f64>(&lon, &lat, &p);
        let r32 = fuzz_one::<f32>(&lon, &lat, &p);
        // the keep and search stages run in f64 for both types: same cells, links and errors (up to
        // the type's name), except that f32 alone rejects a sigma_m whose square underflows in f32
        let sigma_underflows_in_f32 = p.sigma_m.is_some_and(|s| s > 0.0 && (s * s) as f32 == 0.0);
        let untyped = |r: Result<(Vec<u64>, Vec<i32>), String>| r.map_err(|e| e.replace("float32", "float").replace("float64", "float"));
        if sigma_underflows_in_f32 && r64.is_ok() && r32.is_err() {
            prop_assert!(r32.unwrap_err().contains("sigma_m"));
        } else {
            prop_assert_eq!(untyped(r64), untyped(r32));
        }
    }

    #[test]
    fn grid_neighbourhoods_never_panic(level in 0u8..=31, cell in prop_oneof![0u64..800, any::<u64>()], k in 0u32..40) {
        let r = no_panic("Grid", || Grid::new(level, level % 2 == 0, Ellipsoid::Wgs84)
            .and_then(|g| g.kth_neighbourhood(cell, k).map(|nb| (g, nb))));
        match r {
            Ok((g, nb)) => {
                prop_assert!(cell < g.n_cells() && k <= g.nside());
                prop_assert_eq!(nb[0], cell);
                prop_assert!(nb.len() <= ((2 * k as usize + 1).pow(2)));
                prop_assert!(nb.iter().all(|&c| c < g.n_cells()));
            }
            Err(Error::InvalidParameter { name, .. }) => {
                prop_assert!(matches!(name, "level" | "cell" | "k"), "{}", name);
            }
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// regressions: overflow, error attribution and underflow bugs found by fuzzing
// ---------------------------------------------------------------------------------------------

/// Runs `new` on another thread; panics if it panics or has not returned within `secs` seconds.
fn with_timeout(secs: u64, lon: Vec<f64>, lat: Vec<f64>, p: Params) -> Result<usize, Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = catch_unwind(|| PsfResampler::<f64>::new(&lon, &lat, &p).map(|op| op.k()));
        let _ = tx.send(r.map_err(|_| ()));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(Ok(r)) => r,
        Ok(Err(())) => panic!("PsfResampler::new panicked"),
        Err(_) => panic!("PsfResampler::new has not returned after {secs} s"),
    }
}

#[test]

fn huge_npt_is_rejected_quickly() {
    let e = with_timeout(5, vec![8.0], vec![45.0], Params { npt: usize::MAX, ..Params::new(10) }).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { .. }), "{e:?}");
}

#[test]

fn huge_ring_search_max_is_rejected() {
    let p = Params { ring_search_max: Some(u32::MAX), ..Params::new(10) };
    expect_param(err_both(&[8.0], &[45.0], &p), "ring_search_max");
}

#[test]

fn from_links_huge_n_times_npt() {
    let l = Links {
        n: u32::MAX as usize,
        cell_ids: vec![],
        hi: vec![],
        d_m: vec![],
        area: vec![],
        params: Params { npt: 1 << 33, ..Params::new(16) },
    };
    let e = l.run::<f64>().unwrap_err();
    assert!(
        // TooLarge (or a saturated `expected`), not the wrapped 2^64 - 2^33 of today
        matches!(e, Error::TooLarge { .. } | Error::LengthMismatch { expected: usize::MAX, .. }),
        "n·npt = 2^65 - 2^33 does not fit: {e:?}"
    );
}

#[test]

fn kept_cells_out_of_search_reach_are_not_reported_as_below_threshold() {
    // two samples 4 cells apart with a flat kernel: only the cells between them (2 rings from each)
    // sum ≈ 2 ≥ 1.5 and are kept; the search reaches 1 ring only.
    let g = Grid::new(10, true, Ellipsoid::Wgs84).unwrap();
    let c = g.cell(10.0, 0.0).unwrap();
    let ring3 = g.kth_neighbourhood(c, 3).unwrap();
    let far = *g.kth_neighbourhood(c, 4).unwrap().iter().find(|x| !ring3.contains(x)).unwrap();
    let (a, b) = (g.center(c).unwrap(), g.center(far).unwrap());
    let p = Params {
        npt: 1,
        sigma_m: Some(1e8),
        threshold: 1.5,
        ring_weight: Some(2),
        ring_search_init: Some(1),
        ring_search_max: Some(1),
        ..Params::new(10)
    };
    let (lon, lat) = (vec![a.0, b.0], vec![a.1, b.1]);
    // one more search ring finds the kept cells: so cells did pass the threshold
    assert!(build::<f64>(&lon, &lat, &Params { ring_search_max: Some(2), ..p.clone() }).is_ok());
    let e = build::<f64>(&lon, &lat, &p).unwrap_err();
    assert!(
        !matches!(e, Error::NoCellPassedThreshold { .. }),
        "the error says no cell passed the threshold, but some did: {e}"
    );
}

#[test]

fn tiny_sigma_gives_no_nan_in_f32() {
    let p = Params {
        npt: 1,
        sigma_m: Some(1e-30),
        threshold: 0.0,
        ellipsoid: Ellipsoid::Sphere,
        ring_weight: Some(1),
        ring_search_init: Some(1),
        ring_search_max: Some(1),
        ..Params::new(0)
    };
    // (0°, 0°) is exactly the centre of base cell 4: d = 0, and 0/0 = NaN in f32
    match build::<f32>(&[0.0, 1.0], &[0.0, 0.0], &p) {
        Ok(op) => {
            let m = op.m_triplets().vals;
            let mt = op.mt_triplets().vals;
            assert!(m.iter().chain(&mt).all(|v| v.is_finite()), "M {m:?}, MT {mt:?}");
        }
        Err(e) => {
            expect_param(e, "sigma_m");
        }
    }
}

/// `Params::check` and `FitOptions::check` give, before any sample is seen, the errors the
/// constructor and `fit` would give for the same settings.
#[test]
fn settings_are_checked_before_the_data() {
    use healpix_psf::{Bound, EmptyCells, FitOptions, MissingData};
    let (lon, lat) = cluster();
    for p in [
        Params { level: 30, ..p9() },
        Params { npt: 0, ..p9() },
        Params { radius: -1.0, ..p9() },
        Params { sigma_m: Some(f64::NAN), ..p9() },
        Params { threshold: -0.5, ..p9() },
        Params { ring_search_max: Some(1 << 20), ..p9() },
    ] {
        let early = p.check().expect_err("check accepts what the constructor refuses");
        let late = build::<f64>(&lon, &lat, &p).expect_err("the constructor accepts it");
        assert_eq!(early.to_string(), late.to_string());
    }
    assert!(p9().check().is_ok());
    if !cfg!(feature = "cuda") {
        let e = Params { device: healpix_psf::Device::Cuda(0), ..p9() }.check().unwrap_err();
        assert!(matches!(e, Error::DeviceUnavailable(_)), "{e}");
    }
    let op = build::<f64>(&lon, &lat, &p9()).unwrap();
    let v = vec![1.0; op.n()];
    for o in [
        FitOptions::<f64> { lam: -1.0, ..FitOptions::default() },
        FitOptions { tol: 0.0, ..FitOptions::default() },
        FitOptions { lower: Bound::Value(f64::NAN), ..FitOptions::default() },
        FitOptions { empty_cells: EmptyCells::Fitted, missing: MissingData::PerRow, ..FitOptions::default() },
        FitOptions { upper: Bound::Value(1.0), max_outer: 0, ..FitOptions::default() },
    ] {
        let early = o.check().expect_err("check accepts what fit refuses");
        let late = op.fit(&v, &o).expect_err("fit accepts it");
        assert_eq!(early.to_string(), late.to_string());
    }
    // f32 cannot hold this damping
    assert!(FitOptions::<f32> { lam: 1e39, ..FitOptions::default() }.check().is_err());
    assert!(FitOptions::<f64> { lam: 1e39, ..FitOptions::default() }.check().is_ok());
}
