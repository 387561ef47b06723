// Per-row math of the per-sample point transforms (hetload::per_sample_matmul,
// hetload::per_sample_scale and hetload::jitter_points), shared by the CPU kernel (g++) and the CUDA kernel (nvcc). The
// arithmetic is float64, added in coordinate order, cast to the points' dtype at the end, as
// the pure-torch path (hetload/ops/augment_impl.py) does.
#pragma once

#include <cstdint>

#include "pad_common.h"  // HETLOAD_HD
#include "random_common.h"

namespace hetload {
namespace augment {

// out = m @ p for one row of `dims` coordinates; m is the sample's [dims, dims] row-major matrix
template <class T>
HETLOAD_HD void matvec(const double* m, const T* p, T* out, int64_t dims) {
  for (int64_t i = 0; i < dims; ++i) {
    double s = 0.0;
    for (int64_t j = 0; j < dims; ++j) s = s + m[i * dims + j] * static_cast<double>(p[j]);
    out[i] = static_cast<T>(s);
  }
}

// out = f * p coordinate-wise; f is the sample's [dims] factors
template <class T>
HETLOAD_HD void scale_row(const double* f, const T* p, T* out, int64_t dims) {
  for (int64_t i = 0; i < dims; ++i) out[i] = static_cast<T>(static_cast<double>(p[i]) * f[i]);
}

// p + clamp(sigma * N(0, 1), -clip, clip), coordinate c of local row r using counter
// dims * r + c of the sample's stream
template <class T>
HETLOAD_HD void jitter_row(const T* p, T* out, int64_t dims, int64_t local_row, int64_t seed,
                           int64_t stream, double sigma, double clip) {
  for (int64_t c = 0; c < dims; ++c) {
    double noise = sigma * random::normal(seed, stream, dims * local_row + c);
    noise = noise < -clip ? -clip : (noise > clip ? clip : noise);
    out[c] = static_cast<T>(static_cast<double>(p[c]) + noise);
  }
}

}  // namespace augment
}  // namespace hetload
