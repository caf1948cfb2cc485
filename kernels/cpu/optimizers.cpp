// Fused optimizer passes over the flat parameter arena: SGD (momentum, Nesterov,
// coupled weight decay) and Adam/AdamW. Each reads and writes every slot once; Adam's
// bias corrections are computed once per call, never per element.
#include "kernels/cpu/ops.h"

#include <cmath>
#include <stdexcept>
#include <string>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace lockstep::cpu {
namespace {

// Per-call constants of one Adam step (see ops.h for the formula they implement).
struct AdamConsts {
  float b1, one_minus_b1, b2, one_minus_b2;
  float coupled_wd;    // added to the gradient (Adam + L2)
  float decay;         // p *= decay before the step (AdamW: 1 - lr * wd)
  float step_size;     // lr / (1 - b1^t)
  float inv_sqrt_bc2;  // 1 / sqrt(1 - b2^t)
  float eps;
};

AdamConsts adam_consts(float lr, float beta1, float beta2, float eps, int64_t step,
                       float weight_decay, bool decoupled_wd) {
  const double t = static_cast<double>(step);
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), t);
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), t);
  AdamConsts k{};
  k.b1 = beta1;
  k.one_minus_b1 = 1.0f - beta1;
  k.b2 = beta2;
  k.one_minus_b2 = 1.0f - beta2;
  k.coupled_wd = decoupled_wd ? 0.0f : weight_decay;
  k.decay = decoupled_wd ? 1.0f - lr * weight_decay : 1.0f;
  k.step_size = static_cast<float>(lr / bc1);
  k.inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  k.eps = eps;
  return k;
}

// Elements [begin, n) one at a time: the tail of the vector loop, or all of them.
void adam_scalar(float* p, const float* grad, float* m, float* v, int64_t begin, int64_t n,
                 const AdamConsts& k) {
  for (int64_t i = begin; i < n; ++i) {
    const float g = std::fma(k.coupled_wd, p[i], grad[i]);
    const float mi = std::fma(k.b1, m[i], k.one_minus_b1 * g);
    const float vi = std::fma(k.b2, v[i], k.one_minus_b2 * (g * g));
    const float denom = std::fma(std::sqrt(vi), k.inv_sqrt_bc2, k.eps);
    m[i] = mi;
    v[i] = vi;
    p[i] = std::fma(-k.step_size, mi / denom, p[i] * k.decay);
  }
}

// Vector body; returns how many leading elements it handled.
int64_t adam_vector(float* p, const float* grad, float* m, float* v, int64_t n,
                    const AdamConsts& k) {
#if defined(__AVX2__) && defined(__FMA__)
  const __m256 b1 = _mm256_set1_ps(k.b1), c1 = _mm256_set1_ps(k.one_minus_b1);
  const __m256 b2 = _mm256_set1_ps(k.b2), c2 = _mm256_set1_ps(k.one_minus_b2);
  const __m256 wd = _mm256_set1_ps(k.coupled_wd), decay = _mm256_set1_ps(k.decay);
  const __m256 step = _mm256_set1_ps(k.step_size), isb = _mm256_set1_ps(k.inv_sqrt_bc2);
  const __m256 eps = _mm256_set1_ps(k.eps);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 pi = _mm256_loadu_ps(p + i);
    const __m256 g = _mm256_fmadd_ps(wd, pi, _mm256_loadu_ps(grad + i));
    const __m256 mi = _mm256_fmadd_ps(b1, _mm256_loadu_ps(m + i), _mm256_mul_ps(c1, g));
    const __m256 vi =
        _mm256_fmadd_ps(b2, _mm256_loadu_ps(v + i), _mm256_mul_ps(c2, _mm256_mul_ps(g, g)));
    const __m256 denom = _mm256_fmadd_ps(_mm256_sqrt_ps(vi), isb, eps);
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    _mm256_storeu_ps(p + i, _mm256_fnmadd_ps(step, _mm256_div_ps(mi, denom),
                                             _mm256_mul_ps(pi, decay)));
  }
  return i;
#else
  return 0;
#endif
}

}  // namespace

void sgd_update(float* __restrict param, const float* __restrict grad,
                float* __restrict velocity, int64_t n, float lr, float momentum, bool nesterov,
                float weight_decay) {
  if (velocity == nullptr) {
    // Plain SGD needs no velocity slot (with momentum 0, v would just equal g).
    if (momentum != 0.0f) {
      throw std::invalid_argument("lockstep::cpu::sgd_update: momentum " +
                                  std::to_string(momentum) + " needs a velocity buffer");
    }
    for (int64_t i = 0; i < n; ++i) param[i] -= lr * (grad[i] + weight_decay * param[i]);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] + weight_decay * param[i];
    const float v = momentum * velocity[i] + g;
    velocity[i] = v;
    param[i] -= lr * (nesterov ? g + momentum * v : v);
  }
}

void adam_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                 float beta1, float beta2, float eps, int64_t step, float weight_decay,
                 bool decoupled_wd) {
  if (step < 1) {
    throw std::invalid_argument("lockstep::cpu::adam_update: step " + std::to_string(step) +
                                " must be >= 1 (it is 1-based, for bias correction)");
  }
  const AdamConsts k = adam_consts(lr, beta1, beta2, eps, step, weight_decay, decoupled_wd);
  const int64_t done = adam_vector(param, grad, m, v, n, k);
  adam_scalar(param, grad, m, v, done, n, k);
}

}  // namespace lockstep::cpu
