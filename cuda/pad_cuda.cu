// The CUDA kernels of torch.ops.hetload.*. Grid: blockIdx.y walks the items, blockIdx.x and
// threadIdx.x walk one item's words; both dimensions are grid-stride loops, so any batch size
// and any item size run with a bounded grid. Each block reads its item's two offsets and owns
// that item's output words outright: packed -> padded writes every padded word exactly once
// (value or fill, no memset pass), padded -> packed reads only the real rows.
#include <cuda_runtime.h>

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/macros.h>

#include <algorithm>

#include "launch_cuda.h"
#include "pad_host.h"

namespace hetload {
namespace {

constexpr const char* kPad = "hetload::packed_to_padded";
constexpr const char* kPadLocal = "hetload::packed_to_padded_local";
constexpr const char* kPack = "hetload::padded_to_packed";

constexpr int64_t kMaxGridY = 65535;  // the hardware's limit on gridDim.y
// Blocks per item along x: enough to fill the GPU for one huge item, while keeping launches
// bounded (threads loop over the rest).
constexpr int64_t kMaxGridX = 1024;

template <class W>
__global__ void pad_kernel(W* __restrict__ out, const W* __restrict__ in,
                           const int64_t* __restrict__ offsets, int64_t batch, int64_t rows,
                           int64_t max_len, int64_t row_words, W fill) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    pad_words(out, in, pad_span(offsets, b, rows, max_len, row_words), first, step, fill);
  }
}

template <class T>
__global__ void pad_local_kernel(T* __restrict__ out, const T* __restrict__ in,
                                 const int64_t* __restrict__ offsets,
                                 const int64_t* __restrict__ base, int64_t batch, int64_t rows,
                                 int64_t max_len, int64_t row_words, T fill) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    local_words(out, in, pad_span(offsets, b, rows, max_len, row_words), first, step,
                static_cast<T>(base[b]), fill);
  }
}

template <class W>
__global__ void pack_kernel(W* __restrict__ out, const W* __restrict__ in,
                            const int64_t* __restrict__ offsets, int64_t batch, int64_t rows,
                            int64_t max_len, int64_t row_words) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    pad_words(out, in, pack_span(offsets, b, rows, max_len, row_words), first, step, W{});
  }
}

// Threads per block: a warp multiple covering one item's words, at most 256 (tiny rows get
// small blocks rather than mostly idle ones).
struct Launch {
  dim3 grid;
  dim3 block;
};

Launch launch_for(int64_t batch, int64_t item_words) {
  const int64_t warps = std::min<int64_t>(8, std::max<int64_t>(1, (item_words + 31) / 32));
  const int64_t threads = warps * 32;
  const int64_t blocks_x =
      std::min<int64_t>(kMaxGridX, std::max<int64_t>(1, (item_words + threads - 1) / threads));
  return Launch{dim3(static_cast<unsigned>(blocks_x),
                     static_cast<unsigned>(std::min<int64_t>(batch, kMaxGridY))),
                dim3(static_cast<unsigned>(threads))};
}

Tensor packed_to_padded(Tensor values, Tensor offsets, int64_t max_len, double fill) {
  Geometry g = check_pad(values, offsets, max_len, kPad);
  const auto pattern = fill_pattern(values.scalar_type(), fill, kPad);
  offsets = contiguous_index(offsets);
  torch::stable::accelerator::DeviceGuard guard(values.get_device_index());
  const Tensor src = torch::stable::contiguous(values);
  Tensor out = torch::stable::new_empty(src, padded_shape(src, g.batch, g.max_len));
  if (out.numel() == 0) return out;
  choose_word(g, src, out);
  const cudaStream_t stream = current_stream(src);
  const Launch l = launch_for(g.batch, g.max_len * g.row_words());
  with_word(g.word, [&](auto tag) {
    using W = decltype(tag);
    pad_kernel<W><<<l.grid, l.block, 0, stream>>>(
        static_cast<W*>(out.mutable_data_ptr()), static_cast<const W*>(src.const_data_ptr()),
        offsets.const_data_ptr<int64_t>(), g.batch, g.rows, g.max_len, g.row_words(),
        word_from<W>(pattern));
  });
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

Tensor packed_to_padded_local(Tensor values, Tensor offsets, Tensor base, int64_t max_len,
                              double fill) {
  Geometry g = check_pad_local(values, offsets, base, max_len, kPadLocal);
  const auto pattern = fill_pattern(values.scalar_type(), fill, kPadLocal);
  offsets = contiguous_index(offsets);
  base = contiguous_index(base);
  torch::stable::accelerator::DeviceGuard guard(values.get_device_index());
  const Tensor src = torch::stable::contiguous(values);
  Tensor out = torch::stable::new_empty(src, padded_shape(src, g.batch, g.max_len));
  if (out.numel() == 0) return out;
  g.word = static_cast<int>(src.element_size());
  const cudaStream_t stream = current_stream(src);
  const Launch l = launch_for(g.batch, g.max_len * g.row_words());
  with_uint(g.word, [&](auto tag) {
    using T = decltype(tag);
    pad_local_kernel<T><<<l.grid, l.block, 0, stream>>>(
        static_cast<T*>(out.mutable_data_ptr()), static_cast<const T*>(src.const_data_ptr()),
        offsets.const_data_ptr<int64_t>(), base.const_data_ptr<int64_t>(), g.batch, g.rows,
        g.max_len, g.row_words(), word_from<T>(pattern));
  });
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

Tensor padded_to_packed(Tensor padded, Tensor offsets, int64_t total) {
  Geometry g = check_pack(padded, offsets, total, kPack);
  offsets = contiguous_index(offsets);
  torch::stable::accelerator::DeviceGuard guard(padded.get_device_index());
  const Tensor src = torch::stable::contiguous(padded);
  Tensor out = torch::stable::new_empty(src, packed_shape(src, g.rows));
  if (out.numel() == 0) return out;
  choose_word(g, src, out);
  const cudaStream_t stream = current_stream(src);
  const Launch l = launch_for(g.batch, g.max_len * g.row_words());
  with_word(g.word, [&](auto tag) {
    using W = decltype(tag);
    pack_kernel<W><<<l.grid, l.block, 0, stream>>>(
        static_cast<W*>(out.mutable_data_ptr()), static_cast<const W*>(src.const_data_ptr()),
        offsets.const_data_ptr<int64_t>(), g.batch, g.rows, g.max_len, g.row_words());
  });
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(hetload, CUDA, m) {
  m.impl("packed_to_padded", TORCH_BOX(&packed_to_padded));
  m.impl("packed_to_padded_local", TORCH_BOX(&packed_to_padded_local));
  m.impl("padded_to_packed", TORCH_BOX(&padded_to_packed));
}

}  // namespace hetload
