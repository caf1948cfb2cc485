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

  void dropout_forward(float* x, int64_t rows, int64_t cols, float rate, int layer) {
    cuda::dropout_forward(*ctx_, x, rows, cols, rate, step_, layer);
  }
  void dropout_backward(float* dx, int64_t rows, int64_t cols, float rate, int layer) {
    cuda::dropout_backward(*ctx_, dx, rows, cols, rate, step_, layer);
  }
  template <class T>
  void copy(T* dst, const T* src, int64_t n) {
    LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(T) * size_t(n), cudaMemcpyDeviceToDevice, ctx_->stream));
  }
  template <class T>
  void zero(T* x, int64_t n) { LOCKSTEP_CUDA_CHECK(cudaMemsetAsync(x, 0, sizeof(T) * size_t(n), ctx_->stream)); }
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
  LOCKSTEP_DEVICE_KERNELS(LOCKSTEP_CUDA_KERNEL)
#undef LOCKSTEP_CUDA_KERNEL

  // A Dense layer's GEMMs on the network's input (src/device.h): plain cuBLAS
  // here, no zero skipping.
  struct InputIndex {};
  void input_gemm(InputIndex&, int64_t rows, int64_t out, int64_t in, const float* x,
                  const float* w, float* z) {
    gemm(false, false, rows, out, in, 1.0f, x, in, w, out, 0.0f, z, out);
  }
  void input_gemm_weights(InputIndex&, int64_t rows, int64_t out, int64_t in, const float* x,
                          const float* dz, float* dw) {
    gemm(true, false, in, out, rows, 1.0f, x, in, dz, out, 0.0f, dw, out);
  }

  // The slice was staged (gpu/cuda_step.cpp) before the step.
  DeviceInputs inputs(const ReplicaBatch&) const { return staged_; }
  // The loss sum and correct count land in the device scalars (zeroed here); the
  // returned stats hold the rows only.
  SliceStats loss(LossKind kind, const float* out, const DeviceInputs& in, int64_t rows,
                  int64_t k, float* d_out, float scale) {
    empty_slice();
    const bool xent = kind == LossKind::kSoftmaxCrossEntropy;
    if (xent && d_out) cuda::softmax_xent(*ctx_, out, in.labels, d_out, rows, k, scale, loss_sum_, correct_);
    if (xent && !d_out) cuda::softmax_xent_loss(*ctx_, out, in.labels, rows, k, loss_sum_, correct_);
    if (!xent && d_out) cuda::mse(*ctx_, out, in.targets, d_out, rows, k, scale, loss_sum_);
    if (!xent && !d_out) cuda::mse_loss(*ctx_, out, in.targets, rows, k, loss_sum_);
    return {0.0, 0, rows};
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
