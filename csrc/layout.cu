// The batched values between the caller's layout and the solver's, on the device: B rows of E
// values row-major (uploaded as the caller holds them) <-> E x s interleaved blocks, samples in
// the operator's order; what each row holds (NaN, infinite, largest |value|) as per-block partials
// reduced in a fixed order; and the element-wise helpers of the solver's setup.
#include "common.cuh"

// The element of a one-dimensional launch, or return past `len`.
#define HPSF_INDEX(idx, len)                                          \
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; \
    if (idx >= (len)) return

// Columns col0 .. col0+c-1 of out (e x s): column col0 + r, element p = row r of raw (c rows of
// `width`, row-major) at element order[p] (p itself without order). One thread per (p, r), r
// fastest, so that the writes are contiguous.
template <typename T>
__global__ void gather_rows(const T *raw, int32_t c, int64_t width, const uint32_t *order, int64_t e, int32_t s,
                            int32_t col0, T *out) {
    HPSF_INDEX(idx, e * c);
    int64_t p = idx / c;
    int32_t r = (int32_t)(idx - p * c);
    int64_t i = order ? (int64_t)order[p] : p;
    out[p * s + col0 + r] = raw[(int64_t)r * width + i];
}

// Per element of an e x s block: NaN -> 0 with zero_nan, mask = 1 where not NaN (when mask), and
// the block's partials per column of the NaN count, the infinite count and the largest finite |v|.
template <typename T>
__global__ void clean_block(T *v, int64_t len, int32_t s, int32_t zero_nan, uint8_t *mask, double *nan_partials,
                            double *inf_partials, double *max_partials) {
    __shared__ double sh[HPSF_BLOCK];
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    double nan = 0.0, inf = 0.0, mag = 0.0;
    if (e < len) {
        T x = v[e];
        bool is_nan = isnan(x);
        if (is_nan) {
            nan = 1.0;
            if (zero_nan) v[e] = (T)0;
        } else if (isinf(x)) {
            inf = 1.0;
        } else {
            mag = fabs((double)x);
        }
        if (mask) mask[e] = is_nan ? 0 : HPSF_FREE;
    }
    int64_t first = (int64_t)blockIdx.x * HPSF_BLOCK;
    hpsf_block_partials(nan, sh, first, s, nan_partials);
    __syncthreads();
    hpsf_block_partials(inf, sh, first, s, inf_partials);
    __syncthreads();
    hpsf_block_partials<true>(mag, sh, first, s, max_partials);
}

// Rows r0 .. r0+c-1 of the caller's layout (`width` values each) from x (e x s): out (c rows of
// width, row-major) element i of row r = x at element position[i] (i itself without position),
// column r0 + r; NaN where position[i] == HPSF_LEFT_OUT. One thread per output element.
template <typename T>
__global__ void scatter_rows(const T *x, int32_t s, const uint32_t *position, int64_t width, int32_t r0, int32_t c,
                             T *out) {
    HPSF_INDEX(idx, (int64_t)c * width);
    int64_t r = idx / width;
    int64_t i = idx - r * width;
    int64_t p = i;
    if (position) {
        uint32_t q = position[i];
        if (q == HPSF_LEFT_OUT) {
            out[idx] = (T)NAN;
            return;
        }
        p = q;
    }
    out[idx] = x[p * s + r0 + r];
}

template <typename T>
__global__ void scale_columns(T *v, const T *c, int64_t len, int32_t s) {
    HPSF_INDEX(e, len);
    v[e] *= c[e % s];
}

template <typename T>
__global__ void mask_values(T *out, const uint8_t *mask, int64_t len) {
    HPSF_INDEX(e, len);
    out[e] = (mask[e] & HPSF_FREE) ? (T)1 : (T)0;
}

template <typename T>
__global__ void fill_masked(T *v, const uint8_t *mask, T fill, int64_t len) {
    HPSF_INDEX(e, len);
    if (!(mask[e] & HPSF_FREE)) v[e] = fill;
}

// ---- launchers ------------------------------------------------------------------------------------

#define HPSF_LAUNCH(len) hpsf_grid(len), HPSF_BLOCK, 0, stream

template <typename T>
static int gather_rows_launch(const void *raw, int32_t c, int64_t width, const uint32_t *order, int64_t e, int32_t s,
                              int32_t col0, void *out, hpsf_stream stream) {
    if (e * c <= 0) return 0;
    gather_rows<T><<<HPSF_LAUNCH(e * c)>>>((const T *)raw, c, width, order, e, s, col0, (T *)out);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int clean_block_launch(void *v, int64_t e, int32_t s, int32_t zero_nan, uint8_t *mask, double *nan_partials,
                              double *inf_partials, double *max_partials, hpsf_stream stream) {
    if (e * s <= 0) return 0;
    clean_block<T><<<HPSF_LAUNCH(e * s)>>>((T *)v, e * s, s, zero_nan, mask, nan_partials, inf_partials,
                                           max_partials);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int scatter_rows_launch(const void *x, int32_t s, const uint32_t *position, int64_t width, int32_t r0,
                               int32_t c, void *out, hpsf_stream stream) {
    if ((int64_t)c * width <= 0) return 0;
    scatter_rows<T><<<HPSF_LAUNCH((int64_t)c * width)>>>((const T *)x, s, position, width, r0, c, (T *)out);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int scale_columns_launch(void *v, const void *c, int64_t len, int32_t s, hpsf_stream stream) {
    if (len <= 0) return 0;
    scale_columns<T><<<HPSF_LAUNCH(len)>>>((T *)v, (const T *)c, len, s);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int mask_values_launch(void *out, const uint8_t *mask, int64_t len, hpsf_stream stream) {
    if (len <= 0) return 0;
    mask_values<T><<<HPSF_LAUNCH(len)>>>((T *)out, mask, len);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int fill_masked_launch(void *v, const uint8_t *mask, double fill, int64_t len, hpsf_stream stream) {
    if (len <= 0) return 0;
    fill_masked<T><<<HPSF_LAUNCH(len)>>>((T *)v, mask, (T)fill, len);
    HPSF_LAUNCH_CHECK();
}

extern "C" {

int hpsf_gather_rows(int32_t dtype, const void *raw, int32_t c, int64_t width, const uint32_t *order, int64_t e,
                     int32_t s, int32_t col0, void *out, hpsf_stream stream) {
    return HPSF_TYPED(dtype, gather_rows_launch, raw, c, width, order, e, s, col0, out, stream);
}

int hpsf_clean_block(int32_t dtype, void *v, int64_t e, int32_t s, int32_t zero_nan, uint8_t *mask,
                     double *nan_partials, double *inf_partials, double *max_partials, hpsf_stream stream) {
    return HPSF_TYPED(dtype, clean_block_launch, v, e, s, zero_nan, mask, nan_partials, inf_partials, max_partials,
                      stream);
}

int hpsf_scatter_rows(int32_t dtype, const void *x, int32_t s, const uint32_t *position, int64_t width, int32_t r0,
                      int32_t c, void *out, hpsf_stream stream) {
    return HPSF_TYPED(dtype, scatter_rows_launch, x, s, position, width, r0, c, out, stream);
}

int hpsf_scale_columns(int32_t dtype, void *v, const void *c, int64_t len, int32_t s, hpsf_stream stream) {
    return HPSF_TYPED(dtype, scale_columns_launch, v, c, len, s, stream);
}

int hpsf_mask_values(int32_t dtype, void *out, const uint8_t *mask, int64_t len, hpsf_stream stream) {
    return HPSF_TYPED(dtype, mask_values_launch, out, mask, len, stream);
}

int hpsf_fill_masked(int32_t dtype, void *v, const uint8_t *mask, double fill, int64_t len, hpsf_stream stream) {
    return HPSF_TYPED(dtype, fill_masked_launch, v, mask, fill, len, stream);
}
}
