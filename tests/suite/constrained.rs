//! Bounded, conservative and NaN-aware fits (SPEC §4 items 7–8, §7.11) against independent dense
//! references: the bounded fit vs an accelerated projected-gradient solve of the same box-constrained
//! quadratic, the conservation correction vs the dense KKT solution, empty cells vs a count from
//! `hi`, residual statistics vs `resample`. Parity with the reference is in parity_solve.rs.

use crate::common;

use crate::common::dense::{lu_apply, vec_mat, Dense};
use crate::common::synth::{regional, Rng};
use healpix_psf::{Bound, EmptyCells, Error, Fit, FitOptions, MissingData, Params, PsfResampler, Stopping};

/// A field of sharp positive blobs on a zero background (the unconstrained fit rings below 0).
fn blobs(lon: &[f64], lat: &[f64], seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let (x0, x1) = lon.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let (y0, y1) = lat.iter().fold((f64::MAX, f64::MIN), |(a, b), &y| (a.min(y), b.max(y)));
    let centres: Vec<(f64, f64, f64)> =
        (0..6).map(|_| (rng.range(x0, x1), rng.range(y0, y1), rng.range(0.3, 1.0))).collect();
    let r = 0.08 * (x1 - x0);
    lon.iter()
        .zip(lat)
        .map(|(&x, &y)| {
            centres.iter().map(|&(cx, cy, a)| a * (-((x - cx).powi(2) + (y - cy).powi(2)) / (r * r)).exp()).sum::<f64>()
        })
        .map(|v| if v < 1e-3 { 0.0 } else { v })
        .collect()
}

fn problem(n: usize, level: u8, seed: u64) -> (PsfResampler<f64>, Vec<f64>) {
    let (lon, lat) = regional(n, level, 2.0, seed);
    let op = PsfResampler::<f64>::new(&lon, &lat, &Params::new(level)).unwrap();
    let y = blobs(&lon, &lat, seed + 1);
    (op, y)
}

fn opts(lam: f64, tol: f64) -> FitOptions<f64> {
    FitOptions { lam, tol, max_iter: 2000, return_info: true, ..FitOptions::default() }
}

/// min ½δA·Dx·δ − rhs·Dx·δ over lo ≤ δ ≤ hi (per cell) by FISTA in the Dx metric, where the gradient
/// is δA − rhs and ‖A‖_Dx ≤ 1 + λ.
fn projected_gradient(a: &[f64], rhs: &[f64], lo: &[f64], hi: &[f64], lam: f64, iters: usize) -> Vec<f64> {
    let k = rhs.len();
    let step = 1.0 / (1.0 + lam);
    let clamp = |v: Vec<f64>| -> Vec<f64> { v.iter().enumerate().map(|(i, &x)| x.max(lo[i]).min(hi[i])).collect() };
    let mut x = clamp(vec![0.0; k]);
    let mut z = x.clone();
    let mut t = 1.0f64;
    for _ in 0..iters {
        let g = vec_mat(&z, a, k, k);
        let next = clamp(z.iter().zip(&g).zip(rhs).map(|((&zi, &gi), &bi)| zi - step * (gi - bi)).collect());
        let t_next = (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0;
        z = next.iter().zip(&x).map(|(&n, &o)| n + (t - 1.0) / t_next * (n - o)).collect();
        x = next;
        t = t_next;
    }
    x
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn non_negative_fit_matches_projected_gradient() {
    let lam = 0.05;
    let (op, y) = problem(400, 9, 3);
    let free = op.fit(&y, &opts(lam, 1e-12)).unwrap();
    let below = free.hval.iter().filter(|&&v| v < -1e-6).count();
    assert!(below > 0, "the unconstrained fit should ring below zero on this field");

    let o = FitOptions { lower: Bound::Value(0.0), max_outer: 100, ..opts(lam, 1e-13) };
    let fit = op.fit(&y, &o).unwrap();
    let info = fit.info.as_ref().unwrap();
    assert!(fit.hval.iter().all(|&v| v >= 0.0), "bounded fit below its bound");
    assert!(info.converged[0], "active set did not settle in {} passes", info.outer_passes);

    let d = Dense::new(&op);
    let (x_ref, rhs) = d.rhs(&y);
    let a = d.normal_matrix(lam);
    let lo: Vec<f64> = x_ref.iter().map(|x| -x).collect();
    let hi = vec![f64::INFINITY; d.k];
    let delta = projected_gradient(&a, &rhs, &lo, &hi, lam, 60_000);
    let want: Vec<f64> = x_ref.iter().zip(&delta).map(|(x, d)| (x + d).max(0.0)).collect();
    let e = max_rel(&fit.hval, &want);
    let held_dense = want.iter().filter(|&&v| v == 0.0).count();
    eprintln!(
        "K={} lam={lam}: bounded fit vs projected gradient {e:.1e}; held at 0: {} (dense: {held_dense}); \
         {} passes, {} CG iterations; unconstrained fit had {below} cells below 0",
        d.k, info.n_clipped_low[0], info.outer_passes, info.iterations
    );
    assert!(e <= 1e-7, "bounded fit vs projected gradient: {e:e}");
    assert!(info.n_clipped_low[0].abs_diff(held_dense) <= 2);
    assert_eq!(info.n_clipped_high[0], 0);
}

#[test]
fn box_from_input_range_and_upper_bound() {
    let lam = 0.05;
    let (op, y) = problem(400, 9, 5);
    let (ymin, ymax) = y.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let o = FitOptions { lower: Bound::Input, upper: Bound::Input, max_outer: 100, ..opts(lam, 1e-13) };
    let fit = op.fit(&y, &o).unwrap();
    assert!(fit.hval.iter().all(|&v| v >= ymin && v <= ymax));

    // an upper bound alone, checked against the dense box solve
    let cap = 0.5 * ymax;
    let o = FitOptions { upper: Bound::Value(cap), max_outer: 100, ..opts(lam, 1e-13) };
    let fit = op.fit(&y, &o).unwrap();
    let d = Dense::new(&op);
    let (x_ref, rhs) = d.rhs(&y);
    let lo = vec![f64::NEG_INFINITY; d.k];
    let hi: Vec<f64> = x_ref.iter().map(|x| cap - x).collect();
    let delta = projected_gradient(&d.normal_matrix(lam), &rhs, &lo, &hi, lam, 60_000);
    let want: Vec<f64> = x_ref.iter().zip(&delta).map(|(x, d)| (x + d).min(cap)).collect();
    let e = max_rel(&fit.hval, &want);
    let info = fit.info.unwrap();
    eprintln!("upper bound {cap:.3}: vs projected gradient {e:.1e}, held {}", info.n_clipped_high[0]);
    assert!(e <= 1e-7, "upper-bounded fit vs projected gradient: {e:e}");
    assert!(info.n_clipped_high[0] > 0 && info.n_clipped_low[0] == 0);
}

/// Σ hval = K × the area-weighted mean of the valid samples.
fn conserved_target(op: &PsfResampler<f64>, y: &[f64]) -> f64 {
    let area = op.area();
    let (num, den) =
        y.iter().zip(&area).filter(|(v, _)| !v.is_nan()).fold((0.0, 0.0), |(n, d), (&v, &a)| (n + v * a, d + a));
    num / den * op.k() as f64
}

#[test]
fn conservative_fit_is_the_dense_constrained_minimiser() {
    let lam = 0.02;
    let (op, y) = problem(400, 9, 7);
    let fit = op.fit(&y, &FitOptions { conservative: true, ..opts(lam, 1e-13) }).unwrap();
    let sum: f64 = fit.hval.iter().sum();
    let target = conserved_target(&op, &y);
    assert!((sum - target).abs() <= 1e-12 * target.abs(), "Σ hval {sum} vs {target}");

    // dense KKT: δ = δ0 + ν·w with δ0·A = rhs, w·A = Dx⁻¹·1, ν from the constraint
    let d = Dense::new(&op);
    let lu = d.factor(lam).unwrap();
    let (x_ref, rhs) = d.rhs(&y);
    let delta0 = lu_apply(&lu, &rhs);
    let w = lu_apply(&lu, &d.dx.iter().map(|x| 1.0 / x).collect::<Vec<_>>());
    let base: f64 = x_ref.iter().zip(&delta0).map(|(a, b)| a + b).sum();
    let nu = (target - base) / w.iter().sum::<f64>();
    let want: Vec<f64> = (0..d.k).map(|i| x_ref[i] + delta0[i] + nu * w[i]).collect();
    let e = max_rel(&fit.hval, &want);
    eprintln!("conservative fit vs dense KKT: {e:.1e} (correction ν = {nu:.3e})");
    assert!(e <= 1e-8, "conservative fit vs dense KKT: {e:e}");
    // and it is not the unconstrained fit
    let free = op.fit(&y, &opts(lam, 1e-13)).unwrap();
    assert!(max_rel(&free.hval, &want) > 100.0 * e);
}

#[test]
fn conservative_and_bounded_together() {
    let (op, y) = problem(400, 9, 9);
    let o = FitOptions { conservative: true, lower: Bound::Value(0.0), max_outer: 50, ..opts(0.01, 1e-12) };
    let fit = op.fit(&y, &o).unwrap();
    let sum: f64 = fit.hval.iter().sum();
    let target = conserved_target(&op, &y);
    assert!(fit.hval.iter().all(|&v| v >= 0.0));
    assert!((sum - target).abs() <= 1e-9 * target.abs(), "Σ hval {sum} vs {target}");
}

/// A bound taken from the input is +0 where the row's lowest value is a zero of either sign (the
/// order in which a device or rank meets the zeros must not decide), so a conservative fit held at
/// it holds +0: the fit of a row whose zeros are −0 equals the fit of the row with +0, bit for bit.
#[test]
fn a_zero_bound_from_the_input_is_positive_zero() {
    let (op, y) = problem(400, 9, 9);
    let o = FitOptions { conservative: true, lower: Bound::Input, max_outer: 50, ..opts(0.01, 1e-12) };
    let negative: Vec<f64> = y.iter().map(|&v| if v == 0.0 { -0.0 } else { v }).collect();
    assert!(negative.iter().any(|v| *v == 0.0 && v.is_sign_negative()), "the field has zeros");
    let (a, b) = (op.fit(&y, &o).unwrap(), op.fit(&negative, &o).unwrap());
    assert!(a.info.as_ref().unwrap().n_clipped_low[0] > 0, "cells held at the bound");
    assert!(a.hval.iter().zip(&b.hval).all(|(x, y)| x.to_bits() == y.to_bits()));
    assert!(a.hval.iter().all(|v| !(*v == 0.0 && v.is_sign_negative())));
}

#[test]
fn per_row_bounded_batch_equals_singles() {
    let (op, y) = problem(400, 9, 11);
    let rows: Vec<Vec<f64>> =
        (0..3).map(|r| y.iter().map(|v| v * (1.0 + r as f64) - 0.05 * r as f64).collect()).collect();
    for o in [
        FitOptions { lower: Bound::Value(0.0), stopping: Stopping::PerRow, ..opts(0.01, 1e-10) },
        FitOptions { lower: Bound::Input, conservative: true, stopping: Stopping::PerRow, ..opts(0.01, 1e-10) },
    ] {
        let all: Vec<f64> = rows.concat();
        let batch = op.fit(&all, &o).unwrap();
        for (r, row) in rows.iter().enumerate() {
            let one = op.fit(row, &o).unwrap();
            let k = op.k();
            assert!(
                batch.hval[r * k..(r + 1) * k].iter().zip(&one.hval).all(|(a, b)| a.to_bits() == b.to_bits()),
                "row {r} differs between batch and single"
            );
            let (bi, oi) = (batch.info.as_ref().unwrap(), one.info.as_ref().unwrap());
            assert_eq!(bi.n_clipped_low[r], oi.n_clipped_low[0]);
            assert_eq!(bi.row_iterations[r], oi.row_iterations[0]);
        }
    }
}

/// Cells none of whose linked samples is valid, counted from `hi` (caller order).
fn empty_from_hi(op: &PsfResampler<f64>, y: &[f64]) -> Vec<bool> {
    let mut supported = vec![false; op.k()];
    for (i, links) in op.hi().chunks(op.npt()).enumerate() {
        if !y[i].is_nan() {
            for &h in links.iter().filter(|&&h| h >= 0) {
                supported[h as usize] = true;
            }
        }
    }
    supported.iter().map(|s| !s).collect()
}

#[test]
fn cells_without_valid_samples_are_missing() {
    let (lon, lat) = regional(600, 9, 2.0, 13);
    let op = PsfResampler::<f64>::new(&lon, &lat, &Params::new(9)).unwrap();
    let mid = lon.iter().sum::<f64>() / lon.len() as f64;
    // "land": every sample west of the middle missing in row 0; row 1 complete
    let sea: Vec<f64> =
        lon.iter().zip(&lat).map(|(&x, &y)| if x < mid { f64::NAN } else { 10.0 + (3.0 * y).sin() }).collect();
    let full: Vec<f64> = lon.iter().zip(&lat).map(|(&x, &y)| 10.0 + (3.0 * y).sin() + 0.1 * x).collect();
    let val = [sea.clone(), full].concat();
    let k = op.k();
    let fit = op.fit(&val, &opts(1e-2, 1e-10)).unwrap();
    let info = fit.info.as_ref().unwrap();
    let empty = empty_from_hi(&op, &sea);
    let n_empty = empty.iter().filter(|&&e| e).count();
    assert!(n_empty > 10, "the land mask should leave cells without data ({n_empty})");
    assert_eq!(info.empty_cells, vec![n_empty, 0]);
    for (c, &e) in empty.iter().enumerate() {
        assert_eq!(fit.hval[c].is_nan(), e, "cell {c}");
    }
    assert!(fit.hval[k..].iter().all(|v| v.is_finite()));

    // the reference's behaviour on request: numbers (fitted to the zero-filled land)
    let zero_fill = FitOptions { empty_cells: EmptyCells::Fitted, missing: MissingData::ZeroFill, ..opts(1e-2, 1e-10) };
    let fitted = op.fit(&val, &zero_fill).unwrap();
    assert!(fitted.hval.iter().all(|v| v.is_finite()));
    let land: Vec<f64> = (0..k).filter(|&c| empty[c]).map(|c| fitted.hval[c]).collect();
    eprintln!(
        "{n_empty} of {k} cells without valid samples; the reference-style fit gives them {:.2} .. {:.2} (data 9..11)",
        land.iter().cloned().fold(f64::MAX, f64::min),
        land.iter().cloned().fold(f64::MIN, f64::max)
    );
}

#[test]
fn residual_statistics_match_resample() {
    let (op, y) = problem(400, 9, 15);
    let mut y = y;
    y[7] = f64::NAN;
    let fit: Fit<f64> = op.fit(&y, &opts(1e-2, 1e-10)).unwrap();
    let back = op.resample(&fit.hval).unwrap();
    let d: Vec<f64> = back.iter().zip(&y).filter(|(_, v)| !v.is_nan()).map(|(b, v)| b - v).collect();
    let rms = (d.iter().map(|x| x * x).sum::<f64>() / d.len() as f64).sqrt();
    let max = d.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let info = fit.info.unwrap();
    assert!((info.residual_rms[0] - rms).abs() <= 1e-14 * rms.max(1e-300));
    assert_eq!(info.residual_max[0], max);
}

fn param_name(e: Error) -> &'static str {
    match e {
        Error::InvalidParameter { name, .. } => name,
        other => panic!("expected InvalidParameter, got {other:?}"),
    }
}

#[test]
fn bad_bounds_are_typed_errors() {
    let (op, y) = problem(300, 9, 17);
    let base = opts(1e-2, 1e-8);
    let e = op.fit(&y, &FitOptions { lower: Bound::Value(f64::NAN), ..base.clone() }).unwrap_err();
    assert_eq!(param_name(e), "lower");
    let e = op.fit(&y, &FitOptions { upper: Bound::Value(f64::NAN), ..base.clone() }).unwrap_err();
    assert_eq!(param_name(e), "upper");
    let e = op.fit(&y, &FitOptions { lower: Bound::Value(2.0), upper: Bound::Value(1.0), ..base.clone() }).unwrap_err();
    assert_eq!(param_name(e), "lower");
    let e = op.fit(&y, &FitOptions { lower: Bound::Value(f64::INFINITY), ..base.clone() }).unwrap_err();
    assert_eq!(param_name(e), "lower");
    let e = op.fit(&y, &FitOptions { lower: Bound::Value(0.0), max_outer: 0, ..base.clone() }).unwrap_err();
    assert_eq!(param_name(e), "max_outer");
    // a row whose valid samples lie above a fixed upper bound cannot satisfy lower = "input"
    let e = op.fit(&y, &FitOptions { lower: Bound::Input, upper: Bound::Value(-1.0), ..base.clone() }).unwrap_err();
    assert_eq!(param_name(e), "lower");
    // ±infinity is no bound; an equal pair pins every cell
    let f = op.fit(&y, &FitOptions { lower: Bound::Value(f64::NEG_INFINITY), ..base.clone() }).unwrap();
    assert!(f.hval.iter().all(|v| v.is_finite()));
    let f = op.fit(&y, &FitOptions { lower: Bound::Value(0.25), upper: Bound::Value(0.25), ..base }).unwrap();
    assert!(f.hval.iter().all(|&v| v == 0.25));
}

#[test]
fn restricted_output_and_nearest_fill() {
    use healpix_psf::geometry::unit_vector;
    let level = 10;
    let (lon, lat) = regional(1500, level, 1.5, 21);
    // wide kernel, few links: many kept cells get no or little support
    let base = Params { npt: 4, sigma_m: Some(15_000.0), ..Params::new(level) };
    let full = PsfResampler::<f64>::new(&lon, &lat, &base).unwrap();
    // request every cell of a lattice over the samples' box (kept cells no sample links to among
    // them), in descending order with repeats, plus one far away (never kept)
    let far = full.grid().cell(lon[0] + 90.0, 0.0).unwrap();
    let (x0, x1) = lon.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let (y0, y1) = lat.iter().fold((f64::MAX, f64::MIN), |(a, b), &y| (a.min(y), b.max(y)));
    let (mut glon, mut glat) = (Vec::new(), Vec::new());
    for i in 0..=100 {
        for j in 0..=100 {
            glon.push(x0 - 0.2 + (x1 - x0 + 0.4) * i as f64 / 100.0);
            glat.push(y0 - 0.2 + (y1 - y0 + 0.4) * j as f64 / 100.0);
        }
    }
    let mut want = full.grid().cells(&glon, &glat).unwrap();
    want.push(far);
    want.sort_unstable_by(|a, b| b.cmp(a));
    let p = Params { out_cell_ids: Some(want.clone()), ..base.clone() };
    let op = PsfResampler::<f64>::new(&lon, &lat, &p).unwrap();
    assert!(op.cell_ids().iter().all(|c| want.contains(c)) && op.cell_index(far).is_none());
    let bad = op.uncomputable_cells().to_vec();
    assert!(!bad.is_empty(), "this layout should leave requested cells without support");
    let val: Vec<f64> = lon.iter().zip(&lat).map(|(x, y)| x.sin() + y.cos()).collect();
    let fit = op.fit(&val, &opts(1e-2, 1e-10)).unwrap();
    for c in 0..op.k() {
        assert_eq!(fit.hval[c].is_nan(), bad.contains(&(c as u32)), "cell {c}");
    }

    // filled from the nearest sample: checked by brute force over all samples
    let filled_op =
        PsfResampler::<f64>::new(&lon, &lat, &Params { fill_missing_out_cells: true, ..p.clone() }).unwrap();
    let filled = filled_op.fit(&val, &opts(1e-2, 1e-10)).unwrap();
    let xyz: Vec<[f64; 3]> = lon.iter().zip(&lat).map(|(&x, &y)| unit_vector(x.to_radians(), y.to_radians())).collect();
    for &c in &bad {
        let (clon, clat) = filled_op.grid().center(filled_op.cell_ids()[c as usize]).unwrap();
        let cx = unit_vector(clon.to_radians(), clat.to_radians());
        let d2 = |a: &[f64; 3]| (0..3).map(|t| (a[t] - cx[t]).powi(2)).sum::<f64>();
        let nearest = (0..xyz.len()).min_by(|&i, &j| d2(&xyz[i]).total_cmp(&d2(&xyz[j])).then(i.cmp(&j))).unwrap();
        assert_eq!(filled.hval[c as usize], val[nearest], "cell {c}");
    }
    // the other cells are the same fit
    for c in (0..op.k()).filter(|c| !bad.contains(&(*c as u32))) {
        assert_eq!(filled.hval[c].to_bits(), fit.hval[c].to_bits());
    }
}

#[test]
fn bad_out_cell_ids_are_typed_errors() {
    let (lon, lat) = regional(300, 9, 2.0, 23);
    let p = |ids: Vec<u64>| Params { out_cell_ids: Some(ids), ..Params::new(9) };
    let name = |r: healpix_psf::Result<PsfResampler<f64>>| param_name(r.unwrap_err());
    assert_eq!(name(PsfResampler::new(&lon, &lat, &p(vec![]))), "out_cell_ids");
    assert_eq!(name(PsfResampler::new(&lon, &lat, &p(vec![12 * 4u64.pow(9)]))), "out_cell_ids");
    // a cell far from every sample never passes the keep threshold
    let far =
        healpix_psf::geometry::Grid::new(9, true, Default::default()).unwrap().cell(lon[0] + 180.0, -lat[0]).unwrap();
    assert_eq!(name(PsfResampler::new(&lon, &lat, &p(vec![far]))), "out_cell_ids");
}

/// A field with a gap (a band of missing samples across the region, so that some cells have no
/// valid sample).
fn with_band(op: &PsfResampler<f64>, y: &[f64], lon: &[f64]) -> Vec<f64> {
    let mid = lon.iter().sum::<f64>() / lon.len() as f64;
    let v: Vec<f64> = y.iter().zip(lon).map(|(&v, &x)| if (x - mid).abs() < 0.3 { f64::NAN } else { v }).collect();
    assert!(empty_from_hi(op, &v).iter().any(|&e| e));
    v
}

#[test]
fn per_row_missing_data_bounded_matches_projected_gradient() {
    let lam = 0.05;
    let (lon, lat) = regional(500, 9, 2.0, 21);
    let op = PsfResampler::<f64>::new(&lon, &lat, &Params::new(9)).unwrap();
    let y = with_band(&op, &blobs(&lon, &lat, 22), &lon);
    let o = FitOptions { lower: Bound::Value(0.0), max_outer: 100, ..opts(lam, 1e-13) };
    let fit = op.fit(&y, &o).unwrap();
    let info = fit.info.as_ref().unwrap();
    assert!(info.converged[0] && fit.hval.iter().all(|&v| v.is_nan() || v >= 0.0));
    let d = Dense::new(&op);
    let p = d.per_row(&y, lam);
    let lo: Vec<f64> = p.cells.iter().map(|&c| -p.x_ref[c]).collect();
    let hi = vec![f64::INFINITY; p.cells.len()];
    let delta = projected_gradient(&p.a, &p.rhs, &lo, &hi, lam, 60_000);
    let mut want = vec![f64::NAN; d.k];
    for (i, &c) in p.cells.iter().enumerate() {
        want[c] = (p.x_ref[c] + delta[i]).max(0.0);
    }
    for (c, (g, w)) in fit.hval.iter().zip(&want).enumerate() {
        assert_eq!(g.is_nan(), w.is_nan(), "cell {c}");
    }
    let finite = |v: &[f64]| v.iter().copied().filter(|x| !x.is_nan()).collect::<Vec<f64>>();
    let e = max_rel(&finite(&fit.hval), &finite(&want));
    let held_dense = want.iter().filter(|&&v| v == 0.0).count();
    eprintln!(
        "per-row missing data, bounded: vs projected gradient {e:.1e}; held {} (dense {held_dense}), {} without data",
        info.n_clipped_low[0],
        d.k - p.cells.len()
    );
    assert!(e <= 1e-7, "{e:e}");
    // which cells sit exactly at 0 is decided by rounding on this field (zero background): every
    // cell held here is at 0 up to rounding in the dense solve, and every cell at 0 there is held
    let scale = want.iter().filter(|v| !v.is_nan()).fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(fit.hval.iter().zip(&want).all(|(&g, &w)| g != 0.0 || w <= 1e-9 * scale));
    assert!(held_dense <= info.n_clipped_low[0] + 2);
}

#[test]
fn per_row_missing_data_conservative_matches_dense_kkt() {
    let lam = 0.02;
    let (lon, lat) = regional(500, 9, 2.0, 23);
    let op = PsfResampler::<f64>::new(&lon, &lat, &Params::new(9)).unwrap();
    let y = with_band(&op, &blobs(&lon, &lat, 24), &lon);
    let fit = op.fit(&y, &FitOptions { conservative: true, ..opts(lam, 1e-13) }).unwrap();
    // the mean of the cells with data is the area-weighted mean of the valid samples
    let cells: Vec<f64> = fit.hval.iter().copied().filter(|v| !v.is_nan()).collect();
    let mean = conserved_target(&op, &y) / op.k() as f64;
    let got = cells.iter().sum::<f64>() / cells.len() as f64;
    assert!((got - mean).abs() <= 1e-12 * mean.abs(), "{got} vs {mean}");
    // dense KKT on the row's problem: δ = δ0 + ν·w, δ0·A = rhs, w·A = Dx⁻¹·1 (its cells)
    let d = Dense::new(&op);
    let p = d.per_row(&y, lam);
    let kk = p.cells.len();
    let mut at = vec![0.0; kk * kk];
    for i in 0..kk {
        for j in 0..kk {
            at[j * kk + i] = p.a[i * kk + j];
        }
    }
    let lu = common::dense::lu_factor(at, kk).unwrap();
    let delta0 = lu_apply(&lu, &p.rhs);
    let w = lu_apply(&lu, &p.cells.iter().map(|&c| 1.0 / d.dx[c]).collect::<Vec<_>>());
    let base: f64 = p.cells.iter().zip(&delta0).map(|(&c, d)| p.x_ref[c] + d).sum();
    let nu = (mean * kk as f64 - base) / w.iter().sum::<f64>();
    let want: Vec<f64> = (0..kk).map(|i| p.x_ref[p.cells[i]] + delta0[i] + nu * w[i]).collect();
    let e = max_rel(&cells, &want);
    eprintln!("per-row missing data, conservative: vs dense KKT {e:.1e} (ν = {nu:.3e})");
    assert!(e <= 1e-8, "{e:e}");
    // with a bound as well: inside the box, the mean kept
    let o = FitOptions { conservative: true, lower: Bound::Value(0.0), max_outer: 50, ..opts(0.01, 1e-12) };
    let both = op.fit(&y, &o).unwrap();
    let cells: Vec<f64> = both.hval.iter().copied().filter(|v| !v.is_nan()).collect();
    assert!(cells.iter().all(|&v| v >= 0.0) && cells.len() == kk);
    let got = cells.iter().sum::<f64>() / cells.len() as f64;
    assert!((got - mean).abs() <= 1e-9 * mean.abs(), "bounded: {got} vs {mean}");
}
