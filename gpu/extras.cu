// The extras kernel (see the header); one thread writes five floats.
#include "gpu/extras.h"

#include "kernels/cuda/device.h"

namespace lockstep::gpu {
namespace {

__global__ void extras_kernel(ExtraSlots to, const double* loss_sum, const int64_t* correct,
                              float rows, const kernels::StepParams* p) {
  *to.loss = float(*loss_sum);
  *to.correct = float(*correct);
  *to.rows = rows;
  *to.stop = p->stop;
  *to.over_bound = 0.0f;
}

}  // namespace

void write_extras(cudaStream_t s, ExtraSlots to, const double* loss_sum, const int64_t* correct,
                  float rows, const kernels::StepParams* p) {
  extras_kernel<<<1, 1, 0, s>>>(to, loss_sum, correct, rows, p);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) cuda::throw_cuda_error(err, "gpu::extras_kernel", __FILE__, __LINE__);
}

}  // namespace lockstep::gpu
