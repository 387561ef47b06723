// The CPU kernel of torch.ops.hetload.farthest_point_sample: samples spread over torch's
// intra-op thread pool, each one a plain O(N k) loop with its distances in a private buffer.
// It must equal hetload/ops/sampling_impl.py bit for bit: distances are float64 sums of squared
// coordinate differences added in coordinate order (no FMA: -std=c++17 keeps
// -ffp-contract=off), the smaller distance is kept, the first largest point is chosen next.
#include <limits>
#include <vector>

#include "pad_host.h"

namespace hetload {
namespace {

constexpr const char* kFps = "hetload::farthest_point_sample";

template <class T>
void fps_one(const T* pts, int64_t n, int64_t dims, int64_t start, int64_t k, int64_t first_row,
             int64_t* out) {
  std::vector<double> dist(n, std::numeric_limits<double>::infinity());
  int64_t current = start;
  for (int64_t step = 0; step < k; ++step) {
    out[step] = first_row + current;
    const T* c = pts + current * dims;
    double best = -1.0;
    int64_t best_i = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T* p = pts + i * dims;
      double d = 0.0;
      for (int64_t a = 0; a < dims; ++a) {
        const double diff = static_cast<double>(p[a]) - static_cast<double>(c[a]);
        d = d + diff * diff;
      }
      if (d < dist[i]) dist[i] = d;
      if (dist[i] > best) {
        best = dist[i];
        best_i = i;
      }
    }
    current = best_i;
  }
}

Tensor farthest_point_sample(Tensor points, Tensor offsets, Tensor out_offsets, Tensor start,
                             int64_t total) {
  STD_TORCH_CHECK(points.dim() == 2, kFps, ": points must be [sum N_i, D]");
  const ScalarType dtype = points.scalar_type();
  STD_TORCH_CHECK(dtype == ScalarType::Float || dtype == ScalarType::Double, kFps,
                  ": points must be float32 or float64, got ", torch::headeronly::toString(dtype));
  check_index_tensor(offsets, points, kFps, "offsets");
  check_index_tensor(out_offsets, points, kFps, "out_offsets");
  STD_TORCH_CHECK(start.scalar_type() == ScalarType::Long && start.dim() == 1 &&
                      start.is_contiguous(),
                  kFps, ": start must be a contiguous int64 [B]");
  const int64_t batch = offsets.numel() - 1;
  STD_TORCH_CHECK(out_offsets.numel() == batch + 1 && start.numel() == batch, kFps,
                  ": offsets, out_offsets and start disagree on B");
  const int64_t* o = offsets.const_data_ptr<int64_t>();
  const int64_t* oo = out_offsets.const_data_ptr<int64_t>();
  const int64_t* s = start.const_data_ptr<int64_t>();
  const int64_t rows = points.size(0);
  STD_TORCH_CHECK(o[0] == 0 && o[batch] == rows && oo[0] == 0 && oo[batch] == total, kFps,
                  ": offsets must run from 0 to the packed rows, out_offsets from 0 to total");
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t n = o[b + 1] - o[b];
    const int64_t k = oo[b + 1] - oo[b];
    STD_TORCH_CHECK(n >= 0 && k >= 0 && k <= n, kFps, ": sample ", b, " has ", n,
                    " points and asks for ", k);
    STD_TORCH_CHECK(k == 0 || (s[b] >= 0 && s[b] < n), kFps, ": sample ", b, " starts at ",
                    s[b], ", outside its ", n, " points");
  }
  const Tensor src = torch::stable::contiguous(points);
  std::vector<int64_t> shape{total};
  Tensor out = torch::stable::new_empty(src, shape, ScalarType::Long);
  if (total == 0) return out;
  int64_t* dst = static_cast<int64_t*>(out.mutable_data_ptr());
  const int64_t dims = src.size(1);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* base = static_cast<const T*>(src.const_data_ptr());
    torch::stable::parallel_for(0, batch, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        fps_one<T>(base + o[b] * dims, o[b + 1] - o[b], dims, s[b], oo[b + 1] - oo[b], o[b],
                   dst + oo[b]);
      }
    });
  };
  if (dtype == ScalarType::Float) {
    run(float{});
  } else {
    run(double{});
  }
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(hetload, CPU, m) {
  m.impl("farthest_point_sample", TORCH_BOX(&farthest_point_sample));
}

}  // namespace hetload
