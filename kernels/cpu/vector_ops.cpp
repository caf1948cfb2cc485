// Level-1 vector kernels on the flat arenas: sum of squares (gradient norms,
// accumulated in double), the bitwise finiteness check and largest magnitude,
// axpy and scale.
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

namespace {

// The largest magnitude's bit pattern: the bits of |x| order as the magnitudes
// do, Inf's (0x7f800000) exceed every finite one's and a NaN's exceed Inf's. An
// unsigned max reduction vectorises with plain -O2, unlike a float one.
uint32_t widest_bits(const float* x, int64_t n) {
  uint32_t worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    worst = std::max(worst, bits & 0x7fffffffu);
  }
  return worst;
}

}  // namespace

bool all_finite(const float* x, int64_t n) {
  constexpr int64_t kBlock = 4096;  // stop early on a bad block, do not branch per element
  for (int64_t start = 0; start < n; start += kBlock) {
    if (widest_bits(x + start, std::min(kBlock, n - start)) >= 0x7f800000u) return false;
  }
  return true;
}

float max_abs(const float* x, int64_t n) {
  const uint32_t bits = widest_bits(x, n);
  float widest;
  std::memcpy(&widest, &bits, sizeof widest);
  return widest;
}

void axpy(int64_t n, float alpha, const float* __restrict x, float* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void scale(float* x, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

}  // namespace lockstep::cpu
