// What the emulator's runtime (emu.cpp, linked into the test binaries) and its driver (libcuda.cpp,
// the libcuda.so cudarc loads) share: the stream object and its capture, and the guarded allocator.
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <map>
#include <mutex>

// One launch or copy taken out of its arguments (cuda_runtime.h's hpsf_emu::Op, the same layout).
struct hpsf_emu_op {
    void (*run)(void *);
    void (*drop)(void *);
    void *arg;
};

// A list of operations: what a capturing stream has recorded, or a graph's body.
struct hpsf_emu_ops {
    hpsf_emu_op *ops = nullptr;
    size_t len = 0, cap = 0;
    void push(hpsf_emu_op op) {
        if (len == cap) {
            cap = cap ? 2 * cap : 16;
            ops = (hpsf_emu_op *)realloc(ops, cap * sizeof(hpsf_emu_op));
            if (!ops) abort();
        }
        ops[len++] = op;
    }
    void run() const {
        for (size_t i = 0; i < len; ++i) ops[i].run(ops[i].arg);
    }
    void clear() {
        for (size_t i = 0; i < len; ++i)
            if (ops[i].drop) ops[i].drop(ops[i].arg);
        free(ops);
        ops = nullptr;
        len = cap = 0;
    }
};

// A copy (src) or a fill (src == nullptr: `value` bytes) enqueued on a stream, as an op.
struct hpsf_emu_copy {
    void *dst;
    const void *src;
    int value;
    size_t bytes;
    static void run(void *p) {
        const hpsf_emu_copy &c = *static_cast<hpsf_emu_copy *>(p);
        if (c.src)
            memmove(c.dst, c.src, c.bytes);
        else
            memset(c.dst, c.value, c.bytes);
    }
    static void drop(void *p) { delete static_cast<hpsf_emu_copy *>(p); }
    hpsf_emu_op op() { return hpsf_emu_op{run, drop, this}; }
};

#define HPSF_EMU_STREAM_MAGIC 0x48505346u  // "HPSF"

// A stream (the null handle is the default stream, which never captures): while `capturing`, the
// launches and copies enqueued on it are appended to `recorded` instead of being run.
struct CUstream_st {
    uint32_t magic = HPSF_EMU_STREAM_MAGIC;
    int capturing = 0;
    hpsf_emu_ops recorded;
};

[[noreturn]] inline void hpsf_emu_fatal(const char *what) {
    fprintf(stderr, "hpsf CUDA emulator: %s\n", what);
    fflush(stderr);
    abort();
}

inline bool hpsf_emu_capturing(CUstream_st *s) {
    if (!s) return false;
    if (s->magic != HPSF_EMU_STREAM_MAGIC) hpsf_emu_fatal("a stream handle that is not a stream");
    return s->capturing != 0;
}

// Device memory: each allocation ends where a page that cannot be touched begins (a read or write
// past its end stops the process, as compute-sanitizer's memcheck would report it), is filled with
// `fill` (0xff: NaN in floats, -1 in signed integers: reading memory never written shows), and its
// pages are unmapped when it is freed (a use after free stops the process too).
class hpsf_emu_heap {
    struct Span {
        char *base;
        size_t bytes;
    };
    std::mutex m_;
    std::map<uintptr_t, Span> spans_;

   public:
    void *alloc(size_t bytes, int fill) {
        const size_t page = (size_t)sysconf(_SC_PAGESIZE);
        size_t used = ((bytes ? bytes : 1) + 15) / 16 * 16;
        size_t span = (used + page - 1) / page * page + page;
        void *m = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) return nullptr;
        char *base = (char *)m;
        if (mprotect(base + span - page, page, PROT_NONE) != 0) hpsf_emu_fatal("mprotect of a guard page failed");
        char *p = base + span - page - used;
        memset(p, fill, used);
        std::lock_guard<std::mutex> g(m_);
        spans_[(uintptr_t)p] = Span{base, span};
        return p;
    }
    // false: `p` is not an allocation of this heap
    bool free(void *p) {
        if (!p) return true;
        Span s;
        {
            std::lock_guard<std::mutex> g(m_);
            auto it = spans_.find((uintptr_t)p);
            if (it == spans_.end()) return false;
            s = it->second;
            spans_.erase(it);
        }
        munmap(s.base, s.bytes);
        return true;
    }
};
