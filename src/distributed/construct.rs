//! The distributed construction (docs/distributed.md): each rank receives the *ghost samples* of
//! the other ranks that can influence its own samples' links and its cells' rows of M, builds the
//! single-process operator of its own and ghost samples in the global sample order, and keeps what
//! it owns: its samples' links (MT) and the rows of M and Dx of its cells.
//!
//! Global sample order: rank 0's samples (those used), then rank 1's, … — the operator equals the
//! single-process operator of that concatenation.

use super::{check_parameters, check_samples, collective};
use crate::error::{Error, Result};
use crate::geometry::Grid;
use crate::operator::{Area, Params, PsfResampler};
use crate::real::Real;
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
    m_ptr: Vec<usize>,
    m_sample: Vec<u64>,
    m_val: Vec<F>,
    link_cells: Vec<u64>,
    mt: Vec<F>,
    /// the used sample (index into `used`) of each row of the links, in the operator's order
    sample_order: Vec<u32>,
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
    /// the data of the distributed solve (`super::solve`), made once the part is extracted
    pub(super) solve: Option<super::solve::SolveData<F>>,
}

/// A link slot without a cell.
pub const NO_CELL: u64 = u64::MAX;

/// The options the distributed build does not support yet, as an error.
fn supported(p: &Params) -> Result<()> {
    match p.out_cell_ids {
        Some(_) => Err(Error::param("out_cell_ids", "given", "restricted output is not distributed yet")),
        None => Ok(()),
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
    Ok(2 * rs + rw)
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
}

impl<F: Real> DistributedResampler<F> {
    /// Builds, collectively on every rank of `comm`, the operator of the union of the ranks'
    /// samples and keeps this rank's part: its samples' links and the cells it owns — a kept cell
    /// is owned by the lowest rank holding a sample inside it, or where no sample lies inside it,
    /// the lowest rank whose samples link to it. Every rank must pass the same parameters; an
    /// error on one rank is an error on every rank ([`super::collective`]).
    pub fn new<C: Communicator>(comm: &C, lon_deg: &[f64], lat_deg: &[f64], params: &Params) -> Result<Self> {
        check_parameters::<C, F>(comm, params)?;
        check_samples(comm, lon_deg, lat_deg, params)?;
        collective(comm, supported(params))?;
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
        let parent: Vec<u64> = used.iter().map(|&i| grid.hash_nested(lon_deg[i], lat_deg[i]) >> (2 * shift)).collect();
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
        let op = collective(comm, PsfResampler::<F>::new(&llon, &llat, &lp))?;
        let global: Vec<u64> = local.iter().map(|s| s.0).collect();
        let n_ghosts = global.len() - used.len();
        let part = Part { global: &global, lon: &llon, lat: &llat, rank, rank_of: &rank_of, offset };
        let mut d = Self::extract(&op, part, used, lon_deg.len(), n_ghosts);
        drop(op);
        d.starts = starts;
        d.n_total = total as usize;
        d.solve = Some(super::solve::SolveData::new(comm, &d)?);
        Ok(d)
    }

    /// This rank's part of the operator built on its own and ghost samples.
    fn extract(op: &PsfResampler<F>, part: Part<'_>, used: Vec<usize>, n: usize, ghosts: usize) -> Self {
        let Part { global, lon, lat, rank, rank_of, offset } = part;
        let (ids, npt) = (op.cell_ids(), op.npt());
        // the operator's sample positions (its samples in cell order): position p holds local
        // sample order[p]; the links by position
        let order = op.sample_order();
        let sl = op.host_samples();
        // the cells' owners: the lowest rank with a sample inside, else the lowest linking rank
        let grid = op.grid();
        let inside_cell: Vec<Option<usize>> = (0..global.len())
            .into_par_iter()
            .map(|s| grid.cell(lon[s], lat[s]).ok().and_then(|c| ids.binary_search(&c).ok()))
            .collect();
        let mut inside = vec![usize::MAX; ids.len()];
        let mut linking = vec![usize::MAX; ids.len()];
        for (s, &g) in global.iter().enumerate() {
            if let Some(c) = inside_cell[s] {
                inside[c] = inside[c].min(rank_of(g));
            }
        }
        for (p, &s) in order.iter().enumerate() {
            let r = rank_of(global[s as usize]);
            for &h in &sl.hi[p * npt..(p + 1) * npt] {
                if h >= 0 {
                    linking[h as usize] = linking[h as usize].min(r);
                }
            }
        }
        let owner = |c: usize| if inside[c] != usize::MAX { inside[c] } else { linking[c] };
        let owned: Vec<usize> = (0..ids.len()).filter(|&c| owner(c) == rank).collect();
        let mut ghost_cells: Vec<(usize, u64)> = Vec::new();

        // the owned cells' rows of M, in the operator's order (the single-process order of the sums)
        let links = op.host_cells();
        let mut m_ptr = Vec::with_capacity(owned.len() + 1);
        m_ptr.push(0);
        let (mut m_sample, mut m_val) = (Vec::new(), Vec::new());
        for &c in &owned {
            for q in links.ptr()[c]..links.ptr()[c + 1] {
                m_sample.push(global[order[links.sample()[q] as usize] as usize]);
                m_val.push(links.m[q]);
            }
            m_ptr.push(m_sample.len());
        }
        let dx: Vec<F> = owned.iter().map(|&c| op.cell_weight()[c]).collect();

        // this rank's samples' links (the operator's rows of MT by sample), in the operator's
        // sample order (by cell: the products then read nearby memory, as in one process)
        let (n_used, d_all) = (used.len(), op.host_d_m());
        let mut link_cells = vec![NO_CELL; n_used * npt];
        let (mut mt, mut d_m) = (vec![F::ZERO; n_used * npt], vec![F::INFINITY; n_used * npt]);
        let mut sample_order: Vec<u32> = Vec::with_capacity(n_used);
        let op_area = op.try_host_area().expect("a host operator");
        let mut area = vec![F::ZERO; n_used];
        for (p, &s) in order.iter().enumerate() {
            let g = global[s as usize];
            if g < offset || g >= offset + n_used as u64 {
                continue;
            }
            let (j, at) = (sample_order.len() * npt, p * npt);
            sample_order.push((g - offset) as u32);
            area[(g - offset) as usize] = op_area[p];
            for t in 0..npt {
                let h = sl.hi[at + t];
                if h >= 0 {
                    link_cells[j + t] = ids[h as usize];
                    if owner(h as usize) != rank {
                        ghost_cells.push((owner(h as usize), ids[h as usize]));
                    }
                }
            }
            mt[j..j + npt].copy_from_slice(&sl.mt[at..at + npt]);
            d_m[j..j + npt].copy_from_slice(&d_all[at..at + npt]);
        }
        DistributedResampler {
            rank,
            n,
            offset,
            used,
            npt,
            cell_ids: owned.iter().map(|&c| ids[c]).collect(),
            dx,
            m_ptr,
            m_sample,
            m_val,
            link_cells,
            mt,
            d_m,
            sample_order,
            area,
            ghosts,
            ghost_cells: {
                ghost_cells.sort_unstable();
                ghost_cells.dedup();
                ghost_cells
            },
            starts: Vec::new(),
            n_total: 0,
            solve: None,
        }
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
    /// `Dx` of the owned cells.
    pub fn cell_weight(&self) -> &[F] {
        &self.dx
    }
    /// The owned cells' rows of `M` (each sample's weight in the cell): CSR offsets over the owned
    /// cells, the global sample indices and the values, each row in the single-process operator's
    /// order (its samples by their own cell, then by global index: the order of its sums).
    pub fn m_rows(&self) -> (&[usize], &[u64], &[F]) {
        (&self.m_ptr, &self.m_sample, &self.m_val)
    }
    /// The used samples' links: cell ids ([`NO_CELL`] where a sample has fewer than npt), the
    /// values of `MT` and the distances (m; +∞ where missing), sample × npt row-major, the samples
    /// in the operator's order ([`DistributedResampler::global_samples`] names them).
    pub fn links(&self) -> (&[u64], &[F], &[F]) {
        (&self.link_cells, &self.mt, &self.d_m)
    }
    /// Ghost samples this rank received from the others.
    pub fn ghost_samples(&self) -> usize {
        self.ghosts
    }
}
