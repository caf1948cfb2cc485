// Fused CUDA optimizer passes: one grid-stride pass per update, the per-element math
// shared with the CPU (kernels/host_device.h), constants computed once on the host
// and passed by value, or read from a training step's block in device memory; and
// the non-finite check of a reduced gradient.
#include <stdexcept>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/host_device.h"

namespace lockstep::cuda {
namespace {

// A training step's update (step block sp) does nothing when the reduced loss is
// not finite or the reduced gradient held NaN/Inf, as the CPU step skips it.
__device__ bool skip_update(const kernels::StepParams* sp, const float* loss,
                            const float* nonfinite) {
  return sp != nullptr && (!isfinite(*loss) || *nonfinite != 0.0f);
}

__global__ void sgd_kernel(float* p, const float* g, float* vel, int64_t n, float lr,
                           float momentum, bool nesterov, float wd,
                           const kernels::StepParams* sp, const float* loss,
                           const float* nonfinite) {
  if (skip_update(sp, loss, nonfinite)) return;
  if (sp != nullptr) lr = sp->lr;
  for (int64_t i = detail::first_index(); i < n; i += detail::grid_stride()) {
    if (vel == nullptr) {
      p[i] = kernels::fused(-lr, kernels::fused(wd, p[i], g[i]), p[i]);
    } else {
      kernels::sgd_element(p[i], g[i], vel[i], lr, momentum, nesterov, wd);
    }
  }
}

__global__ void adam_kernel(float* p, const float* g, float* m, float* v, int64_t n,
                            kernels::AdamConsts k, const kernels::StepParams* sp,
                            const float* loss, const float* nonfinite) {
  if (skip_update(sp, loss, nonfinite)) return;
  if (sp != nullptr) k = sp->adam;
  for (int64_t i = detail::first_index(); i < n; i += detail::grid_stride()) {
    float pi = p[i], mi = m[i], vi = v[i];
    kernels::adam_element(pi, g[i], mi, vi, k);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

// *flag = 1 when any of g[0, n) is NaN or Inf (exponent bits all ones; the bit
// test does not depend on fast-math flags). The flag was zeroed before.
__global__ void nonfinite_kernel(const float* g, int64_t n, float* flag) {
  bool bad = false;
  for (int64_t i = detail::first_index(); i < n; i += detail::grid_stride()) {
    bad |= (__float_as_uint(g[i]) & 0x7fffffffu) >= 0x7f800000u;
  }
  if (bad) *flag = 1.0f;
}

}  // namespace

void sgd_update(const CudaContext& ctx, float* param, const float* grad, float* velocity,
                int64_t n, float lr, float momentum, bool nesterov, float weight_decay) {
  if (velocity == nullptr && momentum != 0.0f) {
    throw std::invalid_argument("lockstep::cuda::sgd_update: momentum " +
                                std::to_string(momentum) + " needs a velocity buffer");
  }
  if (n == 0) return;
  sgd_kernel<<<detail::grid_for(n), detail::kThreads, 0, ctx.stream>>>(
      param, grad, velocity, n, lr, momentum, nesterov, weight_decay, nullptr, nullptr, nullptr);
  LOCKSTEP_CUDA_CHECK_LAUNCH("sgd_kernel");
}

void adam_update(const CudaContext& ctx, float* param, const float* grad, float* m, float* v,
                 int64_t n, float lr, float beta1, float beta2, float eps, int64_t step,
                 float weight_decay, bool decoupled_wd) {
  if (step < 1) {
    throw std::invalid_argument("lockstep::cuda::adam_update: step " + std::to_string(step) +
                                " must be >= 1 (it is 1-based, for bias correction)");
  }
  if (n == 0) return;
  const kernels::AdamConsts k =
      kernels::adam_consts(lr, beta1, beta2, eps, step, weight_decay, decoupled_wd);
  adam_kernel<<<detail::grid_for(n), detail::kThreads, 0, ctx.stream>>>(param, grad, m, v, n, k, nullptr,
                                                                      nullptr, nullptr);
  LOCKSTEP_CUDA_CHECK_LAUNCH("adam_kernel");
}

void sgd_update(const CudaContext& ctx, float* param, const float* grad, float* velocity,
                int64_t n, float momentum, bool nesterov, float weight_decay,
                const kernels::StepParams* p, const float* loss, const float* nonfinite) {
  if (n == 0) return;
  sgd_kernel<<<detail::grid_for(n), detail::kThreads, 0, ctx.stream>>>(
      param, grad, velocity, n, 0.0f, momentum, nesterov, weight_decay, p, loss, nonfinite);
  LOCKSTEP_CUDA_CHECK_LAUNCH("sgd_kernel");
}

void adam_update(const CudaContext& ctx, float* param, const float* grad, float* m, float* v,
                 int64_t n, const kernels::StepParams* p, const float* loss,
                 const float* nonfinite) {
  if (n == 0) return;
  adam_kernel<<<detail::grid_for(n), detail::kThreads, 0, ctx.stream>>>(
      param, grad, m, v, n, kernels::AdamConsts{}, p, loss, nonfinite);
  LOCKSTEP_CUDA_CHECK_LAUNCH("adam_kernel");
}

void all_finite(const CudaContext& ctx, const float* x, int64_t n, float* nonfinite) {
  LOCKSTEP_CUDA_CHECK(cudaMemsetAsync(nonfinite, 0, sizeof(float), ctx.stream));
  if (n == 0) return;
  nonfinite_kernel<<<detail::grid_for(n), detail::kThreads, 0, ctx.stream>>>(x, n, nonfinite);
  LOCKSTEP_CUDA_CHECK_LAUNCH("nonfinite_kernel");
}

}  // namespace lockstep::cuda
