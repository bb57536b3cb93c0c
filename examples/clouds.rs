//! Per-row missing data on real data: NEMO ORCA1 sea-surface temperature (the bundled file) in B
//! rows, each with its own synthetic cloud mask — discs of 150–400 km placed at random (seeded)
//! until 20–40 % of the ocean points of the row are hidden — fitted with the reference's
//! zero-filling (`MissingData::ZeroFill`) and with the row's missing points left out of its problem
//! (`MissingData::PerRow`, the default). Each row's field is compared with the fit of the complete
//! data, on the cells that have a number in both.
//!
//! ```text
//! cargo run --release --features cli --example clouds -- [FILE.nc] [--rows 8] [--level 6] [--lam 1e-2] [--f32]
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use common::orca::{clouds, field_error, implausible};
use common::synth::Rng;
use healpix_psf::{valid_samples, FitOptions, MissingData, Params, PsfResampler, Real};
use std::time::Instant;

fn read(path: &str) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let f = netcdf::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let get = |name: &str| -> Vec<f64> {
        f.variable(name).unwrap_or_else(|| panic!("{path}: no {name}")).get_values::<f64, _>(..).expect(name)
    };
    let sst = get("tos").into_iter().map(|v| if v == 1e20f32 as f64 { f64::NAN } else { v }).collect();
    (get("nav_lon"), get("nav_lat"), sst)
}

fn run<F: Real>(path: &str, rows: usize, level: u8, lam: f64) -> Result<(), healpix_psf::Error> {
    let (lon, lat, sst) = read(path);
    let n = sst.len();
    // the operator of the ocean points (land is missing in every row)
    let ocean = valid_samples(&sst, n)?;
    let op = PsfResampler::<F>::new(&lon, &lat, &Params { sample_mask: Some(ocean.clone()), ..Params::new(level) })?;
    println!(
        "{path}: {n} points, {} ocean; level {level}, K = {} cells, lam {lam}, {}",
        ocean.iter().filter(|&&o| o).count(),
        op.k(),
        F::NAME
    );
    let base = FitOptions::<F> { lam, return_info: true, ..FitOptions::default() };
    let to_f = |v: &[f64]| v.iter().map(|&x| F::from_f64(x)).collect::<Vec<F>>();
    let to_f64 = |v: &[F]| v.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
    let full = to_f64(&op.fit(&to_f(&sst), &base)?.hval);

    // B rows of the same field, each under its own clouds
    let mut rng = Rng::new(2026);
    let mut val = Vec::with_capacity(rows * n);
    let mut hidden = Vec::new();
    for j in 0..rows {
        let (mask, got) = clouds(&lon, &lat, &ocean, rng.range(0.2, 0.4), 100 + j as u64);
        hidden.push(got);
        val.extend(sst.iter().zip(&mask).map(|(&v, &c)| if c { f64::NAN } else { v }));
    }
    let val = to_f(&val);
    let k = op.k();
    println!(
        "{:>4} {:>7} | {:>26} | {:>26} | {:>9}",
        "row", "clouded", "zero-filled: RMS / max °C", "per row: RMS / max °C", "cells"
    );
    let mut results = Vec::new();
    for missing in [MissingData::ZeroFill, MissingData::PerRow] {
        let t = Instant::now();
        let fit = op.fit(&val, &FitOptions { missing, ..base.clone() })?;
        let time = t.elapsed().as_secs_f64();
        let info = fit.info.expect("asked for");
        let errors: Vec<(f64, f64, usize)> =
            (0..rows).map(|j| field_error(&to_f64(&fit.hval[j * k..(j + 1) * k]), &full)).collect();
        results.push((errors, time, info.iterations, implausible(&to_f64(&fit.hval))));
    }
    let ((zf, tz, iz, bz), (pr, tp, ip, bp)) = (&results[0], &results[1]);
    for j in 0..rows {
        println!(
            "{j:>4} {:>6.1} % | {:>12.4} / {:>11.3} | {:>12.4} / {:>11.3} | {:>9}",
            100.0 * hidden[j],
            zf[j].0,
            zf[j].1,
            pr[j].0,
            pr[j].1,
            pr[j].2
        );
    }
    let mean =
        |e: &[(f64, f64, usize)], pick: fn(&(f64, f64, usize)) -> f64| e.iter().map(pick).sum::<f64>() / e.len() as f64;
    println!(
        "mean | {:>6.1} % | {:>12.4} / {:>11.3} | {:>12.4} / {:>11.3} |",
        100.0 * hidden.iter().sum::<f64>() / rows as f64,
        mean(zf, |e| e.0),
        mean(zf, |e| e.1),
        mean(pr, |e| e.0),
        mean(pr, |e| e.1)
    );
    println!(
        "fit of the {rows} rows: zero-filled {tz:.3} s ({iz} iterations, {bz} cells outside [-3, 35] °C), per row {tp:.3} s \
         ({ip} iterations, {bp} outside)"
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str, default: &str| -> String {
        args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.into())
    };
    let path =
        args.first().filter(|a| !a.starts_with("--")).cloned().unwrap_or_else(|| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/nemo_orca1_sst_2015-01.nc").to_string()
        });
    let rows: usize = value("--rows", "8").parse().expect("--rows");
    let level: u8 = value("--level", "6").parse().expect("--level");
    let lam: f64 = value("--lam", "1e-2").parse().expect("--lam");
    let r = if args.iter().any(|a| a == "--f32") {
        run::<f32>(&path, rows, level, lam)
    } else {
        run::<f64>(&path, rows, level, lam)
    };
    if let Err(e) = r {
        eprintln!("clouds: {e}");
        std::process::exit(1);
    }
}
