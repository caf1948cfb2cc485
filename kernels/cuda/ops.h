// CUDA compute kernels: the operations of kernels/cpu/ops.h with the same names and
// argument order, on device pointers, preceded by a CudaContext (stream, cuBLAS
// handle, reduction workspace). Every call is asynchronous on ctx.stream; losses and
// norms land in device scalars so a training step never waits on the host.
// Reductions use fixed-order trees (no atomics): results are bitwise reproducible.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "kernels/cpu/ops.h"  // Activation
#include "kernels/cuda/device.h"
#include "kernels/host_device.h"  // StepParams

#define LOCKSTEP_CUBLAS_CHECK(call)                                                  \
  do {                                                                               \
    const cublasStatus_t lockstep_cublas_st_ = (call);                               \
    if (lockstep_cublas_st_ != CUBLAS_STATUS_SUCCESS) {                              \
      ::lockstep::cuda::throw_cublas_error(lockstep_cublas_st_, #call, __FILE__, __LINE__); \
    }                                                                                \
  } while (0)

namespace lockstep::cuda {

[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file,
                                     int line);

// FP32 GEMMs, or TF32 tensor cores (10-bit mantissa inputs, fp32 accumulate: about
// 1e-3 relative error, several times faster on Ampere/Hopper).
enum class GemmMath { kFp32, kTf32 };

// What every CUDA kernel needs. Non-owning view; CudaContextOwner below owns one.
struct CudaContext {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  GemmMath math = GemmMath::kFp32;
  // Per-block partial sums of the loss/norm reductions (kReduceBlocks of each).
  double* partial_sums = nullptr;
  int64_t* partial_counts = nullptr;
};

constexpr int kReduceBlocks = 128;

// Creates, on the current device, a stream, a cuBLAS handle bound to it and the
// reduction workspace; frees them in the destructor.
class CudaContextOwner {
 public:
  explicit CudaContextOwner(GemmMath math = GemmMath::kFp32);
  ~CudaContextOwner();
  CudaContextOwner(const CudaContextOwner&) = delete;
  CudaContextOwner& operator=(const CudaContextOwner&) = delete;
  const CudaContext& get() const { return ctx_; }
  void synchronize() const { stream_.synchronize(); }

 private:
  Stream stream_;
  DeviceBuffer<double> sums_;
  DeviceBuffer<int64_t> counts_;
  CudaContext ctx_;
};

// C (m, n) = alpha * op(A) * op(B) + beta * C, row-major, as cpu::gemm (same checks).
void gemm(const CudaContext& ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
          float* c, int64_t ldc);

void bias_activation_forward(const CudaContext& ctx, float* z, const float* bias, float* out,
                             int64_t rows, int64_t cols, Activation act);
void activation_backward(const CudaContext& ctx, const float* d_out, const float* z,
                         const float* out, float* dz, int64_t n, Activation act);
void bias_grad(const CudaContext& ctx, const float* dz, float* db, int64_t rows, int64_t cols,
               float beta);

// As cpu::softmax_xent, but the loss SUM is added to *loss_sum and the count of
// correct rows to *correct, both device scalars (the caller zeroes them when a sum
// starts). A label outside [0, classes) makes its row's loss NaN (no throw on device).
void softmax_xent(const CudaContext& ctx, const float* logits, const int32_t* labels,
                  float* d_logits, int64_t rows, int64_t classes, float scale, double* loss_sum,
                  int64_t* correct);
void softmax_xent_loss(const CudaContext& ctx, const float* logits, const int32_t* labels,
                       int64_t rows, int64_t classes, double* loss_sum, int64_t* correct);

// As cpu::mse; the loss sum is added to the device scalar *loss_sum.
void mse(const CudaContext& ctx, const float* pred, const float* target, float* d_pred,
         int64_t rows, int64_t cols, float scale, double* loss_sum);
void mse_loss(const CudaContext& ctx, const float* pred, const float* target, int64_t rows,
              int64_t cols, double* loss_sum);

// As cpu::dropout_* (the same hash, so CPU and CUDA draw identical masks) and
// cpu::sgd_update/adam_update (the same per-element code), in the form a training
// step runs: the per-step values (the dropout seed of `layer` and the slice's first
// row; the learning rate or the Adam constants) are read from the step block p in
// device memory (kernels/host_device.h), so one captured CUDA graph replays with
// each step's values. The updates do nothing when the reduced loss *loss is not
// finite or *nonfinite != 0 (all_finite below), as the CPU step skips them; sgd's
// velocity must be allocated.
void dropout_forward(const CudaContext& ctx, float* x, int64_t rows, int64_t cols, float rate,
                     const kernels::StepParams* p, int layer);
void dropout_backward(const CudaContext& ctx, float* dx, int64_t rows, int64_t cols, float rate,
                      const kernels::StepParams* p, int layer);
void sgd_update(const CudaContext& ctx, float* param, const float* grad, float* velocity,
                int64_t n, float momentum, bool nesterov, float weight_decay,
                const kernels::StepParams* p, const float* loss, const float* nonfinite);
void adam_update(const CudaContext& ctx, float* param, const float* grad, float* m, float* v,
                 int64_t n, const kernels::StepParams* p, const float* loss,
                 const float* nonfinite);
// As cpu::all_finite, into the device scalar *nonfinite: 0 when every element of
// x[0, n) is finite, 1 when one is NaN or Inf.
void all_finite(const CudaContext& ctx, const float* x, int64_t n, float* nonfinite);

// *result (device scalar) = sum of x^2, in double.
void sum_squares(const CudaContext& ctx, const float* x, int64_t n, double* result);
void axpy(const CudaContext& ctx, int64_t n, float alpha, const float* x, float* y);
void scale(const CudaContext& ctx, float* x, int64_t n, float alpha);

}  // namespace lockstep::cuda
