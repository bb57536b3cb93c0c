//! Real ocean model output: NEMO ORCA sea temperature (38–45 % land) on its tripolar grid.
//! Measures the area estimates against the grid's own cell polygons and the land-mask operator
//! (`sample_mask`) against land treated as missing.
//!
//! ```text
//! cargo run --release --example orca -- tests/fixtures/orca2_grid 6 1e-2
//! # ORCA1: python scripts/orca_fixture.py .../NEMO/nemo_1m_20150101-20150201_grid-T.nc /tmp/orca1
//! cargo run --release --example orca -- /tmp/orca1 6 1e-2
//! ```
//! The directory holds lon/lat/sst/area `.f32` files as written by `scripts/orca_fixture.py`.

use healpix_psf::{valid_samples, Area, Bound, EmptyCells, FitOptions, Params, PsfResampler};
use std::time::Instant;

fn read(dir: &str, name: &str) -> Vec<f64> {
    let raw = std::fs::read(format!("{dir}/{name}.f32")).unwrap_or_else(|e| panic!("{dir}/{name}.f32: {e}"));
    raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect()
}

fn main() -> Result<(), healpix_psf::Error> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map_or("tests/fixtures/orca2_grid", String::as_str);
    let level: u8 = args.get(2).map_or(6, |s| s.parse().expect("level"));
    let lam: f64 = args.get(3).map_or(1e-2, |s| s.parse().expect("lam"));
    let (lon, lat, sst, poly) = (read(dir, "lon"), read(dir, "lat"), read(dir, "sst"), read(dir, "area"));
    let n = lon.len();
    let ocean: Vec<usize> = (0..n).filter(|&i| sst[i].is_finite()).collect();
    println!("{dir}: N = {n}, {} ocean points; level {level}, lam {lam}", ocean.len());

    // areas: polygon area shared among repeated positions (the north fold)
    let mut count = std::collections::HashMap::new();
    (0..n).for_each(|i| *count.entry((lon[i].to_bits(), lat[i].to_bits())).or_insert(0.0) += 1.0);
    let exact: Vec<f64> = (0..n).map(|i| poly[i] / count[&(lon[i].to_bits(), lat[i].to_bits())]).collect();
    let mean = |w: &[f64]| {
        let s: f64 = ocean.iter().map(|&i| w[i] * sst[i]).sum();
        s / ocean.iter().map(|&i| w[i]).sum::<f64>()
    };
    println!("area-weighted mean SST from the cell polygons: {:.4} °C", mean(&exact));
    for (name, area) in [("spacing", Area::Spacing), ("reference", Area::ReferenceAuto), ("uniform", Area::Uniform)] {
        let a = PsfResampler::<f64>::new(&lon, &lat, &Params { area, ..Params::new(level) })?.area();
        let mut r: Vec<f64> = ocean.iter().map(|&i| a[i] / exact[i]).collect();
        r.sort_by(f64::total_cmp);
        let med = r[r.len() / 2];
        let within = r.iter().filter(|&&x| (x / med - 1.0).abs() <= 0.01).count() as f64 / r.len() as f64;
        println!(
            "  {name:9}: ocean area / polygon area (÷ median) in [{:.3e}, {:.3e}], {:.2} % within 1 %; mean SST {:.4} °C",
            r[0] / med,
            r[r.len() - 1] / med,
            100.0 * within,
            mean(&a)
        );
    }

    let implausible = |h: &[f64]| h.iter().filter(|v| v.is_finite() && !(-3.0..=35.0).contains(*v)).count();
    let t = Instant::now();
    let all = PsfResampler::<f64>::new(&lon, &lat, &Params::new(level))?;
    let t_all = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mask = Some(valid_samples(&sst, n)?);
    let sea = PsfResampler::<f64>::new(&lon, &lat, &Params { sample_mask: mask, ..Params::new(level) })?;
    let t_sea = t.elapsed().as_secs_f64();
    println!("operator: all samples K = {} ({t_all:.3} s), ocean only K = {} ({t_sea:.3} s)", all.k(), sea.k());
    let o = FitOptions { lam, return_info: true, ..FitOptions::default() };
    let cases = [
        ("all samples, reference (land = 0)", &all, FitOptions { empty_cells: EmptyCells::Fitted, ..o.clone() }),
        ("all samples, land-only cells NaN", &all, o.clone()),
        ("ocean only", &sea, o.clone()),
        ("ocean only, bounded by the data", &sea, FitOptions { lower: Bound::Input, upper: Bound::Input, ..o.clone() }),
    ];
    for (name, op, opts) in cases {
        let t = Instant::now();
        let f = op.fit(&sst, &opts)?;
        let el = t.elapsed().as_secs_f64();
        let i = f.info.as_ref().expect("info");
        let (lo, hi) =
            f.hval.iter().filter(|v| v.is_finite()).fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        println!(
            "  {name:34}: {:5} cells outside [-3, 35] °C, range [{lo:.2}, {hi:.2}], {} NaN cells, residual rms {:.4} °C, \
             {} iterations, {el:.3} s",
            implausible(&f.hval),
            f.hval.iter().filter(|v| v.is_nan()).count(),
            i.residual_rms[0],
            i.iterations
        );
    }
    Ok(())
}
