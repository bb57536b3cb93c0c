// The CUDA emulator's driver (csrc/emu/README.md): the part of libcuda.so's API that cudarc calls for
// healpix-psf, over host memory — one device ("cuda:0", an emulated GPU), its primary context,
// streams that run their work at once (or record it while they capture), events that are always
// complete, the guarded allocator of emu_shared.h, and graphs replaying what a capture recorded.
// build.rs builds it as libcuda.so (soname libcuda.so) next to the test binaries' build.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "emu_shared.h"

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef struct CUstream_st *CUstream;
typedef void *CUevent;
typedef unsigned long long CUdeviceptr;

namespace {

const CUresult OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, INVALID_DEVICE = 101, INVALID_HANDLE = 400,
               ILLEGAL_STATE = 401, CAPTURE_UNSUPPORTED = 900, CAPTURE_INVALIDATED = 901;

int context_token;  // the primary context's handle points here
thread_local CUcontext current = nullptr;
hpsf_emu_heap heap;
const size_t TOTAL = (size_t)64 << 30;

struct Graph {
    hpsf_emu_ops ops;
    int refs = 1;
};
void release(Graph *g) {
    if (--g->refs == 0) {
        g->ops.clear();
        delete g;
    }
}
struct Exec {
    Graph *g;
};

CUresult copy_on(CUstream s, void *dst, const void *src, int value, size_t bytes) {
    if (!dst || (!src && value < 0)) return INVALID_VALUE;
    if (hpsf_emu_capturing(s)) {
        s->recorded.push((new hpsf_emu_copy{dst, src, value, bytes})->op());
        return OK;
    }
    hpsf_emu_copy c{dst, src, value, bytes};
    hpsf_emu_copy::run(&c);
    return OK;
}

void *ptr(CUdeviceptr p) { return (void *)(uintptr_t)p; }

// The name and description of each code this driver returns.
struct Code {
    CUresult code;
    const char *name, *text;
};
const Code CODES[] = {
    {OK, "CUDA_SUCCESS", "no error"},
    {INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {ILLEGAL_STATE, "CUDA_ERROR_ILLEGAL_STATE", "the operation cannot be performed in the present state"},
    {CAPTURE_UNSUPPORTED, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", "operation not permitted when stream is capturing"},
    {CAPTURE_INVALIDATED, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
     "operation failed due to a previous error during capture"},
};
const Code UNKNOWN = {-1, "CUDA_ERROR_UNKNOWN", "unknown error (CUDA emulator)"};
const Code &code_of(CUresult e) {
    for (const Code &c : CODES)
        if (c.code == e) return c;
    return UNKNOWN;
}

}  // namespace

extern "C" {

CUresult cuInit(unsigned int) { return OK; }
CUresult cuDriverGetVersion(int *v) {
    if (!v) return INVALID_VALUE;
    *v = 13000;
    return OK;
}
CUresult cuDeviceGetCount(int *n) {
    if (!n) return INVALID_VALUE;
    *n = 1;
    return OK;
}
CUresult cuDeviceGet(CUdevice *d, int ordinal) {
    if (!d) return INVALID_VALUE;
    if (ordinal != 0) return INVALID_DEVICE;
    *d = 0;
    return OK;
}
CUresult cuDeviceGetName(char *name, int len, CUdevice) {
    if (!name || len <= 0) return INVALID_VALUE;
    snprintf(name, (size_t)len, "healpix-psf CUDA emulator");
    return OK;
}
CUresult cuDeviceGetAttribute(int *v, int attribute, CUdevice d) {
    if (!v) return INVALID_VALUE;
    if (d != 0) return INVALID_DEVICE;
    switch (attribute) {
        case 16: *v = 132; break;   // multiprocessors (an H100's)
        case 75: *v = 9; break;     // compute capability 9.0
        case 76: *v = 0; break;
        case 115: *v = 1; break;    // memory pools: cudarc allocates with cuMemAllocAsync
        default: *v = 0;
    }
    return OK;
}
CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice) {
    if (!bytes) return INVALID_VALUE;
    *bytes = TOTAL;
    return OK;
}
CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) {
    if (!c) return INVALID_VALUE;
    if (d != 0) return INVALID_DEVICE;
    *c = &context_token;
    return OK;
}
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return OK; }
CUresult cuCtxGetCurrent(CUcontext *c) {
    if (!c) return INVALID_VALUE;
    *c = current;
    return OK;
}
CUresult cuCtxSetCurrent(CUcontext c) {
    if (c && c != &context_token) return INVALID_HANDLE;
    current = c;
    return OK;
}
CUresult cuCtxSynchronize() { return OK; }
CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total) {
    if (!free_bytes || !total) return INVALID_VALUE;
    *free_bytes = TOTAL;
    *total = TOTAL;
    return OK;
}

CUresult cuStreamCreate(CUstream *s, unsigned int) {
    if (!s) return INVALID_VALUE;
    *s = new CUstream_st();
    return OK;
}
CUresult cuStreamDestroy_v2(CUstream s) {
    if (!s) return INVALID_HANDLE;
    (void)hpsf_emu_capturing(s);  // checks the handle
    s->recorded.clear();
    s->magic = 0;
    delete s;
    return OK;
}
CUresult cuStreamSynchronize(CUstream s) { return hpsf_emu_capturing(s) ? CAPTURE_UNSUPPORTED : OK; }
CUresult cuStreamQuery(CUstream s) { return hpsf_emu_capturing(s) ? CAPTURE_UNSUPPORTED : OK; }

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t bytes) {
    if (!p) return INVALID_VALUE;
    void *m = heap.alloc(bytes, 0xff);
    if (!m) return OUT_OF_MEMORY;
    *p = (CUdeviceptr)(uintptr_t)m;
    return OK;
}
CUresult cuMemAllocAsync(CUdeviceptr *p, size_t bytes, CUstream s) {
    if (hpsf_emu_capturing(s)) return CAPTURE_UNSUPPORTED;
    return cuMemAlloc_v2(p, bytes);
}
CUresult cuMemFree_v2(CUdeviceptr p) {
    if (!heap.free(ptr(p))) hpsf_emu_fatal("cuMemFree of a pointer cuMemAlloc did not return");
    return OK;
}
CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) {
    if (hpsf_emu_capturing(s)) return CAPTURE_UNSUPPORTED;
    return cuMemFree_v2(p);
}
CUresult cuMemAllocHost_v2(void **p, size_t bytes) {
    if (!p) return INVALID_VALUE;
    *p = heap.alloc(bytes, 0xff);
    return *p ? OK : OUT_OF_MEMORY;
}
CUresult cuMemHostAlloc(void **p, size_t bytes, unsigned int) { return cuMemAllocHost_v2(p, bytes); }
CUresult cuMemFreeHost(void *p) {
    if (!heap.free(p)) hpsf_emu_fatal("cuMemFreeHost of a pointer cuMemAllocHost did not return");
    return OK;
}

CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, CUstream s) {
    return copy_on(s, ptr(p), nullptr, v, n);
}
CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) { return copy_on(nullptr, ptr(p), nullptr, v, n); }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, CUstream s) {
    return copy_on(s, ptr(dst), src, 0, n);
}
CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, CUstream s) {
    return copy_on(s, dst, ptr(src), 0, n);
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {
    return copy_on(s, ptr(dst), ptr(src), 0, n);
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) { return copy_on(nullptr, ptr(dst), src, 0, n); }
CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) { return copy_on(nullptr, dst, ptr(src), 0, n); }

// events: the work before them is always done
CUresult cuEventCreate(CUevent *e, unsigned int) {
    if (!e) return INVALID_VALUE;
    *e = new int(0);
    return OK;
}
CUresult cuEventDestroy_v2(CUevent e) {
    delete static_cast<int *>(e);
    return OK;
}
CUresult cuEventRecord(CUevent e, CUstream s) {
    if (!e) return INVALID_HANDLE;
    return hpsf_emu_capturing(s) ? CAPTURE_UNSUPPORTED : OK;
}
CUresult cuEventSynchronize(CUevent) { return OK; }
CUresult cuEventQuery(CUevent) { return OK; }
CUresult cuStreamWaitEvent(CUstream s, CUevent, unsigned int) {
    return hpsf_emu_capturing(s) ? CAPTURE_UNSUPPORTED : OK;
}

CUresult cuGetErrorString(CUresult e, const char **s) {
    if (!s) return INVALID_VALUE;
    *s = code_of(e).text;
    return OK;
}
CUresult cuGetErrorName(CUresult e, const char **s) {
    if (!s) return INVALID_VALUE;
    *s = code_of(e).name;
    return OK;
}

// ---- stream capture and graphs -----------------------------------------------------------------
CUresult cuStreamBeginCapture_v2(CUstream s, int) {
    if (!s) return ILLEGAL_STATE;  // the default stream cannot capture
    if (hpsf_emu_capturing(s)) return ILLEGAL_STATE;
    s->capturing = 1;
    return OK;
}
CUresult cuStreamEndCapture(CUstream s, void **graph) {
    if (!graph) return INVALID_VALUE;
    *graph = nullptr;
    if (!hpsf_emu_capturing(s)) return ILLEGAL_STATE;
    s->capturing = 0;
    Graph *g = new Graph();
    g->ops = s->recorded;
    s->recorded = hpsf_emu_ops();
    *graph = g;
    return OK;
}
CUresult cuStreamIsCapturing(CUstream s, int *status) {
    if (!status) return INVALID_VALUE;
    *status = hpsf_emu_capturing(s) ? 1 : 0;
    return OK;
}
CUresult cuGraphInstantiateWithFlags(void **exec, void *graph, unsigned long long) {
    if (!exec || !graph) return INVALID_VALUE;
    Graph *g = static_cast<Graph *>(graph);
    ++g->refs;
    *exec = new Exec{g};
    return OK;
}
CUresult cuGraphInstantiate_v2(void **exec, void *graph, void *, char *, size_t) {
    return cuGraphInstantiateWithFlags(exec, graph, 0);
}
CUresult cuGraphLaunch(void *exec, CUstream s) {
    if (!exec) return INVALID_HANDLE;
    if (hpsf_emu_capturing(s)) return CAPTURE_UNSUPPORTED;
    static_cast<Exec *>(exec)->g->ops.run();
    return OK;
}
CUresult cuGraphExecDestroy(void *exec) {
    if (!exec) return INVALID_HANDLE;
    Exec *x = static_cast<Exec *>(exec);
    release(x->g);
    delete x;
    return OK;
}
CUresult cuGraphDestroy(void *graph) {
    if (!graph) return INVALID_HANDLE;
    release(static_cast<Graph *>(graph));
    return OK;
}

}  // extern "C"
