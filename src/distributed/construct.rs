//! The distributed construction (docs/distributed.md): each rank receives the *ghost samples* of
//! the other ranks that can influence its own samples' links and its cells' rows of M, builds the
//! single-process operator of its own and ghost samples in the global sample order, and keeps what
//! it owns: its samples' links (MT) and the rows of M and Dx of its cells.
//!
//! Global sample order: rank 0's samples (those used), then rank 1's, … — the operator equals the
//! single-process operator of that concatenation.

use super::{check_parameters, check_samples, collective};
use crate::backend::pages::Pool;
use crate::backend::LEFT_OUT;
use crate::error::{Error, Result};
use crate::geometry::Grid;
use crate::operator::{Area, LinkParts, Params, PsfResampler, NO_REQUESTED_CELL_KEPT};
use crate::real::Real;
use crate::sparse::{CellLinks, SampleLinks};
use mpi::datatype::{Partition, PartitionMut};
use mpi::traits::{Communicator, CommunicatorCollectives, Root};
use mpi::Count;
use rayon::prelude::*;

/// The part of the operator of the union of every rank's samples that one rank owns.
pub struct DistributedResampler<F: Real> {
    rank: usize,
    /// samples this rank passed
    n: usize,
    /// global index of this rank's first used sample, and the used samples' caller indices
    offset: u64,
    used: Vec<usize>,
    npt: usize,
    cell_ids: Vec<u64>,
    dx: Vec<F>,
    /// with `out_cell_ids`: the owned cells without enough support (indices, ascending)
    pub(super) uncomputable: Vec<u32>,
    /// the used sample (index into `used`) of each row of the links, in the operator's order
    sample_order: Vec<u32>,
    /// the distances of the links (rows as `sample_order`)
    d_m: Vec<F>,
    /// the area weight of each used sample (as `used`)
    pub(super) area: Vec<F>,
    ghosts: usize,
    /// the other ranks' cells this rank's samples link to, with their owners, by (owner, id)
    pub(super) ghost_cells: Vec<(usize, u64)>,
    /// the first global sample index of each rank
    pub(super) starts: Vec<u64>,
    /// the used samples over all ranks
    pub(super) n_total: usize,
    /// the data of the distributed solve (`super::solve`): the links in local indices
    pub(super) solve: Option<super::solve::SolveData<F>>,
    /// with `fill_missing_out_cells`: where the uncomputable cells' values come from
    pub(super) fill: Option<super::fill::Fill>,
    /// the solve's large blocks between calls (`keep_blocks`)
    pub(super) blocks: Pool<F>,
}

/// This rank's links in local indices, as the CPU backend takes them: samples are this rank's
/// rows (the operator's order) then the ghost samples its cells' rows of M read (by global index);
/// cells are the owned ones then the ghost cells its samples link to (as `ghost_cells`).
pub(super) struct LocalLinks<F: Real> {
    pub samples: SampleLinks<F>,
    pub cells: CellLinks<F>,
    /// the global index of each ghost sample, ascending
    pub ghost_samples: Vec<u64>,
}

/// A link slot without a cell.
pub const NO_CELL: u64 = u64::MAX;

/// Whether a local build's error means only that no cell is near this rank's samples (none passes
/// the keep threshold, or none of the requested ones does): the rank then takes part with its
/// samples unlinked — one process would link them to no cell either.
fn no_cell_here(e: &Error) -> bool {
    match e {
        Error::NoCellPassedThreshold { .. } => true,
        Error::InvalidParameter { name: "out_cell_ids", reason, .. } => reason == NO_REQUESTED_CELL_KEPT,
        _ => false,
    }
}

/// The offset of each rank's block in a buffer of consecutive blocks of `counts` values.
fn displacements(counts: &[Count]) -> Vec<Count> {
    counts.iter().scan(0, |a, &c| Some(std::mem::replace(a, *a + c))).collect()
}

/// A buffer of consecutive blocks of `counts` values, split rank by rank.
fn by_rank<T: Copy>(all: &[T], counts: &[Count]) -> Vec<Vec<T>> {
    let mut rest = all;
    counts
        .iter()
        .map(|&c| {
            let (block, tail) = rest.split_at(c as usize);
            rest = tail;
            block.to_vec()
        })
        .collect()
}

/// A zeroed buffer for consecutive blocks of `counts` values.
fn buffer<T: Copy + Default>(counts: &[Count]) -> Vec<T> {
    vec![T::default(); counts.iter().map(|&c| c as usize).sum()]
}

/// Every rank's values gathered on every rank, rank by rank.
pub(super) fn all_gather_varcount<C: Communicator, T>(comm: &C, mine: &[T]) -> Vec<Vec<T>>
where
    T: mpi::datatype::Equivalence + Copy + Default,
{
    let mut counts = vec![0 as Count; comm.size() as usize];
    comm.all_gather_into(&(mine.len() as Count), &mut counts[..]);
    let mut all = buffer(&counts);
    comm.all_gather_varcount_into(mine, &mut PartitionMut::new(&mut all[..], &counts[..], &displacements(&counts)[..]));
    by_rank(&all, &counts)
}

/// Every rank's values on rank `root`, rank by rank (`None` on the other ranks). Collective.
pub(super) fn gather_to<C: Communicator, T>(comm: &C, root: usize, mine: &[T]) -> Option<Vec<Vec<T>>>
where
    T: mpi::datatype::Equivalence + Copy + Default,
{
    let at = comm.process_at_rank(root as i32);
    let count = mine.len() as Count;
    if comm.rank() as usize != root {
        at.gather_into(&count);
        at.gather_varcount_into(mine);
        return None;
    }
    let mut counts = vec![0 as Count; comm.size() as usize];
    at.gather_into_root(&count, &mut counts[..]);
    let mut all = buffer(&counts);
    at.gather_varcount_into_root(mine, &mut PartitionMut::new(&mut all[..], &counts[..], &displacements(&counts)[..]));
    Some(by_rank(&all, &counts))
}

/// Sends `out[r]` to rank r and returns what each rank sent here, rank by rank.
pub(super) fn exchange<C: Communicator, T>(comm: &C, out: &[Vec<T>]) -> Vec<Vec<T>>
where
    T: mpi::datatype::Equivalence + Copy + Default,
{
    let send_counts: Vec<Count> = out.iter().map(|v| v.len() as Count).collect();
    let mut recv_counts = vec![0 as Count; comm.size() as usize];
    comm.all_to_all_into(&send_counts[..], &mut recv_counts[..]);
    let send: Vec<T> = out.concat();
    let mut recv = buffer(&recv_counts);
    comm.all_to_all_varcount_into(
        &Partition::new(&send[..], &send_counts[..], &displacements(&send_counts)[..]),
        &mut PartitionMut::new(&mut recv[..], &recv_counts[..], &displacements(&recv_counts)[..]),
    );
    by_rank(&recv, &recv_counts)
}

/// The records of the other ranks' samples near this rank's: every rank gives the parent cell
/// (on `coarse`) of each of its samples, `parent[j]`, and receives the records (`record(j)`, W
/// values) of the other ranks' samples whose parent is one of its own parents or next to one (one
/// ring of `coarse`) — every other rank's samples when `coarse` is `None`. Collective.
pub(super) fn near_records<C: Communicator, const W: usize>(
    comm: &C,
    coarse: Option<&Grid>,
    parent: &[u64],
    record: impl Fn(usize) -> [f64; W],
) -> Vec<[f64; W]> {
    let rank = comm.rank() as usize;
    let mut near: Vec<u64> = match coarse {
        Some(g) => {
            let mut own = parent.to_vec();
            own.sort_unstable();
            own.dedup();
            own.iter().flat_map(|&q| g.kth_neighbourhood_nested(q, 1)).collect()
        }
        None => Vec::new(),
    };
    near.sort_unstable();
    near.dedup();
    let wanted = all_gather_varcount(comm, &near);
    let out: Vec<Vec<f64>> = (0..wanted.len())
        .map(|r| {
            let sends = |j: &usize| r != rank && (coarse.is_none() || wanted[r].binary_search(&parent[*j]).is_ok());
            (0..parent.len()).filter(sends).flat_map(&record).collect()
        })
        .collect();
    exchange(comm, &out).concat().chunks_exact(W).map(|c| c.try_into().expect("W values")).collect()
}

/// The rank holding global sample `g`, from each rank's first global index.
pub(super) fn rank_of(starts: &[u64], g: u64) -> usize {
    starts.partition_point(|&s| s <= g) - 1
}

/// Rings of cells at the operator's level within which another rank's samples can change this
/// rank's links or cell rows: a cell's row needs the samples linked to it (within the search
/// square, `ring_search_max`), whose links need the kept cells of their own search squares, whose
/// keep sums need the samples within `ring_weight`.
fn ghost_rings(p: &Params) -> Result<u32> {
    let (rw, _, rs) = p.rings()?;
    // and every sample near a requested cell no sample links to (see `owners`)
    Ok((2 * rs + rw).max(2 * (rw + 1)))
}

/// The local build's samples (own and ghost, in the order given to the operator) and where they
/// come from.
struct Part<'a> {
    /// global indices, ascending
    global: &'a [u64],
    lon: &'a [f64],
    lat: &'a [f64],
    rank: usize,
    rank_of: &'a dyn Fn(u64) -> usize,
    offset: u64,
    /// the nested cell of each used sample (as `used`), at the operator's level
    own_cells: &'a [u64],
}

impl<F: Real> DistributedResampler<F> {
    /// Builds, collectively on every rank of `comm`, the operator of the union of the ranks'
    /// samples and keeps this rank's part: its samples' links and the cells it owns — a kept cell
    /// is owned by the lowest rank holding a sample inside it, or where no sample lies inside it,
    /// the lowest rank whose samples link to it (with `out_cell_ids`, a requested cell no sample
    /// links to: the lowest rank with a sample within `ring_weight + 1` rings of it). A rank near
    /// no (requested) cell takes part with its samples unlinked. Every rank must pass the same
    /// parameters; an error on one rank is an error on every rank ([`super::collective`]).
    pub fn new<C: Communicator>(comm: &C, lon_deg: &[f64], lat_deg: &[f64], params: &Params) -> Result<Self> {
        check_parameters::<C, F>(comm, params)?;
        check_samples(comm, lon_deg, lat_deg, params)?;
        if let Area::Explicit(a) = &params.area {
            let local = crate::operator::validate_area(a, lon_deg.len(), None);
            collective(comm, local)?;
        }
        let rank = comm.rank() as usize;
        let used: Vec<usize> = match &params.sample_mask {
            Some(m) => (0..lon_deg.len()).filter(|&i| m[i]).collect(),
            None => (0..lon_deg.len()).collect(),
        };
        let counts = all_gather_varcount(comm, &[used.len() as u64]);
        let starts: Vec<u64> = counts.iter().scan(0, |a, c| Some(std::mem::replace(a, *a + c[0]))).collect();
        let total: u64 = counts.iter().map(|c| c[0]).sum();
        let offset = starts[rank];
        let rank_of = |g: u64| rank_of(&starts, g);
        // the used samples' areas: given, or estimated over the union (None: uniform)
        let area_used: Option<Vec<f64>> = match &params.area {
            Area::Explicit(a) => Some(used.iter().map(|&i| a[i]).collect()),
            mode => {
                let pick = |v: &[f64]| used.iter().map(|&i| v[i]).collect::<Vec<f64>>();
                let (ulon, ulat) = (pick(lon_deg), pick(lat_deg));
                super::area::areas(comm, mode, &ulon, &ulat, offset, total, params.radius)?
            }
        };
        let area = |j: usize| area_used.as_ref().map_or(1.0, |a| a[j]);

        // the ghost samples: those in the parent cells (coarse enough to span the ghost rings)
        // next to this rank's parents
        let grid = Grid::new(params.level, true, params.ellipsoid)?;
        let shift = (32 - (ghost_rings(params)?.max(1) - 1).leading_zeros()).min(params.level as u32);
        let coarse = Grid::new(params.level - shift as u8, true, params.ellipsoid)?;
        let own_cells: Vec<u64> = used.par_iter().map(|&i| grid.hash_nested(lon_deg[i], lat_deg[i])).collect();
        let parent: Vec<u64> = own_cells.iter().map(|&h| h >> (2 * shift)).collect();
        let ghosts = near_records(comm, Some(&coarse), &parent, |j| {
            let i = used[j];
            [lon_deg[i], lat_deg[i], area(j), (offset + j as u64) as f64]
        });

        // own and ghost samples in the global order
        let mut local: Vec<(u64, f64, f64, f64)> = used
            .iter()
            .enumerate()
            .map(|(j, &i)| (offset + j as u64, lon_deg[i], lat_deg[i], area(j)))
            .chain(ghosts.iter().map(|g| (g[3] as u64, g[0], g[1], g[2])))
            .collect();
        local.sort_unstable_by_key(|s| s.0);
        let lp = Params {
            area: match area_used {
                Some(_) => Area::Explicit(local.iter().map(|s| s.3).collect()),
                None => Area::Uniform,
            },
            sample_mask: None,
            ..params.clone()
        };
        let (llon, llat): (Vec<f64>, Vec<f64>) = local.iter().map(|s| (s.1, s.2)).unzip();
        let global: Vec<u64> = local.iter().map(|s| s.0).collect();
        // (the temporaries go before the local operator takes its memory)
        drop((local, ghosts, parent));
        let (op, none_here) = match PsfResampler::<F>::new(&llon, &llat, &lp) {
            Ok(op) => (Ok(Some(op)), None),
            Err(e) if no_cell_here(&e) => (Ok(None), Some(e)),
            Err(e) => (Err(e), None),
        };
        drop(lp);
        let op = collective(comm, op)?;
        let n_ghosts = global.len() - used.len();
        let part =
            Part { global: &global, lon: &llon, lat: &llat, rank, rank_of: &rank_of, offset, own_cells: &own_cells };
        let local = match op {
            Some(op) => Self::extract(op, part, used, lon_deg.len(), n_ghosts),
            None => {
                let area: Vec<F> = (0..used.len()).map(|j| F::from_f64(area(j))).collect();
                Ok(Self::unlinked(params.npt, rank, offset, used, lon_deg.len(), area))
            }
        };
        let (mut d, links) = collective(comm, local)?;
        d.starts = starts;
        d.n_total = total as usize;
        d.solve = Some(super::solve::SolveData::new(comm, &d, links)?);
        if d.cells_total() == 0 {
            // no rank has a cell: the single process's error, on every rank
            collective(comm, none_here.map_or(Ok(()), Err))?;
            return Err(Error::NoSampleLinked { ring_search_max: params.rings()?.2 });
        }
        if params.fill_missing_out_cells && params.out_cell_ids.is_some() {
            let pick = |v: &[f64]| d.used.iter().map(|&i| v[i]).collect::<Vec<f64>>();
            let (ulon, ulat) = (pick(lon_deg), pick(lat_deg));
            let scheme = Grid::new(params.level, params.nest, params.ellipsoid)?;
            let cells = d.uncomputable.iter().map(|&c| d.cell_ids[c as usize]).collect();
            let own =
                super::fill::Own { grid: &scheme, cells, used: &d.used, lon: &ulon, lat: &ulat, starts: &d.starts };
            d.fill = super::fill::Fill::new(comm, own);
        }
        Ok(d)
    }

    /// The part of a rank none of whose samples links to a cell.
    fn unlinked(
        npt: usize,
        rank: usize,
        offset: u64,
        used: Vec<usize>,
        n: usize,
        area: Vec<F>,
    ) -> (Self, LocalLinks<F>) {
        let rows = used.len();
        let samples = SampleLinks { npt, hi: vec![-1; rows * npt], mt: vec![F::ZERO; rows * npt] };
        let cells = CellLinks { ptr: vec![0], sample: Vec::new(), m: Vec::new() };
        let d = DistributedResampler {
            rank,
            n,
            offset,
            used,
            npt,
            cell_ids: Vec::new(),
            dx: Vec::new(),
            uncomputable: Vec::new(),
            sample_order: (0..rows as u32).collect(),
            d_m: vec![F::INFINITY; rows * npt],
            area,
            ghosts: 0,
            ghost_cells: Vec::new(),
            starts: Vec::new(),
            n_total: 0,
            solve: None,
            fill: None,
            blocks: Pool::new(),
        };
        (d, LocalLinks { samples, cells, ghost_samples: Vec::new() })
    }

    /// This rank's part of the operator built on its own and ghost samples, and its links in
    /// local indices: moved out of the local operator and compacted in place (no second copy).
    fn extract(
        op: PsfResampler<F>,
        part: Part<'_>,
        used: Vec<usize>,
        n: usize,
        ghosts: usize,
    ) -> Result<(Self, LocalLinks<F>)> {
        let Part { global, rank, offset, .. } = part;
        // the global index of the sample at each of the operator's positions (one gather: the
        // positions follow the cells, the local samples the global order)
        let at: Vec<u64> = op.sample_order().par_iter().map(|&s| global[s as usize]).collect();
        let own = OwnSamples { at: &at, offset, n_used: used.len() };
        let owner = owners(&op, &part, &own);
        let owned: Vec<usize> = (0..op.k()).filter(|&c| owner[c] == rank).collect();
        let uncomputable = (op.uncomputable_cells().iter())
            .filter_map(|&c| owned.binary_search(&(c as usize)).ok().map(|i| i as u32))
            .collect();
        let npt = op.npt();
        let LinkParts { cell_ids, samples, cells, d_m, area, dx } = op.into_links()?;
        let (samples, sample_order, d_m, area, ghost_cells) =
            own_links(samples, d_m, &area, &cell_ids, &own, &owner, &owned);
        let (cells, ghost_samples) = owned_rows(cells, &own, &owned);
        let d = DistributedResampler {
            rank,
            n,
            offset,
            used,
            npt,
            cell_ids: owned.iter().map(|&c| cell_ids[c]).collect(),
            dx: owned.iter().map(|&c| dx[c]).collect(),
            uncomputable,
            sample_order,
            d_m,
            area,
            ghosts,
            ghost_cells,
            starts: Vec::new(),
            n_total: 0,
            solve: None,
            fill: None,
            blocks: Pool::new(),
        };
        Ok((d, LocalLinks { samples, cells, ghost_samples }))
    }

    /// This rank in the communicator.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// Samples this rank passed.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Links per sample.
    pub fn npt(&self) -> usize {
        self.npt
    }
    /// The global index of the sample of each row of [`DistributedResampler::links`] (the global
    /// order: rank 0's used samples in their order, then rank 1's, …).
    pub fn global_samples(&self) -> Vec<u64> {
        self.sample_order.iter().map(|&j| self.offset + j as u64).collect()
    }
    /// The caller's index of the sample of each row of [`DistributedResampler::links`] (the
    /// operator's order: by cell).
    pub fn caller_samples(&self) -> Vec<usize> {
        self.sample_order.iter().map(|&j| self.used[j as usize]).collect()
    }
    /// The caller's indices of the samples used, in the caller's order.
    pub fn used_samples(&self) -> &[usize] {
        &self.used
    }
    /// The area weight of each used sample (as [`Self::used_samples`]): given, or estimated over
    /// the union of the ranks' samples as one process estimates them ([`crate::Area`]).
    pub fn area(&self) -> &[F] {
        &self.area
    }
    /// The cells this rank owns, ascending ids (in the parameters' scheme).
    pub fn cell_ids(&self) -> &[u64] {
        &self.cell_ids
    }
    /// With `out_cell_ids`: the owned cells whose raw support is ≤ `threshold` (indices into
    /// [`Self::cell_ids`], ascending): NaN in every fit, as in one process.
    pub fn uncomputable_cells(&self) -> &[u32] {
        &self.uncomputable
    }
    /// With `fill_missing_out_cells`: the global index of the sample nearest to the centre of each
    /// of [`Self::uncomputable_cells`], whose value the cell takes in every fit (over every rank:
    /// the single process's choice). Empty otherwise.
    pub fn fill_samples(&self) -> &[u64] {
        self.fill.as_ref().map_or(&[], |f| &f.from)
    }
    /// `Dx` of the owned cells.
    pub fn cell_weight(&self) -> &[F] {
        &self.dx
    }
    /// The owned cells' rows of `M` (each sample's weight in the cell): CSR offsets over the owned
    /// cells, the global sample indices and the values, each row in the single-process operator's
    /// order (its samples by their own cell, then by global index: the order of its sums).
    pub fn m_rows(&self) -> (&[usize], Vec<u64>, &[F]) {
        let (data, rows) = (self.data(), self.sample_order.len() as u32);
        let global = |s: u32| match s.checked_sub(rows) {
            None => self.offset + self.sample_order[s as usize] as u64,
            Some(g) => data.ghost_samples[g as usize],
        };
        let c = &data.cells;
        (&c.ptr, c.sample.iter().map(|&s| global(s)).collect(), &c.m)
    }
    /// The used samples' links: cell ids ([`NO_CELL`] where a sample has fewer than npt), the
    /// values of `MT` and the distances (m; +∞ where missing), sample × npt row-major, the samples
    /// in the operator's order ([`DistributedResampler::global_samples`] names them).
    pub fn links(&self) -> (Vec<u64>, &[F], &[F]) {
        let (s, k) = (&self.data().samples, self.cell_ids.len());
        let id = |h: i32| match h {
            -1 => NO_CELL,
            h if (h as usize) < k => self.cell_ids[h as usize],
            h => self.ghost_cells[h as usize - k].1,
        };
        (s.hi.iter().map(|&h| id(h)).collect(), &s.mt, &self.d_m)
    }
    /// Ghost samples this rank received from the others.
    pub fn ghost_samples(&self) -> usize {
        self.ghosts
    }
}

/// The owner of each of the local operator's cells: the lowest rank with a sample inside it, else
/// the lowest rank whose samples link to it (`usize::MAX` for a cell of neither kind).
fn owners<F: Real>(op: &PsfResampler<F>, part: &Part<'_>, own: &OwnSamples<'_>) -> Vec<usize> {
    let Part { lon, lat, rank, rank_of, own_cells, .. } = *part;
    let (ids, npt, grid) = (op.cell_ids(), op.npt(), op.grid());
    let rank_at = |p: usize| if own.row(p).is_some() { rank } else { rank_of(own.at[p]) };
    let (order, hi) = (op.sample_order(), &op.host_samples().hi);
    // each sample's cell (this rank's hashed once already, the ghosts' now), by position: the
    // positions follow the samples' cells, so each search starts from the last one's answer
    let nested: Vec<u64> = order
        .par_iter()
        .enumerate()
        .map(|(p, &s)| match own.row(p) {
            Some(j) => own_cells[j as usize],
            None => grid.hash_nested(lon[s as usize], lat[s as usize]),
        })
        .collect();
    let inside_cell: Vec<Option<usize>> = nested
        .par_chunks(1 << 16)
        .flat_map_iter(|chunk| {
            let mut from = 0;
            chunk.iter().map(move |&cell| {
                let found = gallop(ids, from, grid.scheme_id(cell));
                from = found.unwrap_or_else(|i| i.min(ids.len().saturating_sub(1)));
                found.ok()
            })
        })
        .collect();
    let (mut owner, mut linking) = (vec![usize::MAX; ids.len()], vec![usize::MAX; ids.len()]);
    for (p, cell) in inside_cell.iter().enumerate() {
        let r = rank_at(p);
        if let Some(c) = *cell {
            owner[c] = owner[c].min(r);
        }
        for &h in hi[p * npt..(p + 1) * npt].iter().filter(|&&h| h >= 0) {
            linking[h as usize] = linking[h as usize].min(r);
        }
    }
    let mut owner: Vec<usize> = owner.iter().zip(linking).map(|(&o, l)| if o != usize::MAX { o } else { l }).collect();
    if owner.contains(&usize::MAX) {
        claim_unlinked(op, &nested, &rank_at, &mut owner);
    }
    owner
}

/// Owners for the cells with no sample inside and no link (requested cells of a restricted output,
/// kept but linked to by no sample): the lowest rank with a sample within `ring_weight + 1` rings
/// of the cell — a sample of the keep stage's sums. A rank with such a sample of its own sees every
/// such sample (the ghost width covers them), so the rank it finds is right; a rank without one
/// finds another rank, and does not claim the cell.
fn claim_unlinked<F: Real>(
    op: &PsfResampler<F>,
    nested: &[u64],
    rank_at: &dyn Fn(usize) -> usize,
    owner: &mut [usize],
) {
    let (grid, ids, rw) = (op.grid(), op.cell_ids(), op.rings().0);
    let mut by_cell: Vec<(u64, usize)> = nested.iter().enumerate().map(|(p, &c)| (c, rank_at(p))).collect();
    by_cell.sort_unstable();
    for (c, o) in owner.iter_mut().enumerate().filter(|(_, o)| **o == usize::MAX) {
        *o = grid
            .kth_neighbourhood_nested(grid.nested_id(ids[c]), rw + 1)
            .into_iter()
            .filter_map(|q| {
                let from = by_cell.partition_point(|&(cell, _)| cell < q);
                by_cell.get(from).filter(|&&(cell, _)| cell == q).map(|&(_, r)| r)
            })
            .min()
            .unwrap_or(usize::MAX);
    }
}

/// Which of the local operator's sample positions are this rank's own samples.
struct OwnSamples<'a> {
    /// the global index of the sample at each position
    at: &'a [u64],
    /// this rank's first global index, and its used samples
    offset: u64,
    n_used: usize,
}

impl OwnSamples<'_> {
    /// The used sample (index into `used`) at position p, if it is this rank's.
    fn row(&self, p: usize) -> Option<u32> {
        let g = self.at[p];
        (g >= self.offset && g < self.offset + self.n_used as u64).then(|| (g - self.offset) as u32)
    }
}

/// Links of this rank's samples (rows in the operator's sample order: by cell, so that the
/// products read nearby memory as in one process) in local cell indices, their rows' used samples,
/// distances and areas (as `used`), and the ghost cells they link to by (owner, id). The operator's
/// links and distances are compacted in place (this rank's rows keep their order; a row never moves
/// up past one not yet read).
#[allow(clippy::type_complexity)]
fn own_links<F: Real>(
    samples: SampleLinks<F>,
    mut d_m: Vec<F>,
    op_area: &[F],
    ids: &[u64],
    own: &OwnSamples<'_>,
    owner: &[usize],
    owned: &[usize],
) -> (SampleLinks<F>, Vec<u32>, Vec<F>, Vec<F>, Vec<(usize, u64)>) {
    let SampleLinks { npt, mut hi, mut mt } = samples;
    let n_used = own.n_used;
    // the local index of each owned cell; each ghost cell gets one in the order first met, made
    // its place among the ghosts by (owner, id) once all are known
    let mut local = vec![-1i32; ids.len()];
    owned.iter().enumerate().for_each(|(i, &c)| local[c] = i as i32);
    let k = owned.len();
    let mut ghost: Vec<(usize, u64, usize)> = Vec::new();
    let (mut rows, mut area) = (Vec::with_capacity(n_used), vec![F::ZERO; n_used]);
    for (p, &a) in op_area.iter().enumerate() {
        let Some(j) = own.row(p) else { continue };
        let (from, to) = (p * npt, rows.len() * npt);
        rows.push(j);
        area[j as usize] = a;
        for t in 0..npt {
            hi[to + t] = match hi[from + t] {
                -1 => -1,
                h if local[h as usize] >= 0 => local[h as usize],
                h => {
                    local[h as usize] = (k + ghost.len()) as i32;
                    ghost.push((owner[h as usize], ids[h as usize], ghost.len()));
                    local[h as usize]
                }
            };
        }
        if from != to {
            mt.copy_within(from..from + npt, to);
            d_m.copy_within(from..from + npt, to);
        }
    }
    let len = rows.len() * npt;
    // (the ghosts' rows go: mremap shrinks these large blocks in place)
    hi.truncate(len);
    mt.truncate(len);
    d_m.truncate(len);
    hi.shrink_to_fit();
    mt.shrink_to_fit();
    d_m.shrink_to_fit();
    ghost.sort_unstable();
    let mut place = vec![0i32; ghost.len()];
    ghost.iter().enumerate().for_each(|(i, &(_, _, first))| place[first] = (k + i) as i32);
    hi.iter_mut().filter(|h| **h >= k as i32).for_each(|h| *h = place[*h as usize - k]);
    let ghost_cells = ghost.into_iter().map(|(r, id, _)| (r, id)).collect();
    (SampleLinks { npt, hi, mt }, rows, d_m, area, ghost_cells)
}

/// The owned cells' rows of M (the single-process operator's, in its order) in local sample
/// indices — this rank's rows (its positions in order), then the ghost samples by global index —
/// and those ghosts' global indices. The operator's rows are compacted in place (owned cells
/// ascending: a row never moves up past one not yet read).
fn owned_rows<F: Real>(links: CellLinks<F>, own: &OwnSamples<'_>, owned: &[usize]) -> (CellLinks<F>, Vec<u64>) {
    let CellLinks { ptr: all_ptr, mut sample, mut m } = links;
    let n_used = own.n_used;
    // the local index of each of the operator's sample positions: this rank's rows first (its
    // positions in order: the rows were made so); the ghosts' (`LEFT_OUT` until known) once the
    // rows of M have named them
    let mut next = 0u32;
    let mut local: Vec<u32> = (0..own.at.len())
        .map(|p| match own.row(p) {
            Some(_) => {
                next += 1;
                next - 1
            }
            None => LEFT_OUT,
        })
        .collect();
    // one pass: a ghost gets a provisional index (n_used + the order first met), made its place
    // among the ghosts by global index once all are known
    let mut ghost: Vec<(u64, u32)> = Vec::new();
    let mut ptr = Vec::with_capacity(owned.len() + 1);
    ptr.push(0);
    let mut to = 0;
    for &c in owned {
        let q = all_ptr[c]..all_ptr[c + 1];
        for (i, from) in q.clone().enumerate() {
            let l = &mut local[sample[from] as usize];
            if *l == LEFT_OUT {
                *l = (n_used + ghost.len()) as u32;
                ghost.push((own.at[sample[from] as usize], *l));
            }
            sample[to + i] = *l;
        }
        if q.start != to {
            m.copy_within(q.clone(), to);
        }
        to += q.len();
        ptr.push(to);
    }
    sample.truncate(to);
    m.truncate(to);
    sample.shrink_to_fit();
    m.shrink_to_fit();
    ghost.sort_unstable();
    let mut place = vec![0u32; ghost.len()];
    ghost.iter().enumerate().for_each(|(i, &(_, first))| place[first as usize - n_used] = (n_used + i) as u32);
    sample.iter_mut().filter(|s| **s as usize >= n_used).for_each(|s| *s = place[*s as usize - n_used]);
    (CellLinks { ptr, sample, m }, ghost.into_iter().map(|(g, _)| g).collect())
}

/// `ids.binary_search(&id)` (ascending `ids`) by an exponential search from index `from`: O(log d)
/// for an answer d places away.
fn gallop(ids: &[u64], from: usize, id: u64) -> std::result::Result<usize, usize> {
    let from = from.min(ids.len());
    let (lo, hi) = if from < ids.len() && ids[from] < id {
        let mut step = 1;
        while from + step < ids.len() && ids[from + step] < id {
            step *= 2;
        }
        (from + step / 2, (from + step + 1).min(ids.len()))
    } else {
        let mut step = 1;
        while step <= from && ids[from - step] >= id {
            step *= 2;
        }
        (from.saturating_sub(step), (from - step / 2 + 1).min(ids.len()))
    };
    ids[lo..hi].binary_search(&id).map(|i| lo + i).map_err(|i| lo + i)
}

#[cfg(test)]
mod tests {
    use super::gallop;

    #[test]
    fn gallop_is_a_binary_search_from_anywhere() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for len in [0usize, 1, 2, 3, 7, 64, 1000] {
            let mut ids: Vec<u64> = (0..len).map(|_| next() % 5000).collect();
            ids.sort_unstable();
            ids.dedup();
            for from in 0..=ids.len() + 2 {
                for id in [0, 1, 2499, 4999, 5000, next() % 5001] {
                    assert_eq!(gallop(&ids, from, id), ids.binary_search(&id), "len {len} from {from} id {id}");
                }
                for &id in ids.iter().step_by(7) {
                    assert_eq!(gallop(&ids, from, id), ids.binary_search(&id));
                }
            }
        }
    }
}
