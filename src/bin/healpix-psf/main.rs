//! `healpix-psf`: regrid a variable of a NetCDF file onto HEALPix cells with the PSF fit, write it as
//! CF/xdggs NetCDF and, optionally, draw it.
//!
//! ```text
//! healpix-psf regrid tests/data/nemo_orca1_sst_2015-01.nc --var tos -o sst_healpix.nc --png sst.png
//! ```

mod coast;
mod input;
mod output;
mod render;

use clap::{Parser, Subcommand, ValueEnum};
use healpix_psf::{
    kernel, valid_samples, Area, Bound, Device, Ellipsoid, EmptyCells, FitInfo, FitOptions, MissingData, Params,
};
use healpix_psf::{PsfResampler, Real, Stopping};
use netcdf::AttributeValue;
use std::time::Instant;

/// An error for the user: what went wrong, naming the file and variable, and what to do.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Parser)]
#[command(
    name = "healpix-psf",
    version,
    about = "Regrid longitude/latitude data onto HEALPix cells with a Gaussian point-spread fit"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Regrid a variable of a NetCDF file to HEALPix cells and write them as NetCDF (CF 1.13
    /// HEALPix grid mapping, xdggs attributes).
    ///
    /// Longitude and latitude come from the variable's CF attributes (`coordinates`, `standard_name`,
    /// `units`): 1-D coordinates (regular grids or point lists) and 2-D ones (curvilinear grids such
    /// as NEMO's tripolar ORCA) both work. Every other dimension (time, depth, ensemble …) becomes
    /// rows fitted together and is restored in the output. Fill values, `missing_value` and values
    /// outside `valid_range` are missing; points missing in every row (land) are left out of the
    /// operator.
    Regrid(RegridArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum AreaArg {
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
enum Dtype {
    F32,
    F64,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum EmptyArg {
    /// Missing (NaN).
    Missing,
    /// The fitted number (the reference implementation's behaviour).
    Fitted,
}

#[derive(clap::Args)]
struct RegridArgs {
    /// The NetCDF file to read.
    input: String,
    /// The variable to regrid.
    #[arg(long)]
    var: String,
    /// The NetCDF file to write.
    #[arg(short, long)]
    output: String,
    /// HEALPix level 0–29, or `auto`: the finest level whose cells are at least as wide as the
    /// valid points are apart (median spacing), so that cells do not outnumber points.
    #[arg(long, default_value = "auto")]
    level: String,
    /// The longitude variable (default: found from CF attributes).
    #[arg(long)]
    lon: Option<String>,
    /// The latitude variable (default: found from CF attributes).
    #[arg(long)]
    lat: Option<String>,

    /// Cells linked to each sample (its nearest kept cells).
    #[arg(long, default_value_t = 9)]
    npt: usize,
    /// Kernel scale s in metres, w = exp(−2d²/s²) (s = 2σ); default the cell size.
    #[arg(long, conflicts_with = "fwhm_m")]
    sigma_m: Option<f64>,
    /// Kernel full width at half maximum in metres (instead of --sigma-m; FWHM = 1.1774 s).
    #[arg(long)]
    fwhm_m: Option<f64>,
    /// Keep a cell when the summed kernel weight of the samples near it reaches this.
    #[arg(long, default_value_t = 0.1)]
    threshold: f64,
    /// Number cells in the ring scheme (default nested).
    #[arg(long)]
    ring: bool,
    /// Place samples on a sphere (default: WGS84 latitudes, mapped to the authalic sphere).
    #[arg(long)]
    sphere: bool,
    /// Sphere radius in metres, for distances and the default kernel scale.
    #[arg(long, default_value_t = 6_371_000.0)]
    radius: f64,
    /// Neighbourhood ring of the keep stage (default from --npt).
    #[arg(long)]
    ring_weight: Option<u32>,
    /// First ring of the nearest-cell search (default from --npt).
    #[arg(long)]
    ring_search_init: Option<u32>,
    /// Last ring of the nearest-cell search (default from --npt).
    #[arg(long)]
    ring_search_max: Option<u32>,
    /// Per-sample area weights (a variable named by the input's CF `cell_measures = "area: NAME"`
    /// attribute is used when present, unless another choice is given here).
    #[arg(long, value_enum, default_value = "auto")]
    area: AreaArg,
    /// Per-sample areas from this variable of the input (on its spatial dimensions, any unit).
    #[arg(long)]
    area_var: Option<String>,
    /// Regrid onto the cells of this NetCDF file only (its `cell_ids`, e.g. an earlier output);
    /// its level is used with `--level auto`. Requested cells without enough support come out
    /// missing.
    #[arg(long)]
    cells: Option<String>,
    /// With --cells: give requested cells without enough support the value of the nearest point.
    #[arg(long, requires = "cells")]
    fill_missing_cells: bool,
    /// Floating-point precision of the operator and the solve.
    #[arg(long, value_enum, default_value = "f64")]
    dtype: Dtype,
    /// `cpu`, `cuda` or `cuda:N` (a build with the `cuda` feature and an NVIDIA GPU).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Keep points that are missing in every row in the operator (by default they are left out,
    /// as land is for ocean data: cells reached only by them are then not in the output).
    #[arg(long)]
    keep_missing_points: bool,

    /// Damping λ ≥ 0 of the least-squares fit. The default 1e-2 keeps the solution stable: with
    /// λ = 0 (the reference implementation's default) the problem is singular wherever cells
    /// outnumber samples locally and the field oscillates between them.
    #[arg(long, default_value_t = 1e-2)]
    lam: f64,
    /// Most conjugate-gradient iterations.
    #[arg(long, default_value_t = 200)]
    max_iter: usize,
    /// Relative tolerance of the conjugate gradient.
    #[arg(long, default_value_t = 1e-8)]
    tol: f64,
    /// Stop each row on its own residual (default: all rows until the worst meets the pooled one).
    #[arg(long)]
    per_row: bool,
    /// Lower bound on the output, imposed inside the fit: a number, or `input` (each row's smallest
    /// valid value).
    #[arg(long)]
    lower: Option<String>,
    /// Upper bound on the output: a number, or `input` (each row's largest valid value).
    #[arg(long)]
    upper: Option<String>,
    /// Most active-set passes of a bounded fit.
    #[arg(long, default_value_t = 10)]
    max_outer: usize,
    /// Keep each row's area-weighted mean exactly.
    #[arg(long)]
    conservative: bool,
    /// Start the fit from an earlier output of the same variable on the same cells (a warm start,
    /// e.g. the previous time step regridded with the same settings and --cells).
    #[arg(long)]
    x0: Option<String>,
    /// Cells none of whose linked samples is valid in a row (`fitted` needs --zero-fill-missing).
    #[arg(long, value_enum, default_value = "missing")]
    empty_cells: EmptyArg,
    /// Count a point missing in some rows as 0 in those rows' fits, as the reference does (which
    /// pulls the field towards zero around every gap). By default such a point is left out of the
    /// rows it is missing in.
    #[arg(long)]
    zero_fill_missing: bool,

    /// Also draw the result as a PNG map.
    #[arg(long)]
    png: Option<String>,
    /// Draw the input samples beside the result (first row).
    #[arg(long)]
    png_input: bool,
    /// Map projection of the PNG (`auto`: fitted to the data).
    #[arg(long, value_enum, default_value = "auto")]
    projection: render::Projection,
    /// Width in pixels of each map panel of the PNG.
    #[arg(long, default_value_t = 1000)]
    png_width: usize,
    /// No progress messages on stderr.
    #[arg(short, long)]
    quiet: bool,
}

fn main() {
    let cli = Cli::parse();
    let Command::Regrid(args) = cli.command;
    if let Err(e) = regrid(&args) {
        eprintln!("healpix-psf: error: {e}");
        std::process::exit(1);
    }
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
            .ok_or_else(|| CliError(format!("{flag} {v}: give a number or `input`"))),
    }
}

fn device(s: &str) -> Result<Device, CliError> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| CliError(format!("--device {s}: use cpu, cuda or cuda:N"))),
    }
}

/// The fit options of the command line (with `return_info`; no start).
fn fit_options<F>(a: &RegridArgs) -> Result<FitOptions<F>, CliError> {
    if a.empty_cells == EmptyArg::Fitted && !a.zero_fill_missing {
        return Err(CliError(
            "--empty-cells fitted: cells without a valid point have a fitted number only when missing points count \
             as 0: add --zero-fill-missing (the reference's behaviour)"
                .into(),
        ));
    }
    Ok(FitOptions {
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
    })
}

/// What a fit gives back, in f64 whatever the precision used.
struct Regridded {
    cell_ids: Vec<u64>,
    centres: Vec<(f64, f64)>,
    hval: Vec<f64>,
    info: FitInfo,
    grid: healpix_psf::geometry::Grid,
}

/// Builds the operator and fits; `start` = an earlier field (cell ids, B×K values) to start from.
fn fit_with<F: Real>(
    lon: &[f64],
    lat: &[f64],
    values: &[f64],
    params: &Params,
    mut opts: FitOptions<F>,
    start: Option<&(Vec<u64>, Vec<f64>)>,
) -> Result<Regridded, CliError> {
    let op = PsfResampler::<F>::new(lon, lat, params).map_err(|e| CliError(e.to_string()))?;
    let v: Vec<F> = values.iter().map(|&x| F::from_f64(x)).collect();
    opts.x0 = match start {
        None => None,
        Some((ids, prev)) => {
            if ids.as_slice() != op.cell_ids() {
                return Err(CliError(format!(
                    "--x0: its {} cells are not this operator's {} (regrid with --cells on that file)",
                    ids.len(),
                    op.k()
                )));
            }
            if prev.len() != v.len() / op.n() * op.k() {
                return Err(CliError(format!(
                    "--x0: {} values, not {} rows of {} cells",
                    prev.len(),
                    v.len() / op.n(),
                    op.k()
                )));
            }
            // the fit's unknown is the update of x_ref, the Gaussian average of the valid points
            let x_ref = op.x_ref(&v, opts.missing).map_err(|e| CliError(e.to_string()))?;
            Some(
                prev.iter()
                    .zip(&x_ref)
                    .map(|(&p, &x)| if p.is_finite() && x.is_finite() { F::from_f64(p) - x } else { F::ZERO })
                    .collect(),
            )
        }
    };
    let fit = op.fit(&v, &opts).map_err(|e| CliError(e.to_string()))?;
    Ok(Regridded {
        cell_ids: op.cell_ids().to_vec(),
        centres: op.cell_lonlat(),
        hval: fit.hval.iter().map(|x| x.to_f64()).collect(),
        info: fit.info.expect("asked for"),
        grid: *op.grid(),
    })
}

fn regrid(a: &RegridArgs) -> Result<(), CliError> {
    let t0 = Instant::now();
    let say = |s: String| {
        if !a.quiet {
            eprintln!("[healpix-psf] {:>8.3} s  {s}", t0.elapsed().as_secs_f64());
        }
    };
    let at = format!("{}: variable '{}'", a.input, a.var);
    let input = input::read(&a.input, &a.var, a.lon.as_deref(), a.lat.as_deref())?;
    let (n, b) = (input.n(), input.b());
    let dims = |d: &[(String, usize)]| d.iter().map(|(n, l)| format!("{n}={l}")).collect::<Vec<_>>().join(", ");
    say(format!(
        "read '{}' from {}: {n} points ({}; lon '{}', lat '{}') × {b} rows ({})",
        a.var,
        a.input,
        dims(&input.spatial_dims),
        input.lon_name,
        input.lat_name,
        if input.batch_dims.is_empty() { "no other dimension".to_string() } else { dims(&input.batch_dims) }
    ));
    let mask = valid_samples(&input.values, n).map_err(|e| CliError(format!("{at}: {e}")))?;
    let n_valid = mask.iter().filter(|&&m| m).count();
    if n_valid == 0 {
        return Err(CliError(format!(
            "{at}: every value is missing (fill value, missing_value or outside valid_range); check --var"
        )));
    }
    if !a.keep_missing_points {
        say(format!("{n_valid} points have data in some row; the {} others are left out of the operator", n - n_valid));
    }
    let (ulon, ulat): (Vec<f64>, Vec<f64>) = (0..n).filter(|&i| mask[i]).map(|i| (input.lon[i], input.lat[i])).unzip();
    let cells = a.cells.as_deref().map(input::cell_ids).transpose()?;
    let cells_level = cells.as_ref().and_then(|c| c.level);
    let level: u8 = if let (Some(l), "auto") = (cells_level, a.level.as_str()) {
        say(format!("--level auto: level {l} of the cells in {}", a.cells.as_deref().unwrap_or_default()));
        u8::try_from(l).ok().filter(|&l| l <= 29).ok_or_else(|| CliError(format!("--cells: level {l} is not 0–29")))?
    } else if a.level == "auto" {
        let d = kernel::sample_spacing_m(&ulon, &ulat).map_err(|e| CliError(format!("{at}: coordinates: {e}")))?;
        let l = kernel::level_for_spacing(d).map_err(|e| CliError(e.to_string()))?;
        say(format!(
            "--level auto: median spacing of the valid points {:.1} km → level {l} (cells {:.1} km wide)",
            d / 1e3,
            kernel::cell_size_m(l).unwrap_or(f64::NAN) / 1e3
        ));
        l
    } else {
        a.level
            .parse()
            .ok()
            .filter(|&l: &u8| l <= 29)
            .ok_or_else(|| CliError(format!("--level {}: give 0–29 or auto", a.level)))?
    };
    if let (Some(l), Some(path)) = (cells_level, a.cells.as_deref()) {
        if l != level as i64 {
            return Err(CliError(format!("--cells {path} holds level-{l} cells, but --level is {level}")));
        }
    }
    if let (Some(input::Cells { scheme: Some(scheme), .. }), Some(path)) = (&cells, a.cells.as_deref()) {
        let want = if a.ring { "ring" } else { "nested" };
        if scheme != want {
            return Err(CliError(format!(
                "--cells {path} numbers cells in the {scheme} scheme: {}",
                if a.ring { "drop --ring" } else { "add --ring" }
            )));
        }
    }
    let area_var = a
        .area_var
        .clone()
        .or_else(|| matches!(a.area, AreaArg::Auto).then(|| input::cell_measures_area(&input)).flatten());
    let area = match (&area_var, a.area) {
        (Some(name), _) => {
            say(format!("areas from the variable '{name}'"));
            Area::Explicit(input::areas(&input, name)?)
        }
        (None, AreaArg::Auto) => Area::Auto,
        (None, AreaArg::Spacing) => Area::Spacing,
        (None, AreaArg::Reference) => Area::ReferenceAuto,
        (None, AreaArg::Uniform) => Area::Uniform,
    };
    let start = a.x0.as_deref().map(|p| input::field_on_cells(p, &a.var)).transpose()?;
    let params = Params {
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
        area,
        out_cell_ids: cells.map(|c| c.ids),
        fill_missing_out_cells: a.fill_missing_cells,
        device: device(&a.device)?,
        sample_mask: (!a.keep_missing_points).then(|| mask.clone()),
        ..Params::new(level)
    };
    let t_fit = Instant::now();
    let (lon, lat, values) = (&input.lon, &input.lat, &input.values);
    let r = match a.dtype {
        Dtype::F32 => fit_with::<f32>(lon, lat, values, &params, fit_options(a)?, start.as_ref()),
        Dtype::F64 => fit_with::<f64>(lon, lat, values, &params, fit_options(a)?, start.as_ref()),
    }
    .map_err(|e| CliError(format!("{at}: {}", e.0)))?;
    let k = r.cell_ids.len();
    let units = input
        .attrs
        .iter()
        .find(|(n, _)| n == "units")
        .and_then(|(_, v)| if let AttributeValue::Str(s) = v { Some(s.clone()) } else { None })
        .unwrap_or_default();
    let worst = |v: &[f64]| v.iter().copied().filter(|x| x.is_finite()).fold(f64::NAN, f64::max);
    say(format!(
        "regridded to {k} cells of level {level} in {:.3} s: {} CG iterations (most in a row), {}; \
         residual at the valid points RMS {:.4} {units}, max {:.4} {units} (worst row)",
        t_fit.elapsed().as_secs_f64(),
        r.info.iterations,
        if r.info.converged.iter().all(|&c| c) {
            "converged".to_string()
        } else {
            "NOT converged: raise --max-iter or --lam".to_string()
        },
        worst(&r.info.residual_rms),
        worst(&r.info.residual_max),
    ));

    let settings: Vec<(String, AttributeValue)> = vec![
        ("healpix_psf_level".into(), (level as i32).into()),
        ("healpix_psf_npt".into(), (a.npt as i32).into()),
        (
            "healpix_psf_sigma_m".into(),
            params.sigma_m.unwrap_or(healpix_psf::geometry::cell_size_m(level, a.radius)).into(),
        ),
        ("healpix_psf_threshold".into(), a.threshold.into()),
        ("healpix_psf_lam".into(), a.lam.into()),
        ("healpix_psf_tol".into(), a.tol.into()),
        ("healpix_psf_max_iter".into(), (a.max_iter as i32).into()),
        ("healpix_psf_dtype".into(), (if a.dtype == Dtype::F32 { "float32" } else { "float64" }).into()),
        ("healpix_psf_points_left_out".into(), (if a.keep_missing_points { 0 } else { (n - n_valid) as i64 }).into()),
    ];
    let history =
        format!("healpix-psf {}: {}", env!("CARGO_PKG_VERSION"), std::env::args().collect::<Vec<_>>().join(" "));
    let bounded = a.lower.is_some() || a.upper.is_some();
    output::write(
        &a.output,
        &output::Output {
            input: &input,
            cell_ids: &r.cell_ids,
            centres: &r.centres,
            hval: &r.hval,
            level,
            nest: !a.ring,
            ellipsoid: params.ellipsoid,
            radius: a.radius,
            info: &r.info,
            bounded,
            settings,
            history,
        },
    )?;
    say(format!("wrote {} ({k} cells × {b} rows)", a.output));

    if let Some(png) = &a.png {
        render::draw(&render::MapRequest {
            path: std::path::Path::new(png),
            var: &a.var,
            units: &units,
            row_label: "",
            grid: &r.grid,
            cell_ids: &r.cell_ids,
            cell_values: &r.hval[..k],
            input: a.png_input.then(|| render::MapPoints {
                lon: &input.lon,
                lat: &input.lat,
                values: &input.values[..n],
            }),
            projection: a.projection,
            width: a.png_width,
        })?;
        say(format!("drew {png}"));
    }
    Ok(())
}
