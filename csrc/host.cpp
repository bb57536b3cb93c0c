// The shared rules of rules.h compiled for the host: the CPU backend calls these (src/backend/cpu.rs),
// each box function over a range of elements [begin, end) so that rayon can split the work. Built
// in every configuration by build.rs (no CUDA needed); no C++ runtime is used.
#include "rules.h"

extern "C" {

void hpsf_cg_alpha_host(const hpsf_cg_scalars *c) { hpsf_cg_alpha_rule(c); }
void hpsf_cg_beta_host(const hpsf_cg_scalars *c) { hpsf_cg_beta_rule(c); }

#define HPSF_HOST_BOX(SUF, T)                                                                               \
    void hpsf_box_clamp_##SUF(int64_t begin, int64_t end, int32_t s, const T *lo, const T *hi, const T *off, \
                              T *x, const uint8_t *codes) {                                                 \
        const hpsf_box<T> b = {lo, hi, off, s};                                                             \
        for (int64_t e = begin; e < end; ++e) hpsf_box_clamp_at(e, b, x, codes);                            \
    }                                                                                                       \
    void hpsf_box_classify_##SUF(int64_t begin, int64_t end, int32_t s, const T *lo, const T *hi,           \
                                 const T *off, const T *x, const T *r, const T *kkt, uint8_t *codes) {      \
        const hpsf_box<T> b = {lo, hi, off, s};                                                             \
        for (int64_t e = begin; e < end; ++e) hpsf_box_classify_at(e, b, x, r, kkt, codes);                 \
    }                                                                                                       \
    int64_t hpsf_box_step_##SUF(int64_t begin, int64_t end, int32_t s, const T *lo, const T *hi,            \
                                const T *off, T *x, const T *d, const uint8_t *codes) {                     \
        const hpsf_box<T> b = {lo, hi, off, s};                                                             \
        int64_t n = 0;                                                                                      \
        for (int64_t e = begin; e < end; ++e) n += hpsf_box_step_at(e, b, x, d, codes);                     \
        return n;                                                                                           \
    }                                                                                                       \
    int64_t hpsf_box_release_##SUF(int64_t begin, int64_t end, int32_t s, const T *r, const T *kkt,         \
                                   const uint8_t *codes) {                                                  \
        int64_t n = 0;                                                                                      \
        for (int64_t e = begin; e < end; ++e) n += hpsf_box_release_at(e, s, r, kkt, codes);                \
        return n;                                                                                           \
    }                                                                                                       \
    int64_t hpsf_box_hold_##SUF(int64_t begin, int64_t end, int32_t s, const T *lo, const T *hi,            \
                                const T *cand, T *base, uint8_t *codes) {                                   \
        const hpsf_box<T> b = {lo, hi, nullptr, s};                                                         \
        int64_t n = 0;                                                                                      \
        for (int64_t e = begin; e < end; ++e) n += hpsf_box_hold_at(e, b, cand, base, codes);               \
        return n;                                                                                           \
    }

HPSF_HOST_BOX(f32, float)
HPSF_HOST_BOX(f64, double)
}
