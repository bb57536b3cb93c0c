//! Real data: sea temperature on the NEMO ORCA2 tripolar ocean grid (`tests/fixtures/orca2_grid`,
//! see its SOURCE.md; 38 % land). The per-sample area estimates against the areas of the grid's own
//! cell polygons (computed independently from the cell vertices stored in the file), and fits with
//! the operator built from the ocean points only (`sample_mask`) against fits with land as missing.

use crate::common::orca::{clouds, field_error, fixture_dir, implausible, Orca};
use healpix_psf::{valid_samples, Area, Bound, EmptyCells, FitOptions, MissingData, Params, PsfResampler};

fn orca2() -> Orca {
    Orca::read(&fixture_dir())
}

fn areas(o: &Orca, area: Area) -> Vec<f64> {
    let p = Params { area, ..Params::new(6) };
    PsfResampler::<f64>::new(&o.lon, &o.lat, &p).unwrap().area()
}

#[test]
fn spacing_areas_match_the_cell_polygons_on_orca2() {
    let o = orca2();
    assert_eq!(o.lon.len(), 148 * 180);
    let a = areas(&o, Area::Spacing);
    assert_eq!(a, areas(&o, Area::Auto), "ORCA passes the ring test, so Auto is the spacing estimate");
    let r = o.ratios(&a);
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
    let (m, exact) = (o.weighted_mean(&a), o.weighted_mean(&o.exact));
    println!("area-weighted mean SST: spacing {m:.4} °C, polygons {exact:.4} °C");
    assert!((m - exact).abs() < 5e-3, "{m} vs {exact}");
}

#[test]
fn the_reference_estimate_misfires_on_orca2() {
    // SPEC §7.12: each northern point is taken for a whole latitude ring
    let o = orca2();
    let r = o.ratios(&areas(&o, Area::ReferenceAuto));
    let spread = r[r.len() - 1] / r[0];
    let (m, exact) = (o.weighted_mean(&areas(&o, Area::ReferenceAuto)), o.weighted_mean(&o.exact));
    let uniform = o.weighted_mean(&vec![1.0; o.sst.len()]);
    println!("reference estimate: ratio spread {spread:.2e}, mean SST {m:.4} °C; uniform {uniform:.4} °C; polygons {exact:.4} °C");
    assert!(spread > 1e6, "{spread}");
    assert!((m - exact).abs() > 0.02 && (uniform - exact).abs() > 1.0);
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
    // land as missing in the full operator, counted as 0 (the reference's way): its numbers on
    // land-only cells, or NaN there; and land left out of the row's problem (the default)
    let zero_fill = FitOptions { missing: MissingData::ZeroFill, ..opts.clone() };
    let fitted = all.fit(&o.sst, &FitOptions { empty_cells: EmptyCells::Fitted, ..zero_fill.clone() }).unwrap();
    let missing = all.fit(&o.sst, &zero_fill).unwrap();
    let per_row = all.fit(&o.sst, &opts).unwrap();
    let (f, back) = ocean.fit_resample(&o.sst, &opts).unwrap();
    let info = f.info.as_ref().unwrap();
    println!(
        "ORCA2 level 6, lam 1e-2: all samples K = {} ({} cells without ocean support), ocean only K = {} \
         (n_used {}); cells outside [-3, 35] °C: reference {} / land missing {} / land left out per row {} / \
         ocean only {}; residual rms {:.4} °C",
        all.k(),
        missing.info.as_ref().unwrap().empty_cells[0],
        ocean.k(),
        ocean.n_used(),
        implausible(&fitted.hval),
        implausible(&missing.hval),
        implausible(&per_row.hval),
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
    // per-row missing data keeps land out of the fit like the ocean-only operator
    assert!(implausible(&per_row.hval) * 50 < implausible(&missing.hval), "{}", implausible(&per_row.hval));
    assert_eq!(per_row.info.as_ref().unwrap().empty_cells, missing.info.as_ref().unwrap().empty_cells);
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
    let target = o.weighted_mean(&ocean.area());
    assert!((mean - target).abs() < 1e-9 * target.abs(), "{mean} vs {target}");
}

/// Clouds (20–40 % of the ocean hidden in discs of 150–400 km): with the missing points left out
/// of each row's problem the field stays close to the fit of the complete data; counted as 0 (the
/// reference's way) it is pulled towards 0 °C around every cloud.
#[test]
fn clouds_on_orca2_per_row_vs_zero_filled() {
    let o = orca2();
    let n = o.sst.len();
    let ocean = valid_samples(&o.sst, n).unwrap();
    let op = PsfResampler::<f64>::new(&o.lon, &o.lat, &Params { sample_mask: Some(ocean.clone()), ..Params::new(6) })
        .unwrap();
    let base = FitOptions { lam: 1e-2, return_info: true, ..FitOptions::default() };
    let full = op.fit(&o.sst, &base).unwrap().hval;
    let mut val = Vec::new();
    for (j, f) in [0.2, 0.35].into_iter().enumerate() {
        let (mask, got) = clouds(&o.lon, &o.lat, &ocean, f, 7 + j as u64);
        assert!(got >= f && got < f + 0.1, "{got}");
        val.extend(o.sst.iter().zip(&mask).map(|(&v, &c)| if c { f64::NAN } else { v }));
    }
    let k = op.k();
    let zero = op.fit(&val, &FitOptions { missing: MissingData::ZeroFill, ..base.clone() }).unwrap();
    let per_row = op.fit(&val, &base).unwrap();
    for j in 0..2 {
        let (rz, mz, _) = field_error(&zero.hval[j * k..(j + 1) * k], &full);
        let (rp, mp, cells) = field_error(&per_row.hval[j * k..(j + 1) * k], &full);
        println!("ORCA2 clouds row {j}: zero-filled RMS {rz:.3} max {mz:.2} °C; per row RMS {rp:.3} max {mp:.2} °C ({cells} cells)");
        assert!(rp * 10.0 < rz && mp < mz, "row {j}: per row {rp}/{mp} vs zero-filled {rz}/{mz}");
    }
    assert!(implausible(&per_row.hval) * 10 < implausible(&zero.hval));
}
