// Both products of the PSF operators with s right-hand sides, as gathers (no atomics):
// v.MT gathers by sample position (fixed width npt), u.M by cell (CSR). One thread per element
// (e, j) of the interleaved E x s output, so consecutive threads read consecutive columns j; u.M
// in the tiles of the reduction tree (common.cuh), for its fused <out, add>_dx, and for one column
// by groups of lanes per cell (m_product_groups). Each link's product is rounded before it is
// added, in link order, as on the CPU.
#include "common.cuh"

template <typename T>
__global__ void mt_product(const int32_t *hi, const T *mt, int32_t n, int32_t npt, const T *v, int32_t s,
                           const uint8_t *valid, T *out, const int32_t *done) {
    if (done && *done) return;
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= (int64_t)n * s) return;
    int64_t p = e / s;
    int32_t j = (int32_t)(e - p * s);
    T acc = (T)0;
    for (int32_t t = 0; t < npt; ++t) {
        int32_t h = hi[p * npt + t];
        if (h >= 0) acc += hpsf_mul_t(mt[p * npt + t], v[(int64_t)h * s + j]);
    }
    out[e] = (valid && !(valid[e] & HPSF_FREE)) ? (T)0 : acc;
}

template <typename T>
__global__ void m_product(const int64_t *ptr, const uint32_t *sample, const T *m, int32_t k, const T *u, int32_t s,
                          int32_t width, T lam, const T *add, const T *dx, double *partials, T *out,
                          const int32_t *done) {
    __shared__ double sh[HPSF_BLOCK];
    if (done && *done) return;
    hpsf_tile t = hpsf_tile_here(width);
    double contrib = 0.0;
    if (t.row < k && t.col < s) {
        int64_t c = t.row, e = c * s + t.col;
        T acc = (T)0;
        for (int64_t q = ptr[c]; q < ptr[c + 1]; ++q) acc += hpsf_mul_t(m[q], u[(int64_t)sample[q] * s + t.col]);
        if (add) acc += hpsf_mul_t(lam, add[e]);
        out[e] = acc;
        if (dx) contrib = (double)acc * (double)add[e] * (double)dx[c];
    }
    if (dx) hpsf_tile_sum(contrib, sh, t, s, partials);
}

// u.M for one column (s = 1) by groups of G lanes per cell: the lanes of a group read G consecutive
// links of their cell at once (coalesced, their gathers of u in flight together), and every lane of
// the group then adds the G products in link order, taking each from its lane by a shuffle — the
// additions of one thread walking the links, so the same sum as m_product's and the CPU's. A block
// covers HPSF_BLOCK cells, each group several in turn; the sums pass through shared memory so that
// the output and the fused <out, add>_dx tree are m_product's with tiles of one column.
template <typename T, int G>
__global__ void m_product_groups(const int64_t *ptr, const uint32_t *sample, const T *m, int32_t k, const T *u,
                                 T lam, const T *add, const T *dx, double *partials, T *out, const int32_t *done) {
    __shared__ double sh[HPSF_BLOCK];
    __shared__ T sums[HPSF_BLOCK];
    if (done && *done) return;
    const int32_t lane = (int32_t)threadIdx.x % G;
    const unsigned int lanes = G == 32 ? 0xffffffffu : ((1u << (G % 32)) - 1u) << ((threadIdx.x % 32) / G * G);
    const int64_t c0 = (int64_t)blockIdx.x * HPSF_BLOCK;
    for (int32_t local = (int32_t)threadIdx.x / G; local < HPSF_BLOCK; local += HPSF_BLOCK / G) {
        const int64_t c = c0 + local;
        if (c >= k) break;  // the same for every lane of the group
        const int64_t end = ptr[c + 1];
        T acc = (T)0;
        for (int64_t base = ptr[c]; base < end; base += G) {
            const int64_t q = base + lane;
            T term = (T)0;
            if (q < end) term = hpsf_mul_t(m[q], u[sample[q]]);
            const int32_t terms = (int32_t)(end - base < G ? end - base : G);
            for (int32_t j = 0; j < terms; ++j) acc += __shfl_sync(lanes, term, j, G);
        }
        if (lane == 0) sums[local] = add ? acc + hpsf_mul_t(lam, add[c]) : acc;
    }
    __syncthreads();
    hpsf_tile t = hpsf_tile_here(1);
    double contrib = 0.0;
    if (t.row < k) {
        T acc = sums[threadIdx.x];
        out[t.row] = acc;
        if (dx) contrib = (double)acc * (double)add[t.row] * (double)dx[t.row];
    }
    if (dx) hpsf_tile_sum(contrib, sh, t, 1, partials);
}

template <typename T>
static int mt_launch(const int32_t *hi, const void *mt, int32_t n, int32_t npt, const void *v, int32_t s,
                     const uint8_t *valid, void *out, const int32_t *done, hpsf_stream stream) {
    if ((int64_t)n * s <= 0) return 0;
    mt_product<T><<<hpsf_grid((int64_t)n * s), HPSF_BLOCK, 0, stream>>>(hi, (const T *)mt, n, npt, (const T *)v, s,
                                                                       valid, (T *)out, done);
    HPSF_LAUNCH_CHECK();
}

template <typename T, int G>
static int m_groups_launch(const int64_t *ptr, const uint32_t *sample, const void *m, int32_t k, const void *u,
                           double lam, const void *add, const void *dx, double *partials, void *out,
                           const int32_t *done, hpsf_stream stream) {
    m_product_groups<T, G><<<hpsf_tiles(k, 1, 1), HPSF_BLOCK, 0, stream>>>(
        ptr, sample, (const T *)m, k, (const T *)u, (T)lam, (const T *)add, (const T *)dx, partials, (T *)out, done);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int m_launch(const int64_t *ptr, const uint32_t *sample, const void *m, int32_t k, const void *u, int32_t s,
                    double lam, const void *add, const void *dx, double *partials, void *out, const int32_t *done,
                    int32_t group, hpsf_stream stream) {
    if ((int64_t)k * s <= 0) return 0;
    if (group != 0 && s != 1) return (int)cudaErrorInvalidValue;
    switch (group) {
        case 0: break;
        case 4: return m_groups_launch<T, 4>(ptr, sample, m, k, u, lam, add, dx, partials, out, done, stream);
        case 8: return m_groups_launch<T, 8>(ptr, sample, m, k, u, lam, add, dx, partials, out, done, stream);
        case 16: return m_groups_launch<T, 16>(ptr, sample, m, k, u, lam, add, dx, partials, out, done, stream);
        case 32: return m_groups_launch<T, 32>(ptr, sample, m, k, u, lam, add, dx, partials, out, done, stream);
        default: return (int)cudaErrorInvalidValue;
    }
    int32_t width = hpsf_tile_width(s, HPSF_BLOCK);
    m_product<T><<<hpsf_tiles(k, s, width), HPSF_BLOCK, 0, stream>>>(
        ptr, sample, (const T *)m, k, (const T *)u, s, width, (T)lam, (const T *)add, (const T *)dx, partials, (T *)out,
        done);
    HPSF_LAUNCH_CHECK();
}

extern "C" int hpsf_mt_product(int32_t dtype, const int32_t *hi, const void *mt, int32_t n, int32_t npt,
                               const void *v, int32_t s, const uint8_t *valid, void *out, const int32_t *done,
                               hpsf_stream stream) {
    return HPSF_TYPED(dtype, mt_launch, hi, mt, n, npt, v, s, valid, out, done, stream);
}

extern "C" int hpsf_m_product(int32_t dtype, const int64_t *ptr, const uint32_t *sample, const void *m, int32_t k,
                              const void *u, int32_t s, double lam, const void *add, const void *dx,
                              double *partials, void *out, const int32_t *done, int32_t group,
                              hpsf_stream stream) {
    return HPSF_TYPED(dtype, m_launch, ptr, sample, m, k, u, s, lam, add, dx, partials, out, done, group, stream);
}
