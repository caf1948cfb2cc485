// Level-1 vector kernels on the flat arenas: sum of squares (gradient norms and the
// finiteness check, accumulated in double), the bitwise finiteness check, axpy
// and scale.
#include "kernels/cpu/ops.h"

#include <algorithm>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace lockstep::cpu {

double sum_squares(const float* x, int64_t n) {
  int64_t i = 0;
  double total = 0.0;
#if defined(__AVX2__) && defined(__FMA__)
  // Every float is widened before squaring, so the sum is as exact as the scalar
  // double loop (only the order differs). Four independent accumulators hide the
  // FMA latency.
  __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                    _mm256_setzero_pd()};
  for (; i + 16 <= n; i += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + i);
    const __m256 x1 = _mm256_loadu_ps(x + i + 8);
    const __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(x0));
    const __m256d d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(x0, 1));
    const __m256d d2 = _mm256_cvtps_pd(_mm256_castps256_ps128(x1));
    const __m256d d3 = _mm256_cvtps_pd(_mm256_extractf128_ps(x1, 1));
    acc[0] = _mm256_fmadd_pd(d0, d0, acc[0]);
    acc[1] = _mm256_fmadd_pd(d1, d1, acc[1]);
    acc[2] = _mm256_fmadd_pd(d2, d2, acc[2]);
    acc[3] = _mm256_fmadd_pd(d3, d3, acc[3]);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]),
                                       _mm256_add_pd(acc[2], acc[3])));
  total = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
#endif
  for (; i < n; ++i) total += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return total;
}

bool all_finite(const float* x, int64_t n) {
  // The largest magnitude bit pattern: NaN and Inf are exactly those with all
  // exponent bits set (>= 0x7f800000 once the sign is cleared). An unsigned max
  // reduction vectorises with plain -O2, unlike a float one.
  constexpr int64_t kBlock = 4096;  // stop early on a bad block, do not branch per element
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t end = std::min(n, start + kBlock);
    uint32_t worst = 0;
    for (int64_t i = start; i < end; ++i) {
      uint32_t bits;
      std::memcpy(&bits, x + i, sizeof bits);
      worst = std::max(worst, bits & 0x7fffffffu);
    }
    if (worst >= 0x7f800000u) return false;
  }
  return true;
}

void axpy(int64_t n, float alpha, const float* __restrict x, float* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void scale(float* x, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

}  // namespace lockstep::cpu
