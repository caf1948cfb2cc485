// Small helpers shared by the CPU and CUDA kernels: the dropout hash, the scalar
// activation formulas, the per-element optimizer steps and the GEMM and dropout
// argument checks. Sharing them (not re-typing them) keeps the CPU and CUDA dropout masks
// identical, the updates equal and the GEMM contract one.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define LOCKSTEP_HD __host__ __device__ __forceinline__
#else
#define LOCKSTEP_HD inline
#endif

namespace lockstep::kernels {

// splitmix64 finaliser: a bijective 64-bit mix with good avalanche.
LOCKSTEP_HD uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

// "lowbias32" 32-bit mix: cheap enough to vectorise with AVX2 32-bit multiplies.
LOCKSTEP_HD uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

// Dropout hash of (seed, row, col), split in two so the per-row part is computed
// once per row and the per-column part is 32-bit arithmetic only.
LOCKSTEP_HD uint64_t dropout_row_key(uint64_t seed, int64_t row) {
  return mix64(seed ^ mix64(static_cast<uint64_t>(row) + 0x632BE59BD9B4E019ull));
}
LOCKSTEP_HD uint32_t dropout_bits(uint64_t row_key, int64_t col) {
  const uint32_t lo = static_cast<uint32_t>(row_key);
  const uint32_t hi = static_cast<uint32_t>(row_key >> 32);
  return mix32(mix32(static_cast<uint32_t>(col) ^ lo) + hi);
}
// An element is dropped when its bits fall below this threshold, so
// P(keep) = 1 - threshold / 2^32 (rate rounded to a multiple of 2^-32).
LOCKSTEP_HD uint32_t dropout_threshold(float rate) {
  const double t = static_cast<double>(rate) * 4294967296.0;
  return t >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<uint32_t>(t);
}

// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluA = 0.044715f;

LOCKSTEP_HD float gelu(float x) {
  return 0.5f * x * (1.0f + tanhf(kGeluC * (x + kGeluA * x * x * x)));
}
LOCKSTEP_HD float gelu_grad(float x) {
  const float t = tanhf(kGeluC * (x + kGeluA * x * x * x));
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kGeluC * (1.0f + 3.0f * kGeluA * x * x);
}
LOCKSTEP_HD float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// Per-call constants of one Adam step, computed once on the host (see cpu/ops.h):
// p = p * decay - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps).
struct AdamConsts {
  float b1, one_minus_b1, b2, one_minus_b2;
  float coupled_wd;    // added to the gradient (Adam + L2)
  float decay;         // p *= decay before the step (AdamW: 1 - lr * wd)
  float step_size;     // lr / (1 - b1^t)
  float inv_sqrt_bc2;  // 1 / sqrt(1 - b2^t)
  float eps;
};

// What a training step reads from memory its kernels can see (host memory on the
// CPU, device memory on CUDA, refreshed before every step so a captured CUDA graph
// replays with this step's values). Followed in the same allocation by one uint64_t
// dropout seed per layer (layer_seeds).
struct alignas(8) StepParams {
  AdamConsts adam;        // adam/adamw: this step's constants (adam_consts below)
  float lr = 0.0f;        // sgd: this step's learning rate
  float stop = 0.0f;      // 1 when this replica asks every replica to stop
  int64_t first_row = 0;  // dropout: global id of the slice's first row
};
LOCKSTEP_HD const uint64_t* layer_seeds(const StepParams* p) {
  return reinterpret_cast<const uint64_t*>(p + 1);
}
LOCKSTEP_HD uint64_t* layer_seeds(StepParams* p) { return reinterpret_cast<uint64_t*>(p + 1); }

inline AdamConsts adam_consts(float lr, float beta1, float beta2, float eps, int64_t step,
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

// a * b + c rounded once where the hardware fuses it (GPUs, x86 with FMA); a CPU
// without FMA rounds twice rather than call libm's slow software fmaf.
LOCKSTEP_HD float fused(float a, float b, float c) {
#if defined(__CUDA_ARCH__) || defined(__FMA__) || !defined(__x86_64__)
  return fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

// One element of Adam, with explicit FMAs so every device rounds identically
// (the CPU's AVX2 body performs exactly these operations lane by lane).
LOCKSTEP_HD void adam_element(float& p, float grad, float& m, float& v, const AdamConsts& k) {
  const float g = fused(k.coupled_wd, p, grad);
  m = fused(k.b1, m, k.one_minus_b1 * g);
  v = fused(k.b2, v, k.one_minus_b2 * (g * g));
  const float denom = fused(sqrtf(v), k.inv_sqrt_bc2, k.eps);
  p = fused(-k.step_size, m / denom, p * k.decay);
}

// One element of SGD with momentum (see cpu/ops.h for the formula).
LOCKSTEP_HD void sgd_element(float& p, float grad, float& vel, float lr, float momentum,
                             bool nesterov, float weight_decay) {
  const float g = fused(weight_decay, p, grad);
  vel = fused(momentum, vel, g);
  p = fused(-lr, nesterov ? fused(momentum, vel, g) : vel, p);
}

// The GEMM contract of kernels/cpu/ops.h: sizes >= 0, leading dimensions at least
// the widths, and every size <= max_size. Throws std::invalid_argument prefixed
// with `who`. Host only.
inline void check_gemm_args(const char* who, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                            int64_t lda, int64_t ldb, int64_t ldc, int64_t max_size = INT64_MAX) {
  auto fail = [&](const std::string& what) { throw std::invalid_argument(std::string(who) + ": " + what); };
  if (m < 0 || n < 0 || k < 0) fail("negative size (m, n, k)");
  const int64_t a_width = trans_a ? m : k, b_width = trans_b ? k : n;
  if (lda < std::max<int64_t>(1, a_width))
    fail("lda " + std::to_string(lda) + " < width of A " + std::to_string(a_width));
  if (ldb < std::max<int64_t>(1, b_width))
    fail("ldb " + std::to_string(ldb) + " < width of B " + std::to_string(b_width));
  if (ldc < std::max<int64_t>(1, n)) fail("ldc " + std::to_string(ldc) + " < width of C " + std::to_string(n));
  if (std::max({m, n, k, lda, ldb, ldc}) > max_size) fail("a size exceeds " + std::to_string(max_size));
}

// Dropout's rate contract (kernels/cpu/ops.h): in [0, 1], else std::invalid_argument
// prefixed with `who`. Host only.
inline void check_dropout_rate(const char* who, float rate) {
  if (!(rate >= 0.0f && rate <= 1.0f))
    throw std::invalid_argument(std::string(who) + ": rate " + std::to_string(rate) + " is outside [0, 1]");
}

}  // namespace lockstep::kernels
