// The fused gather-weight kernels (SPEC §3): distances, Gaussian weights and normalisations in one
// pass, from the unit vectors of samples and cell centres (no N x npt weight array leaves the CPU).
#include "common.cuh"

template <typename T>
__global__ void weights_by_sample(const double *sample_xyz, const double *cell_xyz, const int32_t *hi,
                                  const T *area, int32_t n, int32_t npt, double radius, T s2, T *d_m, T *mt,
                                  T *dy) {
    int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n) return;
    const double *a = sample_xyz + 3 * p;
    const T minus_two = (T)-2.0;
    T sum = (T)0;
    for (int32_t t = 0; t < npt; ++t) {
        int32_t h = hi[p * npt + t];
        T w = (T)0;
        if (h >= 0) {
            T d = (T)hpsf_distance(hpsf_chord2(a, cell_xyz + 3 * (int64_t)h), radius);
            d_m[p * npt + t] = d;
            w = hpsf_exp(minus_two * (d * d) / s2) * area[p];
            sum += w;
        } else {
            d_m[p * npt + t] = (T)INFINITY;
        }
        mt[p * npt + t] = w;
    }
    dy[p] = sum;
    for (int32_t t = 0; t < npt; ++t) mt[p * npt + t] = sum != (T)0 ? mt[p * npt + t] / sum : (T)0;
}

template <typename T>
__global__ void weights_by_cell(const double *sample_xyz, const double *cell_xyz, const int64_t *ptr,
                                const uint32_t *sample, const T *area, int32_t k, double radius, T s2, T *m,
                                T *dx) {
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= k) return;
    const double *cc = cell_xyz + 3 * c;
    const T minus_two = (T)-2.0;
    T sum = (T)0;
    for (int64_t q = ptr[c]; q < ptr[c + 1]; ++q) {
        uint32_t p = sample[q];
        T d = (T)hpsf_distance(hpsf_chord2(sample_xyz + 3 * (int64_t)p, cc), radius);
        T w = hpsf_exp(minus_two * (d * d) / s2) * area[p];
        m[q] = w;
        sum += w;
    }
    dx[c] = sum;
    for (int64_t q = ptr[c]; q < ptr[c + 1]; ++q) m[q] = sum != (T)0 ? m[q] / sum : (T)0;
}

#define WEIGHTS(SUF, T)                                                                                        \
    extern "C" int hpsf_weights_by_sample_##SUF(const double *sample_xyz, const double *cell_xyz,             \
                                                const int32_t *hi, const T *area, int32_t n, int32_t npt,     \
                                                double radius, double s2, T *d_m, T *mt, T *dy,               \
                                                hpsf_stream stream) {                                          \
        if (n <= 0) return 0;                                                                                  \
        weights_by_sample<T><<<hpsf_blocks(n), HPSF_BLOCK, 0, stream>>>(sample_xyz, cell_xyz, hi, area, n,     \
                                                                        npt, radius, (T)s2, d_m, mt, dy);      \
        HPSF_LAUNCH_CHECK();                                                                                   \
    }                                                                                                          \
    extern "C" int hpsf_weights_by_cell_##SUF(const double *sample_xyz, const double *cell_xyz,               \
                                              const int64_t *ptr, const uint32_t *sample, const T *area,       \
                                              int32_t k, double radius, double s2, T *m, T *dx,                \
                                              hpsf_stream stream) {                                            \
        if (k <= 0) return 0;                                                                                  \
        weights_by_cell<T><<<hpsf_blocks(k), HPSF_BLOCK, 0, stream>>>(sample_xyz, cell_xyz, ptr, sample, area, \
                                                                      k, radius, (T)s2, m, dx);                \
        HPSF_LAUNCH_CHECK();                                                                                   \
    }

WEIGHTS(f32, float)
WEIGHTS(f64, double)
