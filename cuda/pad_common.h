// Per-element index math of the packed <-> padded kernels, shared unchanged by the CPU
// implementation (g++) and the CUDA kernels (nvcc), so the CPU tests exercise the math the GPU
// runs. Everything here is plain integer arithmetic on raw pointers: no torch, no CUDA runtime.
//
// Layouts, counted in "words" (the unit a kernel moves: 1, 2, 4, 8 or 16 bytes):
//   packed  [rows, row_words]              item b is rows offsets[b] .. offsets[b+1]
//   padded  [batch, max_len, row_words]    item b owns max_len rows, the first N_b are real
// Within one item both layouts are contiguous, so each op is, per item, one contiguous copy of
// N_b * row_words words (plus, when padding, a contiguous fill of the rest): no division or
// search per element, and the item index is the only thing a thread has to know.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define HETLOAD_HD __host__ __device__ __forceinline__
#else
#define HETLOAD_HD inline
#endif

namespace hetload {

// A 16-byte word: one vectorized load/store on the GPU, two moves on the CPU.
struct alignas(16) Word16 {
  uint64_t lo;
  uint64_t hi;
};

// One item's share of a copy, in words.
struct Span {
  int64_t src;     // the item's first word in the source
  int64_t dst;     // the item's first word in the destination
  int64_t valid;   // words copied from the source
  int64_t extent;  // words the destination item owns; words past `valid` get the fill
};

// Item b's first packed row and length, clamped into [0, rows) and to max_len, so that even
// corrupt offsets cannot make a kernel touch memory outside its tensors. (The Python wrappers
// and the CPU op reject such offsets with an error; the GPU op cannot without a device sync.)
HETLOAD_HD void item_rows(const int64_t* offsets, int64_t b, int64_t rows, int64_t max_len,
                          int64_t& begin, int64_t& length) {
  int64_t lo = offsets[b];
  int64_t hi = offsets[b + 1];
  lo = lo < 0 ? 0 : (lo > rows ? rows : lo);
  hi = hi < lo ? lo : (hi > rows ? rows : hi);
  begin = lo;
  length = hi - lo < max_len ? hi - lo : max_len;
}

// packed -> padded: item b's rows go to padded rows [b * max_len, b * max_len + N_b), the rest
// of its max_len rows are fill.
HETLOAD_HD Span pad_span(const int64_t* offsets, int64_t b, int64_t rows, int64_t max_len,
                         int64_t row_words) {
  int64_t begin, length;
  item_rows(offsets, b, rows, max_len, begin, length);
  return Span{begin * row_words, b * max_len * row_words, length * row_words,
              max_len * row_words};
}

// padded -> packed: the first N_b rows of padded item b go back to packed rows offsets[b]...;
// `rows` is the packed total.
HETLOAD_HD Span pack_span(const int64_t* offsets, int64_t b, int64_t rows, int64_t max_len,
                          int64_t row_words) {
  int64_t begin, length;
  item_rows(offsets, b, rows, max_len, begin, length);
  return Span{b * max_len * row_words, begin * row_words, length * row_words,
              length * row_words};
}

// The words [first, extent) of one item, `step` apart (a GPU thread's grid-stride share; the CPU
// passes first = 0, step = 1). Copy and fill are two loops so each is a straight stream.
template <class W>
HETLOAD_HD void pad_words(W* __restrict__ dst, const W* __restrict__ src, const Span& s,
                          int64_t first, int64_t step, W fill) {
  int64_t i = first;
  for (; i < s.valid; i += step) dst[s.dst + i] = src[s.src + i];
  for (; i < s.extent; i += step) dst[s.dst + i] = fill;
}

// Index fields: global -> local indices (minus the item's base), fill past the real rows.
// T is the unsigned integer of the element's width: wrapping subtraction gives the same bits
// as two's-complement subtraction of the signed type, so one kernel serves int8..int64, uint*.
template <class T>
HETLOAD_HD void local_words(T* __restrict__ dst, const T* __restrict__ src, const Span& s,
                            int64_t first, int64_t step, T base, T fill) {
  int64_t i = first;
  for (; i < s.valid; i += step) dst[s.dst + i] = static_cast<T>(src[s.src + i] - base);
  for (; i < s.extent; i += step) dst[s.dst + i] = fill;
}

// The widest word (<= 16 bytes) that divides a row and both pointers' alignment: rows then
// start on word boundaries in both layouts, whatever the item boundaries are.
HETLOAD_HD int word_bytes(int64_t row_bytes, uint64_t src_addr, uint64_t dst_addr) {
  const uint64_t bits = static_cast<uint64_t>(row_bytes) | src_addr | dst_addr | 16u;
  return static_cast<int>(bits & (~bits + 1));
}

}  // namespace hetload
