//! The portable geometry and construction steps of `csrc/` (`healpix.h`, `construct.h`, with the
//! elementary functions of `pmath.h`), called on the host.
//!
//! The headers are what the CUDA kernels compile (`__host__ __device__`); build.rs compiles the same
//! source for the host (`csrc/geometry_host.cpp`), and the CPU path calls it through these wrappers:
//! [`Grid`](super::Grid)'s hashes and centres, the unit vectors, the distance, the Gaussian weight of
//! the keep stage. So both devices compute the same bits, and build the same operator. The tests below
//! hold the headers to `cdshealpix` (with glibc's libm) and to the crate's former Rust latitude series.

use super::Ellipsoid;

/// The host build's entry points (csrc/geometry_host.cpp). Pure arithmetic on values, except where
/// a pointer argument says how much it reads or writes.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod ffi {
    extern "C" {
        pub fn hpsf_geo_hash_nested_host(depth: i32, lon_rad: f64, lat_rad: f64) -> u64;
        pub fn hpsf_geo_hash_geodetic_host(depth: i32, lon_deg: f64, lat_deg: f64, wgs84: i32) -> u64;
        pub fn hpsf_geo_center_nested_host(depth: i32, id: u64, lon_rad: *mut f64, lat_rad: *mut f64);
        pub fn hpsf_geo_center_geodetic_host(depth: i32, id: u64, wgs84: i32, lon_rad: *mut f64, lat_rad: *mut f64);
        pub fn hpsf_geo_nested_to_ring_host(depth: i32, id: u64) -> u64;
        pub fn hpsf_geo_ring_to_nested_host(depth: i32, id: u64) -> u64;
        pub fn hpsf_geo_geodetic_to_authalic_host(phi: f64) -> f64;
        pub fn hpsf_geo_authalic_to_geodetic_host(xi: f64) -> f64;
        pub fn hpsf_geo_lon_radians_host(lon_deg: f64) -> f64;
        pub fn hpsf_geo_kth_neighbourhood_host(depth: i32, id: u64, k: u32, out: *mut u64, cap: u64) -> u64;
        pub fn hpsf_geo_unit_vector_host(lon_rad: f64, lat_rad: f64, out: *mut f64);
        pub fn hpsf_geo_series_host(authalic: i32, out: *mut f64);
        pub fn hpsf_pm_sin_host(x: f64) -> f64;
        pub fn hpsf_pm_cos_host(x: f64) -> f64;
        pub fn hpsf_pm_asin_host(x: f64) -> f64;
        pub fn hpsf_pm_acos_host(x: f64) -> f64;
        pub fn hpsf_pm_exp_host(x: f64) -> f64;
        pub fn hpsf_pm_expf_host(x: f32) -> f32;
        pub fn hpsf_con_sample_xyz_host(lon_deg: f64, lat_deg: f64, out: *mut f64);
        pub fn hpsf_con_cell_xyz_host(depth: i32, id: u64, wgs84: i32, out: *mut f64);
        pub fn hpsf_con_keep_candidates_host(depth: i32, cell: u64, ring_weight: u32, out: *mut u64);
        pub fn hpsf_con_weight_sum_host(xyz: *const f64, m: i64, c: *const f64, radius: f64, s2: f64) -> f64;
        pub fn hpsf_con_distance_host(c2: f64, radius: f64) -> f64;
        pub fn hpsf_con_area_bins_host(sorted: *const u64, n: i64, bins: *mut u64);
        pub fn hpsf_con_area_depth_host(bins: *const u64, n: i64) -> i32;
        pub fn hpsf_con_area_fine_depth_host() -> i32;
        pub fn hpsf_con_spacing_area_host(xyz: *const f64, near: *const u32, m: i64, p: i64, radius: f64) -> f64;
        pub fn hpsf_con_shares_host(
            xyz: *const f64,
            m: i64,
            centres: *const f64,
            row: *const u32,
            len: i64,
            radius: f64,
            s2: f64,
            shares: *mut f64,
        );
        pub fn hpsf_con_keep_block_host() -> i32;
        pub fn hpsf_con_link_key_host(h: i32) -> u32;
        pub fn hpsf_con_row_start_host(key: *const u32, len: i64, c: i64) -> i64;
        #[allow(clippy::too_many_arguments)]
        pub fn hpsf_con_search_host(
            depth: i32,
            ring_init: u32,
            ring_max: u32,
            npt: i32,
            nested: *const u64,
            index: *const u32,
            xyz: *const f64,
            len: i64,
            cell: u64,
            at: *const f64,
            best_c2: *mut f64,
            best_k: *mut u32,
        ) -> i32;
    }
}

/// Nested id at `depth` (0..=29) of a point on the HEALPix sphere (radians, lat in [−π/2, π/2], any
/// finite lon). The header does not check its arguments, so neither does this (the depth is).
#[cfg(test)]
pub(crate) fn hash_nested(depth: u8, lon_rad: f64, lat_rad: f64) -> u64 {
    assert!(depth <= super::MAX_LEVEL);
    // SAFETY: pure arithmetic on values.
    unsafe { ffi::hpsf_geo_hash_nested_host(depth as i32, lon_rad, lat_rad) }
}

/// Nested id of a sample in degrees (wrap the longitude, map a WGS84 latitude to the authalic
/// one); lat_deg in [−90, 90], lon_deg finite.
#[inline]
pub(crate) fn hash_geodetic(depth: u8, lon_deg: f64, lat_deg: f64, ellipsoid: Ellipsoid) -> u64 {
    assert!(depth <= super::MAX_LEVEL);
    let wgs84 = (ellipsoid == Ellipsoid::Wgs84) as i32;
    // SAFETY: pure arithmetic on values.
    unsafe { ffi::hpsf_geo_hash_geodetic_host(depth as i32, lon_deg, lat_deg, wgs84) }
}

/// Centre of nested cell `id` on the HEALPix sphere, radians (cdshealpix's `center`).
#[cfg(test)]
pub(crate) fn center_nested(depth: u8, id: u64) -> (f64, f64) {
    check_id(depth, id);
    let (mut lon, mut lat) = (0.0, 0.0);
    // SAFETY: the two pointers are to live locals.
    unsafe { ffi::hpsf_geo_center_nested_host(depth as i32, id, &mut lon, &mut lat) };
    (lon, lat)
}

/// Centre of nested cell `id` as (longitude in [0, 2π), latitude on `ellipsoid`), radians.
#[inline]
pub(crate) fn center_geodetic(depth: u8, id: u64, ellipsoid: Ellipsoid) -> (f64, f64) {
    check_id(depth, id);
    let wgs84 = (ellipsoid == Ellipsoid::Wgs84) as i32;
    let (mut lon, mut lat) = (0.0, 0.0);
    // SAFETY: the two pointers are to live locals.
    unsafe { ffi::hpsf_geo_center_geodetic_host(depth as i32, id, wgs84, &mut lon, &mut lat) };
    (lon, lat)
}

/// Unit vector of the centre of nested cell `id` (geodetic latitude on `ellipsoid`).
#[inline]
pub(crate) fn center_xyz(depth: u8, id: u64, ellipsoid: Ellipsoid) -> [f64; 3] {
    check_id(depth, id);
    let mut out = [0.0; 3];
    // SAFETY: out holds the 3 values written.
    unsafe { ffi::hpsf_con_cell_xyz_host(depth as i32, id, (ellipsoid == Ellipsoid::Wgs84) as i32, out.as_mut_ptr()) };
    out
}

/// Ring id of nested cell `id` (cdshealpix's `to_ring`).
#[cfg(test)]
pub(crate) fn nested_to_ring(depth: u8, id: u64) -> u64 {
    check_id(depth, id);
    // SAFETY: pure arithmetic on values.
    unsafe { ffi::hpsf_geo_nested_to_ring_host(depth as i32, id) }
}

/// Nested id of ring cell `id` (cdshealpix's `from_ring`).
#[cfg(test)]
pub(crate) fn ring_to_nested(depth: u8, id: u64) -> u64 {
    check_id(depth, id);
    // SAFETY: pure arithmetic on values.
    unsafe { ffi::hpsf_geo_ring_to_nested_host(depth as i32, id) }
}

/// The header's WGS84 geodetic → authalic latitude, radians (not clamped).
#[inline]
pub(crate) fn geodetic_to_authalic(phi: f64) -> f64 {
    // SAFETY: pure arithmetic on a value.
    unsafe { ffi::hpsf_geo_geodetic_to_authalic_host(phi) }
}

/// The header's authalic → WGS84 geodetic latitude, radians.
#[inline]
pub(crate) fn authalic_to_geodetic(xi: f64) -> f64 {
    // SAFETY: pure arithmetic on a value.
    unsafe { ffi::hpsf_geo_authalic_to_geodetic_host(xi) }
}

/// The header's `rem_euclid(360)` then `to_radians` of a longitude in degrees.
#[cfg(test)]
pub(crate) fn lon_radians(lon_deg: f64) -> f64 {
    // SAFETY: pure arithmetic on a value.
    unsafe { ffi::hpsf_geo_lon_radians_host(lon_deg) }
}

/// `(cos φ cos λ, cos φ sin λ, sin φ)` of a position in radians.
#[inline]
pub(crate) fn unit_vector(lon_rad: f64, lat_rad: f64) -> [f64; 3] {
    let mut out = [0.0; 3];
    // SAFETY: out holds the 3 values written.
    unsafe { ffi::hpsf_geo_unit_vector_host(lon_rad, lat_rad, out.as_mut_ptr()) };
    out
}

/// The unit vector of a sample in degrees (longitude wrapped into [0, 360], both converted to radians).
#[inline]
pub(crate) fn sample_xyz(lon_deg: f64, lat_deg: f64) -> [f64; 3] {
    let mut out = [0.0; 3];
    // SAFETY: out holds the 3 values written.
    unsafe { ffi::hpsf_con_sample_xyz_host(lon_deg, lat_deg, out.as_mut_ptr()) };
    out
}

/// Great-circle distance (m) from a squared chord between unit vectors (construct.h's).
#[inline]
pub(crate) fn distance(c2: f64, radius: f64) -> f64 {
    // SAFETY: pure arithmetic on values.
    unsafe { ffi::hpsf_con_distance_host(c2, radius) }
}

/// e^x by the portable exp of `csrc/pmath.h` (the GPU's; within an ulp of glibc's).
#[inline]
pub(crate) fn exp(x: f64) -> f64 {
    // SAFETY: pure arithmetic on a value.
    unsafe { ffi::hpsf_pm_exp_host(x) }
}

/// e^x for a float by `csrc/pmath.h` (the double exp rounded to float: the GPU's bits).
#[inline]
pub(crate) fn expf(x: f32) -> f32 {
    // SAFETY: pure arithmetic on a value.
    unsafe { ffi::hpsf_pm_expf_host(x) }
}

/// The cells of the square of half-width `k` (0..=nside) around nested cell `id`, in cdshealpix's
/// `kth_neighbourhood` order.
#[cfg(test)]
pub(crate) fn kth_neighbourhood(depth: u8, id: u64, k: u32) -> Vec<u64> {
    check_id(depth, id);
    assert!(k as u64 <= 1u64 << depth, "k = {k} > nside at depth {depth}");
    let cap = (2 * k as usize + 1).pow(2);
    let mut out = vec![0u64; cap];
    // SAFETY: `out` holds `cap` elements; the header writes no more than that.
    let n = unsafe { ffi::hpsf_geo_kth_neighbourhood_host(depth as i32, id, k, out.as_mut_ptr(), cap as u64) };
    assert!(n as usize <= cap, "{n} cells in a square of {cap}");
    out.truncate(n as usize);
    out
}

/// Panics unless `id` is a cell of `depth` (the header would read garbage).
fn check_id(depth: u8, id: u64) {
    assert!(depth <= super::MAX_LEVEL && id < 12u64 << (2 * depth as u32), "cell {id} at depth {depth}");
}

#[cfg(test)]
pub(crate) mod tests {
    //! The header against `cdshealpix` 0.10.1 and the crate's [`Grid`](crate::geometry::Grid), bit
    //! for bit: random points and ids at depths 0, 1, 5, 10, 12, 20, 29 (longitudes in [−4π, 4π]),
    //! and the hard places. Each test prints how many cases it compared.

    use super::*;
    use crate::geometry::{Grid, MAX_LEVEL};
    use std::f64::consts::{FRAC_PI_2, FRAC_PI_4, PI, TAU};

    /// The depths the random tests cover.
    const DEPTHS: [u8; 7] = [0, 1, 5, 10, 12, 20, 29];

    /// xorshift64*: a small seeded generator, the same sequence on every machine.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Uniform in [0, 1).
        pub(crate) fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Uniform in [lo, hi].
        fn range(&mut self, lo: f64, hi: f64) -> f64 {
            (lo + (hi - lo) * self.unit()).clamp(lo, hi)
        }

        /// A latitude in [−π/2, π/2]: uniform in angle or, every other call, uniform on the sphere.
        fn lat(&mut self) -> f64 {
            if self.next_u64() & 1 == 0 {
                self.range(-FRAC_PI_2, FRAC_PI_2)
            } else {
                self.range(-1.0, 1.0).asin().clamp(-FRAC_PI_2, FRAC_PI_2)
            }
        }

        /// A cell id at `depth`.
        fn id(&mut self, depth: u8) -> u64 {
            self.next_u64() % (12u64 << (2 * depth as u32))
        }
    }

    /// Asserts that the header hashes (lon, lat) as cdshealpix does at `depth`.
    fn check_hash(depth: u8, lon: f64, lat: f64) {
        let want = cdshealpix::nested::get(depth).hash(lon, lat);
        let got = hash_nested(depth, lon, lat);
        assert_eq!(got, want, "depth {depth}, lon {lon:e} ({:#x}), lat {lat:e} ({:#x})", lon.to_bits(), lat.to_bits());
    }

    /// How many doubles apart a and b are (0: identical).
    pub(crate) fn ulps(a: f64, b: f64) -> u64 {
        let key = |x: f64| {
            let b = x.to_bits() as i64;
            if b < 0 {
                i64::MIN - b
            } else {
                b
            }
        };
        key(a).abs_diff(key(b))
    }

    /// The most the header's centre latitudes may differ from cdshealpix's: cdshealpix's formulas
    /// with another libm (pmath.h's sin, cos, asin, acos, each within 0.7 ulp of the true value,
    /// against glibc's 0.52). In the polar caps the latitude is 2·acos(b) − π/2, where one ulp of
    /// acos becomes up to four of the result.
    const CENTRE_ULPS: u64 = 4;

    /// Asserts that the header's centre of `id` is cdshealpix's: the longitude bit for bit (no
    /// libm), the latitude within [`CENTRE_ULPS`]; returns the latitude's difference in ulps.
    fn check_center(depth: u8, id: u64) -> u64 {
        let (lon, lat) = cdshealpix::nested::get(depth).center(id);
        let (glon, glat) = center_nested(depth, id);
        assert_eq!(glon.to_bits(), lon.to_bits(), "longitude, depth {depth}, cell {id}");
        let d = ulps(glat, lat);
        assert!(d <= CENTRE_ULPS, "latitude {glat:e} against {lat:e}: {d} ulp, depth {depth}, cell {id}");
        d
    }

    /// Asserts that the header converts `nested` to ring and back as cdshealpix does.
    fn check_ring(depth: u8, nested: u64) {
        let layer = cdshealpix::nested::get(depth);
        let ring = layer.to_ring(nested);
        assert_eq!(nested_to_ring(depth, nested), ring, "to ring: depth {depth}, cell {nested}");
        assert_eq!(ring_to_nested(depth, ring), layer.from_ring(ring), "from ring: depth {depth}, ring {ring}");
    }

    #[test]
    fn random_points_hash_like_cdshealpix() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let per_depth = 1_000_000;
        for depth in DEPTHS {
            for _ in 0..per_depth {
                let lon = rng.range(-4.0 * PI, 4.0 * PI);
                check_hash(depth, lon, rng.lat());
            }
        }
        println!("hash: {} random points compared", per_depth * DEPTHS.len());
    }

    #[test]
    fn random_ids_centres_and_rings_like_cdshealpix() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let per_depth = 200_000;
        let mut n = 0usize;
        let mut lat_ulps = [0usize; CENTRE_ULPS as usize + 1];
        for depth in DEPTHS {
            for _ in 0..per_depth {
                let id = rng.id(depth);
                lat_ulps[check_center(depth, id) as usize] += 1;
                check_ring(depth, id);
                // and a ring id taken at random back to nested
                let ring = rng.id(depth);
                assert_eq!(ring_to_nested(depth, ring), cdshealpix::nested::get(depth).from_ring(ring));
            }
            n += per_depth;
        }
        // every cell of the small depths, and the cells at each end of the polar caps and the
        // equatorial belt at every depth
        for depth in 0..=4u8 {
            for id in 0..12u64 << (2 * depth) {
                check_center(depth, id);
                check_ring(depth, id);
                n += 1;
            }
        }
        // cdshealpix's from_ring takes the ring of a polar-cap id from a double-precision square root
        // of 1 + 2·id, which rounds beyond 2^53: at depths ≥ 26 a few ids at the ends of the caps come
        // back as wrong (or invalid) nested ids. The header reproduces that; count them.
        let mut not_round_trip = 0usize;
        for depth in 0..=MAX_LEVEL {
            let layer = cdshealpix::nested::get(depth);
            let n_cells = 12u64 << (2 * depth as u32);
            let first_eqr = 2 * (1u64 << depth) * ((1u64 << depth) + 1);
            for edge in [0, first_eqr, n_cells - first_eqr, n_cells / 2, n_cells] {
                for id in edge.saturating_sub(3)..(edge + 3).min(n_cells) {
                    check_center(depth, id);
                    check_ring(depth, id);
                    let nested = layer.from_ring(id);
                    assert_eq!(ring_to_nested(depth, id), nested, "from ring: depth {depth}, ring {id}");
                    if nested >= n_cells || layer.to_ring(nested) != id {
                        assert!(depth >= 26, "depth {depth}, ring {id}");
                        not_round_trip += 1;
                    }
                    n += 1;
                }
            }
        }
        println!(
            "centres and rings: {n} ids compared; {not_round_trip} ring ids near the polar caps' ends at \
             depths ≥ 26 where cdshealpix's from_ring (and the header, identically) does not invert to_ring; \
             centre latitudes of the random ids 0, 1, 2, … ulp from cdshealpix's: {lat_ulps:?}"
        );
    }

    /// The values around `x`: `x` itself and one ulp either side.
    fn and_neighbours(x: f64) -> [f64; 3] {
        [x.next_down(), x, x.next_up()]
    }

    #[test]
    fn hard_places_hash_like_cdshealpix() {
        let transition = (2.0f64 / 3.0).asin();
        let mut lats = vec![FRAC_PI_2, -FRAC_PI_2, FRAC_PI_2.next_down(), (-FRAC_PI_2).next_up(), 0.0, -0.0];
        for x in [transition, -transition, cdshealpix::TRANSITION_LATITUDE, -cdshealpix::TRANSITION_LATITUDE] {
            lats.extend(and_neighbours(x));
        }
        lats.extend(and_neighbours(f64::MIN_POSITIVE));
        lats.extend([1e-300, -1e-300, 5e-324, -5e-324, 1.0, -1.0]);
        let mut lons = vec![0.0, -0.0, TAU, -TAU, PI, -PI, 4.0 * PI, -4.0 * PI, 5e-324, -5e-324];
        for k in -16..=16 {
            lons.extend(and_neighbours(k as f64 * FRAC_PI_4));
        }
        lons.extend(and_neighbours(TAU));
        let mut n = 0usize;
        for depth in 0..=MAX_LEVEL {
            for &lat in &lats {
                for &lon in &lons {
                    check_hash(depth, lon, lat);
                    n += 1;
                }
            }
        }
        println!("hard places: {n} points compared ({} lat × {} lon × 30 depths)", lats.len(), lons.len());
    }

    #[test]
    fn cell_vertices_hash_like_cdshealpix() {
        // The four vertices of cells at depth 10 lie on cell edges at depths 0..=10; hash them (and
        // one ulp around them) at depth 10 and at the neighbouring depths. A point within rounding
        // of an edge belongs to either cell: where the header's sin or cos rounds the other way than
        // glibc's it may take the neighbouring cell (one sharing the vertex), never another.
        let mut other = 0usize;
        let depth = 10u8;
        let layer = cdshealpix::nested::get(depth);
        let mut rng = Rng(0x5851_F42D_4C95_7F2D);
        let mut cells: Vec<u64> = (0..20_000).map(|_| rng.id(depth)).collect();
        // the cells at the corners of every base cell
        let nside = 1u64 << depth;
        for d0h in 0..12u64 {
            let base = d0h << (2 * depth);
            let mask = nside * nside - 1;
            cells.extend([base, base + mask, base + (0x5_5555 & mask), base + (0xA_AAAA & mask)]);
        }
        let mut n = 0usize;
        for &cell in &cells {
            for (lon, lat) in layer.vertices(cell) {
                for lon in and_neighbours(lon) {
                    for lat in and_neighbours(lat) {
                        let lat = lat.clamp(-FRAC_PI_2, FRAC_PI_2);
                        for d in [depth - 1, depth, depth + 1, 29] {
                            let want = cdshealpix::nested::get(d).hash(lon, lat);
                            let got = hash_nested(d, lon, lat);
                            if got != want {
                                let around = cdshealpix::nested::get(d).kth_neighbourhood(want, 1);
                                assert!(
                                    around.contains(&got),
                                    "depth {d}, ({lon:e}, {lat:e}): {got} not next to {want}"
                                );
                                other += 1;
                            }
                            n += 1;
                        }
                    }
                }
            }
            // the centre itself hashes back to the cell
            let (lon, lat) = center_nested(depth, cell);
            assert_eq!(hash_nested(depth, lon, lat), cell);
        }
        println!(
            "vertices: {n} points compared around {} cells; {other} hashed to the neighbouring cell across \
             the edge they lie on",
            cells.len()
        );
    }

    /// Asserts that the header lists the neighbourhood of half-width k of `id` as cdshealpix does.
    fn check_neighbourhood(depth: u8, id: u64, k: u32) {
        let want = cdshealpix::nested::get(depth).kth_neighbourhood(id, k);
        assert_eq!(kth_neighbourhood(depth, id, k), want, "depth {depth}, cell {id}, k {k}");
    }

    #[test]
    fn neighbourhoods_like_cdshealpix() {
        let mut n = 0usize;
        // every cell and every half-width at the small depths (squares that wrap around base cells)
        for depth in 0..=3u8 {
            for id in 0..12u64 << (2 * depth) {
                for k in 0..=1u32 << depth {
                    check_neighbourhood(depth, id, k);
                    n += 1;
                }
            }
        }
        // the cells near the 4 corners and along the edges of every base cell, half-widths 0..=6 and
        // a wide one, at depths up to 29
        for depth in [4u8, 5, 10, 12, 20, 29] {
            let nside = 1u32 << depth;
            let edge: Vec<u32> = [0, 1, 2, 5, nside / 2 - 1, nside / 2, nside - 6, nside - 3, nside - 2, nside - 1]
                .into_iter()
                .filter(|&v| v < nside)
                .collect();
            for d0h in 0..12u32 {
                for &i in &edge {
                    for &j in &edge {
                        let id =
                            (d0h as u64) << (2 * depth as u32) | portable_bits(i as u64) | portable_bits(j as u64) << 1;
                        for k in [0, 1, 2, 3, 4, 5, 6, 13.min(nside)] {
                            check_neighbourhood(depth, id, k);
                            n += 1;
                        }
                    }
                }
            }
        }
        // random cells
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        for depth in DEPTHS {
            for _ in 0..20_000 {
                let id = rng.id(depth);
                let k = (rng.next_u64() % 8) as u32;
                check_neighbourhood(depth, id, k.min(1 << depth));
                n += 1;
            }
        }
        println!("neighbourhoods: {n} (cell, half-width) pairs compared, order included");
    }

    /// The bits of v spread to the even bits (one axis of the z-order curve), for building ids.
    fn portable_bits(v: u64) -> u64 {
        (0..32).fold(0, |acc, b| acc | ((v >> b) & 1) << (2 * b))
    }

    /// The WGS84 latitude series as the crate computed them before the headers took over (Karney
    /// 2022, eqs. A19/A20, Clenshaw with fused multiply-adds, glibc's sin and cos): the reference
    /// for the header's series.
    mod series {
        pub const FWD: [[f64; 6]; 6] = [
            [-4. / 3., -4. / 45., 88. / 315., 538. / 4725., 20824. / 467775., -44732. / 2837835.],
            [0., 34. / 45., 8. / 105., -2482. / 14175., -37192. / 467775., -12467764. / 212837625.],
            [0., 0., -1532. / 2835., -898. / 14175., 54968. / 467775., 100320856. / 1915538625.],
            [0., 0., 0., 6007. / 14175., 24496. / 467775., -5884124. / 70945875.],
            [0., 0., 0., 0., -23356. / 66825., -839792. / 19348875.],
            [0., 0., 0., 0., 0., 570284222. / 1915538625.],
        ];
        pub const INV: [[f64; 6]; 6] = [
            [4. / 3., 4. / 45., -16. / 35., -2582. / 14175., 60136. / 467775., 28112932. / 212837625.],
            [0., 46. / 45., 152. / 945., -11966. / 14175., -21016. / 51975., 251310128. / 638512875.],
            [0., 0., 3044. / 2835., 3802. / 14175., -94388. / 66825., -8797648. / 10945935.],
            [0., 0., 0., 6059. / 4725., 41072. / 93555., -1472637812. / 638512875.],
            [0., 0., 0., 0., 768272. / 467775., 455935736. / 638512875.],
            [0., 0., 0., 0., 0., 4210684958. / 1915538625.],
        ];

        pub fn coefficients(rows: &[[f64; 6]; 6]) -> [f64; 6] {
            let n = crate::geometry::WGS84_F / (2.0 - crate::geometry::WGS84_F);
            rows.map(|row| n * row[..5].iter().rev().fold(row[5], |acc, &c| acc.mul_add(n, c)))
        }

        fn clenshaw_sin(arg: f64, c: &[f64; 6]) -> f64 {
            let (s, co) = arg.sin_cos();
            let x = 2.0 * co;
            let (mut c0, mut c1) = (0.0_f64, 0.0_f64);
            for &cj in c.iter().rev() {
                (c1, c0) = (c0, x.mul_add(c0, cj - c1));
            }
            s * c0
        }

        pub fn to_authalic(phi: f64) -> f64 {
            phi + clenshaw_sin(2.0 * phi, &coefficients(&FWD))
        }

        pub fn to_geodetic(xi: f64) -> f64 {
            xi + clenshaw_sin(2.0 * xi, &coefficients(&INV))
        }
    }

    #[test]
    fn wgs84_path_like_cdshealpix_and_the_series() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let mut n = 0usize;
        // the header's coefficients are Karney's series in n, summed as the crate did
        for (authalic, rows) in [(1, &series::FWD), (0, &series::INV)] {
            let mut c = [0.0; 6];
            // SAFETY: c holds the 6 values written.
            unsafe { ffi::hpsf_geo_series_host(authalic, c.as_mut_ptr()) };
            assert_eq!(c.map(f64::to_bits), series::coefficients(rows).map(f64::to_bits));
        }
        // the latitude series themselves (glibc's sin and cos against pmath.h's: within an ulp of
        // the latitude, which dominates the series' small correction), and the longitude conversion
        let mut worst = 0u64;
        for _ in 0..200_000 {
            let phi = rng.lat();
            let d = ulps(geodetic_to_authalic(phi), series::to_authalic(phi));
            let e = ulps(authalic_to_geodetic(phi), series::to_geodetic(phi));
            worst = worst.max(d).max(e);
            assert!(d <= 1 && e <= 1, "latitude {phi:e}: {d} and {e} ulp");
            let lon = rng.range(-1000.0, 1000.0);
            assert_eq!(lon_radians(lon).to_bits(), lon.rem_euclid(360.0).to_radians().to_bits(), "{lon:e}");
            n += 1;
        }
        // Grid::cell (nested and ring) and the centres on random and special positions in degrees
        // (±41.81…°: the polar caps' edge asin(2/3) on the sphere), against cdshealpix with the series
        let special_lons =
            [-720.0, -360.0, -180.0, -0.0, 0.0, 90.0, 180.0, 360.0, 720.0, -1e-300, 1e-300, 359.99999999999994];
        let special_lats =
            [-90.0, 90.0, -0.0, 0.0, 41.810314895778596, -41.810314895778596, 89.99999999999999, -89.99999999999999];
        let mut lat_ulps = 0u64;
        for level in DEPTHS {
            let layer = cdshealpix::nested::get(level);
            for ellipsoid in [Ellipsoid::Wgs84, Ellipsoid::Sphere] {
                let wgs84 = ellipsoid == Ellipsoid::Wgs84;
                let nest = Grid::new(level, true, ellipsoid).unwrap();
                let ring = Grid::new(level, false, ellipsoid).unwrap();
                let check = |lon: f64, lat: f64| {
                    let phi = lat.to_radians();
                    let xi = if wgs84 { series::to_authalic(phi).clamp(-FRAC_PI_2, FRAC_PI_2) } else { phi };
                    let want = layer.hash(lon.rem_euclid(360.0).to_radians(), xi);
                    let id = nest.cell(lon, lat).unwrap();
                    assert_eq!(id, want, "level {level}, {ellipsoid:?}, ({lon:e}, {lat:e})");
                    assert_eq!(hash_geodetic(level, lon, lat, ellipsoid), id);
                    assert_eq!(layer.to_ring(id), ring.cell(lon, lat).unwrap());
                    let (clon, cxi) = layer.center(id);
                    let (glon, glat) = nest.center_nested_rad(id);
                    assert_eq!(glon.to_bits(), clon.rem_euclid(TAU).to_bits(), "centre of {id}");
                    let clat = if wgs84 { series::to_geodetic(cxi) } else { cxi };
                    let d = ulps(glat, clat);
                    assert!(d <= CENTRE_ULPS + 1, "centre of {id}: {glat:e} against {clat:e}");
                    d
                };
                for _ in 0..100_000 {
                    lat_ulps = lat_ulps.max(check(rng.range(-720.0, 720.0), rng.range(-90.0, 90.0)));
                }
                for lon in special_lons {
                    for lat in special_lats {
                        lat_ulps = lat_ulps.max(check(lon, lat));
                    }
                }
                n += 100_000 + special_lons.len() * special_lats.len();
            }
        }
        println!(
            "WGS84 path: {n} cases compared; the series within {worst} ulp of glibc's, centre latitudes \
             within {lat_ulps} ulp"
        );
    }

    /// pmath.h's function `f` against glibc's `g` at `n` random points of [lo, hi]: within one ulp;
    /// returns how many differ at all.
    fn within_an_ulp(rng: &mut Rng, f: unsafe extern "C" fn(f64) -> f64, g: fn(f64) -> f64, lo: f64, hi: f64) -> usize {
        let mut differ = 0;
        for _ in 0..200_000 {
            let x = rng.range(lo, hi);
            // SAFETY: pure arithmetic on a value.
            let (a, b) = (unsafe { f(x) }, g(x));
            let d = ulps(a, b);
            assert!(d <= 1, "at {x:e}: {a:e} against glibc's {b:e}");
            differ += (d > 0) as usize;
        }
        differ
    }

    #[test]
    fn portable_functions_within_an_ulp_of_glibc() {
        use ffi::{hpsf_pm_acos_host as acos, hpsf_pm_asin_host as asin, hpsf_pm_cos_host as cos};
        use ffi::{hpsf_pm_exp_host as exp, hpsf_pm_sin_host as sin};
        let mut rng = Rng(0x6A09_E667_F3BC_C908);
        let mut report = Vec::new();
        for (name, f, g, lo, hi) in [
            ("sin", sin as unsafe extern "C" fn(f64) -> f64, f64::sin as fn(f64) -> f64, -4.0 * PI, 4.0 * PI),
            ("sin", sin, f64::sin, -1e-3, 1e-3),
            ("cos", cos, f64::cos, -4.0 * PI, 4.0 * PI),
            ("cos", cos, f64::cos, FRAC_PI_2 - 0.01, FRAC_PI_2 + 0.01),
            ("asin", asin, f64::asin, -1.0, 1.0),
            ("asin", asin, f64::asin, 0.999, 1.0),
            ("acos", acos, f64::acos, -1.0, 1.0),
            ("acos", acos, f64::acos, -1.0, -0.999),
            ("exp", exp, f64::exp, -50.0, 0.0),
            ("exp", exp, f64::exp, -745.0, 709.0),
            ("exp", exp, f64::exp, -745.1, -708.0),
        ] {
            let differ = within_an_ulp(&mut rng, f, g, lo, hi);
            report.push(format!("{name} on [{lo:.3e}, {hi:.3e}]: {:.2} %", differ as f64 / 2000.0));
        }
        // the special values
        // SAFETY: pure arithmetic on values.
        unsafe {
            for x in [0.0, -0.0, 1e-300, -1e-300, 5e-324] {
                assert_eq!(sin(x).to_bits(), x.to_bits());
                assert_eq!(asin(x).to_bits(), x.to_bits());
                assert_eq!(cos(x), 1.0);
                assert_eq!(exp(x), 1.0);
                assert_eq!(acos(x), FRAC_PI_2);
            }
            assert_eq!((asin(1.0), asin(-1.0), acos(1.0), acos(-1.0)), (FRAC_PI_2, -FRAC_PI_2, 0.0, PI));
            assert_eq!((sin(FRAC_PI_2), cos(PI), sin(PI / 6.0)), (1.0, -1.0, 0.49999999999999994));
            for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                assert!(sin(x).is_nan() && cos(x).is_nan());
            }
            for x in [f64::NAN, 1.0f64.next_up(), -2.0, f64::INFINITY] {
                assert!(asin(x).is_nan() && acos(x).is_nan());
            }
            assert!(exp(f64::NAN).is_nan());
            assert_eq!(
                (exp(f64::INFINITY), exp(f64::NEG_INFINITY), exp(710.0), exp(-746.0)),
                (f64::INFINITY, 0.0, f64::INFINITY, 0.0)
            );
            assert_eq!((exp(-745.0), exp(709.78)), ((-745.0f64).exp(), 709.78f64.exp()));
            // odd and even symmetry, exactly (the equator's mirror ties depend on it)
            for _ in 0..100_000 {
                let x = rng.range(-7.0, 7.0);
                assert_eq!((sin(-x), cos(-x)), (-sin(x), cos(x)));
                let y = rng.range(-1.0, 1.0);
                assert_eq!(asin(-y), -asin(y));
            }
        }
        println!("pmath.h within an ulp of glibc; share of points where they differ: {}", report.join(", "));
    }
}
