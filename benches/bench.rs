//! Construction benchmark: prints one JSON line with what it measured.
//!
//! ```text
//! cargo run --release --example bench -- --n 1000000 --level 12 --npt 9 --dtype f32 \
//!     [--batch B --iters I] [--device cpu] [--threads T] [--density 1.5] [--seed S] [--reps R] [--verbose]
//!     [--constrained]   (also times plain, bounded, conservative and bounded+conservative full fits)
//!     [--gaps G]        (each row misses about the fraction G of its samples, in patches: fits with
//!                        per-row missing data)
//!     [--grid]          (the samples on a regular longitude/latitude grid over the same box instead:
//!                        the automatic areas are then estimated from the spacing, `area_s`)
//!     [--keep-blocks]   (the operator keeps its working blocks from call to call,
//!                        `PsfResampler::keep_blocks`, and each result handed back once checked,
//!                        `PsfResampler::recycle`, as the C ABI does: the best of `--reps` ≥ 2 then
//!                        times calls that reuse the blocks of the one before; `kept_mb` what it held
//!                        at the end)
//!     [--save]          (also times save_file and load_file of the operator in the temporary
//!                        folder: `save_s`, `load_s`, `file_bytes_per_sample`; the loaded
//!                        operator's M is checked equal to the built one's)
//! ```
//! Samples: uniform on the sphere in a box centred on 8°E 45°N holding ~density samples per cell
//! (as the reference generator's `--region regional --density 1.5`). `build_s` is the best of
//! `--reps` constructions (default 1); `fit_s` the best of `--reps` fits of `--batch` rows with
//! `--iters` CG iterations (lam 0, no early stop), `setup_s` that of a fit with no iteration, and
//! `iter_ms = (fit_s − setup_s)/iters`, `resample_ms` the best of `--reps` resamples of B constant
//! fields; `peak_rss_mb` is the process's high-water mark (VmHWM); `host_bytes_per_sample` and
//! `device_bytes_per_sample` what the operator holds once built (`PsfResampler::memory`).
//!
//! Floors (with `--iters`): `iter_bytes` and `setup_bytes` are the bytes an iteration and the
//! setup must move at least (the model is in `floor_bytes`); on the CPU `copy_gbs` is this
//! machine's measured copy rate with the same threads (bytes read + written per second, pages
//! already made, best of 5), and `iter_floor_ms`, `setup_floor_ms` the bytes at that rate.

#[path = "../tests/common/mod.rs"]
mod common;

use healpix_psf::{Device, FitOptions, Params, PsfResampler, Real};
use std::time::Instant;

struct Args {
    n: usize,
    level: u8,
    npt: usize,
    dtype: String,
    batch: usize,
    iters: usize,
    device: String,
    threads: usize,
    density: f64,
    seed: u64,
    reps: usize,
    verbose: bool,
    constrained: bool,
    gaps: f64,
    grid: bool,
    save: bool,
    keep_blocks: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        n: 100_000,
        level: 11,
        npt: 9,
        dtype: "f32".into(),
        batch: 1,
        iters: 100,
        device: "cpu".into(),
        threads: 0,
        density: 1.5,
        seed: 0,
        reps: 1,
        verbose: false,
        constrained: false,
        gaps: 0.0,
        grid: false,
        save: false,
        keep_blocks: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        if flag == "--constrained" {
            a.constrained = true;
            continue;
        }
        if flag == "--verbose" {
            a.verbose = true;
            continue;
        }
        if flag == "--save" {
            a.save = true;
            continue;
        }
        if flag == "--keep-blocks" {
            a.keep_blocks = true;
            continue;
        }
        if flag == "--grid" {
            a.grid = true;
            continue;
        }
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {v}: {e}");
        match flag.as_str() {
            "--n" => a.n = v.parse::<f64>().map_err(|e| bad(&e))? as usize,
            "--level" => a.level = v.parse().map_err(|e| bad(&e))?,
            "--npt" => a.npt = v.parse().map_err(|e| bad(&e))?,
            "--dtype" => a.dtype = v.clone(),
            "--batch" => a.batch = v.parse().map_err(|e| bad(&e))?,
            "--iters" => a.iters = v.parse().map_err(|e| bad(&e))?,
            "--device" => a.device = v.clone(),
            "--threads" => a.threads = v.parse().map_err(|e| bad(&e))?,
            "--density" => a.density = v.parse().map_err(|e| bad(&e))?,
            "--seed" => a.seed = v.parse().map_err(|e| bad(&e))?,
            "--reps" => a.reps = v.parse().map_err(|e| bad(&e))?,
            "--gaps" => a.gaps = v.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(a)
}

/// The bytes one CG iteration and the setup of a fit (no sample missing, no bound) must move at
/// least, for b rows: every block read or written once, the links once per product.
///
/// Iteration: `v·MT` reads p (K×b) and the links by sample (N·npt index + value) and writes u
/// (N×b); `u·M + λp` with `<p, Ap>` reads u, the links by cell (nnz index + value, K+1 offsets) and
/// p and writes Ap; the update reads x, r, p, Ap and writes x, r; the direction reads r, p and
/// writes p: 12 K×b blocks, 2 N×b blocks and both link layouts.
/// Setup: the caller's rows read and the N×b block written; x_ref = y0·M (N×b and links in, K×b
/// out); y −= x_ref·MT (K×b and links in, N×b read and written); the right-hand side (as x_ref);
/// the CG's start (⟨r, r⟩ reads r, x zeroed, p copied from r: 4 K×b); x_ref + x scaled (3 K×b); the
/// result back to the caller's rows (2 K×b).
fn floor_bytes<F: Real>(n: usize, k: usize, nnz: usize, npt: usize, b: usize) -> (f64, f64) {
    let f = std::mem::size_of::<F>() as f64;
    let (nb, kb) = ((n * b) as f64 * f, (k * b) as f64 * f);
    let by_sample = (n * npt) as f64 * (4.0 + f);
    let by_cell = nnz as f64 * (4.0 + f) + (k + 1) as f64 * 8.0;
    let iter = 12.0 * kb + 2.0 * nb + by_sample + by_cell;
    let setup = 2.0 * nb
        + (nb + by_cell + kb)
        + (kb + by_sample + 2.0 * nb)
        + (nb + by_cell + kb)
        + 4.0 * kb
        + 3.0 * kb
        + 2.0 * kb;
    (iter, setup)
}

/// This machine's copy rate with `threads` threads: bytes read + written per second copying a
/// 256 MiB block whose pages exist (best of 5).
fn copy_gbs(threads: usize) -> f64 {
    let len = 1 << 25; // f64 values
    let (src, mut dst) = (vec![1.0f64; len], vec![0.0f64; len]);
    let part = len.div_ceil(threads.max(1));
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t0 = Instant::now();
        std::thread::scope(|sc| {
            for (d, s) in dst.chunks_mut(part).zip(src.chunks(part)) {
                sc.spawn(move || d.copy_from_slice(s));
            }
        });
        best = best.min(t0.elapsed().as_secs_f64());
    }
    assert_eq!(dst[len - 1], 1.0);
    2.0 * (len * 8) as f64 / best / 1e9
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn run<F: Real>(a: &Args) -> Result<(), healpix_psf::Error> {
    let (lon, lat) = if a.grid {
        common::synth::regional_grid(a.n, a.level, a.density)
    } else {
        common::synth::regional(a.n, a.level, a.density, a.seed)
    };
    let rss_data = peak_rss_mb();
    let device = match a.device.as_str() {
        "cpu" => Device::Cpu,
        d => Device::Cuda(d.trim_start_matches("cuda").trim_start_matches(':').parse().unwrap_or(0)),
    };
    let params = Params { npt: a.npt, num_threads: a.threads, device, verbose: a.verbose, ..Params::new(a.level) };
    let mut best = f64::INFINITY;
    let mut op = None;
    for _ in 0..a.reps.max(1) {
        drop(op.take());
        let t0 = Instant::now();
        op = Some(PsfResampler::<F>::new(&lon, &lat, &params)?);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    let op = op.expect("built");
    op.keep_blocks(a.keep_blocks);
    let mem = op.memory();

    // The solve: B rows of a smooth field with small-scale structure; `iters` CG iterations are timed
    // as the difference between a fit with max_iter = iters and one with max_iter = 0 (the setup:
    // x_ref and the right-hand side), so iter_ms is the cost of one iteration alone.
    let (n, b) = (op.n(), a.batch);
    let mut val = Vec::with_capacity(n * b);
    for j in 0..b {
        val.extend(lon.iter().zip(&lat).map(|(x, y)| {
            F::from_f64(10.0 + (0.7 * x + 0.1 * j as f64).sin() + (0.5 * y).cos() + 0.3 * (40.0 * x + 30.0 * y).sin())
        }));
    }
    // gaps: patches of a few cells (a different pattern in each row) where the row has no value
    let mut missing = 0usize;
    if a.gaps > 0.0 {
        let cut = (1.0 - 2.0 * a.gaps).clamp(-1.0, 1.0);
        for (j, row) in val.chunks_exact_mut(n).enumerate() {
            for ((v, x), y) in row.iter_mut().zip(&lon).zip(&lat) {
                let w = (9.0 * x + 1.3 * j as f64).sin() * (7.0 * y - 0.7 * j as f64).cos();
                if w > cut {
                    *v = F::from_f64(f64::NAN);
                    missing += 1;
                }
            }
        }
    }
    let opts = |max_iter| FitOptions::<F> { max_iter, tol: 1e-300, ..FitOptions::default() };
    let time_fit = |max_iter| -> Result<f64, healpix_psf::Error> {
        let mut best = f64::INFINITY;
        for _ in 0..a.reps.max(1) {
            let t0 = Instant::now();
            let fit = op.fit(&val, &opts(max_iter))?;
            best = best.min(t0.elapsed().as_secs_f64());
            assert_eq!(fit.hval.len(), b * op.k());
            op.recycle(fit.hval);
        }
        Ok(best)
    };
    let (setup_s, fit_s) = if a.iters > 0 { (time_fit(0)?, time_fit(a.iters)?) } else { (0.0, 0.0) };
    let iter_ms = if a.iters > 0 { (fit_s - setup_s) * 1e3 / a.iters as f64 } else { 0.0 };
    let h = vec![F::ONE; b * op.k()];
    let mut resample_ms = f64::INFINITY;
    for _ in 0..a.reps.max(1) {
        let t0 = Instant::now();
        let back = op.resample(&h)?;
        resample_ms = resample_ms.min(t0.elapsed().as_secs_f64() * 1e3);
        assert_eq!(back.len(), b * n);
        op.recycle(back);
    }

    let threads = if a.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { a.threads };
    let peak_rss = peak_rss_mb(); // before the copy rate's blocks
    let floors = if a.iters > 0 {
        let (iter_bytes, setup_bytes) = floor_bytes::<F>(op.n(), op.k(), op.nnz(), a.npt, b);
        let copy = if a.device == "cpu" { copy_gbs(threads) } else { f64::NAN };
        let ms = |bytes: f64| bytes / copy / 1e6;
        format!(
            ", \"iter_bytes\": {iter_bytes:.0}, \"setup_bytes\": {setup_bytes:.0}, \"copy_gbs\": {copy:.1}, \
             \"iter_floor_ms\": {:.3}, \"setup_floor_ms\": {:.3}, \"iter_over_floor\": {:.2}, \"setup_over_floor\": {:.2}",
            ms(iter_bytes),
            ms(setup_bytes),
            iter_ms / ms(iter_bytes),
            setup_s * 1e3 / ms(setup_bytes)
        )
    } else {
        String::new()
    };
    let i = op.build_info();
    // on a GPU: CUDA graphs recorded, iterations launched as graphs, recordings that failed
    #[cfg(feature = "cuda")]
    let floors = format!("{floors}, \"cuda_graphs\": {:?}", healpix_psf::cuda_graph_counts());
    println!(
        "{{\"n\": {}, \"k\": {}, \"nnz\": {}, \"level\": {}, \"npt\": {}, \"dtype\": \"{}\", \"device\": \"{}\", \
         \"threads\": {}, \"batch\": {}, \"build_s\": {:.4}, \"reps\": {}, \"hash_s\": {:.4}, \"keep_s\": {:.4}, \
         \"search_s\": {:.4}, \"area_s\": {:.4}, \"assemble_s\": {:.4}, \"iters\": {}, \"fit_s\": {:.4}, \"setup_s\": {:.4}, \
         \"iter_ms\": {:.3}, \"resample_ms\": {:.3}, \"peak_rss_mb\": {:.1}, \"rss_after_data_mb\": {:.1}, \
         \"missing_fraction\": {:.3}, \"host_bytes_per_sample\": {:.1}, \"device_bytes_per_sample\": {:.1}, \
         \"keep_blocks\": {}, \"kept_mb\": {:.1}{}}}",
        op.n(),
        op.k(),
        op.nnz(),
        a.level,
        a.npt,
        F::NAME,
        a.device,
        threads,
        b,
        best,
        a.reps.max(1),
        i.hash_s,
        i.keep_s,
        i.search_s,
        i.area_s,
        i.assemble_s,
        a.iters,
        fit_s,
        setup_s,
        iter_ms,
        resample_ms,
        peak_rss,
        rss_data,
        missing as f64 / (n * b) as f64,
        mem.host as f64 / op.n() as f64,
        mem.device as f64 / op.n() as f64,
        a.keep_blocks,
        op.kept_bytes() as f64 / 1e6,
        floors
    );
    if a.save {
        save_and_load(&op, a, best)?;
    }
    if a.constrained {
        // full fits (lam 1e-2, tol 1e-6): plain, bounded below at 9.5 (the field spans about 7.7 to
        // 12.3: a quarter of the cells are held), conservative, and both
        let base = FitOptions::<F> { lam: 1e-2, tol: 1e-6, return_info: true, ..FitOptions::default() };
        let lower = healpix_psf::Bound::Value(9.5);
        for (name, o) in [
            ("plain", base.clone()),
            ("bounded", FitOptions { lower, ..base.clone() }),
            ("conservative", FitOptions { conservative: true, ..base.clone() }),
            ("bounded+conservative", FitOptions { lower, conservative: true, ..base.clone() }),
        ] {
            let t0 = Instant::now();
            let fit = op.fit(&val, &o)?;
            let s = t0.elapsed().as_secs_f64();
            let info = fit.info.expect("asked for");
            println!(
                "{{\"fit\": \"{name}\", \"n\": {}, \"batch\": {b}, \"dtype\": \"{}\", \"fit_s\": {s:.3}, \"iterations\": {}, \
                 \"outer_passes\": {}, \"held_low_row0\": {}, \"converged_row0\": {}}}",
                op.n(),
                F::NAME,
                info.iterations,
                info.outer_passes,
                info.n_clipped_low[0],
                info.converged[0]
            );
        }
    }
    Ok(())
}

/// Times saving the operator to a file and loading it back (best of `--reps`), and checks the
/// loaded operator's M against the built one's.
fn save_and_load<F: Real>(op: &PsfResampler<F>, a: &Args, build_s: f64) -> Result<(), healpix_psf::Error> {
    let path = std::env::temp_dir().join(format!("hpsf-bench-{}.op", std::process::id()));
    let (mut save_s, mut load_s) = (f64::INFINITY, f64::INFINITY);
    let mut loaded = None;
    for _ in 0..a.reps.max(1) {
        let t0 = Instant::now();
        op.save_file(&path)?;
        save_s = save_s.min(t0.elapsed().as_secs_f64());
        drop(loaded.take());
        let t0 = Instant::now();
        loaded = Some(PsfResampler::<F>::load_file(&path, Device::Cpu, a.threads)?);
        load_s = load_s.min(t0.elapsed().as_secs_f64());
    }
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&path);
    let same = loaded.expect("loaded").m_triplets() == op.m_triplets();
    println!(
        "{{\"save\": true, \"n\": {}, \"dtype\": \"{}\", \"build_s\": {build_s:.4}, \"save_s\": {save_s:.4}, \
         \"load_s\": {load_s:.4}, \"file_bytes_per_sample\": {:.1}, \"host_bytes_per_sample\": {:.1}, \"same_m\": {same}}}",
        op.n(),
        F::NAME,
        bytes as f64 / op.n() as f64,
        op.memory().host as f64 / op.n() as f64
    );
    Ok(())
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    let r = match a.dtype.as_str() {
        "f32" | "float32" => run::<f32>(&a),
        "f64" | "float64" => run::<f64>(&a),
        d => {
            eprintln!("bench: --dtype {d}: use f32 or f64");
            std::process::exit(2);
        }
    };
    if let Err(e) = r {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}
