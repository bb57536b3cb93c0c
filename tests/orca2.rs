//! Real data: sea temperature on the NEMO ORCA2 tripolar ocean grid (`tests/fixtures/orca2_grid`,
//! see its SOURCE.md; 38 % land). The per-sample area estimates against the areas of the grid's own
//! cell polygons (computed independently from the cell vertices stored in the file), and fits with
//! the operator built from the ocean points only (`sample_mask`) against fits with land as missing.

use healpix_psf::{valid_samples, Area, Bound, EmptyCells, FitOptions, Params, PsfResampler};
use std::collections::HashMap;

fn read_f32(name: &str) -> Vec<f64> {
    let path = format!("{}/tests/fixtures/orca2_grid/{name}.f32", env!("CARGO_MANIFEST_DIR"));
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect()
}

struct Orca {
    lon: Vec<f64>,
    lat: Vec<f64>,
    sst: Vec<f64>,
    /// polygon area shared among the samples at the same position (the fold row repeats points)
    exact: Vec<f64>,
}

fn orca2() -> Orca {
    let (lon, lat, sst, poly) = (read_f32("lon"), read_f32("lat"), read_f32("sst"), read_f32("area"));
    let key = |i: usize| (lon[i].to_bits(), lat[i].to_bits());
    let mut count: HashMap<(u64, u64), usize> = HashMap::new();
    (0..lon.len()).for_each(|i| *count.entry(key(i)).or_default() += 1);
    let exact = (0..lon.len()).map(|i| poly[i] / count[&key(i)] as f64).collect();
    Orca { lon, lat, sst, exact }
}

fn areas(o: &Orca, area: Area) -> Vec<f64> {
    let p = Params { area, ..Params::new(6) };
    PsfResampler::<f64>::new(&o.lon, &o.lat, &p).unwrap().area()
}

/// Area-weighted mean of the valid (ocean) values.
fn weighted_mean(o: &Orca, w: &[f64]) -> f64 {
    let (s, ws) = (0..o.sst.len())
        .filter(|&i| o.sst[i].is_finite())
        .fold((0.0, 0.0), |(s, ws), i| (s + w[i] * o.sst[i], ws + w[i]));
    s / ws
}

/// The ratios estimate / polygon area over the ocean samples, divided by their median, sorted.
fn ratios(o: &Orca, a: &[f64]) -> Vec<f64> {
    let mut r: Vec<f64> = (0..o.sst.len()).filter(|&i| o.sst[i].is_finite()).map(|i| a[i] / o.exact[i]).collect();
    r.sort_by(f64::total_cmp);
    let med = r[r.len() / 2];
    r.iter().map(|x| x / med).collect()
}

#[test]
fn spacing_areas_match_the_cell_polygons_on_orca2() {
    let o = orca2();
    assert_eq!(o.lon.len(), 148 * 180);
    let a = areas(&o, Area::Spacing);
    assert_eq!(a, areas(&o, Area::Auto), "ORCA passes the ring test, so Auto is the spacing estimate");
    let r = ratios(&o, &a);
    let within = |tol: f64| r.iter().filter(|&&x| (x - 1.0).abs() <= tol).count() as f64 / r.len() as f64;
    println!(
        "ORCA2 ocean samples: spacing/polygon area ratio, min {:.4} max {:.4}; within 1 %: {:.4}, within 0.5 %: {:.4}",
        r[0],
        r[r.len() - 1],
        within(0.01),
        within(0.005)
    );
    assert!(within(0.01) >= 0.99, "{}", within(0.01));
    assert!(r[0] > 0.9 && r[r.len() - 1] < 1.15, "{} {}", r[0], r[r.len() - 1]);
    // the area-weighted mean temperature, the conservation target of a fit
    let (m, exact) = (weighted_mean(&o, &a), weighted_mean(&o, &o.exact));
    println!("area-weighted mean SST: spacing {m:.4} °C, polygons {exact:.4} °C");
    assert!((m - exact).abs() < 5e-3, "{m} vs {exact}");
}

#[test]
fn the_reference_estimate_misfires_on_orca2() {
    // SPEC §7.12: each northern point is taken for a whole latitude ring
    let o = orca2();
    let r = ratios(&o, &areas(&o, Area::ReferenceAuto));
    let spread = r[r.len() - 1] / r[0];
    let (m, exact) = (weighted_mean(&o, &areas(&o, Area::ReferenceAuto)), weighted_mean(&o, &o.exact));
    let uniform = weighted_mean(&o, &vec![1.0; o.sst.len()]);
    println!("reference estimate: ratio spread {spread:.2e}, mean SST {m:.4} °C; uniform {uniform:.4} °C; polygons {exact:.4} °C");
    assert!(spread > 1e6, "{spread}");
    assert!((m - exact).abs() > 0.02 && (uniform - exact).abs() > 1.0);
}

/// Cells whose fitted temperature is outside [−3, 35] °C (sea water is never there).
fn implausible(h: &[f64]) -> usize {
    h.iter().filter(|v| v.is_finite() && !(-3.0..=35.0).contains(*v)).count()
}

#[test]
fn land_mask_operator_on_orca2() {
    let o = orca2();
    let n = o.sst.len();
    let mask = valid_samples(&o.sst, n).unwrap();
    let (lo, hi) = o.sst.iter().filter(|v| v.is_finite()).fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let all = PsfResampler::<f64>::new(&o.lon, &o.lat, &Params::new(6)).unwrap();
    let ocean =
        PsfResampler::<f64>::new(&o.lon, &o.lat, &Params { sample_mask: Some(mask), ..Params::new(6) }).unwrap();
    let opts = FitOptions { lam: 1e-2, return_info: true, ..FitOptions::default() };
    // land as missing in the full operator: the reference's numbers on land-only cells, or NaN
    let fitted = all.fit(&o.sst, &FitOptions { empty_cells: EmptyCells::Fitted, ..opts.clone() }).unwrap();
    let missing = all.fit(&o.sst, &opts).unwrap();
    let (f, back) = ocean.fit_resample(&o.sst, &opts).unwrap();
    let info = f.info.as_ref().unwrap();
    println!(
        "ORCA2 level 6, lam 1e-2: all samples K = {} ({} cells without ocean support), ocean only K = {} \
         (n_used {}); cells outside [-3, 35] °C: reference {} / land missing {} / ocean only {}; \
         residual rms {:.4} °C",
        all.k(),
        missing.info.as_ref().unwrap().empty_cells[0],
        ocean.k(),
        ocean.n_used(),
        implausible(&fitted.hval),
        implausible(&missing.hval),
        implausible(&f.hval),
        info.residual_rms[0]
    );
    assert_eq!(ocean.n_used(), o.sst.iter().filter(|v| v.is_finite()).count());
    // every cell of the ocean operator has ocean support: none is empty, all are numbers
    assert_eq!(info.empty_cells[0], 0);
    assert!(ocean.cell_sample_counts().iter().all(|&c| c > 0) && f.hval.iter().all(|v| v.is_finite()));
    // its cells are those of the full operator that ocean points reach (a subset)
    assert!(ocean.cell_ids().iter().all(|&c| all.cell_index(c).is_some()));
    // implausible temperatures: hundreds with land in the operator, a handful without
    assert!(implausible(&fitted.hval) > 200 && implausible(&missing.hval) > 200);
    assert!(implausible(&f.hval) * 50 < implausible(&missing.hval), "{}", implausible(&f.hval));
    // back at the samples: NaN on land, the ocean reproduced
    assert!((0..n).all(|i| back[i].is_nan() == o.sst[i].is_nan()));
    assert!(info.residual_rms[0] < 0.02 && info.converged[0]);

    // bounded by the data's range: every cell plausible, the fit barely changed
    let clip = FitOptions { lower: Bound::Input, upper: Bound::Input, ..opts.clone() };
    let c = ocean.fit(&o.sst, &clip).unwrap();
    let ci = c.info.as_ref().unwrap();
    assert!(c.hval.iter().all(|&v| (lo..=hi).contains(&v)));
    println!(
        "bounded by the data range: residual rms {:.5} vs {:.5} unbounded",
        ci.residual_rms[0], info.residual_rms[0]
    );
    assert!(ci.residual_rms[0] < 1.1 * info.residual_rms[0]);
    // conservative: the cells' mean is the area-weighted mean of the ocean samples
    let cons = ocean.fit(&o.sst, &FitOptions { conservative: true, ..opts }).unwrap();
    let mean = cons.hval.iter().sum::<f64>() / cons.hval.len() as f64;
    let target = weighted_mean(&o, &ocean.area());
    assert!((mean - target).abs() < 1e-9 * target.abs(), "{mean} vs {target}");
}
