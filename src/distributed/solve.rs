//! The distributed solve (docs/distributed.md): the CPU backend on each rank's part — its samples'
//! links (MT) and its cells' rows of M — with the reductions combined over the ranks and the other
//! ranks' values exchanged before each product ([`Ranks`]); the solver is the single-process one.
//!
//! Vectors on cells hold a rank's owned cells, vectors on samples its own (used) samples. Before
//! `v·MT` a rank receives the values of the *ghost cells* its samples link to from their owners;
//! before `u·M` the values of the *ghost samples* linked to its cells. Dot products are each rank's
//! (in the reduction tree) added in rank order, so every rank holds the same scalars, takes the same
//! CG steps, and repeated runs with the same decomposition are bitwise identical.

use super::collective;
use super::construct::{all_gather_varcount, exchange, rank_of, DistributedResampler, NO_CELL};
use crate::backend::cpu::{Cpu, Ranks};
use crate::backend::{Axis, Backend, RowFacts, LEFT_OUT};
use crate::error::{Error, Result};
use crate::operator::fit::{expand_rows, first_infinite, Rows};
use crate::real::Real;
use crate::solver::{self, pow2_scales, EmptyCells, Fit, FitInfo, FitOptions, MissingData, Problem, Stopping};
use crate::sparse::{CellLinks, SampleLinks};
use mpi::traits::{Communicator, CommunicatorCollectives};
use std::collections::HashMap;

/// What one rank sends the others before a product, and where it puts what it receives.
pub(crate) struct Halo<F> {
    /// per rank: the local elements it asked for, in its order
    send: Vec<Vec<u32>>,
    /// elements received
    recv: usize,
    /// whether any rank exchanges anything (otherwise no rank calls MPI)
    active: bool,
    /// the local block followed by the received values, kept between products (a fresh block of
    /// tens of MB per product would cost its page faults every time)
    buf: std::sync::Mutex<Vec<F>>,
}

impl<F: Real> Halo<F> {
    /// `want[r]`: the keys this rank needs from rank r, in the order it appends them; each rank
    /// answers with the local index `index_of` gives each key asked of it. Collective.
    fn plan<C: Communicator>(comm: &C, want: &[Vec<u64>], index_of: impl Fn(u64) -> u32) -> Halo<F> {
        let asked = exchange(comm, want);
        let recv: usize = want.iter().map(Vec::len).sum();
        let mut any = 0u64;
        comm.all_reduce_into(&(recv as u64), &mut any, mpi::collective::SystemOperation::sum());
        Halo {
            send: asked.iter().map(|keys| keys.iter().map(|&k| index_of(k)).collect()).collect(),
            recv,
            active: any > 0,
            buf: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Calls `f` with the E×s block `local` followed by the values received (rank by rank).
    /// Collective.
    fn extend<C: Communicator>(&self, comm: &C, local: &[F], s: usize, f: &mut dyn FnMut(&[F])) {
        if !self.active {
            return f(local);
        }
        let out: Vec<Vec<f64>> = self
            .send
            .iter()
            .map(|idx| {
                idx.iter()
                    .flat_map(|&e| local[e as usize * s..(e as usize + 1) * s].iter().map(|x| x.to_f64()))
                    .collect()
            })
            .collect();
        let got = exchange(comm, &out).concat();
        if self.recv == 0 {
            return f(local);
        }
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        buf.clear();
        buf.extend_from_slice(local);
        buf.extend(got.iter().map(|&x| F::from_f64(x)));
        f(&buf);
    }
}

/// A rank's links in its local numbering: cells = owned then ghost cells (by owner, then id);
/// samples = own used samples then ghost samples (by global index).
pub(crate) struct SolveData<F: Real> {
    samples: SampleLinks<F>,
    cells: CellLinks<F>,
    cell_halo: Halo<F>,
    sample_halo: Halo<F>,
}

impl<F: Real> SolveData<F> {
    /// Collective.
    pub(super) fn new<C: Communicator>(comm: &C, d: &DistributedResampler<F>) -> Result<Self> {
        let (size, k) = (comm.size() as usize, d.cell_ids().len());
        let ghost_index: HashMap<u64, usize> =
            d.ghost_cells.iter().enumerate().map(|(i, &(_, id))| (id, k + i)).collect();
        let local_cell = |id: u64| -> i32 {
            match (id, d.cell_ids().binary_search(&id)) {
                (NO_CELL, _) => -1,
                (_, Ok(c)) => c as i32,
                (_, Err(_)) => ghost_index[&id] as i32,
            }
        };
        let (cells_of_links, mt, _) = d.links();
        let samples =
            SampleLinks { npt: d.npt(), hi: cells_of_links.iter().map(|&c| local_cell(c)).collect(), mt: mt.to_vec() };
        let mut want_cells = vec![Vec::new(); size];
        d.ghost_cells.iter().for_each(|&(r, id)| want_cells[r].push(id));
        let cell_halo = Halo::plan(comm, &want_cells, |id| {
            d.cell_ids().binary_search(&id).expect("a cell asked of its owner") as u32
        });

        // own samples in the links' order (by cell), then the ghosts by global index
        let own = d.global_samples();
        let (first, n) = (own.iter().copied().min().unwrap_or(0), own.len() as u64);
        let is_own = |g: u64| g >= first && g < first + n;
        let mut row_of = vec![0u32; own.len()];
        own.iter().enumerate().for_each(|(row, &g)| row_of[(g - first) as usize] = row as u32);
        let (ptr, smp, m) = d.m_rows();
        let mut ghosts: Vec<u64> = smp.iter().copied().filter(|&g| !is_own(g)).collect();
        ghosts.sort_unstable();
        ghosts.dedup();
        let local_sample = |g: u64| -> u32 {
            if is_own(g) {
                row_of[(g - first) as usize]
            } else {
                n as u32 + ghosts.binary_search(&g).expect("a ghost sample") as u32
            }
        };
        let cells =
            CellLinks { ptr: ptr.to_vec(), sample: smp.iter().map(|&g| local_sample(g)).collect(), m: m.to_vec() };
        let mut want_samples = vec![Vec::new(); size];
        for &g in &ghosts {
            want_samples[rank_of(&d.starts, g)].push(g);
        }
        let sample_halo = Halo::plan(comm, &want_samples, |g| row_of[(g - first) as usize]);
        Ok(SolveData { samples, cells, cell_halo, sample_halo })
    }
}

/// The communication of one rank's CPU backend.
struct OnRanks<'a, C: Communicator, F: Real> {
    comm: &'a C,
    data: &'a SolveData<F>,
}

// SAFETY: `Ranks` is called only from the thread that drives the solve (its contract), never from
// the backend's parallel loops, so the communicator is never used from two threads at once.
unsafe impl<C: Communicator, F: Real> Sync for OnRanks<'_, C, F> {}

impl<C: Communicator, F: Real> Ranks<F> for OnRanks<'_, C, F> {
    fn sums(&self, local: Vec<f64>) -> Result<Vec<f64>> {
        let mut out = vec![0.0f64; local.len()];
        for part in all_gather_varcount(self.comm, &local) {
            out.iter_mut().zip(&part).for_each(|(o, v)| *o += v);
        }
        Ok(out)
    }
    fn maxima(&self, local: Vec<f64>) -> Result<Vec<f64>> {
        let mut out = local.clone();
        for part in all_gather_varcount(self.comm, &local) {
            out.iter_mut().zip(&part).for_each(|(o, &v)| *o = o.max(v));
        }
        Ok(out)
    }
    fn facts(&self, local: Vec<RowFacts>) -> Result<Vec<RowFacts>> {
        let flat: Vec<f64> = local.iter().flat_map(|f| [f.nan as f64, f.inf as f64, f.low, f.high]).collect();
        let mut out = vec![RowFacts::default(); local.len()];
        for part in all_gather_varcount(self.comm, &flat) {
            for (o, p) in out.iter_mut().zip(part.chunks_exact(4)) {
                o.nan += p[0] as u64;
                o.inf += p[1] as u64;
                o.low = o.low.min(p[2]);
                o.high = o.high.max(p[3]);
            }
        }
        Ok(out)
    }
    fn with_ghost_cells(&self, v: &[F], s: usize, f: &mut dyn FnMut(&[F])) -> Result<()> {
        self.data.cell_halo.extend(self.comm, v, s, f);
        Ok(())
    }
    fn with_ghost_samples(&self, u: &[F], s: usize, f: &mut dyn FnMut(&[F])) -> Result<()> {
        self.data.sample_halo.extend(self.comm, u, s, f);
        Ok(())
    }
}

impl<F: Real> DistributedResampler<F> {
    /// For the caller's rows `rows` with missing samples that were not renormalised (the
    /// reference's zero-filling): whether each of this rank's cells has a valid linked sample, its
    /// own or a ghost (cell × |rows|). Collective.
    fn valid_linked<C: Communicator>(
        &self,
        ranks: &OnRanks<'_, C, F>,
        val: &[F],
        order: &[u32],
        rows: &[usize],
    ) -> Result<Vec<bool>> {
        let (n, nz, k) = (self.n(), rows.len(), self.cell_ids().len());
        if nz == 0 {
            return Ok(Vec::new());
        }
        let mut ind = vec![F::ZERO; order.len() * nz];
        for (q, &row) in rows.iter().enumerate() {
            for (e, &i) in order.iter().enumerate() {
                ind[e * nz + q] = if val[row * n + i as usize].is_nan() { F::ZERO } else { F::ONE };
            }
        }
        let cl = &ranks.data.cells;
        let mut out = Vec::new();
        ranks.with_ghost_samples(&ind, nz, &mut |ext| {
            out = (0..k * nz)
                .map(|x| {
                    let (c, q) = (x / nz, x % nz);
                    cl.sample[cl.ptr[c]..cl.ptr[c + 1]].iter().any(|&p| ext[p as usize * nz + q] != F::ZERO)
                })
                .collect();
        })?;
        Ok(out)
    }

    /// Fits, collectively on every rank, the field of the union of the ranks' samples that best
    /// explains B rows of values (row-major, B × this rank's samples; NaN = missing): the single-
    /// process [`crate::PsfResampler::fit`] on the union, each rank getting the rows of its own
    /// cells (B × `cell_ids().len()`, in the order of `cell_ids()`). Every rank must pass the same
    /// number of rows and the same options. Not distributed yet: bounds, conservation, `x0`.
    pub fn fit<C: Communicator>(&self, comm: &C, val: &[F], opts: &FitOptions<F>) -> Result<Fit<F>> {
        let n = self.n();
        let local = if opts.is_bounded() || opts.conservative || opts.x0.is_some() {
            Err(Error::param("opts", "bounds, conservative or x0", "not distributed yet: plain and damped fits only"))
        } else if n == 0 || !val.len().is_multiple_of(n) {
            Err(Error::LengthMismatch { what: "val", expected: n, got: val.len() })
        } else {
            Ok(val.len() / n)
        };
        let b = collective(comm, local)?;
        let counts = all_gather_varcount(comm, &[b as u64]);
        if let Some(r) = counts.iter().position(|c| c[0] != b as u64) {
            return Err(Error::param(
                "val",
                b,
                format!("every rank must pass the same rows: rank {r} passed {}", counts[r][0]),
            ));
        }
        let data = self.solve.as_ref().expect("made by new");
        let ranks = OnRanks { comm, data };
        let be = Cpu { samples: &data.samples, cells: &data.cells, dx: self.cell_weight(), ranks: Some(&ranks) };
        let k = self.cell_ids().len();
        let order: Vec<u32> = self.caller_samples().iter().map(|&i| i as u32).collect();
        let mut position = vec![LEFT_OUT; n];
        order.iter().enumerate().for_each(|(j, &i)| position[i as usize] = j as u32);
        let per_row = opts.missing == MissingData::PerRow;
        let axis = Axis::Samples { order: &order, position: &position };
        let g = be.gather(val, axis, true, per_row)?;
        collective(comm, first_infinite(val, axis, "val").map_or(Ok(()), Err))?;
        let facts = g.facts.clone();
        let rows = Rows::of(&facts, self.n_total, per_row);
        let (sel, s) = (rows.sel.clone(), rows.sel.len());
        let mut info = FitInfo {
            iterations: 0,
            row_iterations: vec![0; b],
            residual_norms: vec![Vec::new(); b],
            converged: vec![false; b],
            has_data: (0..b).map(|r| sel.contains(&r)).collect(),
            outer_passes: 0,
            n_clipped_low: vec![0; b],
            n_clipped_high: vec![0; b],
            empty_cells: vec![0; b],
            residual_rms: vec![f64::NAN; b],
            residual_max: vec![f64::NAN; b],
        };
        if s == 0 {
            return Ok(Fit {
                hval: vec![F::from_f64(f64::NAN); b * k],
                rows: b,
                info: opts.return_info.then_some(info),
            });
        }
        let (mut y0, valid) = rows.pick(&be, g)?;
        let max_abs: Vec<f64> = sel.iter().map(|&r| facts[r].max_abs()).collect();
        let scale = pow2_scales(&max_abs, opts.stopping == Stopping::Pooled);
        let inv: Vec<F> = scale.iter().map(|&c| F::from_f64(1.0 / c)).collect();
        be.scale_columns(&mut y0, &inv)?;
        let problem =
            Problem { y0, valid, masked_rows: rows.masked.clone(), x0: None, bounds: None, means: None, opts };
        let sol = solver::solve(&be, problem)?;
        let mut hval = sol.hval;
        be.scale_columns(&mut hval, &scale.iter().map(|&c| F::from_f64(c)).collect::<Vec<F>>())?;
        let mut hval = expand_rows(be.scatter(&hval, s, Axis::Cells(k))?, b, k, &sel);
        let zero_filled: Vec<usize> = (0..s).filter(|&j| facts[sel[j]].nan > 0 && !rows.masked[j]).collect();
        let zero_filled_rows: Vec<usize> = zero_filled.iter().map(|&j| sel[j]).collect();
        let valid_linked = self.valid_linked(&ranks, val, &order, &zero_filled_rows)?;
        for (j, &row) in sel.iter().enumerate() {
            info.row_iterations[row] = sol.iterations[j];
            info.converged[row] = sol.converged[j];
            info.residual_norms[row] = sol.norms[j].iter().map(|v| v * scale[j]).collect();
            // the cells where no valid sample carries weight in a row with missing samples
            let empty: Vec<usize> = match (sol.codes.as_ref().filter(|_| rows.masked[j]), zero_filled.binary_search(&j))
            {
                (Some(codes), _) => (0..k).filter(|&c| codes[c * s + j] == 0).collect(),
                (None, Ok(q)) => (0..k).filter(|&c| !valid_linked[c * zero_filled.len() + q]).collect(),
                (None, Err(_)) => Vec::new(),
            };
            let mut count = 0u64;
            comm.all_reduce_into(&(empty.len() as u64), &mut count, mpi::collective::SystemOperation::sum());
            info.empty_cells[row] = count as usize;
            if opts.empty_cells == EmptyCells::Missing {
                empty.iter().for_each(|&c| hval[row * k + c] = F::from_f64(f64::NAN));
            }
        }
        info.iterations = sol.iterations.iter().copied().max().unwrap_or(0);
        info.outer_passes = sol.outer;
        Ok(Fit { hval, rows: b, info: opts.return_info.then_some(info) })
    }
}
