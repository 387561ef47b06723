// The CPU kernel of torch.ops.hetload.read_members_: a batch of shard samples read straight into
// their batch buffer, checked and (index fields) re-based, with the GIL released.
//
// Each sample is one byte range [start, end) of a tar shard. Its array members' data goes to
// its place in the batch buffer; every other byte (tar headers, padding, each .npy header, the
// .json member) goes to a scratch buffer, in file order. One preadv per sample (more when it
// needs over IOV_MAX pieces). Then, while the sample's bytes are still in cache:
//   - every member's tar header must hold the writer's exact name and size fields;
//   - every array's .npy header must be byte for byte the one the caller's layout assumed;
//   - an index member (faces) is re-based in place and its range checked (rebase_loops.h).
// Any mismatch stops the read and names the sample and the reason; the caller then reads the
// batch by its per-sample path, which reports what is wrong (hetload/data/batch_read.py).
#include <errno.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "pad_host.h"
#include "rebase_loops.h"

namespace hetload {
namespace {

constexpr const char* kRead = "hetload::read_members_";
constexpr int64_t kBlock = 512;  // a tar header

// the columns of the members table, one row per member, in the tar's order within a sample
enum Col : int64_t {
  kSample = 0,   // the sample (row of spans) holding this member
  kOffset,       // file offset of the member's data
  kSize,         // the member's data bytes (its tar size field)
  kNpyLen,       // bytes of .npy header before the array data; -1: the whole member to scratch
  kDst,          // byte offset in buffer of the array data
  kNameAt,       // the expected tar name: names[name_at : name_at + name_len]
  kNameLen,
  kExpectAt,     // the expected .npy header: expect[expect_at : expect_at + npy_len]
  kBase,         // index member: re-base by this (-1: not an index member)
  kCount,        //   and check every index is in [0, count)
  kItem,         //   index width in bytes (4: int32, 8: int64)
  kJson,         // 1: this member's (scratch position, size) is the sample's json
  kCols
};

// why a sample was refused (returned as sample * 8 + reason)
enum Reason : int64_t {
  kLayout = 1,   // members out of order, outside the sample, a size not a whole array
  kShort = 2,    // the file is shorter than the index says, or a read error
  kName = 3,     // a tar header's name field differs from the key and suffix
  kSizeField = 4,  // a tar header's size field differs from the index
  kNpy = 5,      // an .npy header differs from the layout's
  kRange = 6,    // an index outside [0, count)
};

// Reads [start, start + total) of fd into the iovecs, following short reads and EINTR.
bool read_all(int fd, std::vector<struct iovec>& iov, int64_t start, int64_t total) {
  size_t first = 0;
  int64_t done = 0;
  while (done < total) {
    const int n = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    const ssize_t got = ::preadv(fd, iov.data() + first, n, start + done);
    if (got < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (got == 0) return false;  // end of file before the sample's end
    done += got;
    size_t left = static_cast<size_t>(got);
    while (first < iov.size() && left >= iov[first].iov_len) {
      left -= iov[first].iov_len;
      ++first;
    }
    if (left) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return true;
}

// The tar header at h names the member `name` (NUL-padded to 100 bytes) with size `size` (11
// octal digits), exactly as hetload's writer puts them.
bool name_matches(const unsigned char* h, const unsigned char* name, int64_t len) {
  if (len > 100 || std::memcmp(h, name, static_cast<size_t>(len)) != 0) return false;
  for (int64_t i = len; i < 100; ++i) {
    if (h[i] != 0) return false;
  }
  return true;
}

// [at, at + len) lies inside [0, total), computed without overflow for any int64 inputs (an
// inconsistent table must raise, never wrap around into an address outside the tensor).
bool fits(int64_t at, int64_t len, int64_t total) {
  return at >= 0 && len >= 0 && at <= total && len <= total - at;
}

bool size_matches(const unsigned char* h, int64_t size) {
  char digits[16];
  std::snprintf(digits, sizeof(digits), "%011llo", static_cast<unsigned long long>(size));
  return std::strlen(digits) == 11 && std::memcmp(h + 124, digits, 11) == 0;
}

template <class T>
bool rebase_member(unsigned char* p, int64_t bytes, int64_t base, int64_t count) {
  if (bytes % static_cast<int64_t>(sizeof(T)) != 0) return true;
  return rebase_one<T>(reinterpret_cast<T*>(p), reinterpret_cast<T*>(p),
                       bytes / static_cast<int64_t>(sizeof(T)), base, count);
}

// An index member's re-base must be one the loops can do without wrapping: width int32 or int64,
// a count >= 0, every packed index (base + count - 1) representable, the data aligned to the
// width. Checked before anything is read (an inconsistent table raises, never gives wrong data).
void check_rebase(const int64_t* row, const unsigned char* p, int64_t m) {
  const int64_t base = row[kBase], item = row[kItem], cnt = row[kCount];
  const int64_t top = item == 4 ? std::numeric_limits<int32_t>::max()
                                : std::numeric_limits<int64_t>::max();
  // (a sample with no target rows may sit past the last one: any index it holds is refused)
  STD_TORCH_CHECK((item == 4 || item == 8) && cnt >= 0 &&
                      (cnt == 0 || (base <= top && cnt - 1 <= top - base)),
                  kRead, ": member ", m, " has a re-base (base ", base, ", count ", cnt,
                  ", width ", item, ") outside its index width");
  STD_TORCH_CHECK(reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(item) == 0, kRead,
                  ": member ", m, "'s index data is not aligned to its width");
}

int64_t read_members_(Tensor buffer, Tensor scratch, Tensor spans, Tensor members, Tensor names,
                      Tensor expect, Tensor json) {
  for (const Tensor* t : {&buffer, &scratch, &names, &expect}) {
    STD_TORCH_CHECK(t->scalar_type() == ScalarType::Byte && t->dim() == 1 && t->is_contiguous() &&
                        t->is_cpu(),
                    kRead, ": buffer, scratch, names and expect must be contiguous uint8 [n]");
  }
  STD_TORCH_CHECK(spans.scalar_type() == ScalarType::Long && spans.dim() == 2 &&
                      spans.size(1) == 3 && spans.is_contiguous() && spans.is_cpu(),
                  kRead, ": spans must be a contiguous int64 [B, 3] (start, end, fd)");
  STD_TORCH_CHECK(members.scalar_type() == ScalarType::Long && members.dim() == 2 &&
                      members.size(1) == kCols && members.is_contiguous() && members.is_cpu(),
                  kRead, ": members must be a contiguous int64 [M, ", int64_t{kCols}, "]");
  const int64_t batch = spans.size(0);
  STD_TORCH_CHECK(json.scalar_type() == ScalarType::Long && json.dim() == 2 &&
                      json.size(0) == batch && json.size(1) == 2 && json.is_contiguous() &&
                      json.is_cpu(),
                  kRead, ": json must be a contiguous int64 [B, 2]");
  const int64_t* span = static_cast<const int64_t*>(spans.const_data_ptr());
  const int64_t* mem = static_cast<const int64_t*>(members.const_data_ptr());
  const int64_t count = members.size(0);
  unsigned char* buf = static_cast<unsigned char*>(buffer.mutable_data_ptr());
  unsigned char* scr = static_cast<unsigned char*>(scratch.mutable_data_ptr());
  const unsigned char* name_blob = static_cast<const unsigned char*>(names.const_data_ptr());
  const unsigned char* expect_blob = static_cast<const unsigned char*>(expect.const_data_ptr());
  int64_t* json_out = static_cast<int64_t*>(json.mutable_data_ptr());
  const int64_t buf_len = buffer.numel(), scr_len = scratch.numel();
  const int64_t names_len = names.numel(), expect_len = expect.numel();
  for (int64_t j = 0; j < 2 * batch; ++j) json_out[j] = -1;

  std::vector<struct iovec> iov;
  std::vector<int64_t> headers;  // scratch position of each member's tar header
  int64_t pos = 0;               // next free byte of scratch
  int64_t m = 0;                 // next member row
  for (int64_t j = 0; j < batch; ++j) {
    const int64_t start = span[3 * j], end = span[3 * j + 1];
    const int fd = static_cast<int>(span[3 * j + 2]);
    STD_TORCH_CHECK(start >= 0 && end >= start, kRead, ": sample ", j, " has span [", start,
                    ", ", end, ")");
    const int64_t first = m;
    iov.clear();
    headers.clear();
    int64_t cur = start;
    auto to_scratch = [&](int64_t len) {
      STD_TORCH_CHECK(fits(pos, len, scr_len), kRead, ": scratch holds ", scr_len,
                      " bytes, sample ", j, " needs more");
      if (len > 0) iov.push_back({scr + pos, static_cast<size_t>(len)});
      pos += len;
    };
    for (; m < count && mem[m * kCols + kSample] == j; ++m) {
      const int64_t* row = mem + m * kCols;
      const int64_t offset = row[kOffset], size = row[kSize], npy = row[kNpyLen];
      // (cur >= start >= 0 and offset >= cur: no difference below overflows)
      if (offset < cur || offset - cur < kBlock || size < 0 || offset > end ||
          size > end - offset) {
        return j * 8 + kLayout;
      }
      // the table's own positions are checked before any read, whatever the file holds
      STD_TORCH_CHECK(fits(row[kNameAt], row[kNameLen], names_len), kRead, ": member ", m,
                      "'s name is outside names");
      STD_TORCH_CHECK(npy < 0 || fits(row[kExpectAt], npy, expect_len), kRead, ": member ", m,
                      "'s .npy header is outside expect");
      const int64_t gap = offset - cur;  // other bytes, padding, then this member's tar header
      to_scratch(gap);
      headers.push_back(pos - kBlock);
      if (npy < 0) {
        if (row[kJson]) {
          json_out[2 * j] = pos;
          json_out[2 * j + 1] = size;
        }
        to_scratch(size);
      } else {
        if (npy > size) return j * 8 + kLayout;
        to_scratch(npy);
        const int64_t dst = row[kDst], data = size - npy;
        STD_TORCH_CHECK(fits(dst, data, buf_len), kRead, ": member ", m, " of sample ",
                        j, " does not fit the buffer");
        if (data > 0) iov.push_back({buf + dst, static_cast<size_t>(data)});
        if (row[kBase] >= 0) check_rebase(row, buf + dst, m);
      }
      cur = offset + size;
    }
    STD_TORCH_CHECK(m == count || mem[m * kCols + kSample] > j, kRead,
                    ": members must be in sample order");
    to_scratch(end - cur);
    if (!read_all(fd, iov, start, end - start)) return j * 8 + kShort;

    // the checks and the re-base, on bytes just read
    for (int64_t k = first; k < m; ++k) {
      const int64_t* row = mem + k * kCols;
      const unsigned char* h = scr + headers[k - first];
      const int64_t name_at = row[kNameAt], name_len = row[kNameLen];
      if (!name_matches(h, name_blob + name_at, name_len)) return j * 8 + kName;
      if (!size_matches(h, row[kSize])) return j * 8 + kSizeField;
      const int64_t npy = row[kNpyLen];
      if (npy < 0) continue;
      const int64_t at = row[kExpectAt];
      if (std::memcmp(h + kBlock, expect_blob + at, static_cast<size_t>(npy)) != 0) {
        return j * 8 + kNpy;
      }
      const int64_t base = row[kBase];
      if (base < 0) continue;
      unsigned char* p = buf + row[kDst];
      const int64_t bytes = row[kSize] - npy;
      const bool bad = row[kItem] == 4 ? rebase_member<int32_t>(p, bytes, base, row[kCount])
                                       : rebase_member<int64_t>(p, bytes, base, row[kCount]);
      if (bad) return j * 8 + kRange;
    }
  }
  STD_TORCH_CHECK(m == count, kRead, ": ", count - m, " members name no sample");
  return -1;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(hetload, CPU, m) {
  m.impl("read_members_", TORCH_BOX(&read_members_));
}

}  // namespace hetload
