//! The distributed construction's time on P ranks (feature `mpi`): prints one JSON line (rank 0).
//!
//! ```text
//! cargo build --release --features mpi --example mpi_build
//! mpirun -np P target/release/examples/mpi_build --n 1000000 --level 12 [--threads 1] [--reps 3] [--dtype f32] [--grid]
//! ```
//! The samples are `bench`'s (uniform in a box centred on 8°E 45°N, ~1.5 per cell; with `--grid` on
//! a regular grid over that box, whose areas are then estimated from the spacing); each rank
//! takes a band of longitudes (its N/P samples; every rank generates all N to pick its band, outside
//! the timing). `build_s`: the best of `--reps` builds, each the slowest rank's time between two
//! barriers; `ghosts_max`/`ghosts_mean`: ghost samples received per rank (32 bytes each on the wire).
//! With `--iters I` (and `--batch B`): `iter_ms`, one CG iteration of a fit of B rows (lam 0, no
//! early stop): (the fit with I iterations − the fit with none) / I, the best of `--reps`; and what
//! one iteration sends per rank (the largest rank's): halo bytes and messages, reductions (each an
//! allgather) and the bytes a rank contributes to them (`DistributedResampler::traffic`).

#[path = "../tests/common/mod.rs"]
mod common;

use healpix_psf::distributed::DistributedResampler;
use healpix_psf::{FitOptions, Params, Real};
use mpi::traits::{Communicator, CommunicatorCollectives};
use std::time::Instant;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: cannot read {v}")))
        .unwrap_or(default)
}

fn run<F: Real>(world: &mpi::topology::SimpleCommunicator) {
    let (me, size) = (world.rank() as usize, world.size() as usize);
    let n = arg::<f64>("--n", 1e6) as usize;
    let level = arg("--level", 12u8);
    let reps = arg("--reps", 1usize);
    let p = Params { num_threads: arg("--threads", 1usize), ..Params::new(level) };
    // --grid: a regular grid (latitude rings: the areas estimated from the spacing, distributed)
    let grid = std::env::args().any(|a| a == "--grid");
    let (lon, lat) =
        if grid { common::synth::regional_grid(n, level, 1.5) } else { common::synth::regional(n, level, 1.5, 0) };
    let n = lon.len();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| lon[a].total_cmp(&lon[b]));
    let band = &idx[me * n / size..(me + 1) * n / size];
    let (blon, blat): (Vec<f64>, Vec<f64>) = band.iter().map(|&i| (lon[i], lat[i])).unzip();
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..reps {
        world.barrier();
        let t = Instant::now();
        let d = DistributedResampler::<F>::new(world, &blon, &blat, &p).expect("the distributed build");
        world.barrier();
        let mut dt = 0.0f64;
        world.all_reduce_into(&t.elapsed().as_secs_f64(), &mut dt, mpi::collective::SystemOperation::max());
        best = best.min(dt);
        last = Some(d);
    }
    let d = last.expect("one build");
    let (mut k, mut ghosts_max, mut ghosts_sum) = (0u64, 0u64, 0u64);
    let (mine_k, mine_g) = (d.cell_ids().len() as u64, d.ghost_samples() as u64);
    world.all_reduce_into(&mine_k, &mut k, mpi::collective::SystemOperation::sum());
    world.all_reduce_into(&mine_g, &mut ghosts_max, mpi::collective::SystemOperation::max());
    world.all_reduce_into(&mine_g, &mut ghosts_sum, mpi::collective::SystemOperation::sum());
    let (iters, batch) = (arg("--iters", 0usize), arg("--batch", 1usize));
    let mut iter_ms = f64::NAN;
    let mut per_iter = [f64::NAN; 4];
    if iters > 0 {
        let val: Vec<F> = (0..batch)
            .flat_map(|r| blat.iter().map(move |&y| F::from_f64(10.0 + y * (1.0 + r as f64) * 0.01)))
            .collect();
        let timed = |max_iter: usize| -> f64 {
            let o = FitOptions::<F> { max_iter, tol: 1e-300, ..FitOptions::default() };
            world.barrier();
            let t = Instant::now();
            d.fit(world, &val, &o).expect("the distributed fit");
            world.barrier();
            let mut dt = 0.0f64;
            world.all_reduce_into(&t.elapsed().as_secs_f64(), &mut dt, mpi::collective::SystemOperation::max());
            dt
        };
        let best = |max_iter: usize| (0..reps.max(1)).map(|_| timed(max_iter)).fold(f64::INFINITY, f64::min);
        iter_ms = (best(iters) - best(0)) / iters as f64 * 1e3;
        // what one iteration sends: (a fit of `iters` − a fit of none) / iters, the largest rank's
        let sent = |max_iter: usize| {
            let before = d.traffic();
            timed(max_iter);
            let after = d.traffic();
            [
                after.halo_bytes - before.halo_bytes,
                after.halo_messages - before.halo_messages,
                after.reductions - before.reductions,
                after.reduction_bytes - before.reduction_bytes,
            ]
        };
        let (with, without) = (sent(iters), sent(0));
        for (i, out) in per_iter.iter_mut().enumerate() {
            let mine = (with[i] - without[i]) as f64 / iters as f64;
            world.all_reduce_into(&mine, out, mpi::collective::SystemOperation::max());
        }
    }
    if me == 0 {
        println!(
            "{{\"ranks\": {size}, \"threads_per_rank\": {}, \"n\": {n}, \"level\": {level}, \"dtype\": \"{}\", \"k\": {k}, \
             \"build_s\": {best:.4}, \"ghosts_max\": {ghosts_max}, \"ghosts_mean\": {}, \"ghost_bytes_max\": {}, \
             \"batch\": {batch}, \"iters\": {iters}, \"iter_ms\": {iter_ms:.3}, \"halo_bytes_per_iter\": {}, \
             \"halo_messages_per_iter\": {}, \"reductions_per_iter\": {}, \"reduction_bytes_per_iter\": {}}}",
            p.num_threads,
            F::NAME,
            ghosts_sum / size as u64,
            ghosts_max * 32,
            per_iter[0],
            per_iter[1],
            per_iter[2],
            per_iter[3]
        );
    }
}

fn main() {
    let universe = mpi::initialize().expect("MPI could not be initialised");
    let world = universe.world();
    match arg("--dtype", "f32".to_string()).as_str() {
        "f64" => run::<f64>(&world),
        _ => run::<f32>(&world),
    }
}
