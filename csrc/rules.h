// The rules every backend shares, written once and compiled twice: by the host C++ compiler into
// the CPU backend (csrc/host.cpp, every build) and by nvcc into the CUDA kernels (csrc/*.cu).
//
// * The conjugate gradient's per-column scalar step (SPEC §4): step lengths α and directions β with
//   the reference's zero guards, the breakdown test, the iteration count, the residual record and
//   the pooled / per-row stopping rules. It runs on the device between the vector kernels, so that
//   the host never waits for the GPU inside an iteration, and on the CPU between its rayon kernels.
// * The element rules of the active-set (bounded) fit and of the conservation correction
//   (SPEC §4 items 7-8): clamping to the box, which cells are held at a bound, the step of a pass,
//   the release test and the cells a correction pushes out of the box.
//
// Blocks of s columns are interleaved: element (e, j) of an E×s block is at e*s + j.
#ifndef HPSF_RULES_H
#define HPSF_RULES_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define HPSF_HD __host__ __device__ inline
#else
#define HPSF_HD inline
#endif

// |<p, Ap>| below this stops the CG (the reference's absolute breakdown threshold; the solve runs
// on data scaled by a power of two so that it does not depend on the data's units).
#define HPSF_BREAKDOWN 1e-30

// Column flags of the CG.
#define HPSF_CG_RUNNING 0
#define HPSF_CG_CONVERGED 1
#define HPSF_CG_BROKEN 2

// The scalars of a CG on s columns: where the backend keeps them (device memory on a GPU). Mirrored
// by `backend::hpsf_cg_scalars` in Rust (laid out by `backend::CgLayout`).
typedef struct hpsf_cg_scalars {
    int32_t s;         // columns
    int32_t per_row;   // 1: each column stops on its own threshold; 0: the reference's pooled rule
    int32_t max_iter;  // iterations this CG may run
    int32_t ring;      // entries per column of `norms`
    double *rs;        // <r, r>_Dx per column
    double *den;       // <p, Ap>_Dx per column (written by the product)
    double *rs_new;    // <r, r>_Dx after the update (written by the update)
    double *thr;       // stopping threshold on ||r||_Dx per column
    double *alpha;     // step length per column (0 for a column that does not step)
    double *beta;      // direction factor per column
    double *norms;     // ||r|| after a column's t-th iteration at ((t % ring) * s + j)
    int32_t *flags;    // HPSF_CG_RUNNING / CONVERGED / BROKEN per column
    int32_t *iters;    // iterations of each column
    int32_t *it;       // iterations run
    int32_t *done;     // 1 once every column has stopped or max_iter iterations have run
} hpsf_cg_scalars;

// After the product (den = <p, Ap>): the breakdown test and α. Pooled rule: when the largest
// |den| of the running columns is below the threshold every column stops (no step, no new norm);
// per row, only the columns concerned. α = rs / den, 0 where den = 0.
HPSF_HD void hpsf_cg_alpha_rule(const hpsf_cg_scalars *c) {
    if (*c->done) return;
    const int32_t s = c->s;
    double worst = 0.0;
    for (int32_t j = 0; j < s; ++j)
        if (c->flags[j] == HPSF_CG_RUNNING) worst = fmax(worst, fabs(c->den[j]));
    const bool all_broken = !c->per_row && worst < HPSF_BREAKDOWN;
    int32_t running = 0;
    for (int32_t j = 0; j < s; ++j) {
        if (c->flags[j] == HPSF_CG_RUNNING && (all_broken || (c->per_row && fabs(c->den[j]) < HPSF_BREAKDOWN)))
            c->flags[j] = HPSF_CG_BROKEN;
        const bool step = c->flags[j] == HPSF_CG_RUNNING && c->den[j] != 0.0;
        c->alpha[j] = step ? c->rs[j] / c->den[j] : 0.0;
        running += c->flags[j] == HPSF_CG_RUNNING;
    }
    if (running == 0) *c->done = 1;
}

// After the update (rs_new = <r, r> of the new residual): counts the iteration, records the norm,
// applies the stopping rule (pooled: every running column within its threshold, which is the same
// pooled one for all; per row: each its own; a NaN norm never passes), β = rs_new / rs (0 where
// rs = 0) and rs = rs_new. Sets done when no column runs or max_iter iterations have run.
HPSF_HD void hpsf_cg_beta_rule(const hpsf_cg_scalars *c) {
    if (*c->done) return;
    const int32_t s = c->s;
    const int32_t it = ++*c->it;
    bool all_within = true;
    for (int32_t j = 0; j < s; ++j)
        if (c->flags[j] == HPSF_CG_RUNNING) all_within = all_within && sqrt(c->rs_new[j]) <= c->thr[j];
    int32_t running = 0;
    for (int32_t j = 0; j < s; ++j) {
        c->beta[j] = 0.0;
        if (c->flags[j] != HPSF_CG_RUNNING) continue;
        const int32_t t = ++c->iters[j];
        const double norm = sqrt(c->rs_new[j]);
        c->norms[(int64_t)(t % c->ring) * s + j] = norm;
        const bool converged = c->per_row ? norm <= c->thr[j] : all_within;
        c->beta[j] = c->rs[j] != 0.0 ? c->rs_new[j] / c->rs[j] : 0.0;
        c->rs[j] = c->rs_new[j];
        if (converged)
            c->flags[j] = HPSF_CG_CONVERGED;
        else
            ++running;
    }
    if (running == 0 || it >= c->max_iter) *c->done = 1;
}

// ---- the box of a bounded fit ---------------------------------------------------------------------
// A cell's code in a row: HPSF_FREE (in the CG), HPSF_AT_LOW / HPSF_AT_HIGH (held at a bound; both
// bits when the box has no width), or 0: not part of the row's problem (no valid sample carries
// weight in it), left untouched by every rule.
#define HPSF_FREE 1
#define HPSF_AT_LOW 2
#define HPSF_AT_HIGH 4

// v clamped to [lo, hi], as torch.minimum(torch.maximum(v, lo), hi).
template <typename T>
HPSF_HD T hpsf_clamp(T v, T lo, T hi) {
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

// The box of element e (column j = e % s) in the units of the update: the row's bounds lo[j], hi[j]
// on the fitted value minus the element's offset (x_ref; none when off is NULL).
template <typename T>
struct hpsf_box_bounds {
    const T *lo, *hi, *off;
    int32_t s;
    HPSF_HD T lower(int64_t e) const { return off ? lo[e % s] - off[e] : lo[e % s]; }
    HPSF_HD T upper(int64_t e) const { return off ? hi[e % s] - off[e] : hi[e % s]; }
};

// x clamped into the box (cells outside the problem are left alone).
template <typename T>
HPSF_HD void hpsf_box_clamp_at(int64_t e, hpsf_box_bounds<T> b, T *x, const uint8_t *codes) {
    if (codes && codes[e] == 0) return;
    x[e] = hpsf_clamp(x[e], b.lower(e), b.upper(e));
}

// Which cells a pass holds, from the update x and the residual r = b - A x: at the lower bound
// when x <= lower and r <= kkt (the gradient points out of the box), at the upper when x >= upper
// and r >= -kkt; free otherwise. kkt per column.
template <typename T>
HPSF_HD void hpsf_box_classify_at(int64_t e, hpsf_box_bounds<T> b, const T *x, const T *r, const T *kkt,
                                  uint8_t *codes) {
    if (codes[e] == 0) return;
    const T k = kkt[e % b.s];
    const bool low = x[e] <= b.lower(e) && r[e] <= k;
    const bool high = x[e] >= b.upper(e) && r[e] >= -k;
    codes[e] = (uint8_t)((low ? HPSF_AT_LOW : 0) | (high ? HPSF_AT_HIGH : 0) | (low || high ? 0 : HPSF_FREE));
}

// The step of a pass: x + d on the free cells, clamped into the box. Returns 1 where the unclamped
// value left the box (another pass is needed), else 0.
template <typename T>
HPSF_HD int hpsf_box_step_at(int64_t e, hpsf_box_bounds<T> b, T *x, const T *d, const uint8_t *codes) {
    if (codes[e] == 0) return 0;
    const T v = (codes[e] & HPSF_FREE) ? x[e] + d[e] : x[e];
    const T lo = b.lower(e), hi = b.upper(e);
    x[e] = hpsf_clamp(v, lo, hi);
    return v < lo || v > hi;
}

// 1 where a held cell wants to be released (its gradient points into the box), else 0.
template <typename T>
HPSF_HD int hpsf_box_release_at(int64_t e, int32_t s, const T *r, const T *kkt, const uint8_t *codes) {
    const T k = kkt[e % s];
    return ((codes[e] & HPSF_AT_LOW) && r[e] > k) || ((codes[e] & HPSF_AT_HIGH) && r[e] < -k);
}

// A round of the conservation correction of a bounded fit: a free cell whose corrected value cand
// leaves [lo_j, hi_j] is held at the bound it crosses and its base value set to that bound.
// Returns 1 for such a cell, else 0.
template <typename T>
HPSF_HD int hpsf_box_hold_at(int64_t e, hpsf_box_bounds<T> b, const T *cand, T *base, uint8_t *codes) {
    if (!(codes[e] & HPSF_FREE)) return 0;
    const T lo = b.lower(e), hi = b.upper(e);
    if (cand[e] < lo) {
        codes[e] = HPSF_AT_LOW;
        base[e] = lo;
        return 1;
    }
    if (cand[e] > hi) {
        codes[e] = HPSF_AT_HIGH;
        base[e] = hi;
        return 1;
    }
    return 0;
}

// The arguments of a box rule over the elements of E×s blocks (value pointers of the caller's
// type; what each rule reads is listed at its function above). Mirrored by `backend::hpsf_box_args`.
typedef struct hpsf_box_args {
    int64_t len;       // elements of the blocks (E·s)
    int32_t s;         // columns
    int32_t rule;      // HPSF_BOX_*
    const void *lo;    // s lower bounds on the fitted values
    const void *hi;    // s upper bounds
    const void *off;   // NULL, or len offsets (x_ref)
    void *x;           // the update: clamp, classify (read), step
    const void *r;     // the residual: classify, release
    const void *d;     // the step: step
    const void *kkt;   // s tolerances: classify, release
    const void *cand;  // the corrected field: hold
    void *base;        // the field a correction starts from: hold
    uint8_t *codes;    // cell codes (NULL only for clamp: every cell)
} hpsf_box_args;

#define HPSF_BOX_CLAMP 0
#define HPSF_BOX_CLASSIFY 1
#define HPSF_BOX_STEP 2
#define HPSF_BOX_RELEASE 3
#define HPSF_BOX_HOLD 4

// The rule `a.rule` at element e; what it counts (step, release, hold), else 0.
template <typename T>
HPSF_HD int hpsf_box_rule(int64_t e, const hpsf_box_args &a) {
    const hpsf_box_bounds<T> b = {(const T *)a.lo, (const T *)a.hi, (const T *)a.off, a.s};
    switch (a.rule) {
        case HPSF_BOX_CLAMP:
            hpsf_box_clamp_at(e, b, (T *)a.x, a.codes);
            return 0;
        case HPSF_BOX_CLASSIFY:
            hpsf_box_classify_at(e, b, (const T *)a.x, (const T *)a.r, (const T *)a.kkt, a.codes);
            return 0;
        case HPSF_BOX_STEP:
            return hpsf_box_step_at(e, b, (T *)a.x, (const T *)a.d, a.codes);
        case HPSF_BOX_RELEASE:
            return hpsf_box_release_at(e, a.s, (const T *)a.r, (const T *)a.kkt, a.codes);
        case HPSF_BOX_HOLD:
            return hpsf_box_hold_at(e, b, (const T *)a.cand, (T *)a.base, a.codes);
        default:
            return 0;
    }
}

#endif  // HPSF_RULES_H
