// Fused CUDA optimizer passes: one grid-stride pass per update, the per-element math
// shared with the CPU (kernels/host_device.h), constants computed once on the host.
#include <stdexcept>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/host_device.h"

namespace lockstep::cuda {
namespace {

__global__ void sgd_kernel(float* p, const float* g, float* vel, int64_t n, float lr,
                           float momentum, bool nesterov, float wd) {
  for (int64_t i = detail::first_index(); i < n; i += detail::grid_stride()) {
    if (vel == nullptr) {
      p[i] = kernels::fused(-lr, kernels::fused(wd, p[i], g[i]), p[i]);
    } else {
      kernels::sgd_element(p[i], g[i], vel[i], lr, momentum, nesterov, wd);
    }
  }
}

__global__ void adam_kernel(float* p, const float* g, float* m, float* v, int64_t n,
                            kernels::AdamConsts k) {
  for (int64_t i = detail::first_index(); i < n; i += detail::grid_stride()) {
    float pi = p[i], mi = m[i], vi = v[i];
    kernels::adam_element(pi, g[i], mi, vi, k);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
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
      param, grad, velocity, n, lr, momentum, nesterov, weight_decay);
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
  adam_kernel<<<detail::grid_for(n), detail::kThreads, 0, ctx.stream>>>(param, grad, m, v, n, k);
  LOCKSTEP_CUDA_CHECK_LAUNCH("adam_kernel");
}

}  // namespace lockstep::cuda
