// The CPU kernel of torch.ops.hetload.rebase_index_: the copy that packs an index field (faces,
// edges) re-bases each sample's indices and checks their range in the same pass, so the bytes
// are read once and written once, as a plain copy would.
#include <algorithm>
#include <limits>
#include <type_traits>

#include "pad_host.h"
#include "rebase_loops.h"

namespace hetload {
namespace {

constexpr const char* kRebase = "hetload::rebase_index_";

// Samples per parallel task: about 256 KiB of output each (one task when single-threaded, as
// in DataLoader workers).
int64_t grain(int64_t total_bytes, int64_t batch) {
  const int64_t mean = std::max<int64_t>(1, total_bytes / std::max<int64_t>(1, batch));
  return std::max<int64_t>(1, (int64_t{1} << 18) / mean);
}

// out's rows, in order, are samples[i] + bases[i]; returns the first i whose sample holds an
// index outside [0, counts[i]), or -1 (then out is complete; else its content is unspecified).
int64_t rebase_index_(std::vector<Tensor> samples, Tensor out, std::vector<int64_t> bases,
                      std::vector<int64_t> counts) {
  const int64_t batch = static_cast<int64_t>(samples.size());
  STD_TORCH_CHECK(static_cast<int64_t>(bases.size()) == batch &&
                      static_cast<int64_t>(counts.size()) == batch,
                  kRebase, ": ", batch, " samples but ", bases.size(), " bases and ",
                  counts.size(), " counts");
  const ScalarType dtype = out.scalar_type();
  STD_TORCH_CHECK(is_index_dtype(dtype), kRebase, ": an index field must be integer, got ",
                  dtype_name(dtype));
  STD_TORCH_CHECK(out.dim() >= 1 && out.is_contiguous(), kRebase,
                  ": out must be a contiguous [sum N_i, ...] tensor");
  const int64_t top = index_max(dtype);
  std::vector<Tensor> sources;
  std::vector<int64_t> starts(batch + 1, 0);
  sources.reserve(batch);
  for (int64_t i = 0; i < batch; ++i) {
    const Tensor& s = samples[i];
    STD_TORCH_CHECK(s.scalar_type() == dtype, kRebase, ": sample ", i, " has dtype ",
                    dtype_name(s.scalar_type()), ", out has ",
                    dtype_name(dtype));
    STD_TORCH_CHECK(s.device() == out.device(), kRebase, ": sample ", i,
                    " is not on out's device");
    STD_TORCH_CHECK(s.dim() == out.dim(), kRebase, ": sample ", i, " has ", s.dim(),
                    " dims, out has ", out.dim());
    for (int64_t d = 1; d < s.dim(); ++d) {
      STD_TORCH_CHECK(s.size(d) == out.size(d), kRebase, ": sample ", i,
                      "'s trailing shape does not match out's");
    }
    STD_TORCH_CHECK(counts[i] >= 0 && bases[i] >= 0, kRebase, ": sample ", i, " has base ",
                    bases[i], " and count ", counts[i], "; both must be >= 0");
    STD_TORCH_CHECK(counts[i] == 0 || bases[i] <= top - (counts[i] - 1), kRebase, ": sample ",
                    i, "'s packed indices reach ", bases[i], " + ", counts[i] - 1,
                    ", more than ", dtype_name(dtype), " holds");
    starts[i + 1] = starts[i] + s.numel();
    sources.push_back(s.is_contiguous() ? s : torch::stable::contiguous(s));
  }
  STD_TORCH_CHECK(starts[batch] == out.numel(), kRebase, ": the samples hold ", starts[batch],
                  " elements, out ", out.numel());
  std::vector<unsigned char> bad(batch, 0);
  with_index_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* dst = static_cast<T*>(out.mutable_data_ptr());
    const int64_t total_bytes = out.numel() * static_cast<int64_t>(sizeof(T));
    torch::stable::parallel_for(0, batch, grain(total_bytes, batch), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const T* src = static_cast<const T*>(sources[i].const_data_ptr());
        bad[i] = rebase_one<T>(src, dst + starts[i], starts[i + 1] - starts[i], bases[i],
                               counts[i]);
      }
    });
  });
  for (int64_t i = 0; i < batch; ++i) {
    if (bad[i]) return i;
  }
  return -1;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(hetload, CPU, m) {
  m.impl("rebase_index_", TORCH_BOX(&rebase_index_));
}

}  // namespace hetload
