// hetload.batched.random's counter-based draws in C++, shared by the CPU kernels (g++) and the
// CUDA kernels (nvcc): a draw is a pure function of (sample seed, stream, counter), so a
// sample's numbers do not depend on its batch or device. The integer part (hash32) equals the
// Python one bit for bit; uniform() is exact from it; normal() uses the C library's log and sqrt
// and a polynomial cos (within about 1e-15 of torch's float64 result).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "pad_common.h"  // HETLOAD_HD

namespace hetload {
namespace random {

constexpr uint32_t kGolden = 0x9E3779B9u;

// MurmurHash3's finalizer (hetload.batched.random.mix32)
HETLOAD_HD uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x85EBCA6Bu;
  x ^= x >> 13;
  x *= 0xC2B2AE35u;
  return x ^ (x >> 16);
}

// the per-(seed, stream) half of hash32: a kernel drawing many counters of one sample makes it
// once
HETLOAD_HD uint32_t key32(int64_t seed, int64_t stream) {
  const uint32_t salt = static_cast<uint32_t>(static_cast<uint64_t>(stream) * kGolden);
  return mix32(static_cast<uint32_t>(static_cast<uint64_t>(seed)) ^ salt);
}

HETLOAD_HD uint32_t hash32_keyed(uint32_t key, int64_t counter) {
  return mix32(key ^ mix32(static_cast<uint32_t>(static_cast<uint64_t>(counter))));
}

// hetload.batched.random.hash32(seed, stream, counter): keyed = mix(seed ^ salt), then
// mix(keyed ^ mix(counter)), all on the low 32 bits
HETLOAD_HD uint32_t hash32(int64_t seed, int64_t stream, int64_t counter) {
  return hash32_keyed(key32(seed, stream), counter);
}

// hetload.batched.random.uniform: (h + 0.5) / 2**32, in (0, 1), exact
HETLOAD_HD double uniform_keyed(uint32_t key, int64_t counter) {
  return (static_cast<double>(hash32_keyed(key, counter)) + 0.5) * (1.0 / 4294967296.0);
}

HETLOAD_HD double uniform(int64_t seed, int64_t stream, int64_t counter) {
  return uniform_keyed(key32(seed, stream), counter);
}

// cos(x) and sin(x) for |x| <= pi / 4: Taylor polynomials in x^2 whose first omitted terms
// are below 1e-17 there (Horner's rule)
HETLOAD_HD double cos_quarter(double x) {
  const double z = x * x;
  return 1.0 +
         z * (-1.0 / 2 +
              z * (1.0 / 24 +
                   z * (-1.0 / 720 +
                        z * (1.0 / 40320 +
                             z * (-1.0 / 3628800 +
                                  z * (1.0 / 479001600 +
                                       z * (-1.0 / 87178291200.0 +
                                            z * (1.0 / 20922789888000.0))))))));
}

HETLOAD_HD double sin_quarter(double x) {
  const double z = x * x;
  return x * (1.0 +
              z * (-1.0 / 6 +
                   z * (1.0 / 120 +
                        z * (-1.0 / 5040 +
                             z * (1.0 / 362880 +
                                  z * (-1.0 / 39916800 +
                                       z * (1.0 / 6227020800.0 +
                                            z * (-1.0 / 1307674368000.0 +
                                                 z * (1.0 / 355687428096000.0)))))))));
}

// cos(2 pi u) for u in (0, 1), reduced by symmetry to an argument of at most pi / 4:
// cos(2 pi u) = cos(2 pi (1 - u)) = -cos(2 pi (1/2 - u)) and cos(2 pi s) = sin(2 pi (1/4 - s)),
// every difference exact (u has at most 33 significant bits). On the CPU the C library's cos
// costs about 20 ns, four times the rest of a draw, and cannot be vectorized; this is within
// about 1e-15 of it (float64 rounding of the argument and of the polynomial). The GPU uses
// CUDA's cos.
HETLOAD_HD double cos_two_pi(double u) {
#if defined(__CUDA_ARCH__)
  return cos(6.283185307179586 * u);  // float64(2 * pi), as 2 * torch.pi
#else
  constexpr double kTwoPi = 6.283185307179586;
  // selects rather than branches: u is random, a branch would be mispredicted half the time
  const double t = u < 1.0 - u ? u : 1.0 - u;  // [0, 1/2]
  const double s = t < 0.5 - t ? t : 0.5 - t;  // [0, 1/4]
  const bool by_sin = s > 0.125;
  const double x = kTwoPi * (by_sin ? 0.25 - s : s);
  const double cq = cos_quarter(x);
  const double sq = sin_quarter(x);
  const double c = by_sin ? sq : cq;
  return t <= 0.25 ? c : -c;
#endif
}

// log(u) for u in (0, 1) (normal doubles: a uniform is at least 2**-33). On the GPU the CUDA
// library's. On the CPU the C library's log is a call the compiler cannot vectorize; this is
// the classic reduction (u = 2**k m, m in [sqrt(1/2), sqrt(2)), f = m - 1, s = f / (2 + f),
// log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2))) with the well-known minimax coefficients of R,
// branch-free, within an ulp or two of the C library's.
HETLOAD_HD double log_unit(double u) {
#if defined(__CUDA_ARCH__)
  return log(u);
#else
  uint64_t bits;
  std::memcpy(&bits, &u, sizeof bits);
  // the exponent as a double without an int -> double conversion: 2**52 + e, minus 2**52
  uint64_t e_bits = (bits >> 52) | 0x4330000000000000ull;
  double e;
  std::memcpy(&e, &e_bits, sizeof e);
  uint64_t m_bits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
  double m;
  std::memcpy(&m, &m_bits, sizeof m);  // [1, 2)
  const bool high = m > 1.4142135623730951;
  m = high ? 0.5 * m : m;
  const double k = (e - (4503599627370496.0 + 1023.0)) + (high ? 1.0 : 0.0);
  const double f = m - 1.0;
  const double s = f / (2.0 + f);
  const double z = s * s;
  const double w = z * z;
  const double t1 = w * (3.999999999940941908e-01 +
                         w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
  const double t2 =
      z * (6.666666666666735130e-01 +
           w * (2.857142874366239149e-01 +
                w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
  const double r = t2 + t1;
  const double hfsq = 0.5 * f * f;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  return k * kLn2Hi - ((hfsq - (s * (hfsq + r) + k * kLn2Lo)) - f);
#endif
}

// hetload.batched.random.normal: Box-Muller on counters 2c and 2c + 1, the cosine branch
HETLOAD_HD double normal(int64_t seed, int64_t stream, int64_t counter) {
  const double u1 = uniform(seed, stream, 2 * counter);
  const double u2 = uniform(seed, stream, 2 * counter + 1);
  return sqrt(-2.0 * log_unit(u1)) * cos_two_pi(u2);
}

}  // namespace random
}  // namespace hetload
