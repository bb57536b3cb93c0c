//! The main job: build the PSF operator for a cloud of samples and report what was built and how
//! long each stage took.
//!
//! ```text
//! cargo run --release --example demo -- [--n 200000] [--level 11] [--npt 9] [--dtype f32|f64] [--threads T]
//! ```
//! The samples are uniform on the sphere in a box centred on 8°E 45°N holding ~1.5 samples per cell.

#[path = "../tests/common/mod.rs"]
mod common;

use healpix_psf::{Params, PsfResampler, Real};
use std::time::Instant;

/// The value after `flag`, parsed as a number (2e5 is accepted), or `default`.
fn num(args: &[String], flag: &str, default: f64) -> f64 {
    match args.iter().position(|a| a == flag) {
        None => default,
        Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("demo: {flag} needs a number");
            std::process::exit(2)
        }),
    }
}

fn run<F: Real>(lon: &[f64], lat: &[f64], params: &Params) -> Result<(), healpix_psf::Error> {
    let t0 = Instant::now();
    let op = PsfResampler::<F>::new(lon, lat, params)?;
    let total = t0.elapsed().as_secs_f64();
    let info = op.build_info();
    let links_per_cell = op.nnz() as f64 / op.k() as f64;
    let dx = op.cell_weight();
    let (dmin, dmax) = dx.iter().fold((f64::INFINITY, 0.0f64), |(a, b), w| (a.min(w.to_f64()), b.max(w.to_f64())));
    println!("built the PSF operator ({}) in {:.3} s", F::NAME, total);
    println!("  samples N          {:>12}", op.n());
    println!("  level / nside      {:>12}  / {}", op.level(), 1u64 << op.level());
    println!("  kernel scale s     {:>12.1} m  (FWHM {:.1} m)", op.sigma_m(), op.sigma_m() * (2.0 * 2f64.ln()).sqrt());
    println!("  sample cells       {:>12}", info.n_sample_cells);
    println!("  candidate cells    {:>12}", info.n_candidates);
    println!("  kept (≥ threshold) {:>12}", info.n_kept);
    println!("  cells K            {:>12}  ({:.2} per sample)", op.k(), op.k() as f64 / op.n() as f64);
    println!("  links              {:>12}  ({} per sample, {:.1} per cell)", op.nnz(), op.npt(), links_per_cell);
    println!("  partial rows       {:>12}  ({} empty)", info.n_partial_rows, info.n_empty_rows);
    println!("  cell weight Dx     {:>12.3} .. {:.3}", dmin, dmax);
    println!(
        "stage times (s): hash {:.3}, keep {:.3}, search {:.3}, assemble {:.3}",
        info.hash_s, info.keep_s, info.search_s, info.assemble_s
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = num(&args, "--n", 2e5) as usize;
    let level = num(&args, "--level", 11.0) as u8;
    let npt = num(&args, "--npt", 9.0) as usize;
    let threads = num(&args, "--threads", 0.0) as usize;
    let dtype = args.iter().position(|a| a == "--dtype").and_then(|i| args.get(i + 1)).map_or("f32", |s| s.as_str());
    let t0 = Instant::now();
    let (lon, lat) = common::synth::regional(n, level, 1.5, 1);
    println!("generated {n} samples around 8°E 45°N in {:.3} s", t0.elapsed().as_secs_f64());
    let params = Params { npt, num_threads: threads, ..Params::new(level) };
    let r = match dtype {
        "f32" => run::<f32>(&lon, &lat, &params),
        "f64" => run::<f64>(&lon, &lat, &params),
        d => {
            eprintln!("demo: --dtype {d}: use f32 or f64");
            std::process::exit(2)
        }
    };
    if let Err(e) = r {
        eprintln!("demo: {e}");
        std::process::exit(1);
    }
}
