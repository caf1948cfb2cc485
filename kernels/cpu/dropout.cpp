// Counter-based inverted dropout: the keep decision for element (row, col) is a hash
// of (seed, first_row + row, col) (kernels/host_device.h, shared with CUDA), so a mask
// never depends on how a batch is split, and backward recomputes it instead of storing it.
#include "kernels/cpu/ops.h"

#include "kernels/host_device.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace lockstep::cpu {
namespace {

#if defined(__AVX2__)
__m256i mix32_x8(__m256i x) {
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(0x7FEB352Du)));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(0x846CA68Bu)));
  return _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
}
#endif

// Eight columns at a time, bit-identical to kernels::dropout_bits; returns how many
// leading columns it handled (the caller finishes the rest one by one).
uint32_t mask_row_vector(float* row, uint32_t ncols, uint64_t key, uint32_t threshold,
                         float keep_scale) {
#if defined(__AVX2__)
  const __m256i lo = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(key)));
  const __m256i hi = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(key >> 32)));
  // Unsigned compare through the sign flip: a >= b  <=>  (a ^ 2^31) >= (b ^ 2^31) signed.
  const __m256i sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  const __m256i thr = _mm256_xor_si256(_mm256_set1_epi32(static_cast<int>(threshold)), sign);
  const __m256 scale = _mm256_set1_ps(keep_scale);
  __m256i cols = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i step = _mm256_set1_epi32(8);
  uint32_t c = 0;
  for (; c + 8 <= ncols; c += 8) {
    const __m256i bits = mix32_x8(_mm256_add_epi32(mix32_x8(_mm256_xor_si256(cols, lo)), hi));
    const __m256i drop = _mm256_cmpgt_epi32(thr, _mm256_xor_si256(bits, sign));
    const __m256 kept = _mm256_mul_ps(_mm256_loadu_ps(row + c), scale);
    _mm256_storeu_ps(row + c, _mm256_andnot_ps(_mm256_castsi256_ps(drop), kept));
    cols = _mm256_add_epi32(cols, step);
  }
  return c;
#else
  return 0;
#endif
}

// x (rows, cols) *= keep(seed, first_row + r, c) / (1 - rate).
void apply_mask(float* x, int64_t rows, int64_t cols, float rate, uint64_t seed,
                int64_t first_row) {
  if (rate == 0.0f) return;
  if (rate >= 1.0f) {  // everything dropped (the threshold cannot express P(keep) = 0)
    for (int64_t i = 0; i < rows * cols; ++i) x[i] = 0.0f;
    return;
  }
  const uint32_t threshold = kernels::dropout_threshold(rate);
  const float keep_scale = 1.0f / (1.0f - rate);
  const uint32_t ncols = static_cast<uint32_t>(cols);
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t key = kernels::dropout_row_key(seed, first_row + r);
    float* row = x + r * cols;
    const uint32_t done = mask_row_vector(row, ncols, key, threshold, keep_scale);
    for (uint32_t c = done; c < ncols; ++c) {
      row[c] = kernels::dropout_bits(key, c) >= threshold ? row[c] * keep_scale : 0.0f;
    }
  }
}

}  // namespace

void dropout_forward(float* x, int64_t rows, int64_t cols, float rate, uint64_t seed,
                     int64_t first_row) {
  kernels::check_dropout_rate("lockstep::cpu::dropout_forward", rate);
  apply_mask(x, rows, cols, rate, seed, first_row);
}

void dropout_backward(float* dx, int64_t rows, int64_t cols, float rate, uint64_t seed,
                      int64_t first_row) {
  kernels::check_dropout_rate("lockstep::cpu::dropout_backward", rate);
  apply_mask(dx, rows, cols, rate, seed, first_row);
}

}  // namespace lockstep::cpu
