// The CUDA emulator's runtime (csrc/emu/README.md): launches run every thread of a block as a fiber
// on the calling host thread, switched only where the kernel synchronises (__syncthreads, a warp
// shuffle), blocks one after another; a launch on a capturing stream is recorded instead. Kernel
// misuse a GPU would turn into undefined behaviour stops the process with a message: a barrier or
// shuffle some threads never reach (deadlock), a shuffle from a lane outside its mask.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vector>

#include "cuda_runtime.h"
#include "emu_shared.h"

__thread uint3 threadIdx, blockIdx, blockDim, gridDim;

static_assert(sizeof(hpsf_emu_op) == 3 * sizeof(void *), "an op is three pointers");

namespace {

// ---- fibers ------------------------------------------------------------------------------------
#if !defined(__x86_64__)
#error "the CUDA emulator switches fibers with x86-64 code"
#endif

// Saves the callee-saved registers on the current stack, stores the stack pointer in *save and
// continues on the stack `next` (made by this function or by new_stack). The SSE and x87 control
// words are not switched: no kernel changes them.
extern "C" void hpsf_emu_switch(void **save, void *next);
asm(R"(
    .text
    .globl hpsf_emu_switch
    .type hpsf_emu_switch, @function
hpsf_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size hpsf_emu_switch, .-hpsf_emu_switch
)");

enum State : uint8_t { READY, RUNNING, AT_BARRIER, AT_SHUFFLE, DONE };

struct Fiber {
    void *sp = nullptr;
    State state = READY;
    uint32_t mask = 0;  // the lanes of the shuffle it waits at
    uint3 tid{};
};

// How many shuffles a lane may run ahead of the slowest lane of its mask.
const uint64_t AHEAD = 32;

// A block's warp: per mask its shuffles use, a channel holding each lane's recent values. A lane's
// n-th shuffle with a mask is that shuffle's instance n; a lane waits only until the lane it reads
// has offered its value of that instance (and, before offering one, until it is not AHEAD instances
// in front of the slowest lane), rather than for the whole mask at every shuffle: the same values,
// with a fraction of the fiber switches.
struct Warp {
    struct Channel {
        uint32_t mask;
        uint32_t value_waiters[32];      // per lane: the lanes waiting for its next value
        uint32_t room_waiters;           // lanes waiting for the slowest lane to catch up
        uint64_t slowest;                // at most the fewest shuffles a lane of the mask has completed
        uint64_t offered[32], done[32];  // per lane: values offered, shuffles completed
        uint64_t value[32][AHEAD];       // per lane: the value of instance n at n % AHEAD
    };
    std::vector<Channel> channels;
};

const size_t STACK = 256 * 1024;

struct Stack {
    char *base = nullptr;  // the lowest page is a guard page
};

// The state of the block this host thread runs.
struct Block {
    const char *name = nullptr;
    void (*thread)(void *) = nullptr;
    void *arg = nullptr;
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    std::vector<Stack> stacks;  // kept from block to block
    int live = 0, at_barrier = 0, current = -1;
    void *scheduler_sp = nullptr;
};

// plain thread-local pointers (no C++ thread_local wrappers on every access)
__thread Block *this_block = nullptr;
__thread cudaError_t last_error = cudaSuccess;

Block *new_block() {
    this_block = new Block();  // one per host thread that launches, kept
    return this_block;
}

inline Block &blk() {
    Block *b = this_block;
    return *(__builtin_expect(b != nullptr, 1) ? b : new_block());
}

[[noreturn]] void fatal_in_kernel(const char *what) {
    char msg[512];
    snprintf(msg, sizeof msg, "kernel %s, block (%u, %u, %u), thread (%u, %u, %u): %s", blk().name ? blk().name : "?",
             blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z, what);
    hpsf_emu_fatal(msg);
}

Fiber &me() {
    if (blk().current < 0) hpsf_emu_fatal("a device synchronisation outside a kernel");
    return blk().fibers[(size_t)blk().current];
}

// Leaves the running fiber (waiting, or done): straight to the next ready fiber of the block after
// it, else back to the scheduler (which starts again from the first).
void switch_away() {
    Block &b = blk();
    const size_t from = (size_t)b.current;
    for (size_t i = from + 1; i < b.fibers.size(); ++i) {
        Fiber &next = b.fibers[i];
        if (next.state != READY) continue;
        next.state = RUNNING;
        b.current = (int)i;
        threadIdx = next.tid;
        hpsf_emu_switch(&b.fibers[from].sp, next.sp);
        return;
    }
    hpsf_emu_switch(&b.fibers[from].sp, b.scheduler_sp);
}

void release_barrier() {
    for (Fiber &f : blk().fibers)
        if (f.state == AT_BARRIER) f.state = READY;
    blk().at_barrier = 0;
}

// The first frame of a fiber: runs its thread of the kernel, then returns to the scheduler for good.
void fiber_main() {
    blk().thread(blk().arg);
    Fiber &f = me();
    f.state = DONE;
    --blk().live;
    // threads that have exited no longer hold a barrier back (as on GPUs since Volta)
    if (blk().at_barrier > 0 && blk().at_barrier == blk().live) release_barrier();
    switch_away();
    hpsf_emu_fatal("a finished fiber resumed");
}

// A fresh stack whose first switch enters fiber_main.
void *new_stack(Stack &s) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (!s.base) {
        void *m = mmap(nullptr, STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) hpsf_emu_fatal("no memory for a fiber's stack");
        s.base = (char *)m;
        if (mprotect(s.base, page, PROT_NONE) != 0) hpsf_emu_fatal("mprotect of a stack's guard page failed");
    }
    uint64_t *top = (uint64_t *)(s.base + STACK);  // 16-byte aligned
    top[-1] = 0;                                   // fiber_main's return address: none
    top[-2] = (uint64_t)(uintptr_t)&fiber_main;    // where the switch's `ret` goes
    for (int i = 3; i <= 8; ++i) top[-i] = 0;      // rbp, rbx, r12–r15
    return &top[-8];
}

void deadlock() {
    char msg[256];
    int barrier = 0, shuffle = 0;
    for (const Fiber &f : blk().fibers) {
        barrier += f.state == AT_BARRIER;
        shuffle += f.state == AT_SHUFFLE;
    }
    snprintf(msg, sizeof msg,
             "kernel %s, block (%u, %u, %u): deadlock: %d threads wait at __syncthreads and %d at a warp "
             "shuffle that the other threads of the block (or of the shuffle's mask) never reach",
             blk().name, blockIdx.x, blockIdx.y, blockIdx.z, barrier, shuffle);
    hpsf_emu_fatal(msg);
}

void run_block(unsigned int threads) {
    blk().fibers.assign(threads, Fiber{});
    blk().warps.assign((threads + 31) / 32, Warp{});
    if (blk().stacks.size() < threads) blk().stacks.resize(threads);
    for (unsigned int i = 0; i < threads; ++i) {
        Fiber &f = blk().fibers[i];
        f.tid = uint3{i % blockDim.x, i / blockDim.x % blockDim.y, i / (blockDim.x * blockDim.y)};
        f.sp = new_stack(blk().stacks[i]);
    }
    blk().live = (int)threads;
    blk().at_barrier = 0;
    while (blk().live > 0) {
        bool ran = false;
        for (unsigned int i = 0; i < threads; ++i) {
            Fiber &f = blk().fibers[i];
            if (f.state != READY) continue;
            f.state = RUNNING;
            blk().current = (int)i;
            threadIdx = f.tid;
            hpsf_emu_switch(&blk().scheduler_sp, f.sp);
            ran = true;
        }
        blk().current = -1;
        if (!ran && blk().live > 0) deadlock();
    }
    for (const Warp &w : blk().warps)
        for (const Warp::Channel &c : w.channels) {
            const int first = __builtin_ctz(c.mask);
            for (int l = 0; l < 32; ++l)
                if (c.mask >> l & 1u && c.offered[l] != c.offered[first]) {
                    char msg[256];
                    snprintf(msg, sizeof msg,
                             "kernel %s, block (%u, %u, %u): the lanes of the shuffle mask %#x took part in "
                             "different numbers of shuffles (lane %d: %llu, lane %d: %llu)",
                             blk().name, blockIdx.x, blockIdx.y, blockIdx.z, c.mask, l,
                             (unsigned long long)c.offered[l], first, (unsigned long long)c.offered[first]);
                    hpsf_emu_fatal(msg);
                }
        }
}

struct Grid {
    const char *name;
    dim3 grid, block;
    void (*thread)(void *);
    void *arg;
    void (*drop)(void *);
};

void run_grid(void *p) {
    const Grid &g = *static_cast<Grid *>(p);
    if (blk().current >= 0) hpsf_emu_fatal("a kernel launched from a kernel");
    const uint3 saved_grid = gridDim, saved_block = blockDim;
    gridDim = uint3{g.grid.x, g.grid.y, g.grid.z};
    blockDim = uint3{g.block.x, g.block.y, g.block.z};
    blk().name = g.name;
    blk().thread = g.thread;
    blk().arg = g.arg;
    const unsigned int threads = g.block.x * g.block.y * g.block.z;
    for (unsigned int z = 0; z < g.grid.z; ++z)
        for (unsigned int y = 0; y < g.grid.y; ++y)
            for (unsigned int x = 0; x < g.grid.x; ++x) {
                blockIdx = uint3{x, y, z};
                run_block(threads);
            }
    gridDim = saved_grid;
    blockDim = saved_block;
}

void drop_grid(void *p) {
    Grid *g = static_cast<Grid *>(p);
    g->drop(g->arg);
    delete g;
}

// Runs `op` now, or appends it to what `st` records.
cudaError_t enqueue(cudaStream_t st, hpsf_emu_op op) {
    if (hpsf_emu_capturing(st)) {
        st->recorded.push(op);
        return cudaSuccess;
    }
    op.run(op.arg);
    op.drop(op.arg);
    return cudaSuccess;
}

cudaError_t fail(cudaError_t e) {
    last_error = e;
    return e;
}

hpsf_emu_heap heap;

}  // namespace

namespace hpsf_emu {

void launch_op(const char *name, dim3 grid, dim3 block, cudaStream_t st, void (*thread)(void *), void *arg,
               void (*drop)(void *)) {
    const uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 || threads == 0 ||
        threads > 1024 || block.z > 64) {
        drop(arg);
        fail(cudaErrorInvalidConfiguration);
        return;
    }
    enqueue(st, hpsf_emu_op{run_grid, drop_grid, new Grid{name, grid, block, thread, arg, drop}});
}

uint64_t shuffle(unsigned int mask, uint64_t bits, int src_lane) {
    Fiber &f = me();
    Block &b = blk();
    const unsigned int linear = linear_id();
    const int lane = lane_id();
    Warp &w = b.warps[linear / 32];
    if (!(mask >> lane & 1u)) fatal_in_kernel("a warp shuffle whose mask leaves out the calling lane");
    if (src_lane < 0 || src_lane > 31 || !(mask >> src_lane & 1u))
        fatal_in_kernel("a warp shuffle reading a lane outside its mask");
    size_t i = 0;
    while (i < w.channels.size() && w.channels[i].mask != mask) ++i;
    if (i == w.channels.size()) {
        w.channels.emplace_back();  // (its values need no zeros)
        Warp::Channel &c = w.channels.back();
        c.mask = mask;
        c.room_waiters = 0;
        memset(c.value_waiters, 0, sizeof c.value_waiters);
        c.slowest = 0;
        memset(c.offered, 0, sizeof c.offered);
        memset(c.done, 0, sizeof c.done);
    }
    // (the channel is looked up again after every wait: the vector may have grown meanwhile)
    auto channel = [&]() -> Warp::Channel & { return w.channels[i]; };
    // waits until woken: `waiters` gets this lane's bit, and whoever changes what it waits for
    // makes the lanes of those bits ready
    auto wait = [&](uint32_t *waiters) {
        *waiters |= 1u << lane;
        f.state = AT_SHUFFLE;
        f.mask = mask;
        switch_away();
    };
    auto wake = [&](uint32_t *waiters) {
        const uint32_t m = *waiters;
        if (!m) return;
        *waiters = 0;
        const size_t first = linear / 32 * 32;
        for (int l = 0; l < 32; ++l)
            if (m >> l & 1u) b.fibers[first + (size_t)l].state = READY;
    };
    const uint64_t n = channel().offered[lane];
    // room for the value: the slowest lane has completed more than n - AHEAD shuffles (the lower
    // bound kept in `slowest` is raised by a scan only where it does not suffice)
    while (channel().slowest + AHEAD <= n) {
        uint64_t m = UINT64_MAX;
        for (int l = 0; l < 32; ++l)
            if (mask >> l & 1u && channel().done[l] < m) m = channel().done[l];
        channel().slowest = m;
        if (m + AHEAD <= n) wait(&channel().room_waiters);
    }
    channel().value[lane][n % AHEAD] = bits;
    channel().offered[lane] = n + 1;
    wake(&channel().value_waiters[lane]);
    while (channel().offered[src_lane] <= n) wait(&channel().value_waiters[src_lane]);
    const uint64_t out = channel().value[src_lane][n % AHEAD];
    channel().done[lane] = n + 1;
    wake(&channel().room_waiters);
    return out;
}

}  // namespace hpsf_emu

void __syncthreads() {
    Fiber &f = me();
    if (++blk().at_barrier == blk().live) {
        release_barrier();
        return;
    }
    f.state = AT_BARRIER;
    switch_away();
}

cudaError_t cudaGetLastError() {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t cudaMallocAsync(void **p, size_t bytes, cudaStream_t st) {
    if (hpsf_emu_capturing(st)) return fail(cudaErrorStreamCaptureUnsupported);
    *p = heap.alloc(bytes, 0xff);
    return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}

cudaError_t cudaFreeAsync(void *p, cudaStream_t st) {
    if (hpsf_emu_capturing(st)) return fail(cudaErrorStreamCaptureUnsupported);
    if (!heap.free(p)) hpsf_emu_fatal("cudaFreeAsync of a pointer cudaMallocAsync did not return");
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind, cudaStream_t st) {
    if (!dst || !src) return fail(cudaErrorInvalidValue);
    return enqueue(st, (new hpsf_emu_copy{dst, src, 0, bytes})->op());
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t st) {
    if (!p) return fail(cudaErrorInvalidValue);
    return enqueue(st, (new hpsf_emu_copy{p, nullptr, value, bytes})->op());
}

cudaError_t cudaStreamSynchronize(cudaStream_t st) {
    if (hpsf_emu_capturing(st)) return fail(cudaErrorStreamCaptureUnsupported);
    return cudaSuccess;
}
