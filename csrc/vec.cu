// Element-wise kernels: the vector operations of the solver's layers, column moves, and the box
// rules of a bounded fit (csrc/rules.h, one thread per element; the counting ones write one
// partial per block).
#include "common.cuh"

#define HPSF_ELEMENT(len)                                          \
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; \
    if (e >= (len)) return

template <typename T>
__global__ void axpby(T *y, const T *a, const T *x, T b, int64_t len, int32_t s) {
    HPSF_ELEMENT(len);
    y[e] = a[e % s] * x[e] + b * y[e];
}

template <typename T>
__global__ void mul_mask(T *v, const uint8_t *mask, int64_t len) {
    HPSF_ELEMENT(len);
    v[e] *= (mask[e] & HPSF_FREE) ? (T)1 : (T)0;
}

template <typename T>
__global__ void renormalise(T *x, const T *w, const uint8_t *rows, int64_t len, int32_t s, uint8_t *codes) {
    HPSF_ELEMENT(len);
    uint8_t code = HPSF_FREE;
    if (rows[e % s]) {
        if (w[e] != (T)0) {
            x[e] = x[e] / w[e];
        } else {
            x[e] = (T)0;
            code = 0;
        }
    }
    codes[e] = code;
}

template <typename T>
__global__ void reciprocal(T *out, const T *src, int64_t len) {
    HPSF_ELEMENT(len);
    out[e] = src[e] != (T)0 ? (T)1 / src[e] : (T)0;
}

template <typename T>
__global__ void broadcast(T *out, const T *src, T scale, const uint8_t *codes, int64_t len, int32_t s) {
    HPSF_ELEMENT(len);
    bool keep = !codes || (codes[e] & HPSF_FREE);
    out[e] = keep ? src[e / s] * scale : (T)0;
}

template <typename U>
__global__ void columns(U *dst, int32_t t, const int32_t *dst_cols, const U *src, int32_t m, const int32_t *src_cols,
                        int32_t ncols, int64_t rows) {
    HPSF_ELEMENT(rows * ncols);
    int64_t row = e / ncols;
    int32_t c = (int32_t)(e - row * ncols);
    dst[row * t + dst_cols[c]] = src[row * m + src_cols[c]];
}

template <typename T>
__global__ void box_clamp(hpsf_box<T> b, T *x, const uint8_t *codes, int64_t len) {
    HPSF_ELEMENT(len);
    hpsf_box_clamp_at(e, b, x, codes);
}

template <typename T>
__global__ void box_classify(hpsf_box<T> b, const T *x, const T *r, const T *kkt, uint8_t *codes, int64_t len) {
    HPSF_ELEMENT(len);
    hpsf_box_classify_at(e, b, x, r, kkt, codes);
}

// The counting rules: every thread of the block takes part in the partial.
template <typename T>
__global__ void box_step(hpsf_box<T> b, T *x, const T *d, const uint8_t *codes, int64_t len, double *partials) {
    __shared__ double sh[HPSF_BLOCK];
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    double v = e < len ? (double)hpsf_box_step_at(e, b, x, d, codes) : 0.0;
    hpsf_block_partials(v, sh, 0, 1, partials);
}

template <typename T>
__global__ void box_release(int32_t s, const T *r, const T *kkt, const uint8_t *codes, int64_t len, double *partials) {
    __shared__ double sh[HPSF_BLOCK];
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    double v = e < len ? (double)hpsf_box_release_at(e, s, r, kkt, codes) : 0.0;
    hpsf_block_partials(v, sh, 0, 1, partials);
}

template <typename T>
__global__ void box_hold(hpsf_box<T> b, const T *cand, T *base, uint8_t *codes, int64_t len, double *partials) {
    __shared__ double sh[HPSF_BLOCK];
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    double v = e < len ? (double)hpsf_box_hold_at(e, b, cand, base, codes) : 0.0;
    hpsf_block_partials(v, sh, 0, 1, partials);
}

// ---- launchers ------------------------------------------------------------------------------------

#define HPSF_GRID(len) hpsf_grid(len), HPSF_BLOCK, 0, stream

template <typename T>
static int axpby_launch(void *y, const void *a, const void *x, double b, int64_t len, int32_t s, hpsf_stream stream) {
    if (len <= 0) return 0;
    axpby<T><<<HPSF_GRID(len)>>>((T *)y, (const T *)a, (const T *)x, (T)b, len, s);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int mul_mask_launch(void *v, const uint8_t *mask, int64_t len, hpsf_stream stream) {
    if (len <= 0) return 0;
    mul_mask<T><<<HPSF_GRID(len)>>>((T *)v, mask, len);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int renormalise_launch(void *x, const void *w, const uint8_t *rows, int64_t len, int32_t s, uint8_t *codes,
                              hpsf_stream stream) {
    if (len <= 0) return 0;
    renormalise<T><<<HPSF_GRID(len)>>>((T *)x, (const T *)w, rows, len, s, codes);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int reciprocal_launch(void *out, const void *src, int64_t len, hpsf_stream stream) {
    if (len <= 0) return 0;
    reciprocal<T><<<HPSF_GRID(len)>>>((T *)out, (const T *)src, len);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int broadcast_launch(void *out, const void *src, double scale, const uint8_t *codes, int64_t e, int32_t s,
                            hpsf_stream stream) {
    if (e * s <= 0) return 0;
    broadcast<T><<<HPSF_GRID(e * s)>>>((T *)out, (const T *)src, (T)scale, codes, e * s, s);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static hpsf_box<T> box_of(const void *lo, const void *hi, const void *off, int32_t s) {
    hpsf_box<T> b = {(const T *)lo, (const T *)hi, (const T *)off, s};
    return b;
}

template <typename T>
static int clamp_launch(int64_t len, int32_t s, const void *lo, const void *hi, const void *off, void *x,
                        const uint8_t *codes, hpsf_stream stream) {
    if (len <= 0) return 0;
    box_clamp<T><<<HPSF_GRID(len)>>>(box_of<T>(lo, hi, off, s), (T *)x, codes, len);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int classify_launch(int64_t len, int32_t s, const void *lo, const void *hi, const void *off, const void *x,
                           const void *r, const void *kkt, uint8_t *codes, hpsf_stream stream) {
    if (len <= 0) return 0;
    box_classify<T><<<HPSF_GRID(len)>>>(box_of<T>(lo, hi, off, s), (const T *)x, (const T *)r, (const T *)kkt, codes,
                                        len);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int step_launch(int64_t len, int32_t s, const void *lo, const void *hi, const void *off, void *x,
                       const void *d, const uint8_t *codes, double *partials, hpsf_stream stream) {
    if (len <= 0) return 0;
    box_step<T><<<HPSF_GRID(len)>>>(box_of<T>(lo, hi, off, s), (T *)x, (const T *)d, codes, len, partials);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int release_launch(int64_t len, int32_t s, const void *r, const void *kkt, const uint8_t *codes,
                          double *partials, hpsf_stream stream) {
    if (len <= 0) return 0;
    box_release<T><<<HPSF_GRID(len)>>>(s, (const T *)r, (const T *)kkt, codes, len, partials);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int hold_launch(int64_t len, int32_t s, const void *lo, const void *hi, const void *cand, void *base,
                       uint8_t *codes, double *partials, hpsf_stream stream) {
    if (len <= 0) return 0;
    box_hold<T><<<HPSF_GRID(len)>>>(box_of<T>(lo, hi, nullptr, s), (const T *)cand, (T *)base, codes, len, partials);
    HPSF_LAUNCH_CHECK();
}

extern "C" {

int hpsf_axpby(int32_t dtype, void *y, const void *a, const void *x, double b, int64_t len, int32_t s,
               hpsf_stream stream) {
    return HPSF_TYPED(dtype, axpby_launch, y, a, x, b, len, s, stream);
}

int hpsf_mul_mask(int32_t dtype, void *v, const uint8_t *mask, int64_t len, hpsf_stream stream) {
    return HPSF_TYPED(dtype, mul_mask_launch, v, mask, len, stream);
}

int hpsf_renormalise(int32_t dtype, void *x, const void *w, const uint8_t *rows, int64_t len, int32_t s,
                     uint8_t *codes, hpsf_stream stream) {
    return HPSF_TYPED(dtype, renormalise_launch, x, w, rows, len, s, codes, stream);
}

int hpsf_reciprocal(int32_t dtype, void *out, const void *src, int64_t len, hpsf_stream stream) {
    return HPSF_TYPED(dtype, reciprocal_launch, out, src, len, stream);
}

int hpsf_broadcast(int32_t dtype, void *out, const void *src, double scale, const uint8_t *codes, int64_t e,
                   int32_t s, hpsf_stream stream) {
    return HPSF_TYPED(dtype, broadcast_launch, out, src, scale, codes, e, s, stream);
}

int hpsf_columns(void *dst, int32_t t, const int32_t *dst_cols, const void *src, int32_t m, const int32_t *src_cols,
                 int32_t ncols, int64_t rows, int32_t elem_bytes, hpsf_stream stream) {
    if (rows * ncols <= 0) return 0;
    switch (elem_bytes) {
        case 1:
            columns<uint8_t><<<HPSF_GRID(rows * ncols)>>>((uint8_t *)dst, t, dst_cols, (const uint8_t *)src, m,
                                                           src_cols, ncols, rows);
            break;
        case 4:
            columns<uint32_t><<<HPSF_GRID(rows * ncols)>>>((uint32_t *)dst, t, dst_cols, (const uint32_t *)src, m,
                                                            src_cols, ncols, rows);
            break;
        case 8:
            columns<uint64_t><<<HPSF_GRID(rows * ncols)>>>((uint64_t *)dst, t, dst_cols, (const uint64_t *)src, m,
                                                            src_cols, ncols, rows);
            break;
        default:
            return (int)cudaErrorInvalidValue;
    }
    HPSF_LAUNCH_CHECK();
}

int hpsf_box_clamp(int32_t dtype, int64_t len, int32_t s, const void *lo, const void *hi, const void *off, void *x,
                   const uint8_t *codes, hpsf_stream stream) {
    return HPSF_TYPED(dtype, clamp_launch, len, s, lo, hi, off, x, codes, stream);
}

int hpsf_box_classify(int32_t dtype, int64_t len, int32_t s, const void *lo, const void *hi, const void *off,
                      const void *x, const void *r, const void *kkt, uint8_t *codes, hpsf_stream stream) {
    return HPSF_TYPED(dtype, classify_launch, len, s, lo, hi, off, x, r, kkt, codes, stream);
}

int hpsf_box_step(int32_t dtype, int64_t len, int32_t s, const void *lo, const void *hi, const void *off, void *x,
                  const void *d, const uint8_t *codes, double *partials, hpsf_stream stream) {
    return HPSF_TYPED(dtype, step_launch, len, s, lo, hi, off, x, d, codes, partials, stream);
}

int hpsf_box_release(int32_t dtype, int64_t len, int32_t s, const void *r, const void *kkt, const uint8_t *codes,
                     double *partials, hpsf_stream stream) {
    return HPSF_TYPED(dtype, release_launch, len, s, r, kkt, codes, partials, stream);
}

int hpsf_box_hold(int32_t dtype, int64_t len, int32_t s, const void *lo, const void *hi, const void *cand,
                  void *base, uint8_t *codes, double *partials, hpsf_stream stream) {
    return HPSF_TYPED(dtype, hold_launch, len, s, lo, hi, cand, base, codes, partials, stream);
}
}
