// The CUDA kernel of torch.ops.hetload.farthest_point_sample: one block per sample (grid-stride
// over samples), its threads sharing the sample's points; per step each thread updates its
// points' distances and keeps its best (largest distance, then smallest row), and a
// shared-memory reduction picks the block's. Same arithmetic and tie rule as the CPU kernel
// and hetload/ops/sampling_impl.py (float64 distances, coordinate order, first largest).
#include <cuda_runtime.h>

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/macros.h>

#include <vector>

#include "launch_cuda.h"
#include "pad_host.h"

namespace hetload {
namespace {

constexpr const char* kFps = "hetload::farthest_point_sample";

template <class T>
__global__ void fps_kernel(const T* __restrict__ pts, const int64_t* __restrict__ offsets,
                           const int64_t* __restrict__ out_offsets,
                           const int64_t* __restrict__ start, int64_t batch, int64_t dims,
                           double* __restrict__ dist, int64_t* __restrict__ out) {
  __shared__ double best_d[kThreads];
  __shared__ int64_t best_i[kThreads];
  __shared__ int64_t current;
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    const int64_t first = offsets[b];
    const int64_t n = offsets[b + 1] - first;
    const int64_t k = out_offsets[b + 1] - out_offsets[b];
    if (k <= 0 || n <= 0) continue;
    const T* p0 = pts + first * dims;
    double* d0 = dist + first;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) d0[i] = INFINITY;
    if (threadIdx.x == 0) current = start[b];
    __syncthreads();
    for (int64_t step = 0; step < k; ++step) {
      const int64_t c_row = current;
      if (threadIdx.x == 0) out[out_offsets[b] + step] = first + c_row;
      const T* c = p0 + c_row * dims;
      double my_d = -1.0;
      int64_t my_i = 0;
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const T* p = p0 + i * dims;
        double d = 0.0;
        for (int64_t a = 0; a < dims; ++a) {
          const double diff = __dsub_rn(static_cast<double>(p[a]), static_cast<double>(c[a]));
          d = __dadd_rn(d, __dmul_rn(diff, diff));  // no FMA: the CPU's rounding
        }
        const double kept = d < d0[i] ? d : d0[i];
        d0[i] = kept;
        if (kept > my_d) {  // rows rise along a thread's loop: the first largest wins ties
          my_d = kept;
          my_i = i;
        }
      }
      best_d[threadIdx.x] = my_d;
      best_i[threadIdx.x] = my_i;
      __syncthreads();
      for (int width = blockDim.x / 2; width > 0; width /= 2) {
        if (threadIdx.x < width) {
          const double od = best_d[threadIdx.x + width];
          const int64_t oi = best_i[threadIdx.x + width];
          const double md = best_d[threadIdx.x];
          if (od > md || (od == md && oi < best_i[threadIdx.x])) {
            best_d[threadIdx.x] = od;
            best_i[threadIdx.x] = oi;
          }
        }
        __syncthreads();
      }
      if (threadIdx.x == 0) current = best_i[0];
      __syncthreads();
    }
  }
}

// The offsets are not read on the host (that would synchronize): the Python wrapper has
// checked them; the kernel trusts k <= n and start < n as the wrapper guarantees.
Tensor farthest_point_sample(Tensor points, Tensor offsets, Tensor out_offsets, Tensor start,
                             int64_t total) {
  STD_TORCH_CHECK(points.dim() == 2, kFps, ": points must be [sum N_i, D]");
  const ScalarType dtype = points.scalar_type();
  STD_TORCH_CHECK(dtype == ScalarType::Float || dtype == ScalarType::Double, kFps,
                  ": points must be float32 or float64, got ", torch::headeronly::toString(dtype));
  check_index_tensor(offsets, points, kFps, "offsets");
  check_index_tensor(out_offsets, points, kFps, "out_offsets");
  STD_TORCH_CHECK(start.scalar_type() == ScalarType::Long && start.dim() == 1 &&
                      start.is_contiguous() && start.device() == points.device(),
                  kFps, ": start must be a contiguous int64 [B] on the points' device");
  const int64_t batch = offsets.numel() - 1;
  STD_TORCH_CHECK(out_offsets.numel() == batch + 1 && start.numel() == batch, kFps,
                  ": offsets, out_offsets and start disagree on B");
  torch::stable::accelerator::DeviceGuard guard(points.get_device_index());
  const Tensor src = torch::stable::contiguous(points);
  std::vector<int64_t> shape{total};
  Tensor out = torch::stable::new_empty(src, shape, ScalarType::Long);
  if (total == 0 || batch == 0) return out;
  std::vector<int64_t> dist_shape{src.size(0)};
  Tensor dist = torch::stable::new_empty(src, dist_shape, ScalarType::Double);
  const cudaStream_t stream = current_stream(src);
  const unsigned blocks = static_cast<unsigned>(batch < kMaxBlocks ? batch : kMaxBlocks);
  if (dtype == ScalarType::Float) {
    fps_kernel<float><<<blocks, kThreads, 0, stream>>>(
        static_cast<const float*>(src.const_data_ptr()), offsets.const_data_ptr<int64_t>(),
        out_offsets.const_data_ptr<int64_t>(), start.const_data_ptr<int64_t>(), batch,
        src.size(1), static_cast<double*>(dist.mutable_data_ptr()),
        static_cast<int64_t*>(out.mutable_data_ptr()));
  } else {
    fps_kernel<double><<<blocks, kThreads, 0, stream>>>(
        static_cast<const double*>(src.const_data_ptr()), offsets.const_data_ptr<int64_t>(),
        out_offsets.const_data_ptr<int64_t>(), start.const_data_ptr<int64_t>(), batch,
        src.size(1), static_cast<double*>(dist.mutable_data_ptr()),
        static_cast<int64_t*>(out.mutable_data_ptr()));
  }
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(hetload, CUDA, m) {
  m.impl("farthest_point_sample", TORCH_BOX(&farthest_point_sample));
}

}  // namespace hetload
