// The CUDA kernels of torch.ops.hetload.sample_surface: one thread per face for the areas (and
// the face's sample), cub::DeviceScan::InclusiveSumByKey for the per-sample running sums (a
// parallel scan: the sums may round apart from the CPU's sequential ones in the last bits),
// one thread per output point for the rest. A face index outside the vertices is flagged on
// the device and reported after the one host read. The math is cuda/surface_common.h.
#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/macros.h>

#include <climits>
#include <tuple>
#include <vector>

#include "launch_cuda.h"
#include "batched_args.h"
#include "pad_host.h"
#include "surface_common.h"

namespace hetload {
namespace {

constexpr const char* kSurface = "hetload::sample_surface";

// the first face row holding a bad index, as atomicMin over rows
__global__ void check_faces_kernel(const int64_t* __restrict__ faces, int64_t n_faces,
                                   int64_t n_verts, int64_t* __restrict__ bad) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n_faces * 3;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (faces[i] < 0 || faces[i] >= n_verts) {
      atomicMin(reinterpret_cast<long long*>(bad), static_cast<long long>(i));
    }
  }
}

template <class T>
__global__ void area_kernel(const T* __restrict__ verts, const int64_t* __restrict__ faces,
                            const int64_t* __restrict__ face_offsets, int64_t batch,
                            int64_t n_faces, double* __restrict__ areas,
                            int64_t* __restrict__ face_sample) {
  for (int64_t f = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; f < n_faces;
       f += int64_t(gridDim.x) * blockDim.x) {
    areas[f] = surface::face_area(verts, faces, f);
    face_sample[f] = sample_of(face_offsets, batch, f);
  }
}

template <class T>
__global__ void point_kernel(const T* __restrict__ verts, const int64_t* __restrict__ faces,
                             const int64_t* __restrict__ face_offsets,
                             const int64_t* __restrict__ out_offsets, int64_t batch,
                             int64_t total, const double* __restrict__ cum,
                             const int64_t* __restrict__ seeds, int64_t stream,
                             T* __restrict__ points, T* __restrict__ normals) {
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < total;
       p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = sample_of(out_offsets, batch, p);
    const int64_t first = face_offsets[b];
    surface::surface_point<T>(verts, faces, cum + first, first, face_offsets[b + 1] - first,
                              random::key32(seeds[b], stream), p - out_offsets[b],
                              points + p * 3, normals != nullptr ? normals + p * 3 : nullptr);
  }
}

void check_cuda(cudaError_t err, const char* what) {
  STD_TORCH_CHECK(err == cudaSuccess, kSurface, ": ", what, " failed: ", cudaGetErrorString(err));
}

// The offsets are not validated on the device (that would synchronize): the Python wrapper
// passes a Ragged's validated offsets and out_offsets with k_b > 0 only where F_b > 0.
std::tuple<Tensor, Tensor> sample_surface(Tensor verts, Tensor faces, Tensor face_offsets,
                                          Tensor out_offsets, Tensor seeds, int64_t stream,
                                          int64_t total, bool with_normals) {
  const int64_t batch =
      check_surface_args(verts, faces, face_offsets, out_offsets, seeds, kSurface);
  const ScalarType dtype = verts.scalar_type();
  const int64_t n_faces = faces.size(0);
  STD_TORCH_CHECK(n_faces < INT_MAX, kSurface, ": the CUDA kernel takes fewer than 2**31 faces");
  torch::stable::accelerator::DeviceGuard guard(verts.get_device_index());
  const Tensor src = torch::stable::contiguous(verts);
  const Tensor face_c = torch::stable::contiguous(faces);
  const Tensor fo = contiguous_index(face_offsets);
  const Tensor oo = contiguous_index(out_offsets);
  const Tensor seed_c = contiguous_index(seeds);
  std::vector<int64_t> shape{total, 3};
  Tensor points = torch::stable::new_empty(src, shape);
  std::vector<int64_t> normal_shape{with_normals ? total : 0, 3};
  Tensor normals = torch::stable::new_empty(src, normal_shape);
  if (n_faces == 0 && total == 0) return std::make_tuple(points, normals);
  const cudaStream_t cs = current_stream(src);
  const int64_t* fc = face_c.const_data_ptr<int64_t>();
  std::vector<int64_t> one{1};
  Tensor bad = torch::stable::new_empty(src, one, ScalarType::Long);
  int64_t* bad_p = static_cast<int64_t*>(bad.mutable_data_ptr());
  const int64_t none = LLONG_MAX;
  check_cuda(cudaMemcpyAsync(bad_p, &none, sizeof none, cudaMemcpyHostToDevice, cs),
             "setting the index check");
  check_faces_kernel<<<blocks_for(n_faces * 3), kThreads, 0, cs>>>(fc, n_faces, src.size(0),
                                                                    bad_p);
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  int64_t first_bad = LLONG_MAX;
  check_cuda(cudaMemcpyAsync(&first_bad, bad_p, sizeof first_bad, cudaMemcpyDeviceToHost, cs),
             "reading the index check");
  check_cuda(cudaStreamSynchronize(cs), "synchronizing");
  if (first_bad != LLONG_MAX) {
    int64_t value = 0;
    check_cuda(cudaMemcpy(&value, fc + first_bad, sizeof value, cudaMemcpyDeviceToHost),
               "reading the bad index");
    STD_TORCH_CHECK(false, kSurface, ": face row ", first_bad / 3, " holds vertex index ", value,
                    ", outside the ", src.size(0), " vertices");
  }
  if (total == 0) return std::make_tuple(points, normals);
  std::vector<int64_t> face_shape{n_faces};
  Tensor areas = torch::stable::new_empty(src, face_shape, ScalarType::Double);
  Tensor cum = torch::stable::new_empty(src, face_shape, ScalarType::Double);
  Tensor face_sample = torch::stable::new_empty(src, face_shape, ScalarType::Long);
  double* areas_p = static_cast<double*>(areas.mutable_data_ptr());
  double* cum_p = static_cast<double*>(cum.mutable_data_ptr());
  int64_t* fs_p = static_cast<int64_t*>(face_sample.mutable_data_ptr());
  const int64_t* fo_p = fo.const_data_ptr<int64_t>();
  if (dtype == ScalarType::Float) {
    area_kernel<float><<<blocks_for(n_faces), kThreads, 0, cs>>>(
        static_cast<const float*>(src.const_data_ptr()), fc, fo_p, batch, n_faces, areas_p, fs_p);
  } else {
    area_kernel<double><<<blocks_for(n_faces), kThreads, 0, cs>>>(
        static_cast<const double*>(src.const_data_ptr()), fc, fo_p, batch, n_faces, areas_p,
        fs_p);
  }
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  size_t scan_bytes = 0;
  check_cuda(cub::DeviceScan::InclusiveSumByKey(nullptr, scan_bytes, fs_p, areas_p, cum_p,
                                                static_cast<int>(n_faces),
                                                ::cuda::std::equal_to<>(), cs),
             "sizing the scan");
  std::vector<int64_t> tmp_shape{static_cast<int64_t>(scan_bytes > 0 ? scan_bytes : 1)};
  Tensor tmp = torch::stable::new_empty(src, tmp_shape, ScalarType::Byte);
  check_cuda(cub::DeviceScan::InclusiveSumByKey(tmp.mutable_data_ptr(), scan_bytes, fs_p,
                                                areas_p, cum_p, static_cast<int>(n_faces),
                                                ::cuda::std::equal_to<>(), cs),
             "the scan");
  const int64_t* oo_p = oo.const_data_ptr<int64_t>();
  const int64_t* sd = seed_c.const_data_ptr<int64_t>();
  if (dtype == ScalarType::Float) {
    point_kernel<float><<<blocks_for(total), kThreads, 0, cs>>>(
        static_cast<const float*>(src.const_data_ptr()), fc, fo_p, oo_p, batch, total, cum_p, sd,
        stream, static_cast<float*>(points.mutable_data_ptr()),
        with_normals ? static_cast<float*>(normals.mutable_data_ptr()) : nullptr);
  } else {
    point_kernel<double><<<blocks_for(total), kThreads, 0, cs>>>(
        static_cast<const double*>(src.const_data_ptr()), fc, fo_p, oo_p, batch, total, cum_p,
        sd, stream, static_cast<double*>(points.mutable_data_ptr()),
        with_normals ? static_cast<double*>(normals.mutable_data_ptr()) : nullptr);
  }
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  return std::make_tuple(points, normals);
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(hetload, CUDA, m) {
  m.impl("sample_surface", TORCH_BOX(&sample_surface));
}

}  // namespace hetload
