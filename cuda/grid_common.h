// Per-point math of hetload::grid_sample, shared unchanged by the CPU kernel (g++) and the CUDA
// kernels (nvcc), so the CPU tests exercise the arithmetic the GPU runs. It must equal the
// pure-torch path (hetload/ops/grid_impl.py) bit for bit:
//   - a voxel coordinate is floor(p / grid_size) in float64 (a true division, correctly rounded
//     on both devices: never p * (1 / grid_size)), refused beyond 2**62 voxels or not finite;
//   - a voxel key is Pointcept's fnv_hash_vec of the coordinates minus the sample's minimum
//     (FNV-1a-style: per axis multiply by the prime, then xor; uint64 wrap-around);
//   - the random point of a voxel is random::hash32(seed, stream, voxel ordinal) % count.
#pragma once

#include <cmath>
#include <cstdint>

#include "pad_common.h"  // HETLOAD_HD
#include "random_common.h"  // hash32

namespace hetload {
namespace grid {

constexpr uint64_t kFnvBasis = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;
constexpr double kMaxVoxel = 4611686018427387904.0;  // 2**62: differences stay within int64

// floor(p / g) as an int64 voxel coordinate; false when it is not finite or beyond 2**62
HETLOAD_HD bool voxel(double p, double g, int64_t* out) {
  const double q = floor(p / g);
  if (!(fabs(q) <= kMaxVoxel)) return false;  // NaN fails the comparison too
  *out = static_cast<int64_t>(q);
  return true;
}

HETLOAD_HD uint64_t fnv_step(uint64_t h, int64_t coord) {
  return (h * kFnvPrime) ^ static_cast<uint64_t>(coord);
}

}  // namespace grid
}  // namespace hetload
