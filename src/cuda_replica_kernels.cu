// Step kernels whose per-step inputs live in device memory (see the header): the
// per-element math is kernels/host_device.h's, shared with the CPU, so a CUDA
// update rounds exactly like the CPU one.
#include "src/cuda_replica_kernels.h"

#include <cmath>

#include "kernels/cuda/device.h"

namespace lockstep::cuda_step {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return unsigned(b < 1 ? 1 : (b > 4096 ? 4096 : b));
}

void check_launch(const char* name) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) cuda::throw_cuda_error(err, name, __FILE__, __LINE__);
}

__device__ int64_t first_index() { return blockIdx.x * int64_t(blockDim.x) + threadIdx.x; }
__device__ int64_t stride() { return int64_t(gridDim.x) * blockDim.x; }

__global__ void extras_kernel(float* extras, const double* loss_sum, const int64_t* correct,
                              float rows, const StepParams* p) {
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    extras[kExtraLoss] = float(*loss_sum);
    extras[kExtraCorrect] = float(*correct);
    extras[kExtraRows] = rows;
    extras[kExtraStop] = p->stop;
  }
}

__global__ void dropout_kernel(float* x, int64_t rows, int64_t cols, uint32_t threshold,
                               float keep_scale, bool drop_all, const StepParams* p, int layer) {
  const uint64_t seed = layer_seeds(p)[layer];
  const int64_t first_row = p->first_row;
  for (int64_t i = first_index(); i < rows * cols; i += stride()) {
    const int64_t r = i / cols, c = i % cols;
    const uint64_t key = kernels::dropout_row_key(seed, first_row + r);
    const bool keep = !drop_all && kernels::dropout_bits(key, c) >= threshold;
    x[i] = keep ? x[i] * keep_scale : 0.0f;
  }
}

// *flag = 1 when any of g[0, n) is NaN or Inf (exponent bits all ones; the bit
// test does not depend on fast-math flags). The flag was zeroed before.
__global__ void nonfinite_kernel(const float* g, int64_t n, float* flag) {
  bool bad = false;
  for (int64_t i = first_index(); i < n; i += stride()) {
    bad |= (__float_as_uint(g[i]) & 0x7fffffffu) >= 0x7f800000u;
  }
  if (bad) *flag = 1.0f;
}

__device__ bool skip_update(const float* loss, const float* nonfinite) {
  return !isfinite(*loss) || *nonfinite != 0.0f;
}

__global__ void adam_kernel(float* p, const float* g, float* m, float* v, int64_t n,
                            const StepParams* sp, const float* loss, const float* nonfinite) {
  if (skip_update(loss, nonfinite)) return;
  const kernels::AdamConsts k = sp->adam;
  for (int64_t i = first_index(); i < n; i += stride()) {
    float pi = p[i], mi = m[i], vi = v[i];
    kernels::adam_element(pi, g[i], mi, vi, k);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

__global__ void sgd_kernel(float* p, const float* g, float* vel, int64_t n, float momentum,
                           bool nesterov, float wd, const StepParams* sp, const float* loss,
                           const float* nonfinite) {
  if (skip_update(loss, nonfinite)) return;
  const float lr = sp->lr;
  for (int64_t i = first_index(); i < n; i += stride()) {
    kernels::sgd_element(p[i], g[i], vel[i], lr, momentum, nesterov, wd);
  }
}

}  // namespace

void write_extras(cudaStream_t s, float* extras, const double* loss_sum, const int64_t* correct,
                  float rows, const StepParams* p) {
  extras_kernel<<<1, 32, 0, s>>>(extras, loss_sum, correct, rows, p);
  check_launch("cuda_step::extras_kernel");
}

void dropout(cudaStream_t s, float* x, int64_t rows, int64_t cols, float rate,
             const StepParams* p, int layer) {
  if (rate <= 0.0f || rows * cols == 0) return;
  const bool drop_all = rate >= 1.0f;
  const float keep_scale = drop_all ? 0.0f : 1.0f / (1.0f - rate);
  dropout_kernel<<<blocks_for(rows * cols), kThreads, 0, s>>>(
      x, rows, cols, kernels::dropout_threshold(rate), keep_scale, drop_all, p, layer);
  check_launch("cuda_step::dropout_kernel");
}

void check_finite(cudaStream_t s, const float* grad, int64_t n, float* nonfinite) {
  const cudaError_t err = cudaMemsetAsync(nonfinite, 0, sizeof(float), s);
  if (err != cudaSuccess) cuda::throw_cuda_error(err, "cudaMemsetAsync(nonfinite flag)", __FILE__, __LINE__);
  if (n == 0) return;
  nonfinite_kernel<<<blocks_for(n), kThreads, 0, s>>>(grad, n, nonfinite);
  check_launch("cuda_step::nonfinite_kernel");
}

void adam(cudaStream_t s, float* param, const float* grad, float* m, float* v, int64_t n,
          const StepParams* p, const float* loss, const float* nonfinite) {
  if (n == 0) return;
  adam_kernel<<<blocks_for(n), kThreads, 0, s>>>(param, grad, m, v, n, p, loss, nonfinite);
  check_launch("cuda_step::adam_kernel");
}

void sgd(cudaStream_t s, float* param, const float* grad, float* velocity, int64_t n,
         float momentum, bool nesterov, float weight_decay, const StepParams* p,
         const float* loss, const float* nonfinite) {
  if (n == 0) return;
  sgd_kernel<<<blocks_for(n), kThreads, 0, s>>>(param, grad, velocity, n, momentum, nesterov,
                                                weight_decay, p, loss, nonfinite);
  check_launch("cuda_step::sgd_kernel");
}

}  // namespace lockstep::cuda_step
