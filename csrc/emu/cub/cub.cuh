// The CUDA emulator's CUB (csrc/emu/README.md): the device-wide primitives csrc/construct.cu calls,
// written from CUB's documented contracts for host memory — stable radix sorts of the bits
// [begin_bit, end_bit) of unsigned keys (and of doubles in CUB's order: −0 before +0, NaN last),
// exclusive sums, run-length encoding, flagged selection, sums and maxima. The first call of CUB's
// two-call pattern (no temporary storage) asks for one byte.
#pragma once
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

#include "../cuda_runtime.h"

namespace cub {
namespace emu {

inline bool sizing(void *temp, size_t &bytes) {
    if (temp) return false;
    bytes = 1;
    return true;
}

// The key's bits as CUB's radix sort orders them.
template <typename K>
uint64_t radix_bits(K k) {
    static_assert(std::is_unsigned<K>::value || std::is_same<K, double>::value, "keys: unsigned integers or doubles");
    return (uint64_t)k;
}
template <>
inline uint64_t radix_bits<double>(double k) {
    uint64_t u;
    memcpy(&u, &k, 8);
    return (u >> 63) ? ~u : (u | (1ull << 63));
}

template <typename K>
uint64_t digit(K k, int begin_bit, int end_bit) {
    uint64_t u = radix_bits(k) >> begin_bit;
    int bits = end_bit - begin_bit;
    return bits >= 64 ? u : (u & ((1ull << bits) - 1));
}

// The stable order of n keys by their bits [begin, end).
template <typename K>
std::vector<int64_t> order_of(const K *keys, int64_t n, int begin_bit, int end_bit) {
    std::vector<int64_t> idx((size_t)n);
    std::iota(idx.begin(), idx.end(), (int64_t)0);
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) {
        return digit(keys[a], begin_bit, end_bit) < digit(keys[b], begin_bit, end_bit);
    });
    return idx;
}

}  // namespace emu

struct DeviceRadixSort {
    template <typename K, typename V, typename N>
    static cudaError_t SortPairs(void *temp, size_t &bytes, const K *keys_in, K *keys_out, const V *vals_in,
                                 V *vals_out, N n, int begin_bit = 0, int end_bit = (int)sizeof(K) * 8,
                                 cudaStream_t = nullptr) {
        if (emu::sizing(temp, bytes)) return cudaSuccess;
        std::vector<int64_t> idx = emu::order_of(keys_in, (int64_t)n, begin_bit, end_bit);
        std::vector<K> k((size_t)n);
        std::vector<V> v((size_t)n);
        for (size_t i = 0; i < idx.size(); ++i) {
            k[i] = keys_in[idx[i]];
            v[i] = vals_in[idx[i]];
        }
        std::copy(k.begin(), k.end(), keys_out);
        std::copy(v.begin(), v.end(), vals_out);
        return cudaSuccess;
    }
    template <typename K, typename N>
    static cudaError_t SortKeys(void *temp, size_t &bytes, const K *keys_in, K *keys_out, N n, int begin_bit = 0,
                                int end_bit = (int)sizeof(K) * 8, cudaStream_t = nullptr) {
        if (emu::sizing(temp, bytes)) return cudaSuccess;
        std::vector<int64_t> idx = emu::order_of(keys_in, (int64_t)n, begin_bit, end_bit);
        std::vector<K> k((size_t)n);
        for (size_t i = 0; i < idx.size(); ++i) k[i] = keys_in[idx[i]];
        std::copy(k.begin(), k.end(), keys_out);
        return cudaSuccess;
    }
};

struct DeviceScan {
    // CUB accumulates in the input's value type and writes each partial sum converted to the output's.
    template <typename I, typename O, typename N>
    static cudaError_t ExclusiveSum(void *temp, size_t &bytes, const I *in, O *out, N n, cudaStream_t = nullptr) {
        if (emu::sizing(temp, bytes)) return cudaSuccess;
        I acc = I(0);
        for (int64_t i = 0; i < (int64_t)n; ++i) {
            I v = in[i];
            out[i] = (O)acc;
            acc = (I)(acc + v);
        }
        return cudaSuccess;
    }
};

struct DeviceRunLengthEncode {
    template <typename K, typename L, typename C, typename N>
    static cudaError_t Encode(void *temp, size_t &bytes, const K *in, K *unique, L *lengths, C *runs, N n,
                              cudaStream_t = nullptr) {
        if (emu::sizing(temp, bytes)) return cudaSuccess;
        int64_t r = 0;
        for (int64_t i = 0; i < (int64_t)n; ++i) {
            if (i == 0 || !(in[i] == in[i - 1])) {
                unique[r] = in[i];
                lengths[r] = 0;
                ++r;
            }
            lengths[r - 1] += 1;
        }
        *runs = (C)r;
        return cudaSuccess;
    }
};

struct DeviceSelect {
    template <typename T, typename F, typename C, typename N>
    static cudaError_t Flagged(void *temp, size_t &bytes, const T *in, const F *flags, T *out, C *selected, N n,
                               cudaStream_t = nullptr) {
        if (emu::sizing(temp, bytes)) return cudaSuccess;
        int64_t r = 0;
        for (int64_t i = 0; i < (int64_t)n; ++i)
            if (flags[i]) out[r++] = in[i];
        *selected = (C)r;
        return cudaSuccess;
    }
};

struct DeviceReduce {
    // CUB sums in the output's value type (its initial value's type).
    template <typename I, typename O, typename N>
    static cudaError_t Sum(void *temp, size_t &bytes, const I *in, O *out, N n, cudaStream_t = nullptr) {
        if (emu::sizing(temp, bytes)) return cudaSuccess;
        static_assert(std::is_integral<I>::value, "healpix-psf sums only integers with CUB (no order to depend on)");
        O acc = O(0);
        for (int64_t i = 0; i < (int64_t)n; ++i) acc = (O)(acc + (O)in[i]);
        *out = acc;
        return cudaSuccess;
    }
    template <typename I, typename O, typename N>
    static cudaError_t Max(void *temp, size_t &bytes, const I *in, O *out, N n, cudaStream_t = nullptr) {
        if (emu::sizing(temp, bytes)) return cudaSuccess;
        I acc = std::numeric_limits<I>::lowest();
        for (int64_t i = 0; i < (int64_t)n; ++i) acc = in[i] > acc ? in[i] : acc;
        *out = (O)acc;
        return cudaSuccess;
    }
};

}  // namespace cub
