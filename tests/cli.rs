//! The command-line regridder on real data (NEMO ORCA1 sea-surface temperature, bundled in
//! tests/data) and on small NetCDF files written here: round trip, land, metadata read back,
//! batch dimensions in any order, packing and fill values, and the errors users meet — usage
//! errors before any read (status 2), a gap in one time step kept inside the data's range (and
//! --strict refusing the reference's zero-filled fit), truncated and damaged inputs, outputs whole
//! or absent when the map's write fails, history and globals, and a series over files on one
//! operator (per file, --concat, globs). tests/cli_fuzz.rs feeds it damaged files.
#![cfg(feature = "cli")]

use healpix_psf::{valid_samples, Params, PsfResampler};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ORCA1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/nemo_orca1_sst_2015-01.nc");

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hpsf_cli_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_healpix-psf")).args(args).output().expect("runs")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "healpix-psf {args:?} failed:\n{err}");
    err
}

fn fails(args: &[&str]) -> String {
    fails_with(1, args)
}

/// A usage error: status 2, before any input is read.
fn usage(args: &[&str]) -> String {
    fails_with(2, args)
}

fn fails_with(code: i32, args: &[&str]) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "healpix-psf {args:?} should fail with status {code}:\n{err}");
    err
}

fn str_attr(v: &netcdf::Variable<'_>, name: &str) -> String {
    match v.attribute_value(name).unwrap_or_else(|| panic!("no attribute {name}")).unwrap() {
        netcdf::AttributeValue::Str(s) => s,
        other => panic!("{name}: {other:?}"),
    }
}

fn num_attr(v: &netcdf::Variable<'_>, name: &str) -> f64 {
    use netcdf::AttributeValue as A;
    match v.attribute_value(name).unwrap_or_else(|| panic!("no attribute {name}")).unwrap() {
        A::Int(x) => x as f64,
        A::Longlong(x) => x as f64,
        A::Double(x) => x,
        A::Float(x) => x as f64,
        other => panic!("{name}: {other:?}"),
    }
}

fn read_f64(f: &netcdf::File, name: &str) -> Vec<f64> {
    f.variable(name).unwrap_or_else(|| panic!("no variable {name}")).get_values::<f64, _>(..).unwrap()
}

/// One test running the scenarios in turn: the HDF5 library under NetCDF prints its internal error
/// stack (for attributes it probes) on any thread but the first that used it.
#[test]
fn command_line_regridder() {
    orca1_round_trip_land_and_metadata();
    regular_grid_batch_dimensions_in_any_order();
    clear_errors();
    gap_in_one_step_stays_in_range();
    damaged_inputs();
    outputs_are_whole_or_absent();
    metadata_appends_and_drops();
    many_files_one_operator();
}

fn orca1_round_trip_land_and_metadata() {
    let out = tmp("orca1.nc");
    let png = tmp("orca1.png");
    let log = ok(&[
        "regrid",
        ORCA1,
        "--var",
        "tos",
        "-o",
        out.to_str().unwrap(),
        "--png",
        png.to_str().unwrap(),
        "--png-input",
    ]);
    assert!(log.contains("level 6") && log.contains("converged"), "{log}");

    // the input, independently of the tool
    let src = netcdf::open(ORCA1).unwrap();
    let lon = read_f64(&src, "nav_lon");
    let lat = read_f64(&src, "nav_lat");
    let sst: Vec<f64> =
        read_f64(&src, "tos").into_iter().map(|v| if v == 1e20f32 as f64 { f64::NAN } else { v }).collect();
    let n = sst.len();
    let ocean = sst.iter().filter(|v| v.is_finite()).count();

    let f = netcdf::open(&out).unwrap();
    // metadata: CF 1.13 HEALPix grid mapping, xdggs attributes, the variable's own attributes
    let crs = f.variable("crs").unwrap();
    assert_eq!(str_attr(&crs, "grid_mapping_name"), "healpix");
    assert_eq!(num_attr(&crs, "refinement_level"), 6.0);
    assert_eq!(str_attr(&crs, "indexing_scheme"), "nested");
    assert_eq!(num_attr(&crs, "semi_major_axis"), 6_378_137.0);
    assert_eq!(num_attr(&crs, "inverse_flattening"), 298.257_223_563);
    let ids_var = f.variable("cell_ids").unwrap();
    assert_eq!(str_attr(&ids_var, "grid_name"), "healpix");
    assert_eq!(num_attr(&ids_var, "level"), 6.0);
    assert_eq!(str_attr(&ids_var, "indexing_scheme"), "nested");
    assert_eq!(str_attr(&ids_var, "ellipsoid"), "WGS84");
    assert_eq!(str_attr(&f.variable("cell").unwrap(), "standard_name"), "healpix_index");
    let tos = f.variable("tos").unwrap();
    let dims: Vec<String> = tos.dimensions().iter().map(|d| d.name()).collect();
    assert_eq!(dims, ["time_counter", "cell"]);
    assert_eq!(str_attr(&tos, "units"), "degree_C");
    assert_eq!(str_attr(&tos, "standard_name"), "sea_surface_temperature");
    assert_eq!(str_attr(&tos, "grid_mapping"), "crs");
    assert!(tos.attribute("missing_value").is_none());
    assert_eq!(str_attr(&f.root().unwrap().variable("tos").unwrap(), "long_name"), "Sea Surface Temperature");
    assert!(f.variable("time_counter").is_some() && f.variable("time_centered").is_some());
    let ids: Vec<i64> = ids_var.get_values(..).unwrap();
    assert_eq!(ids, f.variable("cell").unwrap().get_values::<i64, _>(..).unwrap());
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let hval = read_f64(&f, "tos");
    assert_eq!(hval.len(), ids.len());

    // the operator the tool built, rebuilt from its recorded settings
    let p = Params { sample_mask: Some(valid_samples(&sst, n).unwrap()), ..Params::new(6) };
    let op = PsfResampler::<f64>::new(&lon, &lat, &p).unwrap();
    assert_eq!(op.cell_ids().iter().map(|&c| c as i64).collect::<Vec<_>>(), ids);
    // round trip: the field read back, resampled to the ocean points (stored as f32)
    let back = op.resample(&hval).unwrap();
    let (mut sum, mut max, mut m) = (0.0f64, 0.0f64, 0usize);
    for i in 0..n {
        if sst[i].is_finite() {
            let d = back[i] - sst[i];
            sum += d * d;
            max = max.max(d.abs());
            m += 1;
        } else {
            assert!(back[i].is_nan(), "land point {i} came back as {}", back[i]);
        }
    }
    let rms = (sum / m as f64).sqrt();
    println!("ORCA1 round trip: {m} ocean points, RMS {rms:.4} °C, max {max:.3} °C, K = {}", ids.len());
    assert_eq!(m, ocean);
    assert!(rms < 0.1 && max < 5.0, "RMS {rms}, max {max}");
    let recorded = read_f64(&f, "fit_residual_rms")[0];
    assert!((recorded - rms).abs() < 1e-3 * rms + 1e-6, "file says {recorded}, recomputed {rms}");
    assert_eq!(read_f64(&f, "fit_empty_cells")[0], 0.0);
    assert_eq!(read_f64(&f, "fit_converged")[0], 1.0);

    // land: no cell in the middle of a continent; with land kept in the operator such cells are
    // there but missing
    let grid = op.grid();
    let inland = [(20.0, 10.0), (-100.0, 40.0), (90.0, 35.0), (-60.0, -10.0), (135.0, -25.0)];
    for &(x, y) in &inland {
        let c = grid.cell(x, y).unwrap() as i64;
        assert!(ids.binary_search(&c).is_err(), "cell at {x},{y} is in the output");
    }
    let keep = tmp("orca1_keep.nc");
    ok(&["regrid", ORCA1, "--var", "tos", "-o", keep.to_str().unwrap(), "--level", "6", "--keep-missing-points", "-q"]);
    let g = netcdf::open(&keep).unwrap();
    let ids_k: Vec<i64> = g.variable("cell_ids").unwrap().get_values(..).unwrap();
    let h_k = read_f64(&g, "tos");
    for &(x, y) in &inland {
        let c = grid.cell(x, y).unwrap() as i64;
        let k = ids_k.binary_search(&c).expect("with land kept the cell exists");
        assert!(h_k[k].is_nan(), "land-only cell at {x},{y} = {}", h_k[k]);
    }
    assert!(read_f64(&g, "fit_empty_cells")[0] > 5000.0);

    // read by xdggs and easygems (Python, in the venv scripts/test-all.sh makes)
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-check/bin/python");
    if py.exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/check_healpix_output.py");
        let r = Command::new(&py).arg(&script).arg(&out).args(["tos", "6"]).output().unwrap();
        let said = String::from_utf8_lossy(&r.stdout).into_owned() + &String::from_utf8_lossy(&r.stderr);
        assert!(r.status.success(), "xdggs/easygems check failed:\n{said}");
        print!("{said}");
    } else {
        println!("SKIP: xdggs/easygems check (no .venv-check; scripts/test-all.sh makes it)");
    }

    // the picture: a PNG of the expected size (two 1000 × 500 Mollweide panels, the title and the
    // row drawn, the colour bar)
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h) =
        (u32::from_be_bytes(bytes[16..20].try_into().unwrap()), u32::from_be_bytes(bytes[20..24].try_into().unwrap()));
    assert_eq!((w, h), (2070, 674));
}

/// `lat`, `lon` and `time` coordinate variables with their CF units (NetCDF-4: each defined and
/// written at once).
fn put_axes(f: &mut netcdf::FileMut, lat: &[f64], lon: &[f64], time: &[f64]) {
    for (name, units, values) in
        [("lat", "degrees_north", lat), ("lon", "degrees_east", lon), ("time", "days since 2000-01-01", time)]
    {
        let mut v = f.add_variable::<f64>(name, &[name]).unwrap();
        v.put_attribute("units", units).unwrap();
        v.put_values(values, ..).unwrap();
    }
}

/// A regular 1° grid (lat 30–59, lon −20–19) with `temp(time, depth, lat, lon)` in f64 with a fill
/// value, `packed(lat, time, lon)` as shorts with scale/offset, and `perm(lon, time, lat)` holding
/// the same numbers as `temp` at depth 0 in another dimension order.
fn write_grid_file(path: &Path) -> (Vec<f64>, Vec<f64>) {
    let (nt, nd, ny, nx) = (3usize, 2usize, 30usize, 40usize);
    let lat: Vec<f64> = (0..ny).map(|j| 30.0 + j as f64).collect();
    let lon: Vec<f64> = (0..nx).map(|i| -20.0 + i as f64).collect();
    let field =
        |t: usize, d: usize, y: f64, x: f64| 10.0 * t as f64 + 100.0 * d as f64 + (x / 7.0).sin() + (y / 5.0).cos();
    let mut f = netcdf::create(path).unwrap();
    for (name, len) in [("time", nt), ("depth", nd), ("lat", ny), ("lon", nx)] {
        f.add_dimension(name, len).unwrap();
    }
    put_axes(&mut f, &lat, &lon, &[0.0, 31.0, 59.0]);
    let mut temp = Vec::new();
    for t in 0..nt {
        for d in 0..nd {
            for &y in &lat {
                for &x in &lon {
                    // a "land" square missing in every row, and one point missing in one row only
                    let land = (0.0..5.0).contains(&x) && (40.0..45.0).contains(&y);
                    let once = t == 1 && d == 0 && x == -10.0 && y == 50.0;
                    temp.push(if land || once { -999.0 } else { field(t, d, y, x) });
                }
            }
        }
    }
    let mut v = f.add_variable::<f64>("temp", &["time", "depth", "lat", "lon"]).unwrap();
    v.set_fill_value(-999.0f64).unwrap();
    v.put_attribute("units", "K").unwrap();
    v.put_attribute("long_name", "test temperature").unwrap();
    v.put_attribute("cell_measures", "area: cellarea").unwrap();
    v.put_values(&temp, ..).unwrap();
    // packed shorts: value = raw·0.01 + 20, raw −32767 = missing
    let mut packed = Vec::new();
    for &y in &lat {
        for t in 0..nt {
            for &x in &lon {
                let land = (0.0..5.0).contains(&x) && (40.0..45.0).contains(&y);
                packed.push(if land { -32767 } else { ((field(t, 0, y, x) - 20.0) / 0.01).round() as i16 });
            }
        }
    }
    let mut v = f.add_variable::<i16>("packed", &["lat", "time", "lon"]).unwrap();
    v.set_fill_value(-32767i16).unwrap();
    v.put_attribute("scale_factor", 0.01f32).unwrap();
    v.put_attribute("add_offset", 20.0f32).unwrap();
    v.put_values(&packed, ..).unwrap();
    let mut perm = Vec::new();
    for &x in &lon {
        for t in 0..nt {
            for &y in &lat {
                let land = (0.0..5.0).contains(&x) && (40.0..45.0).contains(&y);
                perm.push(if land { f64::NAN } else { field(t, 0, y, x) });
            }
        }
    }
    let mut v = f.add_variable::<f64>("perm", &["lon", "time", "lat"]).unwrap();
    v.put_values(&perm, ..).unwrap();
    // cell areas (∝ cos latitude on a regular grid)
    let area: Vec<f64> = lat.iter().flat_map(|y| std::iter::repeat_n(y.to_radians().cos(), nx)).collect();
    let mut v = f.add_variable::<f64>("cellarea", &["lat", "lon"]).unwrap();
    v.put_values(&area, ..).unwrap();
    // no coordinates at all
    let mut v = f.add_variable::<f64>("bare", &["depth"]).unwrap();
    v.put_values(&[1.0, 2.0], ..).unwrap();
    f.close().unwrap();
    (lon, lat)
}

fn regular_grid_batch_dimensions_in_any_order() {
    let input = tmp("grid.nc");
    write_grid_file(&input);
    let i = input.to_str().unwrap();
    let out = tmp("grid_temp.nc");
    let log = ok(&["regrid", i, "--var", "temp", "-o", out.to_str().unwrap(), "--level", "6"]);
    assert!(log.contains("areas from the variable 'cellarea'"), "{log}");
    let f = netcdf::open(&out).unwrap();
    let temp = f.variable("temp").unwrap();
    let dims: Vec<(String, usize)> = temp.dimensions().iter().map(|d| (d.name(), d.len())).collect();
    let k = f.dimension_len("cell").unwrap();
    assert_eq!(dims, [("time".into(), 3), ("depth".into(), 2), ("cell".into(), k)]);
    assert_eq!(read_f64(&f, "time"), [0.0, 31.0, 59.0]);
    assert_eq!(str_attr(&temp, "units"), "K");
    let h = read_f64(&f, "temp");
    // each row (t, d) sits at 10 t + 100 d + O(1): rows in the right order
    for t in 0..3 {
        for d in 0..2 {
            let row = &h[(t * 2 + d) * k..(t * 2 + d + 1) * k];
            let mean =
                row.iter().filter(|v| v.is_finite()).sum::<f64>() / row.iter().filter(|v| v.is_finite()).count() as f64;
            let want = 10.0 * t as f64 + 100.0 * d as f64;
            assert!((mean - want).abs() < 2.1, "row t={t} d={d}: mean {mean}, want {want} ± 2");
        }
    }
    let iterations = read_f64(&f, "fit_iterations");
    assert_eq!(iterations.len(), 6);
    let ids: Vec<i64> = f.variable("cell_ids").unwrap().get_values(..).unwrap();

    // onto the cells of that output (its level taken), and warm-started from it
    let again = tmp("grid_again.nc");
    let log = ok(&[
        "regrid",
        i,
        "--var",
        "temp",
        "-o",
        again.to_str().unwrap(),
        "--cells",
        out.to_str().unwrap(),
        "--x0",
        out.to_str().unwrap(),
    ]);
    assert!(log.contains("level 6 of the cells"), "{log}");
    let g = netcdf::open(&again).unwrap();
    assert_eq!(g.variable("cell_ids").unwrap().get_values::<i64, _>(..).unwrap(), ids);
    let warm = read_f64(&g, "fit_iterations");
    assert!(warm.iter().sum::<f64>() < 0.5 * iterations.iter().sum::<f64>(), "{warm:?} vs {iterations:?}");
    let h2 = read_f64(&g, "temp");
    let worst = h
        .iter()
        .zip(&h2)
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-3, "{worst}");

    // the same numbers stored as (lon, time, lat) and as packed shorts over (lat, time, lon)
    // (another storage order sorts tied samples differently: rounding differences only)
    // (packing rounds to 0.01; the fit, a deconvolution, amplifies that a little)
    for (var, tol) in [("perm", 1e-6), ("packed", 0.2)] {
        let o = tmp(&format!("grid_{var}.nc"));
        ok(&["regrid", i, "--var", var, "-o", o.to_str().unwrap(), "--level", "6", "--area-var", "cellarea", "-q"]);
        let g = netcdf::open(&o).unwrap();
        let dims: Vec<String> = g.variable(var).unwrap().dimensions().iter().map(|d| d.name()).collect();
        assert_eq!(dims, ["time", "cell"], "{var}");
        let hv = read_f64(&g, var);
        assert_eq!(g.dimension_len("cell"), Some(k), "{var}");
        for t in 0..3 {
            // temp at depth 0 differs from these in one point (missing in one row only)
            let a = &h[(t * 2) * k..(t * 2 + 1) * k];
            let b = &hv[t * k..(t + 1) * k];
            let diff = a.iter().zip(b).filter(|(x, y)| x.is_finite() && y.is_finite()).map(|(x, y)| (x - y).abs());
            let worst = diff.fold(0.0, f64::max);
            // row 1 of temp misses one point that perm has: like the reference, a point missing
            // in some rows only counts as 0 in those rows' fits (SPEC §7 item 9), so they differ
            if t != 1 {
                assert!(worst <= tol, "{var} row {t}: {worst}");
            }
        }
    }
}

fn clear_errors() {
    let input = tmp("grid_err.nc");
    write_grid_file(&input);
    let i = input.to_str().unwrap();
    let o = tmp("err_out.nc");
    let o = o.to_str().unwrap();
    let e = fails(&["regrid", "/nonexistent/x.nc", "--var", "a", "-o", o]);
    assert!(e.contains("/nonexistent/x.nc"), "{e}");
    let text = tmp("not_netcdf.nc");
    std::fs::write(&text, "hello").unwrap();
    let e = fails(&["regrid", text.to_str().unwrap(), "--var", "a", "-o", o]);
    assert!(e.contains("not a NetCDF file") && e.contains("not_netcdf.nc"), "{e}");
    let e = fails(&["regrid", i, "--var", "tmp", "-o", o]);
    assert!(e.contains("no variable 'tmp'") && e.contains("temp"), "{e}");
    let e = fails(&["regrid", i, "--var", "bare", "-o", o]);
    assert!(e.contains("'bare'") && e.contains("--lon"), "{e}");
    let e = fails(&["regrid", i, "--var", "temp", "-o", o, "--lon", "nope"]);
    assert!(e.contains("'nope'"), "{e}");
    let e = usage(&["regrid", i, "--var", "temp", "-o", o, "--level", "40"]);
    assert!(e.contains("--level 40"), "{e}");
    let e = fails(&["regrid", i, "--var", "temp", "-o", o, "--area-var", "nope", "-q"]);
    assert!(e.contains("'nope'") && e.contains("--area-var"), "{e}");
    let e = fails(&["regrid", i, "--var", "temp", "-o", o, "--cells", i, "-q"]);
    assert!(e.contains("cell_ids"), "{e}");
    let e = fails(&["regrid", i, "--var", "temp", "-o", o, "--x0", i, "--level", "5", "-q"]);
    assert!(e.contains("cell_ids"), "{e}");
    let e = usage(&["regrid", i, "--var", "temp", "-o", o, "--lower", "abc"]);
    assert!(e.contains("--lower abc"), "{e}");
    if !cfg!(feature = "mpi") {
        // the MPI program needs a build with the feature (tests/cli_mpi.rs tests it)
        let e = usage(&["regrid", i, "--var", "temp", "-o", o, "--distributed"]);
        assert!(e.contains("built without MPI") && e.contains("--features cli,mpi"), "{e}");
    }
    let e = usage(&["regrid", i, "--var", "temp", "-o", o, "--lam=-1", "-q"]);
    assert!(e.contains("lam"), "{e}");
    // usage errors come before any input is read: a missing input is not even looked at
    for (args, said) in [
        (&["--level", "30"][..], "--level 30"),
        (&["--device", "gpu"], "--device gpu"),
        (&["--npt", "0"], "npt"),
        (&["--sigma-m=-1"], "--sigma-m"),
        (&["--tol", "0"], "tol"),
        (&["--png-width", "5"], "--png-width"),
        (&["--empty-cells", "fitted"], "--zero-fill-missing"),
    ] {
        let mut a = vec!["regrid", "/nonexistent/x.nc", "--var", "temp", "-o", o];
        a.extend_from_slice(args);
        let e = usage(&a);
        assert!(e.contains(said), "{args:?}: {e}");
    }
    if !cfg!(feature = "cuda") {
        let e = usage(&["regrid", "/nonexistent/x.nc", "--var", "temp", "-o", o, "--device", "cuda"]);
        assert!(e.contains("CUDA"), "{e}");
    }
    let e = usage(&["regrid", i, "--var", "temp", "-o", "/nonexistent/dir/out.nc", "-q", "--level", "5"]);
    assert!(e.contains("/nonexistent/dir/out.nc") && e.contains("folder /nonexistent/dir does not exist"), "{e}");
    let e = usage(&["regrid", i, "--var", "temp", "-o", i]);
    assert!(e.contains("that is the input"), "{e}");
    let e = usage(&["regrid", i, "--var", "temp", "-o", o, "--png", o]);
    assert!(e.contains("the same file as -o"), "{e}");
    let e = usage(&["regrid", i, i, "--var", "temp", "-o", o]);
    assert!(e.contains("existing folder") && e.contains("--concat"), "{e}");
    let e = usage(&["regrid", &format!("{}/nomatch_*.nc", tmp("").display()), "--var", "temp", "-o", o]);
    assert!(e.contains("no file matches"), "{e}");
    // a usage error is clap's (status 2)
    assert_eq!(run(&["regrid", i]).status.code(), Some(2));
}

/// A global 1° `tas` (K) with three time steps, the middle one with a missing patch (a cloud, a
/// sensor dropout), written in the given NetCDF format, with NEMO-like grid globals and a history.
fn write_tas(path: &Path, fmt: netcdf::Options, patch: bool) -> Vec<f64> {
    let (ny, nx, nt) = (180usize, 360usize, 3usize);
    let nc4 = fmt.contains(netcdf::Options::NETCDF4);
    let mut f = netcdf::create_with(path, fmt).unwrap();
    f.add_dimension("time", nt).unwrap();
    f.add_dimension("lat", ny).unwrap();
    f.add_dimension("lon", nx).unwrap();
    f.add_attribute("title", "synthetic tas").unwrap();
    f.add_attribute("history", "made by tests/cli.rs").unwrap();
    f.add_attribute("ni", 360i32).unwrap();
    f.add_attribute("ibegin", 1i32).unwrap();
    let lat: Vec<f64> = (0..ny).map(|j| -89.5 + j as f64).collect();
    let lon: Vec<f64> = (0..nx).map(|i| 0.5 + i as f64).collect();
    let mut tas = Vec::with_capacity(nt * ny * nx);
    for t in 0..nt {
        for &y in &lat {
            for &x in &lon {
                let gap = patch && t == 1 && (100.0..140.0).contains(&x) && (-10.0..20.0).contains(&y);
                let val = 300.0 - 50.0 * y.to_radians().sin().powi(2) + 3.0 * (x.to_radians() * 2.0).sin() + t as f64;
                tas.push(if gap { f32::NAN } else { val as f32 });
            }
        }
    }
    // (classic formats: everything defined before any value is written)
    for (name, units) in [("lat", "degrees_north"), ("lon", "degrees_east"), ("time", "days since 2015-01-01")] {
        f.add_variable::<f64>(name, &[name]).unwrap().put_attribute("units", units).unwrap();
    }
    f.variable_mut("time").unwrap().put_attribute("calendar", "noleap").unwrap();
    let mut v = f.add_variable::<f32>("tas", &["time", "lat", "lon"]).unwrap();
    v.put_attribute("units", "K").unwrap();
    v.put_attribute("standard_name", "air_temperature").unwrap();
    if !nc4 {
        f.enddef().unwrap();
    }
    f.variable_mut("lat").unwrap().put_values(&lat, ..).unwrap();
    f.variable_mut("lon").unwrap().put_values(&lon, ..).unwrap();
    f.variable_mut("time").unwrap().put_values(&[15.5, 45.0, 74.5], ..).unwrap();
    f.variable_mut("tas").unwrap().put_values(&tas, ..).unwrap();
    f.close().unwrap();
    tas.into_iter().map(f64::from).collect()
}

/// The reported −270 K case: a missing patch in one of three steps. Per-row missing data keeps
/// every cell inside the data's range; the reference's zero-filling does not, and --strict refuses
/// to write that.
fn gap_in_one_step_stays_in_range() {
    let input = tmp("tas_gap.nc");
    let tas = write_tas(&input, netcdf::Options::NETCDF4, true);
    let i = input.to_str().unwrap();
    let out = tmp("tas_gap_hp.nc");
    let log = ok(&["regrid", i, "--var", "tas", "-o", out.to_str().unwrap()]);
    assert!(!log.contains("warning"), "{log}");
    let f = netcdf::open(&out).unwrap();
    let h = read_f64(&f, "tas");
    let k = f.dimension_len("cell").unwrap();
    let (lo, hi) = tas.iter().filter(|v| v.is_finite()).fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    // the documented range: the data's, widened by 10 % of its span (a deconvolution overshoots
    // a little where samples crowd, as at the poles of a regular grid)
    let m = 0.1 * (hi - lo);
    for r in 0..3 {
        let row = &h[r * k..(r + 1) * k];
        let (a, b) = row.iter().filter(|v| v.is_finite()).fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(a >= lo - m && b <= hi + m, "row {r}: cells in [{a}, {b}], data in [{lo}, {hi}]");
    }
    let oor: Vec<i32> = f.variable("fit_cells_out_of_range").unwrap().get_values(..).unwrap();
    assert_eq!(oor, [0, 0, 0]);
    // the patch's cells are missing in that step only
    let empty: Vec<i32> = f.variable("fit_empty_cells").unwrap().get_values(..).unwrap();
    assert!(empty[0] == 0 && empty[1] > 50 && empty[2] == 0, "{empty:?}");

    // zero-filled as the reference does: cells far below absolute zero, flagged and refused
    let zf = tmp("tas_gap_zf.nc");
    let e = ok(&["regrid", i, "--var", "tas", "-o", zf.to_str().unwrap(), "--zero-fill-missing", "-q"]);
    assert!(e.contains("warning") && e.contains("time = 2015-02-15"), "{e}");
    let g = netcdf::open(&zf).unwrap();
    let oor: Vec<i32> = g.variable("fit_cells_out_of_range").unwrap().get_values(..).unwrap();
    assert!(oor[0] == 0 && oor[1] > 10 && oor[2] == 0, "{oor:?}");
    let strict = tmp("tas_gap_strict.nc");
    let e =
        fails(&["regrid", i, "--var", "tas", "-o", strict.to_str().unwrap(), "--zero-fill-missing", "--strict", "-q"]);
    assert!(e.contains("--strict") && e.contains("row 1"), "{e}");
    assert!(!strict.exists());
}

/// Truncated classic, 64-bit-offset and NetCDF-4 files, an empty one, one without variables and
/// absurd attributes: each a clear error naming the file.
fn damaged_inputs() {
    let o = tmp("damaged_out.nc");
    let o = o.to_str().unwrap();
    for (name, fmt) in [
        ("classic", netcdf::Options::CLASSIC),
        ("offset64", netcdf::Options::_64BIT_OFFSET),
        ("netcdf4", netcdf::Options::NETCDF4),
    ] {
        let whole = tmp(&format!("tas_{name}.nc"));
        write_tas(&whole, fmt, false);
        let bytes = std::fs::read(&whole).unwrap();
        let cut = tmp(&format!("tas_{name}_cut.nc"));
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let e = fails(&["regrid", cut.to_str().unwrap(), "--var", "tas", "-o", o, "-q"]);
        assert!(e.contains(cut.to_str().unwrap()), "{name}: {e}");
        // (NetCDF-3: the size the header implies; NetCDF-4: the HDF5 superblock's end of file)
        let want = format!("truncated: expected {} bytes, found {}", bytes.len(), bytes.len() / 2);
        assert!(e.contains(&want), "{name}: {e}");
        assert!(!Path::new(o).exists(), "{name}: an output was written");
    }
    let empty = tmp("empty.nc");
    std::fs::write(&empty, b"").unwrap();
    let e = fails(&["regrid", empty.to_str().unwrap(), "--var", "tas", "-o", o]);
    assert!(e.contains("empty") && e.contains("empty.nc"), "{e}");
    let novars = tmp("novars.nc");
    netcdf::create(&novars).unwrap().add_attribute("title", "nothing").unwrap();
    let e = fails(&["regrid", novars.to_str().unwrap(), "--var", "tas", "-o", o]);
    assert!(e.contains("no variable 'tas'") && e.contains("no variable with dimensions"), "{e}");
    // absurd attributes
    for (attr, value, said) in [
        ("scale_factor", netcdf::AttributeValue::Double(0.0), "scale_factor"),
        ("scale_factor", netcdf::AttributeValue::Double(f64::NAN), "scale_factor"),
        ("valid_range", netcdf::AttributeValue::Doubles(vec![400.0, 100.0]), "reversed"),
    ] {
        let p = tmp("absurd.nc");
        write_tas(&p, netcdf::Options::NETCDF4, false);
        netcdf::append(&p).unwrap().variable_mut("tas").unwrap().put_attribute(attr, value).unwrap();
        let e = fails(&["regrid", p.to_str().unwrap(), "--var", "tas", "-o", o, "-q"]);
        assert!(e.contains(said) && e.contains("'tas'"), "{attr}: {e}");
    }
}

/// Names in `dir` that are leftovers of an interrupted write.
fn partials(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".partial-"))
        .collect()
}

/// A failing map write leaves neither the NetCDF nor the map, and an earlier output untouched.
fn outputs_are_whole_or_absent() {
    let input = tmp("grid_atomic.nc");
    write_grid_file(&input);
    let dir = tmp("atomic");
    std::fs::create_dir_all(&dir).unwrap();
    let (o, png) = (dir.join("out.nc"), dir.join("out.png"));
    let args = [
        "regrid",
        input.to_str().unwrap(),
        "--var",
        "temp",
        "-o",
        o.to_str().unwrap(),
        "--png",
        png.to_str().unwrap(),
        "-q",
    ];
    let r =
        Command::new(env!("CARGO_BIN_EXE_healpix-psf")).args(args).env("HEALPIX_PSF_FAULT", "png").output().unwrap();
    assert_eq!(r.status.code(), Some(1), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(!o.exists() && !png.exists(), "a partial output was left");
    assert!(partials(&dir).is_empty(), "{:?}", partials(&dir));
    ok(&args);
    let before = std::fs::read(&o).unwrap();
    let r =
        Command::new(env!("CARGO_BIN_EXE_healpix-psf")).args(args).env("HEALPIX_PSF_FAULT", "png").output().unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert_eq!(std::fs::read(&o).unwrap(), before, "the earlier output was touched");
    assert!(partials(&dir).is_empty());
}

/// history appended, counters as integers, the source grid's globals dropped, descriptive kept.
fn metadata_appends_and_drops() {
    let input = tmp("tas_meta.nc");
    write_tas(&input, netcdf::Options::NETCDF4, false);
    let out = tmp("tas_meta_hp.nc");
    ok(&["regrid", input.to_str().unwrap(), "--var", "tas", "-o", out.to_str().unwrap(), "--level", "4", "-q"]);
    let f = netcdf::open(&out).unwrap();
    let history = match f.attribute("history").unwrap().value().unwrap() {
        netcdf::AttributeValue::Str(s) => s,
        other => panic!("{other:?}"),
    };
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines.len() == 2 && lines[0].contains("healpix-psf") && lines[1] == "made by tests/cli.rs", "{history}");
    assert!(f.attribute("title").is_some());
    assert!(f.attribute("ni").is_none() && f.attribute("ibegin").is_none());
    use netcdf::types::{IntType, NcVariableType as T};
    for name in ["fit_iterations", "fit_empty_cells", "fit_cells_out_of_range"] {
        assert_eq!(f.variable(name).unwrap().vartype(), T::Int(IntType::I32), "{name}");
    }
    assert_eq!(f.variable("fit_converged").unwrap().vartype(), T::Int(IntType::I8));
}

/// A time series split over files: one operator, one output per input or one concatenated; the
/// same numbers as regridding the whole series from one file.
fn many_files_one_operator() {
    let whole = tmp("grid_series.nc");
    write_grid_file(&whole);
    let dir = tmp("series");
    let outdir = dir.join("out");
    std::fs::create_dir_all(&outdir).unwrap();
    // the three time steps of `perm` (lon, time, lat) as three files
    let src = netcdf::open(&whole).unwrap();
    let (lon, lat) = (read_f64(&src, "lon"), read_f64(&src, "lat"));
    let perm = read_f64(&src, "perm");
    let (nx, ny) = (lon.len(), lat.len());
    for t in 0..3 {
        let mut f = netcdf::create(dir.join(format!("step_{t}.nc"))).unwrap();
        for (d, n) in [("time", 1), ("lat", ny), ("lon", nx)] {
            f.add_dimension(d, n).unwrap();
        }
        put_axes(&mut f, &lat, &lon, &[[0.0, 31.0, 59.0][t]]);
        let row: Vec<f64> =
            (0..ny).flat_map(|y| (0..nx).map(move |x| (x, y))).map(|(x, y)| perm[(x * 3 + t) * ny + y]).collect();
        f.add_variable::<f64>("perm", &["time", "lat", "lon"]).unwrap().put_values(&row, ..).unwrap();
    }
    let one = tmp("series_whole.nc");
    ok(&[
        "regrid",
        whole.to_str().unwrap(),
        "--var",
        "perm",
        "-o",
        one.to_str().unwrap(),
        "--level",
        "6",
        "--area",
        "uniform",
        "--per-row",
        "-q",
    ]);
    let want = read_f64(&netcdf::open(&one).unwrap(), "perm");
    let glob = format!("{}/step_*.nc", dir.display());
    let log = ok(&[
        "regrid",
        &glob,
        "--var",
        "perm",
        "-o",
        outdir.to_str().unwrap(),
        "--level",
        "6",
        "--area",
        "uniform",
        "--per-row",
    ]);
    assert!(log.contains("3/3 files") && log.matches("assembled M").count() == 1, "{log}");
    let mut got = Vec::new();
    for t in 0..3 {
        got.extend(read_f64(&netcdf::open(outdir.join(format!("step_{t}.nc"))).unwrap(), "perm"));
    }
    // (the whole file stores `perm` as (lon, time, lat): its samples come in another order, which
    // changes rounding only; --per-row makes each row's iterations its own in every layout)
    let worst = |a: &[f64], b: &[f64]| {
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(b).all(|(x, y)| x.is_nan() == y.is_nan()));
        a.iter().zip(b).filter(|(x, _)| x.is_finite()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    };
    let d = worst(&got, &want);
    assert!(d < 1e-6, "per-file outputs differ from the whole series by {d}");
    let cat = tmp("series_cat.nc");
    let files: Vec<String> = (0..3).map(|t| dir.join(format!("step_{t}.nc")).to_str().unwrap().to_string()).collect();
    let mut args = vec!["regrid"];
    args.extend(files.iter().map(String::as_str));
    args.extend([
        "--var",
        "perm",
        "-o",
        cat.to_str().unwrap(),
        "--concat",
        "--level",
        "6",
        "--area",
        "uniform",
        "--per-row",
    ]);
    let png = tmp("series_cat.png");
    args.extend(["--png", png.to_str().unwrap(), "--png-row", "2"]);
    let log = ok(&args);
    assert!(log.contains("row 2 of 3"), "{log}");
    let g = netcdf::open(&cat).unwrap();
    let d = worst(&read_f64(&g, "perm"), &want);
    assert!(d < 1e-6, "the concatenated output differs from the whole series by {d}");
    assert_eq!(read_f64(&g, "time"), [0.0, 31.0, 59.0]);
    // files out of time order, or one twice, are refused (a glob sorts names, not times)
    let mut args = vec!["regrid", files[1].as_str(), files[0].as_str()];
    args.extend(["--var", "perm", "-o", cat.to_str().unwrap(), "--concat", "--level", "6", "-q"]);
    let e = fails(&args);
    assert!(e.contains("does not increase") && e.contains("time order"), "{e}");
    // one input into a folder keeps its name; a folder that does not exist is named
    let single = dir.join("single");
    std::fs::create_dir_all(&single).unwrap();
    let slash = format!("{}/", single.display());
    ok(&["regrid", files[0].as_str(), "--var", "perm", "-o", &slash, "--level", "6", "-q"]);
    assert!(single.join("step_0.nc").exists());
    let e = usage(&["regrid", files[0].as_str(), "--var", "perm", "-o", "/nonexistent_dir/", "-q"]);
    assert!(e.contains("/nonexistent_dir/") && e.contains("does not exist"), "{e}");
    // another grid is refused
    let e = fails(&[
        "regrid",
        files[0].as_str(),
        whole.to_str().unwrap(),
        "--var",
        "perm",
        "-o",
        cat.to_str().unwrap(),
        "--concat",
        "-q",
    ]);
    assert!(e.contains("not on the grid of the first input"), "{e}");
}
