//! Writing the HEALPix field as CF NetCDF: a `cell` dimension, a `cell_ids` coordinate with the
//! CF HEALPix grid mapping (`crs`) and the xdggs attributes, the batch dimensions restored, the
//! variable's attributes kept and the fit's diagnostics per row.

use crate::input::{dim_names, Input};
use crate::CliError;
use healpix_psf::{Ellipsoid, FitInfo};
use netcdf::AttributeValue;

/// Everything the output file holds besides the input's metadata.
pub struct Output<'a> {
    pub input: &'a Input,
    pub cell_ids: &'a [u64],
    /// Cell centres (longitude, latitude), degrees.
    pub centres: &'a [(f64, f64)],
    /// B×K fitted values.
    pub hval: &'a [f64],
    pub level: u8,
    pub nest: bool,
    pub ellipsoid: Ellipsoid,
    pub radius: f64,
    pub info: &'a FitInfo,
    pub bounded: bool,
    /// Global attributes recording the settings (`healpix_psf_*`).
    pub settings: Vec<(String, AttributeValue)>,
    pub history: String,
}

fn nc<T>(what: &str, path: &str, r: netcdf::Result<T>) -> Result<T, CliError> {
    r.map_err(|e| CliError(format!("{path}: writing {what}: {e}")))
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
];

/// Deflate (with shuffle) in chunks of up to 65 536 cells along `cell`.
fn compress(v: &mut netcdf::VariableMut<'_>, k: usize, path: &str) -> Result<(), CliError> {
    if k > 0 {
        nc("a chunking", path, v.set_chunking(&[k.min(1 << 16)]))?;
        nc("compression", path, v.set_compression(4, true))?;
    }
    Ok(())
}

pub fn write(path: &str, o: &Output<'_>) -> Result<(), CliError> {
    let input_file = &o.input.file;
    let mut f = nc("the file", path, netcdf::create(path))?;
    let k = o.cell_ids.len();
    let batch = &o.input.batch_dims;
    for (name, len) in batch {
        nc("a dimension", path, f.add_dimension(name, *len))?;
    }
    nc("a dimension", path, f.add_dimension("cell", k))?;
    let batch_names: Vec<&str> = batch.iter().map(|d| d.0.as_str()).collect();

    // the input's global attributes, then ours
    let mut history = o.history.clone();
    for a in input_file.attributes() {
        let Ok(v) = a.value() else { continue };
        match a.name() {
            "Conventions" => {}
            "history" => {
                if let AttributeValue::Str(h) = v {
                    history = format!("{history}\n{h}");
                }
            }
            name => {
                nc("an attribute", path, f.add_attribute(name, v))?;
            }
        }
    }
    nc("an attribute", path, f.add_attribute("Conventions", "CF-1.13"))?;
    nc("an attribute", path, f.add_attribute("history", history.as_str()))?;
    let source = format!("healpix-psf {} (PSF regridding of {})", env!("CARGO_PKG_VERSION"), o.input.path);
    nc("an attribute", path, f.add_attribute("source", source.as_str()))?;
    for (name, v) in &o.settings {
        nc("an attribute", path, f.add_attribute(name, v.clone()))?;
    }

    // coordinates of the batch dimensions (time, depth …) and their bounds, values and attributes
    let spatial: Vec<&str> = o.input.spatial_dims.iter().map(|d| d.0.as_str()).collect();
    let numeric = |v: &netcdf::Variable<'_>| {
        matches!(v.vartype(), netcdf::types::NcVariableType::Int(_) | netcdf::types::NcVariableType::Float(_))
    };
    let mut copy: Vec<String> = input_file
        .variables()
        .filter(|v| {
            let d = dim_names(v);
            v.name() != o.input.var
                && !d.is_empty()
                && numeric(v)
                && d.iter().all(|x| batch_names.contains(&x.as_str()))
        })
        .map(|v| v.name())
        .collect();
    let bounds: Vec<String> = copy
        .iter()
        .filter_map(|c| match input_file.variable(c)?.attribute_value("bounds")?.ok()? {
            AttributeValue::Str(b) => Some(b),
            _ => None,
        })
        .filter(|b| {
            input_file.variable(b).is_some_and(|v| {
                let d = dim_names(&v);
                numeric(&v)
                    && d.first().is_some_and(|x| batch_names.contains(&x.as_str()))
                    && d.iter().all(|x| !spatial.contains(&x.as_str()) && x != "cell")
            })
        })
        .collect();
    for b in bounds {
        for d in input_file.variable(&b).expect("checked").dimensions() {
            if f.dimension(&d.name()).is_none() {
                nc("a dimension", path, f.add_dimension(&d.name(), d.len()))?;
            }
        }
        copy.push(b);
    }
    for name in &copy {
        let v = input_file.variable(name).expect("listed");
        let values: Vec<f64> = nc("a coordinate", path, v.get_values::<f64, _>(..))?;
        let dims = dim_names(&v);
        let dim_refs: Vec<&str> = dims.iter().map(String::as_str).collect();
        let mut out = nc("a coordinate", path, f.add_variable::<f64>(name, &dim_refs))?;
        for a in v.attributes() {
            if a.name() != "_FillValue" {
                if let Ok(val) = a.value() {
                    nc("an attribute", path, out.put_attribute(a.name(), val))?;
                }
            }
        }
        nc("a coordinate", path, out.put_values(&values, ..))?;
    }

    // the grid mapping (CF 1.13 HEALPix; the legacy attributes easygems also reads)
    let scheme = if o.nest { "nested" } else { "ring" };
    let mut crs = nc("crs", path, f.add_variable::<i32>("crs", &[]))?;
    nc("crs", path, crs.put_attribute("grid_mapping_name", "healpix"))?;
    nc("crs", path, crs.put_attribute("refinement_level", o.level as i32))?;
    nc("crs", path, crs.put_attribute("indexing_scheme", scheme))?;
    match o.ellipsoid {
        Ellipsoid::Wgs84 => {
            nc("crs", path, crs.put_attribute("reference_ellipsoid_name", "WGS 84"))?;
            nc("crs", path, crs.put_attribute("semi_major_axis", 6_378_137.0f64))?;
            nc("crs", path, crs.put_attribute("inverse_flattening", 298.257_223_563f64))?;
        }
        _ => {
            nc("crs", path, crs.put_attribute("earth_radius", o.radius))?;
        }
    }
    nc("crs", path, crs.put_attribute("healpix_nside", 1i64 << o.level))?;
    nc("crs", path, crs.put_attribute("healpix_order", if o.nest { "nest" } else { "ring" }))?;
    nc("crs", path, crs.put_value(0i32, ..))?;

    // the cell ids twice: as the `cell` dimension coordinate with the CF standard name (what CF
    // readers and easygems look for) and as `cell_ids` with exactly the xdggs attributes (xdggs
    // rejects any other attribute on it)
    let as_i64: Vec<i64> = o.cell_ids.iter().map(|&c| c as i64).collect();
    let mut cf = nc("cell", path, f.add_variable::<i64>("cell", &["cell"]))?;
    compress(&mut cf, k, path)?;
    nc("cell", path, cf.put_attribute("standard_name", "healpix_index"))?;
    nc("cell", path, cf.put_attribute("long_name", "HEALPix cell index"))?;
    nc("cell", path, cf.put_attribute("units", "1"))?;
    nc("cell", path, cf.put_values(&as_i64, ..))?;
    let mut ids = nc("cell_ids", path, f.add_variable::<i64>("cell_ids", &["cell"]))?;
    compress(&mut ids, k, path)?;
    nc("cell_ids", path, ids.put_attribute("grid_name", "healpix"))?;
    nc("cell_ids", path, ids.put_attribute("level", o.level as i32))?;
    nc("cell_ids", path, ids.put_attribute("indexing_scheme", scheme))?;
    if o.ellipsoid == Ellipsoid::Wgs84 {
        nc("cell_ids", path, ids.put_attribute("ellipsoid", "WGS84"))?;
    }
    nc("cell_ids", path, ids.put_values(&as_i64, ..))?;
    for (name, axis, units, pick) in
        [("lon", "longitude", "degrees_east", 0usize), ("lat", "latitude", "degrees_north", 1usize)]
    {
        let mut v = nc(name, path, f.add_variable::<f64>(name, &["cell"]))?;
        compress(&mut v, k, path)?;
        nc(name, path, v.put_attribute("standard_name", axis))?;
        nc(name, path, v.put_attribute("long_name", format!("{axis} of the cell centre").as_str()))?;
        nc(name, path, v.put_attribute("units", units))?;
        let x: Vec<f64> = o.centres.iter().map(|c| if pick == 0 { c.0 } else { c.1 }).collect();
        nc(name, path, v.put_values(&x, ..))?;
    }

    // the field
    let mut dims: Vec<&str> = batch_names.clone();
    dims.push("cell");
    let name = o.input.var.as_str();
    let mut var = if o.input.single {
        let mut v = nc(name, path, f.add_variable::<f32>(name, &dims))?;
        nc(name, path, v.set_fill_value(f32::NAN))?;
        v
    } else {
        let mut v = nc(name, path, f.add_variable::<f64>(name, &dims))?;
        nc(name, path, v.set_fill_value(f64::NAN))?;
        v
    };
    if k > 0 {
        let chunk: Vec<usize> = dims.iter().map(|&d| if d == "cell" { k.min(1 << 16) } else { 1 }).collect();
        nc(name, path, var.set_chunking(&chunk))?;
        nc(name, path, var.set_compression(4, true))?;
    }
    for (a, v) in &o.input.attrs {
        if !DROPPED.contains(&a.as_str()) {
            nc("an attribute", path, var.put_attribute(a, v.clone()))?;
        }
    }
    nc(name, path, var.put_attribute("grid_mapping", "crs"))?;
    // crs among the coordinates too, so that xarray attaches it to the variable (easygems reads
    // the grid from a DataArray's grid mapping coordinate)
    nc(name, path, var.put_attribute("coordinates", "cell_ids lat lon crs"))?;
    if o.input.single {
        let v: Vec<f32> = o.hval.iter().map(|&x| x as f32).collect();
        nc(name, path, var.put_values(&v, ..))?;
    } else {
        nc(name, path, var.put_values(o.hval, ..))?;
    }

    // diagnostics per row
    let units = o.input.attrs.iter().find(|(a, _)| a == "units").map(|(_, v)| v.clone());
    let rows = o.info.row_iterations.len();
    let as_f64 = |v: &[usize]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let mut diag: Vec<(&str, String, Vec<f64>, bool)> = vec![
        ("fit_iterations", "conjugate-gradient iterations".into(), as_f64(&o.info.row_iterations), false),
        (
            "fit_converged",
            "1 when the conjugate gradient met its tolerance".into(),
            o.info.converged.iter().map(|&c| c as u8 as f64).collect(),
            false,
        ),
        (
            "fit_residual_rms",
            format!("RMS of the fitted field at the valid samples minus {name}"),
            o.info.residual_rms.clone(),
            true,
        ),
        (
            "fit_residual_max",
            format!("largest |fitted field at a valid sample minus {name}|"),
            o.info.residual_max.clone(),
            true,
        ),
        (
            "fit_empty_cells",
            "cells without any valid linked sample (missing in the output)".into(),
            as_f64(&o.info.empty_cells),
            false,
        ),
    ];
    if o.bounded {
        diag.push(("fit_held_low", "cells held at the lower bound".into(), as_f64(&o.info.n_clipped_low), false));
        diag.push(("fit_held_high", "cells held at the upper bound".into(), as_f64(&o.info.n_clipped_high), false));
    }
    for (dname, long, values, with_units) in diag {
        debug_assert_eq!(values.len(), rows);
        let mut v = nc(dname, path, f.add_variable::<f64>(dname, &batch_names))?;
        nc(dname, path, v.put_attribute("long_name", long.as_str()))?;
        if with_units {
            if let Some(u) = &units {
                nc(dname, path, v.put_attribute("units", u.clone()))?;
            }
        }
        nc(dname, path, v.put_values(&values, ..))?;
    }
    nc("the file", path, f.close())
}
