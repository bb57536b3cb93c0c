//! `fill_missing_out_cells` distributed: each uncomputable cell of a restricted output takes, in
//! every fit, the value of the sample nearest to its centre over every rank — as one process does.
//!
//! At build time every rank learns every rank's uncomputable cells (an allgather of their ids),
//! finds its own nearest sample to each (the single process's exact search,
//! `crate::operator::nearest_samples_of`), and the ranks keep the smallest squared chord distance
//! and, among the ranks at that distance, the lowest global sample index (two element-wise
//! minimum reductions of integers: exact, whatever order MPI combines them in) — the single
//! process's answer, whose ties go to the lower index. Each owner then asks the rank holding its
//! cells' samples for their values; in a fit that rank sends them (one `MPI_Alltoallv`, counts
//! only between the ranks concerned).

use super::construct::{all_gather_varcount, exchange, rank_of};
use crate::geometry::Grid;
use crate::real::Real;
use mpi::collective::SystemOperation;
use mpi::traits::{Communicator, CommunicatorCollectives};

/// Where the values of this rank's uncomputable cells come from, and what it sends the others.
pub(super) struct Fill {
    /// the global index of the sample each owned uncomputable cell takes its value from
    pub from: Vec<u64>,
    /// per rank: the caller's indices of this rank's samples whose values it sends there
    send: Vec<Vec<usize>>,
    /// per owned uncomputable cell: the rank sending its value and the slot in that rank's block
    recv: Vec<(usize, usize)>,
    /// per rank: the values asked of it per row
    asked: Vec<usize>,
}

/// This rank's samples and cells, as the fill needs them.
pub(super) struct Own<'a> {
    /// the grid of the parameters (its scheme names the cells)
    pub grid: &'a Grid,
    /// the ids of this rank's uncomputable cells
    pub cells: Vec<u64>,
    /// this rank's used samples: caller's indices and coordinates (degrees)
    pub used: &'a [usize],
    pub lon: &'a [f64],
    pub lat: &'a [f64],
    /// the first global sample index of each rank
    pub starts: &'a [u64],
}

impl Fill {
    /// The nearest samples of every rank's uncomputable cells, and the plan of the values' exchange
    /// (`None` where no rank has an uncomputable cell). Collective.
    pub fn new<C: Communicator>(comm: &C, own: Own<'_>) -> Option<Fill> {
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        let all = all_gather_varcount(comm, &own.cells);
        let total: usize = all.iter().map(Vec::len).sum();
        if total == 0 {
            return None;
        }
        let grid = own.grid;
        let centres: Vec<[f64; 3]> =
            all.concat().iter().map(|&id| grid.center_nested_xyz(grid.nested_id(id))).collect();
        let offset = own.starts[rank];
        let local = crate::operator::nearest_samples_of(grid, own.lon, own.lat, &centres);
        // the smallest distance (non-negative doubles order as their bits), then the lowest index there
        let bits: Vec<u64> = local.iter().map(|&(d, _)| d.to_bits()).collect();
        let mut least = vec![0u64; total];
        comm.all_reduce_into(&bits[..], &mut least[..], SystemOperation::min());
        let index: Vec<u64> = bits
            .iter()
            .zip(&local)
            .zip(&least)
            .map(|((&b, &(_, j)), &l)| if b == l { offset + j as u64 } else { u64::MAX })
            .collect();
        let mut nearest = vec![0u64; total];
        comm.all_reduce_into(&index[..], &mut nearest[..], SystemOperation::min());

        let first: usize = all[..rank].iter().map(Vec::len).sum();
        let from = nearest[first..first + own.cells.len()].to_vec();
        let mut want = vec![Vec::new(); size];
        let recv = from
            .iter()
            .map(|&g| {
                let r = rank_of(own.starts, g);
                want[r].push(g - own.starts[r]);
                (r, want[r].len() - 1)
            })
            .collect();
        let asked = want.iter().map(Vec::len).collect();
        let send = exchange(comm, &want).iter().map(|js| js.iter().map(|&j| own.used[j as usize]).collect()).collect();
        Some(Fill { from, send, recv, asked })
    }

    /// The value of each owned uncomputable cell in each row of `rows` of `val` (B × n, row-major:
    /// the caller's samples), row by row. Collective; returns also the bytes and messages sent.
    pub fn values<C: Communicator, F: Real>(
        &self,
        comm: &C,
        val: &[F],
        n: usize,
        rows: &[usize],
    ) -> (Vec<F>, u64, u64) {
        let out: Vec<Vec<f64>> = self
            .send
            .iter()
            .map(|idx| rows.iter().flat_map(|&row| idx.iter().map(move |&i| val[row * n + i].to_f64())).collect())
            .collect();
        let bytes = out.iter().map(|v| 8 * v.len() as u64).sum();
        let messages = out.iter().filter(|v| !v.is_empty()).count() as u64;
        let got = exchange(comm, &out);
        let values = (0..rows.len())
            .flat_map(|j| self.recv.iter().map(move |&(r, slot)| (r, j * self.asked[r] + slot)))
            .map(|(r, at)| F::from_f64(got[r][at]))
            .collect();
        (values, bytes, messages)
    }
}
