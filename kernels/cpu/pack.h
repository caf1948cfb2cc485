// Internal to kernels/cpu: elementwise math in fixed packs of 8 floats (one AVX
// register). Every element, tails included (zero-padded), goes through the same
// vector code, so a value's result never depends on its address or its position in
// a buffer: the same row gives bitwise the same output however a batch is split.
#pragma once

#include <cstdint>
#include <cstring>

#include <Eigen/Core>

namespace lockstep::cpu::detail {

constexpr int kPack = 8;
using Pack = Eigen::Array<float, kPack, 1>;

// len in [1, kPack]; lanes past len read as `pad`.
inline Pack load_pack(const float* p, int len, float pad = 0.0f) {
  Pack v = Pack::Constant(pad);
  std::memcpy(v.data(), p, sizeof(float) * static_cast<size_t>(len));
  return v;
}

inline void store_pack(float* p, int len, const Pack& v) {
  std::memcpy(p, v.data(), sizeof(float) * static_cast<size_t>(len));
}

// Calls f(offset, len) for consecutive packs covering [0, n).
template <class F>
inline void for_each_pack(int64_t n, F&& f) {
  for (int64_t i = 0; i < n; i += kPack) {
    f(i, static_cast<int>(n - i < kPack ? n - i : kPack));
  }
}

}  // namespace lockstep::cpu::detail
