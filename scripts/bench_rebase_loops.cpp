// The re-base loops of cuda/rebase_loops.h alone, against memcpy of the same bytes, in one run:
// the baseline (SSE2) and AVX2 builds of the signed int64 and int32 copies, as collate's index copy
// calls them (B = 32 meshes, log-normal sizes with median 10k vertices, faces [2n, 3], one reused
// output), single-threaded. Medians and minimums of --repeats rounds; the contenders alternate
// within each round so load on the machine hits them alike.
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

namespace {

using Clock = std::chrono::steady_clock;

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
void run(const char* dtype, int repeats) {
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
  for (auto& row : rows) pass(b, row.loop);  // warm-up, and the output's pages
  for (int r = 0; r < repeats; ++r) {
    for (size_t k = 0; k < rows.size(); ++k) {
      Row& row = rows[(k + r) % rows.size()];
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
    std::printf("| %-6s | %5.1f | %-22s | %9.3f | %6.2f | %7.3f | %14.2f |\n", dtype, mb,
                row.name.c_str(), med * 1e3, med / floor_med, low * 1e3, low / floor_min);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 200;
  std::printf("re-base loops vs memcpy, B=32, median 10k vertices/mesh, faces [2n, 3], %d rounds\n",
              repeats);
  std::printf("| dtype  |    MB | loop                   | median ms | / copy |  min ms | min / copy min |\n");
  std::printf("|--------|-------|------------------------|-----------|--------|---------|----------------|\n");
  run<int64_t>("int64", repeats);
  run<int32_t>("int32", repeats);
  return 0;
}
