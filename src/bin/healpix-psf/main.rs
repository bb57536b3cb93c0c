//! `healpix-psf`: regrid a variable of NetCDF files onto HEALPix cells with the PSF fit, write it as
//! CF/xdggs NetCDF and, optionally, draw it.
//!
//! ```text
//! healpix-psf regrid tests/data/nemo_orca1_sst_2015-01.nc --var tos -o sst_healpix.nc --png sst.png
//! ```
//!
//! The data's path, top to bottom: the command line becomes a checked [`args::Plan`] (status 2 on a
//! usage error, before any input is read); the first input is read ([`input`], after
//! [`integrity`] checks the file is whole); the points with data in any input are surveyed; the
//! operator is built once; each input is fitted, its cells checked against the data's range, and
//! each output ([`output`]) and map ([`render`]) written under a temporary name and renamed only
//! when all of a job's files are complete ([`stage`]).

mod args;
mod cftime;
mod coast;
mod engine;
mod input;

mod integrity;
mod output;
#[cfg(feature = "mpi")]
mod ranks;
mod render;
mod stage;

use args::{AreaArg, Dtype, Job, Level, Plan, RegridArgs};
use clap::Parser;
use engine::{Engine, Run};
use healpix_psf::geometry::Grid;
use healpix_psf::{kernel, valid_samples, Area, FitInfo, FitOptions, Real};
use input::Input;
use netcdf::AttributeValue;
use output::{Diag, DiagValues};
use std::path::Path;
use std::time::Instant;

/// An error for the user: what went wrong, naming the file and variable, and what to do.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn main() {
    let args::Command::Regrid(a) = args::Cli::parse().command;
    // the exit status, decided after MPI (with --distributed) is finalised
    let status = if a.distributed { distributed(&a) } else { run(&a, &Run::Single) };
    std::process::exit(status);
}

/// `--distributed`: the run on the ranks of an MPI program; MPI is finalised on return.
#[cfg(feature = "mpi")]
fn distributed(a: &RegridArgs) -> i32 {
    let Some(universe) = mpi::initialize() else {
        eprintln!("healpix-psf: error: --distributed: MPI could not be initialised (or already was)");
        return 1;
    };
    run(a, &Run::Ranks(ranks::World { comm: universe.world() }))
}

#[cfg(not(feature = "mpi"))]
fn distributed(_: &RegridArgs) -> i32 {
    eprintln!(
        "healpix-psf: error: --distributed: this healpix-psf was built without MPI (build it with \
         `cargo build --release --features cli,mpi` and run it under mpirun)"
    );
    2
}

/// The whole run: 0, 1 (an error) or 2 (a usage error). Errors are reported by the root only:
/// every step's failure is agreed over the ranks ([`Run::agree`]).
fn run(a: &RegridArgs, how: &Run) -> i32 {
    let fail = |e: CliError, status: i32| {
        if how.is_root() {
            eprintln!("healpix-psf: error: {e}");
        }
        status
    };
    let plan = match args::plan(a) {
        Ok(p) => p,
        Err(e) => return fail(e, 2),
    };
    let log = Log { t0: Instant::now(), quiet: a.quiet, root: how.is_root() };
    let done = match a.dtype {
        Dtype::F32 => regrid::<f32>(a, &plan, &log, how),
        Dtype::F64 => regrid::<f64>(a, &plan, &log, how),
    };
    done.map_or_else(|e| fail(e, 1), |_| 0)
}

/// Progress on stderr (silenced by --quiet); warnings always — from the root only.
pub struct Log {
    t0: Instant,
    quiet: bool,
    root: bool,
}

impl Log {
    fn say(&self, s: String) {
        if self.root && !self.quiet {
            eprintln!("[healpix-psf] {:>8.3} s  {s}", self.t0.elapsed().as_secs_f64());
        }
    }
    fn warn(&self, s: String) {
        if self.root {
            eprintln!("healpix-psf: warning: {s}");
        }
    }
}

/// The points of the operator: those with data in some row of some input (all with
/// --keep-missing-points).
struct Points {
    /// Rows of each input, in the order of the jobs.
    rows: Vec<usize>,
    lon: Vec<f64>,
    lat: Vec<f64>,
    mask: Vec<bool>,
    n_valid: usize,
}

/// The operator and what the outputs need to know of it.
struct Operator<F: Real> {
    engine: Engine<F>,
    grid: Grid,
    level: u8,
    centres: Vec<(f64, f64)>,
    left_out: usize,
}

/// One input fitted: its metadata (values dropped) and the fit's results.
struct Part {
    input: Input,
    coords: Vec<output::Coord>,
    rows: Vec<String>,
    hval: Vec<f64>,
    info: FitInfo,
    out_of_range: Vec<usize>,
    /// The input's values of the row to draw, when it is in this part.
    drawn: Option<Vec<f64>>,
}

fn regrid<F: Real>(a: &RegridArgs, plan: &Plan, log: &Log, how: &Run) -> Result<(), CliError> {
    let first_path = &plan.jobs[0].inputs[0];
    let first = how.agree(read(first_path, a, log))?;
    let points = how.agree(survey(a, plan, &first, log))?;
    how.agree(check_png_row(a, plan, &points))?;
    let op = operator::<F>(a, plan, &first, &points, log, how)?;
    let start = how.agree(a.x0.as_deref().map(|p| input::field_on_cells(p, &a.var)).transpose())?;
    let mut cached = Some(first);
    let total: usize = plan.jobs.iter().map(|j| j.inputs.len()).sum();
    let mut done = 0;
    for job in &plan.jobs {
        let mut parts: Vec<Part> = Vec::new();
        for path in &job.inputs {
            let row0: usize = parts.iter().map(|p| p.rows.len()).sum();
            let input = match cached.take() {
                Some(i) if Path::new(&i.path) == path.as_path() => i,
                _ => how.agree(read_same_grid(path, a, log, &points))?,
            };
            let part = how.agree(fit(&op, input, plan, start.as_ref(), a.png_row.checked_sub(row0), log))?;
            how.agree(check_range(a, &part, log))?;
            parts.push(part);
            done += 1;
            progress(log, done, total, path);
        }
        // the root writes; its failure is every rank's
        how.agree(if how.is_root() { write_job(a, plan, job, &op, &parts, log) } else { Ok(()) })?;
    }
    Ok(())
}

/// --png-row names a row of every map's output (checked before any fit).
fn check_png_row(a: &RegridArgs, plan: &Plan, points: &Points) -> Result<(), CliError> {
    let mut rows = points.rows.iter();
    for job in plan.jobs.iter() {
        let total: usize = rows.by_ref().take(job.inputs.len()).sum();
        if job.png.is_some() && a.png_row >= total {
            return Err(CliError(format!(
                "--png-row {}: {} has {total} rows (0–{})",
                a.png_row,
                job.output.display(),
                total.saturating_sub(1)
            )));
        }
    }
    Ok(())
}

/// A progress bar over files (with more than one).
fn progress(log: &Log, done: usize, total: usize, path: &Path) {
    if total > 1 {
        let bar: String = (0..20).map(|i| if i * total < done * 20 { '#' } else { '.' }).collect();
        log.say(format!("[{bar}] {done}/{total} files ({})", path.display()));
    }
}

fn read(path: &Path, a: &RegridArgs, log: &Log) -> Result<Input, CliError> {
    let p = path.to_string_lossy();
    let input = input::read(&p, &a.var, a.lon.as_deref(), a.lat.as_deref())?;
    let dims = |d: &[(String, usize)]| d.iter().map(|(n, l)| format!("{n}={l}")).collect::<Vec<_>>().join(", ");
    log.say(format!(
        "read '{}' from {p}: {} points ({}; lon '{}', lat '{}') × {} rows ({})",
        a.var,
        input.n(),
        dims(&input.spatial_dims),
        input.lon_name,
        input.lat_name,
        input.b(),
        if input.batch_dims.is_empty() { "no other dimension".to_string() } else { dims(&input.batch_dims) }
    ));
    Ok(input)
}

/// Another input of a run: read, and checked to be on the first one's points.
fn read_same_grid(path: &Path, a: &RegridArgs, log: &Log, points: &Points) -> Result<Input, CliError> {
    let input = read(path, a, log)?;
    let (lon, lat) = (&points.lon, &points.lat);
    let same =
        |x: &[f64], y: &[f64]| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p == q || (p.is_nan() && q.is_nan()));
    if input.n() != points.lon.len() || !same(&input.lon, lon) || !same(&input.lat, lat) {
        return Err(CliError(format!(
            "{}: '{}' is not on the grid of the first input (other longitudes/latitudes): regrid it separately",
            path.display(),
            a.var
        )));
    }
    Ok(input)
}

/// The points with data in some row of some input; the other inputs are read once here (and
/// dropped) to find them and to check they share the first one's grid.
fn survey(a: &RegridArgs, plan: &Plan, first: &Input, log: &Log) -> Result<Points, CliError> {
    let at = |p: &str| format!("{p}: variable '{}'", a.var);
    let n = first.n();
    let mut mask = valid_samples(&first.values, n).map_err(|e| CliError(format!("{}: {e}", at(&first.path))))?;
    let mut points =
        Points { rows: vec![first.b()], lon: first.lon.clone(), lat: first.lat.clone(), mask: Vec::new(), n_valid: 0 };
    for path in plan.jobs.iter().flat_map(|j| &j.inputs).skip(1) {
        let other = read_same_grid(path, a, log, &points)?;
        points.rows.push(other.b());
        let m = valid_samples(&other.values, n).map_err(|e| CliError(format!("{}: {e}", at(&other.path))))?;
        mask.iter_mut().zip(m).for_each(|(x, y)| *x |= y);
    }
    let n_valid = mask.iter().filter(|&&m| m).count();
    if n_valid == 0 {
        return Err(CliError(format!(
            "{}: every value is missing (fill value, missing_value or outside valid_range); check --var",
            at(&first.path)
        )));
    }
    if !a.keep_missing_points {
        log.say(format!(
            "{n_valid} points have data in some row; the {} others are left out of the operator",
            n - n_valid
        ));
    }
    points.mask = mask;
    points.n_valid = n_valid;
    Ok(points)
}

/// The level: given, that of --cells, or from the spacing of the valid points.
fn choose_level(
    a: &RegridArgs,
    plan: &Plan,
    cells: Option<&input::Cells>,
    ulon: &[f64],
    ulat: &[f64],
    log: &Log,
) -> Result<u8, CliError> {
    let from_cells = cells.and_then(|c| c.level);
    let level = match (plan.level, from_cells) {
        (Level::Fixed(l), _) => l,
        (Level::Auto, Some(l)) => {
            log.say(format!("--level auto: level {l} of the cells in {}", a.cells.as_deref().unwrap_or_default()));
            u8::try_from(l)
                .ok()
                .filter(|&l| l <= 29)
                .ok_or_else(|| CliError(format!("--cells: level {l} is not 0–29")))?
        }
        (Level::Auto, None) => {
            let d = kernel::sample_spacing_m(ulon, ulat).map_err(|e| CliError(format!("coordinates: {e}")))?;
            let l = kernel::level_for_spacing(d).map_err(|e| CliError(e.to_string()))?;
            log.say(format!(
                "--level auto: median spacing of the valid points {:.1} km → level {l} (cells {:.1} km wide)",
                d / 1e3,
                kernel::cell_size_m(l).unwrap_or(f64::NAN) / 1e3
            ));
            l
        }
    };
    if let (Some(l), Some(path)) = (from_cells, a.cells.as_deref()) {
        if l != level as i64 {
            return Err(CliError(format!("--cells {path} holds level-{l} cells, but --level is {level}")));
        }
    }
    if let (Some(input::Cells { scheme: Some(scheme), .. }), Some(path)) = (cells, a.cells.as_deref()) {
        let want = if a.ring { "ring" } else { "nested" };
        if scheme != want {
            return Err(CliError(format!(
                "--cells {path} numbers cells in the {scheme} scheme: {}",
                if a.ring { "drop --ring" } else { "add --ring" }
            )));
        }
    }
    Ok(level)
}

/// Per-sample areas: a variable of the first input (named, or its CF cell_measures), or a rule.
fn areas(a: &RegridArgs, first: &Input, log: &Log) -> Result<Area, CliError> {
    let area_var = a
        .area_var
        .clone()
        .or_else(|| matches!(a.area, AreaArg::Auto).then(|| input::cell_measures_area(first)).flatten());
    Ok(match (&area_var, a.area) {
        (Some(name), _) => {
            log.say(format!("areas from the variable '{name}'"));
            Area::Explicit(input::areas(first, name)?)
        }
        (None, AreaArg::Auto) => Area::Auto,
        (None, AreaArg::Spacing) => Area::Spacing,
        (None, AreaArg::Reference) => Area::ReferenceAuto,
        (None, AreaArg::Uniform) => Area::Uniform,
    })
}

/// Builds the operator once for every input.
fn operator<F: Real>(
    a: &RegridArgs,
    plan: &Plan,
    first: &Input,
    points: &Points,
    log: &Log,
    how: &Run,
) -> Result<Operator<F>, CliError> {
    let at = format!("{}: variable '{}'", first.path, a.var);
    // decided from the files: agreed over the ranks before the collective build
    let (params, grid) = how.agree(parameters(a, plan, first, points, log, &at))?;
    let shape: Vec<usize> = first.spatial_dims.iter().map(|d| d.1).collect();
    let engine = how.build::<F>(&first.lon, &first.lat, &shape, &params).map_err(|e| CliError(format!("{at}: {e}")))?;
    let left_out = if a.keep_missing_points { 0 } else { first.n() - points.n_valid };
    let centres = engine.cell_ids().iter().map(|&c| grid.center(c).expect("the operator's cells")).collect();
    Ok(Operator { engine, grid, centres, level: params.level, left_out })
}

/// The operator's parameters (level, areas, cells, mask) and grid.
fn parameters(
    a: &RegridArgs,
    plan: &Plan,
    first: &Input,
    points: &Points,
    log: &Log,
    at: &str,
) -> Result<(healpix_psf::Params, Grid), CliError> {
    let (ulon, ulat): (Vec<f64>, Vec<f64>) =
        (0..first.n()).filter(|&i| points.mask[i]).map(|i| (first.lon[i], first.lat[i])).unzip();
    let cells = a.cells.as_deref().map(input::cell_ids).transpose()?;
    let level = choose_level(a, plan, cells.as_ref(), &ulon, &ulat, log).map_err(|e| CliError(format!("{at}: {e}")))?;
    let params = healpix_psf::Params {
        level,
        area: areas(a, first, log)?,
        out_cell_ids: cells.map(|c| c.ids),
        sample_mask: (!a.keep_missing_points).then(|| points.mask.clone()),
        ..plan.params.clone()
    };
    let grid = Grid::new(level, params.nest, params.ellipsoid).map_err(|e| CliError(format!("{at}: {e}")))?;
    Ok((params, grid))
}

/// The command line's fit options in the operator's precision.
fn options<F: Real>(o: &FitOptions<f64>) -> FitOptions<F> {
    FitOptions {
        lam: o.lam,
        max_iter: o.max_iter,
        tol: o.tol,
        x0: None,
        return_info: o.return_info,
        stopping: o.stopping,
        lower: o.lower,
        upper: o.upper,
        max_outer: o.max_outer,
        conservative: o.conservative,
        empty_cells: o.empty_cells,
        progress: o.progress,
        missing: o.missing,
        interrupt: None,
    }
}

/// The fit's start from an earlier field (cell ids, B×K values): its update over x_ref.
fn start_from<F: Real>(
    engine: &Engine<F>,
    v: &[F],
    rows: usize,
    opts: &FitOptions<F>,
    start: &(Vec<u64>, Vec<f64>),
) -> Result<Vec<F>, CliError> {
    let (ids, prev) = start;
    let k = engine.cell_ids().len();
    if ids.as_slice() != engine.cell_ids() {
        return Err(CliError(format!(
            "--x0: its {} cells are not this operator's {k} (regrid with --cells on that file)",
            ids.len()
        )));
    }
    if prev.len() != rows * k {
        return Err(CliError(format!("--x0: {} values, not {rows} rows of {k} cells", prev.len())));
    }
    // the fit's unknown is the update of x_ref, the Gaussian average of the valid points
    let x_ref = engine.x_ref(v, opts.missing).map_err(|e| CliError(e.to_string()))?;
    Ok(prev
        .iter()
        .zip(&x_ref)
        .map(|(&p, &x)| if p.is_finite() && x.is_finite() { F::from_f64(p) - x } else { F::ZERO })
        .collect())
}

/// Fits every row of one input; `png_row`: the row to draw counted from this input's first.
fn fit<F: Real>(
    op: &Operator<F>,
    mut input: Input,
    plan: &Plan,
    start: Option<&(Vec<u64>, Vec<f64>)>,
    png_row: Option<usize>,
    log: &Log,
) -> Result<Part, CliError> {
    let at = format!("{}: variable '{}'", input.path, input.var);
    let t = Instant::now();
    let v: Vec<F> = input.values.iter().map(|&x| F::from_f64(x)).collect();
    let mut opts = options::<F>(&plan.fit);
    let rows = input.b();
    opts.x0 = start
        .map(|s| start_from(&op.engine, &v, rows, &opts, s))
        .transpose()
        .map_err(|e| CliError(format!("{at}: {e}")))?;
    let fit = op.engine.fit(&v, &opts).map_err(|e| CliError(format!("{at}: {e}")))?;
    drop(v);
    let info = fit.info.expect("asked for");
    let hval: Vec<f64> = fit.hval.iter().map(|x| x.to_f64()).collect();
    let (n, b, k) = (input.n(), input.b(), op.engine.cell_ids().len());
    let units = input::units(&input);
    let worst = |v: &[f64]| v.iter().copied().filter(|x| x.is_finite()).fold(f64::NAN, f64::max);
    log.say(format!(
        "regridded {} rows to {k} cells of level {} in {:.3} s: {} CG iterations (most in a row), {}; \
         residual at the valid points RMS {:.4} {units}, max {:.4} {units} (worst row)",
        b,
        op.level,
        t.elapsed().as_secs_f64(),
        info.iterations,
        if info.converged.iter().all(|&c| c) {
            "converged".to_string()
        } else {
            "NOT converged: raise --max-iter or --lam".to_string()
        },
        worst(&info.residual_rms),
        worst(&info.residual_max),
    ));
    let drawn = png_row.filter(|&r| r < b).map(|r| input.values[r * n..(r + 1) * n].to_vec());
    let out_of_range = cells_out_of_range(&input, &hval, k, F::EPSILON.to_f64());
    input.values = Vec::new();
    let coords = input::batch_coords(&input)?;
    let rows = input::row_names(&input, &coords);
    Ok(Part { input, coords, rows, hval, info, out_of_range, drawn })
}

/// Margin of the range check without declared bounds, as a fraction of the row's span.
const RANGE_MARGIN: f64 = 0.1;

/// The range a row's fitted cells should stay in: the declared valid range, else the row's
/// valid values widened by [`RANGE_MARGIN`] of their span on each side (a deconvolution may
/// overshoot a sharp front a little; far beyond it the fit is not to be trusted).
fn row_range(valid: Option<(f64, f64)>, row: &[f64]) -> Option<(f64, f64)> {
    let (lo, hi) = row
        .iter()
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let data = (lo <= hi).then(|| {
        let m = RANGE_MARGIN * (hi - lo);
        (lo - m, hi + m)
    });
    match (valid, data) {
        (Some((a, b)), Some((c, d))) => Some((if a.is_finite() { a } else { c }, if b.is_finite() { b } else { d })),
        (_, d) => d,
    }
}

/// Per row, the fitted cells outside the row's range ([`row_range`], widened by the rounding of
/// the precision `eps` so that a constant row is not flagged for its last bits); an infinite cell
/// counts, a missing one does not.
fn cells_out_of_range(input: &Input, hval: &[f64], k: usize, eps: f64) -> Vec<usize> {
    let n = input.n();
    (0..input.b())
        .map(|r| match row_range(input.valid, &input.values[r * n..(r + 1) * n]) {
            None => hval[r * k..(r + 1) * k].iter().filter(|x| x.is_infinite()).count(),
            Some((lo, hi)) => {
                let slack = 64.0 * eps * lo.abs().max(hi.abs()).max(1.0);
                let (lo, hi) = (lo - slack, hi + slack);
                hval[r * k..(r + 1) * k].iter().filter(|x| !x.is_nan() && (**x < lo || **x > hi)).count()
            }
        })
        .collect()
}

/// Reports rows with cells outside the data's range; with --strict, fails.
fn check_range(a: &RegridArgs, part: &Part, log: &Log) -> Result<(), CliError> {
    let bad: Vec<usize> = (0..part.out_of_range.len()).filter(|&r| part.out_of_range[r] > 0).collect();
    if bad.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = bad
        .iter()
        .take(5)
        .map(|&r| {
            format!(
                "row {r} ({}): {} cells",
                if part.rows[r].is_empty() { "the only row" } else { &part.rows[r] },
                part.out_of_range[r]
            )
        })
        .collect();
    let msg = format!(
        "{}: variable '{}': {} of {} rows have fitted cells outside the data's range ({}{}): {}{}",
        part.input.path,
        a.var,
        bad.len(),
        part.out_of_range.len(),
        if part.input.valid.is_some() {
            "its valid_min/valid_max"
        } else {
            "each row's valid values ± 10 % of their span"
        },
        "; recorded as fit_cells_out_of_range",
        named.join("; "),
        if bad.len() > 5 { "; …" } else { "" }
    );
    if a.strict {
        return Err(CliError(format!(
            "{msg} (--strict: nothing written; try a larger --lam, or --lower/--upper input)"
        )));
    }
    log.warn(format!("{msg} (try a larger --lam, or --lower/--upper input; --strict makes this an error)"));
    Ok(())
}

/// The batch dimensions and coordinates of a job's parts, concatenated along the first batch
/// dimension (one part: its own).
/// Batch dimensions (name, length) and their coordinates.
type Batch = (Vec<(String, usize)>, Vec<output::Coord>);

fn concat(parts: &[Part]) -> Result<Batch, CliError> {
    let first = &parts[0];
    let mut batch = first.input.batch_dims.clone();
    let mut coords = first.coords.clone();
    if parts.len() == 1 {
        return Ok((batch, coords));
    }
    let Some(along) = batch.first().map(|d| d.0.clone()) else {
        return Err(CliError(format!(
            "--concat: '{}' has no dimension besides its grid to concatenate along",
            first.input.var
        )));
    };
    for p in &parts[1..] {
        let dims = &p.input.batch_dims;
        let same = dims.len() == batch.len()
            && dims.iter().zip(&batch).enumerate().all(|(i, (x, y))| x.0 == y.0 && (i == 0 || x.1 == y.1));
        if !same {
            return Err(CliError(format!(
                "--concat: {} has dimensions {:?} beside its grid, {} has {:?}: only the first ('{along}') may differ in length",
                p.input.path, dims, first.input.path, first.input.batch_dims
            )));
        }
        batch[0].1 += dims[0].1;
        for c in coords.iter_mut() {
            let more = p.coords.iter().find(|o| o.name == c.name).ok_or_else(|| {
                CliError(format!(
                    "--concat: {} lacks the coordinate '{}' of {}",
                    p.input.path, c.name, first.input.path
                ))
            })?;
            same_meaning(c, more, &first.input.path, &p.input.path)?;
            if c.dims.first().is_some_and(|d| d.0 == along) {
                c.values.extend_from_slice(&more.values);
                c.dims[0].1 += more.dims.first().map_or(0, |d| d.1);
            } else if c.values != more.values {
                return Err(CliError(format!(
                    "--concat: the coordinate '{}' of {} differs from that of {}: only '{along}' may change",
                    c.name, p.input.path, first.input.path
                )));
            }
        }
    }
    increasing(&coords, &along)?;
    Ok((batch, coords))
}

/// Two files' copies of a coordinate mean the same: equal `units` and `calendar`.
fn same_meaning(a: &output::Coord, b: &output::Coord, path_a: &str, path_b: &str) -> Result<(), CliError> {
    let attr = |c: &output::Coord, name: &str| c.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    for name in ["units", "calendar"] {
        if attr(a, name) != attr(b, name) {
            return Err(CliError(format!(
                "--concat: the {name} of '{}' differ between {path_a} ({:?}) and {path_b} ({:?}): convert them to \
                 one first (e.g. cdo or nco), or regrid the files separately",
                a.name,
                attr(a, name),
                attr(b, name)
            )));
        }
    }
    Ok(())
}

/// The concatenated coordinate of the first batch dimension increases strictly (the files came in
/// order, none twice).
fn increasing(coords: &[output::Coord], along: &str) -> Result<(), CliError> {
    let Some(c) = coords.iter().find(|c| c.name == along && c.dims.len() == 1) else { return Ok(()) };
    match c.values.windows(2).position(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less)) {
        None => Ok(()),
        Some(i) => Err(CliError(format!(
            "--concat: '{along}' does not increase at row {} ({} then {}): give the files in time order, each once \
             (a glob sorts names: sst_10.nc comes before sst_9.nc)",
            i + 1,
            c.values[i],
            c.values[i + 1]
        ))),
    }
}

/// The per-row diagnostics of the fits, rows of all parts in order.
fn diagnostics(var: &str, parts: &[Part], bounded: bool) -> Vec<Diag> {
    let count = |f: &dyn Fn(&Part) -> Vec<usize>| {
        DiagValues::Count(parts.iter().flat_map(f).map(|x| i32::try_from(x).unwrap_or(i32::MAX)).collect())
    };
    let float = |f: &dyn Fn(&FitInfo) -> &Vec<f64>| {
        DiagValues::Quantity(parts.iter().flat_map(|p| f(&p.info).clone()).collect())
    };
    let mut d = vec![
        Diag {
            name: "fit_iterations",
            long_name: "conjugate-gradient iterations".into(),
            values: count(&|p| p.info.row_iterations.clone()),
        },
        Diag {
            name: "fit_converged",
            long_name: "whether the conjugate gradient met its tolerance".into(),
            values: DiagValues::Flag(
                parts.iter().flat_map(|p| p.info.converged.clone()).collect(),
                "not_converged",
                "converged",
            ),
        },
        Diag {
            name: "fit_residual_rms",
            long_name: format!("RMS of the fitted field at the valid samples minus {var}"),
            values: float(&|i| &i.residual_rms),
        },
        Diag {
            name: "fit_residual_max",
            long_name: format!("largest |fitted field at a valid sample minus {var}|"),
            values: float(&|i| &i.residual_max),
        },
        Diag {
            name: "fit_empty_cells",
            long_name: "cells without any valid linked sample (missing in the output)".into(),
            values: count(&|p| p.info.empty_cells.clone()),
        },
        Diag {
            name: "fit_cells_out_of_range",
            long_name: format!(
                "fitted cells outside the data's range (the input's valid_min/valid_max, else the row's valid values \
                 widened by {} % of their span on each side)",
                RANGE_MARGIN * 100.0
            ),
            values: count(&|p| p.out_of_range.clone()),
        },
    ];
    if bounded {
        d.push(Diag {
            name: "fit_held_low",
            long_name: "cells held at the lower bound".into(),
            values: count(&|p| p.info.n_clipped_low.clone()),
        });
        d.push(Diag {
            name: "fit_held_high",
            long_name: "cells held at the upper bound".into(),
            values: count(&|p| p.info.n_clipped_high.clone()),
        });
    }
    d
}

/// The settings as `healpix_psf_*` global attributes.
fn settings<F: Real>(a: &RegridArgs, plan: &Plan, op: &Operator<F>) -> Vec<(String, AttributeValue)> {
    let sigma = plan.params.sigma_m.unwrap_or(healpix_psf::geometry::cell_size_m(op.level, a.radius));
    vec![
        ("healpix_psf_level".into(), (op.level as i32).into()),
        ("healpix_psf_npt".into(), (a.npt as i32).into()),
        ("healpix_psf_sigma_m".into(), sigma.into()),
        ("healpix_psf_threshold".into(), a.threshold.into()),
        ("healpix_psf_lam".into(), a.lam.into()),
        ("healpix_psf_tol".into(), a.tol.into()),
        ("healpix_psf_max_iter".into(), (a.max_iter as i32).into()),
        ("healpix_psf_dtype".into(), (if a.dtype == Dtype::F32 { "float32" } else { "float64" }).into()),
        ("healpix_psf_missing_data".into(), (if a.zero_fill_missing { "zero_fill" } else { "per_row" }).into()),
        ("healpix_psf_points_left_out".into(), (op.left_out as i64).into()),
    ]
}

/// The global attributes: the input's descriptive ones, Conventions, history with this run
/// appended (newest first, as NCO and CDO do), the settings.
fn globals<F: Real>(a: &RegridArgs, plan: &Plan, op: &Operator<F>, first: &Input) -> Vec<(String, AttributeValue)> {
    let (mut g, history) = input::kept_globals(first);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs() as f64);
    let stamp = cftime::format_cf_time(now, "seconds since 1970-01-01 00:00:00", None).unwrap_or_default();
    let line = format!(
        "{stamp}: healpix-psf {}: {}",
        env!("CARGO_PKG_VERSION"),
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    let history = match history {
        Some(h) if !h.trim().is_empty() => format!("{line}\n{h}"),
        _ => line,
    };
    g.push(("Conventions".into(), "CF-1.13".into()));
    g.push(("history".into(), history.into()));
    g.extend(settings(a, plan, op));
    g
}

/// Writes a job's output and map under temporary names, then renames both into place.
fn write_job<F: Real>(
    a: &RegridArgs,
    plan: &Plan,
    job: &Job,
    op: &Operator<F>,
    parts: &[Part],
    log: &Log,
) -> Result<(), CliError> {
    let first = &parts[0].input;
    let (batch, coords) = concat(parts)?;
    let hval: Vec<f64> = parts.iter().flat_map(|p| p.hval.iter().copied()).collect();
    let out = output::Output {
        var: &a.var,
        var_attrs: &first.attrs,
        // single precision as the input, unless a value would not fit (it would turn infinite)
        single: first.single && hval.iter().all(|x| !x.is_finite() || x.abs() <= f32::MAX as f64),
        batch,
        coords,
        cells: output::Cells {
            ids: op.engine.cell_ids(),
            centres: &op.centres,
            level: op.level,
            nest: !a.ring,
            ellipsoid: plan.params.ellipsoid,
            radius: a.radius,
        },
        hval: &hval,
        diagnostics: diagnostics(&a.var, parts, plan.fit.is_bounded()),
        globals: globals(a, plan, op, first),
    };
    let mut staged = stage::Staged::default();
    output::write(&staged.path(&job.output), &out)?;
    if let Some(png) = &job.png {
        let tmp = staged.path(png);
        stage::injected("png")?;
        draw(a, op, parts, &hval, &tmp)?;
    }
    staged.commit()?;
    let rows: usize = parts.iter().map(|p| p.rows.len()).sum();
    log.say(format!("wrote {} ({} cells × {rows} rows)", job.output.display(), op.engine.cell_ids().len()));
    if let Some(png) = &job.png {
        log.say(format!("drew {} (row {} of {rows})", png.display(), a.png_row));
    }
    Ok(())
}

/// The map of row --png-row of a job.
fn draw<F: Real>(a: &RegridArgs, op: &Operator<F>, parts: &[Part], hval: &[f64], path: &Path) -> Result<(), CliError> {
    let k = op.engine.cell_ids().len();
    let rows: Vec<&String> = parts.iter().flat_map(|p| &p.rows).collect();
    let r = a.png_row;
    if r >= rows.len() {
        return Err(CliError(format!(
            "--png-row {r}: the output has {} rows (0–{})",
            rows.len(),
            rows.len().saturating_sub(1)
        )));
    }
    let first = &parts[0].input;
    let (lon, lat) = (&first.lon, &first.lat);
    let drawn = parts.iter().find_map(|p| p.drawn.as_deref());
    let units = input::units(first);
    render::draw(&render::MapRequest {
        path,
        var: &a.var,
        units: &units,
        row_label: rows[r].as_str(),
        grid: &op.grid,
        cell_ids: op.engine.cell_ids(),
        cell_values: &hval[r * k..(r + 1) * k],
        input: if a.png_input { drawn.map(|values| render::MapPoints { lon, lat, values }) } else { None },
        projection: a.projection,
        width: a.png_width,
    })
}
