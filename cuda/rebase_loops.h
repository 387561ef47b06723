// The loops that re-base one sample's index rows and check their range in the same pass, shared
// by rebase_index_ (index_cpu.cpp: the copy collate makes) and the batch-level shard read
// (read_cpu.cpp: in place, right after the sample's bytes arrive, while they are in cache).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

#include "pad_host.h"

namespace hetload {

// Wider vectors: on x86-64 the four loops below are compiled twice, for baseline SSE2 and for
// AVX2, and each call takes the AVX2 copy when the CPU has it (checked once per process), so one
// wheel runs on any x86-64 and uses AVX2 where it exists. Measured on the 2-core Xeon VM
// (scripts/bench_rebase_loops.cpp, BENCHMARKS.md): the int64 copy at memcpy speed with AVX2,
// 4-8% slower with SSE2; AVX-512 no faster than AVX2 (the loop is at the memory bus), so not
// built. nvcc and other architectures (aarch64: NEON is its baseline) get the plain loops.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__CUDACC__)
#define HETLOAD_REBASE_AVX2 1
#define HETLOAD_INLINE inline __attribute__((always_inline))
#define HETLOAD_AVX2 __attribute__((target("avx2")))
#else
#define HETLOAD_REBASE_AVX2 0
#define HETLOAD_INLINE inline
#endif

namespace rebase_detail {

// One element x of a signed loop: x + base, and whether x lies outside [0, lim] (lim >= -1)
// folded into acc. x is in range exactly when neither x nor lim - x is negative (when x < 0
// the wrapped lim - x may be anything, x's own sign bit already flags it), so OR-ing both into
// one word and testing its sign bit at the end is the whole check: add, sub, or, no compare or
// branch per element, which gcc vectorizes on baseline SSE2 for every width (SSE2 has no 64-bit
// compare). The arithmetic is done on the unsigned twin of T, where wrapping is defined.
template <class T>
struct SignedStep {
  using U = std::make_unsigned_t<T>;
  U base, lim, acc = 0;
  SignedStep(T b, T l) : base(static_cast<U>(b)), lim(static_cast<U>(l)) {}
  HETLOAD_INLINE T operator()(T x) {
    const U v = static_cast<U>(x);
    acc |= static_cast<U>(v | static_cast<U>(lim - v));
    return static_cast<T>(static_cast<U>(v + base));
  }
  HETLOAD_INLINE bool bad() const { return static_cast<T>(acc) < 0; }
};

// Unsigned dtypes (uint8..uint64) have no negative values; one compare per element.
template <class T>
struct UnsignedStep {
  T base, lim, acc = 0;
  UnsignedStep(T b, T l) : base(b), lim(l) {}
  HETLOAD_INLINE T operator()(T v) {
    acc |= static_cast<T>(v > lim);
    return static_cast<T>(v + base);
  }
  HETLOAD_INLINE bool bad() const { return acc != 0; }
};

// dst = src + base over n elements; true when some src is outside [0, lim].
template <class Step, class T>
HETLOAD_INLINE bool copy_loop(const T* __restrict__ src, T* __restrict__ dst, int64_t n,
                              T base, T lim) {
  Step step(base, lim);
  for (int64_t i = 0; i < n; ++i) dst[i] = step(src[i]);
  return step.bad();
}

// The same in place (src == dst: the batch-level shard reads re-base the rows they read
// straight into the batch). A loop of its own: one pointer, so no __restrict__ promise is
// broken; each element is read before it is written, as in the copying loop.
template <class Step, class T>
HETLOAD_INLINE bool inplace_loop(T* p, int64_t n, T base, T lim) {
  Step step(base, lim);
  for (int64_t i = 0; i < n; ++i) p[i] = step(p[i]);
  return step.bad();
}

template <class T>
HETLOAD_INLINE bool signed_copy(const T* __restrict__ src, T* __restrict__ dst, int64_t n,
                                T base, T lim) {
  return copy_loop<SignedStep<T>>(src, dst, n, base, lim);
}

template <class T>
HETLOAD_INLINE bool unsigned_copy(const T* __restrict__ src, T* __restrict__ dst, int64_t n,
                                  T base, T lim) {
  return copy_loop<UnsignedStep<T>>(src, dst, n, base, lim);
}

template <class T>
HETLOAD_INLINE bool signed_inplace(T* p, int64_t n, T base, T lim) {
  return inplace_loop<SignedStep<T>>(p, n, base, lim);
}

template <class T>
HETLOAD_INLINE bool unsigned_inplace(T* p, int64_t n, T base, T lim) {
  return inplace_loop<UnsignedStep<T>>(p, n, base, lim);
}

#if HETLOAD_REBASE_AVX2
// The AVX2 copies: the always-inline loops above, inlined into (so compiled for) an AVX2 body.
template <class T>
HETLOAD_AVX2 bool signed_copy_avx2(const T* __restrict__ src, T* __restrict__ dst, int64_t n,
                                   T base, T lim) {
  return signed_copy<T>(src, dst, n, base, lim);
}
template <class T>
HETLOAD_AVX2 bool unsigned_copy_avx2(const T* __restrict__ src, T* __restrict__ dst, int64_t n,
                                     T base, T lim) {
  return unsigned_copy<T>(src, dst, n, base, lim);
}
template <class T>
HETLOAD_AVX2 bool signed_inplace_avx2(T* p, int64_t n, T base, T lim) {
  return signed_inplace<T>(p, n, base, lim);
}
template <class T>
HETLOAD_AVX2 bool unsigned_inplace_avx2(T* p, int64_t n, T base, T lim) {
  return unsigned_inplace<T>(p, n, base, lim);
}

// Whether to take the AVX2 loops: the CPU runs AVX2 (cpuid) and HETLOAD_SIMD is not "baseline"
// (the switch the tests use to run the SSE2 loops on an AVX2 machine). Read once per process; a
// function-local static is thread-safe.
inline bool has_avx2() {
  static const bool yes = [] {
    const char* simd = std::getenv("HETLOAD_SIMD");
    if (simd != nullptr && std::strcmp(simd, "baseline") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return yes;
}
#endif

}  // namespace rebase_detail

template <class T>
bool rebase_signed(const T* __restrict__ src, T* __restrict__ dst, int64_t n, T base, T lim) {
#if HETLOAD_REBASE_AVX2
  if (rebase_detail::has_avx2()) return rebase_detail::signed_copy_avx2<T>(src, dst, n, base, lim);
#endif
  return rebase_detail::signed_copy<T>(src, dst, n, base, lim);
}

template <class T>
bool rebase_unsigned(const T* __restrict__ src, T* __restrict__ dst, int64_t n, T base, T lim) {
#if HETLOAD_REBASE_AVX2
  if (rebase_detail::has_avx2()) {
    return rebase_detail::unsigned_copy_avx2<T>(src, dst, n, base, lim);
  }
#endif
  return rebase_detail::unsigned_copy<T>(src, dst, n, base, lim);
}

template <class T>
bool rebase_signed_inplace(T* p, int64_t n, T base, T lim) {
#if HETLOAD_REBASE_AVX2
  if (rebase_detail::has_avx2()) return rebase_detail::signed_inplace_avx2<T>(p, n, base, lim);
#endif
  return rebase_detail::signed_inplace<T>(p, n, base, lim);
}

template <class T>
bool rebase_unsigned_inplace(T* p, int64_t n, T base, T lim) {
#if HETLOAD_REBASE_AVX2
  if (rebase_detail::has_avx2()) return rebase_detail::unsigned_inplace_avx2<T>(p, n, base, lim);
#endif
  return rebase_detail::unsigned_inplace<T>(p, n, base, lim);
}

template <class T>
bool rebase_one(const T* src, T* dst, int64_t n, int64_t base, int64_t count) {
  if (n == 0) return false;
  const bool inplace = src == dst;
  if constexpr (std::is_signed_v<T>) {
    const T b = static_cast<T>(base);
    const T lim = static_cast<T>(std::min<int64_t>(count - 1, std::numeric_limits<T>::max()));
    return inplace ? rebase_signed_inplace<T>(dst, n, b, lim) : rebase_signed<T>(src, dst, n, b, lim);
  } else {
    if (count == 0) return true;
    const T b = static_cast<T>(base);
    const T lim = static_cast<T>(
        std::min<uint64_t>(static_cast<uint64_t>(count - 1), std::numeric_limits<T>::max()));
    return inplace ? rebase_unsigned_inplace<T>(dst, n, b, lim)
                   : rebase_unsigned<T>(src, dst, n, b, lim);
  }
}

// The largest packed index representable in `dtype` (the indices after re-basing must fit).
inline int64_t index_max(ScalarType dtype) {
  switch (dtype) {
    case ScalarType::Char: return std::numeric_limits<int8_t>::max();
    case ScalarType::Short: return std::numeric_limits<int16_t>::max();
    case ScalarType::Int: return std::numeric_limits<int32_t>::max();
    case ScalarType::Byte: return std::numeric_limits<uint8_t>::max();
    case ScalarType::UInt16: return std::numeric_limits<uint16_t>::max();
    case ScalarType::UInt32: return std::numeric_limits<uint32_t>::max();
    default: return std::numeric_limits<int64_t>::max();
  }
}

// Calls f(T{}) with T the C++ integer of an index dtype.
template <class F>
inline void with_index_type(ScalarType dtype, F&& f) {
  switch (dtype) {
    case ScalarType::Char: f(int8_t{}); break;
    case ScalarType::Short: f(int16_t{}); break;
    case ScalarType::Int: f(int32_t{}); break;
    case ScalarType::Long: f(int64_t{}); break;
    case ScalarType::Byte: f(uint8_t{}); break;
    case ScalarType::UInt16: f(uint16_t{}); break;
    case ScalarType::UInt32: f(uint32_t{}); break;
    default: f(uint64_t{}); break;
  }
}

}  // namespace hetload

#undef HETLOAD_INLINE
#ifdef HETLOAD_AVX2
#undef HETLOAD_AVX2
#endif
