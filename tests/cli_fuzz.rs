//! Damaged inputs through the command-line regridder: truncations, bit flips and extreme numbers
//! in the header, absurd attributes (`scale_factor` 0 or NaN, `valid_range` reversed, a fill value
//! of another type), wrong types and dimensions, made from the bundled ORCA1 file and from small
//! classic, 64-bit-offset and NetCDF-4 files written here.
//!
//! Each case must end in a clear error (status 1, nothing written) or in an output whose values
//! stay inside the input's range (the input read back here and unpacked independently) — never a
//! panic, an abort, a usage error or a hang. The suite runs a short campaign;
//! `HPSF_FUZZ_CASES=10000 cargo test --release --features cli --test cli_fuzz -- --nocapture`
//! runs the long one (`HPSF_FUZZ_SEED` to change the seed, `HPSF_FUZZ_ONLY=N` to replay case N).
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ORCA1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/nemo_orca1_sst_2015-01.nc");
/// A case running longer than this is a hang.
const LIMIT: Duration = Duration::from_secs(60);

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("hpsf_fuzz_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A base file: its bytes and the variable to regrid.
struct Base {
    name: &'static str,
    bytes: Vec<u8>,
    var: &'static str,
}

/// A small regular grid (20 × 30, two time steps) with a fill value and packing, in `fmt`; false
/// when NetCDF-C refuses to write the variant (a _FillValue of another type).
fn small(path: &Path, fmt: netcdf::Options, v: &Variant) -> bool {
    let nc4 = fmt.contains(netcdf::Options::NETCDF4);
    let mut f = netcdf::create_with(path, fmt).unwrap();
    let (nt, ny, nx) = (2usize, 20usize, 30usize);
    f.add_dimension("time", nt).unwrap();
    f.add_dimension("lat", ny).unwrap();
    f.add_dimension("lon", nx).unwrap();
    let lat_dims: &[&str] = if v.lat_on_time { &["time"] } else { &["lat"] };
    f.add_variable::<f64>("lat", lat_dims).unwrap().put_attribute("units", "degrees_north").unwrap();
    f.add_variable::<f64>("lon", &["lon"]).unwrap().put_attribute("units", "degrees_east").unwrap();
    f.add_variable::<f64>("time", &["time"]).unwrap().put_attribute("units", v.time_units).unwrap();
    let mut x = f.add_variable::<i16>("x", &["time", "lat", "lon"]).unwrap();
    x.put_attribute("_FillValue", -32767i16).unwrap();
    x.put_attribute("units", "K").unwrap();
    for (name, value) in &v.attrs {
        // NetCDF-C itself refuses some (a _FillValue of another type)
        if x.put_attribute(name, value.clone()).is_err() {
            return false;
        }
    }
    if !nc4 && f.enddef().is_err() {
        return false;
    }
    let lat: Vec<f64> = (0..if v.lat_on_time { nt } else { ny }).map(|j| v.lat0 + 2.0 * j as f64).collect();
    let lon: Vec<f64> = (0..nx).map(|i| v.lon0 + 2.0 * i as f64).collect();
    f.variable_mut("lat").unwrap().put_values(&lat, ..).unwrap();
    f.variable_mut("lon").unwrap().put_values(&lon, ..).unwrap();
    f.variable_mut("time").unwrap().put_values(&[0.0, 1.0], ..).unwrap();
    let raw: Vec<i16> = (0..nt * ny * nx).map(|i| if i % 97 == 5 { -32767 } else { v.raw(i) }).collect();
    f.variable_mut("x").unwrap().put_values(&raw, ..).unwrap();
    f.close().unwrap();
    true
}

/// What a small file is made with: attributes of `x`, coordinates, values.
#[derive(Clone)]
struct Variant {
    attrs: Vec<(&'static str, netcdf::AttributeValue)>,
    lat0: f64,
    lon0: f64,
    lat_on_time: bool,
    time_units: &'static str,
    extreme: bool,
}

impl Variant {
    fn plain() -> Self {
        let attrs = vec![
            ("scale_factor", netcdf::AttributeValue::Double(0.01)),
            ("add_offset", netcdf::AttributeValue::Double(280.0)),
        ];
        Variant {
            attrs,
            lat0: 30.0,
            lon0: -20.0,
            lat_on_time: false,
            time_units: "days since 2000-01-01",
            extreme: false,
        }
    }
    fn raw(&self, i: usize) -> i16 {
        if self.extreme && i.is_multiple_of(13) {
            [i16::MAX, i16::MIN + 1, 0][i % 3]
        } else {
            // a smooth field over (time, lat 20, lon 30)
            let (y, x) = ((i / 30) % 20, i % 30);
            (600.0 * (x as f64 / 6.0).sin() + 300.0 * (y as f64 / 4.0).cos() + (i / 600) as f64 * 50.0) as i16
        }
    }
}

/// The absurd-attribute and wrong-grid variants.
fn variants() -> Vec<(&'static str, Variant)> {
    use netcdf::AttributeValue as A;
    let with = |extra: Vec<(&'static str, A)>| {
        let mut v = Variant::plain();
        for (name, value) in extra {
            v.attrs.retain(|(n, _)| *n != name);
            v.attrs.push((name, value));
        }
        v
    };
    vec![
        ("plain", Variant::plain()),
        ("scale0", with(vec![("scale_factor", A::Double(0.0))])),
        ("scale_nan", with(vec![("scale_factor", A::Double(f64::NAN))])),
        ("scale_inf", with(vec![("scale_factor", A::Double(f64::INFINITY))])),
        ("scale_huge", with(vec![("scale_factor", A::Double(1e300))])),
        ("scale_neg", with(vec![("scale_factor", A::Double(-0.5))])),
        ("scale_text", with(vec![("scale_factor", A::Str("ten".into()))])),
        ("scale_two", with(vec![("scale_factor", A::Doubles(vec![1.0, 2.0]))])),
        ("offset_nan", with(vec![("add_offset", A::Double(f64::NAN))])),
        ("range_reversed", with(vec![("valid_range", A::Shorts(vec![500, -500]))])),
        ("range_nan", with(vec![("valid_range", A::Doubles(vec![f64::NAN, 1.0]))])),
        ("range_one", with(vec![("valid_range", A::Shorts(vec![5]))])),
        ("valid_min_all", with(vec![("valid_min", A::Short(i16::MAX))])),
        ("fill_double", with(vec![("_FillValue", A::Double(-1000.0))])),
        ("fill_text", with(vec![("_FillValue", A::Str("x".into()))])),
        ("missing_text", with(vec![("missing_value", A::Str("none".into()))])),
        ("missing_double", with(vec![("missing_value", A::Double(-1000.0))])),
        ("missing_many", with(vec![("missing_value", A::Doubles(vec![0.0, 1.0, f64::NAN]))])),
        ("lat_out", Variant { lat0: 60.0, ..Variant::plain() }),
        ("lon_wide", Variant { lon0: 300.0, ..Variant::plain() }),
        ("lat_on_time", Variant { lat_on_time: true, ..Variant::plain() }),
        ("time_garbage", Variant { time_units: "fortnights since the flood", ..Variant::plain() }),
        ("extreme", Variant { extreme: true, ..Variant::plain() }),
    ]
}

/// The base files: ORCA1 and the small grid in three formats.
fn bases(d: &Path) -> Vec<Base> {
    let mut out = vec![Base { name: "orca1", bytes: std::fs::read(ORCA1).unwrap(), var: "tos" }];
    for (name, fmt) in [
        ("classic", netcdf::Options::CLASSIC),
        ("offset64", netcdf::Options::_64BIT_OFFSET),
        ("netcdf4", netcdf::Options::NETCDF4),
    ] {
        let p = d.join(format!("base_{name}.nc"));
        assert!(small(&p, fmt, &Variant::plain()));
        out.push(Base { name, bytes: std::fs::read(&p).unwrap(), var: "x" });
    }
    out
}

/// One damaged input: bytes changed in the header region, or cut.
fn damage(rng: &mut Rng, bytes: &[u8]) -> (String, Vec<u8>) {
    let mut b = bytes.to_vec();
    let header = b.len().min(4096);
    match rng.below(4) {
        0 => {
            let cut = rng.below(b.len());
            b.truncate(cut);
            (format!("cut at {cut}"), b)
        }
        1 => {
            let flips = 1 + rng.below(8);
            for _ in 0..flips {
                let at = rng.below(header);
                b[at] ^= 1 << rng.below(8);
            }
            (format!("{flips} bit flips"), b)
        }
        2 => {
            let at = rng.below(header / 4) * 4;
            let v = [0u32, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000, 1, rng.next() as u32][rng.below(6)];
            b[at..at + 4].copy_from_slice(&v.to_be_bytes());
            (format!("u32 {v:#x} at {at}"), b)
        }
        _ => {
            let at = rng.below(header);
            let len = (1 + rng.below(64)).min(b.len() - at);
            for x in &mut b[at..at + len] {
                *x = rng.next() as u8;
            }
            (format!("{len} random bytes at {at}"), b)
        }
    }
}

/// What one run of the tool did.
struct Ran {
    code: Option<i32>,
    stderr: String,
    hung: bool,
}

fn regrid(input: &Path, var: &str, output: &Path) -> Ran {
    let mut child = Command::new(env!("CARGO_BIN_EXE_healpix-psf"))
        .args(["regrid", input.to_str().unwrap(), "--var", var, "-o", output.to_str().unwrap()])
        .args(["--level", "4", "--strict", "-q", "--max-iter", "50"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let hung = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        if t.elapsed() > LIMIT {
            let _ = child.kill();
            break true;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = child.wait_with_output().unwrap();
    Ran { code: out.status.code(), stderr: String::from_utf8_lossy(&out.stderr).into_owned(), hung }
}

/// The input's valid values, unpacked here by the CF rules (independently of the tool).
fn valid_values(input: &Path, var: &str) -> Option<Vec<f64>> {
    let f = netcdf::open(input).ok()?;
    let v = f.variable(var)?;
    let raw: Vec<f64> = v.get_values(..).ok()?;
    let num = |name: &str| -> Vec<f64> {
        use netcdf::AttributeValue as A;
        match v.attribute_value(name).and_then(|a| a.ok()) {
            Some(A::Double(x)) => vec![x],
            Some(A::Float(x)) => vec![x as f64],
            Some(A::Short(x)) => vec![x as f64],
            Some(A::Int(x)) => vec![x as f64],
            Some(A::Doubles(x)) => x,
            Some(A::Floats(x)) => x.into_iter().map(f64::from).collect(),
            Some(A::Shorts(x)) => x.into_iter().map(f64::from).collect(),
            _ => vec![],
        }
    };
    let fill = [num("_FillValue"), num("missing_value")].concat();
    let (lo, hi) = match num("valid_range").as_slice() {
        [a, b] => (*a, *b),
        _ => (
            num("valid_min").first().copied().unwrap_or(f64::NEG_INFINITY),
            num("valid_max").first().copied().unwrap_or(f64::INFINITY),
        ),
    };
    let scale = num("scale_factor").first().copied().unwrap_or(1.0);
    let offset = num("add_offset").first().copied().unwrap_or(0.0);
    Some(
        raw.into_iter()
            .filter(|x| x.is_finite() && !fill.contains(x) && *x >= lo && *x <= hi)
            .map(|x| x * scale + offset)
            .collect(),
    )
}

/// Checks one run; returns a description of what went wrong, if anything.
fn judge(ran: &Ran, input: &Path, var: &str, output: &Path) -> Option<String> {
    if ran.hung {
        return Some("hung".into());
    }
    if ran.stderr.contains("panicked") {
        return Some(format!("panicked: {}", ran.stderr));
    }
    let leftovers = std::fs::read_dir(output.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .any(|n| n.contains(".partial-"));
    if leftovers {
        return Some("left a partial file".into());
    }
    match ran.code {
        Some(1) if ran.stderr.starts_with("healpix-psf: error:") && !output.exists() => None,
        Some(1) => Some(format!("status 1 without a clean error or with an output: {}", ran.stderr)),
        Some(0) => in_range(input, var, output),
        other => Some(format!("status {other:?} (a signal or a usage error): {}", ran.stderr)),
    }
}

/// An output's values lie inside the input's range, widened by the documented 10 % of its span.
fn in_range(input: &Path, var: &str, output: &Path) -> Option<String> {
    let Some(valid) = valid_values(input, var) else {
        return Some("the tool accepted an input this test cannot read".into());
    };
    if valid.is_empty() {
        return Some("the tool wrote an output from an input without a valid value".into());
    }
    let (lo, hi) = valid.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let m = 0.1 * (hi - lo) + 1e-6 * lo.abs().max(hi.abs());
    let out: Option<Vec<f64>> = netcdf::open(output).ok().and_then(|f| f.variable(var)?.get_values(..).ok());
    let Some(out) = out else {
        return Some(format!("status 0 but the output {} cannot be read", output.display()));
    };
    let bad = out.iter().filter(|x| !x.is_nan() && (**x < lo - m || **x > hi + m)).count();
    (bad > 0).then(|| format!("{bad} output values outside [{lo}, {hi}] ± {m}"))
}

#[derive(Default)]
struct Tally {
    errors: usize,
    outputs: usize,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, what: &str, ran: &Ran, verdict: Option<String>) {
        match verdict {
            Some(v) => self.failures.push(format!("{what}: {v}")),
            None if ran.code == Some(0) => self.outputs += 1,
            None => self.errors += 1,
        }
    }
}

#[test]
fn damaged_inputs_never_panic_hang_or_mislead() {
    let cases: usize = std::env::var("HPSF_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    let seed: u64 = std::env::var("HPSF_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026_1127);
    let d = dir();
    let t = Instant::now();
    let mut tally = Tally::default();
    // every absurd attribute and wrong grid, in every small format
    for (vname, v) in variants() {
        for (fname, fmt) in [("classic", netcdf::Options::CLASSIC), ("netcdf4", netcdf::Options::NETCDF4)] {
            let input = d.join(format!("{vname}_{fname}.nc"));
            if !small(&input, fmt, &v) {
                println!("variant {vname} ({fname}): NetCDF-C will not write it");
                continue;
            }
            let output = d.join("out.nc");
            let _ = std::fs::remove_file(&output);
            let ran = regrid(&input, "x", &output);
            let verdict = judge(&ran, &input, "x", &output);
            if std::env::var_os("HPSF_FUZZ_VERBOSE").is_some() {
                println!("{vname} ({fname}): status {:?} {}", ran.code, ran.stderr.lines().next().unwrap_or(""));
            }
            tally.add(&format!("{vname} ({fname})"), &ran, verdict);
        }
    }
    // byte damage to every base file
    let bases = bases(&d);
    let mut rng = Rng(seed | 1);
    let (input, output) = (d.join("damaged.nc"), d.join("out.nc"));
    let only: Option<usize> = std::env::var("HPSF_FUZZ_ONLY").ok().and_then(|s| s.parse().ok());
    for case in 0..cases {
        let base = &bases[case % bases.len()];
        let (what, bytes) = damage(&mut rng, &base.bytes);
        if only.is_some_and(|o| o != case) {
            continue;
        }
        std::fs::write(&input, &bytes).unwrap();
        let _ = std::fs::remove_file(&output);
        let ran = regrid(&input, base.var, &output);
        let verdict = judge(&ran, &input, base.var, &output);
        tally.add(&format!("case {case} {} {what}", base.name), &ran, verdict);
    }
    println!(
        "fuzz (seed {seed}): {} cases in {:.1} s: {} clear errors, {} outputs inside the input's range, {} failures",
        cases + 2 * variants().len(),
        t.elapsed().as_secs_f64(),
        tally.errors,
        tally.outputs,
        tally.failures.len()
    );
    assert!(tally.failures.is_empty(), "{:#?}", tally.failures);
    let _ = std::fs::remove_dir_all(&d);
}
