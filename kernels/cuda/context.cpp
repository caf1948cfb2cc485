// CudaContextOwner (stream + cuBLAS handle + reduction workspace) and the error path
// of LOCKSTEP_CUBLAS_CHECK.
#include <sstream>

#include "kernels/cuda/ops.h"

namespace lockstep::cuda {
namespace {

const char* cublas_hint(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "cuBLAS could not start: check the driver and that the device is not full";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "out of device memory for cuBLAS workspace";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "a size, leading dimension or pointer is invalid";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "the math mode (e.g. TF32) is not supported on this GPU";
    default:
      return "rerun with CUDA_LAUNCH_BLOCKING=1 to find the failing call";
  }
}

}  // namespace

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  std::ostringstream msg;
  msg << "cuBLAS error on device " << current_device() << ": " << call << " at " << file << ":"
      << line << ": " << cublasGetStatusName(status) << " (" << cublasGetStatusString(status)
      << "); hint: " << cublas_hint(status);
  throw CudaError(msg.str());
}

CudaContextOwner::CudaContextOwner(GemmMath math)
    : sums_(kReduceBlocks), counts_(kReduceBlocks) {
  ctx_.stream = stream_.get();
  ctx_.math = math;
  ctx_.partial_sums = sums_.data();
  ctx_.partial_counts = counts_.data();
  LOCKSTEP_CUBLAS_CHECK(cublasCreate(&ctx_.cublas));
  // A throwing constructor runs no destructor: release the handle on this path.
  const cublasStatus_t st = cublasSetStream(ctx_.cublas, ctx_.stream);
  if (st != CUBLAS_STATUS_SUCCESS) {
    cublasDestroy(ctx_.cublas);
    ctx_.cublas = nullptr;
    throw_cublas_error(st, "cublasSetStream(ctx_.cublas, ctx_.stream)", __FILE__, __LINE__);
  }
}

CudaContextOwner::~CudaContextOwner() {
  if (ctx_.cublas != nullptr) cublasDestroy(ctx_.cublas);
}

}  // namespace lockstep::cuda
