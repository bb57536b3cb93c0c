//! The command-line regridder as an MPI program (`mpirun -np P healpix-psf regrid --distributed`,
//! features `cli` and `mpi`): each rank passes its tile of the grid to the distributed operator,
//! and rank 0 writes a file equal to the single process's — every variable, dimension and
//! attribute (the history line aside), the fitted field to rounding (1e-10 of its largest value in
//! double precision, 4 ulp when stored in single), the CG iterations and the cell ids exactly. On
//! the bundled ORCA1 file (2-D curvilinear grid, land, areas from the sample spacing) on 1–4 ranks,
//! bounded and conservative, and a regular grid with two batch dimensions, a point missing in one
//! row and explicit cell areas. Bad input fails on every rank with one message and no output.
//!
//! Run by scripts/mpi-tests.sh (`cargo test --release --features cli,mpi --test cli_mpi`); without
//! `mpirun` on the PATH the tests print SKIP.
#![cfg(all(feature = "cli", feature = "mpi"))]

use netcdf::types::{FloatType, NcVariableType};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ORCA1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/nemo_orca1_sst_2015-01.nc");
const EXE: &str = env!("CARGO_BIN_EXE_healpix-psf");

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hpsf_cli_mpi_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn have_mpirun() -> bool {
    let found = Command::new("mpirun").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        println!("SKIP: no mpirun on the PATH (the distributed command line is tested under scripts/mpi-tests.sh)");
    }
    found
}

/// `healpix-psf regrid args…` on `np` ranks (`None`: one process, without MPI).
fn run(np: Option<usize>, args: &[&str]) -> Output {
    let mut c = match np {
        None => Command::new(EXE),
        Some(np) => {
            let mut c = Command::new("mpirun");
            c.args(["--oversubscribe", "-np", &np.to_string(), EXE]);
            c.envs([("OMPI_ALLOW_RUN_AS_ROOT", "1"), ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")]);
            c
        }
    };
    c.arg("regrid").args(args);
    if np.is_some() {
        c.arg("--distributed");
    }
    c.output().expect("runs")
}

fn ok(np: Option<usize>, args: &[&str]) -> String {
    let out = run(np, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "healpix-psf {args:?} on {np:?} ranks failed:\n{err}");
    err
}

/// The file's variables (name, type, dimensions, attributes, values as f64), dimensions and
/// global attributes but `history`.
type Attrs = Vec<(String, String)>;
/// A variable: name, stored in single precision, dimensions, attributes, values.
type Var = (String, bool, Vec<String>, Attrs, Vec<f64>);
struct Contents {
    dims: Vec<(String, usize)>,
    globals: Attrs,
    vars: Vec<Var>,
}

fn contents(path: &Path) -> Contents {
    let f = netcdf::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let attrs = |a: &mut dyn Iterator<Item = netcdf::Attribute<'_>>| -> Attrs {
        a.filter(|a| a.name() != "history")
            .map(|a| (a.name().to_string(), format!("{:?}", a.value().unwrap())))
            .collect()
    };
    let vars = f
        .variables()
        .map(|v| {
            let single = matches!(v.vartype(), NcVariableType::Float(FloatType::F32));
            let dims = v.dimensions().iter().map(|d| d.name()).collect();
            let values = match v.vartype() {
                NcVariableType::Int(_) | NcVariableType::Float(_) => v.get_values::<f64, _>(..).unwrap(),
                _ => Vec::new(),
            };
            (v.name(), single, dims, attrs(&mut v.attributes()), values)
        })
        .collect();
    let globals = attrs(&mut f.attributes());
    Contents { dims: f.dimensions().map(|d| (d.name(), d.len())).collect(), globals, vars }
}

/// The distributed run's file equals the single process's (see the module docs); returns the
/// largest difference of a fitted value relative to the largest value of its variable.
fn same_file(single: &Path, distributed: &Path) -> f64 {
    let (a, b) = (contents(single), contents(distributed));
    assert_eq!(a.dims, b.dims, "dimensions");
    assert_eq!(a.globals, b.globals, "global attributes");
    assert_eq!(a.vars.len(), b.vars.len(), "variables");
    let mut worst = 0.0f64;
    for ((name, single, dims, attrs, x), (name_b, _, dims_b, attrs_b, y)) in a.vars.iter().zip(&b.vars) {
        assert_eq!((name, dims, attrs), (name_b, dims_b, attrs_b), "variable {name}");
        assert_eq!(x.len(), y.len(), "{name}: values");
        let exact =
            name == "cell_ids" || name == "fit_iterations" || name == "fit_converged" || name.ends_with("cells");
        let largest = x.iter().filter(|v| v.is_finite()).fold(0.0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
        let tol = if exact {
            0.0
        } else if *single {
            4.0 * f32::EPSILON as f64
        } else {
            1e-10
        };
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            assert_eq!(p.is_nan(), q.is_nan(), "{name}[{i}]: {p} against {q}");
            if p.is_finite() {
                let d = (p - q).abs() / if exact { 1.0 } else { largest.max(p.abs()) };
                assert!(d <= tol, "{name}[{i}]: {p} against {q}");
                worst = worst.max(d);
            }
        }
    }
    worst
}

/// One test running the scenarios in turn: the HDF5 library under NetCDF prints its internal error
/// stack (for attributes it probes) on any thread but the first that used it.
#[test]
fn distributed_command_line() {
    if !have_mpirun() {
        return;
    }
    orca1_on_tiles_writes_the_single_process_file();
    a_regular_grid_with_batch_rows_and_cell_areas();
    bad_input_fails_on_every_rank_with_one_message();
}

fn orca1_on_tiles_writes_the_single_process_file() {
    let single = tmp("orca1_single.nc");
    ok(None, &[ORCA1, "--var", "tos", "-o", single.to_str().unwrap(), "-q"]);
    for np in 1..=4 {
        let out = tmp(&format!("orca1_{np}.nc"));
        let log = ok(Some(np), &[ORCA1, "--var", "tos", "-o", out.to_str().unwrap()]);
        // progress from rank 0 only
        assert_eq!(log.matches("wrote ").count(), 1, "{log}");
        let worst = same_file(&single, &out);
        println!("ORCA1 on {np} rank(s): the single process's file, fitted values within {worst:.1e}");
    }
    // restricted to the cells of a file (--cells: the single process's output, its level 6), on 3
    // ranks: requested cells no point links to come out missing, as in one process
    let worst = on_ranks_as_one(ORCA1, "tos", 3, "orca1_cells", &["--cells", single.to_str().unwrap(), "-q"]);
    println!("ORCA1 restricted by --cells on 3 ranks: the single process's file, within {worst:.1e}");
    // and those cells filled from the nearest point over every rank (--fill-missing-cells), on 4
    let args = ["--cells", single.to_str().unwrap(), "--fill-missing-cells", "-q"];
    let worst = on_ranks_as_one(ORCA1, "tos", 4, "orca1_cells_filled", &args);
    println!("ORCA1 restricted by --cells and filled on 4 ranks: the single process's file, within {worst:.1e}");
    // from a previous field (--x0: a more damped fit's output) on 3 ranks: the distributed x_ref
    let damped = tmp("orca1_damped.nc");
    ok(None, &[ORCA1, "--var", "tos", "--lam", "0.3", "-o", damped.to_str().unwrap(), "-q"]);
    let worst = on_ranks_as_one(ORCA1, "tos", 3, "orca1_x0", &["--x0", damped.to_str().unwrap(), "-q"]);
    println!("ORCA1 from --x0 on 3 ranks: the single process's file, within {worst:.1e}");
    // bounded by the data and conservative, on 3 ranks (1 × 3 tiles), in double precision
    let args = ["--lower", "input", "--upper", "input", "--conservative", "--dtype", "f64", "--level", "7", "-q"];
    let worst = on_ranks_as_one(ORCA1, "tos", 3, "orca1_bounded", &args);
    println!("ORCA1 bounded and conservative on 3 ranks: the single process's file, within {worst:.1e}");
}

/// `input`'s variable `var` regridded with `args` by one process and on `np` ranks (files
/// `{tag}_single.nc`, `{tag}_{np}.nc`): the same file ([`same_file`]'s largest difference).
fn on_ranks_as_one(input: &str, var: &str, np: usize, tag: &str, args: &[&str]) -> f64 {
    let single = tmp(&format!("{tag}_single.nc"));
    ok(None, &[&[input, "--var", var, "-o", single.to_str().unwrap()], args].concat());
    let out = tmp(&format!("{tag}_{np}.nc"));
    ok(Some(np), &[&[input, "--var", var, "-o", out.to_str().unwrap()], args].concat());
    same_file(&single, &out)
}

/// A regular 24 × 30 grid with `time` × `depth` rows, cell areas named by `cell_measures`, a land
/// square, a point missing in one row; with `quadrant`, the quadrant y ≥ 12, x ≥ 15 is all land.
fn write_grid(path: &Path, quadrant: bool) {
    let (nt, nd, ny, nx) = (2usize, 2usize, 24usize, 30usize);
    let mut f = netcdf::create(path).unwrap();
    for (name, len) in [("time", nt), ("depth", nd), ("lat", ny), ("lon", nx)] {
        f.add_dimension(name, len).unwrap();
    }
    let lat: Vec<f64> = (0..ny).map(|j| 30.0 + 0.5 * j as f64).collect();
    let lon: Vec<f64> = (0..nx).map(|i| -10.0 + 0.5 * i as f64).collect();
    for (name, v, units) in [("lat", &lat, "degrees_north"), ("lon", &lon, "degrees_east")] {
        let mut var = f.add_variable::<f64>(name, &[name]).unwrap();
        var.put_attribute("units", units).unwrap();
        var.put_values(v, ..).unwrap();
    }
    let mut t = f.add_variable::<f64>("time", &["time"]).unwrap();
    t.put_attribute("units", "days since 2000-01-01").unwrap();
    t.put_values(&[0.0, 1.0], ..).unwrap();
    let mut values = Vec::new();
    for ti in 0..nt {
        for d in 0..nd {
            for (j, &y) in lat.iter().enumerate() {
                for (i, &x) in lon.iter().enumerate() {
                    let land = (3..7).contains(&j) && (4..9).contains(&i) || (quadrant && j >= 12 && i >= 15);
                    let once = ti == 1 && d == 0 && j == 18 && i == 5;
                    let v = 280.0 + 3.0 * ti as f64 + 5.0 * d as f64 + (x / 3.0).sin() + (y / 2.0).cos();
                    values.push(if land || once { -999.0 } else { v });
                }
            }
        }
    }
    let mut v = f.add_variable::<f64>("temp", &["time", "depth", "lat", "lon"]).unwrap();
    v.set_fill_value(-999.0f64).unwrap();
    v.put_attribute("units", "K").unwrap();
    v.put_attribute("cell_measures", "area: cellarea").unwrap();
    v.put_values(&values, ..).unwrap();
    let area: Vec<f64> = lat.iter().flat_map(|y| std::iter::repeat_n(y.to_radians().cos() * 3.0e9, nx)).collect();
    let mut v = f.add_variable::<f64>("cellarea", &["lat", "lon"]).unwrap();
    v.put_values(&area, ..).unwrap();
    f.close().unwrap();
}

fn a_regular_grid_with_batch_rows_and_cell_areas() {
    let input = tmp("grid.nc");
    write_grid(&input, false);
    let args = ["--var", "temp", "--level", "8", "--lam", "1e-2", "-q"];
    let single = tmp("grid_single.nc");
    ok(None, &[&[input.to_str().unwrap(), "-o", single.to_str().unwrap()], &args[..]].concat());
    for np in [2, 4] {
        let out = tmp(&format!("grid_{np}.nc"));
        ok(Some(np), &[&[input.to_str().unwrap(), "-o", out.to_str().unwrap()], &args[..]].concat());
        let worst = same_file(&single, &out);
        println!(
            "a regular grid, 4 rows, explicit areas, on {np} ranks: the single process's file, within {worst:.1e}"
        );
    }
}

fn bad_input_fails_on_every_rank_with_one_message() {
    // a rank whose tile holds only land
    let input = tmp("quadrant.nc");
    write_grid(&input, true);
    let out = tmp("quadrant_4.nc");
    let r = run(Some(4), &[input.to_str().unwrap(), "--var", "temp", "--level", "8", "-o", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "a rank without data: {err}");
    assert_eq!(err.matches("healpix-psf: error").count(), 1, "one message: {err}");
    assert!(err.contains("rank 3 holds no point with data"), "{err}");
    assert!(!out.exists(), "no output is written");
    // an --x0 file whose cells are not the operator's: one message, no output
    let r = run(Some(2), &[ORCA1, "--var", "tos", "--level", "5", "--x0", ORCA1, "-o", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("--x0"), "{err}");
    assert_eq!(err.matches("healpix-psf: error").count(), 1, "one message: {err}");
    assert!(!out.exists());
    // a variable that is not in the file: every rank fails reading, one message
    let r = run(Some(3), &[ORCA1, "--var", "nope", "-o", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("nope"), "{err}");
    assert_eq!(err.matches("healpix-psf: error").count(), 1, "one message: {err}");
    assert!(!out.exists());
}
