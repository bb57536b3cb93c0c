// The per-sample and per-cell steps of an operator's construction (SPEC §2), written once for the
// host and the device like healpix.h: unit vectors of samples and cell centres, the distance and
// the Gaussian weight (pmath.h's exp), the candidate cells of the keep stage and their weight sums,
// and the search for the npt nearest kept cells of a sample. The CUDA construction runs them one
// thread per distinct cell or sample; csrc/geometry_host.cpp compiles them for the host, where the
// CPU path calls the unit vectors, the distance and the weight sums (src/geometry/portable.rs,
// src/operator/keep.rs) and the tests of src/operator/portable.rs hold the rest to the crate's CPU
// stages (keep.rs, search.rs) — the same weight sums, cells, links and distances, bit for bit.
#ifndef HPSF_CONSTRUCT_H
#define HPSF_CONSTRUCT_H

#include "healpix.h"

/// The unit vector of (lon, lat), radians (the crate's `unit_vector`).
HPSF_HD void hpsf_unit_vector(double lon, double lat, double *out) {
    double sl, cl, sp, cp;
    hpsf_sincos(lon, &sl, &cl);
    hpsf_sincos(lat, &sp, &cp);
    out[0] = hpsf_mul(cp, cl);
    out[1] = hpsf_mul(cp, sl);
    out[2] = sp;
}

/// The unit vector of a sample in degrees as the crate computes it (longitude wrapped into
/// [0, 360], both converted to radians; the latitude as it is: geodetic on the WGS84 path).
HPSF_HD void hpsf_sample_xyz(double lon_deg, double lat_deg, double *out) {
    hpsf_unit_vector(hpsf_to_radians(hpsf_rem_euclid(lon_deg, 360.0)), hpsf_to_radians(lat_deg), out);
}

/// The unit vector of the centre of nested cell `id` (geodetic latitude when `wgs84`): the crate's
/// `Grid::center_nested_xyz`.
HPSF_HD void hpsf_cell_xyz(int depth, uint64_t id, int wgs84, double *out) {
    double lon, lat;
    hpsf_center_geodetic(depth, id, wgs84, &lon, &lat);
    hpsf_unit_vector(lon, lat, out);
}

/// The squared chord |a − b|² between unit vectors.
HPSF_HD double hpsf_chord2(const double *a, const double *b) {
    double dx = a[0] - b[0], dy = a[1] - b[1], dz = a[2] - b[2];
    return hpsf_mul(dx, dx) + hpsf_mul(dy, dy) + hpsf_mul(dz, dz);
}

/// Great-circle distance (m) from a squared chord, 2R·asin(|a − b|/2), with the crate's Taylor
/// series below 0.01 (`distance_from_chord2_m`).
HPSF_HD double hpsf_distance(double c2, double radius) {
    double x = hpsf_mul(0.5, sqrt(c2));
    double a;
    if (x < 0.01) {
        double t = hpsf_mul(x, x);
        double p = 5.0 / 112.0 + hpsf_mul(t, 35.0 / 1152.0);
        p = 3.0 / 40.0 + hpsf_mul(t, p);
        p = 1.0 / 6.0 + hpsf_mul(t, p);
        a = hpsf_mul(x, 1.0 + hpsf_mul(t, p));
    } else {
        a = hpsf_asin(x < 1.0 ? x : 1.0);
    }
    return hpsf_mul(hpsf_mul(2.0, radius), a);
}

/// The reference's Gaussian weight exp(−2d²/s²).
HPSF_HD double hpsf_gaussian(double d, double s2) { return hpsf_exp((-2.0 * hpsf_mul(d, d)) / s2); }

// ---- the keep stage ------------------------------------------------------------------------------

/// Distinct sample cells per block of the keep stage's sums: a candidate's shares are added per
/// block, then the block partials in block order (src/operator/samples.rs `BLOCK`, the same).
#define HPSF_KEEP_BLOCK 256

/// Candidate slots per distinct sample cell: (2·ring_weight + 1)².
HPSF_HD int64_t hpsf_keep_slots(uint32_t ring_weight) { return (int64_t)hpsf_neighbourhood_capacity(ring_weight); }

/// The candidate cells of a distinct sample cell: its neighbourhood of half-width ring_weight in
/// cdshealpix's order, padded to hpsf_keep_slots by repeating the last cell (the reference pads
/// with −1 and fills each −1 with the row's last entry). out holds hpsf_keep_slots ids.
HPSF_HD void hpsf_keep_candidates(int depth, uint64_t cell, uint32_t ring_weight, uint64_t *out) {
    const int64_t slots = hpsf_keep_slots(ring_weight);
    int64_t count = 0;
    auto put = [&](uint64_t c) {
        if (count < slots) out[count] = c;
        ++count;
    };
    hpsf_kth_neighbourhood(depth, cell, ring_weight, put);
    for (int64_t t = count; t < slots; ++t) out[t] = out[count - 1];
}

/// Σ over m samples (unit vectors, 3 each) of the Gaussian weight of their distance to the unit
/// vector c, in sample order: one slot's share of a candidate's weight sum.
HPSF_HD double hpsf_weight_sum(const double *xyz, int64_t m, const double *c, double radius, double s2) {
    double sum = 0.0;
    for (int64_t p = 0; p < m; ++p) sum += hpsf_gaussian(hpsf_distance(hpsf_chord2(xyz + 3 * p, c), radius), s2);
    return sum;
}

// ---- the search ------------------------------------------------------------------------------------

/// The kept cells as the search looks them up.
struct hpsf_kept {
    /// Nested ids, ascending.
    const uint64_t *nested;
    /// Keep index of each (the position in the operator's cell order).
    const uint32_t *index;
    /// Centre unit vectors by keep index, 3 each.
    const double *xyz;
    int64_t len;
};

/// The first of `len` ascending keys that is ≥ c (binary search).
template <typename K>
HPSF_HD int64_t hpsf_lower_bound(const K *key, int64_t len, K c) {
    int64_t lo = 0, hi = len;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (key[mid] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/// The keep index of nested cell `cell`, or −1 where it is not kept.
HPSF_HD int64_t hpsf_kept_find(const hpsf_kept *kept, uint64_t cell) {
    int64_t lo = hpsf_lower_bound(kept->nested, kept->len, cell);
    return (lo < kept->len && kept->nested[lo] == cell) ? (int64_t)kept->index[lo] : -1;
}

/// (c2, k) before (c2', k'): nearer, or as near and the lower cell index.
HPSF_HD bool hpsf_before(double c2, uint32_t k, double c2b, uint32_t kb) { return c2 < c2b || (c2 == c2b && k < kb); }

/// Offers a candidate to the list of the npt nearest so far (ascending, `*count` of them).
HPSF_HD void hpsf_offer(double c2, uint32_t k, double *best_c2, uint32_t *best_k, int *count, int npt) {
    if (*count == npt && !hpsf_before(c2, k, best_c2[npt - 1], best_k[npt - 1])) return;
    int j = *count < npt ? (*count)++ : npt - 1;
    while (j > 0 && hpsf_before(c2, k, best_c2[j - 1], best_k[j - 1])) {
        best_c2[j] = best_c2[j - 1];
        best_k[j] = best_k[j - 1];
        --j;
    }
    best_c2[j] = c2;
    best_k[j] = k;
}

/// What a search looks at.
struct hpsf_search_args {
    int depth;
    uint32_t ring_init;
    uint32_t ring_max;
    int npt;
};

/// The npt nearest kept cells of the sample at unit vector xyz in nested cell `cell` (SPEC
/// §2.3): among the kept cells of the neighbourhood of half-width r, for the first r from ring_init
/// to ring_max that holds npt of them (all of the last one's otherwise). best_c2/best_k (npt each)
/// get the squared chords and keep indices, nearest first (ties: the lower index); returns how many
/// were found (npt unless the row is partial). The CPU rebuilds each square; growing it ring by
/// ring offers the same cells, so the same npt win.
HPSF_HD int hpsf_search_sample(const hpsf_search_args *a, const hpsf_kept *kept, uint64_t cell, const double *xyz,
                               double *best_c2, uint32_t *best_k) {
    int count = 0;
    if (a->ring_init > a->ring_max) return 0;
    auto offer = [&](uint64_t c) {
        int64_t k = hpsf_kept_find(kept, c);
        if (k >= 0) hpsf_offer(hpsf_chord2(xyz, kept->xyz + 3 * k), (uint32_t)k, best_c2, best_k, &count, a->npt);
    };
    hpsf_kth_neighbourhood(a->depth, cell, a->ring_init, offer);
    for (uint32_t r = a->ring_init + 1; count < a->npt && r <= a->ring_max; ++r) hpsf_kth_ring(a->depth, cell, r, offer);
    return count;
}

// ---- the sample areas (Area::Spacing) --------------------------------------------------------------

/// The depth at which the samples are hashed first to choose the buckets of the spacing estimate.
#define HPSF_AREA_FINE_DEPTH 24

/// For two neighbouring ids of samples sorted at HPSF_AREA_FINE_DEPTH: the coarsest depth at which
/// their cells differ (they differ at every finer one too), or −1 when they share a cell.
HPSF_HD int hpsf_boundary_depth(uint64_t a, uint64_t b) {
    uint64_t x = a ^ b;
    if (x == 0) return -1;
    int hb = 63;
    while (!(x >> hb)) --hb;  // the highest differing bit
    int t = HPSF_AREA_FINE_DEPTH - hb / 2;
    return t > 0 ? t : 0;
}

/// The depth of the spacing estimate's buckets: the finest whose occupied cells hold ≥ 2 of the n
/// samples on average, from bins[t] = how many neighbouring pairs of sorted samples first differ at
/// depth t (hpsf_boundary_depth); 0 when none does.
HPSF_HD int hpsf_area_depth(const uint64_t *bins, int64_t n) {
    for (int l = HPSF_AREA_FINE_DEPTH; l >= 0; --l) {
        uint64_t distinct = 1;
        for (int t = 0; t <= l; ++t) distinct += bins[t];
        if ((double)n / (double)distinct >= 2.0) return l;
    }
    return 0;
}

/// Candidates kept per sample for the spacing estimate.
#define HPSF_AREA_CANDIDATES 12

/// a·b of two 3-vectors, products not fused.
HPSF_HD double hpsf_dot3(const double *a, const double *b) {
    return hpsf_mul(a[0], b[0]) + hpsf_mul(a[1], b[1]) + hpsf_mul(a[2], b[2]);
}

/// The unit direction of b in the tangent plane at a (both unit vectors).
HPSF_HD void hpsf_tangent(const double *a, const double *b, double *t) {
    double d = hpsf_dot3(a, b);
    for (int i = 0; i < 3; ++i) t[i] = b[i] - hpsf_mul(d, a[i]);
    double len = sqrt(hpsf_dot3(t, t));
    for (int i = 0; i < 3; ++i) t[i] = t[i] / len;
}

/// The spacing estimate of the area of the sample at unit vector `a` (src/operator/area.rs): of the
/// candidates that `visit` offers (`offer(xyz of q)`, q ≠ the sample itself), those at distance 0
/// are coincident, the 12 nearest others are kept (ties: the one offered first); q1 is the nearest,
/// q2 the nearest in a direction at least 45° from q1's; along each, the spacing is the mean of the
/// distances to the nearest sample on either side (one side alone at an edge), and the area the
/// product of the two spacings over (coincident samples + 1). NaN when no other sample is offered.
template <typename Visit>
HPSF_HD double hpsf_spacing_area(const double *a, double radius, Visit visit) {
    double c2s[HPSF_AREA_CANDIDATES] = {0.0};
    const double *at[HPSF_AREA_CANDIDATES] = {nullptr};
    int count = 0;
    int64_t coincident = 0;
    auto offer = [&](const double *b) {
        double c2 = hpsf_chord2(a, b);
        if (c2 == 0.0) {
            ++coincident;
            return;
        }
        if (count == HPSF_AREA_CANDIDATES && !(c2 < c2s[count - 1])) return;
        int j = count < HPSF_AREA_CANDIDATES ? count++ : count - 1;
        while (j > 0 && c2s[j - 1] > c2) {  // after the equal ones
            c2s[j] = c2s[j - 1];
            at[j] = at[j - 1];
            --j;
        }
        c2s[j] = c2;
        at[j] = b;
    };
    visit(offer);
    if (count == 0) return NAN;
    double u[HPSF_AREA_CANDIDATES][3], d[HPSF_AREA_CANDIDATES] = {0.0};
    for (int i = 0; i < count; ++i) {
        hpsf_tangent(a, at[i], u[i]);
        d[i] = hpsf_distance(c2s[i], radius);
    }
    const double cos45 = 0.70710678118654752440;
    // the nearest candidate in a direction that `ok` accepts (−1: none)
    auto nearest = [&](auto ok) {
        for (int i = 0; i < count; ++i)
            if (ok(u[i])) return i;
        return -1;
    };
    // the spacing along the direction of candidate i, given the nearest one on its other side
    auto across = [&](int i, int other) { return other < 0 ? d[i] : 0.5 * (d[i] + d[other]); };
    const double *u1 = u[0];
    double s1 = across(0, nearest([&](const double *v) { return hpsf_dot3(v, u1) < -cos45; }));
    int i2 = nearest([&](const double *v) { return fabs(hpsf_dot3(v, u1)) < cos45; });
    double s2 = s1;
    if (i2 >= 0) {
        const double *u2 = u[i2];
        s2 = across(i2, nearest([&](const double *v) {
                        return fabs(hpsf_dot3(v, u1)) < cos45 && hpsf_dot3(v, u2) < -cos45;
                    }));
    }
    return hpsf_mul(s1, s2) / (double)(coincident + 1);
}

// ---- the links by cell -------------------------------------------------------------------------

/// The sort key of a link to cell h (h < 0: no link, after every cell).
HPSF_HD uint32_t hpsf_link_key(int32_t h) { return h >= 0 ? (uint32_t)h : 0xFFFFFFFFu; }

/// Where row c (0..=k, k < 2^31) of the links by cell starts among the links sorted by key
/// (stably, so sample positions ascend within a cell).
HPSF_HD int64_t hpsf_row_start(const uint32_t *key, int64_t len, int64_t c) {
    return hpsf_lower_bound(key, len, (uint32_t)c);
}

#endif
