// The CUDA device of the step (src/device.h): kernels/cuda on device memory,
// each call enqueued on the replica's stream; the step block and the slice's
// staged inputs are device memory the replica (gpu/cuda_step.cpp) owns.
#pragma once

#include <cstdint>

#include "kernels/cuda/cnn.h"
#include "kernels/cuda/ops.h"
#include "src/device.h"

namespace lockstep {

class CudaDevice {
 public:
  template <class T>
  using Buffer = cuda::DeviceBuffer<T>;

  CudaDevice(const cuda::CudaContext* ctx, const kernels::StepParams* step, DeviceInputs staged,
             double* loss_sum, int64_t* correct)
      : ctx_(ctx), step_(step), staged_(staged), loss_sum_(loss_sum), correct_(correct) {}

  template <class... A>
  void gemm(A... a) { cuda::gemm(*ctx_, a...); }
  template <class... A>
  void bias_activation_forward(A... a) { cuda::bias_activation_forward(*ctx_, a...); }
  template <class... A>
  void activation_backward(A... a) { cuda::activation_backward(*ctx_, a...); }
  template <class... A>
  void bias_grad(A... a) { cuda::bias_grad(*ctx_, a...); }
  void dropout_forward(float* x, int64_t rows, int64_t cols, float rate, int layer) {
    cuda::dropout_forward(*ctx_, x, rows, cols, rate, step_, layer);
  }
  void dropout_backward(float* dx, int64_t rows, int64_t cols, float rate, int layer) {
    cuda::dropout_backward(*ctx_, dx, rows, cols, rate, step_, layer);
  }
  void copy(float* dst, const float* src, int64_t n) {
    LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(float) * size_t(n),
                                        cudaMemcpyDeviceToDevice, ctx_->stream));
  }
  void zero_doubles(double* x, int64_t n) {
    LOCKSTEP_CUDA_CHECK(cudaMemsetAsync(x, 0, sizeof(double) * size_t(n), ctx_->stream));
  }
  void copy_doubles(double* dst, const double* src, int64_t n) {
    LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(double) * size_t(n),
                                        cudaMemcpyDeviceToDevice, ctx_->stream));
  }
  void axpy(int64_t n, float alpha, const float* x, float* y) { cuda::axpy(*ctx_, n, alpha, x, y); }
  // Batch norm's commit (Network::commit_state), skipped on the device when the
  // step's update is (gate_state).
  void batch_norm_update_moving(float* moving_mean, float* moving_var, const float* mean,
                                const float* var, int64_t channels, float momentum) {
    cuda::batch_norm_update_moving(*ctx_, moving_mean, moving_var, mean, var, channels, momentum,
                                   gate_loss_, gate_nonfinite_);
  }
  // The step's reduced loss and non-finite flag (device scalars): what decides
  // whether its state commit applies, as for the optimizer's update.
  void gate_state(const float* loss, const float* nonfinite) {
    gate_loss_ = loss;
    gate_nonfinite_ = nonfinite;
  }
  int64_t conv2d_workspace_size(const Conv2dGeometry& g) { return cuda::conv2d_workspace_size(g); }

#define LOCKSTEP_CUDA_KERNEL(name) \
  template <class... A>            \
  void name(A... a) { cuda::name(*ctx_, a...); }
  LOCKSTEP_CUDA_KERNEL(conv2d_forward)
  LOCKSTEP_CUDA_KERNEL(conv2d_backward_data)
  LOCKSTEP_CUDA_KERNEL(conv2d_backward_weights)
  LOCKSTEP_CUDA_KERNEL(max_pool2d_forward)
  LOCKSTEP_CUDA_KERNEL(max_pool2d_backward)
  LOCKSTEP_CUDA_KERNEL(avg_pool2d_forward)
  LOCKSTEP_CUDA_KERNEL(avg_pool2d_backward)
  LOCKSTEP_CUDA_KERNEL(global_avg_pool2d_forward)
  LOCKSTEP_CUDA_KERNEL(global_avg_pool2d_backward)
  LOCKSTEP_CUDA_KERNEL(batch_norm_stats)
  LOCKSTEP_CUDA_KERNEL(batch_norm_moments)
  LOCKSTEP_CUDA_KERNEL(batch_norm_forward)
  LOCKSTEP_CUDA_KERNEL(batch_norm_inference)
  LOCKSTEP_CUDA_KERNEL(batch_norm_backward_stats)
  LOCKSTEP_CUDA_KERNEL(batch_norm_backward_data)
#undef LOCKSTEP_CUDA_KERNEL
  void zero(float* x, int64_t n) {
    LOCKSTEP_CUDA_CHECK(cudaMemsetAsync(x, 0, sizeof(float) * size_t(n), ctx_->stream));
  }

  // The slice was staged (gpu/cuda_step.cpp) before the step.
  DeviceInputs inputs(const ReplicaBatch&) const { return staged_; }
  // The loss sum and correct count land in the device scalars (zeroed here); the
  // returned stats hold the rows only.
  SliceStats loss(LossKind kind, const float* out, const DeviceInputs& in, int64_t rows,
                  int64_t k, float* d_out, float scale) {
    empty_slice();
    if (kind == LossKind::kSoftmaxCrossEntropy) {
      if (d_out) {
        cuda::softmax_xent(*ctx_, out, in.labels, d_out, rows, k, scale, loss_sum_, correct_);
      } else {
        cuda::softmax_xent_loss(*ctx_, out, in.labels, rows, k, loss_sum_, correct_);
      }
    } else if (d_out) {
      cuda::mse(*ctx_, out, in.targets, d_out, rows, k, scale, loss_sum_);
    } else {
      cuda::mse_loss(*ctx_, out, in.targets, rows, k, loss_sum_);
    }
    SliceStats s;
    s.rows = rows;
    return s;
  }
  SliceStats empty_slice() {
    LOCKSTEP_CUDA_CHECK(cudaMemsetAsync(loss_sum_, 0, sizeof(double), ctx_->stream));
    LOCKSTEP_CUDA_CHECK(cudaMemsetAsync(correct_, 0, sizeof(int64_t), ctx_->stream));
    return {};
  }
  // The step block was staged with the step's values before the step.
  void begin_slice(uint64_t, int64_t) {}

 private:
  const cuda::CudaContext* ctx_;
  const kernels::StepParams* step_;
  DeviceInputs staged_;
  double* loss_sum_;
  int64_t* correct_;
  const float* gate_loss_ = nullptr;
  const float* gate_nonfinite_ = nullptr;
};

}  // namespace lockstep
