// The CPU kernels of torch.ops.hetload.*: per item, one contiguous copy and one contiguous fill
// (pad_common.h), items spread over torch's intra-op thread pool.
#include <algorithm>

#include "pad_host.h"

namespace hetload {
namespace {

constexpr const char* kPad = "hetload::packed_to_padded";
constexpr const char* kPadLocal = "hetload::packed_to_padded_local";
constexpr const char* kPack = "hetload::padded_to_packed";

// Offsets on the CPU cost nothing to read, so bad ones are refused here with a reason instead
// of being clamped (the GPU kernels can only clamp, see item_rows).
void check_offsets(const int64_t* o, int64_t batch, int64_t rows, int64_t max_len,
                   const char* op) {
  STD_TORCH_CHECK(o[0] == 0, op, ": offsets[0] must be 0, got ", o[0]);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t length = o[b + 1] - o[b];
    STD_TORCH_CHECK(length >= 0, op, ": offsets must be non-decreasing, but offsets[", b + 1,
                    "]=", o[b + 1], " < offsets[", b, "]=", o[b]);
    STD_TORCH_CHECK(length <= max_len, op, ": item ", b, " has ", length,
                    " rows, more than max_len=", max_len);
  }
  STD_TORCH_CHECK(o[batch] == rows, op, ": offsets[-1]=", o[batch], " does not match the ",
                  rows, " packed rows");
}

// Items per parallel task: about 256 KiB of output each, so small batches stay on one thread.
int64_t grain(const Geometry& g) {
  const int64_t item_bytes = std::max<int64_t>(1, g.max_len * g.row_bytes);
  return std::max<int64_t>(1, (int64_t{1} << 18) / item_bytes);
}

Tensor packed_to_padded(Tensor values, Tensor offsets, int64_t max_len, double fill) {
  Geometry g = check_pad(values, offsets, max_len, kPad);
  const auto pattern = fill_pattern(values.scalar_type(), fill, kPad);
  offsets = contiguous_index(offsets);
  const int64_t* o = offsets.const_data_ptr<int64_t>();
  check_offsets(o, g.batch, g.rows, g.max_len, kPad);
  const Tensor src = torch::stable::contiguous(values);
  Tensor out = torch::stable::new_empty(src, padded_shape(src, g.batch, g.max_len));
  if (out.numel() == 0) return out;
  choose_word(g, src, out);
  with_word(g.word, [&](auto tag) {
    using W = decltype(tag);
    const W* in = static_cast<const W*>(src.const_data_ptr());
    W* dst = static_cast<W*>(out.mutable_data_ptr());
    const W fill_word = word_from<W>(pattern);
    torch::stable::parallel_for(0, g.batch, grain(g), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        pad_words(dst, in, pad_span(o, b, g.rows, g.max_len, g.row_words()), 0, 1, fill_word);
      }
    });
  });
  return out;
}

Tensor packed_to_padded_local(Tensor values, Tensor offsets, Tensor base, int64_t max_len,
                              double fill) {
  Geometry g = check_pad_local(values, offsets, base, max_len, kPadLocal);
  const auto pattern = fill_pattern(values.scalar_type(), fill, kPadLocal);
  offsets = contiguous_index(offsets);
  base = contiguous_index(base);
  const int64_t* o = offsets.const_data_ptr<int64_t>();
  const int64_t* bases = base.const_data_ptr<int64_t>();
  check_offsets(o, g.batch, g.rows, g.max_len, kPadLocal);
  const Tensor src = torch::stable::contiguous(values);
  Tensor out = torch::stable::new_empty(src, padded_shape(src, g.batch, g.max_len));
  if (out.numel() == 0) return out;
  g.word = static_cast<int>(src.element_size());
  with_uint(g.word, [&](auto tag) {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(src.const_data_ptr());
    T* dst = static_cast<T*>(out.mutable_data_ptr());
    const T fill_word = word_from<T>(pattern);
    torch::stable::parallel_for(0, g.batch, grain(g), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        local_words(dst, in, pad_span(o, b, g.rows, g.max_len, g.row_words()), 0, 1,
                    static_cast<T>(bases[b]), fill_word);
      }
    });
  });
  return out;
}

Tensor padded_to_packed(Tensor padded, Tensor offsets, int64_t total) {
  Geometry g = check_pack(padded, offsets, total, kPack);
  offsets = contiguous_index(offsets);
  const int64_t* o = offsets.const_data_ptr<int64_t>();
  check_offsets(o, g.batch, g.rows, g.max_len, kPack);
  const Tensor src = torch::stable::contiguous(padded);
  Tensor out = torch::stable::new_empty(src, packed_shape(src, g.rows));
  if (out.numel() == 0) return out;
  choose_word(g, src, out);
  with_word(g.word, [&](auto tag) {
    using W = decltype(tag);
    const W* in = static_cast<const W*>(src.const_data_ptr());
    W* dst = static_cast<W*>(out.mutable_data_ptr());
    torch::stable::parallel_for(0, g.batch, grain(g), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        pad_words(dst, in, pack_span(o, b, g.rows, g.max_len, g.row_words()), 0, 1, W{});
      }
    });
  });
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(hetload, CPU, m) {
  m.impl("packed_to_padded", TORCH_BOX(&packed_to_padded));
  m.impl("packed_to_padded_local", TORCH_BOX(&packed_to_padded_local));
  m.impl("padded_to_packed", TORCH_BOX(&padded_to_packed));
}

}  // namespace hetload
