//! Geodetic ↔ authalic latitude on the WGS84 ellipsoid.
//!
//! HEALPix is an equal-area pixelisation of the sphere. On an ellipsoid, the reference
//! (healpix-geo 0.4.1, through the `geodesy` crate) maps the geodetic latitude φ to the authalic
//! latitude ξ (the latitude on the sphere of equal area) before hashing, and back for cell centres.
//! Both directions are the order-6 series in the third flattening n of Karney (2022), "On auxiliary
//! latitudes", eqs. A19/A20, summed with Clenshaw's recurrence (SPEC §1.3). The two series are inverse
//! only to ~1e-16 rad; like the reference we do not iterate.

use std::sync::OnceLock;

/// WGS84 semi-major axis (m); kept for documentation, only the flattening enters the series.
pub const WGS84_A: f64 = 6_378_137.0;
/// WGS84 flattening.
pub const WGS84_F: f64 = 1.0 / 298.257_223_563;

/// Karney (2022) eq. A19: geodetic → authalic, rows j = 1..6, coefficients of n^1..n^6.
const FWD: [[f64; 6]; 6] = [
    [-4. / 3., -4. / 45., 88. / 315., 538. / 4725., 20824. / 467775., -44732. / 2837835.],
    [0., 34. / 45., 8. / 105., -2482. / 14175., -37192. / 467775., -12467764. / 212837625.],
    [0., 0., -1532. / 2835., -898. / 14175., 54968. / 467775., 100320856. / 1915538625.],
    [0., 0., 0., 6007. / 14175., 24496. / 467775., -5884124. / 70945875.],
    [0., 0., 0., 0., -23356. / 66825., -839792. / 19348875.],
    [0., 0., 0., 0., 0., 570284222. / 1915538625.],
];

/// Karney (2022) eq. A20: authalic → geodetic.
const INV: [[f64; 6]; 6] = [
    [4. / 3., 4. / 45., -16. / 35., -2582. / 14175., 60136. / 467775., 28112932. / 212837625.],
    [0., 46. / 45., 152. / 945., -11966. / 14175., -21016. / 51975., 251310128. / 638512875.],
    [0., 0., 3044. / 2835., 3802. / 14175., -94388. / 66825., -8797648. / 10945935.],
    [0., 0., 0., 6059. / 4725., 41072. / 93555., -1472637812. / 638512875.],
    [0., 0., 0., 0., 768272. / 467775., 455935736. / 638512875.],
    [0., 0., 0., 0., 0., 4210684958. / 1915538625.],
];

/// Σ row[l]·x^l by Horner's rule with fused multiply-adds (highest power first).
fn horner(x: f64, row: &[f64; 6]) -> f64 {
    let mut acc = row[5];
    for &c in row[..5].iter().rev() {
        acc = acc.mul_add(x, c);
    }
    acc
}

/// Σ_{j=1..6} c_j sin(j·arg) by Clenshaw's recurrence.
#[inline]
fn clenshaw_sin(arg: f64, c: &[f64; 6]) -> f64 {
    let (s, co) = arg.sin_cos();
    let x = 2.0 * co;
    let (mut c0, mut c1) = (0.0_f64, 0.0_f64);
    for &cj in c.iter().rev() {
        (c1, c0) = (c0, x.mul_add(c0, cj - c1));
    }
    s * c0
}

struct Series {
    fwd: [f64; 6],
    inv: [f64; 6],
}

fn series() -> &'static Series {
    static S: OnceLock<Series> = OnceLock::new();
    S.get_or_init(|| {
        let n = WGS84_F / (2.0 - WGS84_F);
        let mut fwd = [0.0; 6];
        let mut inv = [0.0; 6];
        for j in 0..6 {
            fwd[j] = n * horner(n, &FWD[j]);
            inv[j] = n * horner(n, &INV[j]);
        }
        Series { fwd, inv }
    })
}

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
    phi + clenshaw_sin(2.0 * phi, &series().fwd)
}

/// WGS84 geodetic latitude φ (radians) of the authalic latitude ξ (radians).
#[inline]
pub fn authalic_to_geodetic(xi: f64) -> f64 {
    xi + clenshaw_sin(2.0 * xi, &series().inv)
}
