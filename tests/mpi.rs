//! The collective rules of distributed calls (feature `mpi`), on every rank of MPI_COMM_WORLD. Run
//! under `mpirun -np 1..4` by scripts/test-all.sh (and as one rank by `cargo test`): a call either
//! succeeds on every rank or fails on every rank with a clear error — never a hang.
//!
//! A test harness of its own (`harness = false`): MPI is initialised once per process, and every
//! rank must run the same collective calls in the same order.

use healpix_psf::distributed::{check_parameters, check_samples, collective};
use healpix_psf::{Error, Params};
use mpi::traits::Communicator;

fn main() {
    let universe = mpi::initialize().expect("MPI could not be initialised");
    let world = universe.world();
    let (me, size) = (world.rank() as usize, world.size() as usize);
    let mut checks = 0;
    let mut check = |ok: bool, what: &str| {
        assert!(ok, "rank {me} of {size}: {what}");
        checks += 1;
    };

    // the same parameters everywhere, and device settings that may differ per rank
    let p = Params { num_threads: me % 2, verbose: me == 0, ..Params::new(10) };
    check(check_parameters::<_, f64>(&world, &p).is_ok(), "equal parameters are accepted");

    // the last rank passes another level: an error on every rank
    let q = if me + 1 == size { Params { level: 11, ..p.clone() } } else { p.clone() };
    let r = check_parameters::<_, f64>(&world, &q);
    if size == 1 {
        check(r.is_ok(), "one rank agrees with itself");
    } else if me + 1 == size {
        check(
            matches!(&r, Err(Error::InvalidParameter { name: "level", reason, .. }) if reason.contains("rank 0 10")),
            &format!("the rank that differs names the parameter: {r:?}"),
        );
    } else {
        check(
            matches!(&r, Err(Error::OtherRank { rank, message }) if *rank == size - 1 && message.contains("level")),
            &format!("the other ranks name the rank and the parameter: {r:?}"),
        );
    }
    // an invalid value on every rank: each rank's own error
    let bad = Params { threshold: -1.0, ..p.clone() };
    check(
        matches!(check_parameters::<_, f64>(&world, &bad), Err(Error::InvalidParameter { name: "threshold", .. })),
        "an invalid threshold on every rank",
    );

    // samples: a band of longitudes per rank
    let lon: Vec<f64> = (0..100).map(|i| 10.0 * me as f64 + 0.1 * i as f64).collect();
    let lat: Vec<f64> = (0..100).map(|i| 45.0 + 0.01 * i as f64).collect();
    check(check_samples(&world, &lon, &lat, &p).is_ok(), "valid samples are accepted");
    // rank 0 has a NaN latitude
    let mut lat_nan = lat.clone();
    if me == 0 {
        lat_nan[7] = f64::NAN;
    }
    let r = check_samples(&world, &lon, &lat_nan, &p);
    check(
        match &r {
            Err(Error::InvalidCoordinate { index: 7, .. }) => me == 0,
            Err(Error::OtherRank { rank: 0, message }) => me != 0 && message.contains("sample 7"),
            _ => false,
        },
        &format!("a NaN coordinate on rank 0: {r:?}"),
    );
    // the last rank has no sample
    let none: &[f64] = &[];
    let (lo, la) = if me + 1 == size { (none, none) } else { (&lon[..], &lat[..]) };
    let r = check_samples(&world, lo, la, &p);
    check(
        match &r {
            Err(Error::EmptyInput) => me + 1 == size,
            Err(Error::OtherRank { rank, .. }) => *rank == size - 1 && me + 1 != size,
            _ => false,
        },
        &format!("a rank without samples: {r:?}"),
    );
    // several ranks fail: the lowest is named
    let r = collective(&world, if me % 2 == 1 || size == 1 { Err(Error::EmptyInput) } else { Ok(()) });
    let lowest = if size == 1 { 0 } else { 1 };
    check(
        match &r {
            Err(Error::EmptyInput) => me % 2 == 1 || size == 1,
            Err(Error::OtherRank { rank, .. }) => *rank == lowest,
            _ => false,
        },
        &format!("several failing ranks: {r:?}"),
    );
    println!("rank {me} of {size}: {checks} checks of the collective rules passed");
}
