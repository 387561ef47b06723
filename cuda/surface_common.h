// Per-face and per-point math of hetload::sample_surface, shared by the CPU kernel (g++) and the
// CUDA kernels (nvcc). float64 throughout, in the order of the pure-torch path
// (hetload/ops/surface_impl.py): a face's area is 0.5 |(b - a) x (c - a)|; a point uses counters
// 3 j (face), 3 j + 1 (r1) and 3 j + 2 (r2) of its sample's stream; the face is the first whose
// cumulative area exceeds u * total (searchsorted, right=True), or floor(u * F) when every
// face has zero area; the point is (1 - sqrt(r1)) a + sqrt(r1) (1 - r2) b + sqrt(r1) r2 c.
#pragma once

#include <cmath>
#include <cstdint>

#include "pad_common.h"  // HETLOAD_HD
#include "random_common.h"

namespace hetload {
namespace surface {

HETLOAD_HD void cross3(const double* e1, const double* e2, double* out) {
  out[0] = e1[1] * e2[2] - e1[2] * e2[1];
  out[1] = e1[2] * e2[0] - e1[0] * e2[2];
  out[2] = e1[0] * e2[1] - e1[1] * e2[0];
}

HETLOAD_HD double norm3(const double* v) { return sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]); }

// the corners of face f as float64, and its normal (unnormalized)
template <class T>
HETLOAD_HD void corners(const T* verts, const int64_t* faces, int64_t f, double* tri,
                        double* normal) {
  for (int k = 0; k < 3; ++k) {
    const T* v = verts + faces[f * 3 + k] * 3;
    for (int a = 0; a < 3; ++a) tri[k * 3 + a] = static_cast<double>(v[a]);
  }
  double e1[3], e2[3];
  for (int a = 0; a < 3; ++a) {
    e1[a] = tri[3 + a] - tri[a];
    e2[a] = tri[6 + a] - tri[a];
  }
  cross3(e1, e2, normal);
}

template <class T>
HETLOAD_HD double face_area(const T* verts, const int64_t* faces, int64_t f) {
  double tri[9], normal[3];
  corners(verts, faces, f, tri, normal);
  return 0.5 * norm3(normal);
}

// the local face of point j: cum holds the sample's n_faces cumulative areas
HETLOAD_HD int64_t pick_face(const double* cum, int64_t n_faces, double u) {
  const double total = cum[n_faces - 1];
  int64_t local;
  if (total > 0) {
    const double target = u * total;
    int64_t lo = 0, hi = n_faces;  // the first index whose cumulative area is > target
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (cum[mid] <= target) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    local = lo;
  } else {
    local = static_cast<int64_t>(u * static_cast<double>(n_faces));
  }
  return local < n_faces - 1 ? local : n_faces - 1;
}

// point j of a sample (and its unit normal when wanted), face row `first_face + local`
template <class T>
HETLOAD_HD void surface_point(const T* verts, const int64_t* faces, const double* cum,
                              int64_t first_face, int64_t n_faces, uint32_t key, int64_t j,
                              T* point, T* normal_out) {
  const double u = random::uniform_keyed(key, 3 * j);
  const double r1 = random::uniform_keyed(key, 3 * j + 1);
  const double r2 = random::uniform_keyed(key, 3 * j + 2);
  const int64_t f = first_face + pick_face(cum, n_faces, u);
  double tri[9], normal[3];
  corners(verts, faces, f, tri, normal);
  const double root = sqrt(r1);
  const double w0 = 1 - root, w1 = root * (1 - r2), w2 = root * r2;
  for (int a = 0; a < 3; ++a) {
    point[a] = static_cast<T>(w0 * tri[a] + w1 * tri[3 + a] + w2 * tri[6 + a]);
  }
  if (normal_out != nullptr) {
    const double length = norm3(normal);
    for (int a = 0; a < 3; ++a) normal_out[a] = static_cast<T>(length > 0 ? normal[a] / length : 0);
  }
}

}  // namespace surface
}  // namespace hetload
