// The CUDA kernels of the per-sample point transforms: hetload::per_sample_matmul (rotation),
// hetload::per_sample_scale (scaling, flips) and hetload::jitter_points (counter-based Gaussian noise), one thread per row (grid-stride),
// its sample found by a binary search of the offsets. The math is cuda/augment_common.h, shared
// with the CPU kernels; the float64 log / cos / sqrt are CUDA's (within a few ulp of the CPU's).
#include <cuda_runtime.h>

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/macros.h>

#include <vector>

#include "augment_common.h"
#include "launch_cuda.h"
#include "batched_args.h"
#include "pad_host.h"

namespace hetload {
namespace {

constexpr const char* kMatmul = "hetload::per_sample_matmul";
constexpr const char* kJitter = "hetload::jitter_points";
constexpr const char* kScale = "hetload::per_sample_scale";

template <class T>
__global__ void matmul_kernel(const T* __restrict__ pts, const int64_t* __restrict__ offsets,
                              int64_t batch, int64_t rows, int64_t dims,
                              const double* __restrict__ mats, T* __restrict__ out) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows;
       r += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = sample_of(offsets, batch, r);
    augment::matvec<T>(mats + b * dims * dims, pts + r * dims, out + r * dims, dims);
  }
}

template <class T>
__global__ void scale_kernel(const T* __restrict__ pts, const int64_t* __restrict__ offsets,
                             int64_t batch, int64_t rows, int64_t dims,
                             const double* __restrict__ factors, T* __restrict__ out) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows;
       r += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = sample_of(offsets, batch, r);
    augment::scale_row<T>(factors + b * dims, pts + r * dims, out + r * dims, dims);
  }
}

template <class T>
__global__ void jitter_kernel(const T* __restrict__ pts, const int64_t* __restrict__ offsets,
                              int64_t batch, int64_t rows, int64_t dims,
                              const int64_t* __restrict__ seeds, int64_t stream, double sigma,
                              double clip, T* __restrict__ out) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows;
       r += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = sample_of(offsets, batch, r);
    augment::jitter_row<T>(pts + r * dims, out + r * dims, dims, r - offsets[b], seeds[b], stream,
                           sigma, clip);
  }
}

// The offsets are not read on the host (that would synchronize): the Python wrappers pass a
// Ragged's validated offsets.
Tensor per_sample_matmul(Tensor points, Tensor offsets, Tensor matrices) {
  const int64_t batch = check_points_offsets(points, offsets, kMatmul);
  const int64_t dims = points.size(1);
  check_matrices(matrices, batch, points, kMatmul);
  torch::stable::accelerator::DeviceGuard guard(points.get_device_index());
  const Tensor src = torch::stable::contiguous(points);
  const Tensor off = contiguous_index(offsets);
  const Tensor mats = torch::stable::contiguous(matrices);
  const int64_t rows = src.size(0);
  std::vector<int64_t> shape{rows, dims};
  Tensor out = torch::stable::new_empty(src, shape);
  if (rows == 0) return out;
  const cudaStream_t cs = current_stream(src);
  if (src.scalar_type() == ScalarType::Float) {
    matmul_kernel<float><<<blocks_for(rows), kThreads, 0, cs>>>(
        static_cast<const float*>(src.const_data_ptr()), off.const_data_ptr<int64_t>(), batch,
        rows, dims, mats.const_data_ptr<double>(), static_cast<float*>(out.mutable_data_ptr()));
  } else {
    matmul_kernel<double><<<blocks_for(rows), kThreads, 0, cs>>>(
        static_cast<const double*>(src.const_data_ptr()), off.const_data_ptr<int64_t>(), batch,
        rows, dims, mats.const_data_ptr<double>(), static_cast<double*>(out.mutable_data_ptr()));
  }
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

Tensor per_sample_scale(Tensor points, Tensor offsets, Tensor factors) {
  const int64_t batch = check_points_offsets(points, offsets, kScale);
  const int64_t dims = points.size(1);
  check_factors(factors, batch, points, kScale);
  torch::stable::accelerator::DeviceGuard guard(points.get_device_index());
  const Tensor src = torch::stable::contiguous(points);
  const Tensor off = contiguous_index(offsets);
  const Tensor fac = torch::stable::contiguous(factors);
  const int64_t rows = src.size(0);
  std::vector<int64_t> shape{rows, dims};
  Tensor out = torch::stable::new_empty(src, shape);
  if (rows == 0) return out;
  const cudaStream_t cs = current_stream(src);
  if (src.scalar_type() == ScalarType::Float) {
    scale_kernel<float><<<blocks_for(rows), kThreads, 0, cs>>>(
        static_cast<const float*>(src.const_data_ptr()), off.const_data_ptr<int64_t>(), batch,
        rows, dims, fac.const_data_ptr<double>(), static_cast<float*>(out.mutable_data_ptr()));
  } else {
    scale_kernel<double><<<blocks_for(rows), kThreads, 0, cs>>>(
        static_cast<const double*>(src.const_data_ptr()), off.const_data_ptr<int64_t>(), batch,
        rows, dims, fac.const_data_ptr<double>(), static_cast<double*>(out.mutable_data_ptr()));
  }
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

Tensor jitter_points(Tensor points, Tensor offsets, Tensor seeds, int64_t stream, double sigma,
                     double clip) {
  const int64_t batch = check_points_offsets(points, offsets, kJitter);
  check_seeds(seeds, batch, points, "points", kJitter);
  STD_TORCH_CHECK(sigma >= 0 && clip >= 0, kJitter, ": sigma and clip must be >= 0");
  torch::stable::accelerator::DeviceGuard guard(points.get_device_index());
  const Tensor src = torch::stable::contiguous(points);
  const Tensor off = contiguous_index(offsets);
  const Tensor seed_c = contiguous_index(seeds);
  const int64_t rows = src.size(0);
  const int64_t dims = src.size(1);
  std::vector<int64_t> shape{rows, dims};
  Tensor out = torch::stable::new_empty(src, shape);
  if (rows == 0) return out;
  const cudaStream_t cs = current_stream(src);
  if (src.scalar_type() == ScalarType::Float) {
    jitter_kernel<float><<<blocks_for(rows), kThreads, 0, cs>>>(
        static_cast<const float*>(src.const_data_ptr()), off.const_data_ptr<int64_t>(), batch,
        rows, dims, seed_c.const_data_ptr<int64_t>(), stream, sigma, clip,
        static_cast<float*>(out.mutable_data_ptr()));
  } else {
    jitter_kernel<double><<<blocks_for(rows), kThreads, 0, cs>>>(
        static_cast<const double*>(src.const_data_ptr()), off.const_data_ptr<int64_t>(), batch,
        rows, dims, seed_c.const_data_ptr<int64_t>(), stream, sigma, clip,
        static_cast<double*>(out.mutable_data_ptr()));
  }
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(hetload, CUDA, m) {
  m.impl("per_sample_matmul", TORCH_BOX(&per_sample_matmul));
  m.impl("jitter_points", TORCH_BOX(&jitter_points));
  m.impl("per_sample_scale", TORCH_BOX(&per_sample_scale));
}

}  // namespace hetload
