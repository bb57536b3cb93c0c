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
use super::construct::{all_gather_varcount, exchange, gather_to, rank_of, DistributedResampler, LocalLinks};
use crate::backend::cpu::{Cpu, Ranks};
use crate::backend::{Axis, RowFacts, LEFT_OUT};
use crate::error::{Error, Result};
use crate::operator::fit::{
    area_sums, expand_rows, first_infinite, mean_of, reference_rows, resample_rows, residual_sums, rms_of, solve_rows,
    without_data, EmptyRule, Side, Solved,
};
use crate::real::Real;
use crate::solver::{EmptyCells, Fit, FitOptions, MissingData};
use crate::sparse::{CellLinks, SampleLinks};
use mpi::collective::SystemOperation;
use mpi::traits::{Communicator, CommunicatorCollectives};
use std::sync::Mutex;

/// What this rank has sent since its operator was built: the halo exchanges before the products
/// (point-to-point in effect: `MPI_Alltoallv` with counts only between neighbours) and the
/// collective reductions (dot products, maxima, row facts: allgathers of a few values per rank).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes of halo values sent to other ranks.
    pub halo_bytes: u64,
    /// Halo messages sent (one per neighbour with values to send, per product).
    pub halo_messages: u64,
    /// Halo exchanges (collective calls).
    pub exchanges: u64,
    /// Reductions over the ranks (collective calls: allgathers).
    pub reductions: u64,
    /// Bytes this rank contributed to those reductions.
    pub reduction_bytes: u64,
}

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
    buf: Mutex<Vec<F>>,
}

impl<F: Real> Halo<F> {
    /// `want[r]`: the keys this rank needs from rank r, in the order it appends them; each rank
    /// answers with the local index `index_of` gives each key asked of it. Collective.
    fn plan<C: Communicator>(comm: &C, want: &[Vec<u64>], index_of: impl Fn(u64) -> u32) -> Halo<F> {
        let asked = exchange(comm, want);
        let recv: usize = want.iter().map(Vec::len).sum();
        let mut any = 0u64;
        comm.all_reduce_into(&(recv as u64), &mut any, SystemOperation::sum());
        Halo {
            send: asked.iter().map(|keys| keys.iter().map(|&k| index_of(k)).collect()).collect(),
            recv,
            active: any > 0,
            buf: Mutex::new(Vec::new()),
        }
    }

    /// Calls `f` with the E×s block `local` followed by the values received (rank by rank).
    /// Collective.
    fn extend<C: Communicator>(
        &self,
        comm: &C,
        local: &[F],
        s: usize,
        traffic: &Mutex<Traffic>,
        f: &mut dyn FnMut(&[F]),
    ) {
        if !self.active {
            return f(local);
        }
        {
            let mut t = traffic.lock().unwrap_or_else(|e| e.into_inner());
            t.halo_bytes += self.send.iter().map(|idx| (idx.len() * s * 8) as u64).sum::<u64>();
            t.halo_messages += self.send.iter().filter(|idx| !idx.is_empty()).count() as u64;
            t.exchanges += 1;
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
    pub(super) samples: SampleLinks<F>,
    pub(super) cells: CellLinks<F>,
    /// the global index of each ghost sample (the local samples after this rank's own)
    pub(super) ghost_samples: Vec<u64>,
    cell_halo: Halo<F>,
    sample_halo: Halo<F>,
    /// the samples axis: the caller's sample of each block element, and the element of each
    /// caller's sample ([`LEFT_OUT`] where the sample mask leaves it out)
    order: Vec<u32>,
    position: Vec<u32>,
    /// the cells of all ranks
    cells_total: usize,
    /// what this rank has sent (the solve drives MPI from one thread; the lock keeps `Sync`)
    traffic: Mutex<Traffic>,
}

impl<F: Real> SolveData<F> {
    /// Collective.
    pub(super) fn new<C: Communicator>(comm: &C, d: &DistributedResampler<F>, links: LocalLinks<F>) -> Result<Self> {
        let (size, k) = (comm.size() as usize, d.cell_ids().len());
        let LocalLinks { samples, cells, ghost_samples } = links;
        let mut want_cells = vec![Vec::new(); size];
        d.ghost_cells.iter().for_each(|&(r, id)| want_cells[r].push(id));
        let cell_halo = Halo::plan(comm, &want_cells, |id| {
            d.cell_ids().binary_search(&id).expect("a cell asked of its owner") as u32
        });
        // the ghost samples the owned cells' rows read, asked of their ranks by global index
        let own = d.global_samples();
        let first = own.iter().copied().min().unwrap_or(0);
        let mut row_of = vec![0u32; own.len()];
        own.iter().enumerate().for_each(|(row, &g)| row_of[(g - first) as usize] = row as u32);
        let mut want_samples = vec![Vec::new(); size];
        for &g in &ghost_samples {
            want_samples[rank_of(&d.starts, g)].push(g);
        }
        let sample_halo = Halo::plan(comm, &want_samples, |g| row_of[(g - first) as usize]);
        let order: Vec<u32> = d.caller_samples().iter().map(|&i| i as u32).collect();
        let mut position = vec![LEFT_OUT; d.n()];
        order.iter().enumerate().for_each(|(j, &i)| position[i as usize] = j as u32);
        let mut cells_total = 0u64;
        comm.all_reduce_into(&(k as u64), &mut cells_total, SystemOperation::sum());
        Ok(SolveData {
            samples,
            cells,
            ghost_samples,
            cell_halo,
            sample_halo,
            order,
            position,
            cells_total: cells_total as usize,
            traffic: Mutex::default(),
        })
    }
}

/// The communication of one rank's CPU backend.
struct OnRanks<'a, C: Communicator, F: Real> {
    comm: &'a C,
    data: &'a SolveData<F>,
}

impl<C: Communicator, F: Real> OnRanks<'_, C, F> {
    /// Counts a reduction of `values` f64 per rank.
    fn reduction(&self, values: usize) {
        let mut t = self.data.traffic.lock().unwrap_or_else(|e| e.into_inner());
        t.reductions += 1;
        t.reduction_bytes += 8 * values as u64;
    }
}

// SAFETY: `Ranks` is called only from the thread that drives the solve (its contract), never from
// the backend's parallel loops, so the communicator is never used from two threads at once.
unsafe impl<C: Communicator, F: Real> Sync for OnRanks<'_, C, F> {}

impl<C: Communicator, F: Real> Ranks<F> for OnRanks<'_, C, F> {
    fn cells_total(&self) -> usize {
        self.data.cells_total
    }
    fn sums(&self, local: Vec<f64>) -> Result<Vec<f64>> {
        self.reduction(local.len());
        let mut out = vec![0.0f64; local.len()];
        for part in all_gather_varcount(self.comm, &local) {
            out.iter_mut().zip(&part).for_each(|(o, v)| *o += v);
        }
        Ok(out)
    }
    fn maxima(&self, local: Vec<f64>) -> Result<Vec<f64>> {
        self.reduction(local.len());
        let mut out = local.clone();
        for part in all_gather_varcount(self.comm, &local) {
            out.iter_mut().zip(&part).for_each(|(o, &v)| *o = o.max(v));
        }
        Ok(out)
    }
    fn facts(&self, local: Vec<RowFacts>) -> Result<Vec<RowFacts>> {
        let flat: Vec<f64> = local.iter().flat_map(|f| [f.nan as f64, f.inf as f64, f.low, f.high]).collect();
        self.reduction(flat.len());
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
        self.data.cell_halo.extend(self.comm, v, s, &self.data.traffic, f);
        Ok(())
    }
    fn with_ghost_samples(&self, u: &[F], s: usize, f: &mut dyn FnMut(&[F])) -> Result<()> {
        self.data.sample_halo.extend(self.comm, u, s, &self.data.traffic, f);
        Ok(())
    }
}

/// The rows every rank passed, `rows` here (a rank owning no cell passes none and takes the others'
/// count); an error on every rank where two ranks passed different nonzero counts. Collective.
fn agreed_rows<C: Communicator>(comm: &C, rows: usize, what: &'static str) -> Result<usize> {
    let all = all_gather_varcount(comm, &[rows as u64]);
    let b = all.iter().map(|r| r[0]).max().unwrap_or(0) as usize;
    // decided from the gathered counts: the same on every rank
    match all.iter().position(|r| r[0] != 0 && r[0] as usize != b) {
        Some(r) => {
            Err(Error::param(what, rows, format!("every rank must pass the same rows: rank {r} passed {}", all[r][0])))
        }
        None => Ok(b),
    }
}

/// What a fit returns and, when it was computed for the residual statistics, the fitted field
/// resampled at this rank's samples.
type FitAndBack<F> = (Fit<F>, Option<Vec<F>>);

impl<F: Real> DistributedResampler<F> {
    /// What this rank has sent to the others in fits and resamples since it was built.
    pub fn traffic(&self) -> Traffic {
        *self.data().traffic.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps this rank's large working blocks from one call to the next, as
    /// [`crate::PsfResampler::keep_blocks`] does (each rank decides for itself; results are the same
    /// bit for bit either way).
    pub fn keep_blocks(&self, keep: bool) {
        self.blocks.set_keep(keep);
    }

    /// Bytes of working blocks this rank holds between calls.
    pub fn kept_bytes(&self) -> usize {
        self.blocks.bytes()
    }

    /// Hands a result this rank no longer needs back to its kept blocks, as
    /// [`crate::PsfResampler::recycle`] does.
    pub fn recycle(&self, v: Vec<F>) {
        self.blocks.recycle(v);
    }

    /// The cells of every rank.
    pub fn cells_total(&self) -> usize {
        self.data().cells_total
    }

    pub(super) fn data(&self) -> &SolveData<F> {
        self.solve.as_ref().expect("made by new")
    }

    /// The samples axis of this rank's blocks.
    fn samples_axis(&self) -> Axis<'_> {
        Axis::Samples { order: &self.data().order, position: &self.data().position }
    }

    /// The CPU backend on this rank's part, its reductions and products through `ranks`.
    fn backend<'a, C: Communicator>(&'a self, ranks: &'a OnRanks<'a, C, F>) -> Cpu<'a, F> {
        let data = self.data();
        let pool = Some(&self.blocks);
        Cpu { samples: &data.samples, cells: &data.cells, dx: self.cell_weight(), ranks: Some(ranks), pool }
    }

    /// The error of the first infinite value of `v` on the rank holding it (every rank's call
    /// once the rows' facts, combined over the ranks, found one). Collective.
    fn infinite<C: Communicator>(comm: &C, v: &[F], axis: Axis<'_>, what: &'static str) -> Error {
        match collective(comm, first_infinite(v, axis, what).map_or(Ok(()), Err)) {
            Err(e) => e,
            Ok(()) => Error::param(what, "an infinite value", "an infinite value on a rank that cannot name it"),
        }
    }

    /// The rows of `len` values of this rank's cells (a rank owning no cells passes none and
    /// takes the other ranks' count). Collective.
    fn cell_rows<C: Communicator>(&self, comm: &C, len: usize, what: &'static str) -> Result<usize> {
        let k = self.cell_ids().len();
        let local = match (k, len) {
            (0, 0) => Ok(0),
            (0, _) => Err(Error::LengthMismatch { what, expected: 0, got: len }),
            (k, len) if len == 0 || !len.is_multiple_of(k) => {
                Err(Error::LengthMismatch { what, expected: k, got: len })
            }
            (k, len) => Ok(len / k),
        };
        agreed_rows(comm, collective(comm, local)?, what)
    }

    /// The rows of `len` values of this rank's samples (an error on every rank where a rank's
    /// length is not a multiple of its samples). Collective.
    fn sample_rows<C: Communicator>(&self, comm: &C, len: usize) -> Result<usize> {
        let n = self.n();
        let local = if len == 0 || !len.is_multiple_of(n) {
            Err(Error::LengthMismatch { what: "val", expected: n, got: len })
        } else {
            Ok(len / n)
        };
        collective(comm, local)
    }

    /// Values at this rank's samples of B cell fields given on the cells each rank owns (B ×
    /// `cell_ids().len()`, row-major): the single-process [`crate::PsfResampler::resample`] of the
    /// whole field, each rank getting its own samples' values (B × `n()`, NaN at samples left out
    /// by `sample_mask`). Collective.
    pub fn resample<C: Communicator>(&self, comm: &C, hval: &[F]) -> Result<Vec<F>> {
        let (b, k) = (self.cell_rows(comm, hval.len(), "hval")?, self.cell_ids().len());
        let ranks = OnRanks { comm, data: self.data() };
        let infinite = || Self::infinite(comm, hval, Axis::Cells(k), "hval");
        let be = self.backend(&ranks);
        resample_rows(&be, hval, b, k, self.samples_axis(), &infinite)
    }

    /// The Gaussian average of the samples' values on this rank's cells, `x_ref = y0·M` (NaN
    /// samples as zeros, or with [`MissingData::PerRow`] each row renormalised over its valid
    /// samples): the single-process [`crate::PsfResampler::x_ref`] of the union, each rank getting
    /// the rows of its own cells (B × `cell_ids().len()`; all NaN in a row without a valid sample).
    /// `val` is B × `n()` as for [`DistributedResampler::fit`]. Collective.
    pub fn x_ref<C: Communicator>(&self, comm: &C, val: &[F], missing: MissingData) -> Result<Vec<F>> {
        let k = self.cell_ids().len();
        let b = agreed_rows(comm, self.sample_rows(comm, val.len())?, "val")?;
        let ranks = OnRanks { comm, data: self.data() };
        let axis = self.samples_axis();
        let infinite = || Self::infinite(comm, val, axis, "val");
        let per_row = missing == MissingData::PerRow;
        let (x, sel) = reference_rows(&self.backend(&ranks), val, axis, k, self.n_total, per_row, &infinite)?;
        Ok(expand_rows(x, b, k, &sel))
    }

    /// Fits, collectively on every rank, the field of the union of the ranks' samples that best
    /// explains B rows of values (row-major, B × this rank's samples; NaN = missing): the single-
    /// process [`crate::PsfResampler::fit`] on the union, each rank getting the rows of its own
    /// cells (B × `cell_ids().len()`, in the order of `cell_ids()`; `x0` likewise). Every rank
    /// must pass the same number of rows and the same options (all but `progress`; `x0` on every
    /// rank or none).
    pub fn fit<C: Communicator>(&self, comm: &C, val: &[F], opts: &FitOptions<F>) -> Result<Fit<F>> {
        Ok(self.fit_and_back(comm, val, opts)?.0)
    }

    /// [`DistributedResampler::fit`] followed by [`DistributedResampler::resample`] of its result:
    /// this rank's cells' fitted values and its samples' values of the fitted field. Collective.
    pub fn fit_resample<C: Communicator>(&self, comm: &C, val: &[F], opts: &FitOptions<F>) -> Result<(Fit<F>, Vec<F>)> {
        let (fit, back) = self.fit_and_back(comm, val, opts)?;
        let back = match back {
            Some(back) => back,
            None => self.resample(comm, &fit.hval)?,
        };
        Ok((fit, back))
    }

    fn fit_and_back<C: Communicator>(&self, comm: &C, val: &[F], opts: &FitOptions<F>) -> Result<FitAndBack<F>> {
        // every rank takes the same steps: no rank stops on its own
        let cleared;
        let opts = match opts.interrupt {
            Some(_) => {
                cleared = FitOptions { interrupt: None, ..opts.clone() };
                &cleared
            }
            None => opts,
        };
        let (n, k) = (self.n(), self.cell_ids().len());
        let b = self.sample_rows(comm, val.len())?;
        super::check_fit_options(comm, b, k, opts)?;
        let nonzero = opts.x0.as_ref().is_some_and(|x0| x0.iter().any(|&v| v != F::ZERO));
        let mut any = 0u8;
        comm.all_reduce_into(&u8::from(nonzero), &mut any, SystemOperation::max());
        let ranks = OnRanks { comm, data: self.data() };
        let be = self.backend(&ranks);
        let axis = self.samples_axis();
        let side = Side {
            axis,
            k,
            n_used: self.n_total,
            skip: &self.uncomputable,
            means: &|sel, inv| self.conservation_means(&ranks, val, sel, inv),
            infinite: &|| Self::infinite(comm, val, axis, "val"),
            x0: opts.x0.as_deref().filter(|_| any != 0),
        };
        let mut solved = solve_rows(&be, val, opts, &side)?;
        // the held cells over every rank
        let held = ranks.sums(solved.n_low.iter().chain(&solved.n_high).map(|&c| c as f64).collect())?;
        let s = solved.sel.len();
        (solved.n_low, solved.n_high) =
            (held[..s].iter().map(|&c| c as usize).collect(), held[s..].iter().map(|&c| c as usize).collect());
        let sel = solved.sel.clone();
        let mut info = solved.info(b, self.data().cells_total);
        let mut hval = expand_rows(std::mem::take(&mut solved.hval), b, k, &sel);
        if sel.is_empty() {
            return Ok((Fit { hval, rows: b, info: opts.return_info.then_some(info) }, None));
        }
        if opts.empty_cells == EmptyCells::Missing || opts.return_info {
            let empty = self.empty_cells(&ranks, val, &solved)?;
            let counts = ranks.sums(empty.iter().map(|e| e.len() as f64).collect())?;
            for (j, &row) in sel.iter().enumerate() {
                info.empty_cells[row] = counts[j] as usize;
                if opts.empty_cells == EmptyCells::Missing {
                    empty[j].iter().for_each(|&c| hval[row * k + c as usize] = F::from_f64(f64::NAN));
                }
            }
        }
        // requested cells without enough support (out_cell_ids): NaN, or the nearest sample's value
        let filled = match &self.fill {
            Some(fill) => {
                let (values, bytes, messages) = fill.values(comm, val, n, &sel);
                let mut t = self.data().traffic.lock().unwrap_or_else(|e| e.into_inner());
                (t.halo_bytes, t.halo_messages, t.exchanges) =
                    (t.halo_bytes + bytes, t.halo_messages + messages, t.exchanges + 1);
                values
            }
            None => vec![F::from_f64(f64::NAN); sel.len() * self.uncomputable.len()],
        };
        for (j, &row) in sel.iter().enumerate() {
            let row_values = &filled[j * self.uncomputable.len()..(j + 1) * self.uncomputable.len()];
            self.uncomputable.iter().zip(row_values).for_each(|(&c, &v)| hval[row * k + c as usize] = v);
        }
        let mut back = None;
        if opts.return_info {
            let resampled = self.resample(comm, &hval)?;
            let parts: Vec<(f64, f64, usize)> =
                sel.iter().map(|&r| residual_sums(&resampled[r * n..(r + 1) * n], &val[r * n..(r + 1) * n])).collect();
            let sums = ranks.sums(parts.iter().flat_map(|p| [p.0, p.2 as f64]).collect())?;
            let maxima = ranks.maxima(parts.iter().map(|p| p.1).collect())?;
            for (j, &row) in sel.iter().enumerate() {
                (info.residual_rms[row], info.residual_max[row]) =
                    rms_of(sums[2 * j], maxima[j], sums[2 * j + 1] as usize);
            }
            back = Some(resampled);
        }
        Ok((Fit { hval, rows: b, info: opts.return_info.then_some(info) }, back))
    }

    /// The area-weighted mean of each selected row's valid samples over every rank (each rank's
    /// sums added in rank order), times the row's factor. Collective.
    fn conservation_means<C: Communicator>(
        &self,
        ranks: &OnRanks<'_, C, F>,
        val: &[F],
        sel: &[usize],
        inv: &[F],
    ) -> Result<Vec<f64>> {
        let n = self.n();
        let used = self.used_samples();
        let local: Vec<f64> = sel
            .iter()
            .flat_map(|&row| {
                let (num, den) =
                    area_sums(&val[row * n..(row + 1) * n], used.iter().copied().zip(self.area.iter().copied()));
                [num, den]
            })
            .collect();
        let sums = ranks.sums(local)?;
        Ok(inv.iter().enumerate().map(|(j, &c)| mean_of(sums[2 * j], sums[2 * j + 1], c)).collect())
    }

    /// This rank's cells without a valid sample carrying weight, per selected row of the fit
    /// `solved` (see [`crate::PsfResampler::fit`]'s empty cells). Collective.
    fn empty_cells<C: Communicator>(
        &self,
        ranks: &OnRanks<'_, C, F>,
        val: &[F],
        solved: &Solved<F>,
    ) -> Result<Vec<Vec<u32>>> {
        let (k, s) = (self.cell_ids().len(), solved.sel.len());
        let zero_filled: Vec<usize> =
            (0..s).filter(|&j| matches!(solved.empty_rule(j), EmptyRule::ZeroFilled)).collect();
        let rows: Vec<usize> = zero_filled.iter().map(|&j| solved.sel[j]).collect();
        let linked = self.valid_linked(ranks, val, &rows)?;
        let ptr = &self.data().cells.ptr;
        let cells = |keep: &dyn Fn(usize) -> bool| (0..k as u32).filter(|&c| keep(c as usize)).collect();
        Ok((0..s)
            .map(|j| match solved.empty_rule(j) {
                EmptyRule::NoneMissing => cells(&|c| ptr[c] == ptr[c + 1]),
                EmptyRule::Renormalised(codes) => without_data(codes, k, s, j),
                EmptyRule::ZeroFilled => {
                    let q = zero_filled.binary_search(&j).expect("a zero-filled row");
                    cells(&|c| !linked[c * rows.len() + q])
                }
            })
            .collect())
    }

    /// For the caller's rows `rows`: whether each of this rank's cells has a valid linked sample,
    /// its own or a ghost (cell × |rows|). Collective.
    fn valid_linked<C: Communicator>(&self, ranks: &OnRanks<'_, C, F>, val: &[F], rows: &[usize]) -> Result<Vec<bool>> {
        let (n, nz, k) = (self.n(), rows.len(), self.cell_ids().len());
        if nz == 0 {
            return Ok(Vec::new());
        }
        let order = &self.data().order;
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

    /// The whole field on rank `root`: B rows of values on each rank's cells (as a fit returns
    /// them) assembled into B rows over every rank's cells in ascending id order, with those ids —
    /// the single-process operator's `cell_ids()` and its fit's layout. `None` on the other ranks.
    /// Collective.
    pub fn gather<C: Communicator>(&self, comm: &C, root: usize, hval: &[F]) -> Result<Option<(Vec<u64>, Vec<F>)>> {
        let local = if root < comm.size() as usize {
            Ok(())
        } else {
            Err(Error::param("root", root, format!("not a rank of this communicator of {} ranks", comm.size())))
        };
        collective(comm, local)?;
        let b = self.cell_rows(comm, hval.len(), "hval")?;
        let ids = gather_to(comm, root, self.cell_ids());
        let vals: Vec<f64> = hval.iter().map(|v| v.to_f64()).collect();
        let vals = gather_to(comm, root, &vals);
        let (Some(ids), Some(vals)) = (ids, vals) else { return Ok(None) };
        Ok(Some(whole_field(&ids, &vals, b)))
    }

    /// The ids of every rank's cells, ascending (the single-process `cell_ids()`), on every rank.
    /// Collective.
    pub fn all_cell_ids<C: Communicator>(&self, comm: &C) -> Vec<u64> {
        let mut ids = all_gather_varcount(comm, self.cell_ids()).concat();
        ids.sort_unstable();
        ids
    }

    /// [`Self::gather`] onto every rank: the ids of all cells (ascending) and the B rows of the
    /// whole field, on each rank. Collective.
    pub fn gather_all<C: Communicator>(&self, comm: &C, hval: &[F]) -> Result<(Vec<u64>, Vec<F>)> {
        let b = self.cell_rows(comm, hval.len(), "hval")?;
        let ids = all_gather_varcount(comm, self.cell_ids());
        let vals: Vec<f64> = hval.iter().map(|v| v.to_f64()).collect();
        Ok(whole_field(&ids, &all_gather_varcount(comm, &vals), b))
    }
}

/// The whole field from every rank's cell ids and B rows of values (rank by rank): the ids
/// ascending and the values in their order.
fn whole_field<F: Real>(ids: &[Vec<u64>], vals: &[Vec<f64>], b: usize) -> (Vec<u64>, Vec<F>) {
    // every rank's cells, each with its rank and index, by id
    let mut cells: Vec<(u64, usize, usize)> =
        ids.iter().enumerate().flat_map(|(r, ids)| ids.iter().enumerate().map(move |(c, &id)| (id, r, c))).collect();
    cells.sort_unstable();
    let k = cells.len();
    let mut out = vec![F::ZERO; b * k];
    for (g, &(_, r, c)) in cells.iter().enumerate() {
        let kr = ids[r].len();
        for row in 0..b {
            out[row * k + g] = F::from_f64(vals[r][row * kr + c]);
        }
    }
    (cells.iter().map(|c| c.0).collect(), out)
}
