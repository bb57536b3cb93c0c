// Reductions and the conjugate gradient's kernels (SPEC §4): per-column dot products as per-block
// partials reduced in a fixed order (bitwise reproducible), the fused update x += αp, r −= αAp with
// <r, r>_Dx, the direction p = r + βp, and the per-column scalar step of csrc/rules.h run in one
// thread between them, so the host never waits inside an iteration (kernels return at once once
// *done is set).
#include "common.cuh"

template <typename T>
__global__ void row_dots(const T *a, const T *b, const T *w, const uint8_t *mask, int64_t len, int32_t s,
                         double *partials) {
    __shared__ double sh[HPSF_BLOCK];
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    double v = 0.0;
    if (e < len && !(mask && !(mask[e] & HPSF_FREE))) {
        v = (double)a[e];
        if (b) v *= (double)b[e];
        if (w) v *= (double)w[e / s];
    }
    hpsf_block_partials(v, sh, (int64_t)blockIdx.x * HPSF_BLOCK, s, partials);
}

template <typename T>
__global__ void row_max_abs(const T *a, int64_t len, int32_t s, double *partials) {
    __shared__ double sh[HPSF_BLOCK];
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    double v = e < len ? fabs((double)a[e]) : 0.0;
    hpsf_block_partials<true>(v, sh, (int64_t)blockIdx.x * HPSF_BLOCK, s, partials);
}

// One block per column j: a fixed-order tree over the column's partials.
__global__ void reduce_partials(const double *partials, int32_t nblocks, int32_t s, int32_t op, double *out,
                                const int32_t *done) {
    __shared__ double sh[HPSF_BLOCK];
    if (done && *done) return;
    int32_t j = blockIdx.x;
    double acc = 0.0;
    for (int32_t b = threadIdx.x; b < nblocks; b += blockDim.x) {
        double v = partials[(int64_t)b * s + j];
        acc = op ? fmax(acc, v) : acc + v;
    }
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int32_t half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) sh[threadIdx.x] = op ? fmax(sh[threadIdx.x], sh[threadIdx.x + half])
                                                     : sh[threadIdx.x] + sh[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[j] = sh[0];
}

template <typename T>
__global__ void cg_update(T *x, T *r, const T *p, const T *ap, const double *alpha, const T *w, int32_t k, int32_t s,
                          double *partials, const int32_t *done) {
    __shared__ double sh[HPSF_BLOCK];
    if (*done) return;
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    double v = 0.0;
    if (e < (int64_t)k * s) {
        T a = (T)alpha[e % s];
        x[e] += a * p[e];
        T rr = r[e] - a * ap[e];
        r[e] = rr;
        v = (double)rr * (double)rr * (double)w[e / s];
    }
    hpsf_block_partials(v, sh, (int64_t)blockIdx.x * HPSF_BLOCK, s, partials);
}

template <typename T>
__global__ void cg_direction(T *p, const T *r, const double *beta, int32_t k, int32_t s, const int32_t *done) {
    if (*done) return;
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e < (int64_t)k * s) p[e] = r[e] + (T)beta[e % s] * p[e];
}

__global__ void cg_alpha(hpsf_cg_scalars c) {
    if (threadIdx.x == 0 && blockIdx.x == 0) hpsf_cg_alpha_rule(&c);
}

__global__ void cg_beta(hpsf_cg_scalars c) {
    if (threadIdx.x == 0 && blockIdx.x == 0) hpsf_cg_beta_rule(&c);
}

template <typename T>
static int dots_launch(const void *a, const void *b, const void *w, const uint8_t *mask, int64_t e, int32_t s,
                       double *partials, hpsf_stream stream) {
    if (e * s <= 0) return 0;
    row_dots<T><<<hpsf_grid(e * s), HPSF_BLOCK, 0, stream>>>((const T *)a, (const T *)b, (const T *)w, mask, e * s,
                                                             s, partials);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int max_launch(const void *a, int64_t e, int32_t s, double *partials, hpsf_stream stream) {
    if (e * s <= 0) return 0;
    row_max_abs<T><<<hpsf_grid(e * s), HPSF_BLOCK, 0, stream>>>((const T *)a, e * s, s, partials);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int update_launch(void *x, void *r, const void *p, const void *ap, const double *alpha, const void *w,
                         int32_t k, int32_t s, double *partials, const int32_t *done, hpsf_stream stream) {
    if ((int64_t)k * s <= 0) return 0;
    cg_update<T><<<hpsf_grid((int64_t)k * s), HPSF_BLOCK, 0, stream>>>(
        (T *)x, (T *)r, (const T *)p, (const T *)ap, alpha, (const T *)w, k, s, partials, done);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int direction_launch(void *p, const void *r, const double *beta, int32_t k, int32_t s, const int32_t *done,
                            hpsf_stream stream) {
    if ((int64_t)k * s <= 0) return 0;
    cg_direction<T><<<hpsf_grid((int64_t)k * s), HPSF_BLOCK, 0, stream>>>((T *)p, (const T *)r, beta, k, s, done);
    HPSF_LAUNCH_CHECK();
}

extern "C" int hpsf_row_dots(int32_t dtype, const void *a, const void *b, const void *w, const uint8_t *mask,
                             int64_t e, int32_t s, double *partials, hpsf_stream stream) {
    return HPSF_TYPED(dtype, dots_launch, a, b, w, mask, e, s, partials, stream);
}

extern "C" int hpsf_row_max_abs(int32_t dtype, const void *a, int64_t e, int32_t s, double *partials,
                                hpsf_stream stream) {
    return HPSF_TYPED(dtype, max_launch, a, e, s, partials, stream);
}

extern "C" int hpsf_reduce(const double *partials, int32_t nblocks, int32_t s, int32_t op, double *out,
                           const int32_t *done, hpsf_stream stream) {
    if (s <= 0) return 0;
    reduce_partials<<<s, HPSF_BLOCK, 0, stream>>>(partials, nblocks, s, op, out, done);
    HPSF_LAUNCH_CHECK();
}

extern "C" int hpsf_cg_update(int32_t dtype, void *x, void *r, const void *p, const void *ap, const double *alpha,
                              const void *w, int32_t k, int32_t s, double *partials, const int32_t *done,
                              hpsf_stream stream) {
    return HPSF_TYPED(dtype, update_launch, x, r, p, ap, alpha, w, k, s, partials, done, stream);
}

extern "C" int hpsf_cg_direction(int32_t dtype, void *p, const void *r, const double *beta, int32_t k, int32_t s,
                                 const int32_t *done, hpsf_stream stream) {
    return HPSF_TYPED(dtype, direction_launch, p, r, beta, k, s, done, stream);
}

extern "C" int hpsf_cg_alpha(const hpsf_cg_scalars *c, hpsf_stream stream) {
    cg_alpha<<<1, 1, 0, stream>>>(*c);
    HPSF_LAUNCH_CHECK();
}

extern "C" int hpsf_cg_beta(const hpsf_cg_scalars *c, hpsf_stream stream) {
    cg_beta<<<1, 1, 0, stream>>>(*c);
    HPSF_LAUNCH_CHECK();
}
