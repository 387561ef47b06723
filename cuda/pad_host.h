// Host-side half of the ops, shared by the CPU (pad_cpu.cpp) and CUDA (pad_cuda.cu) modules:
// argument checks, output allocation and the fill value's bit pattern. Written against
// libtorch's stable ABI only, so one build loads in every torch >= 2.10.
#pragma once

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "pad_common.h"

namespace hetload {

using torch::headeronly::ScalarType;
using torch::stable::Tensor;

// Shape of one call, in bytes per row and words of the chosen width.
struct Geometry {
  int64_t batch = 0;      // B
  int64_t rows = 0;       // packed rows (sum N_i)
  int64_t max_len = 0;    // padded rows per item
  int64_t row_bytes = 0;  // bytes of one row (all trailing dims)
  int word = 1;           // bytes per word
  int64_t row_words() const { return row_bytes / word; }
};

inline int64_t trailing_bytes(const Tensor& t, int64_t first_trailing_dim) {
  int64_t bytes = static_cast<int64_t>(t.element_size());
  for (int64_t d = first_trailing_dim; d < t.dim(); ++d) bytes *= t.size(d);
  return bytes;
}

inline void check_index_tensor(const Tensor& idx, const Tensor& data, const char* op,
                               const char* what) {
  STD_TORCH_CHECK(idx.scalar_type() == ScalarType::Long, op, ": ", what, " must be int64, got ",
                  torch::headeronly::toString(idx.scalar_type()));
  STD_TORCH_CHECK(idx.dim() == 1 && idx.numel() >= 1, op, ": ", what,
                  " must be 1-D with B+1 >= 1 entries, got ", idx.dim(), " dims and ",
                  idx.numel(), " entries");
  STD_TORCH_CHECK(idx.is_contiguous(), op, ": ", what, " must be contiguous");
  STD_TORCH_CHECK(idx.device() == data.device(), op, ": ", what,
                  " must be on the same device as the data");
}

// Floating dtypes narrower than double, where a finite fill can overflow.
inline bool is_narrow_float(ScalarType t) {
  switch (t) {
    case ScalarType::Half:
    case ScalarType::BFloat16:
    case ScalarType::Float:
    case ScalarType::Float8_e5m2:
    case ScalarType::Float8_e4m3fn:
    case ScalarType::Float8_e5m2fnuz:
    case ScalarType::Float8_e4m3fnuz:
    case ScalarType::ComplexHalf:
    case ScalarType::ComplexFloat:
      return true;
    default:
      return false;
  }
}

inline bool is_complex(ScalarType t) {
  return t == ScalarType::ComplexHalf || t == ScalarType::ComplexFloat ||
         t == ScalarType::ComplexDouble;
}

// The fill value's bytes in `dtype`, repeated over 16 bytes (any word is a prefix of it).
// torch itself converts the double, so the compiled ops and the pure-torch fallback agree on
// every dtype's rounding and bool rules; integer overflow raises inside that conversion, float
// overflow (which the C shim turns into inf silently) is refused here as Tensor.fill_ does.
inline std::array<unsigned char, 16> fill_pattern(ScalarType dtype, double fill) {
  std::vector<int64_t> one{1};
  const Tensor scalar = torch::stable::empty(
      one, dtype, std::nullopt, torch::stable::Device(torch::headeronly::DeviceType::CPU));
  torch::stable::fill_(scalar, fill);
  if (is_narrow_float(dtype) && std::isfinite(fill)) {
    const Tensor wide =
        torch::stable::to(scalar, is_complex(dtype) ? ScalarType::ComplexDouble : ScalarType::Double);
    const double back = *static_cast<const double*>(wide.const_data_ptr());  // the real part
    STD_TORCH_CHECK(std::isfinite(back), "value cannot be converted to type ",
                    torch::headeronly::toString(dtype), " without overflow");
  }
  const size_t elem = scalar.element_size();
  std::array<unsigned char, 16> pattern{};
  for (size_t at = 0; at + elem <= pattern.size(); at += elem) {
    std::memcpy(pattern.data() + at, scalar.const_data_ptr(), elem);
  }
  return pattern;
}

template <class W>
W word_from(const std::array<unsigned char, 16>& pattern) {
  W word;
  std::memcpy(&word, pattern.data(), sizeof(W));
  return word;
}

// Calls f(T{}) with T the unsigned integer of `bytes` (1, 2, 4 or 8).
template <class F>
void with_uint(int bytes, F&& f) {
  switch (bytes) {
    case 1: f(uint8_t{}); break;
    case 2: f(uint16_t{}); break;
    case 4: f(uint32_t{}); break;
    default: f(uint64_t{}); break;
  }
}

// Calls f(W{}) with W the word type of `bytes` (1, 2, 4, 8 or 16).
template <class F>
void with_word(int bytes, F&& f) {
  if (bytes == 16) {
    f(Word16{});
  } else {
    with_uint(bytes, f);
  }
}

inline bool is_index_dtype(ScalarType t) {
  switch (t) {
    case ScalarType::Byte:
    case ScalarType::Char:
    case ScalarType::Short:
    case ScalarType::Int:
    case ScalarType::Long:
    case ScalarType::UInt16:
    case ScalarType::UInt32:
    case ScalarType::UInt64:
      return true;
    default:
      return false;
  }
}

inline std::vector<int64_t> padded_shape(const Tensor& values, int64_t batch, int64_t max_len) {
  std::vector<int64_t> shape{batch, max_len};
  for (int64_t d = 1; d < values.dim(); ++d) shape.push_back(values.size(d));
  return shape;
}

inline std::vector<int64_t> packed_shape(const Tensor& padded, int64_t total) {
  std::vector<int64_t> shape{total};
  for (int64_t d = 2; d < padded.dim(); ++d) shape.push_back(padded.size(d));
  return shape;
}

// Checks shared by both devices; returns the contiguous source and the call's geometry
// (the word width is chosen once the output exists, see choose_word).
inline Geometry check_pad(const Tensor& values, const Tensor& offsets, int64_t max_len,
                          const char* op) {
  STD_TORCH_CHECK(values.dim() >= 1, op, ": values must be [sum N_i, ...], got a scalar");
  check_index_tensor(offsets, values, op, "offsets");
  STD_TORCH_CHECK(max_len >= 0, op, ": max_len must be >= 0, got ", max_len);
  Geometry g;
  g.batch = offsets.numel() - 1;
  g.rows = values.size(0);
  g.max_len = max_len;
  g.row_bytes = trailing_bytes(values, 1);
  return g;
}

// check_pad plus the index-field checks of packed_to_padded_local (integer values, base [B+1]).
inline Geometry check_pad_local(const Tensor& values, const Tensor& offsets, const Tensor& base,
                                int64_t max_len, const char* op) {
  Geometry g = check_pad(values, offsets, max_len, op);
  STD_TORCH_CHECK(is_index_dtype(values.scalar_type()), op,
                  ": an index field must be integer, got ",
                  torch::headeronly::toString(values.scalar_type()));
  check_index_tensor(base, values, op, "base");
  STD_TORCH_CHECK(base.numel() == offsets.numel(), op, ": base has ", base.numel(),
                  " entries, offsets ", offsets.numel());
  return g;
}

inline Geometry check_pack(const Tensor& padded, const Tensor& offsets, int64_t total,
                           const char* op) {
  STD_TORCH_CHECK(padded.dim() >= 2, op, ": padded must be [B, L, ...], got ", padded.dim(),
                  " dims");
  check_index_tensor(offsets, padded, op, "offsets");
  STD_TORCH_CHECK(offsets.numel() - 1 == padded.size(0), op, ": offsets describe ",
                  offsets.numel() - 1, " items, padded has ", padded.size(0));
  STD_TORCH_CHECK(total >= 0, op, ": total must be >= 0, got ", total);
  Geometry g;
  g.batch = padded.size(0);
  g.rows = total;
  g.max_len = padded.size(1);
  g.row_bytes = trailing_bytes(padded, 2);
  return g;
}

inline void choose_word(Geometry& g, const Tensor& src, const Tensor& dst) {
  g.word = word_bytes(g.row_bytes, reinterpret_cast<uint64_t>(src.const_data_ptr()),
                      reinterpret_cast<uint64_t>(dst.const_data_ptr()));
}

}  // namespace hetload
