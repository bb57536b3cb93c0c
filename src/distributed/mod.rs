//! Past one process: the rules every call of a distributed operator follows on the ranks of an MPI
//! communicator (feature `mpi`, rsmpi over the system's MPI).
//!
//! Issue 17 builds the operator of the union of every rank's samples and its solve over MPI; this
//! module holds what every distributed call needs first:
//!
//! * [`collective`] — a call succeeds on every rank or fails on every rank: a rank whose own step
//!   failed returns its error, every other rank [`Error::OtherRank`] naming the lowest failing rank
//!   and its message. No rank is left waiting in a collective operation the others skipped: a
//!   distributed call never hangs on bad input.
//! * [`check_parameters`] — every rank passed the same parameters (those that shape the operator:
//!   not `num_threads`, `verbose` or `device`, which may differ per rank), and the same float type.
//! * [`check_samples`] — every rank's samples are valid, and every rank holds at least one (a model's
//!   rank without samples must be left out of the communicator).
//! * [`collective_with`] — [`collective`] for a program's own error type (the command line's).
//! * [`tile`] — a rank's block of a structured grid, for callers that decompose a grid themselves.
//!
//! [`DistributedResampler`] is the operator (`construct.rs`; its estimated areas `area.rs`), its
//! solve (`solve.rs`) and the nearest-sample fill of a restricted output's uncomputable cells
//! (`fill.rs`).
//!
//! The design of the distributed construction and solve: `docs/distributed.md`.

mod area;
mod construct;
mod fill;
mod solve;

pub use construct::{DistributedResampler, NO_CELL};
pub use solve::Traffic;

use crate::error::{Error, Result};
use crate::operator::Params;
use crate::real::Real;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};

/// `local` on every rank when every rank's is `Ok`; otherwise an error on every rank: its own on a
/// rank that failed, [`Error::OtherRank`] (the lowest failing rank and its message) on the others.
/// Collective: every rank of `comm` must call it.
pub fn collective<C: Communicator, T>(comm: &C, local: Result<T>) -> Result<T> {
    collective_with(comm, local, |e| e.to_string(), |rank, message| Error::OtherRank { rank, message })
}

/// [`collective`] for any error type (a program's own): `message` tells a failure's text, `other`
/// makes the error of a rank whose own step succeeded from the lowest failing rank and its message.
/// Collective.
pub fn collective_with<C: Communicator, T, E>(
    comm: &C,
    local: std::result::Result<T, E>,
    message: impl Fn(&E) -> String,
    other: impl FnOnce(usize, String) -> E,
) -> std::result::Result<T, E> {
    match first_failure(comm, local.as_ref().err().map(message)) {
        Some((rank, text)) if local.is_ok() => Err(other(rank, text)),
        _ => local,
    }
}

/// The lowest rank whose `mine` is a failure message, and that message (`None` where every rank
/// passed `None`). Collective.
fn first_failure<C: Communicator>(comm: &C, mine: Option<String>) -> Option<(usize, String)> {
    let failed = i32::from(mine.is_some());
    let mut all = vec![0i32; comm.size() as usize];
    comm.all_gather_into(&failed, &mut all[..]);
    let first = all.iter().position(|&f| f != 0)?;
    let mut message = match mine {
        Some(m) if comm.rank() as usize == first => m.into_bytes(),
        _ => Vec::new(),
    };
    broadcast_bytes(comm, first, &mut message);
    Some((first, String::from_utf8_lossy(&message).into_owned()))
}

/// Replaces `bytes` on every rank with those of rank `root`.
fn broadcast_bytes<C: Communicator>(comm: &C, root: usize, bytes: &mut Vec<u8>) {
    let root = comm.process_at_rank(root as i32);
    let mut len = bytes.len() as u64;
    root.broadcast_into(&mut len);
    bytes.resize(len as usize, 0);
    root.broadcast_into(&mut bytes[..]);
}

/// The points of rank `rank`'s tile when a grid of `shape` points (row-major, last dimension
/// fastest) is split into `size` tiles as a model decomposes its grid: a 1-D set of points into
/// contiguous runs, a 2-D (or higher: the leading dimensions flattened) grid of ny × nx points into
/// py × px blocks (py · px = `size`, the blocks as square as the divisors of `size` allow), rank r
/// the block (r / px, r mod px). Ascending indices. An error when a tile would be empty.
///
/// # Examples
/// ```
/// // a 4 × 6 grid on 4 ranks: 2 × 2 blocks of 2 × 3 points
/// assert_eq!(healpix_psf::distributed::tile(&[4, 6], 3, 4)?, vec![15, 16, 17, 21, 22, 23]);
/// # Ok::<(), healpix_psf::Error>(())
/// ```
pub fn tile(shape: &[usize], rank: usize, size: usize) -> Result<Vec<usize>> {
    let nx = shape.last().copied().unwrap_or(0);
    let ny: usize = shape[..shape.len().saturating_sub(1)].iter().product();
    // the layout whose blocks are the most square (py rows of px blocks)
    let (py, px) = (1..=size)
        .filter(|py| size.is_multiple_of(*py))
        .map(|py| (py, size / py))
        .filter(|&(py, px)| py <= ny && px <= nx)
        .min_by(|a, b| {
            let skew = |(py, px): (usize, usize)| ((ny as f64 / py as f64) / (nx as f64 / px as f64)).ln().abs();
            skew(*a).total_cmp(&skew(*b))
        })
        .ok_or_else(|| {
            Error::param("size", size, format!("a grid of {ny} × {nx} points cannot be split into {size} tiles"))
        })?;
    if rank >= size {
        return Err(Error::param("rank", rank, format!("not one of {size} ranks")));
    }
    let (ty, tx) = (rank / px, rank % px);
    let (y0, y1) = (ty * ny / py, (ty + 1) * ny / py);
    let (x0, x1) = (tx * nx / px, (tx + 1) * nx / px);
    Ok((y0..y1).flat_map(|y| (x0..x1).map(move |x| y * nx + x)).collect())
}

/// The parameters that shape the operator, as (name, value) text, and the float type. Per-sample
/// arrays (explicit areas, `sample_mask`) are each rank's own: only their presence must agree.
fn shared_params<F: Real>(p: &Params) -> Vec<(&'static str, String)> {
    let out_cells = p.out_cell_ids.as_ref().map(|ids| {
        let mut ids = ids.clone();
        ids.sort_unstable();
        ids.dedup();
        // FNV-1a over the sorted distinct ids: equal lists, equal text
        let hash = ids.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| (h ^ c).wrapping_mul(0x0100_0000_01b3));
        format!("{} cells, hash {hash:016x}", ids.len())
    });
    let area = match &p.area {
        crate::operator::Area::Explicit(_) => "explicit".to_string(),
        a => format!("{a:?}"),
    };
    vec![
        ("dtype", F::NAME.to_string()),
        ("level", p.level.to_string()),
        ("npt", p.npt.to_string()),
        ("sigma_m", format!("{:?}", p.sigma_m)),
        ("threshold", format!("{:?}", p.threshold)),
        ("nest", p.nest.to_string()),
        ("radius", format!("{:?}", p.radius)),
        ("ellipsoid", format!("{:?}", p.ellipsoid)),
        ("ring_weight", format!("{:?}", p.ring_weight)),
        ("ring_search_init", format!("{:?}", p.ring_search_init)),
        ("ring_search_max", format!("{:?}", p.ring_search_max)),
        ("area", area),
        ("out_cell_ids", format!("{out_cells:?}")),
        ("fill_missing_out_cells", p.fill_missing_out_cells.to_string()),
        ("sample_mask", if p.sample_mask.is_some() { "given" } else { "none" }.to_string()),
    ]
}

/// Checks that every rank passed the parameters rank 0 passed (and the same float type F), and
/// that they are valid. Collective; an error on every rank otherwise (see [`collective`]).
pub fn check_parameters<C: Communicator, F: Real>(comm: &C, p: &Params) -> Result<()> {
    collective(comm, same_as_rank_0(comm, &shared_params::<F>(p), "parameters").and_then(|_| p.check()))
}

/// This rank's error when its `(name, value)` list differs from rank 0's (the first difference).
/// Collective, but the result is this rank's alone: pass it to [`collective`].
fn same_as_rank_0<C: Communicator>(comm: &C, mine: &[(&'static str, String)], what: &str) -> Result<()> {
    let encode = |v: &[(&str, String)]| v.iter().map(|(_, x)| x.as_str()).collect::<Vec<_>>().join("\n");
    let mut first = encode(mine).into_bytes();
    broadcast_bytes(comm, 0, &mut first);
    let first = String::from_utf8_lossy(&first).into_owned();
    let me = comm.rank();
    match mine.iter().zip(first.split('\n')).find(|((_, a), b)| a != b) {
        Some(((name, a), b)) => Err(Error::InvalidParameter {
            name,
            value: a.clone(),
            reason: format!("rank {me} passed {name} = {a}, rank 0 {b}: every rank must pass the same {what}"),
        }),
        None => Ok(()),
    }
}

/// Checks that every rank passed the same fit options as rank 0 (all but `progress`, and `x0`'s
/// presence only) and the same number of rows, and that the options are valid (on this rank's
/// rows of `k` cell values). Collective.
pub(crate) fn check_fit_options<C: Communicator, F: Real>(
    comm: &C,
    rows: usize,
    k: usize,
    o: &crate::solver::FitOptions<F>,
) -> Result<()> {
    let mine = vec![
        ("rows of values", rows.to_string()),
        ("lam", format!("{:?}", o.lam)),
        ("max_iter", o.max_iter.to_string()),
        ("tol", format!("{:?}", o.tol)),
        ("x0", if o.x0.is_some() { "given" } else { "none" }.to_string()),
        ("return_info", o.return_info.to_string()),
        ("stopping", format!("{:?}", o.stopping)),
        ("lower", format!("{:?}", o.lower)),
        ("upper", format!("{:?}", o.upper)),
        ("max_outer", o.max_outer.to_string()),
        ("conservative", o.conservative.to_string()),
        ("empty_cells", format!("{:?}", o.empty_cells)),
        ("missing", format!("{:?}", o.missing)),
    ];
    let local = same_as_rank_0(comm, &mine, "fit options and rows")
        .and_then(|_| crate::operator::fit::check_fit_options(rows, k, o));
    collective(comm, local)
}

/// Checks this rank's samples (lengths, coordinates, at least one sample, `sample_mask`) on every
/// rank. Collective; an error on every rank when one rank's samples are invalid.
pub fn check_samples<C: Communicator>(comm: &C, lon_deg: &[f64], lat_deg: &[f64], p: &Params) -> Result<()> {
    let local = crate::operator::validate_samples(lon_deg, lat_deg, p.sample_mask.as_deref()).map(|_| ());
    collective(comm, local)
}
