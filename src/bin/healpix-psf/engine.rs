//! Where the operator and the fits run: in this process, or (`--distributed`, feature `mpi`) on the
//! ranks of an MPI program ([`crate::ranks`]). The rest of the tool sees one [`Engine`]: the ids of
//! all cells, and fits returning the whole field — on every rank, so that every rank takes the same
//! decisions after a fit; only the root writes.

use crate::CliError;
use healpix_psf::{Fit, FitOptions, MissingData, Params, PsfResampler, Real};

/// How this run is carried out.
pub enum Run {
    /// One process.
    Single,
    /// The ranks of MPI_COMM_WORLD.
    #[cfg(feature = "mpi")]
    Ranks(crate::ranks::World),
}

impl Run {
    /// The process that writes the outputs and reports progress and errors.
    pub fn is_root(&self) -> bool {
        match self {
            Run::Single => true,
            #[cfg(feature = "mpi")]
            Run::Ranks(w) => w.is_root(),
        }
    }

    /// A step's result, the same on every rank: a failure on one rank fails every rank (naming
    /// it), so that no rank goes on into a collective step the others left.
    pub fn agree<T>(&self, r: Result<T, CliError>) -> Result<T, CliError> {
        match self {
            Run::Single => r,
            #[cfg(feature = "mpi")]
            Run::Ranks(w) => w.agree(r),
        }
    }

    /// Builds the operator of the samples (a grid of `shape` points: its tile on each rank).
    pub fn build<F: Real>(
        &self,
        lon: &[f64],
        lat: &[f64],
        shape: &[usize],
        params: &Params,
    ) -> Result<Engine<F>, healpix_psf::Error> {
        let _ = shape;
        match self {
            Run::Single => PsfResampler::new(lon, lat, params).map(Engine::Single),
            #[cfg(feature = "mpi")]
            Run::Ranks(w) => w.build(lon, lat, shape, params).map(Engine::Tiles),
        }
    }
}

/// The operator of a run (one per run: the variants' sizes do not matter).
#[allow(clippy::large_enum_variant)]
pub enum Engine<F: Real> {
    Single(PsfResampler<F>),
    #[cfg(feature = "mpi")]
    Tiles(crate::ranks::Tiles<F>),
}

impl<F: Real> Engine<F> {
    /// The ids of all cells, ascending.
    pub fn cell_ids(&self) -> &[u64] {
        match self {
            Engine::Single(op) => op.cell_ids(),
            #[cfg(feature = "mpi")]
            Engine::Tiles(t) => t.cell_ids(),
        }
    }

    /// The Gaussian average of B rows of N values on every cell (`x_ref`).
    pub fn x_ref(&self, v: &[F], missing: MissingData) -> Result<Vec<F>, healpix_psf::Error> {
        match self {
            Engine::Single(op) => op.x_ref(v, missing),
            #[cfg(feature = "mpi")]
            Engine::Tiles(t) => t.x_ref(v, missing),
        }
    }

    /// Fits B rows of N values (every sample's, in the input's order): the whole field (B × all
    /// cells) and the fit's record.
    pub fn fit(&self, v: &[F], opts: &FitOptions<F>) -> Result<Fit<F>, healpix_psf::Error> {
        match self {
            Engine::Single(op) => op.fit(v, opts),
            #[cfg(feature = "mpi")]
            Engine::Tiles(t) => t.fit(v, opts),
        }
    }
}
