// What every CUDA file of hetload launches with: the current stream of a tensor's device, the
// block size and grid bound of the 1-D grid-stride kernels, and the sample that holds a packed
// row (a binary search of the offsets, on the device). Included by .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/macros.h>

#include <cstdint>

#include "pad_host.h"

namespace hetload {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

// blocks of kThreads for n work items, at least 1 and at most kMaxBlocks (kernels stride)
inline unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b < kMaxBlocks ? b : kMaxBlocks));
}

// The current stream of the tensor's device (the caller's device guard makes it current).
inline cudaStream_t current_stream(const Tensor& t) {
  void* stream = nullptr;
  STD_TORCH_CHECK(aoti_torch_get_current_cuda_stream(t.get_device_index(), &stream) ==
                      AOTI_TORCH_SUCCESS,
                  "hetload: could not get the current CUDA stream");
  return static_cast<cudaStream_t>(stream);
}

// the sample that holds packed row `row`: the last b with offsets[b] <= row (empty samples
// share their offset with the next one and are skipped)
__device__ __forceinline__ int64_t sample_of(const int64_t* __restrict__ offsets, int64_t batch,
                                             int64_t row) {
  int64_t lo = 0, hi = batch;  // offsets[lo] <= row < offsets[hi]
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (offsets[mid] <= row) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

}  // namespace
}  // namespace hetload
