// Shared device helpers of the healpix-psf kernels.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>
#include "hpsf_kernels.h"
#include "rules.h"
#include "construct.h"

// The distance and the squared chord (hpsf_distance, hpsf_chord2) are construct.h's, shared with
// the host.

// exp in the weights kernels: pmath.h's for double (the CPU's), CUDA's expf for float.
__device__ __forceinline__ float hpsf_exp(float x) { return expf(x); }

// a·b rounded on its own (never contracted with a following sum into an FMA, as on the CPU).
__device__ __forceinline__ float hpsf_mul_t(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double hpsf_mul_t(double a, double b) { return __dmul_rn(a, b); }

// Number of blocks a kernel over `elements` elements uses.
static inline unsigned int hpsf_grid(int64_t elements) { return (unsigned int)((elements + HPSF_BLOCK - 1) / HPSF_BLOCK); }

// Writes one partial per column for the block: the block's HPSF_BLOCK contributions (element
// blockIdx.x*HPSF_BLOCK + threadIdx.x, column = element % s) are combined per column — summed, or
// with MAX the largest taken — in element order by threads 0..s-1. Deterministic; every thread of
// the block must call it; `sh` holds HPSF_BLOCK doubles.
template <bool MAX = false>
__device__ __forceinline__ void hpsf_block_partials(double v, double *sh, int64_t first, int32_t s,
                                                    double *partials) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int32_t j = threadIdx.x; j < s; j += blockDim.x) {
        // first element of this block in column j
        int32_t off = (int32_t)((j - first % s + s) % s);
        double acc = 0.0;
        for (int32_t t = off; t < HPSF_BLOCK; t += s) acc = MAX ? fmax(acc, sh[t]) : acc + sh[t];
        partials[(int64_t)blockIdx.x * s + j] = acc;
    }
}

// Element `i` of a one-dimensional kernel over `len` elements (threads past the end return).
#define HPSF_AT(i, len)                                             \
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; \
    if (i >= (len)) return

// The launch configuration of a kernel over `len` elements on `stream`.
#define HPSF_ON(len, stream) hpsf_grid(len), HPSF_BLOCK, 0, stream

// The launch of a kernel over `len` elements returns the launch's status.
#define HPSF_LAUNCH_CHECK() return (int)cudaGetLastError()

// Calls F<float> or F<double> as `dtype` says.
#define HPSF_TYPED(dtype, F, ...) ((dtype) == HPSF_F64 ? F<double>(__VA_ARGS__) : F<float>(__VA_ARGS__))
