// Fused CUDA optimizer passes of the training step: one grid-stride pass per
// update, the per-element math shared with the CPU (kernels/host_device.h), the
// step's constants read from its block in device memory; and the non-finite
// check of a reduced gradient.
#include "kernels/cuda/common.cuh"
#include "kernels/host_device.h"

namespace lockstep::cuda {
namespace {

// The update does nothing when the reduced loss is not finite or the reduced
// gradient held NaN/Inf, as the CPU step skips it.
__device__ bool skip_update(const float* loss, const float* nonfinite) {
  return !isfinite(*loss) || *nonfinite != 0.0f;
}

__global__ void sgd_kernel(float* p, const float* g, float* vel, int64_t n, float momentum,
                           bool nesterov, float wd, const kernels::StepParams* sp,
                           const float* loss, const float* nonfinite) {
  if (skip_update(loss, nonfinite)) return;
  const float lr = sp->lr;
  for (int64_t i = detail::first_index(); i < n; i += detail::grid_stride()) {
    kernels::sgd_element(p[i], g[i], vel[i], lr, momentum, nesterov, wd);
  }
}

__global__ void adam_kernel(float* p, const float* g, float* m, float* v, int64_t n,
                            const kernels::StepParams* sp, const float* loss,
                            const float* nonfinite) {
  if (skip_update(loss, nonfinite)) return;
  const kernels::AdamConsts k = sp->adam;
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
                int64_t n, float momentum, bool nesterov, float weight_decay,
                const kernels::StepParams* p, const float* loss, const float* nonfinite) {
  LOCKSTEP_CUDA_LAUNCH(ctx, n, "sgd_kernel", sgd_kernel, param, grad, velocity, n, momentum, nesterov,
                       weight_decay, p, loss, nonfinite);
}

void adam_update(const CudaContext& ctx, float* param, const float* grad, float* m, float* v,
                 int64_t n, const kernels::StepParams* p, const float* loss,
                 const float* nonfinite) {
  LOCKSTEP_CUDA_LAUNCH(ctx, n, "adam_kernel", adam_kernel, param, grad, m, v, n, p, loss, nonfinite);
}

void all_finite(const CudaContext& ctx, const float* x, int64_t n, float* nonfinite) {
  LOCKSTEP_CUDA_CHECK(cudaMemsetAsync(nonfinite, 0, sizeof(float), ctx.stream));
  LOCKSTEP_CUDA_LAUNCH(ctx, n, "nonfinite_kernel", nonfinite_kernel, x, n, nonfinite);
}

}  // namespace lockstep::cuda
