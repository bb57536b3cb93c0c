//! Reading and writing golden cases in the format of `ref_case.py` (`meta.json` + little-endian
//! C-order `.bin` arrays). Shared by the integration tests (tests/suite, tests/mpi.rs) and the examples.
#![allow(dead_code)]

pub mod dense;
pub mod orca;
pub mod synth;

use healpix_psf::{Area, Bound, Ellipsoid, EmptyCells, FitOptions, MissingData, Params, PsfResampler, Real};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Where cargo put libhealpix_psf.so for the running test: next to the test's executable
/// (target/<profile>/deps, where `cargo test` builds it), else target/<profile> (`cargo build`).
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().expect("target/<profile>/deps").to_path_buf();
    if deps.join("libhealpix_psf.so").exists() {
        return deps;
    }
    deps.parent().expect("target/<profile>").to_path_buf()
}

pub struct Case {
    pub dir: PathBuf,
    pub meta: Value,
}

/// Plain-old-data element types of the `.bin` files.
pub trait Pod: Copy {
    const SIZE: usize;
    const DTYPE: &'static str;
    fn from_le(b: &[u8]) -> Self;
    fn to_le(self) -> Vec<u8>;
}

macro_rules! pod {
    ($t:ty, $n:literal) => {
        impl Pod for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            const DTYPE: &'static str = $n;
            fn from_le(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().unwrap())
            }
            fn to_le(self) -> Vec<u8> {
                self.to_le_bytes().to_vec()
            }
        }
    };
}
pod!(f64, "float64");
pod!(f32, "float32");
pod!(i64, "int64");
pod!(u64, "uint64");
pod!(u8, "uint8");

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// All case directories under tests/fixtures, sorted by name.
pub fn all_cases() -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("meta.json").exists())
        .collect();
    dirs.sort();
    dirs.into_iter().map(|d| Case::open(&d)).collect()
}

impl Case {
    pub fn open(dir: &Path) -> Case {
        let meta: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).expect("meta.json"))
            .expect("meta.json is JSON");
        Case { dir: dir.to_path_buf(), meta }
    }

    pub fn name(&self) -> String {
        self.dir.file_name().unwrap().to_string_lossy().into_owned()
    }

    pub fn param(&self, key: &str) -> &Value {
        &self.meta["params"][key]
    }

    pub fn has(&self, name: &str) -> bool {
        self.meta["arrays"].get(name).is_some()
    }

    pub fn shape(&self, name: &str) -> Vec<usize> {
        self.meta["arrays"][name]["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
    }

    pub fn dtype(&self, name: &str) -> String {
        self.meta["arrays"][name]["dtype"].as_str().unwrap().to_string()
    }

    /// Reads an array as its stored type `T` (checked against meta.json).
    pub fn read<T: Pod>(&self, name: &str) -> Vec<T> {
        let a = &self.meta["arrays"][name];
        assert_eq!(a["dtype"].as_str().unwrap(), T::DTYPE, "{}: dtype of {name}", self.name());
        let bytes = std::fs::read(self.dir.join(a["file"].as_str().unwrap())).expect("array file");
        bytes.chunks_exact(T::SIZE).map(T::from_le).collect()
    }

    /// Reads a float array of either width as f64.
    pub fn read_f(&self, name: &str) -> Vec<f64> {
        match self.dtype(name).as_str() {
            "float64" => self.read::<f64>(name),
            "float32" => self.read::<f32>(name).into_iter().map(|x| x as f64).collect(),
            d => panic!("{name}: not a float array ({d})"),
        }
    }

    pub fn is_f32(&self) -> bool {
        self.param("dtype").as_str() == Some("float32")
    }

    /// The construction parameters the reference was called with.
    pub fn params(&self) -> Params {
        let p = &self.meta["params"];
        let mut params = Params::new(p["level"].as_u64().unwrap() as u8);
        params.npt = p["Npt"].as_u64().unwrap() as usize;
        params.sigma_m = p["sigma_m_arg"].as_f64();
        params.threshold = p["threshold"].as_f64().unwrap();
        params.nest = p.get("nest").and_then(Value::as_bool).unwrap_or(true);
        params.radius = p.get("radius").and_then(Value::as_f64).unwrap_or(6_371_000.0);
        params.ellipsoid =
            p.get("ellipsoid").and_then(Value::as_str).map(|s| s.parse::<Ellipsoid>().unwrap()).unwrap_or_default();
        if p.get("out_cell_ids_file").is_some_and(|f| !f.is_null()) {
            params.out_cell_ids = Some(self.read::<i64>("out_cell_ids").iter().map(|&c| c as u64).collect());
        }
        params.area = if p.get("area_arg").and_then(Value::as_str) == Some("file") {
            Area::Explicit(self.read::<f64>("area_in"))
        } else {
            Area::ReferenceAuto
        };
        params
    }

    pub fn build<F: Real>(&self) -> healpix_psf::Result<PsfResampler<F>> {
        self.build_with::<F>(&self.params())
    }

    pub fn build_with<F: Real>(&self, params: &Params) -> healpix_psf::Result<PsfResampler<F>> {
        PsfResampler::<F>::new(&self.read::<f64>("lon"), &self.read::<f64>("lat"), params)
    }
}

/// max|a−b| / max|b| over the entries that are finite in the reference `b` (absolute when max|b| = 0);
/// NaN, +inf and −inf must sit at the same places in both.
pub fn rel_err<A: Real, B: Real>(what: &str, a: &[A], b: &[B]) -> f64 {
    assert_eq!(a.len(), b.len(), "{what}: length");
    let (mut diff, mut scale) = (0.0f64, 0.0f64);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let (x, y) = (x.to_f64(), y.to_f64());
        if y.is_finite() {
            assert!(x.is_finite(), "{what}[{i}]: {x} where the reference has {y}");
            diff = diff.max((x - y).abs());
            scale = scale.max(y.abs());
        } else {
            assert!(x == y || (x.is_nan() && y.is_nan()), "{what}[{i}]: {x} where the reference has {y}");
        }
    }
    if scale > 0.0 {
        diff / scale
    } else {
        diff
    }
}

/// Writes arrays in the golden format and an `arrays` table in `meta.json`.
pub struct Writer {
    dir: PathBuf,
    arrays: serde_json::Map<String, Value>,
}

impl Writer {
    pub fn new(dir: &Path) -> std::io::Result<Writer> {
        std::fs::create_dir_all(dir)?;
        Ok(Writer { dir: dir.to_path_buf(), arrays: Default::default() })
    }

    pub fn write<T: Pod>(&mut self, name: &str, data: &[T], shape: &[usize]) -> std::io::Result<()> {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "{name}: shape");
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le()).collect();
        std::fs::write(self.dir.join(format!("{name}.bin")), bytes)?;
        self.arrays.insert(name.into(), json!({"file": format!("{name}.bin"), "dtype": T::DTYPE, "shape": shape}));
        Ok(())
    }

    pub fn finish(self, extra: Value) -> std::io::Result<()> {
        let meta = json!({"generator": "healpix-psf examples/golden.rs", "extra": extra, "arrays": self.arrays});
        std::fs::write(self.dir.join("meta.json"), serde_json::to_string_pretty(&meta).unwrap())
    }
}

/// Writes every construction output of `op` under the golden names.
pub fn write_construction<F: Real + Pod>(
    op: &PsfResampler<F>,
    lon: &[f64],
    lat: &[f64],
    w: &mut Writer,
) -> std::io::Result<()> {
    let (n, k, npt) = (op.n(), op.k(), op.npt());
    let ipix = op.grid().cells(lon, lat).expect("validated samples");
    w.write("ipix", &ipix, &[n])?;
    let ids: Vec<i64> = op.cell_ids().iter().map(|&c| c as i64).collect();
    w.write("cell_ids", &ids, &[k])?;
    let hi: Vec<i64> = op.hi().iter().map(|&h| h as i64).collect();
    w.write("hi", &hi, &[n, npt])?;
    w.write("d_m", &op.d_m(), &[n, npt])?;
    w.write("area", &op.area(), &[n])?;
    w.write("cell_weight", op.cell_weight(), &[k])?;
    for (name, t) in [("M", op.m_triplets()), ("MT", op.mt_triplets())] {
        let rows: Vec<i64> = t.rows.iter().map(|&r| r as i64).collect();
        let cols: Vec<i64> = t.cols.iter().map(|&c| c as i64).collect();
        w.write(&format!("{name}_rows"), &rows, &[rows.len()])?;
        w.write(&format!("{name}_cols"), &cols, &[cols.len()])?;
        w.write(&format!("{name}_vals"), &t.vals, &[t.vals.len()])?;
    }
    let centres: Vec<f64> = op.cell_lonlat().into_iter().flat_map(|(a, b)| [a, b]).collect();
    w.write("cell_lonlat", &centres, &[k, 2])?;
    Ok(())
}

impl Case {
    /// The sample values (B×N row-major) in the operator's type, and B.
    pub fn values<F: Real>(&self) -> (Vec<F>, usize) {
        let v: Vec<F> = self.read::<f64>("val").iter().map(|&x| F::from_f64(x)).collect();
        let b = self.param("B").as_u64().unwrap() as usize;
        (v, b)
    }

    /// The fit options the reference was called with (`max_iter` overridable).
    pub fn fit_options<F: Real>(&self, max_iter: Option<usize>) -> FitOptions<F> {
        FitOptions {
            lam: self.param("lam").as_f64().unwrap(),
            max_iter: max_iter.unwrap_or(self.param("max_iter").as_u64().unwrap() as usize),
            tol: self.param("tol").as_f64().unwrap(),
            return_info: true,
            lower: self.bound(0),
            upper: self.bound(1),
            max_outer: self.meta["params"].get("max_outer").and_then(Value::as_u64).unwrap_or(10) as usize,
            conservative: self.meta["params"].get("conservative").and_then(Value::as_bool).unwrap_or(false),
            // the reference counts missing samples as 0 and fits cells that have no valid sample
            missing: MissingData::ZeroFill,
            empty_cells: EmptyCells::Fitted,
            ..FitOptions::default()
        }
    }

    /// Side `i` (0 lower, 1 upper) of the case's `clip` (absent or null = no bound).
    pub fn bound(&self, i: usize) -> Bound {
        match self.meta["params"].get("clip").and_then(|c| c.get(i)) {
            None | Some(Value::Null) => Bound::Unbounded,
            Some(Value::String(s)) if s == "input" => Bound::Input,
            Some(v) => Bound::Value(v.as_f64().unwrap()),
        }
    }
}

/// Writes the solve outputs under the golden names: x_ref, hval, hval_iter5, invert,
/// cg_residual_norms ((iterations+1)×rows with data). Returns the CG iteration count.
pub fn write_solve<F: Real + Pod>(
    op: &PsfResampler<F>,
    case: &Case,
    w: &mut Writer,
) -> Result<usize, Box<dyn std::error::Error>> {
    let (val, b) = case.values::<F>();
    let (n, k) = (op.n(), op.k());
    let x_ref = op.apply_m(&val)?;
    let (fit, invert) = op.fit_resample(&val, &case.fit_options(None))?;
    let fit5 = op.fit(&val, &case.fit_options(Some(5)))?;
    let info = fit.info.expect("info asked for");
    let rows: Vec<&Vec<f64>> = info.residual_norms.iter().filter(|r| !r.is_empty()).collect();
    let len = rows.first().map_or(0, |r| r.len());
    let mut norms = Vec::with_capacity(len * rows.len());
    for t in 0..len {
        norms.extend(rows.iter().map(|r| F::from_f64(r[t])));
    }
    w.write("x_ref", &x_ref, &[b, k])?;
    w.write("hval", &fit.hval, &[b, k])?;
    w.write("hval_iter5", &fit5.hval, &[b, k])?;
    w.write("invert", &invert, &[b, n])?;
    w.write("cg_residual_norms", &norms, &[len, rows.len()])?;
    Ok(info.iterations)
}
