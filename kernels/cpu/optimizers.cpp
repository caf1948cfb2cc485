// Fused optimizer passes over the flat parameter arena: SGD (momentum, Nesterov,
// coupled weight decay) and Adam/AdamW. Each reads and writes every slot once; Adam's
// bias corrections are computed once per call, never per element.
#include "kernels/cpu/ops.h"

#include <stdexcept>
#include <string>

#include "kernels/host_device.h"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace lockstep::cpu {
namespace {

using kernels::AdamConsts;

// The vector width's operations: fma(a, b, c) = a b + c and fnma(a, b, c) =
// c - a b, fused where the ISA has FMA, else a multiply and an add as fused()
// does without FMA (baseline x86-64, no -march=native).
#if defined(__AVX512F__)
struct Lanes {
  using T = __m512;
  static constexpr int kWidth = 16;
  static T set1(float x) { return _mm512_set1_ps(x); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T x) { _mm512_storeu_ps(p, x); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T div(T a, T b) { return _mm512_div_ps(a, b); }
  static T sqrt(T a) { return _mm512_sqrt_ps(a); }
  static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T fnma(T a, T b, T c) { return _mm512_fnmadd_ps(a, b, c); }
};
#elif defined(__AVX2__) && defined(__FMA__)
struct Lanes {
  using T = __m256;
  static constexpr int kWidth = 8;
  static T set1(float x) { return _mm256_set1_ps(x); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T x) { _mm256_storeu_ps(p, x); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T div(T a, T b) { return _mm256_div_ps(a, b); }
  static T sqrt(T a) { return _mm256_sqrt_ps(a); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T fnma(T a, T b, T c) { return _mm256_fnmadd_ps(a, b, c); }
};
#elif defined(__SSE2__)
struct Lanes {
  using T = __m128;
  static constexpr int kWidth = 4;
  static T set1(float x) { return _mm_set1_ps(x); }
  static T load(const float* p) { return _mm_loadu_ps(p); }
  static void store(float* p, T x) { _mm_storeu_ps(p, x); }
  static T add(T a, T b) { return _mm_add_ps(a, b); }
  static T mul(T a, T b) { return _mm_mul_ps(a, b); }
  static T div(T a, T b) { return _mm_div_ps(a, b); }
  static T sqrt(T a) { return _mm_sqrt_ps(a); }
  static T fma(T a, T b, T c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
  static T fnma(T a, T b, T c) { return _mm_sub_ps(c, _mm_mul_ps(a, b)); }
};
#endif

// The gradient's element i, and its vector at i, for one array or for the sum of
// several (GradientParts: added left to right, as comm/reduce.h sums replicas),
// stored on the way into the copies GradientParts names.
struct OneGradient {
  const float* g;
  float at(int64_t i) const { return g[i]; }
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__)) || defined(__SSE2__)
  Lanes::T lanes(int64_t i) const { return Lanes::load(g + i); }
#endif
};
// Two replicas, the sum also stored into the other's arena: a two-replica step.
struct TwoGradientsOneCopy {
  const float* a;
  const float* b;
  float* copy;
  float at(int64_t i) const { return copy[i] = a[i] + b[i]; }
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__)) || defined(__SSE2__)
  Lanes::T lanes(int64_t i) const {
    const Lanes::T s = Lanes::add(Lanes::load(a + i), Lanes::load(b + i));
    Lanes::store(copy + i, s);
    return s;
  }
#endif
};
struct ManyGradients {
  GradientParts g;
  float at(int64_t i) const {
    const int64_t e = g.offset + i;
    float s = g.parts[0][e];
    for (int k = 1; k < g.count; ++k) s += g.parts[k][e];
    for (int c = 0; c < g.ncopies; ++c) g.copies[c][e] = s;
    return s;
  }
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__)) || defined(__SSE2__)
  Lanes::T lanes(int64_t i) const {
    const int64_t e = g.offset + i;
    Lanes::T s = Lanes::load(g.parts[0] + e);
    for (int k = 1; k < g.count; ++k) s = Lanes::add(s, Lanes::load(g.parts[k] + e));
    for (int c = 0; c < g.ncopies; ++c) Lanes::store(g.copies[c] + e, s);
    return s;
  }
#endif
};

// Calls fn with the cheapest reader of g.
template <typename Fn>
void with_gradient(GradientParts g, Fn&& fn) {
  if (g.count == 1 && g.ncopies == 0) return fn(OneGradient{g.parts[0] + g.offset});
  if (g.count == 2 && g.ncopies == 1) {
    return fn(TwoGradientsOneCopy{g.parts[0] + g.offset, g.parts[1] + g.offset, g.copies[0] + g.offset});
  }
  fn(ManyGradients{g});
}

// Vector body; returns how many leading elements it handled. It runs
// adam_element's operations in its order (the same FMAs, an IEEE sqrt and divide),
// so every width gives its bits. The pass streams four arrays of the arena's size,
// more than a core's L2 holds for the shipped MLP: 16 lanes issue half the loads,
// stores and divides of 8 (Zen 4: 29.1 us against 31.3 for 101,760 elements).
template <typename G>
int64_t adam_vector(float* p, const G& grad, float* m, float* v, int64_t n, const AdamConsts& k) {
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__)) || defined(__SSE2__)
  using L = Lanes;
  const L::T b1 = L::set1(k.b1), c1 = L::set1(k.one_minus_b1);
  const L::T b2 = L::set1(k.b2), c2 = L::set1(k.one_minus_b2);
  const L::T wd = L::set1(k.coupled_wd), decay = L::set1(k.decay);
  const L::T step = L::set1(k.step_size), isb = L::set1(k.inv_sqrt_bc2);
  const L::T eps = L::set1(k.eps);
  int64_t i = 0;
  for (; i + L::kWidth <= n; i += L::kWidth) {
    const L::T pi = L::load(p + i);
    const L::T g = L::fma(wd, pi, grad.lanes(i));
    const L::T mi = L::fma(b1, L::load(m + i), L::mul(c1, g));
    const L::T vi = L::fma(b2, L::load(v + i), L::mul(c2, L::mul(g, g)));
    const L::T denom = L::fma(L::sqrt(vi), isb, eps);
    L::store(m + i, mi);
    L::store(v + i, vi);
    L::store(p + i, L::fnma(step, L::div(mi, denom), L::mul(pi, decay)));
  }
  return i;
#else
  return 0;
#endif
}

void check_parts(const char* who, GradientParts g) {
  if (g.count < 1 || g.parts == nullptr || g.ncopies < 0 || (g.ncopies > 0 && g.copies == nullptr)) {
    throw std::invalid_argument(std::string("lockstep::cpu::") + who + ": GradientParts needs at least one part " +
                                "and a non-negative number of copies (null only for none); got " +
                                std::to_string(g.count) + " part(s), " + std::to_string(g.ncopies) + " cop(ies)");
  }
}

}  // namespace

void sgd_update(float* param, GradientParts grad, float* velocity, int64_t n, float lr,
                float momentum, bool nesterov, float weight_decay) {
  check_parts("sgd_update", grad);
  with_gradient(grad, [&](const auto& g) {
    if (velocity == nullptr) {
      // Plain SGD needs no velocity slot (with momentum 0, v would just equal g).
      if (momentum != 0.0f) {
        throw std::invalid_argument("lockstep::cpu::sgd_update: momentum " +
                                    std::to_string(momentum) + " needs a velocity buffer");
      }
      for (int64_t i = 0; i < n; ++i) {
        param[i] = kernels::fused(-lr, kernels::fused(weight_decay, param[i], g.at(i)), param[i]);
      }
      return;
    }
    // Shared with CUDA; the FMAs vectorise (GCC turns this loop into AVX2 vfmadd).
    for (int64_t i = 0; i < n; ++i) {
      kernels::sgd_element(param[i], g.at(i), velocity[i], lr, momentum, nesterov, weight_decay);
    }
  });
}

void sgd_update(float* param, const float* grad, float* velocity, int64_t n, float lr, float momentum,
                bool nesterov, float weight_decay) {
  sgd_update(param, GradientParts{&grad, 1, 0, nullptr, 0}, velocity, n, lr, momentum, nesterov, weight_decay);
}

void adam_update(float* param, GradientParts grad, float* m, float* v, int64_t n, float lr,
                 float beta1, float beta2, float eps, int64_t step, float weight_decay,
                 bool decoupled_wd) {
  check_parts("adam_update", grad);
  if (step < 1) {
    throw std::invalid_argument("lockstep::cpu::adam_update: step " + std::to_string(step) +
                                " must be >= 1 (it is 1-based, for bias correction)");
  }
  const AdamConsts k = kernels::adam_consts(lr, beta1, beta2, eps, step, weight_decay, decoupled_wd);
  with_gradient(grad, [&](const auto& g) {
    // The elements the vector body left (its tail, or all of them), one at a time.
    for (int64_t i = adam_vector(param, g, m, v, n, k); i < n; ++i)
      kernels::adam_element(param[i], g.at(i), m[i], v[i], k);
  });
}

void adam_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                 float beta1, float beta2, float eps, int64_t step, float weight_decay,
                 bool decoupled_wd) {
  adam_update(param, GradientParts{&grad, 1, 0, nullptr, 0}, m, v, n, lr, beta1, beta2, eps, step, weight_decay,
              decoupled_wd);
}

}  // namespace lockstep::cpu
