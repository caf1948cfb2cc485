// Batch normalization on CUDA, split as on the CPU (kernels/cpu/cnn.h): the partial
// sums are one block per channel summing in double with a fixed-order tree (device
// doubles the caller all-reduces), the rest elementwise.
#include "kernels/cuda/cnn.h"

#include "kernels/cuda/common.cuh"

namespace lockstep::cuda {
namespace {

using detail::first_index;
using detail::grid_stride;
using detail::kThreads;

__device__ __forceinline__ int64_t plane_offset(int64_t i, int64_t c, int64_t channels,
                                                int64_t pixels) {
  return ((i / pixels) * channels + c) * pixels + i % pixels;  // i runs over (batch, pixels)
}

__global__ void stats_kernel(const float* x, int64_t batch, int64_t channels, int64_t pixels,
                             const float* shift, double* stats) {
  const int64_t c = blockIdx.x;
  const double k = shift == nullptr ? 0.0 : shift[c];
  double s1 = 0.0, s2 = 0.0;
  for (int64_t i = threadIdx.x; i < batch * pixels; i += blockDim.x) {
    const double d = double(x[plane_offset(i, c, channels, pixels)]) - k;
    s1 += d;
    s2 += d * d;
  }
  s1 = detail::block_sum(s1);
  s2 = detail::block_sum(s2);
  if (threadIdx.x == 0) stats[c] = s1, stats[channels + c] = s2;
}

__global__ void moments_kernel(const double* stats, double count, const float* shift,
                               int64_t channels, float eps, float* mean, float* var,
                               float* inv_std) {
  for (int64_t c = first_index(); c < channels; c += grid_stride()) {
    const double m1 = stats[c] / count, m2 = stats[channels + c] / count;
    const double v = fmax(m2 - m1 * m1, 0.0);
    mean[c] = static_cast<float>(m1 + (shift == nullptr ? 0.0 : shift[c]));
    var[c] = static_cast<float>(v);
    inv_std[c] = static_cast<float>(1.0 / sqrt(v + double(eps)));
  }
}

// y = (x - mean) gamma inv_std + beta; inv_std null: computed from var and eps.
__global__ void normalize_kernel(const float* x, int64_t total, int64_t channels, int64_t pixels,
                                 const float* mean, const float* inv_std, const float* var,
                                 float eps, const float* gamma, const float* beta, float* y) {
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t c = (i / pixels) % channels;
    const float s = inv_std != nullptr ? inv_std[c]
                                       : static_cast<float>(1.0 / sqrt(double(var[c]) + eps));
    y[i] = (x[i] - mean[c]) * (gamma[c] * s) + beta[c];
  }
}

__global__ void update_moving_kernel(float* moving_mean, float* moving_var, const float* mean,
                                     const float* var, int64_t channels, float rate,
                                     const float* loss, const float* nonfinite) {
  if (loss && nonfinite && (!isfinite(*loss) || *nonfinite != 0.0f)) return;  // a skipped step
  for (int64_t c = first_index(); c < channels; c += grid_stride()) {
    moving_mean[c] -= (moving_mean[c] - mean[c]) * rate;
    moving_var[c] -= (moving_var[c] - var[c]) * rate;
  }
}

__global__ void backward_stats_kernel(const float* dy, const float* x, int64_t batch,
                                      int64_t channels, int64_t pixels, const float* mean,
                                      const float* inv_std, double* sums, float* dgamma,
                                      float* dbeta, float beta_acc) {
  const int64_t c = blockIdx.x;
  const double m = mean[c], s = inv_std[c];
  double s1 = 0.0, s2 = 0.0;
  for (int64_t i = threadIdx.x; i < batch * pixels; i += blockDim.x) {
    const int64_t at = plane_offset(i, c, channels, pixels);
    const double g = dy[at];
    s1 += g;
    s2 += g * ((double(x[at]) - m) * s);
  }
  s1 = detail::block_sum(s1);
  s2 = detail::block_sum(s2);
  if (threadIdx.x == 0) {
    sums[c] = s1, sums[channels + c] = s2;
    const float db = static_cast<float>(s1), dg = static_cast<float>(s2);
    dbeta[c] = beta_acc == 0.0f ? db : beta_acc * dbeta[c] + db;
    dgamma[c] = beta_acc == 0.0f ? dg : beta_acc * dgamma[c] + dg;
  }
}

__global__ void backward_data_kernel(const float* dy, const float* x, int64_t total,
                                     int64_t channels, int64_t pixels, const float* mean,
                                     const float* inv_std, const float* gamma, const double* sums,
                                     double count, float* dx) {
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t c = (i / pixels) % channels;
    const float s = inv_std[c], xhat = (x[i] - mean[c]) * s;
    const float mean_dy = static_cast<float>(sums[c] / count);
    const float mean_dyx = static_cast<float>(sums[channels + c] / count);
    dx[i] = gamma[c] * s * (dy[i] - mean_dy - xhat * mean_dyx);
  }
}

}  // namespace

void batch_norm_stats(const CudaContext& ctx, const float* x, int64_t batch, int64_t channels,
                      int64_t pixels, const float* shift, double* stats) {
  if (channels == 0) return;
  stats_kernel<<<static_cast<unsigned>(channels), kThreads, 0, ctx.stream>>>(x, batch, channels,
                                                                             pixels, shift, stats);
  LOCKSTEP_CUDA_CHECK_LAUNCH("batch_norm stats_kernel");
}

void batch_norm_moments(const CudaContext& ctx, const double* stats, double count,
                        const float* shift, int64_t channels, float eps, float* mean, float* var,
                        float* inv_std) {
  LOCKSTEP_CUDA_LAUNCH(ctx, channels, "batch_norm moments_kernel", moments_kernel, stats, count, shift,
                       channels, eps, mean, var, inv_std);
}

void batch_norm_forward(const CudaContext& ctx, const float* x, int64_t batch, int64_t channels,
                        int64_t pixels, const float* mean, const float* inv_std,
                        const float* gamma, const float* beta, float* y) {
  const int64_t total = batch * channels * pixels;
  LOCKSTEP_CUDA_LAUNCH(ctx, total, "batch_norm normalize_kernel", normalize_kernel, x, total, channels,
                       pixels, mean, inv_std, nullptr, 0.0f, gamma, beta, y);
}

void batch_norm_update_moving(const CudaContext& ctx, float* moving_mean, float* moving_var,
                              const float* mean, const float* var, int64_t channels,
                              float momentum, const float* loss, const float* nonfinite) {
  LOCKSTEP_CUDA_LAUNCH(ctx, channels, "batch_norm update_moving_kernel", update_moving_kernel, moving_mean,
                       moving_var, mean, var, channels, 1.0f - momentum, loss, nonfinite);
}

void batch_norm_inference(const CudaContext& ctx, const float* x, int64_t batch, int64_t channels,
                          int64_t pixels, const float* moving_mean, const float* moving_var,
                          const float* gamma, const float* beta, float eps, float* y) {
  const int64_t total = batch * channels * pixels;
  LOCKSTEP_CUDA_LAUNCH(ctx, total, "batch_norm normalize_kernel (inference)", normalize_kernel, x, total,
                       channels, pixels, moving_mean, nullptr, moving_var, eps, gamma, beta, y);
}

void batch_norm_backward_stats(const CudaContext& ctx, const float* dy, const float* x,
                               int64_t batch, int64_t channels, int64_t pixels, const float* mean,
                               const float* inv_std, double* sums, float* dgamma, float* dbeta,
                               float beta_acc) {
  if (channels == 0) return;
  backward_stats_kernel<<<static_cast<unsigned>(channels), kThreads, 0, ctx.stream>>>(
      dy, x, batch, channels, pixels, mean, inv_std, sums, dgamma, dbeta, beta_acc);
  LOCKSTEP_CUDA_CHECK_LAUNCH("batch_norm backward_stats_kernel");
}

void batch_norm_backward_data(const CudaContext& ctx, const float* dy, const float* x,
                              int64_t batch, int64_t channels, int64_t pixels, const float* mean,
                              const float* inv_std, const float* gamma, const double* sums,
                              double count, float* dx) {
  const int64_t total = batch * channels * pixels;
  LOCKSTEP_CUDA_LAUNCH(ctx, total, "batch_norm backward_data_kernel", backward_data_kernel, dy, x, total,
                       channels, pixels, mean, inv_std, gamma, sums, count, dx);
}

}  // namespace lockstep::cuda
