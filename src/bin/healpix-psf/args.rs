//! The command line: every option of `regrid` with its default and why, and the [`Plan`] made
//! from them before any input is read — so that a usage error (status 2) costs nothing and never
//! follows a long read.

use crate::render::Projection;
use crate::CliError;
use clap::{Parser, Subcommand, ValueEnum};
use healpix_psf::{kernel, Area, Bound, Device, Ellipsoid, EmptyCells, FitOptions, MissingData, Params, Stopping};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "healpix-psf",
    version,
    about = "Regrid longitude/latitude data onto HEALPix cells with a Gaussian point-spread fit"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Regrid a variable of NetCDF files to HEALPix cells and write them as NetCDF (CF 1.13
    /// HEALPix grid mapping, xdggs attributes).
    ///
    /// Longitude and latitude come from the variable's CF attributes (`coordinates`, `standard_name`,
    /// `units`): 1-D coordinates (regular grids or point lists) and 2-D ones (curvilinear grids such
    /// as NEMO's tripolar ORCA) both work. Every other dimension (time, depth, ensemble …) becomes
    /// rows fitted together and is restored in the output. Fill values, `missing_value` and values
    /// outside `valid_range` are missing; points missing in every row (land) are left out of the
    /// operator, points missing in some rows are left out of those rows' fits.
    ///
    /// Several inputs on the same grid (a time series split over files, or a quoted glob such as
    /// 'sst_*.nc') share one operator: one output each in the folder given by -o, or one file with
    /// --concat. Outputs are written under temporary names and renamed only when complete.
    Regrid(Box<RegridArgs>),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AreaArg {
    /// From the sample spacing on gridded data, uniform on scattered points.
    Auto,
    /// From the sample spacing, any layout.
    Spacing,
    /// The reference implementation's latitude-ring estimate (for comparisons only).
    Reference,
    /// Every sample weighs the same.
    Uniform,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum Dtype {
    F32,
    F64,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum EmptyArg {
    /// Missing (NaN).
    Missing,
    /// The fitted number (the reference implementation's behaviour).
    Fitted,
}

#[derive(clap::Args)]
pub struct RegridArgs {
    /// The NetCDF file(s) to read: one, several on the same grid, or a quoted glob ('data/*.nc').
    #[arg(required = true, num_args = 1..)]
    pub inputs: Vec<String>,
    /// The variable to regrid.
    #[arg(long)]
    pub var: String,
    /// The NetCDF file to write; with several inputs (without --concat) an existing folder, where
    /// each output takes its input's file name.
    #[arg(short, long)]
    pub output: String,
    /// With several inputs: one output holding all their rows, concatenated along the first
    /// batch dimension (time) in the order given.
    #[arg(long)]
    pub concat: bool,
    /// HEALPix level 0–29, or `auto`: the finest level whose cells are at least as wide as the
    /// valid points are apart (median spacing), so that cells do not outnumber points.
    #[arg(long, default_value = "auto")]
    pub level: String,
    /// The longitude variable (default: found from CF attributes).
    #[arg(long)]
    pub lon: Option<String>,
    /// The latitude variable (default: found from CF attributes).
    #[arg(long)]
    pub lat: Option<String>,

    /// Cells linked to each sample (its nearest kept cells).
    #[arg(long, default_value_t = 9)]
    pub npt: usize,
    /// Kernel scale s in metres, w = exp(−2d²/s²) (s = 2σ); default the cell size.
    #[arg(long, conflicts_with = "fwhm_m")]
    pub sigma_m: Option<f64>,
    /// Kernel full width at half maximum in metres (instead of --sigma-m; FWHM = 1.1774 s).
    #[arg(long)]
    pub fwhm_m: Option<f64>,
    /// Keep a cell when the summed kernel weight of the samples near it reaches this.
    #[arg(long, default_value_t = 0.1)]
    pub threshold: f64,
    /// Number cells in the ring scheme (default nested).
    #[arg(long)]
    pub ring: bool,
    /// Place samples on a sphere (default: WGS84 latitudes, mapped to the authalic sphere).
    #[arg(long)]
    pub sphere: bool,
    /// Sphere radius in metres, for distances and the default kernel scale.
    #[arg(long, default_value_t = 6_371_000.0)]
    pub radius: f64,
    /// Neighbourhood ring of the keep stage (default from --npt).
    #[arg(long)]
    pub ring_weight: Option<u32>,
    /// First ring of the nearest-cell search (default from --npt).
    #[arg(long)]
    pub ring_search_init: Option<u32>,
    /// Last ring of the nearest-cell search (default from --npt).
    #[arg(long)]
    pub ring_search_max: Option<u32>,
    /// Per-sample area weights (a variable named by the input's CF `cell_measures = "area: NAME"`
    /// attribute is used when present, unless another choice is given here).
    #[arg(long, value_enum, default_value = "auto")]
    pub area: AreaArg,
    /// Per-sample areas from this variable of the input (on its spatial dimensions, any unit).
    #[arg(long)]
    pub area_var: Option<String>,
    /// Regrid onto the cells of this NetCDF file only (its `cell_ids`, e.g. an earlier output);
    /// its level is used with `--level auto`. Requested cells without enough support come out
    /// missing.
    #[arg(long)]
    pub cells: Option<String>,
    /// With --cells: give requested cells without enough support the value of the nearest point.
    #[arg(long, requires = "cells")]
    pub fill_missing_cells: bool,
    /// Floating-point precision of the operator and the solve.
    #[arg(long, value_enum, default_value = "f64")]
    pub dtype: Dtype,
    /// `cpu`, `cuda` or `cuda:N` (a build with the `cuda` feature and an NVIDIA GPU).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Keep points that are missing in every row in the operator (by default they are left out,
    /// as land is for ocean data: cells reached only by them are then not in the output).
    #[arg(long)]
    pub keep_missing_points: bool,

    /// Damping λ ≥ 0 of the least-squares fit. The default 1e-2 keeps the solution stable: with
    /// λ = 0 (the reference implementation's default) the problem is singular wherever cells
    /// outnumber samples locally and the field oscillates between them.
    #[arg(long, default_value_t = 1e-2)]
    pub lam: f64,
    /// Most conjugate-gradient iterations.
    #[arg(long, default_value_t = 200)]
    pub max_iter: usize,
    /// Relative tolerance of the conjugate gradient.
    #[arg(long, default_value_t = 1e-8)]
    pub tol: f64,
    /// Stop each row on its own residual (default: all rows until the worst meets the pooled one).
    #[arg(long)]
    pub per_row: bool,
    /// Lower bound on the output, imposed inside the fit: a number, or `input` (each row's smallest
    /// valid value).
    #[arg(long)]
    pub lower: Option<String>,
    /// Upper bound on the output: a number, or `input` (each row's largest valid value).
    #[arg(long)]
    pub upper: Option<String>,
    /// Most active-set passes of a bounded fit.
    #[arg(long, default_value_t = 10)]
    pub max_outer: usize,
    /// Keep each row's area-weighted mean exactly.
    #[arg(long)]
    pub conservative: bool,
    /// Start the fit from an earlier output of the same variable on the same cells (a warm start,
    /// e.g. the previous time step regridded with the same settings and --cells).
    #[arg(long)]
    pub x0: Option<String>,
    /// Cells none of whose linked samples is valid in a row (`fitted` needs --zero-fill-missing).
    #[arg(long, value_enum, default_value = "missing")]
    pub empty_cells: EmptyArg,
    /// Count a point missing in some rows as 0 in those rows' fits, as the reference does (which
    /// pulls the field towards zero around every gap). By default such a point is left out of the
    /// rows it is missing in.
    #[arg(long)]
    pub zero_fill_missing: bool,
    /// Fail (status 1, nothing written) when a fitted cell lies outside the data's range: the
    /// input's valid_min/valid_max, or else each row's range of valid values widened by 10 % of
    /// its span on each side. Without it such cells are counted, reported and recorded
    /// (`fit_cells_out_of_range`).
    #[arg(long)]
    pub strict: bool,

    /// Also draw the result as a PNG map (with several inputs and no --concat: a folder, one map
    /// per output).
    #[arg(long)]
    pub png: Option<String>,
    /// Draw the input samples beside the result (same view and colour scale).
    #[arg(long)]
    pub png_input: bool,
    /// The row (time step …) to draw, counted from 0 over the batch dimensions in order.
    #[arg(long, default_value_t = 0)]
    pub png_row: usize,
    /// Map projection of the PNG: `auto` = the whole globe (Mollweide) for global data, a view
    /// around the data for regional data.
    #[arg(long, value_enum, default_value = "auto")]
    pub projection: Projection,
    /// Width in pixels of each map panel of the PNG (200–8000).
    #[arg(long, default_value_t = 1000)]
    pub png_width: usize,
    /// No progress messages on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// Run as an MPI program, `mpirun -np P healpix-psf regrid --distributed …` (a build with
    /// `--features cli,mpi`): each rank reads the inputs and passes the points of its tile of the
    /// grid (blocks of a 2-D grid, runs of a list of points) to the distributed operator and fits;
    /// rank 0 writes the same files one process writes.
    #[arg(long)]
    pub distributed: bool,
}

/// A level given on the command line.
#[derive(Clone, Copy)]
pub enum Level {
    Auto,
    Fixed(u8),
}

/// One output and the inputs whose rows it holds.
pub struct Job {
    pub inputs: Vec<PathBuf>,
    pub output: PathBuf,
    pub png: Option<PathBuf>,
}

/// Everything decided from the command line alone, checked.
pub struct Plan {
    pub jobs: Vec<Job>,
    pub level: Level,
    /// Construction parameters, level and data-dependent parts (areas, masks, cells) still to set.
    pub params: Params,
    pub fit: FitOptions<f64>,
}

fn usage(s: String) -> CliError {
    CliError(s)
}

/// A bound from the command line.
fn bound(s: &Option<String>, flag: &str) -> Result<Bound, CliError> {
    match s.as_deref() {
        None => Ok(Bound::Unbounded),
        Some("input") => Ok(Bound::Input),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Bound::Value)
            .ok_or_else(|| usage(format!("{flag} {v}: give a number or `input`"))),
    }
}

fn device(s: &str) -> Result<Device, CliError> {
    s.parse().map_err(|_| usage(format!("--device {s}: use cpu, cuda or cuda:N")))
}

fn level(s: &str) -> Result<Level, CliError> {
    if s == "auto" {
        return Ok(Level::Auto);
    }
    s.parse()
        .ok()
        .filter(|&l: &u8| l <= 29)
        .map(Level::Fixed)
        .ok_or_else(|| usage(format!("--level {s}: give 0–29 or auto")))
}

/// The fit options of the command line (with `return_info`; no start).
fn fit_options(a: &RegridArgs) -> Result<FitOptions<f64>, CliError> {
    if a.empty_cells == EmptyArg::Fitted && !a.zero_fill_missing {
        return Err(usage(
            "--empty-cells fitted: cells without a valid point have a fitted number only when missing points count \
             as 0: add --zero-fill-missing (the reference's behaviour)"
                .into(),
        ));
    }
    let opts = FitOptions {
        missing: if a.zero_fill_missing { MissingData::ZeroFill } else { MissingData::PerRow },
        lam: a.lam,
        max_iter: a.max_iter,
        tol: a.tol,
        return_info: true,
        stopping: if a.per_row { Stopping::PerRow } else { Stopping::Pooled },
        lower: bound(&a.lower, "--lower")?,
        upper: bound(&a.upper, "--upper")?,
        max_outer: a.max_outer,
        conservative: a.conservative,
        empty_cells: match a.empty_cells {
            EmptyArg::Missing => EmptyCells::Missing,
            EmptyArg::Fitted => EmptyCells::Fitted,
        },
        progress: !a.quiet,
        ..FitOptions::default()
    };
    opts.check().map_err(with_flag)?;
    if a.dtype == Dtype::F32 {
        let as32 = FitOptions::<f32> { lam: a.lam, tol: a.tol, ..FitOptions::default() };
        as32.check().map_err(|e| usage(format!("{e} (--lam with --dtype f32)")))?;
    }
    Ok(opts)
}

/// A library error about a parameter, with the command-line flag that sets it.
fn with_flag(e: healpix_psf::Error) -> CliError {
    match &e {
        healpix_psf::Error::InvalidParameter { name, .. } => usage(format!("{e} (--{})", name.replace('_', "-"))),
        _ => usage(e.to_string()),
    }
}

/// Construction parameters of the command line, checked (at the given level, or at level 29
/// for `auto`, where ring limits are the loosest).
fn params(a: &RegridArgs, level: Level) -> Result<Params, CliError> {
    for (flag, v) in [("--sigma-m", a.sigma_m), ("--fwhm-m", a.fwhm_m)] {
        if let Some(x) = v {
            if !(x.is_finite() && x > 0.0) {
                return Err(usage(format!("{flag} {x}: give a positive number of metres")));
            }
        }
    }
    if !(200..=8000).contains(&a.png_width) {
        return Err(usage(format!("--png-width {}: give 200–8000 pixels", a.png_width)));
    }
    let p = Params {
        npt: a.npt,
        sigma_m: a.sigma_m.or(a.fwhm_m.map(kernel::fwhm_to_scale)),
        threshold: a.threshold,
        nest: !a.ring,
        radius: a.radius,
        ellipsoid: if a.sphere { Ellipsoid::Sphere } else { Ellipsoid::Wgs84 },
        ring_weight: a.ring_weight,
        ring_search_init: a.ring_search_init,
        ring_search_max: a.ring_search_max,
        num_threads: a.threads,
        verbose: !a.quiet,
        area: Area::Auto,
        fill_missing_out_cells: a.fill_missing_cells,
        device: device(&a.device)?,
        ..Params::new(match level {
            Level::Fixed(l) => l,
            Level::Auto => 29,
        })
    };
    p.check().map_err(with_flag)?;
    Ok(p)
}

/// Checks the option values and the paths, and expands the inputs (globs) into jobs.
pub fn plan(a: &RegridArgs) -> Result<Plan, CliError> {
    let level = level(&a.level)?;
    let params = params(a, level)?;
    let fit = fit_options(a)?;
    let inputs = expand_inputs(&a.inputs)?;
    let jobs = jobs(a, inputs)?;
    for job in &jobs {
        check_paths(job)?;
    }
    Ok(Plan { jobs, level, params, fit })
}

/// The inputs with quoted globs (`*`, `?` in the file name) expanded, sorted, in order.
fn expand_inputs(given: &[String]) -> Result<Vec<PathBuf>, CliError> {
    let mut out = Vec::new();
    for g in given {
        let p = Path::new(g);
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if p.exists() || !(name.contains('*') || name.contains('?')) {
            out.push(p.to_path_buf());
            continue;
        }
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut hits: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| usage(format!("{g}: cannot list {}: {e}", dir.display())))?
            .filter_map(|e| e.ok())
            .filter(|e| {
                // hidden files only when the pattern asks for them, as a shell does
                e.file_name().to_str().is_some_and(|n| {
                    (!n.starts_with('.') || name.starts_with('.')) && wildcard(name.as_bytes(), n.as_bytes())
                })
            })
            .filter(|e| e.path().is_file())
            .map(|e| e.path())
            .collect();
        if hits.is_empty() {
            return Err(usage(format!("{g}: no file matches")));
        }
        hits.sort();
        out.extend(hits);
    }
    Ok(out)
}

/// Whether `name` matches `pattern` (`*` any run, `?` one character), in O(|pattern|·|name|).
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    // matched[j]: the pattern so far matches name[..j]
    let mut matched = vec![false; name.len() + 1];
    matched[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        for j in 0..=name.len() {
            next[j] = match p {
                b'*' => matched[j] || (j > 0 && next[j - 1]),
                b'?' => j > 0 && matched[j - 1],
                c => j > 0 && matched[j - 1] && name[j - 1] == c,
            };
        }
        matched = next;
    }
    matched[name.len()]
}

/// The outputs: one per input in the folder `-o` names (an existing folder, or several inputs),
/// or one for all (`--concat`, or a single input and a file name).
fn jobs(a: &RegridArgs, inputs: Vec<PathBuf>) -> Result<Vec<Job>, CliError> {
    let (out, png) = (PathBuf::from(&a.output), a.png.as_ref().map(PathBuf::from));
    let folder = out.is_dir() || a.output.ends_with('/') || a.output.ends_with(std::path::MAIN_SEPARATOR);
    if folder && !out.is_dir() {
        return Err(usage(format!("-o {}: the folder does not exist", a.output)));
    }
    if a.concat || (inputs.len() == 1 && !folder) {
        if folder {
            return Err(usage(format!("-o {}: a folder; with --concat name the output file", a.output)));
        }
        return Ok(vec![Job { inputs, output: out, png }]);
    }
    if !folder {
        return Err(usage(format!(
            "-o {}: with {} inputs give an existing folder (one output per input, named as the input) or add --concat",
            out.display(),
            inputs.len()
        )));
    }
    per_input(inputs, &out, png.as_deref())
}

/// One job per input: `dir/<input's name>` and, with a map folder, `png_dir/<input's stem>.png`.
fn per_input(inputs: Vec<PathBuf>, dir: &Path, png_dir: Option<&Path>) -> Result<Vec<Job>, CliError> {
    if let Some(p) = png_dir {
        if !p.is_dir() {
            return Err(usage(format!(
                "--png {}: with one output per input give an existing folder (one map per output)",
                p.display()
            )));
        }
    }
    let mut seen = std::collections::HashSet::new();
    inputs
        .into_iter()
        .map(|i| {
            let name = i.file_name().ok_or_else(|| usage(format!("{}: not a file name", i.display())))?.to_owned();
            let png = png_dir.map(|d| d.join(Path::new(&name).with_extension("png")));
            let output = dir.join(&name);
            for o in std::iter::once(&output).chain(png.as_ref()) {
                if !seen.insert(o.clone()) {
                    return Err(usage(format!(
                        "two inputs would both write {}: rename one or regrid them separately",
                        o.display()
                    )));
                }
            }
            Ok(Job { output, inputs: vec![i], png })
        })
        .collect()
}

/// The same file, whether or not it exists yet (compares the canonical folder and the name).
fn same_file(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        dir.canonicalize().ok().map(|d| d.join(p.file_name().unwrap_or_default()))
    };
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => canon(a).is_some() && canon(a) == canon(b),
    }
}

/// An output's folder exists, and no output is an input or the other output.
fn check_paths(job: &Job) -> Result<(), CliError> {
    let outs: Vec<(&str, &Path)> =
        std::iter::once(("-o", job.output.as_path())).chain(job.png.as_deref().map(|p| ("--png", p))).collect();
    for (flag, o) in &outs {
        let dir = o.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(usage(format!("{flag} {}: the folder {} does not exist", o.display(), dir.display())));
        }
        if o.file_name().is_none() || o.is_dir() {
            return Err(usage(format!("{flag} {}: not a file name", o.display())));
        }
        if let Some(i) = job.inputs.iter().find(|i| same_file(i, o)) {
            return Err(usage(format!("{flag} {}: that is the input {}; write elsewhere", o.display(), i.display())));
        }
    }
    if let [(_, a), (_, b)] = outs.as_slice() {
        if same_file(a, b) {
            return Err(usage(format!("--png {}: the same file as -o", b.display())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard(b"sst_*.nc", b"sst_2015.nc"));
        assert!(wildcard(b"*", b""));
        assert!(wildcard(b"a?c", b"abc"));
        assert!(!wildcard(b"a?c", b"ac"));
        assert!(!wildcard(b"sst_*.nc", b"sst_2015.nc4"));
    }
}
