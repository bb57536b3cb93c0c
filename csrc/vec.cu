// Element-wise kernels: the vector operations of the solver's layers, column moves, and the box
// rules of a bounded fit (csrc/rules.h, one thread per element; those that count write one partial
// per block).
#include "common.cuh"

template <typename T>
__global__ void axpby(T *y, const T *a, const T *x, T b, int64_t len, int32_t s) {
    HPSF_AT(e, len);
    y[e] = hpsf_mul_t(a[e % s], x[e]) + hpsf_mul_t(b, y[e]);
}

template <typename T>
__global__ void mul_mask(T *v, const uint8_t *mask, int64_t len) {
    HPSF_AT(e, len);
    v[e] *= (mask[e] & HPSF_FREE) ? (T)1 : (T)0;
}

template <typename T>
__global__ void renormalise(T *x, const T *w, const uint8_t *rows, int64_t len, int32_t s, uint8_t *codes) {
    HPSF_AT(e, len);
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
    HPSF_AT(e, len);
    out[e] = src[e] != (T)0 ? (T)1 / src[e] : (T)0;
}

template <typename T>
__global__ void broadcast(T *out, const T *src, T scale, const uint8_t *codes, int64_t len, int32_t s) {
    HPSF_AT(e, len);
    bool keep = !codes || (codes[e] & HPSF_FREE);
    out[e] = keep ? src[e / s] * scale : (T)0;
}

template <typename U>
__global__ void columns(U *dst, int32_t t, const int32_t *dst_cols, const U *src, int32_t m, const int32_t *src_cols,
                        int32_t ncols, int64_t rows) {
    HPSF_AT(e, rows * ncols);
    int64_t row = e / ncols;
    int32_t c = (int32_t)(e - row * ncols);
    dst[row * t + dst_cols[c]] = src[row * m + src_cols[c]];
}

// A box rule, one thread per element; with partials, the block's count (every thread of the block
// takes part).
// A box rule, one thread per element; with partials, the tile's count (every thread of the block
// takes part; the elements are the rows of a one-column reduction).
template <typename T>
__global__ void box_rule(hpsf_box_args a, double *partials) {
    __shared__ double sh[HPSF_BLOCK];
    hpsf_tile t = hpsf_tile_here(1);
    double v = t.row < a.len ? (double)hpsf_box_rule<T>(t.row, a) : 0.0;
    if (partials) hpsf_tile_sum(v, sh, t, 1, partials);
}

// ---- launchers ------------------------------------------------------------------------------------

template <typename T>
static int axpby_launch(void *y, const void *a, const void *x, double b, int64_t len, int32_t s, hpsf_stream stream) {
    if (len <= 0) return 0;
    axpby<T><<<HPSF_ON(len, stream)>>>((T *)y, (const T *)a, (const T *)x, (T)b, len, s);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int mul_mask_launch(void *v, const uint8_t *mask, int64_t len, hpsf_stream stream) {
    if (len <= 0) return 0;
    mul_mask<T><<<HPSF_ON(len, stream)>>>((T *)v, mask, len);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int renormalise_launch(void *x, const void *w, const uint8_t *rows, int64_t len, int32_t s, uint8_t *codes,
                              hpsf_stream stream) {
    if (len <= 0) return 0;
    renormalise<T><<<HPSF_ON(len, stream)>>>((T *)x, (const T *)w, rows, len, s, codes);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int reciprocal_launch(void *out, const void *src, int64_t len, hpsf_stream stream) {
    if (len <= 0) return 0;
    reciprocal<T><<<HPSF_ON(len, stream)>>>((T *)out, (const T *)src, len);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int broadcast_launch(void *out, const void *src, double scale, const uint8_t *codes, int64_t e, int32_t s,
                            hpsf_stream stream) {
    if (e * s <= 0) return 0;
    broadcast<T><<<HPSF_ON(e * s, stream)>>>((T *)out, (const T *)src, (T)scale, codes, e * s, s);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int box_launch(const hpsf_box_args *a, double *partials, hpsf_stream stream) {
    if (a->len <= 0) return 0;
    box_rule<T><<<HPSF_ON(a->len, stream)>>>(*a, partials);
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
            columns<uint8_t><<<HPSF_ON(rows * ncols, stream)>>>((uint8_t *)dst, t, dst_cols, (const uint8_t *)src, m,
                                                           src_cols, ncols, rows);
            break;
        case 4:
            columns<uint32_t><<<HPSF_ON(rows * ncols, stream)>>>((uint32_t *)dst, t, dst_cols, (const uint32_t *)src, m,
                                                            src_cols, ncols, rows);
            break;
        case 8:
            columns<uint64_t><<<HPSF_ON(rows * ncols, stream)>>>((uint64_t *)dst, t, dst_cols, (const uint64_t *)src, m,
                                                            src_cols, ncols, rows);
            break;
        default:
            return (int)cudaErrorInvalidValue;
    }
    HPSF_LAUNCH_CHECK();
}

int hpsf_box(int32_t dtype, const hpsf_box_args *a, double *partials, hpsf_stream stream) {
    return HPSF_TYPED(dtype, box_launch, a, partials, stream);
}
}
