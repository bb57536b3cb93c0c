// The HEALPix geometry of healpix.h, the construction steps of construct.h and the elementary
// functions of pmath.h compiled for the host: the CPU path calls these (src/geometry/portable.rs),
// so that it computes what the CUDA kernels compile from the same source, bit for bit; the tests
// check them against cdshealpix and glibc (src/geometry/) and the crate's CPU stages
// (src/operator/portable.rs). Built in every configuration by build.rs (no CUDA needed), with
// -ffp-contract=off; no C++ runtime is used.
#include "construct.h"

extern "C" {

uint64_t hpsf_geo_hash_nested_host(int32_t depth, double lon_rad, double lat_rad) {
    return hpsf_hash_nested(depth, lon_rad, lat_rad);
}

uint64_t hpsf_geo_hash_geodetic_host(int32_t depth, double lon_deg, double lat_deg, int32_t wgs84) {
    return hpsf_hash_geodetic(depth, lon_deg, lat_deg, wgs84);
}

void hpsf_geo_center_nested_host(int32_t depth, uint64_t id, double *lon_rad, double *lat_rad) {
    hpsf_center_nested(depth, id, lon_rad, lat_rad);
}

void hpsf_geo_center_geodetic_host(int32_t depth, uint64_t id, int32_t wgs84, double *lon_rad, double *lat_rad) {
    hpsf_center_geodetic(depth, id, wgs84, lon_rad, lat_rad);
}

uint64_t hpsf_geo_nested_to_ring_host(int32_t depth, uint64_t id) { return hpsf_nested_to_ring(depth, id); }

uint64_t hpsf_geo_ring_to_nested_host(int32_t depth, uint64_t id) { return hpsf_ring_to_nested(depth, id); }

double hpsf_geo_geodetic_to_authalic_host(double phi) { return hpsf_geodetic_to_authalic(phi); }

double hpsf_geo_authalic_to_geodetic_host(double xi) { return hpsf_authalic_to_geodetic(xi); }

// The coefficients of the latitude series (geodetic → authalic when `authalic`, else the inverse).
void hpsf_geo_series_host(int32_t authalic, double *out) {
    const double a[6] = HPSF_AUTHALIC_SERIES, g[6] = HPSF_GEODETIC_SERIES;
    for (int j = 0; j < 6; ++j) out[j] = authalic ? a[j] : g[j];
}

// The longitude in radians that the hash of a sample at lon_deg starts from (wrap, then convert).
double hpsf_geo_lon_radians_host(double lon_deg) { return hpsf_to_radians(hpsf_rem_euclid(lon_deg, 360.0)); }
// The neighbourhood of half-width k of cell `id` (cdshealpix's order) into out[0..cap); returns how
// many cells it has (more than cap means some were not written).
uint64_t hpsf_geo_kth_neighbourhood_host(int32_t depth, uint64_t id, uint32_t k, uint64_t *out, uint64_t cap) {
    uint64_t count = 0;
    auto put = [&](uint64_t cell) {
        if (count < cap) out[count] = cell;
        ++count;
    };
    hpsf_kth_neighbourhood(depth, id, k, put);
    return count;
}

void hpsf_geo_unit_vector_host(double lon_rad, double lat_rad, double *out) { hpsf_unit_vector(lon_rad, lat_rad, out); }

// ---- pmath.h ----

double hpsf_pm_sin_host(double x) { return hpsf_sin(x); }
double hpsf_pm_cos_host(double x) { return hpsf_cos(x); }
double hpsf_pm_asin_host(double x) { return hpsf_asin(x); }
double hpsf_pm_acos_host(double x) { return hpsf_acos(x); }
double hpsf_pm_exp_host(double x) { return hpsf_exp(x); }
float hpsf_pm_expf_host(float x) { return hpsf_expf(x); }

// ---- construct.h ----

void hpsf_con_sample_xyz_host(double lon_deg, double lat_deg, double *out) { hpsf_sample_xyz(lon_deg, lat_deg, out); }

void hpsf_con_cell_xyz_host(int32_t depth, uint64_t id, int32_t wgs84, double *out) {
    hpsf_cell_xyz(depth, id, wgs84, out);
}

void hpsf_con_keep_candidates_host(int32_t depth, uint64_t cell, uint32_t ring_weight, uint64_t *out) {
    hpsf_keep_candidates(depth, cell, ring_weight, out);
}

double hpsf_con_weight_sum_host(const double *xyz, int64_t m, const double *c, double radius, double s2) {
    return hpsf_weight_sum(xyz, m, c, radius, s2);
}

// The shares of one distinct cell's candidates: shares[t] = the weight sum of its m samples (xyz)
// at the centre centres[3·row[t]], for t < len (one call per cell: the slots' sums overlap).
void hpsf_con_shares_host(const double *xyz, int64_t m, const double *centres, const uint32_t *row, int64_t len,
                          double radius, double s2, double *shares) {
    for (int64_t t = 0; t < len; ++t) shares[t] = hpsf_weight_sum(xyz, m, centres + 3 * (int64_t)row[t], radius, s2);
}

double hpsf_con_distance_host(double c2, double radius) { return hpsf_distance(c2, radius); }

// Adds to bins[0..=HPSF_AREA_FINE_DEPTH] the neighbouring pairs of n sample ids sorted at
// HPSF_AREA_FINE_DEPTH by the depth at which they first differ (hpsf_boundary_depth).
void hpsf_con_area_bins_host(const uint64_t *sorted, int64_t n, uint64_t *bins) {
    for (int64_t i = 1; i < n; ++i) {
        int t = hpsf_boundary_depth(sorted[i - 1], sorted[i]);
        if (t >= 0) ++bins[t];
    }
}

// The depth of the spacing estimate's buckets for n samples whose sorted ids have the bins above.
int32_t hpsf_con_area_depth_host(const uint64_t *bins, int64_t n) { return hpsf_area_depth(bins, n); }

int32_t hpsf_con_area_fine_depth_host(void) { return HPSF_AREA_FINE_DEPTH; }

// The spacing area of the sample at position p (unit vectors xyz, 3 per position) among the
// candidates near[0..m) (positions, in the order offered; p itself is skipped).
double hpsf_con_spacing_area_host(const double *xyz, const uint32_t *near, int64_t m, int64_t p, double radius) {
    return hpsf_spacing_area(xyz + 3 * p, radius, [&](auto offer) {
        for (int64_t i = 0; i < m; ++i)
            if ((int64_t)near[i] != p) offer(xyz + 3 * (int64_t)near[i]);
    });
}

int32_t hpsf_con_search_host(int32_t depth, uint32_t ring_init, uint32_t ring_max, int32_t npt, const uint64_t *nested,
                             const uint32_t *index, const double *xyz, int64_t len, uint64_t cell, const double *at,
                             double *best_c2, uint32_t *best_k) {
    hpsf_search_args a = {depth, ring_init, ring_max, npt};
    hpsf_kept kept = {nested, index, xyz, len};
    return hpsf_search_sample(&a, &kept, cell, at, best_c2, best_k);
}

int32_t hpsf_con_keep_block_host(void) { return HPSF_KEEP_BLOCK; }

uint32_t hpsf_con_link_key_host(int32_t h) { return hpsf_link_key(h); }

int64_t hpsf_con_row_start_host(const uint32_t *key, int64_t len, int64_t c) { return hpsf_row_start(key, len, c); }
}
