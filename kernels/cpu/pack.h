// Internal to kernels/cpu: elementwise math in fixed packs of 8 floats (one AVX
// register). Every element, tails included (zero-padded), goes through the same
// vector code, so a value's result never depends on its address or its position in
// a buffer: the same row gives bitwise the same output however a batch is split.
#pragma once

#include <cstdint>

#include <Eigen/Core>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace lockstep::cpu::detail {

constexpr int kPack = 8;
using Pack = Eigen::Array<float, kPack, 1>;

#if defined(__AVX2__)
// Lanes [0, len) set.
inline __m256i tail_mask(int len) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(len), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

// len in [1, kPack]; lanes past len read as `pad`.
inline Pack load_pack(const float* p, int len, float pad = 0.0f) {
  if (len == kPack) return Eigen::Map<const Pack>(p);  // one unaligned vector load
  Pack v;
#if defined(__AVX2__)
  // Masked load: no read past the end, and no scalar stores feeding a vector load
  // (a store-forwarding stall that dominated rows of 10 classes).
  const __m256i mask = tail_mask(len);
  const __m256 loaded = _mm256_maskload_ps(p, mask);
  _mm256_storeu_ps(v.data(), _mm256_blendv_ps(_mm256_set1_ps(pad), loaded,
                                               _mm256_castsi256_ps(mask)));
#else
  v = Pack::Constant(pad);
  for (int j = 0; j < len; ++j) v[j] = p[j];
#endif
  return v;
}

inline void store_pack(float* p, int len, const Pack& v) {
  if (len == kPack) {
    Eigen::Map<Pack> dst(p);
    dst = v;
    return;
  }
#if defined(__AVX2__)
  _mm256_maskstore_ps(p, tail_mask(len), _mm256_loadu_ps(v.data()));
#else
  for (int j = 0; j < len; ++j) p[j] = v[j];
#endif
}

// Calls f(offset, len) for consecutive packs covering [0, n).
template <class F>
inline void for_each_pack(int64_t n, F&& f) {
  for (int64_t i = 0; i < n; i += kPack) {
    f(i, static_cast<int>(n - i < kPack ? n - i : kPack));
  }
}

}  // namespace lockstep::cpu::detail
