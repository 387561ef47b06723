// The re-base loops of cuda/rebase_loops.h alone, against memcpy of the same bytes, in one run:
// the baseline (SSE2) and AVX2 builds of the signed int64 and int32 copies, as collate's index copy
// calls them (B = 32 meshes, log-normal sizes with median 10k vertices, faces [2n, 3], one reused
// output), single-threaded. Medians and minimums of --repeats rounds; the contenders alternate
// within each round so load on the machine hits them alike. Warm: sources and output stay in the
// cache between passes; cold: 96 MB are written between passes (sources and output come from
// memory, as in a worker whose batch buffer was last written batches ago). One more row, int64
// only: a sketch of the AVX2 loop with streaming (non-temporal) stores, not in the kernels yet.
//
//   python scripts/bench_rebase_loops.py          # compiles this file against torch's headers
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "rebase_loops.h"

#if HETLOAD_REBASE_AVX2
#include <immintrin.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;

#if HETLOAD_REBASE_AVX2
// The int64 signed loop with streaming stores: the output lines are written without being read
// first (a plain store reads each line before writing it: 3 memory transfers per line instead
// of 2 when the output is not in the cache).
__attribute__((target("avx2"))) bool stream_int64(const int64_t* src, int64_t* dst, int64_t n,
                                                   int64_t base, int64_t lim) {
  int64_t i = 0;
  uint64_t acc = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 31); ++i) {
    const uint64_t v = static_cast<uint64_t>(src[i]);
    dst[i] = static_cast<int64_t>(v + base);
    acc |= v | (static_cast<uint64_t>(lim) - v);
  }
  const __m256i vb = _mm256_set1_epi64x(base), vl = _mm256_set1_epi64x(lim);
  __m256i va = _mm256_setzero_si256();
  for (; i + 4 <= n; i += 4) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_add_epi64(v, vb));
    va = _mm256_or_si256(va, _mm256_or_si256(v, _mm256_sub_epi64(vl, v)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), va);
  acc |= lanes[0] | lanes[1] | lanes[2] | lanes[3];
  for (; i < n; ++i) {
    const uint64_t v = static_cast<uint64_t>(src[i]);
    dst[i] = static_cast<int64_t>(v + base);
    acc |= v | (static_cast<uint64_t>(lim) - v);
  }
  _mm_sfence();  // the streamed lines are visible before whatever the caller does next
  return static_cast<int64_t>(acc) < 0;
}
#endif

// Writes `bytes` of `junk` (then the next pass's data come from memory), when cold.
void evict(std::vector<char>& junk) {
  for (size_t j = 0; j < junk.size(); j += 64) junk[j] = static_cast<char>(junk[j] + 1);
}

template <class T>
struct Batch {
  std::vector<std::vector<T>> src;
  std::vector<int64_t> count;
  std::vector<T> out;
};

template <class T>
Batch<T> make_batch(int batch, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> size(std::log(10000.0), 0.8);
  Batch<T> b;
  int64_t total = 0;
  for (int i = 0; i < batch; ++i) {
    const int64_t n = std::clamp<int64_t>(static_cast<int64_t>(size(rng)), 100, 200000);
    std::vector<T> faces(6 * n);
    for (auto& v : faces) v = static_cast<T>(rng() % n);
    b.count.push_back(n);
    b.src.push_back(std::move(faces));
    total += 6 * n;
  }
  b.out.resize(total);
  return b;
}

// One pass over the batch with `loop(src, dst, n, base, lim)`; true when some sample was bad.
template <class T, class Loop>
bool pass(Batch<T>& b, Loop loop) {
  int64_t at = 0, base = 0;
  bool bad = false;
  for (size_t i = 0; i < b.src.size(); ++i) {
    const int64_t n = static_cast<int64_t>(b.src[i].size());
    bad |= loop(b.src[i].data(), b.out.data() + at, n, static_cast<T>(base),
                static_cast<T>(b.count[i] - 1));
    at += n;
    base += b.count[i];
  }
  return bad;
}

template <class T>
void run(const char* dtype, int repeats, bool cold, std::vector<char>& junk) {
  using namespace hetload::rebase_detail;
  Batch<T> b = make_batch<T>(32, 0);
  struct Row {
    std::string name;
    bool (*loop)(const T*, T*, int64_t, T, T);
    std::vector<double> times;
  };
  std::vector<Row> rows = {
      {"memcpy (the floor)",
       [](const T* s, T* d, int64_t n, T, T) {
         std::memcpy(d, s, n * sizeof(T));
         return false;
       },
       {}},
      {"baseline loop (SSE2)", [](const T* s, T* d, int64_t n, T base, T lim) {
         return signed_copy<T>(s, d, n, base, lim);
       }, {}},
#if HETLOAD_REBASE_AVX2
      {"AVX2 loop", [](const T* s, T* d, int64_t n, T base, T lim) {
         return signed_copy_avx2<T>(s, d, n, base, lim);
       }, {}},
#endif
  };
#if HETLOAD_REBASE_AVX2
  if constexpr (std::is_same_v<T, int64_t>) {
    rows.push_back({"AVX2, streaming stores", stream_int64, {}});
  }
#endif
  for (auto& row : rows) pass(b, row.loop);  // warm-up, and the output's pages
  for (int r = 0; r < repeats; ++r) {
    for (size_t k = 0; k < rows.size(); ++k) {
      Row& row = rows[(k + r) % rows.size()];
      if (cold) evict(junk);
      const auto start = Clock::now();
      if (pass(b, row.loop)) std::puts("a sample was out of range (a bug of this benchmark)");
      row.times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
  }
  const double mb = static_cast<double>(b.out.size() * sizeof(T)) / 1e6;
  double floor_med = 0, floor_min = 0;
  for (auto& row : rows) {
    std::sort(row.times.begin(), row.times.end());
    const double med = row.times[row.times.size() / 2], low = row.times.front();
    if (floor_med == 0) floor_med = med, floor_min = low;
    std::printf("| %-4s | %-6s | %5.1f | %-22s | %9.3f | %6.2f | %7.3f | %14.2f |\n",
                cold ? "cold" : "warm", dtype, mb, row.name.c_str(), med * 1e3, med / floor_med,
                low * 1e3, low / floor_min);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 200;
  std::printf("re-base loops vs memcpy, B=32, median 10k vertices/mesh, faces [2n, 3], %d rounds\n",
              repeats);
  std::printf("| mode | dtype  |    MB | loop                   | median ms | / copy |  min ms | "
              "min / copy min |\n");
  std::printf("|------|--------|-------|------------------------|-----------|--------|---------|"
              "----------------|\n");
  std::vector<char> junk(96 << 20, 1);
  for (const bool cold : {false, true}) {
    run<int64_t>("int64", repeats, cold, junk);
    run<int32_t>("int32", repeats, cold, junk);
  }
  return 0;
}
