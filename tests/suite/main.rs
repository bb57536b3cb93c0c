//! The integration tests, one binary: every module below is a file of tests of the public API, the
//! C ABI or the bindings (run one with `cargo test --release --test suite NAME::`).
//! One binary instead of one per file: the library's generic code is compiled once for all of them
//! (430 CPU-seconds of CI's build when each file was its own binary, 125 for this one).
//! Apart stay the distributed tests (`tests/mpi.rs`, `tests/cli_mpi.rs`: they run under mpirun) and
//! the command line's (`tests/cli.rs`, `tests/cli_fuzz.rs`): those write NetCDF (HDF5) files in the
//! test process, and a subprocess another test forks meanwhile inherits the open file with its HDF5
//! lock (flock), so that the next open of the file fails (NC_EHDFERR, seen once in this binary).

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod c_api;
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
