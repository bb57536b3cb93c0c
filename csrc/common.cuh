// Shared device helpers of the healpix-psf kernels.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>
#include "hpsf_kernels.h"
#include "rules.h"
#include "construct.h"

// 1 under the host's CUDA emulator (csrc/emu/cuda_runtime.h defines it), else 0.
#ifndef HPSF_EMULATED
#define HPSF_EMULATED 0
#endif

// The distance and the squared chord (hpsf_distance, hpsf_chord2) are construct.h's, shared with
// the host.

// exp in the weights kernels: pmath.h's for double and for float (the CPU's).
__device__ __forceinline__ float hpsf_exp(float x) { return hpsf_expf(x); }

// a·b rounded on its own (never contracted with a following sum into an FMA, as on the CPU).
__device__ __forceinline__ float hpsf_mul_t(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double hpsf_mul_t(double a, double b) { return __dmul_rn(a, b); }

// Number of blocks a kernel over `elements` elements uses.
static inline unsigned int hpsf_grid(int64_t elements) { return (unsigned int)((elements + HPSF_BLOCK - 1) / HPSF_BLOCK); }

// ---- the reduction tree, the same on both devices (src/backend/reduce.rs is the host's) -------------
// A reduction over the rows of an E x s block (a dot product, <r, r>, <p, Ap>, a count) is, per
// column, the perfect binary tree that adds adjacent rows (2i and 2i+1, then adjacent pairs of
// those, …), rows past E counting as +0.0, and the root + 0.0 (so a zero is +0.0). Every aligned
// power-of-two range of rows is a subtree: a thread block sums a tile of 256/width rows, later
// launches sum the tiles (hpsf_reduce), and the result does not depend on the tile sizes.
// Maxima use the same tiles (order does not matter to them).

// The columns of a tile: a power of two ≥ s, at most `cap` (a power of two ≤ HPSF_BLOCK).
__host__ __device__ inline int32_t hpsf_tile_width(int32_t s, int32_t cap) {
    int32_t w = 1;
    while (w < s && w < cap) w *= 2;
    return w;
}

// This thread's row and column in a launch over tiles of `width` columns and HPSF_BLOCK / width rows
// (grid: tiles along x, column groups along y).
struct hpsf_tile {
    int64_t row;
    int32_t col;
    int32_t width;
};

__device__ inline hpsf_tile hpsf_tile_here(int32_t width) {
    hpsf_tile t;
    t.width = width;
    t.row = (int64_t)blockIdx.x * (HPSF_BLOCK / width) + threadIdx.x / width;
    t.col = (int32_t)blockIdx.y * width + (int32_t)(threadIdx.x % width);
    return t;
}

// The grid of a launch over `rows` rows of s columns in tiles of `width` columns; an empty grid
// (the launch then fails with cudaErrorInvalidConfiguration) past CUDA's limits on grid.x and
// grid.y, never a grid wrapped around.
static inline dim3 hpsf_tiles(int64_t rows, int32_t s, int32_t width) {
    int64_t per = HPSF_BLOCK / width, x = (rows + per - 1) / per, y = ((int64_t)s + width - 1) / width;
    if (x > 2147483647 || y > 65535) return dim3(0, 0, 1);
    return dim3((unsigned int)x, (unsigned int)y);
}

// Writes the tile's sum (or with MAX its largest value) of each column to partials[blockIdx.x*s +
// col] (the tree above over the tile's rows; `v` is this thread's term, 0 past the block's end).
// Every thread of the block must call it; `sh` holds HPSF_BLOCK doubles.
template <bool MAX = false>
__device__ __forceinline__ void hpsf_tile_sum(double v, double *sh, hpsf_tile t, int32_t s, double *partials,
                                              bool last = false) {
    int32_t rows = HPSF_BLOCK / t.width, lr = (int32_t)threadIdx.x / t.width;
    for (int32_t h = 1; h < rows; h *= 2) {
        int32_t d = h * t.width;
        double o;
        if (d < 32) {
            o = __shfl_down_sync(0xffffffffu, v, d);
        } else {
            __syncthreads();
            sh[threadIdx.x] = v;
            __syncthreads();
            o = sh[(threadIdx.x + d) % HPSF_BLOCK];
        }
        if (lr % (2 * h) == 0) v = MAX ? fmax(v, o) : v + o;
    }
    if (last && !MAX) v = v + 0.0;
    if (lr == 0 && t.col < s) partials[(int64_t)blockIdx.x * s + t.col] = v;
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
