// Conjugate-gradient kernels (SPEC §4): Dx-weighted dot products reduced deterministically, the fused
// update x += αp, r −= αAp with <r, r>_w, the new direction, and the per-row scalars α and β computed
// on the device with the reference's zero guards, breakdown test and stopping rule, so the host
// never has to synchronise per iteration (kernels return at once when *done is set).
#include "common.cuh"

template <typename T>
__global__ void wdot(const T *a, const T *b, const T *w, int32_t k, int32_t s, double *partials) {
    __shared__ double sh[HPSF_BLOCK];
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    double v = 0.0;
    if (e < (int64_t)k * s) v = (double)a[e] * (double)b[e] * (double)w[e / s];
    hpsf_block_partials(v, sh, (int64_t)blockIdx.x * HPSF_BLOCK, s, partials);
}

// One block per row j: fixed-order tree sum of the row's partials.
__global__ void reduce_partials(const double *partials, int32_t nblocks, int32_t s, double *out, const int32_t *done) {
    __shared__ double sh[HPSF_BLOCK];
    if (done && *done) return;
    int32_t j = blockIdx.x;
    double acc = 0.0;
    for (int32_t b = threadIdx.x; b < nblocks; b += blockDim.x) acc += partials[(int64_t)b * s + j];
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int32_t half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) sh[threadIdx.x] += sh[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[j] = sh[0];
}

template <typename T>
__global__ void cg_update(T *x, T *r, const T *p, const T *ap, const T *alpha, const T *w, int32_t k, int32_t s,
                          double *partials, const int32_t *done) {
    __shared__ double sh[HPSF_BLOCK];
    if (*done) return;
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    double v = 0.0;
    if (e < (int64_t)k * s) {
        T a = alpha[e % s];
        x[e] += a * p[e];
        T rr = r[e] - a * ap[e];
        r[e] = rr;
        v = (double)rr * (double)rr * (double)w[e / s];
    }
    hpsf_block_partials(v, sh, (int64_t)blockIdx.x * HPSF_BLOCK, s, partials);
}

template <typename T>
__global__ void cg_direction(T *p, const T *r, const T *beta, int32_t k, int32_t s, const int32_t *done) {
    if (*done) return;
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e < (int64_t)k * s) p[e] = r[e] + beta[e % s] * p[e];
}

// state: rs[s], den[s], rs_new[s], thr[s], norms[(max_iter + 1) * s]
template <typename T>
__global__ void cg_alpha(double *state, int32_t s, int32_t per_row, int32_t *flags, T *alpha, int32_t *done) {
    if (threadIdx.x != 0 || *done) return;
    const double *rs = state, *den = state + s;
    double worst = 0.0;
    for (int32_t j = 0; j < s; ++j) worst = fmax(worst, fabs(den[j]));
    bool all_broken = !per_row && worst < 1e-30;
    int32_t running = 0;
    for (int32_t j = 0; j < s; ++j) {
        bool broken = all_broken || (per_row && flags[j] == 0 && fabs(den[j]) < 1e-30);
        if (broken && flags[j] == 0) flags[j] = 2;
        alpha[j] = (flags[j] == 0 && den[j] != 0.0) ? (T)(rs[j] / den[j]) : (T)0;
        running += flags[j] == 0;
    }
    if (running == 0) *done = 1;  // breakdown: no step, no new norm
}

template <typename T>
__global__ void cg_beta(double *state, int32_t s, int32_t per_row, int32_t max_iter, int32_t *flags,
                        int32_t *counters, T *beta, int32_t *done) {
    if (threadIdx.x != 0 || *done) return;
    double *rs = state, *rs_new = state + 2 * s, *thr = state + 3 * s, *norms = state + 4 * s;
    int32_t it = ++counters[0];
    bool all_within = true;
    for (int32_t j = 0; j < s; ++j) all_within = all_within && sqrt(rs_new[j]) <= thr[j];
    int32_t running = 0;
    for (int32_t j = 0; j < s; ++j) {
        if (flags[j] == 0) {
            counters[1 + j] = it;
            norms[(int64_t)it * s + j] = sqrt(rs_new[j]);
            bool conv = per_row ? sqrt(rs_new[j]) <= thr[j] : all_within;
            if (conv) flags[j] = 1;
        }
        beta[j] = rs[j] != 0.0 ? (T)(rs_new[j] / rs[j]) : (T)0;
        if (flags[j] == 0) rs[j] = rs_new[j];
        running += flags[j] == 0;
    }
    if (running == 0 || it >= max_iter) *done = 1;
}

extern "C" int hpsf_reduce_partials(const double *partials, int32_t nblocks, int32_t s, double *out,
                                    const int32_t *done, hpsf_stream stream) {
    if (s <= 0) return 0;
    reduce_partials<<<s, HPSF_BLOCK, 0, stream>>>(partials, nblocks, s, out, done);
    HPSF_LAUNCH_CHECK();
}

#define CG(SUF, T)                                                                                            \
    extern "C" int hpsf_wdot_##SUF(const T *a, const T *b, const T *w, int32_t k, int32_t s, double *partials, \
                                   hpsf_stream stream) {                                                      \
        if ((int64_t)k * s <= 0) return 0;                                                                    \
        wdot<T><<<hpsf_blocks((int64_t)k * s), HPSF_BLOCK, 0, stream>>>(a, b, w, k, s, partials);             \
        HPSF_LAUNCH_CHECK();                                                                                  \
    }                                                                                                         \
    extern "C" int hpsf_cg_update_##SUF(T *x, T *r, const T *p, const T *ap, const T *alpha, const T *w,     \
                                        int32_t k, int32_t s, double *partials, const int32_t *done,          \
                                        hpsf_stream stream) {                                                 \
        if ((int64_t)k * s <= 0) return 0;                                                                    \
        cg_update<T><<<hpsf_blocks((int64_t)k * s), HPSF_BLOCK, 0, stream>>>(x, r, p, ap, alpha, w, k, s,     \
                                                                             partials, done);                 \
        HPSF_LAUNCH_CHECK();                                                                                  \
    }                                                                                                         \
    extern "C" int hpsf_cg_direction_##SUF(T *p, const T *r, const T *beta, int32_t k, int32_t s,             \
                                           const int32_t *done, hpsf_stream stream) {                         \
        if ((int64_t)k * s <= 0) return 0;                                                                    \
        cg_direction<T><<<hpsf_blocks((int64_t)k * s), HPSF_BLOCK, 0, stream>>>(p, r, beta, k, s, done);      \
        HPSF_LAUNCH_CHECK();                                                                                  \
    }                                                                                                         \
    extern "C" int hpsf_cg_alpha_##SUF(double *state, int32_t s, int32_t per_row, int32_t *flags, T *alpha,   \
                                       int32_t *done, hpsf_stream stream) {                                   \
        cg_alpha<T><<<1, 1, 0, stream>>>(state, s, per_row, flags, alpha, done);                              \
        HPSF_LAUNCH_CHECK();                                                                                  \
    }                                                                                                         \
    extern "C" int hpsf_cg_beta_##SUF(double *state, int32_t s, int32_t per_row, int32_t max_iter,            \
                                      int32_t *flags, int32_t *counters, T *beta, int32_t *done,              \
                                      hpsf_stream stream) {                                                   \
        cg_beta<T><<<1, 1, 0, stream>>>(state, s, per_row, max_iter, flags, counters, beta, done);            \
        HPSF_LAUNCH_CHECK();                                                                                  \
    }

CG(f32, float)
CG(f64, double)
