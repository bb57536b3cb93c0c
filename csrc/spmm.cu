// Both products of the PSF operators with s right-hand sides, as gathers (no atomics):
// v.MT gathers by sample position (fixed width npt), u.M by cell (CSR). One thread per element
// (e, j) of the interleaved E x s output, so consecutive threads read consecutive columns j; u.M
// in the tiles of the reduction tree (common.cuh), for its fused <out, add>_dx. Each link's
// product is rounded before it is added, in link order, as on the CPU.
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

template <typename T>
static int mt_launch(const int32_t *hi, const void *mt, int32_t n, int32_t npt, const void *v, int32_t s,
                     const uint8_t *valid, void *out, const int32_t *done, hpsf_stream stream) {
    if ((int64_t)n * s <= 0) return 0;
    mt_product<T><<<hpsf_grid((int64_t)n * s), HPSF_BLOCK, 0, stream>>>(hi, (const T *)mt, n, npt, (const T *)v, s,
                                                                       valid, (T *)out, done);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int m_launch(const int64_t *ptr, const uint32_t *sample, const void *m, int32_t k, const void *u, int32_t s,
                    double lam, const void *add, const void *dx, double *partials, void *out, const int32_t *done,
                    hpsf_stream stream) {
    if ((int64_t)k * s <= 0) return 0;
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
                              double *partials, void *out, const int32_t *done, hpsf_stream stream) {
    return HPSF_TYPED(dtype, m_launch, ptr, sample, m, k, u, s, lam, add, dx, partials, out, done, stream);
}
