// Dense-layer elementwise kernels: fused bias + activation, activation backward and
// the bias gradient. The math runs on 8-float Eigen packs (AVX2/FMA under
// -march=native, SSE or scalar otherwise), position-independent (see pack.h).
#include "kernels/cpu/ops.h"

#include <cstring>

#include "kernels/cpu/pack.h"
#include "kernels/host_device.h"

namespace lockstep::cpu {
namespace {

using detail::load_pack;
using detail::Pack;
using detail::store_pack;
using kernels::kGeluA;
using kernels::kGeluC;

Pack activate(const Pack& z, Activation act) {
  switch (act) {
    case Activation::kLinear: return z;
    case Activation::kRelu: return z.max(0.0f);
    case Activation::kTanh: return z.tanh();
    case Activation::kSigmoid: return z.logistic();
    case Activation::kGelu:
      return 0.5f * z * (1.0f + (kGeluC * (z + kGeluA * z.cube())).tanh());
  }
  return z;
}

// d act / dz, from z and y = act(z) (whichever is cheaper per activation).
Pack derivative(const Pack& z, const Pack& y, Activation act) {
  switch (act) {
    case Activation::kLinear: return Pack::Ones();
    case Activation::kRelu: return (z > 0.0f).select(Pack::Ones(), Pack::Zero());
    case Activation::kTanh: return 1.0f - y.square();
    case Activation::kSigmoid: return y * (1.0f - y);
    case Activation::kGelu: {
      const Pack t = (kGeluC * (z + kGeluA * z.cube())).tanh();  // as in forward
      return 0.5f * (1.0f + t) + 0.5f * z * (1.0f - t.square()) * kGeluC *
                                     (1.0f + 3.0f * kGeluA * z.square());
    }
  }
  return Pack::Ones();
}

}  // namespace

void bias_activation_forward(float* z, const float* bias, float* out, int64_t rows,
                             int64_t cols, Activation act) {
  // Row by row so the row just biased is still in L1 when the activation reads it.
  for (int64_t r = 0; r < rows; ++r) {
    float* zr = z + r * cols;
    float* outr = out + r * cols;
    detail::for_each_pack(cols, [&](int64_t i, int len) {
      const Pack pre = load_pack(zr + i, len) + load_pack(bias + i, len);
      store_pack(zr + i, len, pre);
      store_pack(outr + i, len, activate(pre, act));
    });
  }
}

void activation_backward(const float* d_out, const float* z, const float* out, float* dz,
                         int64_t n, Activation act) {
  if (act == Activation::kLinear) {
    if (dz != d_out) std::memcpy(dz, d_out, sizeof(float) * static_cast<size_t>(n));
    return;
  }
  detail::for_each_pack(n, [&](int64_t i, int len) {
    const Pack g = load_pack(d_out + i, len);
    store_pack(dz + i, len, g * derivative(load_pack(z + i, len), load_pack(out + i, len), act));
  });
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
