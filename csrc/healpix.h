// HEALPix geometry written once for the host and the device: lon/lat → nested id (on the sphere,
// or from WGS84 geodetic degrees through the authalic latitude, as the crate's `Grid` does), cell
// centres, nested ↔ ring ids, and the neighbourhoods of half-width k. Header-only C++14; every
// function is `__host__ __device__` under nvcc, so the CUDA kernels and the host build
// (csrc/geometry_host.cpp, compiled by build.rs through the `cc` crate with -ffp-contract=off)
// compile this same source.
//
// The arithmetic is cdshealpix 0.10.1's (the crate's reference for geometry), operation for
// operation: its projection onto the base cells (`d0h_lh_in_d0c`, the exponent trick that scales by
// nside, the `as u8` / `as u32` casts that saturate and the clamping of i, j == nside), its
// unprojection of cell centres (`unproj`), its RING formulas (`to_ring`, `from_ring`), including
// how it treats a longitude of −0.0 (as 2π) or outside [0, 2π), and its tie-breaking on cell edges.
// The WGS84 geodetic ↔ authalic latitude is Karney's order-6 series, summed by Clenshaw's
// recurrence. The elementary functions are pmath.h's, not the libm's: the host build (the CPU path
// of the crate) and the device compute the same bits, so a GPU-built operator is the CPU-built one.
//
// Checked on the host against cdshealpix (with glibc's libm) in src/geometry/portable.rs (CI, no
// GPU): 7M random points at depths 0, 1, 5, 10, 12, 20, 29 with longitudes in [−4π, 4π] and the
// hard places at every depth 0..29 (the poles, lat = ±asin(2/3), lon = kπ/4 and one ulp either
// side, −0.0, 2π) hash identically; of 2.9M points on and one ulp around the vertices of depth-10
// cells, 0.14 % hash to the neighbouring cell across the edge they lie on (a sine rounded the other
// way). Ring ids both ways are identical, centre longitudes too; centre latitudes are identical for
// 98.9 % of 1.4M random ids, 1–2 ulp off for 0.7 %, and up to 4 ulp in the polar caps, where
// cdshealpix's 2·acos(·) − π/2 turns one ulp of acos into four. The WGS84 series agree with the
// crate's former Rust series (glibc's sin and cos) within an ulp. cdshealpix's one known defect is
// kept for parity: at depths ≥ 26 `from_ring` takes a polar-cap ring from a double sqrt of 1 + 2·id
// that rounds beyond 2^53, so a few ring ids at the ends of the caps map to wrong (even
// out-of-range) nested ids.
//
// Products that feed a sum go through hpsf_mul (__dmul_rn on the device: nvcc would otherwise
// contract a·b + c into an FMA, which the host build, -ffp-contract=off, does not).
#ifndef HPSF_HEALPIX_H
#define HPSF_HEALPIX_H

#include <math.h>
#include <stdint.h>

#include "pmath.h"  // HPSF_HD, hpsf_mul and the elementary functions

// Constants as cdshealpix and Rust's std spell them (decimal literals parse to the same doubles).
#define HPSF_PI 3.14159265358979323846264338327950288
#define HPSF_FRAC_PI_2 1.57079632679489661923132169163975144
#define HPSF_FRAC_PI_4 0.785398163397448309615660845819875721
#define HPSF_FOUR_OVER_PI (4.0 / HPSF_PI)
#define HPSF_SQRT6 2.449489742783178
#define HPSF_ONE_OVER_SQRT6 0.408248290463863
// asin(2/3): the latitude of the polar caps' edge, and 2/3 its sine.
#define HPSF_TRANSITION_LATITUDE 0.7297276562269663
#define HPSF_TRANSITION_Z (2.0 / 3.0)
#define HPSF_ONE_OVER_TRANSITION_Z 1.5
// Below this, 2 − |y| (√(3(1−|z|))) is taken as the pole in the unprojection.
#define HPSF_EPS_POLE 1e-13
#define HPSF_SIGN_BIT 0x8000000000000000ull
#define HPSF_ABS_BITS 0x7FFFFFFFFFFFFFFFull
// WGS84 flattening, as src/geometry/latitude.rs spells it.
#define HPSF_WGS84_F (1.0 / 298.257223563)

/// The bits of a double (Rust's `to_bits`).
HPSF_HD uint64_t hpsf_to_bits(double x) {
    union {
        double d;
        uint64_t u;
    } v;
    v.d = x;
    return v.u;
}

/// The double of some bits (Rust's `from_bits`).
HPSF_HD double hpsf_from_bits(uint64_t u) {
    union {
        double d;
        uint64_t u;
    } v;
    v.u = u;
    return v.d;
}

/// Rust's `x as u8`: truncation towards zero, saturating at 0 and 255, NaN → 0 (a plain C cast of
/// an out-of-range value is undefined).
HPSF_HD uint8_t hpsf_as_u8(double x) {
    if (!(x > 0.0)) return 0;
    if (x >= 256.0) return 255;
    return (uint8_t)x;
}

/// Rust's `x as u32`: truncation towards zero, saturating at 0 and 2³²−1, NaN → 0.
HPSF_HD uint32_t hpsf_as_u32(double x) {
    if (!(x > 0.0)) return 0;
    if (x >= 4294967296.0) return 0xFFFFFFFFu;
    return (uint32_t)x;
}

/// Rust's `f64::clamp` (a NaN passes through).
HPSF_HD double hpsf_clamp_f64(double x, double lo, double hi) {
    if (x < lo) x = lo;
    if (x > hi) x = hi;
    return x;
}

/// ⌊v / 2⌋ of a signed value (Rust's `>> 1` on i64), without relying on C's shift of negatives.
HPSF_HD int64_t hpsf_floor_half(int64_t v) { return v >= 0 ? v / 2 : -((1 - v) / 2); }

/// Rust's `f64::rem_euclid` for m > 0: the remainder in [0, m] (it can round up to m itself).
/// Within (−m, m), fmod(x, m) is x itself, so the common case skips the (slow) fmod.
HPSF_HD double hpsf_rem_euclid(double x, double m) {
    double r = (x > -m && x < m) ? x : fmod(x, m);
    return r < 0.0 ? r + m : r;
}

/// Rust's `f64::to_radians`: one product with the constant π/180.
HPSF_HD double hpsf_to_radians(double deg) { return hpsf_mul(deg, HPSF_PI / 180.0); }

/// nside = 2^depth.
HPSF_HD uint64_t hpsf_nside(int depth) { return (uint64_t)1 << depth; }

/// Number of cells at a depth, 12·4^depth.
HPSF_HD uint64_t hpsf_n_cells(int depth) { return (uint64_t)12 << (2 * depth); }

/// Spreads the bits of v to the even bits of the result (bit k → bit 2k): one axis of the z-order
/// curve that numbers the cells inside a base cell.
HPSF_HD uint64_t hpsf_spread_bits(uint32_t v) {
    uint64_t x = v;
    x = (x | (x << 16)) & 0x0000FFFF0000FFFFull;
    x = (x | (x << 8)) & 0x00FF00FF00FF00FFull;
    x = (x | (x << 4)) & 0x0F0F0F0F0F0F0F0Full;
    x = (x | (x << 2)) & 0x3333333333333333ull;
    x = (x | (x << 1)) & 0x5555555555555555ull;
    return x;
}

/// The inverse of hpsf_spread_bits: the even bits of x packed together.
HPSF_HD uint32_t hpsf_compact_bits(uint64_t x) {
    x &= 0x5555555555555555ull;
    x = (x | (x >> 1)) & 0x3333333333333333ull;
    x = (x | (x >> 2)) & 0x0F0F0F0F0F0F0F0Full;
    x = (x | (x >> 4)) & 0x00FF00FF00FF00FFull;
    x = (x | (x >> 8)) & 0x0000FFFF0000FFFFull;
    x = (x | (x >> 16)) & 0x00000000FFFFFFFFull;
    return (uint32_t)x;
}

/// A nested id taken apart: base cell d0h (0..11) and the coordinates (i, j) inside it, i along the
/// south → east axis, j along south → west, each in [0, nside).
struct hpsf_cell_parts {
    uint32_t d0h;
    uint32_t i;
    uint32_t j;
};

/// The nested id of base cell d0h and (i, j) inside it (i on the even bits, j on the odd ones).
HPSF_HD uint64_t hpsf_build_nested(int depth, uint32_t d0h, uint32_t i, uint32_t j) {
    uint64_t ij = depth == 0 ? 0 : hpsf_spread_bits(i) | (hpsf_spread_bits(j) << 1);
    return ((uint64_t)d0h << (2 * depth)) | ij;
}

/// The base cell and (i, j) of a nested id.
HPSF_HD hpsf_cell_parts hpsf_decode_nested(int depth, uint64_t id) {
    uint64_t xy = id & ((hpsf_nside(depth) * hpsf_nside(depth)) - 1);
    hpsf_cell_parts p;
    p.d0h = (uint32_t)(id >> (2 * depth));
    p.i = hpsf_compact_bits(xy);
    p.j = hpsf_compact_bits(xy >> 1);
    return p;
}

/// A position projected into its base cell: the base cell and the coordinates from its south
/// vertex, l west → east in [−1, 1] and h south → north in [0, 2].
struct hpsf_base_position {
    uint32_t d0h;
    double l;
    double h;
};

/// cdshealpix's `xpm1_and_q`: the longitude as x in [−1, 1] around the centre of its quarter of the
/// sphere and that quarter q (0..3), so that lon = (x + 1)·π/4 + q·π/2 modulo 2π. A negative
/// longitude (a set sign bit, so −0.0 too) is counted from 2π downwards.
HPSF_HD double hpsf_lon_in_quarter(double lon, uint32_t *quarter) {
    uint64_t bits = hpsf_to_bits(lon);
    double x = hpsf_mul(hpsf_from_bits(bits & HPSF_ABS_BITS), HPSF_FOUR_OVER_PI);
    uint32_t q = hpsf_as_u8(x) | 1u;
    if ((bits & HPSF_SIGN_BIT) == 0) {
        *quarter = (q & 7u) >> 1;
        return x - (double)q;
    }
    *quarter = 3u - ((q & 7u) >> 1);
    return (double)q - x;
}

/// cdshealpix's `d0h_lh_in_d0c`: the base cell of (lon, lat) (radians, lat in [−π/2, π/2]) and the
/// position inside it — Collignon in the polar caps, cylindrical equal-area in between. On the
/// equatorial diagonals the south-east and south-west edges belong to the cell (cdshealpix's
/// inequalities, kept as they are).
HPSF_HD hpsf_base_position hpsf_project_in_base_cell(double lon, double lat) {
    uint32_t q;
    double x = hpsf_lon_in_quarter(lon, &q);
    hpsf_base_position p;
    if (lat > HPSF_TRANSITION_LATITUDE) {
        double s = hpsf_mul(HPSF_SQRT6, hpsf_cos(0.5 * lat + HPSF_FRAC_PI_4));
        p.d0h = q;
        p.l = hpsf_mul(x, s);
        p.h = 2.0 - s;
    } else if (lat < -HPSF_TRANSITION_LATITUDE) {
        double s = hpsf_mul(HPSF_SQRT6, hpsf_cos(0.5 * lat - HPSF_FRAC_PI_4));
        p.d0h = q + 8u;
        p.l = hpsf_mul(x, s);
        p.h = s;
    } else {
        double y = hpsf_mul(hpsf_sin(lat), HPSF_ONE_OVER_TRANSITION_Z);
        uint32_t q01 = x > y ? 1u : 0u;
        uint32_t q12 = x >= -y ? 1u : 0u;
        uint32_t q1 = q01 & q12;
        uint32_t q013 = q01 + (1u - q12);
        p.l = x - (double)((int32_t)(q01 + q12) - 1);
        p.h = y + (double)q013;
        p.d0h = (q013 << 2) + ((q + q1) & 3u);
    }
    return p;
}

/// v·2^(depth−1) as cdshealpix computes it: by adding depth−1 to the exponent bits (wrapping, as
/// Rust's release build does), then Rust's saturating `as u32`.
HPSF_HD uint32_t hpsf_scaled_index(int depth, double v) {
    uint64_t bits = hpsf_to_bits(v) + ((uint64_t)depth << 52) - ((uint64_t)1 << 52);
    return hpsf_as_u32(hpsf_from_bits(bits));
}

/// The nested id at `depth` (0..29) of the point (lon, lat) on the HEALPix sphere, radians, lat in
/// [−π/2, π/2], any finite lon: cdshealpix's `Layer::hash`, bit for bit.
HPSF_HD uint64_t hpsf_hash_nested(int depth, double lon, double lat) {
    hpsf_base_position p = hpsf_project_in_base_cell(lon, lat);
    uint32_t nside = (uint32_t)hpsf_nside(depth);
    uint32_t i = hpsf_scaled_index(depth, p.h + p.l);
    uint32_t j = hpsf_scaled_index(depth, p.h - p.l);
    // rounding can put a point on the far edge of its base cell
    if (i == nside) i = nside - 1;
    if (j == nside) j = nside - 1;
    return hpsf_build_nested(depth, p.d0h, i, j);
}

/// cdshealpix's `unproj`: the (lon, lat) in radians of the projection-plane point (x, y), x in
/// [0, 8] → lon in [0, 2π], y in [−2, 2].
HPSF_HD void hpsf_unproject(double x, double y, double *lon, double *lat) {
    uint64_t xb = hpsf_to_bits(x);
    uint64_t yb = hpsf_to_bits(y);
    double x_abs = hpsf_from_bits(xb & HPSF_ABS_BITS);
    double y_abs = hpsf_from_bits(yb & HPSF_ABS_BITS);
    uint32_t odd = hpsf_as_u8(x_abs) | 1u;
    double a = x_abs - (double)odd;
    double b;
    if (y_abs <= 1.0) {
        // cylindrical equal-area
        b = hpsf_asin(hpsf_mul(y_abs, HPSF_TRANSITION_Z));
    } else {
        // Collignon; at the pole itself a stays 0 (no division by 0)
        b = 2.0 - y_abs;
        if (b > HPSF_EPS_POLE) a = hpsf_clamp_f64(a / b, -1.0, 1.0);
        b = hpsf_mul(b, HPSF_ONE_OVER_SQRT6);
        b = 2.0 * hpsf_acos(b) - HPSF_FRAC_PI_2;
    }
    a += (double)(odd & 7u);
    a = hpsf_from_bits(hpsf_to_bits(a) | (xb & HPSF_SIGN_BIT));
    b = hpsf_from_bits(hpsf_to_bits(b) | (yb & HPSF_SIGN_BIT));
    *lon = hpsf_mul(a, HPSF_FRAC_PI_4);
    *lat = b;
}

/// The centre of nested cell `id` at `depth` on the HEALPix sphere, radians, lon in [0, 2π]:
/// cdshealpix's `Layer::center`, bit for bit (its centre in the projection plane, unprojected).
HPSF_HD void hpsf_center_nested(int depth, uint64_t id, double *lon, double *lat) {
    hpsf_cell_parts c = hpsf_decode_nested(depth, id);
    // exact: a power of two
    double step = 1.0 / (double)hpsf_nside(depth);
    int32_t u = (int32_t)c.i - (int32_t)c.j;
    int32_t v = (int32_t)(c.i + c.j) - (int32_t)(hpsf_nside(depth) - 1);
    int32_t off_y = 1 - (int32_t)(c.d0h >> 2);
    int32_t off_x = (int32_t)((c.d0h & 3u) << 1) | (off_y & 1);
    double x = (double)u * step + (double)off_x;
    double y = (double)v * step + (double)off_y;
    // west of 0 (base cell 4 only): shift by 8, i.e. 2π
    x += (double)((hpsf_to_bits(x) & HPSF_SIGN_BIT) >> 60);
    hpsf_unproject(x, y, lon, lat);
}

/// Σ_{j=1..6} c[j−1]·sin(j·arg) by Clenshaw's recurrence (arg = 2φ). The sum is a correction of
/// at most 0.0023 rad to the latitude, so its rounding (products not fused) stays far below an ulp
/// of the result.
HPSF_HD double hpsf_clenshaw_sin(double arg, const double *c) {
    double s, co;
    hpsf_sincos(arg, &s, &co);
    double x = 2.0 * co;
    double c0 = 0.0, c1 = 0.0;
    for (int j = 5; j >= 0; --j) {
        double next = hpsf_mul(x, c0) + (c[j] - c1);
        c1 = c0;
        c0 = next;
    }
    return hpsf_mul(s, c0);
}

// The series coefficients (times sin 2jφ, j = 1..6) of the WGS84 latitude conversions, Karney
// (2022) eqs. A19 (geodetic → authalic) and A20 (authalic → geodetic): n·P_j(n) with n = f/(2 − f),
// each polynomial P_j summed by Horner's rule with fused multiply-adds. The tests of
// src/geometry/portable.rs derive them again from Karney's rational coefficients.
#define HPSF_AUTHALIC_SERIES                                                                                   \
    {-0.0022392098386786398, 2.1308606513250225e-06, -2.5592576864212754e-09, 3.3701965267802857e-12,   \
     -4.6675453126112518e-15, 6.674928703848165e-18}
#define HPSF_GEODETIC_SERIES                                                                                  \
    {0.0022392089963541662, 2.8831978048607564e-06, 5.0862207399726627e-09, 1.0201812377816107e-11,     \
     2.1944891483317948e-14, 4.9284235482523842e-17}

/// The authalic latitude (radians) of the WGS84 geodetic latitude phi (radians), not clamped.
HPSF_HD double hpsf_geodetic_to_authalic(double phi) {
    const double c[6] = HPSF_AUTHALIC_SERIES;
    return phi + hpsf_clenshaw_sin(2.0 * phi, c);
}

/// The WGS84 geodetic latitude (radians) of the authalic latitude xi.
HPSF_HD double hpsf_authalic_to_geodetic(double xi) {
    const double c[6] = HPSF_GEODETIC_SERIES;
    return xi + hpsf_clenshaw_sin(2.0 * xi, c);
}

/// The nested id of a sample given in degrees, as the crate's `Grid::hash_nested` computes it: the
/// longitude wrapped into [0, 360] (`rem_euclid`), both converted to radians, the latitude mapped
/// to the authalic one and clamped to [−π/2, π/2] when `wgs84` (else used as it is), then hashed.
/// lat_deg must lie in [−90, 90], lon_deg be finite.
HPSF_HD uint64_t hpsf_hash_geodetic(int depth, double lon_deg, double lat_deg, int wgs84) {
    double lon = hpsf_to_radians(hpsf_rem_euclid(lon_deg, 360.0));
    double lat = hpsf_to_radians(lat_deg);
    if (wgs84) lat = hpsf_clamp_f64(hpsf_geodetic_to_authalic(lat), -HPSF_FRAC_PI_2, HPSF_FRAC_PI_2);
    return hpsf_hash_nested(depth, lon, lat);
}

/// The centre of nested cell `id` as the crate's `Grid::center_nested_rad` gives it: longitude in
/// [0, 2π) (`rem_euclid(τ)`), geodetic latitude when `wgs84` (else the sphere's), radians.
HPSF_HD void hpsf_center_geodetic(int depth, uint64_t id, int wgs84, double *lon, double *lat) {
    double xi;
    hpsf_center_nested(depth, id, lon, &xi);
    *lon = hpsf_rem_euclid(*lon, 2.0 * HPSF_PI);
    *lat = wgs84 ? hpsf_authalic_to_geodetic(xi) : xi;
}

/// 4·(1 + 2 + … + n) = 2n(n+1): the number of cells in the first n rings of a polar cap.
HPSF_HD uint64_t hpsf_triangular_x4(uint64_t n) { return (n * (n + 1)) << 1; }

/// The first ring id of the equatorial region, 2·nside·(nside+1).
HPSF_HD uint64_t hpsf_first_equatorial_ring_id(int depth) {
    return (((uint64_t)1 << (2 * depth)) + hpsf_nside(depth)) << 1;
}

/// The ring id of nested cell `id` at `depth`: cdshealpix's `Layer::to_ring`. Rings count from the
/// north pole; in a base cell the ring of (i, j) is set by i + j, the place in the ring by i − j.
HPSF_HD uint64_t hpsf_nested_to_ring(int depth, uint64_t id) {
    hpsf_cell_parts c = hpsf_decode_nested(depth, id);
    uint64_t nside = hpsf_nside(depth);
    uint64_t h = (uint64_t)c.i + (uint64_t)c.j;
    int64_t l = (int64_t)c.i - (int64_t)c.j;
    uint64_t i_d0h = c.d0h & 3u;
    uint64_t j_d0h = c.d0h >> 2;
    uint64_t ring = ((j_d0h + 2) << depth) - (h + 2);
    int64_t in_ring = hpsf_floor_half(l);
    uint64_t first;
    if (ring < nside) {
        // north polar cap
        uint64_t ip1 = ring + 1;
        first = (ring * ip1) << 1;
        in_ring += (int64_t)((ip1 >> 1) + ip1 * i_d0h);
    } else if (ring >= (3 * nside) - 1) {
        // south polar cap
        uint64_t ip1 = h + 1;
        first = hpsf_n_cells(depth) - hpsf_triangular_x4(ip1);
        in_ring += (int64_t)((ip1 >> 1) + ip1 * i_d0h);
    } else {
        // equatorial region; base cell 4 straddles lon = 0
        first = hpsf_first_equatorial_ring_id(depth) + ((ring - nside) << (depth + 2));
        in_ring += (int64_t)((((j_d0h + 1) & 1) << depth) >> 1);
        in_ring += (int64_t)((c.d0h == 4 && l < 0 ? 4 : i_d0h) << depth);
    }
    return (uint64_t)in_ring + first;
}

/// cdshealpix's `depth0_hash_unsafe`: the base cell whose (i, j) in the 45°-rotated plane of the
/// equatorial region are (i, j) — the base cells numbered from the rotated grid.
HPSF_HD uint32_t hpsf_base_cell_from_ij(uint32_t i, uint32_t j) {
    int32_t k = 5 - (int32_t)(i + j);
    int32_t wrap = (k - 1) < 0 ? -1 : 0;
    return (uint32_t)(uint8_t)(k * 4 + (((int32_t)i + wrap) & 3));
}

/// The ring index in a polar cap of the count `x` of cells before it: ⌊(√(1 + 2x) − 1)/2⌋ in
/// double precision, as cdshealpix computes it.
HPSF_HD uint64_t hpsf_polar_ring(uint64_t x) { return ((uint64_t)sqrt((double)(1 + (x << 1))) - 1) >> 1; }

/// The nested id of ring cell `id` at `depth`: cdshealpix's `Layer::from_ring`.
HPSF_HD uint64_t hpsf_ring_to_nested(int depth, uint64_t id) {
    uint64_t nside = hpsf_nside(depth);
    uint64_t first_eqr = hpsf_first_equatorial_ring_id(depth);
    if (id < first_eqr) {
        // north polar cap
        uint64_t ring = hpsf_polar_ring(id);
        uint64_t n_in_ring = ring + 1;
        uint64_t in_ring = id - hpsf_triangular_x4(ring);
        uint64_t d0h = in_ring / n_in_ring;
        int64_t h = (int64_t)((nside << 1) - 2) - (int64_t)ring;
        int64_t l = (int64_t)((in_ring - n_in_ring * d0h) << 1) - (int64_t)ring;
        return hpsf_build_nested(depth, (uint32_t)(uint8_t)d0h, (uint32_t)hpsf_floor_half(h + l),
                                 (uint32_t)hpsf_floor_half(h - l));
    }
    if (id >= hpsf_n_cells(depth) - first_eqr) {
        // south polar cap, counted backwards from the south pole
        uint64_t back = hpsf_n_cells(depth) - 1 - id;
        uint64_t ring = hpsf_polar_ring(back);
        uint64_t n_in_ring = ring + 1;
        uint64_t in_ring = ((n_in_ring << 2) - 1) - (back - hpsf_triangular_x4(ring));
        uint64_t d0h = in_ring / n_in_ring;
        int64_t h = (int64_t)ring;
        int64_t l = (int64_t)((in_ring - n_in_ring * d0h) << 1) - (int64_t)ring;
        return hpsf_build_nested(depth, (uint32_t)(uint8_t)(d0h + 8), (uint32_t)hpsf_floor_half(h + l),
                                 (uint32_t)hpsf_floor_half(h - l));
    }
    // equatorial region: rings of 4·nside cells, rotated back by −45° into base-cell coordinates
    uint64_t ring = (id - first_eqr) >> (depth + 2);
    uint64_t in_ring = (id - first_eqr) - (ring << (depth + 2));
    uint64_t l = (in_ring << 1) + (ring & 1);
    uint64_t h = ((nside << 1) - 2) - ring;
    uint64_t i_in = (h + l) >> 1;
    uint64_t j_in = (uint64_t)(hpsf_floor_half((int64_t)h - (int64_t)l) + (int64_t)(nside << 2));
    uint32_t d0h = hpsf_base_cell_from_ij((uint8_t)(i_in >> depth), (uint8_t)(j_in >> depth));
    uint32_t mask = (uint32_t)(nside - 1);
    return hpsf_build_nested(depth, d0h, (uint32_t)i_in & mask, (uint32_t)j_in & mask);
}

// ---------------------------------------------------------------------------------------------
// Neighbourhoods: the cells of the square of (2k+1)×(2k+1) cells around a cell, in the order
// cdshealpix 0.10.1's `Layer::kth_neighbourhood` lists them (the keep stage pads with the last one,
// so the order is part of the result). Cells are handed to a visitor, one at a time, so that a
// kernel needs no buffer.

/// The eight directions of the base cells around a base cell (cdshealpix's `MainWind` less C), in
/// the order `kth_neighbours_internal` visits them.
enum hpsf_wind { HPSF_S, HPSF_SW, HPSF_W, HPSF_NW, HPSF_N, HPSF_NE, HPSF_E, HPSF_SE };

/// cdshealpix's `to_neighbour_base_cell_coo`: the base cell in direction `dir` of base cell d0h and
/// the coordinates (i, j) — given in d0h's frame, possibly outside [0, nside) — in that cell's
/// frame. False where there is no base cell in that direction (the E and W corners of the polar
/// base cells, the N and S corners of the equatorial ones).
HPSF_HD bool hpsf_neighbour_base_cell(int depth, uint32_t d0h, int64_t i, int64_t j, int dir, uint32_t *d0h_out,
                                      int64_t *i_out, int64_t *j_out) {
    const int64_t n = (int64_t)hpsf_nside(depth);
    const int64_t m = 2 * n - 1;
    const uint32_t q = d0h & 3, prev = (q + 3) & 3, next = (q + 1) & 3, oppo = (q + 2) & 3;
    uint32_t cell;
    int64_t a, b;
    switch (d0h >> 2) {
    case 0: // north polar cap
        switch (dir) {
        case HPSF_S: cell = q + 4 * 2; a = n + i; b = n + j; break;
        case HPSF_SE: cell = next + 4 * 1; a = i; b = n + j; break;
        case HPSF_SW: cell = q + 4 * 1; a = n + i; b = j; break;
        case HPSF_NE: cell = next; a = j; b = m - i; break;
        case HPSF_NW: cell = prev; a = m - j; b = i; break;
        case HPSF_N: cell = oppo; a = m - i; b = m - j; break;
        default: return false;
        }
        break;
    case 1: // equatorial belt
        switch (dir) {
        case HPSF_SE: cell = q + 4 * 2; a = i; b = n + j; break;
        case HPSF_E: cell = next + 4 * 1; a = i - n; b = n + j; break;
        case HPSF_SW: cell = prev + 4 * 2; a = n + i; b = j; break;
        case HPSF_NE: cell = q; a = i - n; b = j; break;
        case HPSF_W: cell = prev + 4 * 1; a = n + i; b = j - n; break;
        case HPSF_NW: cell = prev; a = i; b = j - n; break;
        default: return false;
        }
        break;
    default: // south polar cap
        switch (dir) {
        case HPSF_S: cell = oppo + 4 * 2; a = -i - 1; b = -j - 1; break;
        case HPSF_SE: cell = next + 4 * 2; a = -j - 1; b = i; break;
        case HPSF_SW: cell = prev + 4 * 2; a = j; b = -i - 1; break;
        case HPSF_NE: cell = next + 4 * 1; a = i - n; b = j; break;
        case HPSF_NW: cell = q + 4 * 1; a = i; b = j - n; break;
        case HPSF_N: cell = q; a = i - n; b = j - n; break;
        default: return false;
        }
        break;
    }
    *d0h_out = cell;
    *i_out = a;
    *j_out = b;
    return true;
}

/// The border of the square of half-width k around (i, j) in base cell d0h, clipped to that base
/// cell — i, j may lie outside it — from S towards W, N, E (cdshealpix's `partial_compute`).
template <class Visit>
HPSF_HD void hpsf_square_border_in(int depth, uint32_t d0h, int64_t i, int64_t j, int64_t k, Visit &visit) {
    const int64_t n = (int64_t)hpsf_nside(depth);
    const int64_t x0 = i - k, x1 = i + k, y0 = j - k, y1 = j + k;
    const int64_t ylo = y0 > 0 ? y0 : 0, yhi = y1 < n ? y1 : n;             // [ylo, yhi)
    const int64_t xlo = x0 > 0 ? x0 : 0, xhi = x1 < n ? x1 : n;             // [xlo, xhi)
    const int64_t ylo1 = y0 + 1 > 0 ? y0 + 1 : 0, yhi1 = y1 < n - 1 ? y1 : n - 1; // [ylo1, yhi1]
    const int64_t xlo1 = x0 + 1 > 0 ? x0 + 1 : 0, xhi1 = x1 < n - 1 ? x1 : n - 1; // [xlo1, xhi1]
    if (x0 >= 0 && x0 < n)
        for (int64_t y = ylo; y < yhi; ++y) visit(hpsf_build_nested(depth, d0h, (uint32_t)x0, (uint32_t)y));
    if (y1 >= 0 && y1 < n)
        for (int64_t x = xlo; x < xhi; ++x) visit(hpsf_build_nested(depth, d0h, (uint32_t)x, (uint32_t)y1));
    if (x1 >= 0 && x1 < n)
        for (int64_t y = yhi1; y >= ylo1; --y) visit(hpsf_build_nested(depth, d0h, (uint32_t)x1, (uint32_t)y));
    if (y0 >= 0 && y0 < n)
        for (int64_t x = xhi1; x >= xlo1; --x) visit(hpsf_build_nested(depth, d0h, (uint32_t)x, (uint32_t)y0));
}

/// The cells at Chebyshev distance exactly k (1 ≤ k ≤ nside) from nested cell `id`, across base
/// cells where the square leaves its own: cdshealpix's `kth_neighbours_internal`, in its order.
template <class Visit>
HPSF_HD void hpsf_kth_ring(int depth, uint64_t id, uint32_t k, Visit &visit) {
    const hpsf_cell_parts c = hpsf_decode_nested(depth, id);
    const int64_t n = (int64_t)hpsf_nside(depth), i = c.i, j = c.j, kk = k;
    const bool sw = i - kk < 0, ne = i + kk >= n, se = j - kk < 0, nw = j + kk >= n;
    // whether the square crosses into the base cell in each direction, in the order visited
    const bool crosses[8] = {sw && se, sw, sw && nw, nw, nw && ne, ne, se && ne, se};
    for (int dir = HPSF_S; dir <= HPSF_SE; ++dir) {
        uint32_t d0h;
        int64_t a, b;
        if (crosses[dir] && hpsf_neighbour_base_cell(depth, c.d0h, i, j, dir, &d0h, &a, &b))
            hpsf_square_border_in(depth, d0h, a, b, kk, visit);
    }
    hpsf_square_border_in(depth, c.d0h, i, j, kk, visit);
}

/// The cells of the square of half-width k (0 ≤ k ≤ nside) around nested cell `id`, the cell first
/// then ring after ring: cdshealpix's `kth_neighbourhood`, in its order.
template <class Visit>
HPSF_HD void hpsf_kth_neighbourhood(int depth, uint64_t id, uint32_t k, Visit &visit) {
    visit(id);
    for (uint32_t r = 1; r <= k; ++r) hpsf_kth_ring(depth, id, r, visit);
}

/// An upper bound on the cells of a neighbourhood of half-width k: (2k + 1)².
HPSF_HD uint64_t hpsf_neighbourhood_capacity(uint32_t k) { return (2 * (uint64_t)k + 1) * (2 * (uint64_t)k + 1); }

#endif
