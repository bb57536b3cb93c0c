//! Golden runner: builds the operator for a case written by the reference's `ref_case.py` and writes
//! the crate's outputs under the same names, dtypes and shapes, for `compare.py` or the tests.
//!
//! ```text
//! cargo run --release --example golden -- CASE_DIR OUT_DIR
//! python3 ../shared/reference/compare.py CASE_DIR OUT_DIR --only construct
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use common::{write_construction, write_solve, Case, Pod, Writer};
use healpix_psf::{PsfResampler, Real};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

fn run<F: Real + Pod>(case: &Case, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let lon = case.read::<f64>("lon");
    let lat = case.read::<f64>("lat");
    let t0 = Instant::now();
    let op = PsfResampler::<F>::new(&lon, &lat, &case.params())?;
    let build_s = t0.elapsed().as_secs_f64();
    let mut w = Writer::new(out)?;
    write_construction(&op, &lon, &lat, &mut w)?;
    let t1 = Instant::now();
    let iters = write_solve(&op, case, &mut w)?;
    let solve_s = t1.elapsed().as_secs_f64();
    w.finish(json!({"case": case.name(), "dtype": F::NAME, "N": op.n(), "K": op.k(), "build_s": build_s,
                    "cg_niters": iters, "solve_s": solve_s}))?;
    println!(
        "{}: N = {}, K = {}, {} links ({}); built in {:.4} s; solved in {:.4} s with {} CG iterations \
         (reference: {}) -> {}",
        case.name(),
        op.n(),
        op.k(),
        op.nnz(),
        F::NAME,
        build_s,
        solve_s,
        iters,
        case.meta["result"]["cg_niters"],
        out.display()
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 2 {
        eprintln!("usage: golden CASE_DIR OUT_DIR");
        std::process::exit(2);
    }
    let case = Case::open(Path::new(&args[0]));
    let out = Path::new(&args[1]);
    let r = if case.is_f32() { run::<f32>(&case, out) } else { run::<f64>(&case, out) };
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
