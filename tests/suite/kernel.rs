//! Kernel scale helpers against the reference's `psf_geometry` (healpix-resample 2026.10.2): the
//! values below were printed by the reference's `recommend_npt`, `cell_size_m`, `fwhm_to_scale`
//! and `scale_to_fwhm` (run in .venv-ref), and the FWHM relation is checked from its definition.

use healpix_psf::kernel::{cell_size_m, fwhm_to_scale, recommend_npt, scale_to_fwhm, FWHM_PER_SCALE};
use healpix_psf::Error;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-300)
}

#[test]
fn fwhm_is_where_the_kernel_halves() {
    // w(d) = exp(−2d²/s²) = 1/2 at d = FWHM/2
    for s in [1.0, 10.62, 6366.8] {
        let half = scale_to_fwhm(s) / 2.0;
        assert!(close((-2.0 * half * half / (s * s)).exp(), 0.5, 1e-15));
        assert!(close(fwhm_to_scale(scale_to_fwhm(s)), s, 1e-15));
    }
    assert!(close(FWHM_PER_SCALE, (2.0 * std::f64::consts::LN_2).sqrt(), 1e-16));
    assert!(close(fwhm_to_scale(12.5), 10.616522503600239, 1e-15));
}

#[test]
fn cell_size_matches_reference() {
    assert!(close(cell_size_m(10).unwrap(), 6366.810992506912, 1e-15));
    assert!(close(cell_size_m(20).unwrap(), 6.217588859870031, 1e-15));
    assert!(matches!(cell_size_m(30), Err(Error::InvalidParameter { name: "level", .. })));
}

#[test]
fn recommend_npt_matches_reference() {
    // (scale, level, target) -> (npt, mass_at_npt, mass_at_default, sigma_over_cell)
    let cases = [
        (12.6, 20, 0.99, 30, 0.990443652538687, 0.7522078296389251, 1.0132545174644583),
        (10.62, 20, 0.99, 22, 0.9917753939744781, 0.859688734266184, 0.8540288075771862),
        (6366.81, 10, 0.99, 9, 0.9967515578552871, 0.9967515578552871, 0.4999999220561979),
        (30000.0, 10, 0.999, 200, 0.9967681832373155, 0.2274526577013043, 2.355967535027107),
        (1e6, 10, 0.99, 200, 0.00514794343828362, 0.00023222881951534546, 78.53225116757024),
        (100.0, 10, 0.9, 9, 1.0, 1.0, 0.007853225116757024),
    ];
    for (s, level, target, npt, mass, mass9, ratio) in cases {
        let r = recommend_npt(s, level, target).unwrap();
        assert_eq!(r.npt, npt, "scale {s} level {level}");
        assert!(close(r.mass_at_npt, mass, 1e-12) && close(r.mass_at_default, mass9, 1e-12), "{r:?}");
        assert!(close(r.sigma_over_cell, ratio, 1e-14), "{r:?}");
    }
}

#[test]
fn recommend_npt_rejects_bad_input() {
    for (s, t, name) in
        [(0.0, 0.9, "scale_m"), (f64::NAN, 0.9, "scale_m"), (10.0, 1.0, "target_mass"), (10.0, 0.0, "target_mass")]
    {
        match recommend_npt(s, 10, t) {
            Err(Error::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
            other => panic!("({s}, {t}): {other:?}"),
        }
    }
}
