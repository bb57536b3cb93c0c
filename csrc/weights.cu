// The fused gather-weight kernels (SPEC §3): distances, Gaussian weights and normalisations in one
// pass, from the unit vectors of samples and cell centres (no N x npt weight array leaves the CPU).
// The CPU's operations in the CPU's order (src/backend/cpu.rs `link_weights`), the distance from
// construct.h, products never fused into a sum (and nvcc's -fmad=false): with pmath.h's exp, for
// f64 and for f32 (the double's rounded), the weights, Dx and Dy are the CPU's bit for bit.
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
            w = hpsf_mul_t(hpsf_exp(minus_two * (d * d) / s2), area[p]);
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
        T w = hpsf_mul_t(hpsf_exp(minus_two * (d * d) / s2), area[p]);
        m[q] = w;
        sum += w;
    }
    dx[c] = sum;
    for (int64_t q = ptr[c]; q < ptr[c + 1]; ++q) m[q] = sum != (T)0 ? m[q] / sum : (T)0;
}

template <typename T>
static int by_sample(const double *sample_xyz, const double *cell_xyz, const int32_t *hi, const void *area,
                     int32_t n, int32_t npt, double radius, double s2, void *d_m, void *mt, void *dy,
                     hpsf_stream stream) {
    if (n <= 0) return 0;
    weights_by_sample<T><<<hpsf_grid(n), HPSF_BLOCK, 0, stream>>>(sample_xyz, cell_xyz, hi, (const T *)area, n, npt,
                                                                  radius, (T)s2, (T *)d_m, (T *)mt, (T *)dy);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int by_cell(const double *sample_xyz, const double *cell_xyz, const int64_t *ptr, const uint32_t *sample,
                   const void *area, int32_t k, double radius, double s2, void *m, void *dx, hpsf_stream stream) {
    if (k <= 0) return 0;
    weights_by_cell<T><<<hpsf_grid(k), HPSF_BLOCK, 0, stream>>>(sample_xyz, cell_xyz, ptr, sample, (const T *)area, k,
                                                                radius, (T)s2, (T *)m, (T *)dx);
    HPSF_LAUNCH_CHECK();
}

extern "C" int hpsf_weights_by_sample(int32_t dtype, const double *sample_xyz, const double *cell_xyz,
                                      const int32_t *hi, const void *area, int32_t n, int32_t npt, double radius,
                                      double s2, void *d_m, void *mt, void *dy, hpsf_stream stream) {
    return HPSF_TYPED(dtype, by_sample, sample_xyz, cell_xyz, hi, area, n, npt, radius, s2, d_m, mt, dy, stream);
}

extern "C" int hpsf_weights_by_cell(int32_t dtype, const double *sample_xyz, const double *cell_xyz,
                                    const int64_t *ptr, const uint32_t *sample, const void *area, int32_t k,
                                    double radius, double s2, void *m, void *dx, hpsf_stream stream) {
    return HPSF_TYPED(dtype, by_cell, sample_xyz, cell_xyz, ptr, sample, area, k, radius, s2, m, dx, stream);
}
