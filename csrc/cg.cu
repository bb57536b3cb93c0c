// Reductions and the conjugate gradient's kernels (SPEC §4): per-column dot products as per-tile
// partials reduced by the tree of common.cuh (bitwise reproducible, and the CPU's order), the fused update x += αp, r −= αAp with
// <r, r>_Dx, the direction p = r + βp, and the per-column scalar step of csrc/rules.h run in one
// thread between them, so the host never waits inside an iteration (kernels return at once once
// *done is set).
#include "common.cuh"

template <typename T>
__global__ void row_dots(const T *a, const T *b, const T *w, const uint8_t *mask, int64_t rows, int32_t s,
                         int32_t width, double *partials) {
    __shared__ double sh[HPSF_BLOCK];
    hpsf_tile t = hpsf_tile_here(width);
    double v = 0.0;
    if (t.row < rows && t.col < s) {
        int64_t e = t.row * s + t.col;
        if (!(mask && !(mask[e] & HPSF_FREE))) {
            v = (double)a[e];
            if (b) v *= (double)b[e];
            if (w) v *= (double)w[t.row];
        }
    }
    hpsf_tile_sum(v, sh, t, s, partials);
}

template <typename T>
__global__ void row_max_abs(const T *a, int64_t rows, int32_t s, int32_t width, double *partials) {
    __shared__ double sh[HPSF_BLOCK];
    hpsf_tile t = hpsf_tile_here(width);
    double v = t.row < rows && t.col < s ? fabs((double)a[t.row * s + t.col]) : 0.0;
    hpsf_tile_sum<true>(v, sh, t, s, partials);
}

// One level of the tree above the tiles: the (g x s) partials `in` summed (op 0) or maximised (op 1)
// per tile of rows into `out`; with `last` (one tile left) out is the result.
__global__ void tree_stage(const double *in, int64_t g, int32_t s, int32_t width, int32_t op, double *out, int32_t last,
                           const int32_t *done) {
    __shared__ double sh[HPSF_BLOCK];
    if (done && *done) return;
    hpsf_tile t = hpsf_tile_here(width);
    double v = t.row < g && t.col < s ? in[t.row * s + t.col] : 0.0;
    if (op)
        hpsf_tile_sum<true>(v, sh, t, s, out);
    else
        hpsf_tile_sum(v, sh, t, s, out, last != 0);
}

template <typename T>
__global__ void cg_update(T *x, T *r, const T *p, const T *ap, const double *alpha, const T *w, int32_t k, int32_t s,
                          int32_t width, double *partials, const int32_t *done) {
    __shared__ double sh[HPSF_BLOCK];
    if (*done) return;
    hpsf_tile t = hpsf_tile_here(width);
    double v = 0.0;
    if (t.row < k && t.col < s) {
        int64_t e = t.row * s + t.col;
        T a = (T)alpha[t.col];
        x[e] += hpsf_mul_t(a, p[e]);
        T rr = r[e] - hpsf_mul_t(a, ap[e]);
        r[e] = rr;
        v = (double)rr * (double)rr * (double)w[t.row];
    }
    hpsf_tile_sum(v, sh, t, s, partials);
}

template <typename T>
__global__ void cg_direction(T *p, const T *r, const double *beta, int32_t k, int32_t s, const int32_t *done) {
    if (*done) return;
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e < (int64_t)k * s) p[e] = r[e] + hpsf_mul_t((T)beta[e % s], p[e]);
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
    int32_t width = hpsf_tile_width(s, HPSF_BLOCK);
    row_dots<T><<<hpsf_tiles(e, s, width), HPSF_BLOCK, 0, stream>>>((const T *)a, (const T *)b, (const T *)w, mask, e,
                                                                   s, width, partials);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int max_launch(const void *a, int64_t e, int32_t s, double *partials, hpsf_stream stream) {
    if (e * s <= 0) return 0;
    int32_t width = hpsf_tile_width(s, HPSF_BLOCK);
    row_max_abs<T><<<hpsf_tiles(e, s, width), HPSF_BLOCK, 0, stream>>>((const T *)a, e, s, width, partials);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int update_launch(void *x, void *r, const void *p, const void *ap, const double *alpha, const void *w,
                         int32_t k, int32_t s, double *partials, const int32_t *done, hpsf_stream stream) {
    if ((int64_t)k * s <= 0) return 0;
    int32_t width = hpsf_tile_width(s, HPSF_BLOCK);
    cg_update<T><<<hpsf_tiles(k, s, width), HPSF_BLOCK, 0, stream>>>(
        (T *)x, (T *)r, (const T *)p, (const T *)ap, alpha, (const T *)w, k, s, width, partials, done);
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

// Columns per tile of the levels above the first: narrower, so that a tile always has several rows.
#define HPSF_STAGE_WIDTH 32

extern "C" int hpsf_emulated(void) { return HPSF_EMULATED; }

extern "C" int64_t hpsf_reduction_tiles(int64_t rows, int32_t s) {
    int64_t per = HPSF_BLOCK / hpsf_tile_width(s, HPSF_BLOCK);
    return (rows + per - 1) / per;
}

extern "C" int64_t hpsf_reduction_space(int64_t rows, int32_t s) {
    int64_t per = HPSF_BLOCK / hpsf_tile_width(s, HPSF_STAGE_WIDTH), total = 0;
    for (int64_t g = hpsf_reduction_tiles(rows, s); g > 1; g = (g + per - 1) / per) total += g;
    return (total > 0 ? total : 1) * (s > 0 ? s : 1);
}

extern "C" int hpsf_reduce(double *partials, int64_t rows, int32_t s, int32_t op, double *out, const int32_t *done,
                           hpsf_stream stream) {
    if (s <= 0) return 0;
    int32_t width = hpsf_tile_width(s, HPSF_STAGE_WIDTH);
    int64_t per = HPSF_BLOCK / width, g = rows > 0 ? hpsf_reduction_tiles(rows, s) : 0;
    double *in = partials;
    for (;;) {
        int64_t next = g > per ? (g + per - 1) / per : 1;
        double *dst = next == 1 ? out : in + g * s;
        tree_stage<<<hpsf_tiles(g > 0 ? g : 1, s, width), HPSF_BLOCK, 0, stream>>>(in, g, s, width, op, dst,
                                                                                   next == 1, done);
        cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess || next == 1) return (int)err;
        in = dst;
        g = next;
    }
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
