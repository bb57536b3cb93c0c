//! Reading a variable and its longitudes/latitudes from a NetCDF file (CF conventions).
//!
//! The variable's dimensions split into *spatial* ones — those of its longitude/latitude
//! coordinates: one (unstructured points), two shared by 2-D coordinates (curvilinear grids such as
//! NEMO's ORCA), or the two of 1-D coordinates on different dimensions (regular grids) — and *batch*
//! ones (time, depth, ensemble …), which become rows solved together.

use crate::output::Coord;
use crate::CliError;
use netcdf::{AttributeValue, Variable};
use std::path::Path;

/// A variable read for regridding: B rows (the batch dimensions flattened) of N samples.
pub struct Input {
    /// The file, kept open for what else is read from it (areas, metadata for the output).
    pub file: netcdf::File,
    pub path: String,
    pub var: String,
    /// Longitude and latitude of each sample (degrees; NaN where the file has a fill value).
    pub lon: Vec<f64>,
    pub lat: Vec<f64>,
    /// B×N row-major; NaN = missing (fill value, missing value, outside the valid range, NaN).
    pub values: Vec<f64>,
    /// The batch dimensions in the variable's order (name, length); empty when B = 1.
    pub batch_dims: Vec<(String, usize)>,
    /// The spatial dimensions in the variable's order.
    pub spatial_dims: Vec<(String, usize)>,
    /// The variable's attributes.
    pub attrs: Vec<(String, AttributeValue)>,
    /// The variable is stored in single precision (or a narrower type).
    pub single: bool,
    /// The valid range its attributes declare (`valid_range`, `valid_min`, `valid_max`), unpacked;
    /// ±∞ for a side not declared, None when neither is.
    pub valid: Option<(f64, f64)>,
    pub lon_name: String,
    pub lat_name: String,
}

impl Input {
    pub fn n(&self) -> usize {
        self.lon.len()
    }
    /// Rows: the product of the batch dimensions (1 when there is none).
    pub fn b(&self) -> usize {
        self.batch_dims.iter().map(|d| d.1).product()
    }
}

fn attr_string(v: &Variable<'_>, name: &str) -> Option<String> {
    match v.attribute_value(name)?.ok()? {
        AttributeValue::Str(s) => Some(s),
        _ => None,
    }
}

/// Numbers of an attribute, as f64 (empty when it is absent or not numeric).
fn attr_numbers(v: &Variable<'_>, name: &str) -> Vec<f64> {
    let Some(Ok(a)) = v.attribute_value(name) else { return Vec::new() };
    use AttributeValue as A;
    match a {
        A::Uchar(x) => vec![x as f64],
        A::Schar(x) => vec![x as f64],
        A::Ushort(x) => vec![x as f64],
        A::Short(x) => vec![x as f64],
        A::Uint(x) => vec![x as f64],
        A::Int(x) => vec![x as f64],
        A::Ulonglong(x) => vec![x as f64],
        A::Longlong(x) => vec![x as f64],
        A::Float(x) => vec![x as f64],
        A::Double(x) => vec![x],
        A::Uchars(x) => x.into_iter().map(f64::from).collect(),
        A::Schars(x) => x.into_iter().map(f64::from).collect(),
        A::Ushorts(x) => x.into_iter().map(f64::from).collect(),
        A::Shorts(x) => x.into_iter().map(f64::from).collect(),
        A::Uints(x) => x.into_iter().map(f64::from).collect(),
        A::Ints(x) => x.into_iter().map(f64::from).collect(),
        A::Ulonglongs(x) => x.into_iter().map(|v| v as f64).collect(),
        A::Longlongs(x) => x.into_iter().map(|v| v as f64).collect(),
        A::Floats(x) => x.into_iter().map(f64::from).collect(),
        A::Doubles(x) => x,
        A::Str(_) | A::Strs(_) => Vec::new(),
    }
}

/// The names of a variable's dimensions, in order.
pub fn dim_names(v: &Variable<'_>) -> Vec<String> {
    v.dimensions().iter().map(|d| d.name()).collect()
}

/// A variable's dimensions (name, length), in order.
fn dim_sizes(v: &Variable<'_>) -> Vec<(String, usize)> {
    v.dimensions().iter().map(|d| (d.name(), d.len())).collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Axis {
    Lon,
    Lat,
}

impl Axis {
    fn word(self) -> &'static str {
        match self {
            Axis::Lon => "longitude",
            Axis::Lat => "latitude",
        }
    }
    fn flag(self) -> &'static str {
        match self {
            Axis::Lon => "--lon",
            Axis::Lat => "--lat",
        }
    }
    /// Whether a variable is this axis by its CF attributes or, failing those, its name.
    fn matches(self, v: &Variable<'_>) -> bool {
        if attr_string(v, "standard_name").is_some_and(|s| s == self.word()) {
            return true;
        }
        let units = attr_string(v, "units").unwrap_or_default().to_ascii_lowercase();
        let (unit_ok, names): (&[&str], &[&str]) = match self {
            Axis::Lon => (
                &["degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"],
                &["lon", "longitude", "nav_lon", "glamt", "xlon", "long"],
            ),
            Axis::Lat => (
                &["degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"],
                &["lat", "latitude", "nav_lat", "gphit", "xlat"],
            ),
        };
        unit_ok.contains(&units.as_str()) || names.contains(&v.name().to_ascii_lowercase().as_str())
    }
}

/// The name of the variable's longitude or latitude: `given`, else from the `coordinates`
/// attribute, the dimension coordinates, then any variable of the file on the variable's dimensions.
fn find_axis(
    file: &netcdf::File,
    var: &Variable<'_>,
    axis: Axis,
    given: Option<&str>,
    path: &str,
) -> Result<String, CliError> {
    let dims = dim_names(var);
    if let Some(name) = given {
        let v = file.variable(name).ok_or_else(|| {
            CliError(format!("{path}: no variable '{name}' for {} ({} {name})", axis.word(), axis.flag()))
        })?;
        if !dim_names(&v).iter().all(|d| dims.contains(d)) {
            return Err(CliError(format!(
                "{path}: the {} '{name}' has dimensions {:?}, not among those of '{}' {:?}",
                axis.word(),
                dim_names(&v),
                var.name(),
                dims
            )));
        }
        return Ok(name.to_string());
    }
    let fits = |v: &Variable<'_>| {
        let d = dim_names(v);
        !d.is_empty() && d.iter().all(|x| dims.contains(x)) && axis.matches(v)
    };
    let mut candidates: Vec<String> =
        attr_string(var, "coordinates").map(|c| c.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
    candidates.extend(dims.iter().cloned());
    candidates.extend(file.variables().map(|v| v.name()));
    candidates.into_iter().find(|c| file.variable(c).is_some_and(|v| fits(&v))).ok_or_else(|| {
        CliError(format!(
            "{path}: cannot find the {} of '{}' (no variable on its dimensions {:?} has standard_name \
                 \"{}\" or {} units): name it with {} NAME",
            axis.word(),
            var.name(),
            dims,
            axis.word(),
            axis.word(),
            axis.flag()
        ))
    })
}

/// Reads a coordinate variable as f64 with its fill values as NaN.
fn read_coord(v: &Variable<'_>, path: &str) -> Result<Vec<f64>, CliError> {
    let mut x: Vec<f64> = v.get_values::<f64, _>(..).map_err(|e| damaged(path, &v.name(), e))?;
    let fill = [attr_numbers(v, "_FillValue"), attr_numbers(v, "missing_value")].concat();
    for a in x.iter_mut() {
        if fill.contains(a) {
            *a = f64::NAN;
        }
    }
    Ok(x)
}

/// A variable on (some of) the spatial dimensions, one value per sample (in the variable's order of
/// the spatial dimensions), fill values as NaN.
fn on_samples(v: &Variable<'_>, spatial: &[(String, usize)], path: &str) -> Result<Vec<f64>, CliError> {
    let raw = read_coord(v, path)?;
    let vd = dim_sizes(v);
    let at = offsets(spatial, &strides_along(&vd, spatial));
    Ok(at.into_iter().map(|o| raw[o]).collect())
}

/// A failed read of a variable: NetCDF-C read the header but not the data.
fn damaged(path: &str, var: &str, e: netcdf::Error) -> CliError {
    CliError(format!(
        "{path}: reading the variable '{var}' failed ({e}): the file looks damaged (truncated or corrupted); \
         fetch or write it again"
    ))
}

/// Opens a NetCDF file for reading, after checking that it is whole (a truncated classic file
/// would otherwise read as zeros).
pub fn open(path: &str) -> Result<netcdf::File, CliError> {
    crate::integrity::check(Path::new(path)).map_err(|e| CliError(format!("cannot read {path}: {e}")))?;
    netcdf::open(path).map_err(|e| CliError(format!("cannot open {path} as NetCDF: {e}")))
}

/// Per-sample areas from the variable `name` of the input file (on the variable's spatial
/// dimensions).
pub fn areas(input: &Input, name: &str) -> Result<Vec<f64>, CliError> {
    let path = input.path.as_str();
    let v =
        input.file.variable(name).ok_or_else(|| CliError(format!("{path}: no area variable '{name}' (--area-var)")))?;
    let spatial: Vec<&str> = input.spatial_dims.iter().map(|d| d.0.as_str()).collect();
    let d = dim_names(&v);
    if d.is_empty() || !d.iter().all(|x| spatial.contains(&x.as_str())) {
        return Err(CliError(format!(
            "{path}: the area variable '{name}' has dimensions {d:?}, not among the spatial dimensions {spatial:?} of '{}'",
            input.var
        )));
    }
    on_samples(&v, &input.spatial_dims, path)
}

/// The name of the cell-area variable a CF `cell_measures = "area: NAME"` attribute of the variable
/// points to, when the file has it.
pub fn cell_measures_area(input: &Input) -> Option<String> {
    let file = &input.file;
    let m = attr_string(&file.variable(&input.var)?, "cell_measures")?;
    let mut words = m.split_whitespace();
    while let Some(w) = words.next() {
        if w == "area:" {
            let name = words.next()?.to_string();
            return file.variable(&name).is_some().then_some(name);
        }
    }
    None
}

/// HEALPix cells read from a file: ids, and the level and scheme its attributes give, if any.
pub struct Cells {
    pub ids: Vec<u64>,
    pub level: Option<i64>,
    pub scheme: Option<String>,
}

/// HEALPix cell ids from a NetCDF file (`cell_ids`, or the variable with standard name
/// `healpix_index`).
pub fn cell_ids(path: &str) -> Result<Cells, CliError> {
    cells_in(&open(path)?, path)
}

fn cells_in(file: &netcdf::File, path: &str) -> Result<Cells, CliError> {
    let v = file
        .variable("cell_ids")
        .or_else(|| file.variables().find(|v| attr_string(v, "standard_name").as_deref() == Some("healpix_index")))
        .ok_or_else(|| CliError(format!("{path}: no `cell_ids` variable and none with standard_name healpix_index")))?;
    let ids: Vec<i64> = v.get_values(..).map_err(|e| damaged(path, &v.name(), e))?;
    if let Some(bad) = ids.iter().find(|&&c| c < 0) {
        return Err(CliError(format!("{path}: negative cell id {bad} in '{}'", v.name())));
    }
    let level = attr_numbers(&v, "level").first().map(|&l| l as i64);
    let scheme = attr_string(&v, "indexing_scheme");
    Ok(Cells { ids: ids.into_iter().map(|c| c as u64).collect(), level, scheme })
}

/// A previous output's field `var` (B×K) on its cells, for a warm start.
pub fn field_on_cells(path: &str, var: &str) -> Result<(Vec<u64>, Vec<f64>), CliError> {
    let file = open(path)?;
    let ids = cells_in(&file, path).map_err(|e| CliError(format!("--x0 {}", e.0)))?.ids;
    let v = file.variable(var).ok_or_else(|| CliError(format!("{path}: no variable '{var}' to start from (--x0)")))?;
    let x: Vec<f64> = v.get_values(..).map_err(|e| damaged(path, var, e))?;
    Ok((ids, x))
}

/// Strides of a C-order array of `dims` (names), for each name in `along` (0 when absent).
fn strides_along(dims: &[(String, usize)], along: &[(String, usize)]) -> Vec<usize> {
    let mut stride = vec![0usize; dims.len()];
    let mut s = 1;
    for (i, (_, len)) in dims.iter().enumerate().rev() {
        stride[i] = s;
        s *= len;
    }
    along.iter().map(|(name, _)| dims.iter().position(|(d, _)| d == name).map_or(0, |i| stride[i])).collect()
}

/// For each element of the C-order space `dims`, the offset Σ idx·stride.
fn offsets(dims: &[(String, usize)], stride: &[usize]) -> Vec<usize> {
    let total: usize = dims.iter().map(|d| d.1).product();
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; dims.len()];
    let mut off = 0usize;
    for _ in 0..total {
        out.push(off);
        for a in (0..dims.len()).rev() {
            idx[a] += 1;
            off += stride[a];
            if idx[a] < dims[a].1 {
                break;
            }
            off -= stride[a] * idx[a];
            idx[a] = 0;
        }
    }
    out
}

/// Reads `var` of the file at `path` with its coordinates (`lon`/`lat` override the search).
pub fn read(path: &str, var_name: &str, lon: Option<&str>, lat: Option<&str>) -> Result<Input, CliError> {
    let file = open(path)?;
    let var = file.variable(var_name).ok_or_else(|| {
        let names: Vec<String> = file.variables().filter(|v| !v.dimensions().is_empty()).map(|v| v.name()).collect();
        if names.is_empty() {
            return CliError(format!("{path}: no variable '{var_name}'; the file has no variable with dimensions"));
        }
        CliError(format!("{path}: no variable '{var_name}'; the file has: {}", names.join(", ")))
    })?;
    let dims = dim_sizes(&var);
    let lon_name = find_axis(&file, &var, Axis::Lon, lon, path)?;
    let lat_name = find_axis(&file, &var, Axis::Lat, lat, path)?;
    let lookup = |name: &str| {
        file.variable(name).ok_or_else(|| {
            CliError(format!("{path}: the variable '{name}' is listed but cannot be opened: the file looks damaged"))
        })
    };
    let (lon_v, lat_v) = (lookup(&lon_name)?, lookup(&lat_name)?);
    let (lon_d, lat_d) = (dim_names(&lon_v), dim_names(&lat_v));
    let spatial_names: Vec<String> = if lon_d == lat_d && lon_d.len() <= 2 {
        lon_d.clone()
    } else if lon_d.len() == 1 && lat_d.len() == 1 {
        vec![lat_d[0].clone(), lon_d[0].clone()]
    } else {
        return Err(CliError(format!(
            "{path}: cannot pair longitude '{lon_name}' {lon_d:?} with latitude '{lat_name}' {lat_d:?}: \
             give 1-D coordinates on two dimensions (a regular grid) or on one (points), or 2-D ones on the same two"
        )));
    };
    let spatial: Vec<(String, usize)> = dims.iter().filter(|d| spatial_names.contains(&d.0)).cloned().collect();
    let batch: Vec<(String, usize)> = dims.iter().filter(|d| !spatial_names.contains(&d.0)).cloned().collect();
    let n: usize = spatial.iter().map(|d| d.1).product();
    let b: usize = batch.iter().map(|d| d.1).product();
    if n == 0 || b == 0 {
        return Err(CliError(format!("{path}: '{var_name}' is empty (dimensions {dims:?})")));
    }

    let lon_s = on_samples(&lon_v, &spatial, path)?;
    let lat_s = on_samples(&lat_v, &spatial, path)?;

    let raw: Vec<f64> = var.get_values::<f64, _>(..).map_err(|e| damaged(path, var_name, e))?;
    let packing = Packing::of(&var, path)?;
    // rows: batch index major, sample index minor
    let row_of = offsets(&batch, &strides_along(&dims, &batch));
    let col_of = offsets(&spatial, &strides_along(&dims, &spatial));
    let mut values = Vec::with_capacity(b * n);
    for &r in &row_of {
        values.extend(col_of.iter().map(|&c| packing.unpack(raw[r + c])));
    }
    use netcdf::types::{FloatType, IntType, NcVariableType as T};
    let single = matches!(
        var.vartype(),
        T::Float(FloatType::F32) | T::Int(IntType::U8 | IntType::I8 | IntType::U16 | IntType::I16)
    );
    let attrs = var.attributes().filter_map(|a| Some((a.name().to_string(), a.value().ok()?))).collect();
    Ok(Input {
        file,
        path: path.to_string(),
        var: var_name.to_string(),
        lon: lon_s,
        lat: lat_s,
        values,
        batch_dims: batch,
        spatial_dims: spatial,
        attrs,
        single,
        valid: packing.valid(),
        lon_name,
        lat_name,
    })
}

/// How stored numbers become values: fill values, the valid range (in stored units) and the
/// packing (`scale_factor`, `add_offset`), checked for sense.
struct Packing {
    fill: Vec<f64>,
    range: (f64, f64),
    declared: bool,
    scale: f64,
    offset: f64,
}

impl Packing {
    fn of(var: &Variable<'_>, path: &str) -> Result<Self, CliError> {
        let name = var.name();
        let bad = |what: String| CliError(format!("{path}: variable '{name}': {what}; the file looks damaged"));
        let one = |attr: &str| -> Result<Option<f64>, CliError> {
            match attr_numbers(var, attr).as_slice() {
                [] => Ok(None),
                [x] => Ok(Some(*x)),
                many => Err(bad(format!("{attr} has {} numbers, not one", many.len()))),
            }
        };
        let range = match attr_numbers(var, "valid_range").as_slice() {
            [a, b] => (*a, *b),
            [] => (one("valid_min")?.unwrap_or(f64::NEG_INFINITY), one("valid_max")?.unwrap_or(f64::INFINITY)),
            other => return Err(bad(format!("valid_range has {} numbers, not two", other.len()))),
        };
        if range.0.is_nan() || range.1.is_nan() || range.0 > range.1 {
            return Err(bad(format!("the valid range [{}, {}] is empty or reversed", range.0, range.1)));
        }
        let scale = one("scale_factor")?.unwrap_or(1.0);
        let offset = one("add_offset")?.unwrap_or(0.0);
        if !(scale.is_finite() && scale != 0.0 && offset.is_finite()) {
            return Err(bad(format!("scale_factor {scale} / add_offset {offset} cannot unpack values")));
        }
        let mut fill = [attr_numbers(var, "_FillValue"), attr_numbers(var, "missing_value")].concat();
        if var.attribute("_FillValue").is_none() {
            // without a _FillValue, unwritten values hold NetCDF's default fill: for floating-point
            // variables 9.969e36, never a value (integer defaults can be data, and are kept)
            use netcdf::types::{FloatType, NcVariableType as T};
            match var.vartype() {
                T::Float(FloatType::F32) => fill.push(f64::from(9.969_21e36_f32)),
                T::Float(FloatType::F64) => fill.push(9.969_209_968_386_869e36),
                _ => {}
            }
        }
        let declared = range.0 > f64::NEG_INFINITY || range.1 < f64::INFINITY;
        Ok(Packing { fill, range, declared, scale, offset })
    }

    /// A stored number as a value (NaN = missing).
    fn unpack(&self, x: f64) -> f64 {
        if !x.is_finite() || self.fill.contains(&x) || x < self.range.0 || x > self.range.1 {
            f64::NAN
        } else {
            x * self.scale + self.offset
        }
    }

    /// The declared valid range in unpacked values.
    fn valid(&self) -> Option<(f64, f64)> {
        let ends = [self.range.0 * self.scale + self.offset, self.range.1 * self.scale + self.offset];
        self.declared.then(|| (ends[0].min(ends[1]), ends[0].max(ends[1])))
    }
}

/// Global attributes of the input kept in the output: those describing the data's origin (CF,
/// ACDD, CMIP), not its grid or its file; and the input's `history`, to append to.
pub fn kept_globals(input: &Input) -> (Vec<(String, AttributeValue)>, Option<String>) {
    const KEEP: &[&str] = &[
        "title",
        "institution",
        "source",
        "references",
        "comment",
        "summary",
        "keywords",
        "license",
        "licence",
        "acknowledgement",
        "acknowledgment",
        "project",
        "product",
        "experiment",
        "experiment_id",
        "activity_id",
        "institution_id",
        "source_id",
        "member_id",
        "variant_label",
        "realm",
        "frequency",
        "table_id",
        "model",
        "contact",
        "platform",
        "instrument",
        "processing_level",
        "naming_authority",
        "id",
        "doi",
        "further_info_url",
    ];
    const PREFIXES: &[&str] = &["creator_", "publisher_", "contributor_", "time_coverage_", "date_"];
    let mut keep = Vec::new();
    let mut history = None;
    for a in input.file.attributes() {
        let Ok(v) = a.value() else { continue };
        match a.name() {
            "history" => history = if let AttributeValue::Str(h) = v { Some(h) } else { None },
            n if KEEP.contains(&n) || PREFIXES.iter().any(|p| n.starts_with(p)) => keep.push((n.to_string(), v)),
            _ => {}
        }
    }
    (keep, history)
}

/// Whether a variable holds numbers.
fn numeric(v: &Variable<'_>) -> bool {
    matches!(v.vartype(), netcdf::types::NcVariableType::Int(_) | netcdf::types::NcVariableType::Float(_))
}

/// The coordinates of the batch dimensions (time, depth …): numeric variables on batch
/// dimensions only, and the bounds they name (whose second dimension is added).
pub fn batch_coords(input: &Input) -> Result<Vec<Coord>, CliError> {
    let file = &input.file;
    let batch: Vec<&str> = input.batch_dims.iter().map(|d| d.0.as_str()).collect();
    let spatial: Vec<&str> = input.spatial_dims.iter().map(|d| d.0.as_str()).collect();
    let on_batch = |v: &Variable<'_>| {
        let d = dim_names(v);
        numeric(v) && !d.is_empty() && d.iter().all(|x| batch.contains(&x.as_str()))
    };
    let mut names: Vec<String> =
        file.variables().filter(|v| v.name() != input.var && on_batch(v)).map(|v| v.name()).collect();
    let bounds: Vec<String> = names
        .iter()
        .filter_map(|c| attr_string(&file.variable(c)?, "bounds"))
        .filter(|b| {
            file.variable(b).is_some_and(|v| {
                let d = dim_names(&v);
                numeric(&v)
                    && d.first().is_some_and(|x| batch.contains(&x.as_str()))
                    && d.iter().all(|x| !spatial.contains(&x.as_str()) && x != "cell")
            })
        })
        .collect();
    for b in bounds {
        if !names.contains(&b) {
            names.push(b);
        }
    }
    names
        .iter()
        .map(|name| {
            let v = file.variable(name).ok_or_else(|| {
                CliError(format!(
                    "{}: the variable '{name}' is listed but cannot be opened: the file looks damaged",
                    input.path
                ))
            })?;
            let values = v.get_values::<f64, _>(..).map_err(|e| damaged(&input.path, name, e))?;
            let attrs = v.attributes().filter_map(|a| Some((a.name().to_string(), a.value().ok()?))).collect();
            Ok(Coord { name: name.clone(), dims: dim_sizes(&v), attrs, values })
        })
        .collect()
}

/// A name for each row: its batch coordinates (a time decoded to a date when its CF units allow),
/// e.g. "time_counter = 2015-01-16 12:00, deptht = 5.0"; empty when the data has one row and no
/// batch dimension.
pub fn row_names(input: &Input, coords: &[Coord]) -> Vec<String> {
    let dims = &input.batch_dims;
    (0..input.b())
        .map(|row| {
            // rows enumerate the batch dimensions in C order
            let mut rest = row;
            let mut at = vec![0usize; dims.len()];
            for (a, (_, len)) in dims.iter().enumerate().rev() {
                at[a] = rest % (*len).max(1);
                rest /= (*len).max(1);
            }
            let parts: Vec<String> =
                dims.iter().zip(&at).map(|((d, _), &i)| format!("{d} = {}", coord_label(coords, d, i))).collect();
            parts.join(", ")
        })
        .collect()
}

/// The label of index `i` along dimension `dim`: its coordinate value (a date for CF times) or
/// "i of n".
fn coord_label(coords: &[Coord], dim: &str, i: usize) -> String {
    let Some(c) = coords.iter().find(|c| c.name == dim && c.dims.len() == 1) else { return format!("#{i}") };
    let Some(&v) = c.values.get(i) else { return format!("#{i}") };
    let text = |name: &str| {
        c.attrs.iter().find(|(a, _)| a == name).and_then(|(_, v)| {
            if let AttributeValue::Str(s) = v {
                Some(s.clone())
            } else {
                None
            }
        })
    };
    let units = text("units").unwrap_or_default();
    if let Some(date) = crate::cftime::format_cf_time(v, &units, text("calendar").as_deref()) {
        return date;
    }
    if units.is_empty() {
        format!("{v}")
    } else {
        format!("{v} {units}")
    }
}

/// The variable's `units` attribute (empty when absent).
pub fn units(input: &Input) -> String {
    input
        .attrs
        .iter()
        .find(|(n, _)| n == "units")
        .and_then(|(_, v)| if let AttributeValue::Str(s) = v { Some(s.clone()) } else { None })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_walk_a_permuted_space() {
        // a (2, 3) array in C order, walked along (3, 2): its transpose
        let dims = vec![("a".to_string(), 2), ("b".to_string(), 3)];
        let along = vec![("b".to_string(), 3), ("a".to_string(), 2)];
        let o = offsets(&along, &strides_along(&dims, &along));
        assert_eq!(o, vec![0, 3, 1, 4, 2, 5]);
        // a dimension the array lacks has stride 0 (broadcast)
        let lon_dims = vec![("x".to_string(), 3)];
        let grid = vec![("y".to_string(), 2), ("x".to_string(), 3)];
        assert_eq!(offsets(&grid, &strides_along(&lon_dims, &grid)), vec![0, 1, 2, 0, 1, 2]);
    }
}
