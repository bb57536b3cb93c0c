//! The samples' areas of the distributed build where they are estimated (`Area::Auto` on a grid of
//! latitude rings, `Area::Spacing`, `Area::ReferenceAuto`): the single process's estimates of the
//! union of the ranks' samples (`operator::area`), each rank computing its own samples', bit for bit.
//!
//! * The ring test and the reference's estimate: every rank's distinct latitudes with their sample
//!   counts, merged by latitude on the rank its bits choose; gathered on every rank only when they
//!   are few enough for a grid of rings (a rank with more than ⌊N/3⌋ stops early: not rings).
//! * The spacing estimate: the buckets' depth from the bins of the union's sorted fine cells (a
//!   sample sort: each rank sorts a range of the ids, and the pairs across ranges are added once);
//!   each sample's candidates are the samples of the 5 × 5 buckets around its own, so a rank
//!   receives the other ranks' samples in the parent buckets next to its own (one level coarser:
//!   two buckets wide) and offers them in the global sample order, as one process does; isolated
//!   samples get the median of every rank's estimates (a bisection on their bits: exact).

use super::construct::{all_gather_varcount, exchange, near_records};
use crate::error::Result;
use crate::geometry::{Ellipsoid, Grid};
use crate::operator::area::{
    add_bins, bucket_depth, fill_isolated, fine_cells, fine_depth, latitude_counts, median, ring_areas, rings_from,
    LatitudeCounts,
};
use crate::operator::Area;
use mpi::collective::SystemOperation;
use mpi::traits::{Communicator, CommunicatorCollectives};

/// The areas of this rank's used samples (`lon`, `lat`; global indices from `offset`, `total` over
/// all ranks) under the estimated `mode`, `None` where they are uniform. Collective.
pub(super) fn areas<C: Communicator>(
    comm: &C,
    mode: &Area,
    lon: &[f64],
    lat: &[f64],
    offset: u64,
    total: u64,
    radius: f64,
) -> Result<Option<Vec<f64>>> {
    Ok(match mode {
        Area::Uniform | Area::Explicit(_) => None,
        Area::Spacing => Some(spacing(comm, lon, lat, offset, total, radius)?),
        Area::Auto if rings(comm, lat, total).is_some() => Some(spacing(comm, lon, lat, offset, total, radius)?),
        Area::Auto => None,
        Area::ReferenceAuto => rings(comm, lat, total).map(|(u, count)| ring_areas(&u, &count, lat, radius)),
    })
}

/// The union's distinct latitudes (ascending) and their sample counts when the `total` samples
/// pass the reference's test for a grid of latitude rings (`rings_of`); `None` otherwise: each
/// rank counts its latitudes (giving up past ⌊total/3⌋ distinct ones: not rings), sends each to
/// one rank (by its bits), which adds the counts; the union's distinct latitudes are counted, and
/// only when they are few enough for rings are they gathered on every rank. Collective.
pub(super) fn rings<C: Communicator>(comm: &C, lat: &[f64], total: u64) -> Option<(Vec<f64>, Vec<u64>)> {
    let limit = (total / 3) as usize;
    let mine = latitude_counts(lat.iter().copied(), limit);
    // a rank with more distinct latitudes than the limit settles it
    if all_gather_varcount(comm, &[u8::from(mine.is_none())]).iter().any(|f| f[0] != 0) {
        return None;
    }
    let size = comm.size() as usize;
    let mut out = vec![Vec::new(); size];
    for (b, c) in mine.unwrap_or_default() {
        out[((b.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % size as u64) as usize].extend([b, c]);
    }
    let mut merged = LatitudeCounts::default();
    exchange(comm, &out).concat().chunks_exact(2).for_each(|p| *merged.entry(p[0]).or_default() += p[1]);
    if sum(comm, merged.len() as u64) > limit as u64 {
        return None;
    }
    let pairs: Vec<u64> = merged.into_iter().flat_map(|(b, c)| [b, c]).collect();
    let all = all_gather_varcount(comm, &pairs).concat();
    rings_from(all.chunks_exact(2).map(|p| (p[0], p[1])), total as usize)
}

/// The spacing estimate of this rank's samples. Collective.
fn spacing<C: Communicator>(
    comm: &C,
    lon: &[f64],
    lat: &[f64],
    offset: u64,
    total: u64,
    radius: f64,
) -> Result<Vec<f64>> {
    let level = bucket_depth(&union_bins(comm, &fine_cells(lon, lat)), total);
    // this rank's samples and the others' in the parent buckets next to its own, in the global order
    let grid = Grid::new(level, true, Ellipsoid::Sphere)?;
    let coarse = if level > 0 { Some(Grid::new(level - 1, true, Ellipsoid::Sphere)?) } else { None };
    let parent: Vec<u64> =
        lon.iter().zip(lat).map(|(&x, &y)| if level > 0 { grid.hash_nested(x, y) >> 2 } else { 0 }).collect();
    let ghosts = near_records(comm, coarse.as_ref(), &parent, |j| [lon[j], lat[j], (offset + j as u64) as f64]);
    let mut local: Vec<(u64, f64, f64)> = (0..lon.len())
        .map(|j| (offset + j as u64, lon[j], lat[j]))
        .chain(ghosts.iter().map(|g| (g[2] as u64, g[0], g[1])))
        .collect();
    local.sort_unstable_by_key(|s| s.0);
    let own = |s: usize| (offset..offset + lon.len() as u64).contains(&local[s].0);
    let (llon, llat): (Vec<f64>, Vec<f64>) = local.iter().map(|s| (s.1, s.2)).unzip();
    let est = crate::operator::area::spacing_estimates(&llon, &llat, level, radius, &own);
    let mut mine: Vec<f64> = (0..local.len()).filter(|&s| own(s)).map(|s| est[s]).collect();
    // isolated samples (on any rank): the median of all estimates
    let isolated = mine.iter().filter(|a| !a.is_finite()).count() as u64;
    if sum(comm, isolated) > 0 {
        let known: Vec<f64> = mine.iter().copied().filter(|a| a.is_finite()).collect();
        fill_isolated(&mut mine, median_over(comm, &known));
    }
    Ok(mine)
}

/// The sum over the ranks of an integer. Collective.
fn sum<C: Communicator>(comm: &C, x: u64) -> u64 {
    let mut s = 0u64;
    comm.all_reduce_into(&x, &mut s, SystemOperation::sum());
    s
}

/// The bins (construct.h's) of the sorted union of every rank's sorted fine cells: each rank takes
/// a range of ids (splitters from every rank's quantiles), counts the pairs in its range, rank 0
/// the pairs across ranges; the counts are added over the ranks. Collective.
fn union_bins<C: Communicator>(comm: &C, sorted: &[u64]) -> Vec<u64> {
    let size = comm.size() as usize;
    let mine: Vec<u64> = (1..size).filter_map(|i| sorted.get(i * sorted.len() / size).copied()).collect();
    let mut all = all_gather_varcount(comm, &mine).concat();
    all.sort_unstable();
    let split: Vec<u64> = (1..size).map(|i| all.get(i * all.len() / size).copied().unwrap_or(u64::MAX)).collect();
    let at = |r: usize| if r == 0 { 0 } else { sorted.partition_point(|&x| x < split[r - 1]) };
    let out: Vec<Vec<u64>> =
        (0..size).map(|r| sorted[at(r)..if r + 1 == size { sorted.len() } else { at(r + 1) }].to_vec()).collect();
    let mut range = exchange(comm, &out).concat();
    range.sort_unstable();
    let mut bins = vec![0u64; fine_depth() as usize + 1];
    add_bins(&range, &mut bins);
    let ends = all_gather_varcount(comm, &range.first().zip(range.last()).map_or(Vec::new(), |(a, b)| vec![*a, *b]));
    if comm.rank() == 0 {
        let ends: Vec<&Vec<u64>> = ends.iter().filter(|e| !e.is_empty()).collect();
        for w in ends.windows(2) {
            add_bins(&[w[0][1], w[1][0]], &mut bins);
        }
    }
    let mut total = vec![0u64; bins.len()];
    comm.all_reduce_into(&bins[..], &mut total[..], SystemOperation::sum());
    total
}

/// [`median`] of the union of every rank's `known` values: the value at index ⌊M/2⌋ of the M
/// values in ascending (total) order, found by a bisection on order-preserving keys of their bits
/// (at most 64 reductions of a count). `None` when no rank has a value. Collective.
fn median_over<C: Communicator>(comm: &C, known: &[f64]) -> Option<f64> {
    let m = sum(comm, known.len() as u64);
    if m == 0 {
        return None;
    }
    // the order of f64::total_cmp as unsigned integers
    let key = |x: f64| {
        let b = x.to_bits();
        if b >> 63 == 1 {
            !b
        } else {
            b | 1 << 63
        }
    };
    let unkey = |k: u64| f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k });
    let mut keys: Vec<u64> = known.iter().map(|&x| key(x)).collect();
    keys.sort_unstable();
    // the smallest key with more than ⌊M/2⌋ keys at or below it
    let (mut lo, mut hi) = (0u64, u64::MAX);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if sum(comm, keys.partition_point(|&k| k <= mid) as u64) > m / 2 {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let found = unkey(lo);
    debug_assert!(comm.size() > 1 || Some(found.to_bits()) == median(known.to_vec()).map(f64::to_bits));
    Some(found)
}
