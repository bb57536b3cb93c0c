// The CUDA emulator's runtime header: what the kernels of csrc/*.cu use from <cuda_runtime.h>, for a
// host C++ compiler. build.rs compiles the kernels with it (and csrc/emu/cub/cub.cuh for CUB) when
// HPSF_CUDA_EMULATE=1: every thread of a launch runs on the host as a fiber of its block, blocks one
// after another, so __syncthreads and the warp shuffles mean what they mean on a GPU; device memory
// is host memory. It exists to run the GPU tests where there is no GPU (csrc/emu/README.md): it
// checks what the kernels compute, not how fast, and says nothing about memory ordering between
// concurrently running threads (none runs concurrently here).
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmath>
#include <tuple>
#include <type_traits>
#include <utility>

#define HPSF_EMULATED 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// a block's shared memory: one copy per host thread (blocks run one after another on it)
#define __shared__ static thread_local

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

// (uint3 rather than dim3 for the block's and grid's sizes: a plain thread-local needs a plain type)
extern __thread uint3 threadIdx, blockIdx, blockDim, gridDim;

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorUnknown = 999,
};
typedef cudaError_t cudaError;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};
typedef struct CUstream_st *cudaStream_t;

cudaError_t cudaGetLastError();
cudaError_t cudaMallocAsync(void **p, size_t bytes, cudaStream_t st);
cudaError_t cudaFreeAsync(void *p, cudaStream_t st);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t st);
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t st);
cudaError_t cudaStreamSynchronize(cudaStream_t st);

// ---- device functions ----------------------------------------------------------------------------
using std::isfinite;
using std::isinf;
using std::isnan;

inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dmul_rn(double a, double b) { return a * b; }
// fibers of one host thread never run at the same time: a plain add is atomic among them
inline unsigned long long atomicAdd(unsigned long long *a, unsigned long long v) {
    unsigned long long old = *a;
    *a = old + v;
    return old;
}

void __syncthreads();

namespace hpsf_emu {
// Lane `src` of the calling lane's group of `width` lanes (mask: the lanes taking part, every one of
// which must call); the value travels as 8 bytes.
uint64_t shuffle(unsigned int mask, uint64_t bits, int src_lane);

template <typename T>
T shfl(unsigned int mask, T v, int src_lane) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "a shuffle moves at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    bits = shuffle(mask, bits, src_lane);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}

// The calling thread's index in its block (x fastest) and its lane in its warp.
inline unsigned int linear_id() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
inline int lane_id() { return (int)(linear_id() % 32); }
}  // namespace hpsf_emu

template <typename T>
T __shfl_sync(unsigned int mask, T v, int src, int width = 32) {
    int lane = hpsf_emu::lane_id();
    return hpsf_emu::shfl(mask, v, (lane & ~(width - 1)) + (src % width));
}

template <typename T>
T __shfl_down_sync(unsigned int mask, T v, unsigned int delta, int width = 32) {
    int lane = hpsf_emu::lane_id();
    int in_group = (lane & (width - 1)) + (int)delta;
    return hpsf_emu::shfl(mask, v, in_group < width ? lane + (int)delta : lane);
}

// ---- launches ------------------------------------------------------------------------------------
namespace hpsf_emu {

// Runs the grid of `body` (one call per thread, threadIdx/blockIdx set), or records it while
// `st` captures; the launch's status is the thread's last error (cudaGetLastError).
void launch_op(const char *name, dim3 grid, dim3 block, cudaStream_t st, void (*thread)(void *), void *arg,
               void (*drop)(void *));

template <typename... P>
struct Launch {
    const char *name;
    void (*kernel)(P...);
    dim3 grid, block;
    cudaStream_t st;

    struct Bound {
        void (*kernel)(P...);
        std::tuple<typename std::decay<P>::type...> args;
    };

    template <typename... A>
    void operator()(A &&...a) const {
        static_assert(sizeof...(A) == sizeof...(P), "a kernel launched with the wrong number of arguments");
        Bound *b = new Bound{kernel, std::tuple<typename std::decay<P>::type...>(std::forward<A>(a)...)};
        launch_op(
            name, grid, block, st, [](void *p) { std::apply(static_cast<Bound *>(p)->kernel, static_cast<Bound *>(p)->args); },
            b, [](void *p) { delete static_cast<Bound *>(p); });
    }
};

// `kernel<<<grid, block, shared, st>>>(args)` becomes `hpsf_emu::launch("kernel", kernel, grid, block,
// shared, st)(args)` (build.rs rewrites the sources).
template <typename... P>
Launch<P...> launch(const char *name, void (*kernel)(P...), dim3 grid, dim3 block, size_t shared = 0,
                    cudaStream_t st = nullptr) {
    (void)shared;
    return Launch<P...>{name, kernel, grid, block, st};
}

}  // namespace hpsf_emu
