// The CPU kernel of torch.ops.hetload.grid_sample: Pointcept's GridSample per sample of a
// packed point batch, samples spread over torch's intra-op thread pool. Each sample is one
// pass: voxel coordinates and their minimum, FNV keys, one sort of (key, row) pairs of that
// sample alone (the torch path sorts the whole batch twice), then one walk over the sorted
// pairs that picks each voxel's point and writes every point's voxel ordinal. The result
// equals hetload/ops/grid_impl.py bit for bit (cuda/grid_common.h holds the shared math).
#include <algorithm>
#include <limits>
#include <tuple>
#include <vector>

#include "grid_common.h"
#include "batched_args.h"
#include "pad_host.h"

namespace hetload {
namespace {

constexpr const char* kGrid = "hetload::grid_sample";

struct KeyRow {
  uint64_t key;
  int64_t row;  // local row: equal keys keep row order (Pointcept's stable argsort)
};

// Stable LSD radix sort of (key, row) pairs by key, 8 bits a pass: the pairs come in row order,
// so equal keys stay in row order. One counting pass fills all 8 histograms; a pass whose
// digit is the same for every key is skipped. About 4x faster than std::sort on a sample of a
// few thousand points (the sort was most of the kernel's time).
void radix_sort(std::vector<KeyRow>& pairs, std::vector<KeyRow>& scratch) {
  const size_t n = pairs.size();
  std::vector<size_t> hist(8 * 256, 0);
  for (const KeyRow& p : pairs) {
    for (int d = 0; d < 8; ++d) ++hist[d * 256 + ((p.key >> (8 * d)) & 0xFF)];
  }
  scratch.resize(n);
  KeyRow* src = pairs.data();
  KeyRow* dst = scratch.data();
  for (int d = 0; d < 8; ++d) {
    size_t* h = hist.data() + d * 256;
    if (h[(src[0].key >> (8 * d)) & 0xFF] == n) continue;  // one digit for all: order stays
    size_t sum = 0;
    for (int v = 0; v < 256; ++v) {
      const size_t c = h[v];
      h[v] = sum;
      sum += c;
    }
    for (size_t i = 0; i < n; ++i) dst[h[(src[i].key >> (8 * d)) & 0xFF]++] = src[i];
    std::swap(src, dst);
  }
  if (src != pairs.data()) pairs.swap(scratch);
}

// What one sample gives: its voxels' kept local rows, in key order.
struct SampleOut {
  std::vector<int64_t> kept;
  bool bad = false;  // a coordinate not finite or beyond 2**62 voxels
};

template <class T>
void grid_one(const T* pts, int64_t n, int64_t dims, double g, int64_t seed, int64_t stream,
              bool train, int64_t* grid, int64_t* inverse, SampleOut& out) {
  if (n == 0) return;
  std::vector<int64_t> low(dims, std::numeric_limits<int64_t>::max());
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t a = 0; a < dims; ++a) {
      int64_t v;
      if (!grid::voxel(static_cast<double>(pts[i * dims + a]), g, &v)) {
        out.bad = true;
        return;
      }
      grid[i * dims + a] = v;
      low[a] = std::min(low[a], v);
    }
  }
  std::vector<KeyRow> pairs(n);
  for (int64_t i = 0; i < n; ++i) {
    uint64_t h = grid::kFnvBasis;
    for (int64_t a = 0; a < dims; ++a) {
      grid[i * dims + a] -= low[a];
      h = grid::fnv_step(h, grid[i * dims + a]);
    }
    pairs[i] = KeyRow{h, i};
  }
  std::vector<KeyRow> scratch;
  radix_sort(pairs, scratch);
  out.kept.reserve(static_cast<size_t>(n));
  int64_t start = 0;
  while (start < n) {
    int64_t end = start + 1;
    while (end < n && pairs[end].key == pairs[start].key) ++end;
    const int64_t ordinal = static_cast<int64_t>(out.kept.size());
    const int64_t count = end - start;
    int64_t pick = start;
    if (train) pick += static_cast<int64_t>(random::hash32(seed, stream, ordinal)) % count;
    out.kept.push_back(pairs[pick].row);
    for (int64_t s = start; s < end; ++s) inverse[pairs[s].row] = ordinal;
    start = end;
  }
}

std::tuple<Tensor, Tensor, Tensor, Tensor> grid_sample(Tensor points, Tensor offsets,
                                                       double grid_size, Tensor seeds,
                                                       int64_t stream, bool train) {
  const int64_t batch = check_grid_args(points, offsets, grid_size, seeds, kGrid);
  const ScalarType dtype = points.scalar_type();
  const Tensor off = contiguous_index(offsets);
  const Tensor seed_c = contiguous_index(seeds);
  const int64_t* o = off.const_data_ptr<int64_t>();
  const int64_t* sd = seed_c.const_data_ptr<int64_t>();
  const int64_t rows = points.size(0);
  STD_TORCH_CHECK(o[0] == 0 && o[batch] == rows, kGrid,
                  ": offsets must run from 0 to the packed rows (", rows, ")");
  for (int64_t b = 0; b < batch; ++b) {
    STD_TORCH_CHECK(o[b + 1] >= o[b], kGrid, ": offsets must be non-decreasing");
  }
  const Tensor src = torch::stable::contiguous(points);
  const int64_t dims = src.size(1);
  std::vector<int64_t> grid_shape{rows, dims};
  Tensor grid = torch::stable::new_empty(src, grid_shape, ScalarType::Long);
  std::vector<int64_t> inv_shape{rows};
  Tensor inverse = torch::stable::new_empty(src, inv_shape, ScalarType::Long);
  int64_t* grid_p = static_cast<int64_t*>(grid.mutable_data_ptr());
  int64_t* inv_p = static_cast<int64_t*>(inverse.mutable_data_ptr());
  std::vector<SampleOut> per(static_cast<size_t>(batch));
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* base = static_cast<const T*>(src.const_data_ptr());
    // no exception may cross the thread pool: a bad sample is flagged, reported below
    torch::stable::parallel_for(0, batch, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        grid_one<T>(base + o[b] * dims, o[b + 1] - o[b], dims, grid_size, sd[b], stream, train,
                    grid_p + o[b] * dims, inv_p + o[b], per[b]);
      }
    });
  };
  if (dtype == ScalarType::Float) {
    run(float{});
  } else {
    run(double{});
  }
  std::vector<int64_t> out_shape{batch + 1};
  Tensor out_offsets = torch::stable::new_empty(src, out_shape, ScalarType::Long);
  int64_t* oo = static_cast<int64_t*>(out_offsets.mutable_data_ptr());
  oo[0] = 0;
  for (int64_t b = 0; b < batch; ++b) {
    STD_TORCH_CHECK(!per[b].bad, kGrid, ": sample ", b,
                    " has a coordinate that is not finite or lies beyond 2**62 voxels");
    oo[b + 1] = oo[b] + static_cast<int64_t>(per[b].kept.size());
  }
  const int64_t total = oo[batch];
  std::vector<int64_t> kept_shape{total};
  Tensor kept = torch::stable::new_empty(src, kept_shape, ScalarType::Long);
  std::vector<int64_t> coord_shape{total, dims};
  Tensor coords = torch::stable::new_empty(src, coord_shape, ScalarType::Long);
  int64_t* kept_p = static_cast<int64_t*>(kept.mutable_data_ptr());
  int64_t* coord_p = static_cast<int64_t*>(coords.mutable_data_ptr());
  torch::stable::parallel_for(0, batch, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      const std::vector<int64_t>& k = per[b].kept;
      for (size_t j = 0; j < k.size(); ++j) {
        const int64_t row = o[b] + k[j];
        const int64_t at = oo[b] + static_cast<int64_t>(j);
        kept_p[at] = row;
        for (int64_t a = 0; a < dims; ++a) coord_p[at * dims + a] = grid_p[row * dims + a];
      }
    }
  });
  return std::make_tuple(kept, coords, out_offsets, inverse);
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(hetload, CPU, m) { m.impl("grid_sample", TORCH_BOX(&grid_sample)); }

}  // namespace hetload
