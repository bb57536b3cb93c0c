// The batched values between the caller's layout and the solver's, on the device: B rows of E
// values row-major (uploaded as the caller holds them) <-> E x s interleaved blocks, samples in
// the operator's order; what each row holds (NaN, infinite, lowest and highest value), read from
// the rows as uploaded, in segments reduced in a fixed order; and the element-wise helpers of the
// setup.
#include "common.cuh"

// Columns col0 .. col0+c-1 of out (e x s): column col0 + r, element p = row r of raw (c rows of
// `width`, row-major) at element order[p] (p itself without order). One thread per (p, r), r
// fastest, so that the writes are contiguous.
template <typename T>
__global__ void gather_rows(const T *raw, int32_t c, int64_t width, const uint32_t *order, int64_t e, int32_t s,
                            int32_t col0, T *out) {
    HPSF_AT(idx, e * c);
    int64_t p = idx / c;
    int32_t r = (int32_t)(idx - p * c);
    int64_t i = order ? (int64_t)order[p] : p;
    out[p * s + col0 + r] = raw[(int64_t)r * width + i];
}

// Per element of a block: NaN -> 0 with zero_nan, mask = 1 where not NaN (when mask).
template <typename T>
__global__ void clean_block(T *v, int64_t len, int32_t zero_nan, uint8_t *mask) {
    HPSF_AT(e, len);
    T x = v[e];
    bool is_nan = isnan(x);
    if (is_nan && zero_nan) v[e] = (T)0;
    if (mask) mask[e] = is_nan ? 0 : HPSF_FREE;
}

// What the rows of raw (c rows of width, row-major) hold, per segment of HPSF_FACTS_SEGMENT
// elements: one thread block per (row, segment) — block b is row b / nseg, segment b % nseg —
// writes the NaN count, the infinite count and the lowest and highest v but NaN (infinities
// included, as the CPU's facts) over the segment's elements not left out (position[i] ==
// HPSF_LEFT_OUT), each a tree over the block in a fixed order (+∞ and −∞ where there is none).
template <typename T>
__global__ void row_facts(const T *raw, int64_t width, const uint32_t *position, int32_t nseg, double *nan_p,
                          double *inf_p, double *lo_p, double *hi_p) {
    __shared__ double a[HPSF_BLOCK], b[HPSF_BLOCK], m[HPSF_BLOCK], n[HPSF_BLOCK];
    const int64_t block = blockIdx.x;
    const int64_t r = block / nseg, g = block - r * nseg;
    const T *row = raw + r * width;
    const int64_t begin = g * HPSF_FACTS_SEGMENT;
    const int64_t end = begin + HPSF_FACTS_SEGMENT < width ? begin + HPSF_FACTS_SEGMENT : width;
    double nan = 0.0, inf = 0.0, lo = INFINITY, hi = -INFINITY;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
        if (position && position[i] == HPSF_LEFT_OUT) continue;
        T x = row[i];
        if (isnan(x)) {
            nan += 1.0;
        } else {
            if (isinf(x)) inf += 1.0;
            lo = fmin(lo, (double)x);
            hi = fmax(hi, (double)x);
        }
    }
    const int t = threadIdx.x;
    a[t] = nan;
    b[t] = inf;
    m[t] = lo;
    n[t] = hi;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) {
            a[t] += a[t + half];
            b[t] += b[t + half];
            m[t] = fmin(m[t], m[t + half]);
            n[t] = fmax(n[t], n[t + half]);
        }
        __syncthreads();
    }
    if (t == 0) {
        nan_p[block] = a[0];
        inf_p[block] = b[0];
        lo_p[block] = m[0];
        hi_p[block] = n[0];
    }
}

// Row r0 + r of the totals from the c rows' segment partials, in segment order.
__global__ void row_facts_total(const double *nan_p, const double *inf_p, const double *lo_p, const double *hi_p,
                                int32_t c, int32_t nseg, int32_t r0, double *nan, double *inf, double *low,
                                double *high) {
    HPSF_AT(r, c);
    double sn = 0.0, si = 0.0, sl = INFINITY, sh = -INFINITY;
    for (int64_t g = 0; g < nseg; ++g) {
        sn += nan_p[r * nseg + g];
        si += inf_p[r * nseg + g];
        sl = fmin(sl, lo_p[r * nseg + g]);
        sh = fmax(sh, hi_p[r * nseg + g]);
    }
    nan[r0 + r] = sn;
    inf[r0 + r] = si;
    low[r0 + r] = sl;
    high[r0 + r] = sh;
}

// Rows r0 .. r0+c-1 of the caller's layout (`width` values each) from x (e x s): out (c rows of
// width, row-major) element i of row r = x at element position[i] (i itself without position),
// column r0 + r; NaN where position[i] == HPSF_LEFT_OUT. One thread per output element.
template <typename T>
__global__ void scatter_rows(const T *x, int32_t s, const uint32_t *position, int64_t width, int32_t r0, int32_t c,
                             T *out) {
    HPSF_AT(idx, (int64_t)c * width);
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
    HPSF_AT(e, len);
    v[e] *= c[e % s];
}

template <typename T>
__global__ void mask_values(T *out, const uint8_t *mask, int64_t len) {
    HPSF_AT(e, len);
    out[e] = (mask[e] & HPSF_FREE) ? (T)1 : (T)0;
}

template <typename T>
__global__ void fill_masked(T *v, const uint8_t *mask, T fill, int64_t len) {
    HPSF_AT(e, len);
    if (!(mask[e] & HPSF_FREE)) v[e] = fill;
}

// ---- launchers ------------------------------------------------------------------------------------

template <typename T>
static int gather_rows_launch(const void *raw, int32_t c, int64_t width, const uint32_t *order, int64_t e, int32_t s,
                              int32_t col0, void *out, hpsf_stream stream) {
    if (e * c <= 0) return 0;
    gather_rows<T><<<HPSF_ON(e * c, stream)>>>((const T *)raw, c, width, order, e, s, col0, (T *)out);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int clean_block_launch(void *v, int64_t len, int32_t zero_nan, uint8_t *mask, hpsf_stream stream) {
    if (len <= 0 || (!zero_nan && !mask)) return 0;
    clean_block<T><<<HPSF_ON(len, stream)>>>((T *)v, len, zero_nan, mask);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int row_facts_launch(const void *raw, int32_t c, int64_t width, const uint32_t *position, int32_t r0,
                            double *partials, double *nan, double *inf, double *low, double *high,
                            hpsf_stream stream) {
    if (c <= 0 || width <= 0) return 0;
    const int32_t nseg = (int32_t)((width + HPSF_FACTS_SEGMENT - 1) / HPSF_FACTS_SEGMENT);
    const int64_t blocks = (int64_t)c * nseg;
    double *nan_p = partials, *inf_p = partials + blocks, *lo_p = partials + 2 * blocks, *hi_p = partials + 3 * blocks;
    row_facts<T><<<(unsigned int)blocks, HPSF_BLOCK, 0, stream>>>((const T *)raw, width, position, nseg, nan_p, inf_p,
                                                                  lo_p, hi_p);
    row_facts_total<<<HPSF_ON(c, stream)>>>(nan_p, inf_p, lo_p, hi_p, c, nseg, r0, nan, inf, low, high);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int scatter_rows_launch(const void *x, int32_t s, const uint32_t *position, int64_t width, int32_t r0,
                               int32_t c, void *out, hpsf_stream stream) {
    if ((int64_t)c * width <= 0) return 0;
    scatter_rows<T><<<HPSF_ON((int64_t)c * width, stream)>>>((const T *)x, s, position, width, r0, c, (T *)out);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int scale_columns_launch(void *v, const void *c, int64_t len, int32_t s, hpsf_stream stream) {
    if (len <= 0) return 0;
    scale_columns<T><<<HPSF_ON(len, stream)>>>((T *)v, (const T *)c, len, s);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int mask_values_launch(void *out, const uint8_t *mask, int64_t len, hpsf_stream stream) {
    if (len <= 0) return 0;
    mask_values<T><<<HPSF_ON(len, stream)>>>((T *)out, mask, len);
    HPSF_LAUNCH_CHECK();
}

template <typename T>
static int fill_masked_launch(void *v, const uint8_t *mask, double fill, int64_t len, hpsf_stream stream) {
    if (len <= 0) return 0;
    fill_masked<T><<<HPSF_ON(len, stream)>>>((T *)v, mask, (T)fill, len);
    HPSF_LAUNCH_CHECK();
}

extern "C" {

int hpsf_gather_rows(int32_t dtype, const void *raw, int32_t c, int64_t width, const uint32_t *order, int64_t e,
                     int32_t s, int32_t col0, void *out, hpsf_stream stream) {
    return HPSF_TYPED(dtype, gather_rows_launch, raw, c, width, order, e, s, col0, out, stream);
}

int hpsf_clean_block(int32_t dtype, void *v, int64_t len, int32_t zero_nan, uint8_t *mask, hpsf_stream stream) {
    return HPSF_TYPED(dtype, clean_block_launch, v, len, zero_nan, mask, stream);
}

int hpsf_row_facts(int32_t dtype, const void *raw, int32_t c, int64_t width, const uint32_t *position, int32_t r0,
                   double *partials, double *nan, double *inf, double *low, double *high, hpsf_stream stream) {
    return HPSF_TYPED(dtype, row_facts_launch, raw, c, width, position, r0, partials, nan, inf, low, high, stream);
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
