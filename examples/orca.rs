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

#[path = "../tests/common/mod.rs"]
mod common;

use common::orca::{fixture_dir, implausible, Orca};
use healpix_psf::{valid_samples, Area, Bound, EmptyCells, FitOptions, MissingData, Params, PsfResampler};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), healpix_psf::Error> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map_or_else(fixture_dir, PathBuf::from);
    let level: u8 = args.get(2).map_or(6, |s| s.parse().expect("level"));
    let lam: f64 = args.get(3).map_or(1e-2, |s| s.parse().expect("lam"));
    let o = Orca::read(&dir);
    let (lon, lat, sst) = (&o.lon, &o.lat, &o.sst);
    let n = lon.len();
    println!("{}: N = {n}, {} ocean points; level {level}, lam {lam}", dir.display(), o.ocean().count());

    // areas against the cell polygons (shared among repeated positions: the north fold)
    println!("area-weighted mean SST from the cell polygons: {:.4} °C", o.weighted_mean(&o.exact));
    for (name, area) in [("spacing", Area::Spacing), ("reference", Area::ReferenceAuto), ("uniform", Area::Uniform)] {
        let a = PsfResampler::<f64>::new(lon, lat, &Params { area, ..Params::new(level) })?.area();
        let r = o.ratios(&a);
        let within = r.iter().filter(|&&x| (x - 1.0).abs() <= 0.01).count() as f64 / r.len() as f64;
        println!(
            "  {name:9}: ocean area / polygon area (÷ median) in [{:.3e}, {:.3e}], {:.2} % within 1 %; mean SST {:.4} °C",
            r[0],
            r[r.len() - 1],
            100.0 * within,
            o.weighted_mean(&a)
        );
    }

    let t = Instant::now();
    let all = PsfResampler::<f64>::new(lon, lat, &Params::new(level))?;
    let t_all = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mask = Some(valid_samples(sst, n)?);
    let sea = PsfResampler::<f64>::new(lon, lat, &Params { sample_mask: mask, ..Params::new(level) })?;
    let t_sea = t.elapsed().as_secs_f64();
    println!("operator: all samples K = {} ({t_all:.3} s), ocean only K = {} ({t_sea:.3} s)", all.k(), sea.k());
    let base = FitOptions { lam, return_info: true, ..FitOptions::default() };
    let zero = FitOptions { missing: MissingData::ZeroFill, ..base.clone() };
    let cases = [
        ("all samples, reference (land = 0)", &all, FitOptions { empty_cells: EmptyCells::Fitted, ..zero.clone() }),
        ("all samples, land-only cells NaN", &all, zero),
        ("all samples, land left out per row", &all, base.clone()),
        ("ocean only", &sea, base.clone()),
        ("ocean only, bounded by the data", &sea, FitOptions { lower: Bound::Input, upper: Bound::Input, ..base }),
    ];
    for (name, op, opts) in cases {
        let t = Instant::now();
        let f = op.fit(sst, &opts)?;
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
