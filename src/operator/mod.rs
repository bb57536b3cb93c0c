//! Construction of the PSF operators from lon/lat samples (SPEC §2–§3).
//!
//! ```text
//! lon/lat (N) ─geometry─▶ sample cells, sorted by cell                          samples.rs
//!             ─keep─────▶ per-cell Gaussian weight sums ≥ threshold → kept cells  keep.rs
//!             ─search───▶ npt nearest kept cells per sample: hi, d                search.rs
//!             ─prune────▶ drop kept cells no sample links to (K cells remain)     search.rs
//!             ─assemble─▶ area a, raw weights W = g·a, Dx, Dy, M, MT              area.rs, assemble.rs
//! ```

pub(crate) mod area;
mod assemble;
mod file;
pub(crate) mod fit;
mod host;
mod keep;
mod nearest;
mod portable;
mod samples;
mod search;

pub(crate) use area::spacing as spacing_areas;
pub use file::{saved_file_precision, saved_precision, FORMAT_VERSION};
// for the distributed build (feature `mpi`)
#[allow(unused_imports)]
pub(crate) use host::LinkParts;
#[allow(unused_imports)]
pub(crate) use nearest::nearest_of as nearest_samples_of;

use crate::backend::pages::Pool;
use crate::backend::{self, ConstructArgs, Constructed, Device, Placed, Target};
use crate::error::{Error, Result};
use crate::geometry::{cell_size_m, Ellipsoid, Grid, EARTH_RADIUS_M};
use crate::parallel::{with_threads, Progress};
use crate::real::Real;
use crate::sparse::{self, CellLinks, SampleLinks, Triplets};

/// Per-sample area weights baked into `M` (SPEC §3 step 1).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub enum Area {
    /// The automatic choice (default): where samples share exact latitudes (at least 3 per distinct
    /// latitude on average, the reference's test for a grid) each gets its [`Area::Spacing`]
    /// estimate; otherwise every area is 1, as in the reference. Equal to the reference's choice on
    /// scattered samples; on grids it gives every row its own cell area where the reference's
    /// estimate misfires.
    #[default]
    Auto,
    /// The reference's automatic estimate (`area=None`/`"auto"`), for parity: where samples share
    /// exact latitudes (at least 3 per distinct latitude on average) each gets the area of its
    /// latitude ring divided by the ring's sample count; otherwise every area is 1. Beware: on a
    /// regional grid the first and last rows get ring bounds at ±90° and so 100–1000× too large
    /// areas (SPEC §7.1), and on curvilinear grids (NEMO ORCA) each northern point is taken for a
    /// full ring, spreading areas over six orders of magnitude (§7.12).
    ReferenceAuto,
    /// Estimated from the sample spacing, with no ring structure assumed: the spacing towards the
    /// nearest other sample times the spacing in a direction at least 45° away, each the mean of
    /// the distances to the nearest samples on either side (`R²Δ²·cos φ` on a regular grid of step
    /// Δ, edges included; the area between the midpoints to the neighbours on a stretched or
    /// curvilinear grid: within 1 % of the cell polygons for 99.7 % of the ocean points of NEMO
    /// ORCA2); coincident samples share their area.
    Spacing,
    /// Every sample weighs 1.
    Uniform,
    /// One non-negative finite area per sample (any unit; only ratios matter).
    Explicit(Vec<f64>),
}

/// Construction parameters. Start from [`Params::new`] (or `Default`, level 10) and set fields.
///
/// # Examples
/// ```
/// use healpix_psf::{Params, Ellipsoid};
/// let p = Params { npt: 16, threshold: 0.2, ellipsoid: Ellipsoid::Sphere, ..Params::new(12) };
/// assert_eq!(p.level, 12);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// HEALPix level (depth), 0..=29; nside = 2^level.
    pub level: u8,
    /// Links per sample: the `npt` nearest kept cells (default 9).
    pub npt: usize,
    /// Kernel scale s in metres, `w(d) = exp(−2d²/s²)` (s is 2σ of a Gaussian; FWHM ≈ 1.1774·s).
    /// `None` → the cell size `sqrt(4π/(12·4^level))·radius`.
    pub sigma_m: Option<f64>,
    /// A candidate cell is kept when its summed weight over the samples reaches this (default 0.1).
    pub threshold: f64,
    /// Nested (true, default) or ring (false) numbering of `cell_ids`.
    pub nest: bool,
    /// Sphere radius for distances and the default kernel scale, metres (default 6 371 000).
    pub radius: f64,
    /// Figure of the Earth for placing samples on the HEALPix sphere (default WGS84).
    pub ellipsoid: Ellipsoid,
    /// Neighbourhood ring of the keep stage. `None` → `max(2, r_min + 2)` with
    /// `r_min = ceil((√npt − 1)/2)`. At most 127 (the candidate squares' memory), and at most nside.
    pub ring_weight: Option<u32>,
    /// First ring of the nearest-cell search. `None` → `max(1, r_min + 1)`.
    pub ring_search_init: Option<u32>,
    /// Last ring of the search. `None` → `max(1, r_min + 1) + 2`; never below `ring_search_init`.
    pub ring_search_max: Option<u32>,
    /// Worker threads; 0 = all cores. Results do not depend on it.
    pub num_threads: usize,
    /// Print the progress of each stage on stderr.
    pub verbose: bool,
    /// Per-sample area weights (default: the reference's automatic estimate).
    pub area: Area,
    /// Where to build and run (default CPU).
    pub device: Device,
    /// Restrict the output to these cells (ids in the grid's scheme, any order, repeats allowed;
    /// default none). As in the reference, the operator's cells are the requested cells that pass
    /// the keep threshold (others are absent from `cell_ids`), none is pruned, and a cell whose raw
    /// Gaussian support `Σ exp(−2d²/s²)` over its links is ≤ `threshold` is *uncomputable*: NaN in
    /// every fit ([`PsfResampler::uncomputable_cells`]).
    pub out_cell_ids: Option<Vec<u64>>,
    /// With `out_cell_ids`: give uncomputable cells the value of the sample nearest to their centre
    /// (NaN where that sample is missing) instead of NaN (default false). The reference instead
    /// links such a cell to its nearest sample inside M (a Python loop, O(cells × samples)).
    pub fill_missing_out_cells: bool,
    /// Build the operator from these samples only (`true` = used; one entry per sample; default
    /// none = all). For a fixed missing pattern — a land mask — build from the samples that are
    /// valid in some row ([`valid_samples`]): cells fed only by missing samples are then not part
    /// of the operator, and the kernel weights, areas and normalisations come from valid samples
    /// alone. [`PsfResampler::n`] stays the number of samples given; values at samples left out are
    /// ignored by the fits (their coordinates are not even checked) and come back NaN from
    /// [`PsfResampler::resample`]; they have no link in `hi` (−1), `d_m` (+∞), `M` and `MT`.
    pub sample_mask: Option<Vec<bool>>,
}

impl Default for Params {
    fn default() -> Self {
        Params::new(10)
    }
}

impl Params {
    /// The reference's defaults at `level`.
    pub fn new(level: u8) -> Self {
        Params {
            level,
            npt: 9,
            sigma_m: None,
            threshold: 0.1,
            nest: true,
            radius: EARTH_RADIUS_M,
            ellipsoid: Ellipsoid::Wgs84,
            ring_weight: None,
            ring_search_init: None,
            ring_search_max: None,
            num_threads: 0,
            verbose: false,
            area: Area::Auto,
            device: Device::Cpu,
            out_cell_ids: None,
            fill_missing_out_cells: false,
            sample_mask: None,
        }
    }

    /// Checks the parameters as the constructor would before it looks at any sample: the level,
    /// radius, kernel scale, threshold, npt and rings against this level, and that the device's
    /// backend is compiled in (whether the device itself works is known only when it is opened).
    /// Lets a program reject bad settings before it reads its data.
    pub fn check(&self) -> Result<()> {
        Config::resolve(self)?.check_keep_stage(self)?;
        backend::check_compiled(self.device)
    }

    /// The rings these parameters resolve to, as [`PsfResampler::rings`] reports them once built:
    /// the keep stage's, the search's first and last (an error for invalid parameters).
    pub fn rings(&self) -> Result<(u32, u32, u32)> {
        let c = Config::resolve(self)?;
        Ok((c.ring_weight, c.ring_search_init, c.ring_search_max))
    }
}

/// Parameters after defaults are resolved and everything is validated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub npt: usize,
    pub sigma_m: f64,
    pub threshold: f64,
    pub radius: f64,
    pub ring_weight: u32,
    pub ring_search_init: u32,
    pub ring_search_max: u32,
    pub num_threads: usize,
}

/// The largest `ring_weight`: (2·127 + 1)² = 65 025 candidate slots per sample cell.
pub(crate) const MAX_RING_WEIGHT: u64 = 127;

/// Smallest r with (2r+1)² ≥ npt, i.e. ceil((√npt − 1)/2), without overflow for any npt.
fn r_min(npt: usize) -> u64 {
    let n = npt as u128;
    let sq = |r: u128| (2 * r + 1) * (2 * r + 1);
    let mut r = ((((npt as f64).sqrt() - 1.0) / 2.0).max(0.0)).ceil() as u128;
    while r > 0 && sq(r - 1) >= n {
        r -= 1;
    }
    while sq(r) < n {
        r += 1;
    }
    r as u64
}

impl Config {
    /// Fails where the keep stage (which a construction from coordinates runs, and `from_links`
    /// does not) cannot hold its candidate squares: `ring_weight` above [`MAX_RING_WEIGHT`].
    fn check_keep_stage(&self, p: &Params) -> Result<()> {
        let ring_weight = self.ring_weight as u64;
        if ring_weight > MAX_RING_WEIGHT {
            let why = match p.ring_weight {
                Some(_) => String::new(),
                None => format!(" (the default for npt = {}: lower npt)", p.npt),
            };
            return Err(Error::param(
                "ring_weight",
                ring_weight,
                format!(
                    "at most {MAX_RING_WEIGHT}{why}: the keep stage holds (2·ring_weight + 1)² candidate cells \
                     for each of 256 sample cells at a time (at {MAX_RING_WEIGHT}, 254 MB per thread)"
                ),
            ));
        }
        Ok(())
    }

    fn resolve(p: &Params) -> Result<Self> {
        if p.level > crate::geometry::MAX_LEVEL {
            return Err(Error::param("level", p.level, "HEALPix levels run from 0 to 29"));
        }
        let grid_nside = 1u64 << p.level;
        if !(p.radius.is_finite() && p.radius > 0.0) {
            return Err(Error::param("radius", p.radius, "the sphere radius must be a positive number of metres"));
        }
        let sigma_m = match p.sigma_m {
            None => cell_size_m(p.level, p.radius),
            Some(s) if s.is_finite() && s > 0.0 => s,
            Some(s) => return Err(Error::param("sigma_m", s, "the kernel scale must be a positive number of metres")),
        };
        if !(p.threshold.is_finite() && p.threshold >= 0.0) {
            return Err(Error::param("threshold", p.threshold, "the keep threshold must be finite and ≥ 0"));
        }
        if p.npt == 0 {
            return Err(Error::param("npt", 0, "each sample needs at least one link (npt ≥ 1)"));
        }
        let rm = r_min(p.npt);
        let ring_weight = p.ring_weight.map_or(2.max(rm + 2), u64::from);
        let ring_search_init = p.ring_search_init.map_or(1.max(rm + 1), u64::from);
        let ring_search_max = p.ring_search_max.map_or(1.max(rm + 1) + 2, u64::from).max(ring_search_init);
        let side = 2 * ring_search_max as u128 + 1;
        if (p.npt as u128) > side * side {
            return Err(Error::param(
                "npt",
                p.npt,
                format!(
                    "the largest search square ({side}×{side} cells at ring_search_max = {ring_search_max}) \
                     cannot hold npt cells: lower npt or raise ring_search_max"
                ),
            ));
        }
        for (name, r) in
            [("ring_weight", ring_weight), ("ring_search_init", ring_search_init), ("ring_search_max", ring_search_max)]
        {
            if r > grid_nside {
                let needed = 64 - (r - 1).leading_zeros();
                let advice = if needed <= crate::geometry::MAX_LEVEL as u32 {
                    format!("use level ≥ {needed} (or a smaller npt / ring)")
                } else {
                    "no HEALPix level is that fine: lower npt or the ring".to_string()
                };
                return Err(Error::param(
                    name,
                    r,
                    format!("neighbourhood rings cannot exceed nside = {grid_nside} at level {}: {advice}", p.level),
                ));
            }
        }
        // rings ≤ nside ≤ 2^29 from here on
        let (ring_weight, ring_search_init, ring_search_max) =
            (ring_weight as u32, ring_search_init as u32, ring_search_max as u32);
        Ok(Config {
            npt: p.npt,
            sigma_m,
            threshold: p.threshold,
            radius: p.radius,
            ring_weight,
            ring_search_init,
            ring_search_max,
            num_threads: p.num_threads,
        })
    }

    /// Checks that the kernel is representable in the operator's float type: s² must not underflow
    /// to 0 (the weight of a sample on a cell centre would be 0/0).
    fn check_float<F: Real>(&self) -> Result<()> {
        let s2 = self.sigma_m * self.sigma_m;
        if s2 == 0.0 || F::from_f64(s2) == F::ZERO {
            return Err(Error::param(
                "sigma_m",
                self.sigma_m,
                format!("the kernel scale is so small that its square underflows in {}: give it in metres", F::NAME),
            ));
        }
        Ok(())
    }
}

/// What the construction found and how long each stage took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildInfo {
    /// Distinct cells holding samples.
    pub n_sample_cells: usize,
    /// Distinct candidate cells of the keep stage.
    pub n_candidates: usize,
    /// Candidate cells whose weight sum reached the threshold.
    pub n_kept: usize,
    /// Samples with fewer than `npt` links.
    pub n_partial_rows: usize,
    /// Samples with no link at all.
    pub n_empty_rows: usize,
    /// Seconds spent hashing and sorting the samples.
    pub hash_s: f64,
    /// Seconds in the keep stage.
    pub keep_s: f64,
    /// Seconds in the nearest-cell search and pruning.
    pub search_s: f64,
    /// Seconds estimating the samples' areas (the spacing estimate on the device for a GPU
    /// operator; ~0 with [`Area::Uniform`] or [`Area::Explicit`], and with [`Area::Auto`] on
    /// scattered samples).
    pub area_s: f64,
    /// Seconds assembling M and MT.
    pub assemble_s: f64,
}

impl BuildInfo {
    /// Total construction time in seconds.
    pub fn total_s(&self) -> f64 {
        self.hash_s + self.keep_s + self.search_s + self.area_s + self.assemble_s
    }
}

/// The samples' areas in the operator's sample order (`order`), on `target` where it can (the
/// spacing estimate), timed as their own stage.
#[allow(clippy::too_many_arguments)]
fn areas(
    params: &Params,
    lon: &[f64],
    lat: &[f64],
    cfg: &Config,
    order: &[u32],
    target: &Target,
    progress: &mut Progress,
    info: &mut BuildInfo,
) -> Result<Vec<f64>> {
    let area = match area::areas(&params.area, lon, lat, cfg.radius, target)? {
        Some(area) => order.iter().map(|&i| area[i as usize]).collect(),
        None => vec![1.0; order.len()],
    };
    let mode = match params.area {
        Area::Auto => "automatic",
        Area::ReferenceAuto => "the reference's automatic",
        Area::Spacing => "spacing",
        Area::Uniform => "uniform",
        Area::Explicit(_) => "explicit",
    };
    info.area_s = progress.stage(|_| format!("sample areas ({mode})"));
    Ok(area)
}

/// The bytes an operator holds (see [`PsfResampler::memory`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// On the host.
    pub host: usize,
    /// On its device (0 on the CPU).
    pub device: usize,
}

/// The PSF operators `M` (N×K) and `MT` (K×N) built from N samples, in `f32` or `f64`.
///
/// `y·M` is the area-weighted Gaussian average of the samples around each cell (each column of `M`
/// sums to 1); `h·MT` interpolates a cell field back to the samples (each sample's weights sum to 1).
/// The operator is immutable after construction and can be shared between threads.
///
/// # Examples
/// ```
/// use healpix_psf::{Params, PsfResampler};
/// // a 20 × 20 grid of samples around 8°E 45°N, 0.02° apart
/// let (mut lon, mut lat) = (vec![], vec![]);
/// for i in 0..20 { for j in 0..20 { lon.push(8.0 + 0.02 * i as f64); lat.push(45.0 + 0.02 * j as f64); } }
/// let op = PsfResampler::<f64>::new(&lon, &lat, &Params::new(10))?;
/// assert_eq!(op.n(), 400);
/// assert!(op.k() > 0);
/// assert!(op.cell_ids().windows(2).all(|w| w[0] < w[1]));
/// // every sample's interpolation weights sum to one
/// let mt = op.mt_triplets();
/// let mut row_sums = vec![0.0; op.n()];
/// for (&i, &v) in mt.cols.iter().zip(&mt.vals) { row_sums[i as usize] += v; }
/// assert!(row_sums.iter().all(|s| (s - 1.0).abs() < 1e-12));
/// # Ok::<(), healpix_psf::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PsfResampler<F: Real> {
    grid: Grid,
    cfg: Config,
    n: usize,
    cell_ids: Vec<u64>,
    /// Links (N_used × npt slots that hold a link).
    nnz: usize,
    /// The links and weights on the host (all of them for a CPU operator; for a device operator,
    /// those asked for, copied from the device).
    host: host::HostArrays<F>,
    /// Position p of the sample axis (links, `d_m`, `area`, `sample_weight`) → the caller's sample
    /// index: samples are stored in cell order so that both products gather nearby memory. Holds
    /// the used samples only (all of them unless `sample_mask` left some out).
    order: Vec<u32>,
    /// The position of each of the caller's samples (N): the inverse of `order`, [`LEFT_OUT`] for
    /// a sample left out by `sample_mask`.
    position: Vec<u32>,
    info: BuildInfo,
    /// With `out_cell_ids`: indices of the cells without enough support (NaN in fits), ascending.
    uncomputable: Vec<u32>,
    /// With `fill_missing_out_cells`: the caller's index of the sample nearest to each uncomputable
    /// cell (same order as `uncomputable`).
    fill_from: Vec<u32>,
    /// Cells without any link (ascending): empty in every row of a fit.
    unlinked: Vec<u32>,
    /// Where the products and the solve run (the CPU, or a device holding a copy of the links).
    placed: Placed<F>,
    /// The CPU solve's large blocks between calls ([`PsfResampler::keep_blocks`]).
    blocks: Pool<F>,
}

impl<F: Real> PsfResampler<F> {
    /// Builds the operators from sample longitudes and latitudes in degrees.
    ///
    /// Longitudes may take any finite value (they are wrapped); latitudes must lie in [-90, 90].
    /// Errors: empty or mismatched input, bad coordinates, impossible parameters, an explicit area of
    /// the wrong length or with negative/NaN entries, and no cell passing the threshold.
    pub fn new(lon_deg: &[f64], lat_deg: &[f64], params: &Params) -> Result<Self> {
        let target = backend::open(params.device)?;
        let cfg = Config::resolve(params)?;
        cfg.check_keep_stage(params)?;
        cfg.check_float::<F>()?;
        let grid = Grid::new(params.level, params.nest, params.ellipsoid)?;
        let used = validate_samples(lon_deg, lat_deg, params.sample_mask.as_deref())?;
        if let Area::Explicit(a) = &params.area {
            validate_area(a, lon_deg.len(), used.as_deref())?;
        }
        let Some(used) = used else {
            return with_threads(params.num_threads, || build(grid, cfg, lon_deg, lat_deg, params, target))?;
        };
        let pick = |v: &[f64]| -> Vec<f64> { used.iter().map(|&i| v[i as usize]).collect() };
        let (lon, lat) = (pick(lon_deg), pick(lat_deg));
        let area = match &params.area {
            Area::Explicit(a) => Area::Explicit(pick(a)),
            other => other.clone(),
        };
        let sub = Params { sample_mask: None, area, ..params.clone() };
        let mut op = with_threads(params.num_threads, || build(grid, cfg, &lon, &lat, &sub, target))??;
        op.use_caller_indices(&used, lon_deg.len());
        Ok(op)
    }

    /// After a construction from the used samples `used` (ascending caller indices) of `n`: the
    /// sample maps in the caller's indices.
    fn use_caller_indices(&mut self, used: &[u32], n: usize) {
        for i in self.order.iter_mut().chain(self.fill_from.iter_mut()) {
            *i = used[*i as usize];
        }
        self.position = assemble::inverse(&self.order, n);
        self.n = n;
    }

    /// Assembles the operators from links computed elsewhere (SPEC §3 only: no keep or search stage):
    /// for reusing a search, or for checking the assembly against another implementation.
    ///
    /// `cell_ids` (K, ascending ids of `params`' grid), `hi` (n×npt cell indices, −1 = no link, no
    /// cell twice in a row), `d_m` (n×npt distances in metres, ≥ 0 where linked) and `area` (n
    /// values ≥ 0) are validated; `params.npt`, `sigma_m`, `radius`, `level`, `nest` and `ellipsoid`
    /// are used, `params.area` is ignored and `params.sample_mask` must be unset. With
    /// `params.out_cell_ids` set (to any list), the cells are taken as requested ones and those
    /// whose raw support is ≤ `threshold` are uncomputable; `fill_missing_out_cells` is ignored
    /// here (it needs the sample coordinates).
    ///
    /// # Examples
    /// ```
    /// use healpix_psf::{Params, PsfResampler};
    /// // two samples, two cells: sample 0 links to both, sample 1 to cell 1 only
    /// let p = Params { npt: 2, sigma_m: Some(1000.0), ..Params::new(8) };
    /// let op = PsfResampler::<f64>::from_links(2, &[10, 11], &[0, 1, 1, -1], &[0.0, 500.0, 100.0, f64::INFINITY], &[1.0, 1.0], &p)?;
    /// assert_eq!(op.nnz(), 3);
    /// assert_eq!(op.cell_weight()[0], 1.0); // exp(0)
    /// # Ok::<(), healpix_psf::Error>(())
    /// ```
    pub fn from_links(
        n: usize,
        cell_ids: &[u64],
        hi: &[i32],
        d_m: &[f64],
        area: &[f64],
        params: &Params,
    ) -> Result<Self> {
        let cfg = Config::resolve(params)?;
        cfg.check_float::<F>()?;
        let grid = Grid::new(params.level, params.nest, params.ellipsoid)?;
        if params.sample_mask.is_some() {
            return Err(Error::param(
                "sample_mask",
                "set",
                "from_links takes the links of the samples to use: give those only and leave sample_mask unset",
            ));
        }
        check_links(&grid, cfg.npt, n, cell_ids, hi, d_m)?;
        validate_area(area, n, None)?;
        let d: Vec<F> = d_m.iter().zip(hi).map(|(&d, &h)| if h >= 0 { F::from_f64(d) } else { F::INFINITY }).collect();
        let order = (0..n as u32).collect();
        let links =
            assemble::Links { cell_ids: cell_ids.to_vec(), hi: hi.to_vec(), d_m: d, area: area.to_vec(), order };
        let mut op = assemble::assemble::<F>(grid, cfg, links, backend::open(params.device)?, &[], Vec::new())?;
        if params.out_cell_ids.is_some() {
            // the cells are taken as the requested ones: flag those without enough support
            op.uncomputable = op.weak_cells();
        }
        Ok(op)
    }

    /// The bytes the operator holds now on the host and on its device. A CPU operator holds its
    /// links and weights on the host; a device operator holds them on the device, and on the host
    /// only its sample order, cell ids and the arrays an accessor (or a fit with missing samples or
    /// conservation) has copied from the device so far.
    ///
    /// # Examples
    /// ```
    /// use healpix_psf::{Params, PsfResampler};
    /// let (lon, lat): (Vec<f64>, Vec<f64>) = (0..400).map(|i| (8.0 + 0.01 * (i % 20) as f64, 45.0 + 0.01 * (i / 20) as f64)).unzip();
    /// let op = PsfResampler::<f32>::new(&lon, &lat, &Params::new(10))?;
    /// let mem = op.memory();
    /// assert_eq!(mem.device, 0);
    /// // at least the links: a cell index and two weights per slot
    /// assert!(mem.host >= op.n() * op.npt() * (4 + 2 * 4));
    /// # Ok::<(), healpix_psf::Error>(())
    /// ```
    pub fn memory(&self) -> MemoryUse {
        let small = 4 * (self.order.len() + self.position.len() + self.unlinked.len())
            + 4 * (self.uncomputable.len() + self.fill_from.len())
            + 8 * self.cell_ids.len();
        MemoryUse { host: small + self.host.bytes(), device: self.placed.device_bytes() }
    }

    /// What the construction found and the time of each stage (all zero for [`PsfResampler::from_links`]).
    pub fn build_info(&self) -> &BuildInfo {
        &self.info
    }

    /// Number of samples N (as given, including any left out by `sample_mask`).
    pub fn n(&self) -> usize {
        self.n
    }
    /// Number of samples the operator is built from: N, or those `sample_mask` kept.
    pub fn n_used(&self) -> usize {
        self.order.len()
    }
    /// Number of cells K.
    pub fn k(&self) -> usize {
        self.cell_ids.len()
    }
    /// Links per sample.
    pub fn npt(&self) -> usize {
        self.cfg.npt
    }
    /// Number of links (non-zeros of M).
    pub fn nnz(&self) -> usize {
        self.nnz
    }
    /// HEALPix level.
    pub fn level(&self) -> u8 {
        self.grid.level()
    }
    /// Nested (true) or ring (false) numbering of `cell_ids`.
    pub fn nest(&self) -> bool {
        self.grid.nest()
    }
    /// The ellipsoid.
    pub fn ellipsoid(&self) -> Ellipsoid {
        self.grid.ellipsoid()
    }
    /// The kernel scale s in metres.
    pub fn sigma_m(&self) -> f64 {
        self.cfg.sigma_m
    }
    /// Sphere radius in metres.
    pub fn radius(&self) -> f64 {
        self.cfg.radius
    }
    /// The keep threshold.
    pub fn threshold(&self) -> f64 {
        self.cfg.threshold
    }
    /// The resolved rings (keep stage, first and last search ring).
    pub fn rings(&self) -> (u32, u32, u32) {
        (self.cfg.ring_weight, self.cfg.ring_search_init, self.cfg.ring_search_max)
    }
    /// The grid (level, scheme, ellipsoid) the cells belong to.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }
    /// HEALPix ids of the K cells, ascending, in the operator's scheme.
    pub fn cell_ids(&self) -> &[u64] {
        &self.cell_ids
    }
    /// The index in [`PsfResampler::cell_ids`] of a cell id, if the operator has that cell.
    pub fn cell_index(&self, id: u64) -> Option<usize> {
        self.cell_ids.binary_search(&id).ok()
    }
    /// With `out_cell_ids`: indices of the cells whose raw support is ≤ `threshold` (NaN in every
    /// fit, or filled with `fill_missing_out_cells`), ascending. Empty otherwise.
    pub fn uncomputable_cells(&self) -> &[u32] {
        &self.uncomputable
    }
    /// With `fill_missing_out_cells`: the caller's index of the sample nearest to the centre of
    /// each of [`PsfResampler::uncomputable_cells`] (smallest chord distance, ties to the lower
    /// index), whose value the cell takes in every fit. Empty otherwise.
    pub fn fill_samples(&self) -> &[u32] {
        &self.fill_from
    }
    /// The number of samples linked to each cell (K).
    pub fn cell_sample_counts(&self) -> Vec<u32> {
        self.host_cells().ptr.windows(2).map(|w| (w[1] - w[0]) as u32).collect()
    }
    /// A copy of [`PsfResampler::cell_ids`] (the name of the original API).
    ///
    /// # Examples
    /// ```
    /// use healpix_psf::{Params, PsfResampler};
    /// let op = PsfResampler::<f32>::new(&[8.0, 8.01, 8.02], &[45.0, 45.0, 45.01], &Params::new(9))?;
    /// let ids = op.get_cell_ids();
    /// assert_eq!(ids.len(), op.k());
    /// assert!(ids.iter().all(|&c| c < 12 * 4u64.pow(9)));
    /// # Ok::<(), healpix_psf::Error>(())
    /// ```
    pub fn get_cell_ids(&self) -> Vec<u64> {
        self.cell_ids.clone()
    }
    /// Cell index of each link, N×npt row-major in the caller's sample order; −1 where a sample has
    /// fewer than npt links. Each sample's links are sorted by ascending distance (ties: lower cell
    /// index first). A copy: the operator stores samples in cell order ([`PsfResampler::sample_order`]).
    pub fn hi(&self) -> Vec<i32> {
        self.to_caller_order(&self.host_samples().hi, self.cfg.npt, -1)
    }
    /// Distance (m) of each link, N×npt row-major in the caller's sample order; +∞ where missing.
    pub fn d_m(&self) -> Vec<F> {
        self.to_caller_order(self.host_d_m(), self.cfg.npt, F::INFINITY)
    }
    /// Per-sample area weights used in `M`, in the caller's sample order (0 for samples left out).
    pub fn area(&self) -> Vec<F> {
        self.to_caller_order(self.host_area(), 1, F::ZERO)
    }
    /// `Dx`: the per-cell sum of area-weighted raw weights, the normalisation of M's columns and the
    /// weight of the CG inner product.
    pub fn cell_weight(&self) -> &[F] {
        self.host_dx()
    }
    /// `Dy`: the per-sample sum of area-weighted raw weights (the normalisation of MT's columns), in
    /// the caller's sample order (0 for samples left out).
    pub fn sample_weight(&self) -> Vec<F> {
        self.to_caller_order(self.host_dy(), 1, F::ZERO)
    }
    /// The operator's internal sample axis ([`PsfResampler::n_used`] positions): position p holds
    /// the caller's sample `sample_order()[p]`.
    /// Samples are kept in cell order so that both products read nearby memory; the link views
    /// [`PsfResampler::sample_links`] and [`PsfResampler::cell_links`] use these positions.
    pub fn sample_order(&self) -> &[u32] {
        &self.order
    }
    /// The links by sample position (fixed width npt, see [`PsfResampler::sample_order`]), holding
    /// MT's values.
    pub fn sample_links(&self) -> &SampleLinks<F> {
        self.host_samples()
    }
    /// The links by cell (CSR over cells, sample positions ascending, see
    /// [`PsfResampler::sample_order`]), holding M's values.
    pub fn cell_links(&self) -> &CellLinks<F> {
        self.host_cells()
    }
    /// `M` (N×K) as triplets sorted by (sample, cell), with the caller's sample indices.
    pub fn m_triplets(&self) -> Triplets<F> {
        sparse::m_triplets(self.host_samples(), self.host_cells(), &self.position)
    }
    /// `MT` (K×N) as triplets sorted by (cell, sample), with the caller's sample indices.
    pub fn mt_triplets(&self) -> Triplets<F> {
        sparse::mt_triplets(self.host_samples(), self.host_cells(), &self.order, self.n)
    }

    /// A per-sample array of `width` values per sample, from cell order to the caller's order;
    /// `missing` for samples left out.
    fn to_caller_order<T: Copy>(&self, v: &[T], width: usize, missing: T) -> Vec<T> {
        let mut out = vec![missing; self.n * width];
        for (i, o) in out.chunks_exact_mut(width).enumerate() {
            let p = self.position[i];
            if p != LEFT_OUT {
                let p = p as usize;
                o.copy_from_slice(&v[p * width..(p + 1) * width]);
            }
        }
        out
    }
    /// Centres of the K cells as (longitude in [0, 360), geodetic latitude), degrees.
    pub fn cell_lonlat(&self) -> Vec<(f64, f64)> {
        self.cell_ids.iter().map(|&c| self.grid.center(c).expect("cell ids are valid")).collect()
    }
}

/// The position of a sample left out by `sample_mask`.
pub(crate) use crate::backend::LEFT_OUT;

/// Checks the samples' sizes and the coordinates of those used; with a mask, the used samples'
/// indices (ascending).
pub(crate) fn validate_samples(lon: &[f64], lat: &[f64], mask: Option<&[bool]>) -> Result<Option<Vec<u32>>> {
    if lon.is_empty() && lat.is_empty() {
        return Err(Error::EmptyInput);
    }
    if lon.len() != lat.len() {
        return Err(Error::LengthMismatch { what: "lat_deg", expected: lon.len(), got: lat.len() });
    }
    // u32::MAX itself marks a sample left out
    if lon.len() >= u32::MAX as usize {
        return Err(Error::TooLarge { what: "number of samples", value: lon.len() as u64, limit: u32::MAX as u64 - 1 });
    }
    let used = match mask {
        None => None,
        Some(m) if m.len() != lon.len() => {
            return Err(Error::LengthMismatch { what: "sample_mask", expected: lon.len(), got: m.len() })
        }
        Some(m) => {
            let used: Vec<u32> = (0..m.len() as u32).filter(|&i| m[i as usize]).collect();
            if used.is_empty() {
                return Err(Error::param("sample_mask", 0, "the mask leaves no sample to build from"));
            }
            Some(used)
        }
    };
    for i in used_indices(lon.len(), used.as_deref()) {
        crate::geometry::check_lonlat(i, lon[i], lat[i])?;
    }
    Ok(used)
}

/// The caller's indices of the samples used: all `n`, or those `used` lists.
fn used_indices(n: usize, used: Option<&[u32]>) -> Box<dyn Iterator<Item = usize> + '_> {
    match used {
        None => Box::new(0..n),
        Some(u) => Box::new(u.iter().map(|&i| i as usize)),
    }
}

/// The mask of the samples that have a value (not NaN) in at least one of the B rows of N values
/// in `val` (row-major): for [`Params::sample_mask`] when the missing pattern is fixed (a land
/// mask) — the operator is then built from valid samples only.
///
/// # Examples
/// ```
/// use healpix_psf::{valid_samples, Params, PsfResampler};
/// // two rows of three samples; the last one (land) is missing in both
/// let val = [1.0, f64::NAN, f64::NAN, 2.0, 3.0, f64::NAN];
/// let mask = valid_samples(&val, 3)?;
/// assert_eq!(mask, vec![true, true, false]);
/// let (lon, lat) = ([8.0, 8.01, f64::NAN], [45.0, 45.01, 45.0]); // land coordinates may even be NaN
/// let op = PsfResampler::<f64>::new(&lon, &lat, &Params { sample_mask: Some(mask), ..Params::new(10) })?;
/// assert_eq!((op.n(), op.n_used()), (3, 2));
/// # Ok::<(), healpix_psf::Error>(())
/// ```
pub fn valid_samples<F: Real>(val: &[F], n: usize) -> Result<Vec<bool>> {
    if n == 0 || val.is_empty() || !val.len().is_multiple_of(n) {
        return Err(Error::LengthMismatch { what: "val", expected: n, got: val.len() });
    }
    let mut mask = vec![false; n];
    for row in val.chunks_exact(n) {
        for (m, v) in mask.iter_mut().zip(row) {
            *m |= !v.is_nan();
        }
    }
    Ok(mask)
}

/// Why a restricted construction failed when none of the requested cells passed the keep stage
/// (the distributed build tells this failure of a rank's local build from the others).
pub(crate) const NO_REQUESTED_CELL_KEPT: &str =
    "none of the requested cells passed the keep threshold (no sample is near them)";

/// The kept cells (nested, ascending) that were requested (ids in the grid's scheme).
fn restrict(grid: &Grid, kept: Vec<u64>, ids: &[u64]) -> Result<Vec<u64>> {
    if ids.is_empty() {
        return Err(Error::param("out_cell_ids", 0.0, "the list of requested cells is empty"));
    }
    if let Some(&bad) = ids.iter().find(|&&c| c >= grid.n_cells()) {
        return Err(Error::param(
            "out_cell_ids",
            bad,
            format!("level {} has cell ids 0..{}", grid.level(), grid.n_cells()),
        ));
    }
    let mut want: Vec<u64> = ids.iter().map(|&c| grid.nested_id(c)).collect();
    want.sort_unstable();
    want.dedup();
    let out: Vec<u64> = kept.into_iter().filter(|c| want.binary_search(c).is_ok()).collect();
    if out.is_empty() {
        return Err(Error::param("out_cell_ids", want.len() as f64, NO_REQUESTED_CELL_KEPT));
    }
    Ok(out)
}

/// Checks links given from outside (`from_links`, a saved operator): n samples, `cell_ids` strictly
/// ascending ids of `grid`, `hi` n×npt cell indices (−1 or < K, no cell twice in a row) and `d_m`
/// n×npt distances (≥ 0 where linked).
fn check_links<D: Real>(grid: &Grid, npt: usize, n: usize, cell_ids: &[u64], hi: &[i32], d_m: &[D]) -> Result<()> {
    if n == 0 {
        return Err(Error::EmptyInput);
    }
    let links = n.checked_mul(npt).ok_or(Error::TooLarge {
        what: "number of links n·npt",
        value: u64::MAX,
        limit: usize::MAX as u64,
    })?;
    if n > u32::MAX as usize {
        return Err(Error::TooLarge { what: "number of samples", value: n as u64, limit: u32::MAX as u64 });
    }
    if cell_ids.len() > i32::MAX as usize {
        return Err(Error::TooLarge { what: "number of cells", value: cell_ids.len() as u64, limit: i32::MAX as u64 });
    }
    for (what, len) in [("hi", hi.len()), ("d_m", d_m.len())] {
        if len != links {
            return Err(Error::LengthMismatch { what, expected: links, got: len });
        }
    }
    for (index, w) in cell_ids.windows(2).enumerate() {
        if w[0] >= w[1] {
            return Err(Error::InvalidValue {
                what: "cell_ids",
                index: index + 1,
                value: w[1] as f64,
                reason: "cell ids must be strictly ascending",
            });
        }
    }
    if let Some(&last) = cell_ids.last() {
        if last >= grid.n_cells() {
            return Err(Error::InvalidValue {
                what: "cell_ids",
                index: cell_ids.len() - 1,
                value: last as f64,
                reason: "not a cell of this level",
            });
        }
    }
    let k = cell_ids.len() as i64;
    for (i, (row_h, row_d)) in hi.chunks_exact(npt).zip(d_m.chunks_exact(npt)).enumerate() {
        for (t, (&h, d)) in row_h.iter().zip(row_d).enumerate() {
            let index = i * npt + t;
            if h < -1 || h as i64 >= k {
                return Err(Error::InvalidValue {
                    what: "hi",
                    index,
                    value: h as f64,
                    reason: "must be −1 or a cell index < K",
                });
            }
            let d = d.to_f64();
            if h >= 0 && (d.is_nan() || d < 0.0) {
                return Err(Error::InvalidValue {
                    what: "d_m",
                    index,
                    value: d,
                    reason: "a linked distance must be ≥ 0",
                });
            }
            if h >= 0 && row_h[..t].contains(&h) {
                return Err(Error::InvalidValue {
                    what: "hi",
                    index,
                    value: h as f64,
                    reason: "a sample links to a cell twice",
                });
            }
        }
    }
    Ok(())
}

/// Checks explicit areas (of the used samples only, with a mask).
pub(crate) fn validate_area(a: &[f64], n: usize, used: Option<&[u32]>) -> Result<()> {
    if a.len() != n {
        return Err(Error::LengthMismatch { what: "area", expected: n, got: a.len() });
    }
    for index in used_indices(n, used) {
        let value = a[index];
        if !value.is_finite() || value < 0.0 {
            return Err(Error::InvalidValue { what: "area", index, value, reason: "areas must be finite and ≥ 0" });
        }
    }
    Ok(())
}

fn build<F: Real>(
    grid: Grid,
    cfg: Config,
    lon: &[f64],
    lat: &[f64],
    params: &Params,
    target: Target,
) -> Result<PsfResampler<F>> {
    let mut progress = Progress::new(params.verbose);
    let mut info = BuildInfo::default();
    let restricted = params.out_cell_ids.is_some();
    let args = ConstructArgs {
        level: grid.level(),
        wgs84: params.ellipsoid == Ellipsoid::Wgs84,
        nest: grid.nest(),
        ring_weight: cfg.ring_weight,
        ring_init: cfg.ring_search_init,
        ring_max: cfg.ring_search_max,
        npt: cfg.npt,
        radius: cfg.radius,
        sigma_m: cfg.sigma_m,
        threshold: cfg.threshold,
    };
    // a device builds the links itself, and keeps them (restricted output: on the host)
    if !restricted {
        if let Some(built) = target.construct(lon, lat, &args) {
            return device_operator(grid, cfg, built?, lon, lat, params, &target, progress, info);
        }
    }
    let (links, smp) = host_links(&grid, &cfg, lon, lat, params, &target, &mut progress, &mut info)?;
    let HostLinks { cell_ids, hi, d_m, order, xyz, cell_xyz } = links;

    let area = areas(params, lon, lat, &cfg, &order, &target, &mut progress, &mut info)?;
    let links = assemble::Links { cell_ids, hi, d_m, area, order };
    let mut op = assemble::assemble::<F>(grid, cfg, links, target, &xyz, cell_xyz)?;
    info.assemble_s = progress.stage(|_| format!("assembled M and MT: {} links ({})", op.nnz(), F::NAME));
    if restricted {
        op.uncomputable = op.weak_cells();
        if params.fill_missing_out_cells && !op.uncomputable.is_empty() {
            let centres: Vec<[f64; 3]> = op
                .uncomputable
                .iter()
                .map(|&c| grid.center_nested_xyz(grid.nested_id(op.cell_ids[c as usize])))
                .collect();
            op.fill_from = nearest::nearest_samples(&smp, &centres).into_iter().map(|(_, i)| i).collect();
        }
    }
    op.info = info;
    Ok(op)
}

/// An operator's links before assembly: pruned cells (ids in the grid's scheme and centres), the
/// links by sample position, and the samples' order and unit vectors.
struct HostLinks<F> {
    cell_ids: Vec<u64>,
    hi: Vec<i32>,
    d_m: Vec<F>,
    order: Vec<u32>,
    xyz: Vec<[f64; 3]>,
    cell_xyz: Vec<[f64; 3]>,
}

/// The links built by the CPU stages (hashing, keep, search, pruning), and the hashed samples.
#[allow(clippy::too_many_arguments)]
fn host_links<F: Real>(
    grid: &Grid,
    cfg: &Config,
    lon: &[f64],
    lat: &[f64],
    params: &Params,
    target: &Target,
    progress: &mut Progress,
    info: &mut BuildInfo,
) -> Result<(HostLinks<F>, samples::Samples)> {
    let n = lon.len();
    let mut smp = samples::Samples::new(grid, lon, lat);
    info.n_sample_cells = smp.n_unique();
    // rates, and the time left from the stages' typical shares of a construction (benches/RESULTS.md:
    // keep 58 %, search 25 %, assembly 17 % of what follows the hashing)
    let rate = |dt: f64| format!("{:.2} M samples/s", n as f64 / dt.max(1e-9) / 1e6);
    info.hash_s =
        progress.stage(|dt| format!("hashed {n} samples into {} distinct cells ({})", smp.n_unique(), rate(dt)));

    let kept = keep::keep_stage(grid, cfg, &smp)?;
    info.n_candidates = kept.n_candidates;
    info.n_kept = kept.nested.len();
    info.keep_s = progress.stage(|dt| {
        format!(
            "keep stage: {} candidate cells, {} with weight sum ≥ {} ({}; about {:.1} s to go)",
            kept.n_candidates,
            kept.nested.len(),
            cfg.threshold,
            rate(dt),
            dt * 0.73
        )
    });

    let restricted = params.out_cell_ids.is_some();
    let kept_nested = match &params.out_cell_ids {
        None => kept.nested,
        Some(ids) => restrict(grid, kept.nested, ids)?,
    };
    let kept = keep::KeptCells::index(grid, kept_nested);
    if kept.len() > i32::MAX as usize {
        return Err(Error::TooLarge { what: "number of kept cells", value: kept.len() as u64, limit: i32::MAX as u64 });
    }
    let found = search::nearest::<F>(grid, cfg, &smp, &kept);
    info.n_partial_rows = found.n_partial;
    info.n_empty_rows = found.n_empty;
    let (cell_ids, hi, d_m, kept_of) = search::prune(found, &kept, !restricted);
    let cell_xyz: Vec<[f64; 3]> =
        if target.needs_coordinates() { kept_of.iter().map(|&k| kept.xyz[k as usize]).collect() } else { Vec::new() };
    drop(kept);
    // the samples stay whole where the nearest-sample fill needs them
    let need_samples = restricted && params.fill_missing_out_cells;
    let (order, xyz) = if need_samples {
        (smp.order.clone(), smp.xyz.clone())
    } else {
        (std::mem::take(&mut smp.order), std::mem::take(&mut smp.xyz))
    };
    info.search_s = progress.stage(|dt| {
        format!(
            "search: {} partial rows ({} empty); pruned to K = {} cells ({}; about {:.1} s to go)",
            info.n_partial_rows,
            info.n_empty_rows,
            cell_ids.len(),
            rate(dt),
            dt * 0.66
        )
    });
    if cell_ids.is_empty() {
        return Err(Error::NoSampleLinked { ring_search_max: cfg.ring_search_max });
    }
    Ok((HostLinks { cell_ids, hi, d_m, order, xyz, cell_xyz }, smp))
}

/// The operator of the links a device built and keeps: its weights computed there, on the host
/// only the sample order and the cell ids.
#[allow(clippy::too_many_arguments)]
fn device_operator<F: Real>(
    grid: Grid,
    cfg: Config,
    c: Constructed,
    lon: &[f64],
    lat: &[f64],
    params: &Params,
    target: &Target,
    mut progress: Progress,
    mut info: BuildInfo,
) -> Result<PsfResampler<F>> {
    info.n_sample_cells = c.n_unique;
    info.n_candidates = c.n_candidates;
    info.n_kept = c.n_kept;
    info.n_partial_rows = c.n_partial;
    info.n_empty_rows = c.n_empty;
    let k = c.cell_ids.len();
    info.search_s = progress.stage(|dt| {
        format!(
            "links built on the device in {dt:.3} s: {} distinct sample cells, {} candidate cells, {} kept with \
             weight sum ≥ {}, {} partial rows ({} empty), K = {k} after pruning",
            c.n_unique, c.n_candidates, c.n_kept, cfg.threshold, c.n_partial, c.n_empty
        )
    });
    if k == 0 {
        return Err(Error::NoSampleLinked { ring_search_max: cfg.ring_search_max });
    }
    let area = areas(params, lon, lat, &cfg, &c.order, target, &mut progress, &mut info)?;
    let placed = backend::place_links::<F>(c.links, &area, cfg.radius, cfg.sigma_m)?;
    let mut op = assemble::on_device(grid, cfg, c.order, c.cell_ids, c.nnz, placed);
    info.assemble_s = progress.stage(|_| format!("assembled M and MT on the device: {} links ({})", op.nnz(), F::NAME));
    op.info = info;
    Ok(op)
}
