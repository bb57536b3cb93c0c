//! HEALPix geometry. The arithmetic is `csrc/healpix.h` and `csrc/construct.h`, the source the CUDA
//! kernels compile, built for the host (`src/geometry/portable.rs`): hashes, centres, unit vectors and
//! distances are the same bits on the CPU and the GPU. `cdshealpix` gives the integer parts
//! (neighbourhoods, nested ↔ ring) and is the reference the tests hold the headers to.
//!
//! * lon/lat (degrees) → cell id at a level, nested or ring scheme (SPEC §1.1): the longitude is
//!   wrapped with `rem_euclid(360)`, the geodetic latitude mapped to the authalic one
//!   ([`geodetic_to_authalic`]) for the WGS84 ellipsoid, then hashed on the unit sphere.
//! * cell id → centre (SPEC §1.2): longitude in [0, 360), **geodetic** latitude.
//! * k-th neighbourhoods in the crate's order (centre first, then rings 1..k).
//! * distances: the great circle on a sphere of radius `radius` between geodetic positions, as the
//!   reference does — but computed from the chord between unit vectors, `d = 2R·asin(|a−b|/2)`,
//!   which keeps full relative accuracy for small distances. The reference's `R·acos(a·b)` has an
//!   absolute error of about `R·√ε` ≈ 0.1 mm… 1 m near zero and loses its accuracy below ~10 m; this is a
//!   documented deviation (it moves `d_m` by ~1e-8 relative at level 12, far below the weights'
//!   sensitivity).

mod latitude;
pub(crate) mod portable;

pub use latitude::{authalic_to_geodetic, geodetic_to_authalic, WGS84_A, WGS84_F};

use crate::error::{Error, Result};
use std::f64::consts::FRAC_PI_2;

/// Highest HEALPix level (depth) supported: nside = 2^29.
pub const MAX_LEVEL: u8 = 29;

/// Mean Earth radius used by default for distances and the default kernel scale (m).
pub const EARTH_RADIUS_M: f64 = 6_371_000.0;

/// The figure of the Earth used to place samples on the HEALPix sphere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ellipsoid {
    /// WGS84: latitudes are geodetic and mapped to authalic latitudes before hashing (default).
    #[default]
    Wgs84,
    /// A sphere: latitudes are used as they are.
    Sphere,
}

impl Ellipsoid {
    /// The name as the reference spells it (`"WGS84"`, `"sphere"`).
    pub fn name(self) -> &'static str {
        match self {
            Ellipsoid::Wgs84 => "WGS84",
            Ellipsoid::Sphere => "sphere",
        }
    }

    /// Latitude on the HEALPix (authalic) sphere, radians, of a geodetic latitude in radians.
    #[inline]
    pub fn to_authalic(self, lat_rad: f64) -> f64 {
        match self {
            Ellipsoid::Wgs84 => geodetic_to_authalic(lat_rad).clamp(-FRAC_PI_2, FRAC_PI_2),
            Ellipsoid::Sphere => lat_rad,
        }
    }

    /// Geodetic latitude, radians, of a latitude on the HEALPix sphere.
    #[inline]
    pub fn from_authalic(self, xi_rad: f64) -> f64 {
        match self {
            Ellipsoid::Wgs84 => authalic_to_geodetic(xi_rad),
            Ellipsoid::Sphere => xi_rad,
        }
    }
}

impl std::str::FromStr for Ellipsoid {
    type Err = Error;
    /// `"WGS84"` (any case) or `"sphere"` / `"unitsphere"`.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "wgs84" => Ok(Ellipsoid::Wgs84),
            "sphere" | "unitsphere" => Ok(Ellipsoid::Sphere),
            _ => Err(Error::param("ellipsoid", s, "use \"WGS84\" or \"sphere\"")),
        }
    }
}

/// Checks one sample position: finite longitude, latitude in [-90, 90].
#[inline]
pub(crate) fn check_lonlat(index: usize, lon_deg: f64, lat_deg: f64) -> Result<()> {
    let reason = if !lon_deg.is_finite() {
        "longitude is NaN or infinite"
    } else if !lat_deg.is_finite() {
        "latitude is NaN or infinite"
    } else if !(-90.0..=90.0).contains(&lat_deg) {
        "latitude must lie in [-90, 90] degrees"
    } else {
        return Ok(());
    };
    Err(Error::InvalidCoordinate { index, lon_deg, lat_deg, reason })
}

/// Unit vector `(cos φ cos λ, cos φ sin λ, sin φ)` of a position given in radians (with the
/// portable sin and cos of `csrc/pmath.h`, the ones the GPU uses).
#[inline]
pub fn unit_vector(lon_rad: f64, lat_rad: f64) -> [f64; 3] {
    portable::unit_vector(lon_rad, lat_rad)
}

/// Squared chord |a−b|² between two unit vectors: a monotone function of their distance, enough to
/// rank candidates.
#[inline(always)]
pub fn chord2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let dx = a[0] - b[0];
    let dy = a[1] - b[1];
    let dz = a[2] - b[2];
    dx * dx + dy * dy + dz * dz
}

/// Great-circle distance (m) on a sphere of radius `radius` for a squared chord between unit vectors:
/// `2R·asin(|a−b|/2)` (`csrc/construct.h`: a Taylor series below |a−b|/2 = 0.01, i.e. ~127 km on the
/// Earth, the portable asin above). Accurate to ~R·ε absolute at every distance short of the antipode.
#[inline]
pub fn distance_from_chord2_m(c2: f64, radius: f64) -> f64 {
    portable::distance(c2, radius)
}

/// Great-circle distance (m) between two unit vectors on a sphere of radius `radius` (see
/// [`distance_from_chord2_m`]).
#[inline]
pub fn chord_distance_m(a: &[f64; 3], b: &[f64; 3], radius: f64) -> f64 {
    distance_from_chord2_m(chord2(a, b), radius)
}

/// Great-circle distance (m) on a sphere of radius `radius` between two positions in degrees
/// (latitudes used as they are, i.e. geodetic latitudes on the sphere, as the reference does).
///
/// # Examples
/// ```
/// use healpix_psf::geometry::great_circle_distance_m;
/// // one degree of arc on the equator
/// let d = great_circle_distance_m(0.0, 0.0, 1.0, 0.0, 6_371_000.0);
/// assert!((d - 6_371_000.0 * 1f64.to_radians()).abs() < 1e-6);
/// // one millimetre apart: still accurate (the acos form is off by ~0.1 m here)
/// let dlon = 1e-3 / 6_371_000.0_f64;
/// let d = great_circle_distance_m(0.0, 0.0, dlon.to_degrees(), 0.0, 6_371_000.0);
/// assert!((d - 1e-3).abs() < 1e-12);
/// ```
pub fn great_circle_distance_m(lon1_deg: f64, lat1_deg: f64, lon2_deg: f64, lat2_deg: f64, radius: f64) -> f64 {
    let a = unit_vector(lon1_deg.rem_euclid(360.0).to_radians(), lat1_deg.to_radians());
    let b = unit_vector(lon2_deg.rem_euclid(360.0).to_radians(), lat2_deg.to_radians());
    chord_distance_m(&a, &b, radius)
}

/// Side of a cell (m): the square root of a cell's area on a sphere of radius `radius`,
/// `sqrt(4π / (12·4^level))·radius` — the default kernel scale `sigma_m`.
///
/// # Examples
/// ```
/// let s = healpix_psf::geometry::cell_size_m(10, 6_371_000.0);
/// assert!((s - 6366.81).abs() < 0.01);
/// ```
pub fn cell_size_m(level: u8, radius: f64) -> f64 {
    (4.0 * std::f64::consts::PI / (12.0 * 4f64.powi(level as i32))).sqrt() * radius
}

/// A HEALPix grid at one level, in one numbering scheme, on one ellipsoid.
///
/// # Examples
/// ```
/// use healpix_psf::geometry::{Ellipsoid, Grid};
/// let g = Grid::new(10, true, Ellipsoid::Wgs84)?;
/// let cell = g.cell(8.0, 45.0)?;
/// let (lon, lat) = g.center(cell)?;
/// assert!((lon - 8.0).abs() < 0.06 && (lat - 45.0).abs() < 0.06);
/// let nb = g.kth_neighbourhood(cell, 1)?;
/// assert_eq!(nb.len(), 9);
/// assert_eq!(nb[0], cell);
/// # Ok::<(), healpix_psf::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct Grid {
    level: u8,
    nest: bool,
    ellipsoid: Ellipsoid,
    layer: &'static cdshealpix::nested::Layer,
}

impl std::fmt::Debug for Grid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grid")
            .field("level", &self.level)
            .field("nest", &self.nest)
            .field("ellipsoid", &self.ellipsoid)
            .finish()
    }
}

impl Grid {
    /// A grid at `level` (0..=29); `nest` selects the nested (true) or ring (false) numbering.
    pub fn new(level: u8, nest: bool, ellipsoid: Ellipsoid) -> Result<Self> {
        if level > MAX_LEVEL {
            return Err(Error::param("level", level, "HEALPix levels run from 0 to 29"));
        }
        Ok(Grid { level, nest, ellipsoid, layer: cdshealpix::nested::get(level) })
    }

    /// The level (depth).
    pub fn level(&self) -> u8 {
        self.level
    }

    /// true for the nested scheme, false for the ring scheme.
    pub fn nest(&self) -> bool {
        self.nest
    }

    /// The ellipsoid.
    pub fn ellipsoid(&self) -> Ellipsoid {
        self.ellipsoid
    }

    /// nside = 2^level.
    pub fn nside(&self) -> u32 {
        1u32 << self.level
    }

    /// Number of cells on the sphere, 12·nside².
    pub fn n_cells(&self) -> u64 {
        12u64 << (2 * self.level as u32)
    }

    /// Nested id of a validated position (degrees).
    #[inline]
    pub(crate) fn hash_nested(&self, lon_deg: f64, lat_deg: f64) -> u64 {
        portable::hash_geodetic(self.level, lon_deg, lat_deg, self.ellipsoid)
    }

    /// Centre of a nested cell as (longitude in [0, 2π), geodetic latitude), radians.
    #[inline]
    pub(crate) fn center_nested_rad(&self, nested: u64) -> (f64, f64) {
        portable::center_geodetic(self.level, nested, self.ellipsoid)
    }

    /// Unit vector of the centre of a nested cell (geodetic latitude).
    #[inline]
    pub(crate) fn center_nested_xyz(&self, nested: u64) -> [f64; 3] {
        portable::center_xyz(self.level, nested, self.ellipsoid)
    }

    /// The scheme's id of a nested id.
    #[inline]
    pub(crate) fn scheme_id(&self, nested: u64) -> u64 {
        if self.nest {
            nested
        } else {
            self.layer.to_ring(nested)
        }
    }

    /// The nested id of a validated id in this grid's scheme.
    #[inline]
    pub(crate) fn nested_id(&self, id: u64) -> u64 {
        if self.nest {
            id
        } else {
            self.layer.from_ring(id)
        }
    }

    /// Nested k-th neighbourhood, k ≤ nside (checked by the caller).
    #[inline]
    pub(crate) fn kth_neighbourhood_nested(&self, nested: u64, k: u32) -> Vec<u64> {
        self.layer.kth_neighbourhood(nested, k)
    }

    fn check_cell(&self, cell: u64) -> Result<()> {
        if cell >= self.n_cells() {
            return Err(Error::param("cell", cell, format!("level {} has cell ids 0..{}", self.level, self.n_cells())));
        }
        Ok(())
    }

    /// Cell id (in this grid's scheme) of a position in degrees. Any finite longitude is accepted
    /// (wrapped); the latitude must lie in [-90, 90].
    pub fn cell(&self, lon_deg: f64, lat_deg: f64) -> Result<u64> {
        check_lonlat(0, lon_deg, lat_deg)?;
        Ok(self.scheme_id(self.hash_nested(lon_deg, lat_deg)))
    }

    /// Cell ids of many positions (see [`Grid::cell`]); the error names the first bad sample.
    pub fn cells(&self, lon_deg: &[f64], lat_deg: &[f64]) -> Result<Vec<u64>> {
        if lon_deg.len() != lat_deg.len() {
            return Err(Error::LengthMismatch { what: "lat_deg", expected: lon_deg.len(), got: lat_deg.len() });
        }
        lon_deg
            .iter()
            .zip(lat_deg)
            .enumerate()
            .map(|(i, (&lo, &la))| {
                check_lonlat(i, lo, la)?;
                Ok(self.scheme_id(self.hash_nested(lo, la)))
            })
            .collect()
    }

    /// Centre of a cell as (longitude in [0, 360), geodetic latitude), degrees.
    pub fn center(&self, cell: u64) -> Result<(f64, f64)> {
        self.check_cell(cell)?;
        let (lon, lat) = self.center_nested_rad(self.nested_id(cell));
        Ok((lon.to_degrees().rem_euclid(360.0), lat.to_degrees()))
    }

    /// The k-th neighbourhood of a cell, in `cdshealpix`'s order: the cell first, then the rings
    /// 1..=k. Near the 8 base-cell vertices where only two base cells meet, fewer than (2k+1)² cells
    /// exist and the list is shorter (the reference pads it with −1). Requires k ≤ nside.
    pub fn kth_neighbourhood(&self, cell: u64, k: u32) -> Result<Vec<u64>> {
        self.check_cell(cell)?;
        if k > self.nside() {
            return Err(Error::param(
                "k",
                k,
                format!("a neighbourhood ring cannot exceed nside = {} at level {}", self.nside(), self.level),
            ));
        }
        let mut v = self.kth_neighbourhood_nested(self.nested_id(cell), k);
        if !self.nest {
            for h in v.iter_mut() {
                *h = self.layer.to_ring(*h);
            }
        }
        Ok(v)
    }
}
