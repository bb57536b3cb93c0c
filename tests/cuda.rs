//! The CUDA backend (feature `cuda`). Tests that need a GPU print a SKIP line and pass when there is
//! none (CI has no GPU); on a machine with one they check CPU↔GPU parity and determinism.
//!
//! Tolerances (relative to the largest value): f64 operators to 1e-12, a fit stopped after a fixed
//! number of iterations to 1e-9, full fits to 1e-6; f32 to 1e-5 / 1e-4 / 1e-3.
#![cfg(feature = "cuda")]

mod common;

use healpix_psf::{Device, Error, FitOptions, Params, PsfResampler, Real, Stopping};

/// Builds on GPU 0, or prints why not and returns None (no GPU, no driver).
fn on_gpu<F: Real>(lon: &[f64], lat: &[f64], p: &Params) -> Option<PsfResampler<F>> {
    match PsfResampler::<F>::new(lon, lat, &Params { device: Device::Cuda(0), ..p.clone() }) {
        Ok(op) => Some(op),
        Err(Error::DeviceUnavailable(msg)) => {
            println!("SKIP: no CUDA device ({msg})");
            None
        }
        Err(e) => panic!("building on the GPU failed: {e}"),
    }
}

#[test]
fn asking_for_a_missing_device_is_a_clear_error() {
    let (lon, lat) = common::synth::regional(500, 9, 1.5, 1);
    for ordinal in [0usize, 97] {
        match PsfResampler::<f32>::new(&lon, &lat, &Params { device: Device::Cuda(ordinal), ..Params::new(9) }) {
            Ok(op) => assert!(ordinal == 0 && op.k() > 0),
            Err(Error::DeviceUnavailable(msg)) => {
                assert!(msg.contains("CUDA"), "{msg}");
                println!("cuda:{ordinal}: {msg}");
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

fn parity<F: Real>(t_op: f64, t_fixed: f64, t_full: f64) {
    let (lon, lat) = common::synth::regional(20_000, 11, 1.5, 5);
    let p = Params::new(11);
    let Some(gpu) = on_gpu::<F>(&lon, &lat, &p) else { return };
    let cpu = PsfResampler::<F>::new(&lon, &lat, &p).unwrap();
    assert_eq!(gpu.cell_ids(), cpu.cell_ids());
    assert_eq!(gpu.hi(), cpu.hi());
    let (m_g, m_c) = (gpu.m_triplets(), cpu.m_triplets());
    assert_eq!((&m_g.rows, &m_g.cols), (&m_c.rows, &m_c.cols));
    let e_m = common::rel_err("gpu vs cpu", &m_g.vals, &m_c.vals);
    let e_mt = common::rel_err("gpu vs cpu", &gpu.mt_triplets().vals, &cpu.mt_triplets().vals);
    let e_dx = common::rel_err("gpu vs cpu", gpu.cell_weight(), cpu.cell_weight());
    assert!(e_m <= t_op && e_mt <= t_op && e_dx <= t_op, "operators: M {e_m:e} MT {e_mt:e} Dx {e_dx:e}");

    let b = 3;
    let val: Vec<F> = (0..b)
        .flat_map(|j| {
            lon.iter().zip(&lat).map(move |(x, y)| F::from_f64((x * (1.0 + j as f64)).sin() + (3.0 * y).cos()))
        })
        .collect();
    for stopping in [Stopping::Pooled, Stopping::PerRow] {
        let fixed = FitOptions { max_iter: 10, tol: 1e-300, return_info: true, stopping, ..FitOptions::default() };
        let (g, c) = (gpu.fit(&val, &fixed).unwrap(), cpu.fit(&val, &fixed).unwrap());
        let e_fixed = common::rel_err("gpu vs cpu", &g.hval, &c.hval);
        assert!(e_fixed <= t_fixed, "{stopping:?} fit after 10 iterations: {e_fixed:e}");
        let full = FitOptions { lam: 1e-2, return_info: true, stopping, ..FitOptions::default() };
        let (g, c) = (gpu.fit(&val, &full).unwrap(), cpu.fit(&val, &full).unwrap());
        let e_full = common::rel_err("gpu vs cpu", &g.hval, &c.hval);
        assert!(e_full <= t_full, "{stopping:?} full fit: {e_full:e}");
        let (gi, ci) = (g.info.unwrap(), c.info.unwrap());
        assert!(gi.converged.iter().all(|&x| x) && ci.converged.iter().all(|&x| x));
        assert!(gi.iterations.abs_diff(ci.iterations) <= 1, "iterations {} vs {}", gi.iterations, ci.iterations);
        let e_res = common::rel_err("gpu vs cpu", &gpu.resample(&g.hval).unwrap(), &cpu.resample(&g.hval).unwrap());
        assert!(e_res <= t_op * 10.0, "resample {e_res:e}");
        println!(
            "{} {stopping:?}: M {e_m:.1e} MT {e_mt:.1e} Dx {e_dx:.1e} fixed {e_fixed:.1e} full {e_full:.1e} ({} vs {} it.)",
            F::NAME,
            gi.iterations,
            ci.iterations
        );
    }
}

#[test]
fn gpu_matches_cpu_f64() {
    parity::<f64>(1e-12, 1e-9, 1e-6);
}

#[test]
fn gpu_matches_cpu_f32() {
    parity::<f32>(1e-5, 1e-4, 1e-3);
}

#[test]
fn gpu_results_are_deterministic() {
    let (lon, lat) = common::synth::regional(20_000, 11, 1.5, 9);
    let p = Params::new(11);
    let Some(gpu) = on_gpu::<f32>(&lon, &lat, &p) else { return };
    for b in [1usize, 64] {
        let val: Vec<f32> = (0..b).flat_map(|j| lon.iter().map(move |x| ((x * 7.0 + j as f64).sin()) as f32)).collect();
        let o = FitOptions { max_iter: 30, lam: 1e-3, ..FitOptions::default() };
        let one = gpu.fit(&val, &o).unwrap().hval;
        let two = gpu.fit(&val, &o).unwrap().hval;
        assert!(one.iter().zip(&two).all(|(a, b)| a.to_bits() == b.to_bits()), "B = {b}: two runs differ");
    }
}
