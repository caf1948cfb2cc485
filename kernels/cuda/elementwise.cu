// Elementwise CUDA kernels: fused bias + activation, activation backward, bias
// gradient (fixed-order column sums), counter-based dropout (the CPU's hash, from
// kernels/host_device.h), axpy and scale. Grid-stride loops over int64 indices.
#include "kernels/cuda/common.cuh"
#include "kernels/host_device.h"

namespace lockstep::cuda {
namespace {

using detail::first_index;
using detail::grid_stride;

__device__ __forceinline__ float activate(float z, Activation act) {
  switch (act) {
    case Activation::kLinear: return z;
    case Activation::kRelu: return z > 0.0f ? z : 0.0f;
    case Activation::kTanh: return tanhf(z);
    case Activation::kSigmoid: return kernels::sigmoid(z);
    case Activation::kGelu: return kernels::gelu(z);
  }
  return z;
}

__device__ __forceinline__ float derivative(float z, float y, Activation act) {
  switch (act) {
    case Activation::kLinear: return 1.0f;
    case Activation::kRelu: return z > 0.0f ? 1.0f : 0.0f;
    case Activation::kTanh: return 1.0f - y * y;
    case Activation::kSigmoid: return y * (1.0f - y);
    case Activation::kGelu: return kernels::gelu_grad(z);
  }
  return 1.0f;
}

__global__ void bias_activation_kernel(float* z, const float* bias, float* out, int64_t rows,
                                       int64_t cols, Activation act) {
  for (int64_t i = first_index(); i < rows * cols; i += grid_stride()) {
    const float pre = z[i] + bias[i % cols];
    z[i] = pre;
    out[i] = activate(pre, act);
  }
}

__global__ void activation_backward_kernel(const float* d_out, const float* z, const float* out,
                                           float* dz, int64_t n, Activation act) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float g = d_out[i];
    dz[i] = act == Activation::kRelu ? (z[i] > 0.0f ? g : 0.0f)
                                     : g * derivative(z[i], out[i], act);
  }
}

// Block (32, 8): x picks a column of a 32-column tile, y a stripe of rows; each
// thread sums its stripe in row order, then thread y == 0 adds the 8 stripes in order.
__global__ void bias_grad_kernel(const float* dz, float* db, int64_t rows, int64_t cols,
                                 float beta) {
  __shared__ float stripes[8][33];
  const int64_t col = blockIdx.x * int64_t(32) + threadIdx.x;
  float sum = 0.0f;
  if (col < cols) {
    for (int64_t r = threadIdx.y; r < rows; r += 8) sum += dz[r * cols + col];
  }
  stripes[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float total = 0.0f;
    for (int s = 0; s < 8; ++s) total += stripes[s][threadIdx.x];
    db[col] = beta == 0.0f ? total : beta * db[col] + total;
  }
}

// The layer's seed and the slice's first row are read from the step block on the
// device, so a captured step replays with each step's values.
__global__ void dropout_kernel(float* x, int64_t rows, int64_t cols, uint32_t threshold,
                               float keep_scale, bool drop_all, const kernels::StepParams* p,
                               int layer) {
  const uint64_t seed = kernels::layer_seeds(p)[layer];
  const int64_t first_row = p->first_row;
  for (int64_t i = first_index(); i < rows * cols; i += grid_stride()) {
    const int64_t r = i / cols, c = i % cols;
    const uint64_t key = kernels::dropout_row_key(seed, first_row + r);
    const bool keep = !drop_all && kernels::dropout_bits(key, c) >= threshold;
    x[i] = keep ? x[i] * keep_scale : 0.0f;
  }
}

__global__ void axpy_kernel(int64_t n, float alpha, const float* x, float* y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] = fmaf(alpha, x[i], y[i]);
}

__global__ void scale_kernel(float* x, int64_t n, float alpha) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) x[i] *= alpha;
}

void apply_dropout(const CudaContext& ctx, const char* fn, float* x, int64_t rows, int64_t cols,
                   float rate, const kernels::StepParams* p, int layer) {
  kernels::check_dropout_rate(fn, rate);
  if (rate == 0.0f || rows * cols == 0) return;
  const bool drop_all = rate >= 1.0f;
  const float keep_scale = drop_all ? 0.0f : 1.0f / (1.0f - rate);
  LOCKSTEP_CUDA_LAUNCH(ctx, rows * cols, "dropout_kernel", dropout_kernel, x, rows, cols,
                       kernels::dropout_threshold(rate), keep_scale, drop_all, p, layer);
}

}  // namespace

void bias_activation_forward(const CudaContext& ctx, float* z, const float* bias, float* out,
                             int64_t rows, int64_t cols, Activation act) {
  LOCKSTEP_CUDA_LAUNCH(ctx, rows * cols, "bias_activation_kernel", bias_activation_kernel, z, bias, out,
                       rows, cols, act);
}

void activation_backward(const CudaContext& ctx, const float* d_out, const float* z,
                         const float* out, float* dz, int64_t n, Activation act) {
  LOCKSTEP_CUDA_LAUNCH(ctx, n, "activation_backward_kernel", activation_backward_kernel, d_out, z, out,
                       dz, n, act);
}

void bias_grad(const CudaContext& ctx, const float* dz, float* db, int64_t rows, int64_t cols,
               float beta) {
  if (cols == 0) return;
  const unsigned blocks = static_cast<unsigned>((cols + 31) / 32);
  bias_grad_kernel<<<blocks, dim3(32, 8), 0, ctx.stream>>>(dz, db, rows, cols, beta);
  LOCKSTEP_CUDA_CHECK_LAUNCH("bias_grad_kernel");
}

void dropout_forward(const CudaContext& ctx, float* x, int64_t rows, int64_t cols, float rate,
                     const kernels::StepParams* p, int layer) {
  apply_dropout(ctx, "lockstep::cuda::dropout_forward", x, rows, cols, rate, p, layer);
}

void dropout_backward(const CudaContext& ctx, float* dx, int64_t rows, int64_t cols, float rate,
                      const kernels::StepParams* p, int layer) {
  apply_dropout(ctx, "lockstep::cuda::dropout_backward", dx, rows, cols, rate, p, layer);
}

void axpy(const CudaContext& ctx, int64_t n, float alpha, const float* x, float* y) {
  LOCKSTEP_CUDA_LAUNCH(ctx, n, "axpy_kernel", axpy_kernel, n, alpha, x, y);
}

void scale(const CudaContext& ctx, float* x, int64_t n, float alpha) {
  LOCKSTEP_CUDA_LAUNCH(ctx, n, "scale_kernel", scale_kernel, x, n, alpha);
}

}  // namespace lockstep::cuda
