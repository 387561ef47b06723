// The CPU kernels of the per-sample point transforms: hetload::per_sample_matmul (rotation),
// hetload::per_sample_scale (scaling, flips) and hetload::jitter_points (counter-based
// Gaussian noise). One pass over the rows, spread over
// torch's intra-op thread pool in chunks; each chunk finds its first row's sample once, then
// walks the offsets. The math is cuda/augment_common.h, shared with the CUDA kernels.
#include <algorithm>
#include <cmath>
#include <vector>

#include "augment_common.h"
#include "batched_args.h"
#include "pad_host.h"

namespace hetload {
namespace {

constexpr const char* kMatmul = "hetload::per_sample_matmul";
constexpr const char* kJitter = "hetload::jitter_points";
constexpr const char* kScale = "hetload::per_sample_scale";
constexpr int64_t kGrain = 8192;  // rows per chunk
constexpr int64_t kBlock = 256;   // rows whose draws are made before their math (see below)

void check_offsets_span(const int64_t* o, int64_t batch, int64_t rows, const char* op) {
  STD_TORCH_CHECK(o[0] == 0 && o[batch] == rows, op,
                  ": offsets must run from 0 to the packed rows (", rows, ")");
  for (int64_t b = 0; b < batch; ++b) {
    STD_TORCH_CHECK(o[b + 1] >= o[b], op, ": offsets must be non-decreasing");
  }
}

// f(row, sample) for every row, in parallel chunks
template <class F>
void for_rows(const int64_t* o, int64_t batch, int64_t rows, const F& f) {
  torch::stable::parallel_for(0, rows, kGrain, [&](int64_t lo, int64_t hi) {
    // the last sample whose offset is <= lo (empty samples before it are skipped)
    int64_t b = std::upper_bound(o, o + batch + 1, lo) - o - 1;
    for (int64_t r = lo; r < hi; ++r) {
      while (r >= o[b + 1]) ++b;
      f(r, b);
    }
  });
}

Tensor per_sample_matmul(Tensor points, Tensor offsets, Tensor matrices) {
  const int64_t batch = check_points_offsets(points, offsets, kMatmul);
  const int64_t dims = points.size(1);
  check_matrices(matrices, batch, points, kMatmul);
  const Tensor off = contiguous_index(offsets);
  const int64_t* o = off.const_data_ptr<int64_t>();
  const int64_t rows = points.size(0);
  check_offsets_span(o, batch, rows, kMatmul);
  const Tensor src = torch::stable::contiguous(points);
  const Tensor mats = torch::stable::contiguous(matrices);
  std::vector<int64_t> shape{rows, dims};
  Tensor out = torch::stable::new_empty(src, shape);
  const double* m = mats.const_data_ptr<double>();
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* p = static_cast<const T*>(src.const_data_ptr());
    T* dst = static_cast<T*>(out.mutable_data_ptr());
    for_rows(o, batch, rows, [&](int64_t r, int64_t b) {
      augment::matvec<T>(m + b * dims * dims, p + r * dims, dst + r * dims, dims);
    });
  };
  if (src.scalar_type() == ScalarType::Float) {
    run(float{});
  } else {
    run(double{});
  }
  return out;
}

// The two vectorized loops of jitter_rows, compiled twice on x86-64 Linux (AVX2 and the
// baseline, chosen at load time by the CPU): four doubles a vector instead of two. AVX2 alone
// brings no fused multiply-add, so both clones compute the same values.
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define HETLOAD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HETLOAD_CLONES
#endif

HETLOAD_CLONES void draw_block(const uint32_t* keys, const uint32_t* counters, int64_t count,
                               double* u1, double* u2) {
  for (int64_t i = 0; i < count; ++i) {
    const uint32_t twice = counters[i] * 2u;  // counter 2 c (mod 2**32, as the hash reads it)
    u1[i] = random::uniform_keyed(keys[i], twice);
    u2[i] = random::uniform_keyed(keys[i], twice + 1u);
  }
}

HETLOAD_CLONES void box_muller_block(double* u1, const double* u2, int64_t count,
                                     double sigma) {
  for (int64_t i = 0; i < count; ++i) {
    u1[i] = sigma * (sqrt(-2.0 * random::log_unit(u1[i])) * random::cos_two_pi(u2[i]));
  }
}

// Rows lo..hi of jitter_points, kBlock rows at a time in flat loops over the block's
// coordinates: keys and counters, the integer draws, Box-Muller, the add. The draw and
// Box-Muller loops have no calls and no branches (random_common.h's log_unit and cos_two_pi),
// so the compiler vectorizes them and the CPU overlaps their long dependency chains; the C
// library's log and cos, one draw at a time, took 2-3x longer.
template <class T>
void jitter_rows(const T* p, T* dst, int64_t dims, const int64_t* o, int64_t batch,
                 const int64_t* sd, int64_t stream, double sigma, double clip, int64_t lo,
                 int64_t hi) {
  const size_t block = static_cast<size_t>(kBlock * dims);
  std::vector<uint32_t> keys(block);
  std::vector<uint32_t> counters(block);  // < 2**32: hash32 reads the low 32 bits anyway
  std::vector<double> u1(block);
  std::vector<double> u2(block);
  uint32_t* kp = keys.data();
  uint32_t* cp = counters.data();
  double* a = u1.data();
  double* c = u2.data();
  int64_t b = std::upper_bound(o, o + batch + 1, lo) - o - 1;
  uint32_t key = 0;
  for (int64_t start = lo; start < hi; start += kBlock) {
    const int64_t end = std::min(hi, start + kBlock);
    for (int64_t r = start; r < end; ++r) {  // per row: its sample's key, its first counter
      while (r >= o[b + 1]) ++b;
      if (r == start || r == o[b]) key = random::key32(sd[b], stream);
      const int64_t first = dims * (r - o[b]);
      for (int64_t k = 0; k < dims; ++k) {
        kp[(r - start) * dims + k] = key;
        cp[(r - start) * dims + k] = static_cast<uint32_t>(static_cast<uint64_t>(first + k));
      }
    }
    const int64_t count = (end - start) * dims;
    draw_block(kp, cp, count, a, c);
    box_muller_block(a, c, count, sigma);
    const T* src = p + start * dims;
    T* out = dst + start * dims;
    for (int64_t i = 0; i < count; ++i) {
      const double noise = a[i] < -clip ? -clip : (a[i] > clip ? clip : a[i]);
      out[i] = static_cast<T>(static_cast<double>(src[i]) + noise);
    }
  }
}

Tensor jitter_points(Tensor points, Tensor offsets, Tensor seeds, int64_t stream, double sigma,
                     double clip) {
  const int64_t batch = check_points_offsets(points, offsets, kJitter);
  check_seeds(seeds, batch, points, "points", kJitter);
  STD_TORCH_CHECK(sigma >= 0 && clip >= 0, kJitter, ": sigma and clip must be >= 0");
  const Tensor off = contiguous_index(offsets);
  const Tensor seed_c = contiguous_index(seeds);
  const int64_t* o = off.const_data_ptr<int64_t>();
  const int64_t* sd = seed_c.const_data_ptr<int64_t>();
  const int64_t rows = points.size(0);
  check_offsets_span(o, batch, rows, kJitter);
  const Tensor src = torch::stable::contiguous(points);
  const int64_t dims = src.size(1);
  std::vector<int64_t> shape{rows, dims};
  Tensor out = torch::stable::new_empty(src, shape);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* p = static_cast<const T*>(src.const_data_ptr());
    T* dst = static_cast<T*>(out.mutable_data_ptr());
    torch::stable::parallel_for(0, rows, kGrain, [&](int64_t lo, int64_t hi) {
      jitter_rows<T>(p, dst, dims, o, batch, sd, stream, sigma, clip, lo, hi);
    });
  };
  if (src.scalar_type() == ScalarType::Float) {
    run(float{});
  } else {
    run(double{});
  }
  return out;
}

Tensor per_sample_scale(Tensor points, Tensor offsets, Tensor factors) {
  const int64_t batch = check_points_offsets(points, offsets, kScale);
  const int64_t dims = points.size(1);
  check_factors(factors, batch, points, kScale);
  const Tensor off = contiguous_index(offsets);
  const int64_t* o = off.const_data_ptr<int64_t>();
  const int64_t rows = points.size(0);
  check_offsets_span(o, batch, rows, kScale);
  const Tensor src = torch::stable::contiguous(points);
  const Tensor fac = torch::stable::contiguous(factors);
  std::vector<int64_t> shape{rows, dims};
  Tensor out = torch::stable::new_empty(src, shape);
  const double* f = fac.const_data_ptr<double>();
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* p = static_cast<const T*>(src.const_data_ptr());
    T* dst = static_cast<T*>(out.mutable_data_ptr());
    for_rows(o, batch, rows, [&](int64_t r, int64_t b) {
      augment::scale_row<T>(f + b * dims, p + r * dims, dst + r * dims, dims);
    });
  };
  if (src.scalar_type() == ScalarType::Float) {
    run(float{});
  } else {
    run(double{});
  }
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(hetload, CPU, m) {
  m.impl("per_sample_matmul", TORCH_BOX(&per_sample_matmul));
  m.impl("jitter_points", TORCH_BOX(&jitter_points));
  m.impl("per_sample_scale", TORCH_BOX(&per_sample_scale));
}

}  // namespace hetload
