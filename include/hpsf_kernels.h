/* Launchers of the CUDA kernels of healpix-psf (the .cu files in csrc/), plain C.
 *
 * Every launcher enqueues work on `stream` and returns a cudaError_t code (0 = success) from the
 * launch; it never synchronises. Pointers are device pointers. The Rust side (src/backend/cuda)
 * checks every length before calling. Arrays of several right-hand sides are interleaved:
 * element (e, j) of an E x s block is at e*s + j.
 *
 * Reductions are deterministic: each block writes one partial per row (in a fixed order within the
 * block), and hpsf_reduce_partials adds the partials of a row in a fixed tree order. No atomics.
 */
#ifndef HPSF_KERNELS_H
#define HPSF_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The CUDA stream (cudaStream_t / CUstream are both this pointer type). */
typedef struct CUstream_st *hpsf_stream;

/* Threads per block of every kernel; reductions produce one partial per block and row. */
#define HPSF_BLOCK 256

/* Number of blocks a launcher over `elements` elements uses (for sizing partial buffers). */
static inline int32_t hpsf_blocks(int64_t elements) { return (int32_t)((elements + HPSF_BLOCK - 1) / HPSF_BLOCK); }

/* ---- fused gather-weight (construction) ------------------------------------------------------
 * By sample position p: for each link t with hi[p*npt+t] >= 0, d = 2R asin(|x_p - c_k|/2) from the
 * sample's and the cell's unit vectors (f64), d_m = (T)d, W = exp(-2 d_m^2 / s2) * area[p],
 * dy[p] = sum_t W, mt[p*npt+t] = W / dy[p] (0 where dy = 0 or no link).                        */
int hpsf_weights_by_sample_f32(const double *sample_xyz, const double *cell_xyz, const int32_t *hi,
                               const float *area, int32_t n, int32_t npt, double radius, double s2,
                               float *d_m, float *mt, float *dy, hpsf_stream stream);
int hpsf_weights_by_sample_f64(const double *sample_xyz, const double *cell_xyz, const int32_t *hi,
                               const double *area, int32_t n, int32_t npt, double radius, double s2,
                               double *d_m, double *mt, double *dy, hpsf_stream stream);
/* By cell k (CSR ptr/sample over sample positions): W recomputed the same way for each link,
 * dx[k] = sum of W in row order, m[q] = W / dx[k] (0 where dx = 0).                              */
int hpsf_weights_by_cell_f32(const double *sample_xyz, const double *cell_xyz, const int64_t *ptr,
                             const uint32_t *sample, const float *area, int32_t k, double radius, double s2,
                             float *m, float *dx, hpsf_stream stream);
int hpsf_weights_by_cell_f64(const double *sample_xyz, const double *cell_xyz, const int64_t *ptr,
                             const uint32_t *sample, const double *area, int32_t k, double radius, double s2,
                             double *m, double *dx, hpsf_stream stream);

/* ---- products ---------------------------------------------------------------------------------
 * out (N x s) = v (K x s) . MT, gathered by sample position (fixed width npt).                   */
int hpsf_mt_product_f32(const int32_t *hi, const float *mt, int32_t n, int32_t npt, const float *v, int32_t s,
                        float *out, const int32_t *done, hpsf_stream stream);
int hpsf_mt_product_f64(const int32_t *hi, const double *mt, int32_t n, int32_t npt, const double *v, int32_t s,
                        double *out, const int32_t *done, hpsf_stream stream);
/* out (K x s) = u (N x s) . M (+ lam * add when add != NULL), gathered by cell (CSR). When dx != NULL,
 * also writes partials[block*s + j] = sum over the block's elements of row j of out * add * dx.    */
int hpsf_m_product_f32(const int64_t *ptr, const uint32_t *sample, const float *m, int32_t k, const float *u,
                       int32_t s, float lam, const float *add, const float *dx, double *partials, float *out,
                       const int32_t *done, hpsf_stream stream);
int hpsf_m_product_f64(const int64_t *ptr, const uint32_t *sample, const double *m, int32_t k, const double *u,
                       int32_t s, double lam, const double *add, const double *dx, double *partials, double *out,
                       const int32_t *done, hpsf_stream stream);

/* ---- CG vector kernels --------------------------------------------------------------------------
 * partials[block*s + j] = sum over the block of a*b*w for row j (K x s blocks a, b; w per element). */
int hpsf_wdot_f32(const float *a, const float *b, const float *w, int32_t k, int32_t s, double *partials,
                  hpsf_stream stream);
int hpsf_wdot_f64(const double *a, const double *b, const double *w, int32_t k, int32_t s, double *partials,
                  hpsf_stream stream);
/* out[j] = sum over blocks of partials[block*s + j], in a fixed order (one block per row).        */
int hpsf_reduce_partials(const double *partials, int32_t nblocks, int32_t s, double *out, const int32_t *done,
                         hpsf_stream stream);
/* x += alpha p; r -= alpha ap (alpha per row, on the device); partials of <r, r>_w as above.      */
int hpsf_cg_update_f32(float *x, float *r, const float *p, const float *ap, const float *alpha, const float *w,
                       int32_t k, int32_t s, double *partials, const int32_t *done, hpsf_stream stream);
int hpsf_cg_update_f64(double *x, double *r, const double *p, const double *ap, const double *alpha,
                       const double *w, int32_t k, int32_t s, double *partials, const int32_t *done,
                       hpsf_stream stream);
/* p = r + beta p (beta per row, on the device).                                                  */
int hpsf_cg_direction_f32(float *p, const float *r, const float *beta, int32_t k, int32_t s, const int32_t *done,
                          hpsf_stream stream);
int hpsf_cg_direction_f64(double *p, const double *r, const double *beta, int32_t k, int32_t s,
                          const int32_t *done, hpsf_stream stream);

/* ---- CG scalars (one thread block; the reference's rules, SPEC 4) ------------------------------
 * state layout (doubles, s rows): rs[s], den[s], rs_new[s], thr[s], norms[(max_iter+1) * s].
 * hpsf_cg_alpha: if done, nothing. Breakdown (pooled: max_j |den_j| < 1e-30; per row: |den_j| <
 * 1e-30 freezes row j) -> alpha_j = 0. Otherwise alpha_j = den_j != 0 ? rs_j / den_j : 0 (as T).
 * hpsf_cg_beta: counts the iteration, records norms, tests convergence (pooled: every row
 * sqrt(rs_new) <= thr; per row: its own), sets *done when all rows are finished or max_iter is
 * reached, beta_j = rs_j != 0 ? rs_new_j / rs_j : 0, rs = rs_new. flags[j]: 0 running, 1 converged,
 * 2 breakdown. counters[0] = iterations run, counters[1 + j] = iterations of row j.             */
int hpsf_cg_alpha_f32(double *state, int32_t s, int32_t per_row, int32_t *flags, float *alpha, int32_t *done,
                      hpsf_stream stream);
int hpsf_cg_alpha_f64(double *state, int32_t s, int32_t per_row, int32_t *flags, double *alpha, int32_t *done,
                      hpsf_stream stream);
int hpsf_cg_beta_f32(double *state, int32_t s, int32_t per_row, int32_t max_iter, int32_t *flags,
                     int32_t *counters, float *beta, int32_t *done, hpsf_stream stream);
int hpsf_cg_beta_f64(double *state, int32_t s, int32_t per_row, int32_t max_iter, int32_t *flags,
                     int32_t *counters, double *beta, int32_t *done, hpsf_stream stream);

#ifdef __cplusplus
}
#endif

#endif /* HPSF_KERNELS_H */
