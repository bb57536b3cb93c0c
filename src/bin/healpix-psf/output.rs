//! Writing the HEALPix field as CF NetCDF: a `cell` dimension, a `cell_ids` coordinate with the
//! CF HEALPix grid mapping (`crs`) and the xdggs attributes, the batch dimensions restored with
//! their coordinates, the variable's attributes kept and the fit's diagnostics per row.
//!
//! [`write`] takes everything prepared ([`Output`]); it reads nothing, so one output can hold the
//! rows of several inputs (`--concat`).

use crate::CliError;
use healpix_psf::Ellipsoid;
use netcdf::{AttributeValue, FileMut};
use std::path::Path;

/// A coordinate (or bounds) variable on batch dimensions, copied to the output as f64.
#[derive(Clone)]
pub struct Coord {
    pub name: String,
    pub dims: Vec<(String, usize)>,
    pub attrs: Vec<(String, AttributeValue)>,
    pub values: Vec<f64>,
}

/// The HEALPix cells of the output.
pub struct Cells<'a> {
    pub ids: &'a [u64],
    /// Cell centres (longitude, latitude), degrees.
    pub centres: &'a [(f64, f64)],
    pub level: u8,
    pub nest: bool,
    pub ellipsoid: Ellipsoid,
    pub radius: f64,
}

/// Values of a per-row diagnostic.
pub enum DiagValues {
    /// A count.
    Count(Vec<i32>),
    /// 0/1 with `flag_values` and `flag_meanings` (false meaning, true meaning).
    Flag(Vec<bool>, &'static str, &'static str),
    /// A quantity in the variable's units.
    Quantity(Vec<f64>),
}

/// A per-row diagnostic of the fit, on the batch dimensions.
pub struct Diag {
    pub name: &'static str,
    pub long_name: String,
    pub values: DiagValues,
}

/// Everything the output file holds.
pub struct Output<'a> {
    pub var: &'a str,
    /// The input variable's attributes (those describing its storage and grid are dropped here).
    pub var_attrs: &'a [(String, AttributeValue)],
    /// Store the field in single precision (the input was).
    pub single: bool,
    pub batch: Vec<(String, usize)>,
    pub coords: Vec<Coord>,
    pub cells: Cells<'a>,
    /// B×K fitted values.
    pub hval: &'a [f64],
    pub diagnostics: Vec<Diag>,
    /// Global attributes, in order (the kept input globals, Conventions, history, settings).
    pub globals: Vec<(String, AttributeValue)>,
}

fn nc<T>(what: &str, path: &Path, r: netcdf::Result<T>) -> Result<T, CliError> {
    r.map_err(|e| CliError(format!("{}: writing {what}: {e}", path.display())))
}

/// Attributes of the input variable that no longer describe the output (its storage and its grid).
const DROPPED: &[&str] = &[
    "_FillValue",
    "missing_value",
    "scale_factor",
    "add_offset",
    "valid_range",
    "valid_min",
    "valid_max",
    "coordinates",
    "cell_measures",
    "grid_mapping",
    "_Netcdf4Dimid",
    "_ChunkSizes",
];

/// Writes the file at `path` (the caller gives a temporary name and renames it when complete).
pub fn write(path: &Path, o: &Output<'_>) -> Result<(), CliError> {
    let mut f = nc("the file", path, netcdf::create(path))?;
    define_dimensions(&mut f, o, path)?;
    for (name, v) in &o.globals {
        nc("an attribute", path, f.add_attribute(name, v.clone()))?;
    }
    for c in &o.coords {
        put_coord(&mut f, c, path)?;
    }
    put_grid_mapping(&mut f, &o.cells, path)?;
    put_cells(&mut f, &o.cells, path)?;
    put_field(&mut f, o, path)?;
    let batch: Vec<&str> = o.batch.iter().map(|d| d.0.as_str()).collect();
    let units = o.var_attrs.iter().find(|(a, _)| a == "units").map(|(_, v)| v.clone());
    for d in &o.diagnostics {
        put_diag(&mut f, d, &batch, units.as_ref(), path)?;
    }
    nc("the file", path, f.close())
}

/// The batch dimensions, `cell`, and the extra dimensions of bounds variables.
fn define_dimensions(f: &mut FileMut, o: &Output<'_>, path: &Path) -> Result<(), CliError> {
    let extra = o.coords.iter().flat_map(|c| c.dims.iter());
    for (name, len) in o.batch.iter().chain(std::iter::once(&("cell".to_string(), o.cells.ids.len()))).chain(extra) {
        if f.dimension(name).is_none() {
            nc("a dimension", path, f.add_dimension(name, *len))?;
        }
    }
    Ok(())
}

fn put_coord(f: &mut FileMut, c: &Coord, path: &Path) -> Result<(), CliError> {
    let dims: Vec<&str> = c.dims.iter().map(|d| d.0.as_str()).collect();
    let mut v = nc("a coordinate", path, f.add_variable::<f64>(&c.name, &dims))?;
    for (name, val) in &c.attrs {
        if name != "_FillValue" {
            nc("an attribute", path, v.put_attribute(name, val.clone()))?;
        }
    }
    nc("a coordinate", path, v.put_values(&c.values, ..))
}

/// The grid mapping (CF 1.13 HEALPix; the legacy attributes easygems also reads).
fn put_grid_mapping(f: &mut FileMut, c: &Cells<'_>, path: &Path) -> Result<(), CliError> {
    let mut crs = nc("crs", path, f.add_variable::<i32>("crs", &[]))?;
    let put = |crs: &mut netcdf::VariableMut<'_>, name: &str, v: AttributeValue| {
        nc("crs", path, crs.put_attribute(name, v)).map(|_| ())
    };
    put(&mut crs, "grid_mapping_name", "healpix".into())?;
    put(&mut crs, "refinement_level", (c.level as i32).into())?;
    put(&mut crs, "indexing_scheme", (if c.nest { "nested" } else { "ring" }).into())?;
    match c.ellipsoid {
        Ellipsoid::Wgs84 => {
            put(&mut crs, "reference_ellipsoid_name", "WGS 84".into())?;
            put(&mut crs, "semi_major_axis", 6_378_137.0f64.into())?;
            put(&mut crs, "inverse_flattening", 298.257_223_563f64.into())?;
        }
        _ => put(&mut crs, "earth_radius", c.radius.into())?,
    }
    put(&mut crs, "healpix_nside", (1i64 << c.level).into())?;
    put(&mut crs, "healpix_order", (if c.nest { "nest" } else { "ring" }).into())?;
    nc("crs", path, crs.put_value(0i32, ..))
}

/// Deflate (with shuffle) in chunks of up to 65 536 cells along `cell` (1 along batch dimensions).
fn compress(v: &mut netcdf::VariableMut<'_>, dims: usize, k: usize, path: &Path) -> Result<(), CliError> {
    if k > 0 {
        let mut chunk = vec![1; dims];
        chunk[dims - 1] = k.min(1 << 16);
        nc("a chunking", path, v.set_chunking(&chunk))?;
        nc("compression", path, v.set_compression(4, true))?;
    }
    Ok(())
}

/// The cell ids twice — as the `cell` dimension coordinate with the CF standard name (what CF
/// readers and easygems look for) and as `cell_ids` with exactly the xdggs attributes (xdggs
/// rejects any other attribute on it) — and the cell centres.
fn put_cells(f: &mut FileMut, c: &Cells<'_>, path: &Path) -> Result<(), CliError> {
    let k = c.ids.len();
    let as_i64: Vec<i64> = c.ids.iter().map(|&x| x as i64).collect();
    let mut cf = nc("cell", path, f.add_variable::<i64>("cell", &["cell"]))?;
    compress(&mut cf, 1, k, path)?;
    for (name, v) in [("standard_name", "healpix_index"), ("long_name", "HEALPix cell index"), ("units", "1")] {
        nc("cell", path, cf.put_attribute(name, v))?;
    }
    nc("cell", path, cf.put_values(&as_i64, ..))?;
    let mut ids = nc("cell_ids", path, f.add_variable::<i64>("cell_ids", &["cell"]))?;
    compress(&mut ids, 1, k, path)?;
    nc("cell_ids", path, ids.put_attribute("grid_name", "healpix"))?;
    nc("cell_ids", path, ids.put_attribute("level", c.level as i32))?;
    nc("cell_ids", path, ids.put_attribute("indexing_scheme", if c.nest { "nested" } else { "ring" }))?;
    if c.ellipsoid == Ellipsoid::Wgs84 {
        nc("cell_ids", path, ids.put_attribute("ellipsoid", "WGS84"))?;
    }
    nc("cell_ids", path, ids.put_values(&as_i64, ..))?;
    for (name, axis, units, lat) in
        [("lon", "longitude", "degrees_east", false), ("lat", "latitude", "degrees_north", true)]
    {
        let mut v = nc(name, path, f.add_variable::<f64>(name, &["cell"]))?;
        compress(&mut v, 1, k, path)?;
        nc(name, path, v.put_attribute("standard_name", axis))?;
        nc(name, path, v.put_attribute("long_name", format!("{axis} of the cell centre").as_str()))?;
        nc(name, path, v.put_attribute("units", units))?;
        let x: Vec<f64> = c.centres.iter().map(|p| if lat { p.1 } else { p.0 }).collect();
        nc(name, path, v.put_values(&x, ..))?;
    }
    Ok(())
}

/// The field on (batch…, cell), in the input's precision, with its attributes.
fn put_field(f: &mut FileMut, o: &Output<'_>, path: &Path) -> Result<(), CliError> {
    let mut dims: Vec<&str> = o.batch.iter().map(|d| d.0.as_str()).collect();
    dims.push("cell");
    let name = o.var;
    let mut var = if o.single {
        let mut v = nc(name, path, f.add_variable::<f32>(name, &dims))?;
        nc(name, path, v.set_fill_value(f32::NAN))?;
        v
    } else {
        let mut v = nc(name, path, f.add_variable::<f64>(name, &dims))?;
        nc(name, path, v.set_fill_value(f64::NAN))?;
        v
    };
    compress(&mut var, dims.len(), o.cells.ids.len(), path)?;
    for (a, v) in o.var_attrs {
        if !DROPPED.contains(&a.as_str()) {
            nc("an attribute", path, var.put_attribute(a, v.clone()))?;
        }
    }
    nc(name, path, var.put_attribute("grid_mapping", "crs"))?;
    // crs among the coordinates too, so that xarray attaches it to the variable (easygems reads
    // the grid from a DataArray's grid mapping coordinate)
    nc(name, path, var.put_attribute("coordinates", "cell_ids lat lon crs"))?;
    if o.single {
        let v: Vec<f32> = o.hval.iter().map(|&x| x as f32).collect();
        nc(name, path, var.put_values(&v, ..))
    } else {
        nc(name, path, var.put_values(o.hval, ..))
    }
}

fn put_diag(
    f: &mut FileMut,
    d: &Diag,
    batch: &[&str],
    units: Option<&AttributeValue>,
    path: &Path,
) -> Result<(), CliError> {
    let name = d.name;
    match &d.values {
        DiagValues::Count(x) => {
            let mut v = nc(name, path, f.add_variable::<i32>(name, batch))?;
            nc(name, path, v.put_attribute("long_name", d.long_name.as_str()))?;
            nc(name, path, v.put_values(x, ..))
        }
        DiagValues::Flag(x, no, yes) => {
            let mut v = nc(name, path, f.add_variable::<i8>(name, batch))?;
            nc(name, path, v.put_attribute("long_name", d.long_name.as_str()))?;
            nc(name, path, v.put_attribute("flag_values", vec![0i8, 1]))?;
            nc(name, path, v.put_attribute("flag_meanings", format!("{no} {yes}").as_str()))?;
            let b: Vec<i8> = x.iter().map(|&c| c as i8).collect();
            nc(name, path, v.put_values(&b, ..))
        }
        DiagValues::Quantity(x) => {
            let mut v = nc(name, path, f.add_variable::<f64>(name, batch))?;
            nc(name, path, v.put_attribute("long_name", d.long_name.as_str()))?;
            if let Some(u) = units {
                nc(name, path, v.put_attribute("units", u.clone()))?;
            }
            nc(name, path, v.put_values(x, ..))
        }
    }
}
