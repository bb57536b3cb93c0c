// The shared rules of rules.h compiled for the host: the CPU backend calls these (src/backend/cpu.rs),
// the box rule over a range of elements [begin, end) so that rayon can split the work. Built in
// every configuration by build.rs (no CUDA needed); no C++ runtime is used.
#include "rules.h"

extern "C" {

void hpsf_cg_alpha_host(const hpsf_cg_scalars *c) { hpsf_cg_alpha_rule(c); }
void hpsf_cg_beta_host(const hpsf_cg_scalars *c) { hpsf_cg_beta_rule(c); }

// The box rule of `a` at the elements [begin, end) of double (f64 != 0) or float blocks; the count.
int64_t hpsf_box_host(int32_t f64, const hpsf_box_args *a, int64_t begin, int64_t end) {
    int64_t n = 0;
    for (int64_t e = begin; e < end; ++e) n += f64 ? hpsf_box_rule<double>(e, *a) : hpsf_box_rule<float>(e, *a);
    return n;
}
}
