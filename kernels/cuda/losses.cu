// CUDA loss and norm reductions: softmax cross-entropy (warp per row, max-subtracted,
// first-argmax accuracy), MSE and sum of squares. Each block writes one partial to
// the context's workspace; one tiny kernel adds them in order to the device scalar.
#include "kernels/cuda/common.cuh"

namespace lockstep::cuda {
namespace detail {
namespace {

__global__ void finish_kernel(const double* partial_sums, const int64_t* partial_counts,
                              int blocks, double sum_scale, double* sum, int64_t* count,
                              bool overwrite) {
  double s = 0.0;
  int64_t c = 0;
  for (int b = 0; b < blocks; ++b) {
    s += partial_sums[b];
    c += partial_counts[b];
  }
  s *= sum_scale;
  if (sum != nullptr) *sum = overwrite ? s : *sum + s;
  if (count != nullptr) *count = overwrite ? c : *count + c;
}

}  // namespace

void finish_reduction(const CudaContext& ctx, int blocks, double sum_scale, double* sum,
                      int64_t* count, bool overwrite) {
  finish_kernel<<<1, 1, 0, ctx.stream>>>(ctx.partial_sums, ctx.partial_counts, blocks,
                                         sum_scale, sum, count, overwrite);
  LOCKSTEP_CUDA_CHECK_LAUNCH("finish_kernel");
}

}  // namespace detail

namespace {

using detail::kThreads;
constexpr int kWarps = kThreads / 32;

// Max and FIRST index of the max across the warp (every lane gets the result).
__device__ void warp_argmax(float& m, int64_t& idx) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float om = __shfl_xor_sync(0xFFFFFFFFu, m, offset);
    const int64_t oi = __shfl_xor_sync(0xFFFFFFFFu, idx, offset);
    if (om > m || (om == m && oi < idx)) {
      m = om;
      idx = oi;
    }
  }
}

__device__ double warp_sum(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  return v;
}

// One warp per row. d_logits may be null (evaluation) or alias logits.
__global__ void softmax_xent_kernel(const float* logits, const int32_t* labels, float* d_logits,
                                    int64_t rows, int64_t classes, float scale,
                                    double* partial_sums, int64_t* partial_counts) {
  const int lane = threadIdx.x & 31;
  double warp_loss = 0.0;
  int64_t warp_correct = 0;
  for (int64_t r = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5); r < rows;
       r += int64_t(gridDim.x) * kWarps) {
    const float* x = logits + r * classes;
    const int32_t label = labels[r];
    const bool bad = label < 0 || label >= classes;
    float m = -INFINITY;
    int64_t arg = classes;
    for (int64_t j = lane; j < classes; j += 32) {
      if (x[j] > m) {
        m = x[j];
        arg = j;
      }
    }
    warp_argmax(m, arg);
    float part = 0.0f;
    for (int64_t j = lane; j < classes; j += 32) part += expf(x[j] - m);
    const double sum = warp_sum(static_cast<double>(part));
    if (lane == 0) {
      // Bad labels poison the loss instead of reading outside the row.
      warp_loss += bad ? NAN : log(sum) + static_cast<double>(m) - x[label];
      warp_correct += (!bad && arg == label) ? 1 : 0;
    }
    __syncwarp();  // every read of x (incl. x[label]) happens before d, which may alias it
    if (d_logits != nullptr) {
      float* d = d_logits + r * classes;
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = lane; j < classes; j += 32) {
        const float p = expf(x[j] - m) * inv;
        d[j] = bad ? NAN : scale * (p - (j == label ? 1.0f : 0.0f));
      }
    }
  }
  const double block_loss = detail::block_sum(warp_loss);
  const int64_t block_correct = detail::block_sum(warp_correct);
  if (threadIdx.x == 0) {
    partial_sums[blockIdx.x] = block_loss;
    partial_counts[blockIdx.x] = block_correct;
  }
}

// Sum of (pred - target)^2 over all elements; gradient k * (pred - target) if d_pred.
__global__ void squared_error_kernel(const float* pred, const float* target, float* d_pred,
                                     int64_t n, float k, double* partial_sums,
                                     int64_t* partial_counts) {
  double acc = 0.0;
  for (int64_t i = detail::first_index(); i < n; i += detail::grid_stride()) {
    const float diff = pred[i] - (target != nullptr ? target[i] : 0.0f);
    acc += static_cast<double>(diff) * static_cast<double>(diff);
    if (d_pred != nullptr) d_pred[i] = k * diff;
  }
  const double block = detail::block_sum(acc);
  if (threadIdx.x == 0) {
    partial_sums[blockIdx.x] = block;
    partial_counts[blockIdx.x] = 0;
  }
}

void launch_squared_error(const CudaContext& ctx, const float* pred, const float* target,
                          float* d_pred, int64_t n, float k, double sum_scale, double* result,
                          bool overwrite) {
  const int blocks = int(detail::grid_for(n, kReduceBlocks));
  squared_error_kernel<<<blocks, kThreads, 0, ctx.stream>>>(pred, target, d_pred, n, k,
                                                            ctx.partial_sums, ctx.partial_counts);
  LOCKSTEP_CUDA_CHECK_LAUNCH("squared_error_kernel");
  detail::finish_reduction(ctx, blocks, sum_scale, result, nullptr, overwrite);
}

}  // namespace

void softmax_xent(const CudaContext& ctx, const float* logits, const int32_t* labels,
                  float* d_logits, int64_t rows, int64_t classes, float scale, double* loss_sum,
                  int64_t* correct) {
  if (rows == 0) return;
  const int blocks = int(detail::grid_for(rows * 32, kReduceBlocks));  // a warp per row
  softmax_xent_kernel<<<blocks, kThreads, 0, ctx.stream>>>(
      logits, labels, d_logits, rows, classes, scale, ctx.partial_sums, ctx.partial_counts);
  LOCKSTEP_CUDA_CHECK_LAUNCH("softmax_xent_kernel");
  detail::finish_reduction(ctx, blocks, 1.0, loss_sum, correct, false);
}

void softmax_xent_loss(const CudaContext& ctx, const float* logits, const int32_t* labels,
                       int64_t rows, int64_t classes, double* loss_sum, int64_t* correct) {
  softmax_xent(ctx, logits, labels, nullptr, rows, classes, 0.0f, loss_sum, correct);
}

void mse(const CudaContext& ctx, const float* pred, const float* target, float* d_pred,
         int64_t rows, int64_t cols, float scale, double* loss_sum) {
  if (rows * cols == 0) return;
  const float k = scale * 2.0f / static_cast<float>(cols);
  launch_squared_error(ctx, pred, target, d_pred, rows * cols, k, 1.0 / cols, loss_sum, false);
}

void mse_loss(const CudaContext& ctx, const float* pred, const float* target, int64_t rows,
              int64_t cols, double* loss_sum) {
  mse(ctx, pred, target, nullptr, rows, cols, 0.0f, loss_sum);
}

void sum_squares(const CudaContext& ctx, const float* x, int64_t n, double* result) {
  launch_squared_error(ctx, x, nullptr, nullptr, n, 0.0f, 1.0, result, true);
}

}  // namespace lockstep::cuda
