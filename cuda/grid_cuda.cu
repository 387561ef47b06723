// The CUDA kernels of torch.ops.hetload.grid_sample (Pointcept's GridSample per sample of a
// packed point batch). One segmented radix sort orders every sample's (key, row) pairs within
// the sample (stable: equal keys keep row order, as the CPU kernel's and Pointcept's sort);
// the rest are elementwise passes and one scan:
//   1. voxel coordinates and each sample's minimum (atomicMin), a bad coordinate flagged;
//   2. FNV keys of the shifted coordinates;
//   3. cub::DeviceSegmentedRadixSort over the samples' row ranges;
//   4. a flag where a voxel starts (a new key or a new sample), an inclusive scan numbers the
//      voxels; the total is the one value read back on the host (it sizes the outputs);
//   5. per sample its first voxel number (out_offsets), per voxel its first sorted position;
//   6. per voxel its kept point and coordinates, per point its voxel's ordinal.
// The math is cuda/grid_common.h, shared with the CPU kernel: the same result bit for bit.
#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/macros.h>

#include <climits>
#include <cstdint>
#include <tuple>
#include <vector>

#include "grid_common.h"
#include "launch_cuda.h"
#include "batched_args.h"
#include "pad_host.h"

namespace hetload {
namespace {

constexpr const char* kGrid = "hetload::grid_sample";

__global__ void fill_kernel(int64_t* __restrict__ p, int64_t n, int64_t value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    p[i] = value;
}

template <class T>
__global__ void voxel_kernel(const T* __restrict__ pts, const int64_t* __restrict__ offsets,
                             int64_t batch, int64_t rows, int64_t dims, double g,
                             int64_t* __restrict__ grid, int64_t* __restrict__ low,
                             int64_t* __restrict__ bad) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = sample_of(offsets, batch, i);
    for (int64_t a = 0; a < dims; ++a) {
      int64_t v = 0;
      if (!grid::voxel(static_cast<double>(pts[i * dims + a]), g, &v)) {
        atomicMin(reinterpret_cast<long long*>(bad), static_cast<long long>(b));
      }
      grid[i * dims + a] = v;
      atomicMin(reinterpret_cast<long long*>(low + b * dims + a), static_cast<long long>(v));
    }
  }
}

__global__ void key_kernel(const int64_t* __restrict__ offsets, int64_t batch, int64_t rows,
                           int64_t dims, const int64_t* __restrict__ low,
                           int64_t* __restrict__ grid, uint64_t* __restrict__ keys,
                           int64_t* __restrict__ row_ids) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = sample_of(offsets, batch, i);
    uint64_t h = grid::kFnvBasis;
    for (int64_t a = 0; a < dims; ++a) {
      const int64_t v = grid[i * dims + a] - low[b * dims + a];
      grid[i * dims + a] = v;
      h = grid::fnv_step(h, v);
    }
    keys[i] = h;
    row_ids[i] = i;
  }
}

__global__ void start_flag_kernel(const int64_t* __restrict__ offsets, int64_t batch,
                                  int64_t rows, const uint64_t* __restrict__ keys,
                                  int64_t* __restrict__ flag) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = sample_of(offsets, batch, i);
    flag[i] = (i == offsets[b] || keys[i] != keys[i - 1]) ? 1 : 0;
  }
}

// out_offsets[b] = voxels before sample b; voxel_start[v] = sorted position where v starts
__global__ void voxel_index_kernel(const int64_t* __restrict__ offsets, int64_t batch,
                                   int64_t rows, const int64_t* __restrict__ flag,
                                   const int64_t* __restrict__ number,
                                   int64_t* __restrict__ out_offsets,
                                   int64_t* __restrict__ voxel_start) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i <= rows || i <= batch;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (i <= batch) out_offsets[i] = offsets[i] > 0 ? number[offsets[i] - 1] : 0;
    if (i < rows && flag[i]) voxel_start[number[i] - 1] = i;
  }
}

__global__ void pick_kernel(const int64_t* __restrict__ offsets, int64_t batch, int64_t rows,
                            int64_t dims, int64_t voxels, const int64_t* __restrict__ voxel_start,
                            const int64_t* __restrict__ out_offsets,
                            const int64_t* __restrict__ seeds, int64_t stream, bool train,
                            const int64_t* __restrict__ sorted_rows,
                            const int64_t* __restrict__ grid, int64_t* __restrict__ kept,
                            int64_t* __restrict__ coords) {
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < voxels;
       v += int64_t(gridDim.x) * blockDim.x) {
    const int64_t first = voxel_start[v];
    const int64_t count = (v + 1 < voxels ? voxel_start[v + 1] : rows) - first;
    int64_t pick = first;
    if (train) {
      const int64_t b = sample_of(offsets, batch, first);
      const int64_t ordinal = v - out_offsets[b];
      pick += static_cast<int64_t>(random::hash32(seeds[b], stream, ordinal)) % count;
    }
    const int64_t row = sorted_rows[pick];
    kept[v] = row;
    for (int64_t a = 0; a < dims; ++a) coords[v * dims + a] = grid[row * dims + a];
  }
}

__global__ void inverse_kernel(const int64_t* __restrict__ offsets, int64_t batch, int64_t rows,
                               const int64_t* __restrict__ number,
                               const int64_t* __restrict__ out_offsets,
                               const int64_t* __restrict__ sorted_rows,
                               int64_t* __restrict__ inverse) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = sample_of(offsets, batch, i);
    inverse[sorted_rows[i]] = number[i] - 1 - out_offsets[b];
  }
}

void check_cuda(cudaError_t err, const char* what) {
  STD_TORCH_CHECK(err == cudaSuccess, kGrid, ": ", what, " failed: ", cudaGetErrorString(err));
}

Tensor scratch_bytes(const Tensor& like, size_t bytes) {
  std::vector<int64_t> shape{static_cast<int64_t>(bytes > 0 ? bytes : 1)};
  return torch::stable::new_empty(like, shape, ScalarType::Byte);
}

Tensor longs(const Tensor& like, std::vector<int64_t> shape) {
  return torch::stable::new_empty(like, shape, ScalarType::Long);
}

int64_t* ptr(Tensor& t) { return static_cast<int64_t*>(t.mutable_data_ptr()); }

// The offsets are not validated on the device (that would synchronize): the Python wrapper
// passes a Ragged's validated offsets. The one host read is the voxel total (and the flag of a
// bad coordinate) after the scan.
std::tuple<Tensor, Tensor, Tensor, Tensor> grid_sample(Tensor points, Tensor offsets,
                                                       double grid_size, Tensor seeds,
                                                       int64_t stream, bool train) {
  const int64_t batch = check_grid_args(points, offsets, grid_size, seeds, kGrid);
  const ScalarType dtype = points.scalar_type();
  const int64_t rows = points.size(0);
  STD_TORCH_CHECK(rows < INT_MAX && batch < INT_MAX, kGrid,
                  ": the CUDA kernel takes fewer than 2**31 points and samples");
  torch::stable::accelerator::DeviceGuard guard(points.get_device_index());
  const Tensor src = torch::stable::contiguous(points);
  const Tensor off = contiguous_index(offsets);
  const Tensor seed_c = contiguous_index(seeds);
  const int64_t dims = src.size(1);
  const int64_t* o = off.const_data_ptr<int64_t>();
  const cudaStream_t cs = current_stream(src);
  Tensor inverse = longs(src, {rows});
  Tensor out_offsets = longs(src, {batch + 1});
  if (rows == 0) {
    check_cuda(cudaMemsetAsync(ptr(out_offsets), 0, sizeof(int64_t) * (batch + 1), cs),
               "zeroing out_offsets");
    return std::make_tuple(longs(src, {0}), longs(src, {0, dims}), out_offsets, inverse);
  }
  Tensor grid = longs(src, {rows, dims});
  Tensor low = longs(src, {batch * dims + 1});  // the last entry: the first bad sample
  int64_t* low_p = ptr(low);
  int64_t* bad_p = low_p + batch * dims;
  const unsigned row_blocks = blocks_for(rows);
  fill_kernel<<<blocks_for(batch * dims + 1), kThreads, 0, cs>>>(low_p, batch * dims + 1,
                                                                  LLONG_MAX);
  if (dtype == ScalarType::Float) {
    voxel_kernel<float><<<row_blocks, kThreads, 0, cs>>>(
        static_cast<const float*>(src.const_data_ptr()), o, batch, rows, dims, grid_size,
        ptr(grid), low_p, bad_p);
  } else {
    voxel_kernel<double><<<row_blocks, kThreads, 0, cs>>>(
        static_cast<const double*>(src.const_data_ptr()), o, batch, rows, dims, grid_size,
        ptr(grid), low_p, bad_p);
  }
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  Tensor keys = longs(src, {rows});
  Tensor keys_sorted = longs(src, {rows});
  Tensor row_ids = longs(src, {rows});
  Tensor sorted_rows = longs(src, {rows});
  uint64_t* keys_p = static_cast<uint64_t*>(keys.mutable_data_ptr());
  uint64_t* keys_sorted_p = static_cast<uint64_t*>(keys_sorted.mutable_data_ptr());
  key_kernel<<<row_blocks, kThreads, 0, cs>>>(o, batch, rows, dims, low_p, ptr(grid), keys_p,
                                              ptr(row_ids));
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  size_t sort_bytes = 0;
  check_cuda(cub::DeviceSegmentedRadixSort::SortPairs(
                 nullptr, sort_bytes, keys_p, keys_sorted_p, ptr(row_ids), ptr(sorted_rows),
                 static_cast<int>(rows), static_cast<int>(batch), o, o + 1, 0, 64, cs),
             "sizing the segmented sort");
  Tensor sort_tmp = scratch_bytes(src, sort_bytes);
  check_cuda(cub::DeviceSegmentedRadixSort::SortPairs(
                 sort_tmp.mutable_data_ptr(), sort_bytes, keys_p, keys_sorted_p, ptr(row_ids),
                 ptr(sorted_rows), static_cast<int>(rows), static_cast<int>(batch), o, o + 1,
                 0, 64, cs),
             "the segmented sort");
  Tensor flag = longs(src, {rows});
  Tensor number = longs(src, {rows});
  start_flag_kernel<<<row_blocks, kThreads, 0, cs>>>(o, batch, rows, keys_sorted_p, ptr(flag));
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  size_t scan_bytes = 0;
  check_cuda(cub::DeviceScan::InclusiveSum(nullptr, scan_bytes, ptr(flag), ptr(number),
                                           static_cast<int>(rows), cs),
             "sizing the scan");
  Tensor scan_tmp = scratch_bytes(src, scan_bytes);
  check_cuda(cub::DeviceScan::InclusiveSum(scan_tmp.mutable_data_ptr(), scan_bytes, ptr(flag),
                                           ptr(number), static_cast<int>(rows), cs),
             "the scan");
  int64_t host[2] = {0, 0};  // voxel total, first bad sample
  check_cuda(cudaMemcpyAsync(&host[0], ptr(number) + rows - 1, sizeof(int64_t),
                             cudaMemcpyDeviceToHost, cs),
             "reading the voxel total");
  check_cuda(cudaMemcpyAsync(&host[1], bad_p, sizeof(int64_t), cudaMemcpyDeviceToHost, cs),
             "reading the coordinate check");
  check_cuda(cudaStreamSynchronize(cs), "synchronizing");
  STD_TORCH_CHECK(host[1] == LLONG_MAX, kGrid, ": sample ", host[1],
                  " has a coordinate that is not finite or lies beyond 2**62 voxels");
  const int64_t voxels = host[0];
  Tensor voxel_start = longs(src, {voxels});
  voxel_index_kernel<<<blocks_for((rows > batch ? rows : batch) + 1), kThreads, 0, cs>>>(
      o, batch, rows, ptr(flag), ptr(number), ptr(out_offsets), ptr(voxel_start));
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  Tensor kept = longs(src, {voxels});
  Tensor coords = longs(src, {voxels, dims});
  pick_kernel<<<blocks_for(voxels), kThreads, 0, cs>>>(
      o, batch, rows, dims, voxels, ptr(voxel_start), ptr(out_offsets),
      seed_c.const_data_ptr<int64_t>(), stream, train, ptr(sorted_rows), ptr(grid), ptr(kept),
      ptr(coords));
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  inverse_kernel<<<row_blocks, kThreads, 0, cs>>>(o, batch, rows, ptr(number), ptr(out_offsets),
                                                  ptr(sorted_rows), ptr(inverse));
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  return std::make_tuple(kept, coords, out_offsets, inverse);
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(hetload, CUDA, m) { m.impl("grid_sample", TORCH_BOX(&grid_sample)); }

}  // namespace hetload
