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

// A dtype as torch's Python API names it (torch.uint8 -> "uint8"), so the compiled kernels and
// the pure-torch fallback (hetload/ops/contract.py) word their errors identically.
inline const char* dtype_name(ScalarType t) {
  switch (t) {
    case ScalarType::Byte: return "uint8";
    case ScalarType::Char: return "int8";
    case ScalarType::Short: return "int16";
    case ScalarType::Int: return "int32";
    case ScalarType::Long: return "int64";
    case ScalarType::UInt16: return "uint16";
    case ScalarType::UInt32: return "uint32";
    case ScalarType::UInt64: return "uint64";
    case ScalarType::Bool: return "bool";
    case ScalarType::Half: return "float16";
    case ScalarType::BFloat16: return "bfloat16";
    case ScalarType::Float: return "float32";
    case ScalarType::Double: return "float64";
    case ScalarType::ComplexHalf: return "complex32";
    case ScalarType::ComplexFloat: return "complex64";
    case ScalarType::ComplexDouble: return "complex128";
    case ScalarType::Float8_e5m2: return "float8_e5m2";
    case ScalarType::Float8_e4m3fn: return "float8_e4m3fn";
    case ScalarType::Float8_e5m2fnuz: return "float8_e5m2fnuz";
    case ScalarType::Float8_e4m3fnuz: return "float8_e4m3fnuz";
    default: return "an unsupported dtype";
  }
}

inline int64_t trailing_bytes(const Tensor& t, int64_t first_trailing_dim) {
  int64_t bytes = static_cast<int64_t>(t.element_size());
  for (int64_t d = first_trailing_dim; d < t.dim(); ++d) bytes *= t.size(d);
  return bytes;
}

// Offsets-like tensors: int64, 1-D, B+1 >= 1 entries, on the data's device. Any strides: the
// kernels read a contiguous copy (see contiguous_index), as the pure-torch path accepts them.
inline void check_index_tensor(const Tensor& idx, const Tensor& data, const char* op,
                               const char* what) {
  STD_TORCH_CHECK(idx.scalar_type() == ScalarType::Long, op, ": ", what, " must be int64, got ",
                  dtype_name(idx.scalar_type()));
  STD_TORCH_CHECK(idx.dim() == 1 && idx.numel() >= 1, op, ": ", what,
                  " must be 1-D with B+1 >= 1 entries, got ", idx.dim(), " dims and ",
                  idx.numel(), " entries");
  STD_TORCH_CHECK(idx.device() == data.device(), op, ": ", what,
                  " must be on the same device as the data");
}

// The kernels index offsets as a plain array: a strided view (offsets[::2]) is copied first.
inline Tensor contiguous_index(const Tensor& idx) {
  return idx.is_contiguous() ? idx : torch::stable::contiguous(idx);
}

// torch.finfo(dtype).eps of the float (or complex) dtypes narrower than double
inline double float_eps(ScalarType t) {
  switch (t) {
    case ScalarType::Half:
    case ScalarType::ComplexHalf: return std::ldexp(1.0, -10);
    case ScalarType::BFloat16: return std::ldexp(1.0, -7);
    case ScalarType::Float:
    case ScalarType::ComplexFloat: return std::ldexp(1.0, -23);
    case ScalarType::Float8_e5m2: return std::ldexp(1.0, -2);
    case ScalarType::Float8_e4m3fn:
    case ScalarType::Float8_e4m3fnuz:
    case ScalarType::Float8_e5m2fnuz: return std::ldexp(1.0, -3);
    default: return std::ldexp(1.0, -52);
  }
}

inline bool is_complex(ScalarType t) {
  return t == ScalarType::ComplexHalf || t == ScalarType::ComplexFloat ||
         t == ScalarType::ComplexDouble;
}

inline bool is_integer_dtype(ScalarType t) {
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

// [low, high) of an integer dtype as doubles; both are 0 or powers of two, so exact.
inline void integer_range(ScalarType t, double& low, double& high) {
  int bits = 64;
  bool is_signed = true;
  switch (t) {
    case ScalarType::Byte: bits = 8; is_signed = false; break;
    case ScalarType::Char: bits = 8; break;
    case ScalarType::Short: bits = 16; break;
    case ScalarType::Int: bits = 32; break;
    case ScalarType::UInt16: bits = 16; is_signed = false; break;
    case ScalarType::UInt32: bits = 32; is_signed = false; break;
    case ScalarType::UInt64: is_signed = false; break;
    default: break;
  }
  low = is_signed ? -std::ldexp(1.0, bits - 1) : 0.0;
  high = std::ldexp(1.0, is_signed ? bits - 1 : bits);
}

// The fill value's bytes in `dtype`, repeated over 16 bytes (any word is a prefix of it).
// A fill must be stored exactly: an integer or bool dtype takes only whole numbers in its range
// (0 / 1 for bool), never a truncated or wrapped one; a float dtype takes any value that does
// not overflow (it rounds, as any float store does; NaN and inf are values). The bytes come
// from torch's own double -> dtype conversion. The same rules and words are in the pure-torch
// path (hetload/ops/contract.py), so both paths refuse the same fills with the same reason.
inline std::array<unsigned char, 16> fill_pattern(ScalarType dtype, double fill, const char* op) {
  if (is_integer_dtype(dtype) || dtype == ScalarType::Bool) {
    double low = 0.0, high = 2.0;
    if (dtype != ScalarType::Bool) integer_range(dtype, low, high);
    STD_TORCH_CHECK(std::isfinite(fill) && std::trunc(fill) == fill && fill >= low && fill < high,
                    op, ": fill ", fill, " cannot be stored exactly in ", dtype_name(dtype));
  }
  std::vector<int64_t> one{1};
  const Tensor wide = torch::stable::empty(
      one, ScalarType::Double, std::nullopt,
      torch::stable::Device(torch::headeronly::DeviceType::CPU));
  *static_cast<double*>(wide.mutable_data_ptr()) = fill;
  const Tensor scalar = torch::stable::to(wide, dtype);
  if (!is_integer_dtype(dtype) && dtype != ScalarType::Bool && std::isfinite(fill)) {
    const Tensor back =
        torch::stable::to(scalar, is_complex(dtype) ? ScalarType::ComplexDouble : ScalarType::Double);
    const double value = *static_cast<const double*>(back.const_data_ptr());  // the real part
    // beyond the dtype's range: an infinity, or a saturated maximum (float8_e4m3fn has no inf,
    // 500 becomes 448); rounding moves a value by at most half an ulp, eps / 2 of it
    const bool saturated =
        std::fabs(fill) > 1.0 && std::fabs(value - fill) > std::fabs(fill) * float_eps(dtype) / 2;
    STD_TORCH_CHECK(std::isfinite(value) && !saturated, op, ": fill ", fill, " overflows ",
                    dtype_name(dtype));
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

inline bool is_index_dtype(ScalarType t) { return is_integer_dtype(t); }

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
                  ": an index field must be integer, got ", dtype_name(values.scalar_type()));
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
