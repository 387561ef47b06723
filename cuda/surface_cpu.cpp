// The CPU kernel of torch.ops.hetload.sample_surface: area-weighted random points on the faces
// of a packed batch of triangle meshes, samples spread over torch's intra-op thread pool. Per
// sample one pass over its faces (areas and their running sum) and one over its points (a
// binary search of the running sum, then the barycentric point); no padded [B, max F] table,
// no [P, 3, 3] gather. The math is cuda/surface_common.h, shared with the CUDA kernels.
#include <tuple>
#include <vector>

#include "batched_args.h"
#include "pad_host.h"
#include "surface_common.h"

namespace hetload {
namespace {

constexpr const char* kSurface = "hetload::sample_surface";

std::tuple<Tensor, Tensor> sample_surface(Tensor verts, Tensor faces, Tensor face_offsets,
                                          Tensor out_offsets, Tensor seeds, int64_t stream,
                                          int64_t total, bool with_normals) {
  const int64_t batch =
      check_surface_args(verts, faces, face_offsets, out_offsets, seeds, kSurface);
  const ScalarType dtype = verts.scalar_type();
  const Tensor fo_t = contiguous_index(face_offsets);
  const Tensor oo_t = contiguous_index(out_offsets);
  const Tensor seed_t = contiguous_index(seeds);
  const int64_t* fo = fo_t.const_data_ptr<int64_t>();
  const int64_t* oo = oo_t.const_data_ptr<int64_t>();
  const int64_t* sd = seed_t.const_data_ptr<int64_t>();
  const int64_t n_faces = faces.size(0);
  STD_TORCH_CHECK(fo[0] == 0 && fo[batch] == n_faces && oo[0] == 0 && oo[batch] == total,
                  kSurface,
                  ": face_offsets must run from 0 to the face rows, out_offsets from 0 to total");
  for (int64_t b = 0; b < batch; ++b) {
    STD_TORCH_CHECK(fo[b + 1] >= fo[b] && oo[b + 1] >= oo[b], kSurface,
                    ": offsets must be non-decreasing");
    STD_TORCH_CHECK(oo[b + 1] == oo[b] || fo[b + 1] > fo[b], kSurface, ": sample ", b,
                    " has no faces but asks for ", oo[b + 1] - oo[b], " points");
  }
  const Tensor face_c = torch::stable::contiguous(faces);
  const int64_t* fc = face_c.const_data_ptr<int64_t>();
  const int64_t n_verts = verts.size(0);
  for (int64_t i = 0; i < n_faces * 3; ++i) {
    STD_TORCH_CHECK(fc[i] >= 0 && fc[i] < n_verts, kSurface, ": face row ", i / 3,
                    " holds vertex index ", fc[i], ", outside the ", n_verts, " vertices");
  }
  const Tensor src = torch::stable::contiguous(verts);
  std::vector<int64_t> shape{total, 3};
  Tensor points = torch::stable::new_empty(src, shape);
  std::vector<int64_t> normal_shape{with_normals ? total : 0, 3};
  Tensor normals = torch::stable::new_empty(src, normal_shape);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* v = static_cast<const T*>(src.const_data_ptr());
    T* pts = static_cast<T*>(points.mutable_data_ptr());
    T* nrm = with_normals ? static_cast<T*>(normals.mutable_data_ptr()) : nullptr;
    torch::stable::parallel_for(0, batch, 1, [&](int64_t lo, int64_t hi) {
      std::vector<double> cum;
      for (int64_t b = lo; b < hi; ++b) {
        const int64_t count = fo[b + 1] - fo[b];
        if (oo[b + 1] == oo[b]) continue;
        cum.resize(static_cast<size_t>(count));
        double run_sum = 0.0;  // sequential, as torch.cumsum on the CPU
        for (int64_t f = 0; f < count; ++f) {
          run_sum = run_sum + surface::face_area(v, fc, fo[b] + f);
          cum[f] = run_sum;
        }
        const uint32_t key = random::key32(sd[b], stream);
        for (int64_t j = 0; j < oo[b + 1] - oo[b]; ++j) {
          const int64_t at = oo[b] + j;
          surface::surface_point<T>(v, fc, cum.data(), fo[b], count, key, j, pts + at * 3,
                                    nrm != nullptr ? nrm + at * 3 : nullptr);
        }
      }
    });
  };
  if (dtype == ScalarType::Float) {
    run(float{});
  } else {
    run(double{});
  }
  return std::make_tuple(points, normals);
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(hetload, CPU, m) {
  m.impl("sample_surface", TORCH_BOX(&sample_surface));
}

}  // namespace hetload
