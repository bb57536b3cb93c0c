//! The integration tests, one binary: every module below is a file of tests of the public API, the
//! C ABI, the bindings or the command line (run one with `cargo test --release --test suite NAME::`).
//! One binary instead of one per file: the library's generic code is compiled once for all of them
//! (the build of the suite took ≈ 5 minutes of CI's 2 cores when each file was its own binary).
//! The distributed tests (`tests/mpi.rs`, `tests/cli_mpi.rs`) stay apart: they run under mpirun.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod c_api;
mod cli;
mod cli_fuzz;
mod constrained;
mod cuda;
mod geometry;
mod header;
mod invariants;
mod julia_bindings;
mod kernel;
mod orca2;
mod parity_construct;
mod parity_solve;
mod sample_mask;
mod save_load;
mod solver;
