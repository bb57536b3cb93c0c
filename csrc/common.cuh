// Shared device helpers of the healpix-psf kernels.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>
#include "hpsf_kernels.h"
#include "rules.h"

// Great-circle distance (m) from a squared chord between unit vectors: 2R asin(|a-b|/2), with the
// same Taylor series as the CPU below 0.01 (src/geometry/mod.rs), so both backends agree.
__device__ __forceinline__ double hpsf_distance(double c2, double radius) {
    double x = 0.5 * sqrt(c2);
    double a;
    if (x < 0.01) {
        double t = x * x;
        a = x * (1.0 + t * (1.0 / 6.0 + t * (3.0 / 40.0 + t * (5.0 / 112.0 + t * (35.0 / 1152.0)))));
    } else {
        a = asin(fmin(x, 1.0));
    }
    return 2.0 * radius * a;
}

__device__ __forceinline__ double hpsf_chord2(const double *a, const double *b) {
    double dx = a[0] - b[0], dy = a[1] - b[1], dz = a[2] - b[2];
    return dx * dx + dy * dy + dz * dz;
}

__device__ __forceinline__ float hpsf_exp(float x) { return expf(x); }
__device__ __forceinline__ double hpsf_exp(double x) { return exp(x); }

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

// The launch of a kernel over `len` elements returns the launch's status.
#define HPSF_LAUNCH_CHECK() return (int)cudaGetLastError()

// Calls F<float> or F<double> as `dtype` says.
#define HPSF_TYPED(dtype, F, ...) ((dtype) == HPSF_F64 ? F<double>(__VA_ARGS__) : F<float>(__VA_ARGS__))
