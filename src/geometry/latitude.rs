//! Geodetic ↔ authalic latitude on the WGS84 ellipsoid.
//!
//! HEALPix is an equal-area pixelisation of the sphere. On an ellipsoid, the reference
//! (healpix-geo 0.4.1, through the `geodesy` crate) maps the geodetic latitude φ to the authalic
//! latitude ξ (the latitude on the sphere of equal area) before hashing, and back for cell centres.
//! Both directions are the order-6 series in the third flattening n of Karney (2022), "On auxiliary
//! latitudes", eqs. A19/A20, summed with Clenshaw's recurrence (SPEC §1.3). The two series are inverse
//! only to ~1e-16 rad; like the reference we do not iterate. The series are computed by
//! `csrc/healpix.h` (with the portable sin and cos of `csrc/pmath.h`), the code the GPU runs.

/// WGS84 semi-major axis (m); kept for documentation, only the flattening enters the series.
pub const WGS84_A: f64 = 6_378_137.0;
/// WGS84 flattening.
pub const WGS84_F: f64 = 1.0 / 298.257_223_563;

/// Authalic latitude ξ (radians) of the WGS84 geodetic latitude φ (radians).
///
/// # Examples
/// ```
/// use healpix_psf::geometry::{geodetic_to_authalic, authalic_to_geodetic};
/// let phi = 45f64.to_radians();
/// let xi = geodetic_to_authalic(phi);
/// assert!((xi.to_degrees() - 44.87170).abs() < 1e-4); // the authalic latitude is ~0.128° lower
/// assert!((authalic_to_geodetic(xi) - phi).abs() < 1e-15);
/// ```
#[inline]
pub fn geodetic_to_authalic(phi: f64) -> f64 {
    super::portable::geodetic_to_authalic(phi)
}

/// WGS84 geodetic latitude φ (radians) of the authalic latitude ξ (radians).
#[inline]
pub fn authalic_to_geodetic(xi: f64) -> f64 {
    super::portable::authalic_to_geodetic(xi)
}
