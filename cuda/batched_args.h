// The argument checks of the batched ops (hetload::grid_sample, sample_surface,
// per_sample_matmul, per_sample_scale, jitter_points), shared by their CPU and CUDA kernels so
// that both refuse the same arguments with the same words (tests/test_*_kernel.py compare them).
// Host code only.
#pragma once

#include <cmath>
#include <cstdint>

#include "pad_host.h"

namespace hetload {
namespace {

// points float32/64 [sum N_i, D] and its offsets [B + 1]; returns B
inline int64_t check_points_offsets(const Tensor& points, const Tensor& offsets, const char* op) {
  STD_TORCH_CHECK(points.dim() == 2, op, ": points must be [sum N_i, D]");
  const ScalarType dtype = points.scalar_type();
  STD_TORCH_CHECK(dtype == ScalarType::Float || dtype == ScalarType::Double, op,
                  ": points must be float32 or float64, got ", dtype_name(dtype));
  check_index_tensor(offsets, points, op, "offsets");
  return offsets.numel() - 1;
}

// one int64 seed per sample, on the device of `like` (named `what` in the message)
inline void check_seeds(const Tensor& seeds, int64_t batch, const Tensor& like, const char* what,
                        const char* op) {
  STD_TORCH_CHECK(seeds.scalar_type() == ScalarType::Long && seeds.dim() == 1 &&
                      seeds.numel() == batch && seeds.device() == like.device(),
                  op, ": seeds must be int64 [B] on the ", what, "' device, B = ", batch);
}

inline void check_matrices(const Tensor& matrices, int64_t batch, const Tensor& points,
                           const char* op) {
  const int64_t dims = points.size(1);
  STD_TORCH_CHECK(matrices.scalar_type() == ScalarType::Double && matrices.dim() == 3 &&
                      matrices.size(0) == batch && matrices.size(1) == dims &&
                      matrices.size(2) == dims && matrices.device() == points.device(),
                  op, ": matrices must be float64 [B, D, D] on the points' device");
}

inline void check_factors(const Tensor& factors, int64_t batch, const Tensor& points,
                          const char* op) {
  STD_TORCH_CHECK(factors.scalar_type() == ScalarType::Double && factors.dim() == 2 &&
                      factors.size(0) == batch && factors.size(1) == points.size(1) &&
                      factors.device() == points.device(),
                  op, ": factors must be float64 [B, D] on the points' device");
}

// grid_sample's arguments; returns B
inline int64_t check_grid_args(const Tensor& points, const Tensor& offsets, double grid_size,
                               const Tensor& seeds, const char* op) {
  STD_TORCH_CHECK(points.dim() == 2, op, ": points must be [sum N_i, D]");
  const ScalarType dtype = points.scalar_type();
  STD_TORCH_CHECK(dtype == ScalarType::Float || dtype == ScalarType::Double, op,
                  ": points must be float32 or float64, got ", dtype_name(dtype));
  STD_TORCH_CHECK(grid_size > 0 && std::isfinite(grid_size), op,
                  ": grid_size must be finite and > 0");
  check_index_tensor(offsets, points, op, "offsets");
  const int64_t batch = offsets.numel() - 1;
  check_seeds(seeds, batch, points, "points", op);
  return batch;
}

// sample_surface's arguments; returns B
inline int64_t check_surface_args(const Tensor& verts, const Tensor& faces,
                                  const Tensor& face_offsets, const Tensor& out_offsets,
                                  const Tensor& seeds, const char* op) {
  STD_TORCH_CHECK(verts.dim() == 2 && verts.size(1) == 3, op, ": verts must be [sum V_i, 3]");
  const ScalarType dtype = verts.scalar_type();
  STD_TORCH_CHECK(dtype == ScalarType::Float || dtype == ScalarType::Double, op,
                  ": verts must be float32 or float64, got ", dtype_name(dtype));
  STD_TORCH_CHECK(faces.scalar_type() == ScalarType::Long && faces.dim() == 2 &&
                      faces.size(1) == 3 && faces.device() == verts.device(),
                  op, ": faces must be int64 [sum F_i, 3] on the verts' device");
  check_index_tensor(face_offsets, verts, op, "face_offsets");
  check_index_tensor(out_offsets, verts, op, "out_offsets");
  const int64_t batch = face_offsets.numel() - 1;
  STD_TORCH_CHECK(out_offsets.numel() == batch + 1, op,
                  ": face_offsets and out_offsets disagree on B");
  check_seeds(seeds, batch, verts, "verts", op);
  return batch;
}

}  // namespace
}  // namespace hetload
