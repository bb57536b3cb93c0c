//! `--distributed`: the tool as an MPI program (`mpirun -np P healpix-psf regrid --distributed …`).
//!
//! Every rank reads the inputs and takes the same decisions from them as one process would (the
//! points with data, the level). The operator and the fits are the distributed ones
//! ([`DistributedResampler`], areas estimated over the union of the tiles as one process does):
//! each rank passes only the points of its tile of the grid ([`healpix_psf::distributed::tile`]:
//! blocks of a 2-D grid, runs of a list of points), as a model's rank holds them. The fitted field
//! is gathered onto every rank, and rank 0 writes the same files a single process writes.

use crate::CliError;
use healpix_psf::distributed::{collective_with, tile, DistributedResampler};
use healpix_psf::{Area, Fit, FitOptions, MissingData, Params, Real};
use mpi::topology::SimpleCommunicator;
use mpi::traits::Communicator;

/// MPI_COMM_WORLD of this run (MPI is initialised by `main`, and finalised when its universe is
/// dropped).
pub struct World {
    pub comm: SimpleCommunicator,
}

/// This rank's part of the distributed operator.
pub struct Tiles<F: Real> {
    comm: SimpleCommunicator,
    /// the points of this rank's tile (indices into the input's points)
    tile: Vec<usize>,
    n: usize,
    op: DistributedResampler<F>,
    /// the ids of every rank's cells, ascending
    ids: Vec<u64>,
}

impl World {
    pub fn is_root(&self) -> bool {
        self.comm.rank() == 0
    }

    pub fn agree<T>(&self, r: Result<T, CliError>) -> Result<T, CliError> {
        collective_with(&self.comm, r, |e| e.0.clone(), |rank, message| CliError(format!("rank {rank}: {message}")))
    }

    /// The distributed operator of the points (a grid of `shape`), this rank passing its tile.
    /// Collective.
    pub fn build<F: Real>(
        &self,
        lon: &[f64],
        lat: &[f64],
        shape: &[usize],
        params: &Params,
    ) -> Result<Tiles<F>, healpix_psf::Error> {
        let (rank, size) = (self.comm.rank() as usize, self.comm.size() as usize);
        let local = tile(shape, rank, size).and_then(|t| match &params.sample_mask {
            Some(m) if !t.iter().any(|&i| m[i]) => Err(healpix_psf::Error::InvalidParameter {
                name: "ranks",
                value: size.to_string(),
                reason: format!("the tile of rank {rank} holds no point with data: run on fewer ranks"),
            }),
            _ => Ok(t),
        });
        let tile = healpix_psf::distributed::collective(&self.comm, local)?;
        let pick = |v: &[f64]| -> Vec<f64> { tile.iter().map(|&i| v[i]).collect() };
        let mine = Params {
            area: match &params.area {
                Area::Explicit(a) => Area::Explicit(pick(a)),
                estimated => estimated.clone(),
            },
            sample_mask: params.sample_mask.as_ref().map(|m| tile.iter().map(|&i| m[i]).collect()),
            // the construction's progress from rank 0 only
            verbose: params.verbose && rank == 0,
            ..params.clone()
        };
        let op = DistributedResampler::<F>::new(&self.comm, &pick(lon), &pick(lat), &mine)?;
        let ids = op.all_cell_ids(&self.comm);
        Ok(Tiles { comm: self.comm.duplicate(), tile, n: lon.len(), op, ids })
    }
}

impl<F: Real> Tiles<F> {
    pub fn cell_ids(&self) -> &[u64] {
        &self.ids
    }

    /// This rank's tile of the B rows of N values `v`.
    fn mine(&self, v: &[F]) -> Vec<F> {
        let rows = v.len() / self.n.max(1);
        (0..rows).flat_map(|r| self.tile.iter().map(move |&i| v[r * self.n + i])).collect()
    }

    /// The distributed fit of this rank's tile of the B rows of N values `v` (`x0`, if any, on
    /// every cell), and the whole field gathered onto every rank. Collective.
    pub fn fit(&self, v: &[F], opts: &FitOptions<F>) -> Result<Fit<F>, healpix_psf::Error> {
        let own_x0;
        let opts = match &opts.x0 {
            Some(x0) => {
                // this rank's cells' values of every row
                let k_all = self.ids.len().max(1);
                let at: Vec<usize> = self
                    .op
                    .cell_ids()
                    .iter()
                    .map(|c| self.ids.binary_search(c).expect("a cell of the operator"))
                    .collect();
                let rows = x0.len() / k_all;
                let x0 = (0..rows).flat_map(|r| at.iter().map(move |&c| x0[r * k_all + c])).collect();
                own_x0 = FitOptions { x0: Some(x0), ..opts.clone() };
                &own_x0
            }
            None => opts,
        };
        let fit = self.op.fit(&self.comm, &self.mine(v), opts)?;
        let (ids, hval) = self.op.gather_all(&self.comm, &fit.hval)?;
        debug_assert_eq!(ids, self.ids);
        Ok(Fit { hval, rows: fit.rows, info: fit.info })
    }

    /// The Gaussian average of the points' values on every cell (the distributed `x_ref`),
    /// gathered onto every rank. Collective.
    pub fn x_ref(&self, v: &[F], missing: MissingData) -> Result<Vec<F>, healpix_psf::Error> {
        let x = self.op.x_ref(&self.comm, &self.mine(v), missing)?;
        Ok(self.op.gather_all(&self.comm, &x)?.1)
    }
}
