//! `Params::sample_mask`: an operator built from some of the samples (a land mask) must equal the
//! operator built from those samples' coordinates alone — construction, products and every kind of
//! fit — with the samples left out ignored on input and NaN on output.

use crate::common::synth::regional;
use healpix_psf::{valid_samples, Area, Bound, Error, FitOptions, Params, PsfResampler};

/// A regional scatter with a "land" blob (every sample within 0.6° of a point) left out.
fn land_case() -> (Vec<f64>, Vec<f64>, Vec<bool>) {
    let (lon, lat) = regional(3000, 10, 4.0, 7);
    let (lc, pc) = (lon[0] + 0.3, lat[0] - 0.2);
    let mask = lon.iter().zip(&lat).map(|(x, y)| (x - lc).hypot(y - pc) > 0.6).collect::<Vec<bool>>();
    (lon, lat, mask)
}

fn field(lon: &[f64], lat: &[f64], rows: usize) -> Vec<f64> {
    (0..rows)
        .flat_map(|r| lon.iter().zip(lat).map(move |(x, y)| (x * (2.0 + r as f64)).sin() + (y * 3.0).cos() + r as f64))
        .collect()
}

fn pick<T: Copy>(v: &[T], used: &[usize], width: usize) -> Vec<T> {
    used.iter().flat_map(|&i| v[i * width..(i + 1) * width].iter().copied()).collect()
}

#[test]
fn a_masked_operator_equals_the_operator_of_the_used_samples() {
    let (lon, lat, mask) = land_case();
    let n = lon.len();
    let used: Vec<usize> = (0..n).filter(|&i| mask[i]).collect();
    assert!(used.len() < n - 100 && used.len() > n / 2, "{} of {n}", used.len());
    let (sl, sa) = (pick(&lon, &used, 1), pick(&lat, &used, 1));
    for area in [Area::Auto, Area::Spacing, Area::Explicit((0..n).map(|i| 1.0 + (i % 7) as f64).collect())] {
        let p = Params { area: area.clone(), ..Params::new(10) };
        let sub_area = match &area {
            Area::Explicit(a) => Area::Explicit(pick(a, &used, 1)),
            a => a.clone(),
        };
        let sub = PsfResampler::<f64>::new(&sl, &sa, &Params { area: sub_area, ..p.clone() }).unwrap();
        let op = PsfResampler::<f64>::new(&lon, &lat, &Params { sample_mask: Some(mask.clone()), ..p }).unwrap();
        assert_eq!((op.n(), op.n_used(), op.k()), (n, used.len(), sub.k()));
        assert_eq!(op.cell_ids(), sub.cell_ids());
        assert_eq!(op.cell_weight(), sub.cell_weight());
        let npt = op.npt();
        assert_eq!(pick(&op.hi(), &used, npt), sub.hi());
        assert_eq!(pick(&op.d_m(), &used, npt), sub.d_m());
        assert_eq!(pick(&op.area(), &used, 1), sub.area());
        assert_eq!(pick(&op.sample_weight(), &used, 1), sub.sample_weight());
        for i in (0..n).filter(|&i| !mask[i]) {
            assert!(op.hi()[i * npt..(i + 1) * npt].iter().all(|&h| h == -1));
            assert!(op.d_m()[i * npt..(i + 1) * npt].iter().all(|&d| d == f64::INFINITY));
            assert_eq!((op.area()[i], op.sample_weight()[i]), (0.0, 0.0));
        }
        // M and MT: the same entries, with sample indices mapped
        for (t, u) in [(op.m_triplets(), sub.m_triplets()), (op.mt_triplets(), sub.mt_triplets())] {
            let (mapped_rows, mapped_cols) = if t.n_rows == n {
                (u.rows.iter().map(|&i| used[i as usize] as u64).collect(), u.cols.clone())
            } else {
                (u.rows.clone(), u.cols.iter().map(|&i| used[i as usize] as u64).collect::<Vec<u64>>())
            };
            assert_eq!((t.rows, t.cols, t.vals), (mapped_rows, mapped_cols, u.vals));
            assert!(t.n_rows == n || t.n_cols == n);
        }
    }
}

#[test]
fn masked_fits_equal_fits_on_the_used_samples() {
    let (lon, lat, mask) = land_case();
    let n = lon.len();
    let used: Vec<usize> = (0..n).filter(|&i| mask[i]).collect();
    let p = Params::new(10);
    let sub = PsfResampler::<f64>::new(&pick(&lon, &used, 1), &pick(&lat, &used, 1), &p).unwrap();
    let op = PsfResampler::<f64>::new(&lon, &lat, &Params { sample_mask: Some(mask.clone()), ..p }).unwrap();
    let rows = 3;
    let mut val = field(&lon, &lat, rows);
    // values at the samples left out are ignored, whatever they are (even infinite)
    for (r, row) in val.chunks_mut(n).enumerate() {
        for i in (0..n).filter(|&i| !mask[i]) {
            row[i] = if r == 0 { f64::INFINITY } else { 1e6 };
        }
    }
    val[n + used[5]] = f64::NAN; // a NaN at a used sample, in row 1
    let sub_val: Vec<f64> = val.chunks(n).flat_map(|row| pick(row, &used, 1)).collect();
    let base = FitOptions { lam: 1e-2, return_info: true, ..FitOptions::default() };
    let variants = [
        base.clone(),
        FitOptions { conservative: true, ..base.clone() },
        FitOptions { lower: Bound::Input, upper: Bound::Value(2.5), ..base.clone() },
        FitOptions { lower: Bound::Input, upper: Bound::Input, conservative: true, ..base.clone() },
    ];
    for opts in &variants {
        let (f, back) = op.fit_resample(&val, opts).unwrap();
        let (g, sub_back) = sub.fit_resample(&sub_val, opts).unwrap();
        assert_eq!(f.hval, g.hval);
        let (fi, gi) = (f.info.unwrap(), g.info.unwrap());
        assert_eq!(
            (&fi.row_iterations, &fi.n_clipped_low, &fi.n_clipped_high, &fi.empty_cells),
            (&gi.row_iterations, &gi.n_clipped_low, &gi.n_clipped_high, &gi.empty_cells)
        );
        assert_eq!((&fi.residual_rms, &fi.residual_max), (&gi.residual_rms, &gi.residual_max));
        for r in 0..rows {
            let row = &back[r * n..(r + 1) * n];
            assert_eq!(pick(row, &used, 1), sub_back[r * used.len()..(r + 1) * used.len()].to_vec());
            assert!((0..n).filter(|&i| !mask[i]).all(|i| row[i].is_nan()));
        }
    }
    assert_eq!(op.apply_m(&val).unwrap(), sub.apply_m(&sub_val).unwrap());
    let h: Vec<f64> = (0..op.k()).map(|c| c as f64 * 0.01).collect();
    let r = op.resample(&h).unwrap();
    assert_eq!(pick(&r, &used, 1), sub.resample(&h).unwrap());
    // a row whose only values are at samples left out has no data
    let mut only_land = vec![f64::NAN; n];
    (0..n).filter(|&i| !mask[i]).for_each(|i| only_land[i] = 1.0);
    let f = op.fit(&only_land, &base).unwrap();
    assert!(f.hval.iter().all(|v| v.is_nan()) && !f.info.unwrap().has_data[0]);
}

#[test]
fn restricted_output_and_nearest_fill_use_caller_indices() {
    let (lon, lat, mask) = land_case();
    let n = lon.len();
    let full = PsfResampler::<f64>::new(&lon, &lat, &Params::new(10)).unwrap();
    // every cell, requested with a wide kernel, so that some are uncomputable
    let p = Params {
        out_cell_ids: Some(full.cell_ids().to_vec()),
        fill_missing_out_cells: true,
        sample_mask: Some(mask.clone()),
        ..Params::new(10)
    };
    let op = PsfResampler::<f64>::new(&lon, &lat, &p).unwrap();
    assert!(!op.uncomputable_cells().is_empty());
    let val: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let f = op.fit(&val, &FitOptions::default()).unwrap();
    let centres = op.cell_lonlat();
    for &c in op.uncomputable_cells() {
        // the value is that of the nearest *used* sample (brute force; values are the indices)
        let (x, y) = centres[c as usize];
        let d = |i: usize| {
            let (a, b) = (lon[i].to_radians(), lat[i].to_radians());
            let (cx, cy) = (x.to_radians(), y.to_radians());
            (b.sin() * cy.sin() + b.cos() * cy.cos() * (a - cx).cos()).acos()
        };
        let got = f.hval[c as usize] as usize;
        assert!(mask[got], "cell {c} filled from a sample left out");
        let best = (0..n).filter(|&i| mask[i]).map(d).fold(f64::INFINITY, f64::min);
        assert!(d(got) <= best + 1e-12, "cell {c}: sample {got} at {} vs {best}", d(got));
    }
}

#[test]
fn valid_samples_and_mask_errors() {
    let val = [1.0f32, f32::NAN, f32::NAN, 0.0, f32::NAN, f32::NAN];
    assert_eq!(valid_samples(&val, 3).unwrap(), vec![true, false, false]);
    assert!(matches!(valid_samples(&val, 4), Err(Error::LengthMismatch { .. })));
    assert!(matches!(valid_samples::<f32>(&[], 3), Err(Error::LengthMismatch { .. })));

    let (lon, lat, mask) = land_case();
    let with = |m: Vec<bool>| Params { sample_mask: Some(m), ..Params::new(10) };
    let e = PsfResampler::<f64>::new(&lon, &lat, &with(mask[1..].to_vec())).unwrap_err();
    assert!(matches!(e, Error::LengthMismatch { what: "sample_mask", .. }), "{e}");
    let e = PsfResampler::<f64>::new(&lon, &lat, &with(vec![false; lon.len()])).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { name: "sample_mask", .. }), "{e}");
    // coordinates of samples left out are not checked; those of used samples are, with the
    // caller's index in the error
    let i_out = mask.iter().position(|&m| !m).unwrap();
    let i_in = mask.iter().rposition(|&m| m).unwrap();
    let (mut lo, mut la) = (lon.clone(), lat.clone());
    lo[i_out] = f64::NAN;
    la[i_out] = 1e9;
    let op = PsfResampler::<f64>::new(&lo, &la, &with(mask.clone())).unwrap();
    assert_eq!(op.n(), lon.len());
    la[i_in] = 95.0;
    match PsfResampler::<f64>::new(&lo, &la, &with(mask.clone())).unwrap_err() {
        Error::InvalidCoordinate { index, .. } => assert_eq!(index, i_in),
        e => panic!("{e}"),
    }
    // explicit areas: only the used ones must be valid
    let mut a = vec![1.0; lon.len()];
    a[i_out] = f64::NAN;
    let p = Params { area: Area::Explicit(a.clone()), ..with(mask.clone()) };
    assert!(PsfResampler::<f64>::new(&lon, &lat, &p).is_ok());
    a[i_in] = -1.0;
    let p = Params { area: Area::Explicit(a), ..with(mask.clone()) };
    assert!(matches!(PsfResampler::<f64>::new(&lon, &lat, &p), Err(Error::InvalidValue { what: "area", .. })));
    // from_links takes no mask
    let p = Params { npt: 1, ..with(vec![true]) };
    let e = PsfResampler::<f64>::from_links(1, &[5], &[0], &[0.0], &[1.0], &p).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { name: "sample_mask", .. }), "{e}");
}

/// Values of samples left out are never read: an infinity or a NaN there changes nothing (and is no
/// error), while an infinity at a used sample is an error naming its index in the caller's values.
/// A conservative fit averages over the used samples only.
#[test]
fn values_of_samples_left_out_are_ignored() {
    let (lon, lat, mask) = land_case();
    let n = lon.len();
    let op =
        PsfResampler::<f64>::new(&lon, &lat, &Params { sample_mask: Some(mask.clone()), ..Params::new(10) }).unwrap();
    let val = field(&lon, &lat, 3);
    let mut odd = val.clone();
    let out = mask.iter().position(|&m| !m).unwrap();
    odd[out] = f64::INFINITY;
    odd[n + out] = f64::NAN;
    odd[2 * n + out] = -1e300;
    assert_eq!(op.apply_m(&odd).unwrap(), op.apply_m(&val).unwrap());
    let o = FitOptions { lam: 1e-2, conservative: true, return_info: true, ..FitOptions::default() };
    let (a, b) = (op.fit(&odd, &o).unwrap(), op.fit(&val, &o).unwrap());
    assert_eq!(a.hval, b.hval);
    assert_eq!(a.info.unwrap().empty_cells, b.info.unwrap().empty_cells);
    // nor do they set a box taken from the input (−1e300 in the third row)
    let boxed = FitOptions { lower: Bound::Input, upper: Bound::Input, ..o.clone() };
    assert_eq!(op.fit(&odd, &boxed).unwrap().hval, op.fit(&val, &boxed).unwrap().hval);
    let used = mask.iter().position(|&m| m).unwrap();
    odd[n + used] = f64::NEG_INFINITY;
    for e in
        [op.apply_m(&odd).unwrap_err(), op.fit(&odd, &o).unwrap_err(), op.x_ref(&odd, Default::default()).unwrap_err()]
    {
        assert!(matches!(e, Error::InvalidValue { what: "val", index, .. } if index == n + used), "{e}");
    }
}
