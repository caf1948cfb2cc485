// Row-major GEMM through cuBLAS (column-major): a row-major matrix is the column-major
// transpose with the same leading dimension, so C = op(A) op(B) is computed as
// C^T = op(B)^T op(A)^T with the operands swapped. FP32 or TF32 tensor-op math.
#include "kernels/cuda/common.cuh"
#include "kernels/host_device.h"

namespace lockstep::cuda {
namespace {

__global__ void scale_matrix_kernel(float* c, int64_t m, int64_t n, int64_t ldc, float beta) {
  const int64_t total = m * n;
  for (int64_t i = detail::first_index(); i < total; i += detail::grid_stride()) {
    float& x = c[(i / n) * ldc + i % n];
    x = beta == 0.0f ? 0.0f : x * beta;  // beta == 0 never reads C
  }
}

}  // namespace

void gemm(const CudaContext& ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
          float* c, int64_t ldc) {
  // cuBLAS takes 32-bit sizes.
  kernels::check_gemm_args("lockstep::cuda::gemm", trans_a, trans_b, m, n, k, lda, ldb, ldc, 0x7FFFFFFF);
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == 0.0f) {
    if (beta != 1.0f)
      LOCKSTEP_CUDA_LAUNCH(ctx, m * n, "scale_matrix_kernel", scale_matrix_kernel, c, m, n, ldc, beta);
    return;
  }
  const cublasComputeType_t compute =
      ctx.math == GemmMath::kTf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  LOCKSTEP_CUBLAS_CHECK(cublasGemmEx(
      ctx.cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
      static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, b, CUDA_R_32F,
      static_cast<int>(ldb), a, CUDA_R_32F, static_cast<int>(lda), &beta, c, CUDA_R_32F,
      static_cast<int>(ldc), compute, CUBLAS_GEMM_DEFAULT));
}

}  // namespace lockstep::cuda
