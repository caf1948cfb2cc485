// CUDA kernels of convolutional models: the operations of kernels/cpu/cnn.h with the
// same names and argument order, on device pointers, preceded by a CudaContext.
// Geometry structs (Conv2dGeometry, Pool2dGeometry) are the CPU header's. Every call
// is asynchronous on ctx.stream. No atomics: every sum (col2im, pooling backward,
// bias and batch-norm reductions) runs in a fixed order, so results are bitwise
// reproducible run to run (they differ from the CPU's in the last bits).
#pragma once

#include <cstdint>

#include "kernels/cpu/cnn.h"
#include "kernels/cuda/ops.h"

namespace lockstep::cuda {

// Floats of device scratch for the conv2d calls: one image's im2col matrix (patch,
// out_pixels), 0 for a pointwise convolution (the CPU also keeps a padded copy of
// the image, so the two sizes differ).
int64_t conv2d_workspace_size(const Conv2dGeometry& g);

// As cpu::conv2d_*: per image an im2col kernel, then cuda::gemm (cuBLAS).
void conv2d_forward(const CudaContext& ctx, const Conv2dGeometry& g, const float* x,
                    const float* w, const float* bias, float* y, float* workspace);
void conv2d_backward_data(const CudaContext& ctx, const Conv2dGeometry& g, const float* dy,
                          const float* w, float* dx, float* workspace);
void conv2d_backward_weights(const CudaContext& ctx, const Conv2dGeometry& g, const float* x,
                             const float* dy, float* dw, float* db, float beta,
                             float* workspace);

// As cpu::*_pool2d_*; backward passes gather (one thread per input element).
void max_pool2d_forward(const CudaContext& ctx, const Pool2dGeometry& g, const float* x, float* y,
                        int32_t* argmax);
void max_pool2d_backward(const CudaContext& ctx, const Pool2dGeometry& g, const float* dy,
                         const int32_t* argmax, float* dx);
void avg_pool2d_forward(const CudaContext& ctx, const Pool2dGeometry& g, const float* x, float* y);
void avg_pool2d_backward(const CudaContext& ctx, const Pool2dGeometry& g, const float* dy,
                         float* dx);
void global_avg_pool2d_forward(const CudaContext& ctx, const float* x, float* y, int64_t batch,
                               int64_t channels, int64_t pixels);
void global_avg_pool2d_backward(const CudaContext& ctx, const float* dy, float* dx, int64_t batch,
                                int64_t channels, int64_t pixels);

// As cpu::batch_norm_*; stats and sums are device doubles (2 * channels), so the
// caller all-reduces them on the device (NCCL) between the calls. One block per
// channel for the partial sums, a fixed-order tree inside it.
void batch_norm_stats(const CudaContext& ctx, const float* x, int64_t batch, int64_t channels,
                      int64_t pixels, const float* shift, double* stats);
void batch_norm_moments(const CudaContext& ctx, const double* stats, double count,
                        const float* shift, int64_t channels, float eps, float* mean, float* var,
                        float* inv_std);
void batch_norm_forward(const CudaContext& ctx, const float* x, int64_t batch, int64_t channels,
                        int64_t pixels, const float* mean, const float* inv_std,
                        const float* gamma, const float* beta, float* y);
// With loss and nonfinite (device scalars of the step, as adam_update takes them)
// the update is skipped on the device when the step's is.
void batch_norm_update_moving(const CudaContext& ctx, float* moving_mean, float* moving_var,
                              const float* mean, const float* var, int64_t channels,
                              float momentum, const float* loss = nullptr,
                              const float* nonfinite = nullptr);
void batch_norm_inference(const CudaContext& ctx, const float* x, int64_t batch, int64_t channels,
                          int64_t pixels, const float* moving_mean, const float* moving_var,
                          const float* gamma, const float* beta, float eps, float* y);
void batch_norm_backward_stats(const CudaContext& ctx, const float* dy, const float* x,
                               int64_t batch, int64_t channels, int64_t pixels, const float* mean,
                               const float* inv_std, double* sums, float* dgamma, float* dbeta,
                               float beta_acc);
void batch_norm_backward_data(const CudaContext& ctx, const float* dy, const float* x,
                              int64_t batch, int64_t channels, int64_t pixels, const float* mean,
                              const float* inv_std, const float* gamma, const double* sums,
                              double count, float* dx);

}  // namespace lockstep::cuda
