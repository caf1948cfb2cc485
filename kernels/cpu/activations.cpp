// Dense-layer elementwise kernels: fused bias + activation, activation backward and
// the bias gradient. The math runs on 8-float Eigen packs (AVX2/FMA under
// -march=native, SSE or scalar otherwise), position-independent (see pack.h).
#include "kernels/cpu/ops.h"

#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "kernels/cpu/pack.h"
#include "kernels/host_device.h"

namespace lockstep::cpu {
namespace {

using detail::load_pack;
using detail::Pack;
using detail::store_pack;
using kernels::kGeluA;
using kernels::kGeluC;

template <Activation A>
Pack activate(const Pack& z) {
  if constexpr (A == Activation::kLinear) return z;
  if constexpr (A == Activation::kRelu) return z.max(0.0f);
  if constexpr (A == Activation::kTanh) return z.tanh();
  if constexpr (A == Activation::kSigmoid) return z.logistic();
  if constexpr (A == Activation::kGelu)
    return 0.5f * z * (1.0f + (kGeluC * (z + kGeluA * z.cube())).tanh());
}

// d_out * d act/dz, from z and y = act(z) (whichever is cheaper per activation).
template <Activation A>
Pack backward(const Pack& g, const Pack& z, const Pack& y) {
  if constexpr (A == Activation::kLinear) return g;
  if constexpr (A == Activation::kTanh) return g * (1.0f - y.square());
  if constexpr (A == Activation::kSigmoid) return g * (y * (1.0f - y));
  if constexpr (A == Activation::kGelu) {
    const Pack t = (kGeluC * (z + kGeluA * z.cube())).tanh();  // as in forward
    return g * (0.5f * (1.0f + t) + 0.5f * z * (1.0f - t.square()) * kGeluC *
                                        (1.0f + 3.0f * kGeluA * z.square()));
  }
}

// ReLU backward is a pure select (exact), written with intrinsics because Eigen 3.4
// does not vectorise select(): the scalar version branches on random signs.
void relu_backward(const float* d_out, const float* z, float* dz, int64_t n) {
  int64_t i = 0;
#if defined(__AVX2__)
  const __m256 zero = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    const __m256 positive = _mm256_cmp_ps(_mm256_loadu_ps(z + i), zero, _CMP_GT_OQ);
    _mm256_storeu_ps(dz + i, _mm256_and_ps(_mm256_loadu_ps(d_out + i), positive));
  }
#endif
  for (; i < n; ++i) dz[i] = z[i] > 0.0f ? d_out[i] : 0.0f;
}

template <Activation A>
void forward_rows(float* z, const float* bias, float* out, int64_t rows, int64_t cols) {
  // Row by row so the row just biased is still in L1 when the activation reads it.
  for (int64_t r = 0; r < rows; ++r) {
    float* zr = z + r * cols;
    float* outr = out + r * cols;
    detail::for_each_pack(cols, [&](int64_t i, int len) {
      const Pack pre = load_pack(zr + i, len) + load_pack(bias + i, len);
      store_pack(zr + i, len, pre);
      store_pack(outr + i, len, activate<A>(pre));
    });
  }
}

template <Activation A>
void backward_all(const float* d_out, const float* z, const float* out, float* dz, int64_t n) {
  detail::for_each_pack(n, [&](int64_t i, int len) {
    const Pack g = load_pack(d_out + i, len);
    // Only what the activation's derivative reads is loaded.
    const Pack zi = A == Activation::kGelu ? load_pack(z + i, len) : Pack::Zero();
    const Pack yi = (A == Activation::kTanh || A == Activation::kSigmoid)
                        ? load_pack(out + i, len)
                        : Pack::Zero();
    store_pack(dz + i, len, backward<A>(g, zi, yi));
  });
}

}  // namespace

void bias_activation_forward(float* z, const float* bias, float* out, int64_t rows,
                             int64_t cols, Activation act) {
  switch (act) {
    case Activation::kLinear: return forward_rows<Activation::kLinear>(z, bias, out, rows, cols);
    case Activation::kRelu: return forward_rows<Activation::kRelu>(z, bias, out, rows, cols);
    case Activation::kTanh: return forward_rows<Activation::kTanh>(z, bias, out, rows, cols);
    case Activation::kSigmoid:
      return forward_rows<Activation::kSigmoid>(z, bias, out, rows, cols);
    case Activation::kGelu: return forward_rows<Activation::kGelu>(z, bias, out, rows, cols);
  }
}

void activation_backward(const float* d_out, const float* z, const float* out, float* dz,
                         int64_t n, Activation act) {
  switch (act) {
    case Activation::kLinear:
      if (dz != d_out) std::memcpy(dz, d_out, sizeof(float) * static_cast<size_t>(n));
      return;
    case Activation::kRelu: return relu_backward(d_out, z, dz, n);
    case Activation::kTanh: return backward_all<Activation::kTanh>(d_out, z, out, dz, n);
    case Activation::kSigmoid: return backward_all<Activation::kSigmoid>(d_out, z, out, dz, n);
    case Activation::kGelu: return backward_all<Activation::kGelu>(d_out, z, out, dz, n);
  }
}

void bias_grad(const float* dz, float* db, int64_t rows, int64_t cols, float beta) {
  // Plain adds, exact per element whatever the vector width: no pack needed.
  if (beta == 0.0f) {
    for (int64_t c = 0; c < cols; ++c) db[c] = 0.0f;  // db may hold garbage: never read it
  } else if (beta != 1.0f) {
    for (int64_t c = 0; c < cols; ++c) db[c] *= beta;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = dz + r * cols;
    for (int64_t c = 0; c < cols; ++c) db[c] += row[c];
  }
}

}  // namespace lockstep::cpu
