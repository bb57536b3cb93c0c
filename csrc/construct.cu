// An operator's construction on the GPU (SPEC §2): hashing, the keep stage, the search, the pruning
// and the links by cell, with the per-cell and per-sample steps of construct.h (the code the host tests hold to
// the CPU stages) and CUB's radix sorts, run-length encoding and integer scans between them. Every
// floating-point sum is a sequential loop of one thread in a fixed order: results do not depend on
// timing (no atomics; CUB is used only for sorts — stable — and integer or max reductions).
//
// hpsf_construct_run does the work and leaves the results on the device behind an opaque handle;
// hpsf_construct_fetch copies them (to device or host memory), hpsf_construct_free frees them. Counts handed to CUB
// are ints: a list that would reach 2^31 entries stops the construction with HPSF_ERR_TOO_LARGE.
//
// The keep stage's sums are added in the CPU's order (src/operator/keep.rs): each (distinct cell,
// slot)'s share, summed over the cell's samples in order; per candidate, the shares of each block of
// HPSF_KEEP_BLOCK distinct cells in (cell, slot) order; then the block partials in block order. With
// the portable exp and geometry (pmath.h) the sums, and so the kept cells, are the CPU's bit for bit.
#include <cub/cub.cuh>
#include <limits.h>

#include <memory>
#include <vector>

#include "common.cuh"

namespace {

// A device array freed (stream-ordered) when it goes out of scope, unless released.
template <typename T>
struct Dev {
    T *p = nullptr;
    int64_t len = 0;
    cudaStream_t st;
    explicit Dev(cudaStream_t s) : st(s) {}
    Dev(const Dev &) = delete;
    Dev &operator=(const Dev &) = delete;
    ~Dev() { reset(); }
    void reset() {
        if (p) cudaFreeAsync(p, st);
        p = nullptr;
        len = 0;
    }
    cudaError_t alloc(int64_t n) {
        reset();
        len = n;
        return cudaMallocAsync((void **)&p, (size_t)(n > 0 ? n : 1) * sizeof(T), st);
    }
    T *release() {
        T *q = p;
        p = nullptr;
        return q;
    }
};

#define HPSF_TRY(x)                        \
    do {                                   \
        cudaError_t e_ = (x);              \
        if (e_ != cudaSuccess) return e_; \
    } while (0)

// CUB's two-call pattern: the temporary storage asked for, then the call.
template <typename F>
cudaError_t with_temp(cudaStream_t st, F call) {
    size_t bytes = 0;
    HPSF_TRY(call((void *)nullptr, bytes));
    Dev<unsigned char> tmp(st);
    HPSF_TRY(tmp.alloc((int64_t)bytes));
    return call((void *)tmp.p, bytes);
}

template <typename T>
cudaError_t to_host(T *dst, const T *src, int64_t n, cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    HPSF_TRY(cudaMemcpyAsync(dst, src, (size_t)n * sizeof(T), cudaMemcpyDeviceToHost, st));
    return cudaStreamSynchronize(st);
}

// ---- kernels -------------------------------------------------------------------------------------

__global__ void hash_samples(const double *lon, const double *lat, int64_t n, int depth, int wgs84, uint64_t *keys,
                             uint32_t *idx) {
    HPSF_AT(i, n);
    keys[i] = hpsf_hash_geodetic(depth, lon[i], lat[i], wgs84);
    idx[i] = (uint32_t)i;
}

__global__ void sample_vectors(const double *lon, const double *lat, const uint32_t *order, int64_t n, double *xyz) {
    HPSF_AT(p, n);
    uint32_t i = order[p];
    hpsf_sample_xyz(lon[i], lat[i], xyz + 3 * p);
}

__global__ void keep_candidates(const uint64_t *unique, int64_t u0, int64_t count, int depth, uint32_t ring_weight,
                                uint64_t *cand) {
    HPSF_AT(u, count);
    hpsf_keep_candidates(depth, unique[u0 + u], ring_weight, cand + u * hpsf_keep_slots(ring_weight));
}

// The share of slot t of distinct cell u0 + u: the weight sum of the cell's samples at the slot's
// candidate (centre computed here).
__global__ void keep_shares(const uint64_t *cand, const int32_t *start, const int32_t *counts, int64_t u0,
                            int64_t count, int64_t slots, const double *xyz, int depth, int wgs84, double radius,
                            double s2, double *share) {
    HPSF_AT(q, count * slots);
    int64_t u = u0 + q / slots;
    double c[3];
    hpsf_cell_xyz(depth, cand[q], wgs84, c);
    share[q] = hpsf_weight_sum(xyz + 3 * (int64_t)start[u], counts[u], c, radius, s2);
}

// A run of the shares sorted by candidate starts at i: a new candidate or a new block of distinct
// cells (entry q belongs to block q / (slots·HPSF_KEEP_BLOCK) of a chunk that starts on a block).
__global__ void block_run_heads(const uint64_t *cand, const uint32_t *q, int64_t n, int64_t per_block,
                                uint8_t *head) {
    HPSF_AT(i, n);
    head[i] = i == 0 || cand[i] != cand[i - 1] || q[i] / per_block != q[i - 1] / per_block;
}

// Sum of each run (starts ascending, the last ending at n) of the shares taken through q, in order,
// and the run's candidate.
__global__ void block_run_sums(const uint64_t *cand, const uint32_t *q, const double *share, const uint32_t *start,
                               int64_t runs, int64_t n, uint64_t *out_cand, double *out_sum) {
    HPSF_AT(r, runs);
    int64_t end = r + 1 < runs ? start[r + 1] : n;
    double s = 0.0;
    for (int64_t i = start[r]; i < end; ++i) s += share[q[i]];
    out_cand[r] = cand[start[r]];
    out_sum[r] = s;
}

// ---- the spacing areas (src/operator/area.rs) ----

// For keys sorted at HPSF_AREA_FINE_DEPTH: bins[t] counts the i ≥ 1 whose cell first differs from
// the previous one's at depth t. Integer counts: the same in any order.
__global__ void boundary_depths(const uint64_t *k, int64_t n, unsigned long long *bins) {
    HPSF_AT(i, n);
    if (i == 0) return;
    int t = hpsf_boundary_depth(k[i - 1], k[i]);
    if (t >= 0) atomicAdd(&bins[t], 1ull);
}

// The spacing area of the sample at position p (sorted by (cell, index) at `depth`) among the
// samples of the cells of the square of half-width `ring` around its cell (all samples at depth 0),
// offered in the CPU's order: the square's cells in cdshealpix's order, positions ascending.
__global__ void spacing_areas_at(const double *xyz, const uint64_t *keys, const uint64_t *unique,
                                 const int32_t *start, int64_t nu, int64_t n, int depth, uint32_t ring, double radius,
                                 double *area) {
    HPSF_AT(p, n);
    auto offer_cell = [&](int64_t j, auto &offer) {
        int64_t end = j + 1 < nu ? (int64_t)start[j + 1] : n;
        for (int64_t q = start[j]; q < end; ++q)
            if (q != p) offer(xyz + 3 * q);
    };
    if (depth == 0) {
        area[p] = hpsf_spacing_area(xyz + 3 * p, radius, [&](auto offer) {
            for (int64_t q = 0; q < n; ++q)
                if (q != p) offer(xyz + 3 * q);
        });
        return;
    }
    const uint64_t cell = keys[p];
    area[p] = hpsf_spacing_area(xyz + 3 * p, radius, [&](auto offer) {
        auto per_cell = [&](uint64_t c) {
            int64_t j = hpsf_lower_bound(unique, nu, c);
            if (j < nu && unique[j] == c) offer_cell(j, offer);
        };
        hpsf_kth_neighbourhood(depth, cell, ring, per_cell);
    });
}

// v + 0 (−0 becomes +0, the same latitude).
__global__ void plus_zero(double *v, int64_t n) {
    HPSF_AT(i, n);
    v[i] = v[i] + 0.0;
}

// 1 where a sorted value differs from the previous one (and for the first).
__global__ void new_value_flags(const double *v, int64_t n, int32_t *flag) {
    HPSF_AT(i, n);
    flag[i] = i == 0 || v[i] != v[i - 1];
}

__global__ void finite_flags(const double *v, int64_t n, uint8_t *flag) {
    HPSF_AT(i, n);
    flag[i] = isfinite(v[i]) ? 1 : 0;
}

// out[order[p]] = area[p], or `fill` where it is not finite.
__global__ void fill_and_scatter(const double *area, const uint32_t *order, int64_t n, double fill, double *out) {
    HPSF_AT(p, n);
    double v = area[p];
    out[order[p]] = isfinite(v) ? v : fill;
}

// Sum of each run of values (runs given by offset and length), in order.
__global__ void run_sums(const double *v, const int32_t *off, const int32_t *len, int64_t runs, double *out) {
    HPSF_AT(r, runs);
    double s = 0.0;
    for (int32_t q = off[r]; q < off[r] + len[r]; ++q) s += v[q];
    out[r] = s;
}

__global__ void at_least(const double *v, int64_t n, double threshold, uint8_t *flag) {
    HPSF_AT(i, n);
    flag[i] = v[i] >= threshold;
}

__global__ void iota(uint32_t *v, int64_t n) {
    HPSF_AT(i, n);
    v[i] = (uint32_t)i;
}

__global__ void ring_ids(const uint64_t *nested, int64_t n, int depth, uint64_t *ring) {
    HPSF_AT(i, n);
    ring[i] = hpsf_nested_to_ring(depth, nested[i]);
}

// Kept cell k is kept_nested[perm[k]] (perm == NULL: k): its centre, its scheme id, and the keep
// index of the kept cell at position perm[k] of the ascending nested ids.
__global__ void keep_index(const uint64_t *kept_nested, const uint32_t *perm, int64_t n, int depth, int wgs84,
                           const uint64_t *scheme_sorted, uint32_t *index_of, uint64_t *scheme, double *kxyz) {
    HPSF_AT(k, n);
    int64_t j = perm ? (int64_t)perm[k] : k;
    index_of[j] = (uint32_t)k;
    scheme[k] = scheme_sorted ? scheme_sorted[k] : kept_nested[k];
    hpsf_cell_xyz(depth, kept_nested[j], wgs84, kxyz + 3 * k);
}

// The links of sample position p: keep indices in hi (−1 past the found ones), squared chords in
// c2; partial/empty flags.
__global__ void search(hpsf_search_args a, hpsf_kept kept, const uint64_t *cells, const double *xyz, int64_t n,
                       int32_t *hi, double *c2, int32_t *partial, int32_t *empty) {
    HPSF_AT(p, n);
    int npt = a.npt;
    uint32_t *k = (uint32_t *)(hi + p * npt);
    int found = hpsf_search_sample(&a, &kept, cells[p], xyz + 3 * p, c2 + p * npt, k);
    for (int t = found; t < npt; ++t) hi[p * npt + t] = -1;
    partial[p] = found < npt;
    empty[p] = found == 0;
}

__global__ void mark_used(const int32_t *hi, int64_t links, int32_t *used) {
    HPSF_AT(q, links);
    if (hi[q] >= 0) used[hi[q]] = 1;  // the same value from every writer: no race on the result
}

// Links renumbered to the pruned cells (the weights kernels recompute their distances).
__global__ void renumber_links(int32_t *hi, int64_t links, const int32_t *new_index) {
    HPSF_AT(q, links);
    int32_t h = hi[q];
    if (h >= 0) hi[q] = new_index[h];
}

__global__ void pruned_cells(const int32_t *used, const int32_t *new_index, const uint64_t *scheme, const double *kxyz,
                             int64_t n, uint64_t *cell_ids, double *cell_xyz) {
    HPSF_AT(k, n);
    if (!used[k]) return;
    int32_t c = new_index[k];
    cell_ids[c] = scheme[k];
    for (int x = 0; x < 3; ++x) cell_xyz[3 * c + x] = kxyz[3 * k + x];
}

// Each link's sort key (its cell; no link: UINT32_MAX, after every cell) and sample position.
__global__ void link_keys(const int32_t *hi, int64_t links, int npt, uint32_t *key, uint32_t *pos) {
    HPSF_AT(q, links);
    key[q] = hpsf_link_key(hi[q]);
    pos[q] = (uint32_t)(q / npt);
}

// ptr[c] = the first sorted link of cell c or after (c = 0..k): the CSR row offsets.
__global__ void cell_offsets(const uint32_t *key, int64_t links, int64_t k, int64_t *ptr) {
    HPSF_AT(c, k + 1);
    ptr[c] = hpsf_row_start(key, links, c);
}

// ---- steps ---------------------------------------------------------------------------------------

// The runs of equal keys of a sorted list of n (< 2^31) keys: their keys, lengths and starts (the
// exclusive sums of the lengths), and how many there are (*count).
cudaError_t runs_of(const uint64_t *keys, int64_t n, Dev<uint64_t> &unique, Dev<int32_t> &len, Dev<int32_t> &start,
                    int32_t *count, cudaStream_t st) {
    const int ni = (int)n;
    Dev<int32_t> nruns(st);
    HPSF_TRY(unique.alloc(n));
    HPSF_TRY(len.alloc(n));
    HPSF_TRY(nruns.alloc(1));
    HPSF_TRY(with_temp(st, [&](void *t, size_t &b) {
        return cub::DeviceRunLengthEncode::Encode(t, b, keys, unique.p, len.p, nruns.p, ni, st);
    }));
    HPSF_TRY(to_host(count, nruns.p, 1, st));
    const int32_t r = *count;
    HPSF_TRY(start.alloc(r));
    return with_temp(st, [&](void *t, size_t &b) { return cub::DeviceScan::ExclusiveSum(t, b, len.p, start.p, r, st); });
}

// Runs of equal keys of a (key, value) list, stably sorted by key, and the sum of each run's values
// in list order: the distinct keys (ascending) and their sums.
cudaError_t sum_by_key(const uint64_t *keys, const double *vals, int64_t n, int end_bit, Dev<uint64_t> &out_keys,
                       Dev<double> &out_sums, int64_t *runs, cudaStream_t st) {
    if (n >= INT_MAX) return (cudaError_t)HPSF_ERR_TOO_LARGE;
    Dev<uint64_t> k2(st);
    Dev<double> v2(st);
    HPSF_TRY(k2.alloc(n));
    HPSF_TRY(v2.alloc(n));
    int ni = (int)n;
    HPSF_TRY(with_temp(st, [&](void *t, size_t &b) {
        return cub::DeviceRadixSort::SortPairs(t, b, keys, k2.p, vals, v2.p, ni, 0, end_bit, st);
    }));
    Dev<uint64_t> unique(st);
    Dev<int32_t> len(st), off(st);
    int32_t r = 0;
    HPSF_TRY(runs_of(k2.p, n, unique, len, off, &r, st));
    // the outputs hold exactly the r runs
    HPSF_TRY(out_keys.alloc(r));
    HPSF_TRY(out_sums.alloc(r));
    if (r > 0) {
        HPSF_TRY(cudaMemcpyAsync(out_keys.p, unique.p, r * sizeof(uint64_t), cudaMemcpyDeviceToDevice, st));
        run_sums<<<HPSF_ON(r, st)>>>(v2.p, off.p, len.p, r, out_sums.p);
    }
    *runs = r;
    return cudaGetLastError();
}

// The keep stage's block partials of one chunk (n = cells·slots shares of whole blocks): per
// (candidate, block) the shares in (cell, slot) order, listed by candidate and then block.
cudaError_t block_partials(const uint64_t *cand, const double *share, int64_t n, int64_t slots, int end_bit,
                           Dev<uint64_t> &out_cand, Dev<double> &out_sum, int64_t *runs, cudaStream_t st) {
    if (n >= INT_MAX) return (cudaError_t)HPSF_ERR_TOO_LARGE;
    const int ni = (int)n;
    Dev<uint32_t> q0(st), q(st);
    Dev<uint64_t> sorted(st);
    HPSF_TRY(q0.alloc(n));
    HPSF_TRY(q.alloc(n));
    HPSF_TRY(sorted.alloc(n));
    iota<<<HPSF_ON(n, st)>>>(q0.p, n);
    HPSF_TRY(with_temp(st, [&](void *t, size_t &b) {
        return cub::DeviceRadixSort::SortPairs(t, b, cand, sorted.p, q0.p, q.p, ni, 0, end_bit, st);
    }));
    Dev<uint8_t> head(st);
    Dev<uint32_t> start(st);
    Dev<int32_t> nruns(st);
    HPSF_TRY(head.alloc(n));
    HPSF_TRY(start.alloc(n));
    HPSF_TRY(nruns.alloc(1));
    block_run_heads<<<HPSF_ON(n, st)>>>(sorted.p, q.p, n, slots * HPSF_KEEP_BLOCK, head.p);
    HPSF_TRY(with_temp(st, [&](void *t, size_t &b) {
        return cub::DeviceSelect::Flagged(t, b, q0.p, head.p, start.p, nruns.p, ni, st);  // q0: 0, 1, 2, …
    }));
    q0.reset();
    int32_t r = 0;
    HPSF_TRY(to_host(&r, nruns.p, 1, st));
    HPSF_TRY(out_cand.alloc(r));
    HPSF_TRY(out_sum.alloc(r));
    if (r > 0) block_run_sums<<<HPSF_ON(r, st)>>>(sorted.p, q.p, share, start.p, r, n, out_cand.p, out_sum.p);
    *runs = r;
    return cudaGetLastError();
}

}  // namespace

struct hpsf_construction {
    int64_t n, k, nnz;
    int npt;
    uint32_t *order;
    double *xyz;
    int32_t *hi;
    uint64_t *cell_ids;
    double *cell_xyz;
    int64_t *ptr;
    uint32_t *sample;
    cudaStream_t st;
};

namespace {

// The distinct sample cells and the keep stage: candidate cells and their weight sums.
cudaError_t keep_stage(const hpsf_construct_args *a, const uint64_t *keys, const double *xyz, int64_t n,
                       Dev<uint64_t> &cands, Dev<double> &sums, hpsf_construct_sizes *sz, cudaStream_t st) {
    const int end_bit = 2 * a->depth + 4;
    Dev<uint64_t> unique(st);
    Dev<int32_t> counts(st), start(st);
    int32_t u = 0;
    HPSF_TRY(runs_of(keys, n, unique, counts, start, &u, st));
    sz->n_unique = u;

    // in chunks of whole blocks of distinct cells (each (cell, slot) holds an id and a share): the
    // block partials of each chunk, then every candidate's partials added in block order
    const int64_t slots = hpsf_keep_slots(a->ring_weight);
    const int64_t blocks_per_chunk = (int64_t)(1 << 26) / (slots * HPSF_KEEP_BLOCK);
    const int64_t chunk = (blocks_per_chunk > 0 ? blocks_per_chunk : 1) * HPSF_KEEP_BLOCK;
    const double s2 = a->sigma_m * a->sigma_m;
    std::vector<std::unique_ptr<Dev<uint64_t>>> part_keys;
    std::vector<std::unique_ptr<Dev<double>>> part_sums;
    std::vector<int64_t> part_len;
    int64_t total = 0;
    for (int64_t u0 = 0; u0 < u; u0 += chunk) {
        int64_t c = chunk < u - u0 ? chunk : u - u0;
        Dev<uint64_t> cand(st);
        Dev<double> share(st);
        HPSF_TRY(cand.alloc(c * slots));
        HPSF_TRY(share.alloc(c * slots));
        keep_candidates<<<HPSF_ON(c, st)>>>(unique.p, u0, c, a->depth, a->ring_weight, cand.p);
        keep_shares<<<HPSF_ON(c * slots, st)>>>(cand.p, start.p, counts.p, u0, c, slots, xyz, a->depth, a->wgs84,
                                                a->radius, s2, share.p);
        HPSF_TRY(cudaGetLastError());
        part_keys.emplace_back(new Dev<uint64_t>(st));
        part_sums.emplace_back(new Dev<double>(st));
        int64_t runs = 0;
        HPSF_TRY(block_partials(cand.p, share.p, c * slots, slots, end_bit, *part_keys.back(), *part_sums.back(), &runs,
                                st));
        part_len.push_back(runs);
        total += runs;
    }
    // the chunks' (cell, partial) lists one after the other, in chunk order: a stable sort by cell
    // keeps each cell's partials in block order
    if (total >= INT_MAX) return (cudaError_t)HPSF_ERR_TOO_LARGE;
    Dev<uint64_t> all_keys(st);
    Dev<double> all_sums(st);
    HPSF_TRY(all_keys.alloc(total));
    HPSF_TRY(all_sums.alloc(total));
    int64_t at = 0;
    for (size_t i = 0; i < part_len.size(); ++i) {
        HPSF_TRY(cudaMemcpyAsync(all_keys.p + at, part_keys[i]->p, part_len[i] * sizeof(uint64_t),
                                 cudaMemcpyDeviceToDevice, st));
        HPSF_TRY(cudaMemcpyAsync(all_sums.p + at, part_sums[i]->p, part_len[i] * sizeof(double),
                                 cudaMemcpyDeviceToDevice, st));
        at += part_len[i];
        part_keys[i]->reset();
        part_sums[i]->reset();
    }
    int64_t runs = 0;
    HPSF_TRY(sum_by_key(all_keys.p, all_sums.p, total, end_bit, cands, sums, &runs, st));
    sz->n_candidates = runs;
    return cudaSuccess;
}

// The samples' longitudes and latitudes (host arrays of n) on the device.
cudaError_t upload_positions(const double *lon_host, const double *lat_host, int64_t n, Dev<double> &lon,
                             Dev<double> &lat, cudaStream_t st) {
    HPSF_TRY(lon.alloc(n));
    HPSF_TRY(lat.alloc(n));
    HPSF_TRY(cudaMemcpyAsync(lon.p, lon_host, n * sizeof(double), cudaMemcpyHostToDevice, st));
    return cudaMemcpyAsync(lat.p, lat_host, n * sizeof(double), cudaMemcpyHostToDevice, st);
}

// The samples (device lon, lat) hashed at `depth` and sorted by (cell, index): their cells in that
// order (keys) and the order (position -> sample).
cudaError_t sort_by_cell(int depth, int wgs84, const double *lon, const double *lat, int64_t n, Dev<uint64_t> &keys,
                         Dev<uint32_t> &order, cudaStream_t st) {
    Dev<uint64_t> keys0(st);
    Dev<uint32_t> idx(st);
    HPSF_TRY(keys0.alloc(n));
    HPSF_TRY(keys.alloc(n));
    HPSF_TRY(idx.alloc(n));
    HPSF_TRY(order.alloc(n));
    hash_samples<<<HPSF_ON(n, st)>>>(lon, lat, n, depth, wgs84, keys0.p, idx.p);
    HPSF_TRY(cudaGetLastError());
    const int ni = (int)n, end_bit = 2 * depth + 4;
    return with_temp(st, [&](void *t, size_t &b) {
        return cub::DeviceRadixSort::SortPairs(t, b, keys0.p, keys.p, idx.p, order.p, ni, 0, end_bit, st);
    });
}

// The samples hashed and sorted by (cell, index): their cells in that order (keys), the order
// (position -> sample) and the unit vectors by position.
cudaError_t sort_samples(const hpsf_construct_args *a, const double *lon_host, const double *lat_host, int64_t n,
                         Dev<uint64_t> &keys, Dev<uint32_t> &order, Dev<double> &xyz, cudaStream_t st) {
    Dev<double> lon(st), lat(st);
    HPSF_TRY(upload_positions(lon_host, lat_host, n, lon, lat, st));
    HPSF_TRY(sort_by_cell(a->depth, a->wgs84, lon.p, lat.p, n, keys, order, st));
    HPSF_TRY(xyz.alloc(3 * n));
    sample_vectors<<<HPSF_ON(n, st)>>>(lon.p, lat.p, order.p, n, xyz.p);
    return cudaGetLastError();
}

// The candidates whose weight sum reaches the threshold (nested ids ascending); sz gets their count
// and the largest sum.
cudaError_t kept_cells(const hpsf_construct_args *a, const Dev<uint64_t> &cands, const Dev<double> &sums,
                       Dev<uint64_t> &kept, hpsf_construct_sizes *sz, cudaStream_t st) {
    const int64_t nc = sz->n_candidates;
    Dev<uint8_t> flag(st);
    Dev<int32_t> nkept(st);
    HPSF_TRY(flag.alloc(nc));
    HPSF_TRY(kept.alloc(nc));
    HPSF_TRY(nkept.alloc(1));
    if (nc > 0) {
        Dev<double> top(st);
        HPSF_TRY(top.alloc(1));
        HPSF_TRY(with_temp(st, [&](void *t, size_t &b) { return cub::DeviceReduce::Max(t, b, sums.p, top.p, (int)nc, st); }));
        HPSF_TRY(to_host(&sz->max_sum, top.p, 1, st));
        at_least<<<HPSF_ON(nc, st)>>>(sums.p, nc, a->threshold, flag.p);
        HPSF_TRY(cudaGetLastError());
    }
    HPSF_TRY(with_temp(st, [&](void *t, size_t &b) {
        return cub::DeviceSelect::Flagged(t, b, cands.p, flag.p, kept.p, nkept.p, (int)nc, st);
    }));
    int32_t nk = 0;
    HPSF_TRY(to_host(&nk, nkept.p, 1, st));
    sz->n_kept = nk;
    return cudaSuccess;
}

// The keep order (the operator's scheme ascending) of the nk kept cells: the keep index of each
// (by position in the ascending nested ids), the scheme id and centre of each keep index.
cudaError_t keep_order(const hpsf_construct_args *a, const uint64_t *kept, int64_t nk, Dev<uint32_t> &index_of,
                       Dev<uint64_t> &scheme, Dev<double> &kxyz, cudaStream_t st) {
    Dev<uint32_t> perm(st);
    Dev<uint64_t> scheme_sorted(st);
    HPSF_TRY(index_of.alloc(nk));
    HPSF_TRY(scheme.alloc(nk));
    HPSF_TRY(kxyz.alloc(3 * nk));
    if (!a->nest) {
        Dev<uint64_t> ring(st);
        Dev<uint32_t> pos(st);
        HPSF_TRY(ring.alloc(nk));
        HPSF_TRY(pos.alloc(nk));
        HPSF_TRY(perm.alloc(nk));
        HPSF_TRY(scheme_sorted.alloc(nk));
        ring_ids<<<HPSF_ON(nk, st)>>>(kept, nk, a->depth, ring.p);
        iota<<<HPSF_ON(nk, st)>>>(pos.p, nk);
        HPSF_TRY(cudaGetLastError());
        const int end_bit = 2 * a->depth + 4;
        HPSF_TRY(with_temp(st, [&](void *t, size_t &b) {
            return cub::DeviceRadixSort::SortPairs(t, b, ring.p, scheme_sorted.p, pos.p, perm.p, (int)nk, 0, end_bit,
                                                   st);
        }));
    }
    keep_index<<<HPSF_ON(nk, st)>>>(kept, perm.p, nk, a->depth, a->wgs84, scheme_sorted.p, index_of.p, scheme.p,
                                    kxyz.p);
    return cudaGetLastError();
}

// The search of every sample (hi: keep indices, then renumbered to the pruned cells) and the
// pruning: the cell ids and centres of the kept cells some sample links to; sz gets K and the
// partial and empty rows.
cudaError_t search_and_prune(const hpsf_construct_args *a, const hpsf_kept &kept, const uint64_t *cells,
                             const double *xyz, int64_t n, const uint64_t *scheme, Dev<int32_t> &hi,
                             Dev<uint64_t> &cell_ids, Dev<double> &cell_xyz, hpsf_construct_sizes *sz,
                             cudaStream_t st) {
    const int npt = a->npt;
    const int64_t links = n * npt, nk = kept.len;
    Dev<int32_t> partial(st), empty(st), count(st);
    Dev<double> c2(st);
    HPSF_TRY(hi.alloc(links));
    HPSF_TRY(c2.alloc(links));
    HPSF_TRY(partial.alloc(n));
    HPSF_TRY(empty.alloc(n));
    HPSF_TRY(count.alloc(2));
    hpsf_search_args sa = {a->depth, a->ring_init, a->ring_max, npt};
    search<<<HPSF_ON(n, st)>>>(sa, kept, cells, xyz, n, hi.p, c2.p, partial.p, empty.p);
    HPSF_TRY(cudaGetLastError());
    c2.reset();
    const int ni = (int)n;
    HPSF_TRY(with_temp(st, [&](void *t, size_t &b) { return cub::DeviceReduce::Sum(t, b, partial.p, count.p, ni, st); }));
    HPSF_TRY(with_temp(st, [&](void *t, size_t &b) { return cub::DeviceReduce::Sum(t, b, empty.p, count.p + 1, ni, st); }));
    int32_t counts[2] = {0, 0};
    HPSF_TRY(to_host(counts, count.p, 2, st));
    sz->n_partial = counts[0];
    sz->n_empty = counts[1];

    Dev<int32_t> used(st), new_index(st);
    HPSF_TRY(used.alloc(nk));
    HPSF_TRY(new_index.alloc(nk));
    HPSF_TRY(cudaMemsetAsync(used.p, 0, nk * sizeof(int32_t), st));
    mark_used<<<HPSF_ON(links, st)>>>(hi.p, links, used.p);
    HPSF_TRY(cudaGetLastError());
    HPSF_TRY(with_temp(st, [&](void *t, size_t &b) {
        return cub::DeviceScan::ExclusiveSum(t, b, used.p, new_index.p, (int)nk, st);
    }));
    int32_t last[2] = {0, 0};
    HPSF_TRY(to_host(&last[0], new_index.p + (nk - 1), 1, st));
    HPSF_TRY(to_host(&last[1], used.p + (nk - 1), 1, st));
    const int64_t k = (int64_t)last[0] + last[1];
    sz->k = k;
    renumber_links<<<HPSF_ON(links, st)>>>(hi.p, links, new_index.p);
    HPSF_TRY(cudaGetLastError());
    HPSF_TRY(cell_ids.alloc(k));
    HPSF_TRY(cell_xyz.alloc(3 * k));
    pruned_cells<<<HPSF_ON(nk, st)>>>(used.p, new_index.p, scheme, kept.xyz, nk, cell_ids.p, cell_xyz.p);
    return cudaGetLastError();
}

// The links by cell (CSR over the k cells): the links sorted by cell, stably (sample positions
// ascending in a row), the row offsets by binary search; nnz the number of links.
cudaError_t links_by_cell(const int32_t *hi, int64_t links, int npt, int64_t k, Dev<int64_t> &ptr,
                          Dev<uint32_t> &sample, int64_t *nnz, cudaStream_t st) {
    Dev<uint32_t> key(st), pos(st), key_sorted(st);
    HPSF_TRY(key.alloc(links));
    HPSF_TRY(pos.alloc(links));
    HPSF_TRY(key_sorted.alloc(links));
    HPSF_TRY(sample.alloc(links));
    HPSF_TRY(ptr.alloc(k + 1));
    link_keys<<<HPSF_ON(links, st)>>>(hi, links, npt, key.p, pos.p);
    HPSF_TRY(cudaGetLastError());
    HPSF_TRY(with_temp(st, [&](void *t, size_t &b) {
        return cub::DeviceRadixSort::SortPairs(t, b, key.p, key_sorted.p, pos.p, sample.p, (int)links, 0, 32, st);
    }));
    cell_offsets<<<HPSF_ON(k + 1, st)>>>(key_sorted.p, links, k, ptr.p);
    HPSF_TRY(cudaGetLastError());
    return to_host(nnz, ptr.p + k, 1, st);
}

}  // namespace

namespace {

int construct_run(const hpsf_construct_args *a, const double *lon_host, const double *lat_host, int64_t n,
                  hpsf_construction **out, hpsf_construct_sizes *sz, cudaStream_t st) {
    if (n <= 0 || n >= INT_MAX || a->npt <= 0) return (int)cudaErrorInvalidValue;
    const int64_t links = n * a->npt;
    if (links >= INT_MAX) return (int)HPSF_ERR_TOO_LARGE;

    Dev<uint64_t> keys(st);
    Dev<uint32_t> order(st);
    Dev<double> xyz(st);
    HPSF_TRY(sort_samples(a, lon_host, lat_host, n, keys, order, xyz, st));
    Dev<uint64_t> kept(st);
    {
        Dev<uint64_t> cands(st);
        Dev<double> sums(st);
        HPSF_TRY(keep_stage(a, keys.p, xyz.p, n, cands, sums, sz, st));
        HPSF_TRY(kept_cells(a, cands, sums, kept, sz, st));
    }
    const int64_t nk = sz->n_kept;
    if (nk == 0) return (int)cudaSuccess;  // no cell passed the threshold: the caller explains

    Dev<int32_t> hi(st);
    Dev<uint64_t> cell_ids(st);
    Dev<double> cell_xyz(st);
    {
        Dev<uint32_t> index_of(st);
        Dev<uint64_t> scheme(st);
        Dev<double> kxyz(st);
        HPSF_TRY(keep_order(a, kept.p, nk, index_of, scheme, kxyz, st));
        hpsf_kept kv = {kept.p, index_of.p, kxyz.p, nk};
        HPSF_TRY(search_and_prune(a, kv, keys.p, xyz.p, n, scheme.p, hi, cell_ids, cell_xyz, sz, st));
    }
    keys.reset();
    kept.reset();
    Dev<int64_t> ptr(st);
    Dev<uint32_t> sample(st);
    int64_t nnz = 0;
    HPSF_TRY(links_by_cell(hi.p, links, a->npt, sz->k, ptr, sample, &nnz, st));
    sz->nnz = nnz;

    hpsf_construction *c = new hpsf_construction;
    c->n = n;
    c->k = sz->k;
    c->nnz = nnz;
    c->npt = a->npt;
    c->st = st;
    c->order = order.release();
    c->xyz = xyz.release();
    c->hi = hi.release();
    c->cell_ids = cell_ids.release();
    c->cell_xyz = cell_xyz.release();
    c->ptr = ptr.release();
    c->sample = sample.release();
    *out = c;
    return (int)cudaSuccess;
}

// The depth of the area buckets (device lon, lat on the sphere): the finest whose occupied cells
// hold ≥ 2 samples on average.
cudaError_t area_depth(const double *lon, const double *lat, int64_t n, int *depth, cudaStream_t st) {
    const int fine = HPSF_AREA_FINE_DEPTH;
    Dev<uint64_t> keys(st);
    Dev<uint32_t> order(st);
    HPSF_TRY(sort_by_cell(fine, 0, lon, lat, n, keys, order, st));
    order.reset();
    Dev<unsigned long long> bins(st);
    HPSF_TRY(bins.alloc(fine + 1));
    HPSF_TRY(cudaMemsetAsync(bins.p, 0, (fine + 1) * sizeof(unsigned long long), st));
    boundary_depths<<<HPSF_ON(n, st)>>>(keys.p, n, bins.p);
    HPSF_TRY(cudaGetLastError());
    unsigned long long h[fine + 1];
    HPSF_TRY(to_host(h, bins.p, fine + 1, st));
    uint64_t b[fine + 1];
    for (int t = 0; t <= fine; ++t) b[t] = h[t];
    *depth = hpsf_area_depth(b, n);
    return cudaSuccess;
}

// The spacing areas of the n samples by caller index into out_host (src/operator/area.rs `spacing`).
cudaError_t spacing_areas(const double *lon_host, const double *lat_host, int64_t n, double radius, double *out_host,
                          cudaStream_t st) {
    Dev<double> lon(st), lat(st);
    HPSF_TRY(upload_positions(lon_host, lat_host, n, lon, lat, st));
    int depth = 0;
    HPSF_TRY(area_depth(lon.p, lat.p, n, &depth, st));
    Dev<uint64_t> keys(st), unique(st);
    Dev<uint32_t> order(st);
    HPSF_TRY(sort_by_cell(depth, 0, lon.p, lat.p, n, keys, order, st));
    Dev<double> xyz(st);
    HPSF_TRY(xyz.alloc(3 * n));
    sample_vectors<<<HPSF_ON(n, st)>>>(lon.p, lat.p, order.p, n, xyz.p);
    HPSF_TRY(cudaGetLastError());
    lon.reset();
    lat.reset();
    const int ni = (int)n;
    Dev<int32_t> counts(st), start(st);
    int32_t nu = 0;
    HPSF_TRY(runs_of(keys.p, n, unique, counts, start, &nu, st));
    counts.reset();
    Dev<double> area(st);
    HPSF_TRY(area.alloc(n));
    const uint32_t ring = hpsf_nside(depth) < 2 ? (uint32_t)hpsf_nside(depth) : 2u;
    spacing_areas_at<<<HPSF_ON(n, st)>>>(xyz.p, keys.p, unique.p, start.p, nu, n, depth, ring, radius, area.p);
    HPSF_TRY(cudaGetLastError());
    xyz.reset();
    keys.reset();
    unique.reset();
    start.reset();
    // samples without a neighbour: the median of the others (1 when there are none)
    Dev<uint8_t> flag(st);
    Dev<double> known(st), sorted(st);
    Dev<int32_t> nknown(st);
    HPSF_TRY(flag.alloc(n));
    HPSF_TRY(known.alloc(n));
    HPSF_TRY(nknown.alloc(1));
    finite_flags<<<HPSF_ON(n, st)>>>(area.p, n, flag.p);
    HPSF_TRY(with_temp(st, [&](void *t, size_t &b) {
        return cub::DeviceSelect::Flagged(t, b, area.p, flag.p, known.p, nknown.p, ni, st);
    }));
    int32_t m = 0;
    HPSF_TRY(to_host(&m, nknown.p, 1, st));
    double fill = 1.0;
    if (m > 0) {
        HPSF_TRY(sorted.alloc(m));
        HPSF_TRY(with_temp(st, [&](void *t, size_t &b) {
            return cub::DeviceRadixSort::SortKeys(t, b, known.p, sorted.p, m, 0, 64, st);
        }));
        HPSF_TRY(to_host(&fill, sorted.p + m / 2, 1, st));
    }
    Dev<double> out(st);
    HPSF_TRY(out.alloc(n));
    fill_and_scatter<<<HPSF_ON(n, st)>>>(area.p, order.p, n, fill, out.p);
    HPSF_TRY(cudaGetLastError());
    return to_host(out_host, out.p, n, st);
}

// How many distinct values the n host values hold (−0 and 0 count once; no NaN).
cudaError_t distinct_values(const double *v_host, int64_t n, int64_t *count, cudaStream_t st) {
    const int ni = (int)n;
    Dev<double> v(st), sorted(st);
    HPSF_TRY(v.alloc(n));
    HPSF_TRY(sorted.alloc(n));
    HPSF_TRY(cudaMemcpyAsync(v.p, v_host, n * sizeof(double), cudaMemcpyHostToDevice, st));
    plus_zero<<<HPSF_ON(n, st)>>>(v.p, n);
    HPSF_TRY(cudaGetLastError());
    HPSF_TRY(with_temp(st, [&](void *t, size_t &b) { return cub::DeviceRadixSort::SortKeys(t, b, v.p, sorted.p, ni, 0, 64, st); }));
    v.reset();
    Dev<int32_t> flag(st), total(st);
    HPSF_TRY(flag.alloc(n));
    HPSF_TRY(total.alloc(1));
    new_value_flags<<<HPSF_ON(n, st)>>>(sorted.p, n, flag.p);
    HPSF_TRY(cudaGetLastError());
    HPSF_TRY(with_temp(st, [&](void *t, size_t &b) { return cub::DeviceReduce::Sum(t, b, flag.p, total.p, ni, st); }));
    int32_t c = 0;
    HPSF_TRY(to_host(&c, total.p, 1, st));
    *count = c;
    return cudaSuccess;
}

}  // namespace

extern "C" {

int hpsf_distinct_values(const double *v, int64_t n, int64_t *count, hpsf_stream stream) {
    *count = 0;
    if (n <= 0 || n >= INT_MAX) return (int)cudaErrorInvalidValue;
    cudaError_t e = distinct_values(v, n, count, (cudaStream_t)stream);
    if (e != cudaSuccess) (void)cudaGetLastError();  // as in hpsf_construct_run
    return (int)e;
}

int hpsf_spacing_areas(const double *lon, const double *lat, int64_t n, double radius, double *out,
                       hpsf_stream stream) {
    if (n <= 0 || n >= INT_MAX) return (int)cudaErrorInvalidValue;
    cudaError_t e = spacing_areas(lon, lat, n, radius, out, (cudaStream_t)stream);
    if (e != cudaSuccess) (void)cudaGetLastError();  // as in hpsf_construct_run
    return (int)e;
}

int hpsf_construct_run(const hpsf_construct_args *a, const double *lon_host, const double *lat_host, int64_t n,
                       hpsf_construction **out, hpsf_construct_sizes *sz, hpsf_stream stream) {
    *out = nullptr;
    *sz = hpsf_construct_sizes{};
    int code = construct_run(a, lon_host, lat_host, n, out, sz, (cudaStream_t)stream);
    // a failed runtime call leaves its error as the thread's last one: clear it, so that the next
    // launcher's cudaGetLastError() does not report it again
    if (code != (int)cudaSuccess) (void)cudaGetLastError();
    return code;
}

int hpsf_construct_fetch(hpsf_construction *c, uint32_t *order, double *xyz, int32_t *hi, uint64_t *cell_ids,
                         double *cell_xyz, int64_t *ptr, uint32_t *sample) {
    cudaStream_t st = c->st;
    const int64_t links = c->n * c->npt;
    // host or device destinations alike (unified addressing); NULL: not wanted
    auto copy = [&](void *dst, const void *src, size_t bytes) -> cudaError_t {
        if (!dst || bytes == 0) return cudaSuccess;
        return cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, st);
    };
    auto all = [&]() -> cudaError_t {
        HPSF_TRY(copy(order, c->order, c->n * sizeof(uint32_t)));
        HPSF_TRY(copy(xyz, c->xyz, 3 * c->n * sizeof(double)));
        HPSF_TRY(copy(hi, c->hi, links * sizeof(int32_t)));
        HPSF_TRY(copy(cell_ids, c->cell_ids, c->k * sizeof(uint64_t)));
        HPSF_TRY(copy(cell_xyz, c->cell_xyz, 3 * c->k * sizeof(double)));
        HPSF_TRY(copy(ptr, c->ptr, (c->k + 1) * sizeof(int64_t)));
        HPSF_TRY(copy(sample, c->sample, c->nnz * sizeof(uint32_t)));
        return cudaStreamSynchronize(st);
    };
    cudaError_t e = all();
    if (e != cudaSuccess) (void)cudaGetLastError();  // as in hpsf_construct_run
    return (int)e;
}

void hpsf_construct_free(hpsf_construction *c) {
    if (!c) return;
    cudaStream_t st = c->st;
    void *all[] = {c->order, c->xyz, c->hi, c->cell_ids, c->cell_xyz, c->ptr, c->sample};
    for (void *p : all)
        if (p) cudaFreeAsync(p, st);
    cudaStreamSynchronize(st);
    delete c;
}
}
