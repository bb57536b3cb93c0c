/* Launchers of the CUDA kernels of healpix-psf (the .cu files in csrc/), plain C.
 *
 * Every launcher enqueues work on `stream` and returns a cudaError_t code (0 = success) from the
 * launch; it never synchronises. Pointers are device pointers. Arrays of values are of the type
 * `dtype` names (HPSF_F32: float, HPSF_F64: double), passed as void pointers; scalars of that type
 * are passed as double and rounded to it. The Rust side (src/backend/cuda) checks every length
 * before calling. Blocks of several right-hand sides are interleaved: element (e, j) of an E x s
 * block is at e*s + j.
 *
 * Reductions are deterministic and follow one tree, the CPU's too: per column, the perfect binary
 * tree over the rows that adds adjacent rows, then adjacent pairs, …, rows past the end counting
 * +0.0, and the root + 0.0. A reducing kernel writes the sums of tiles of rows into `partials`
 * (hpsf_reduction_space(rows, s) doubles); hpsf_reduce sums the tiles into the result. No atomics.
 */
#ifndef HPSF_KERNELS_H
#define HPSF_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The CUDA stream (cudaStream_t / CUstream are both this pointer type). */
typedef struct CUstream_st *hpsf_stream;

/* Threads per block of every kernel. */
#define HPSF_BLOCK 256

/* Element types of the value arrays. */
#define HPSF_F32 0
#define HPSF_F64 1

/* The CG scalars and the arguments of a box rule (csrc/rules.h), structs of device pointers. */
struct hpsf_cg_scalars;
struct hpsf_box_args;

/* 1 when these kernels are the host's CUDA emulator's (a build with HPSF_CUDA_EMULATE=1, csrc/emu),
 * 0 when nvcc compiled them for a GPU.                                                             */
int hpsf_emulated(void);

/* ---- fused gather-weight (construction) ------------------------------------------------------
 * By sample position p: for each link t with hi[p*npt+t] >= 0, d = 2R asin(|x_p - c_k|/2) from the
 * sample's and the cell's unit vectors (f64), d_m = (T)d, W = exp(-2 d_m^2 / s2) * area[p],
 * dy[p] = sum_t W, mt[p*npt+t] = W / dy[p] (0 where dy = 0 or no link; d_m = +inf there).        */
int hpsf_weights_by_sample(int32_t dtype, const double *sample_xyz, const double *cell_xyz, const int32_t *hi,
                           const void *area, int32_t n, int32_t npt, double radius, double s2, void *d_m, void *mt,
                           void *dy, hpsf_stream stream);
/* By cell k (CSR ptr/sample over sample positions): W recomputed the same way for each link,
 * dx[k] = sum of W in row order, m[q] = W / dx[k] (0 where dx = 0).                              */
int hpsf_weights_by_cell(int32_t dtype, const double *sample_xyz, const double *cell_xyz, const int64_t *ptr,
                         const uint32_t *sample, const void *area, int32_t k, double radius, double s2, void *m,
                         void *dx, hpsf_stream stream);

/* ---- products ---------------------------------------------------------------------------------
 * out (N x s) = v (K x s) . MT, gathered by sample position (fixed width npt); 0 where valid
 * (N x s, bit 0) is clear when valid != NULL. Nothing when done != NULL and *done.               */
int hpsf_mt_product(int32_t dtype, const int32_t *hi, const void *mt, int32_t n, int32_t npt, const void *v,
                    int32_t s, const uint8_t *valid, void *out, const int32_t *done, hpsf_stream stream);
/* out (K x s) = u (N x s) . M (+ lam * add when add != NULL), gathered by cell (CSR). When dx != NULL,
 * also writes the partials of the sums over cells of out * add * dx per column (for hpsf_reduce).
 * Nothing when done != NULL and *done. group: 0, or with s = 1 the lanes that read a cell's links
 * together (4, 8, 16 or 32; the same sums either way).                                           */
int hpsf_m_product(int32_t dtype, const int64_t *ptr, const uint32_t *sample, const void *m, int32_t k,
                   const void *u, int32_t s, double lam, const void *add, const void *dx, double *partials, void *out,
                   const int32_t *done, int32_t group, hpsf_stream stream);

/* ---- reductions ---------------------------------------------------------------------------------
 * The doubles of scratch `partials` a reduction over `rows` rows of s columns needs, and the tiles
 * its first kernel writes (host functions).                                                       */
int64_t hpsf_reduction_space(int64_t rows, int32_t s);
int64_t hpsf_reduction_tiles(int64_t rows, int32_t s);
/* The partials of the sums over rows e of column j of a * b * w[e] * (mask bit 0), for an E x s
 * block a (b, w, mask: NULL = 1; w per row e, i.e. per cell).                                     */
int hpsf_row_dots(int32_t dtype, const void *a, const void *b, const void *w, const uint8_t *mask, int64_t e,
                  int32_t s, double *partials, hpsf_stream stream);
/* The partials of the largest |a| of each column.                                                */
int hpsf_row_max_abs(int32_t dtype, const void *a, int64_t e, int32_t s, double *partials, hpsf_stream stream);
/* out[j] = the sum (op 0) or the largest (op 1) over the rows of column j, from the partials that a
 * reducing kernel over `rows` rows of s columns wrote (the space past them is scratch). Nothing when
 * done != NULL and *done.                                                                        */
int hpsf_reduce(double *partials, int64_t rows, int32_t s, int32_t op, double *out, const int32_t *done,
                hpsf_stream stream);

/* ---- the CG ------------------------------------------------------------------------------------
 * x += alpha p; r -= alpha ap (alpha per column, double, rounded to the type); the partials of
 * <r, r>_w (rows: the k cells) as hpsf_row_dots. Nothing when *done.                                                  */
int hpsf_cg_update(int32_t dtype, void *x, void *r, const void *p, const void *ap, const double *alpha,
                   const void *w, int32_t k, int32_t s, double *partials, const int32_t *done, hpsf_stream stream);
/* p = r + beta p (beta per column). Nothing when *done.                                           */
int hpsf_cg_direction(int32_t dtype, void *p, const void *r, const double *beta, int32_t k, int32_t s,
                      const int32_t *done, hpsf_stream stream);
/* The rules of csrc/rules.h after the product and after the update, in one thread.               */
int hpsf_cg_alpha(const struct hpsf_cg_scalars *c, hpsf_stream stream);
int hpsf_cg_beta(const struct hpsf_cg_scalars *c, hpsf_stream stream);

/* ---- element-wise ------------------------------------------------------------------------------
 * y = a_j x + b y (a per column, of the type) for a len-element block of s columns.            */
int hpsf_axpby(int32_t dtype, void *y, const void *a, const void *x, double b, int64_t len, int32_t s,
               hpsf_stream stream);
/* v = v * (mask bit 0).                                                                          */
int hpsf_mul_mask(int32_t dtype, void *v, const uint8_t *mask, int64_t len, hpsf_stream stream);
/* In the columns j with rows[j] != 0: x = x / w where w != 0, else x = 0 and codes = 0; codes = 1
 * elsewhere.                                                                                      */
int hpsf_renormalise(int32_t dtype, void *x, const void *w, const uint8_t *rows, int64_t len, int32_t s,
                     uint8_t *codes, hpsf_stream stream);
/* out[k] = 1 / src[k] where src[k] != 0, else 0.                                                  */
int hpsf_reciprocal(int32_t dtype, void *out, const void *src, int64_t len, hpsf_stream stream);
/* out[k*s + j] = scale * src[k] where codes == NULL or codes[k*s + j] bit 0 is set, else 0.       */
int hpsf_broadcast(int32_t dtype, void *out, const void *src, double scale, const uint8_t *codes, int64_t e,
                   int32_t s, hpsf_stream stream);
/* For c < ncols and every element e < rows: column dst_cols[c] of the e-th row of dst (t columns)
 * = column src_cols[c] of the e-th row of src (m columns); elements of elem_bytes bytes (1, 4, 8). */
int hpsf_columns(void *dst, int32_t t, const int32_t *dst_cols, const void *src, int32_t m, const int32_t *src_cols,
                 int32_t ncols, int64_t rows, int32_t elem_bytes, hpsf_stream stream);

/* ---- layouts (csrc/layout.cu) ---------------------------------------------------------------------
 * The position of a sample left out of the operator.                                            */
#define HPSF_LEFT_OUT 0xFFFFFFFFu
/* Columns col0 .. col0+c-1 of out (e x s) from raw (c rows of width, row-major): out[p*s + col0 + r]
 * = raw[r*width + order[p]] (order == NULL: p).                                                   */
int hpsf_gather_rows(int32_t dtype, const void *raw, int32_t c, int64_t width, const uint32_t *order, int64_t e,
                     int32_t s, int32_t col0, void *out, hpsf_stream stream);
/* Over a block v of len values: NaN -> 0 when zero_nan, mask = 1 where not NaN (mask != NULL).     */
int hpsf_clean_block(int32_t dtype, void *v, int64_t len, int32_t zero_nan, uint8_t *mask, hpsf_stream stream);
/* Elements of a row per thread block of hpsf_row_facts.                                          */
#define HPSF_FACTS_SEGMENT 2048
/* What rows r0 .. r0+c-1 hold, from raw (c rows of width, row-major): nan[r0+r], inf[r0+r] = the
 * NaN and infinite counts, low[r0+r], high[r0+r] = the lowest and highest v but NaN (+inf, -inf
 * where none), over the elements with position[i] != HPSF_LEFT_OUT (position == NULL: all).
 * partials holds 4 * c * ceil(width / HPSF_FACTS_SEGMENT) doubles of scratch. Deterministic.       */
int hpsf_row_facts(int32_t dtype, const void *raw, int32_t c, int64_t width, const uint32_t *position, int32_t r0,
                   double *partials, double *nan, double *inf, double *low, double *high, hpsf_stream stream);
/* out (c rows of width, row-major) = rows r0 .. r0+c-1 of x (e x s): out[r*width + i] =
 * x[position[i]*s + r0 + r] (position == NULL: i), NaN where position[i] == HPSF_LEFT_OUT.       */
int hpsf_scatter_rows(int32_t dtype, const void *x, int32_t s, const uint32_t *position, int64_t width, int32_t r0,
                      int32_t c, void *out, hpsf_stream stream);
/* v[e] *= c[e % s].                                                                               */
int hpsf_scale_columns(int32_t dtype, void *v, const void *c, int64_t len, int32_t s, hpsf_stream stream);
/* out = 1 where mask bit 0 is set, else 0.                                                        */
int hpsf_mask_values(int32_t dtype, void *out, const uint8_t *mask, int64_t len, hpsf_stream stream);
/* v = fill where mask bit 0 is clear.                                                             */
int hpsf_fill_masked(int32_t dtype, void *v, const uint8_t *mask, double fill, int64_t len, hpsf_stream stream);

/* ---- construction (csrc/construct.cu) ----------------------------------------------------------
 * What the construction of an operator needs (SPEC §2): the grid (depth, WGS84 or sphere, nested or
 * ring ids), the rings, npt, the sphere's radius, sigma and the keep threshold.                   */
struct hpsf_construct_args {
    int32_t depth;
    int32_t wgs84;
    int32_t nest;
    uint32_t ring_weight;
    uint32_t ring_init;
    uint32_t ring_max;
    int32_t npt;
    double radius;
    double sigma_m;
    double threshold;
};
/* What it found: distinct sample cells, candidate cells, kept cells (0: none passed the threshold;
 * max_sum is then the largest weight sum), cells after pruning, partial and empty link rows, links. */
struct hpsf_construct_sizes {
    int64_t n_unique;
    int64_t n_candidates;
    int64_t n_kept;
    int64_t k;
    int64_t n_partial;
    int64_t n_empty;
    int64_t nnz;
    double max_sum;
};
/* Returned by hpsf_construct_run when a list it sorts would reach 2^31 entries.                 */
#define HPSF_ERR_TOO_LARGE 100001
/* The results, on the device until fetched or freed.                                             */
struct hpsf_construction;
/* Hashes the n samples (lon, lat: host arrays, degrees), runs the keep stage, the search, the
 * pruning and the links by cell on the device; *out holds the results (NULL when n_kept == 0).
 * n*npt < 2^31, checked first (HPSF_ERR_TOO_LARGE).                                               */
int hpsf_construct_run(const struct hpsf_construct_args *a, const double *lon, const double *lat, int64_t n,
                       struct hpsf_construction **out, struct hpsf_construct_sizes *sizes, hpsf_stream stream);
/* Copies the results to host or device arrays (NULL: not wanted) — order (n: the sample of each
 * position, by (cell, index)), xyz (3n: the samples' unit vectors by position), hi (n*npt: pruned
 * cell index, -1 none), cell_ids (k: ids in the grid's scheme, ascending), cell_xyz (3k: centres),
 * ptr (k+1) and sample (nnz: positions, ascending in each cell) the links by cell — and waits for
 * the copies.                                                                                    */
int hpsf_construct_fetch(struct hpsf_construction *c, uint32_t *order, double *xyz, int32_t *hi,
                         uint64_t *cell_ids, double *cell_xyz, int64_t *ptr, uint32_t *sample);
/* Frees the results (NULL: nothing).                                                             */
void hpsf_construct_free(struct hpsf_construction *c);
/* The spacing estimate of the area of each of the n samples (lon, lat: host arrays, degrees) into
 * out (host, n, by sample), as src/operator/area.rs `spacing` computes it (the same buckets, the
 * candidates offered in the same order, construct.h's hpsf_spacing_area, the median for samples
 * without a neighbour); waits for the result. 0 < n < 2^31.                                       */
int hpsf_spacing_areas(const double *lon, const double *lat, int64_t n, double radius, double *out,
                       hpsf_stream stream);
/* *count = how many distinct values the n host values v hold (-0 and 0 count once; no NaN), for
 * the automatic areas' ring test; waits for the result. 0 < n < 2^31.                             */
int hpsf_distinct_values(const double *v, int64_t n, int64_t *count, hpsf_stream stream);

/* ---- the box of a bounded fit -------------------------------------------------------------------
 * The box rule a->rule of csrc/rules.h at every element (a holds device pointers). With partials
 * != NULL, the partials of the count (a one-column reduction over a->len rows, for hpsf_reduce).  */
int hpsf_box(int32_t dtype, const struct hpsf_box_args *a, double *partials, hpsf_stream stream);

#ifdef __cplusplus
}
#endif

#endif /* HPSF_KERNELS_H */
