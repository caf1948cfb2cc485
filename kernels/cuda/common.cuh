// Internal to kernels/cuda: launch sizing and deterministic (fixed-order) block
// reductions shared by the .cu files. Reductions never use atomics, so a sum comes
// out bitwise the same on every run.
#pragma once

#include <cstdint>

#include "kernels/cuda/ops.h"

namespace lockstep::cuda::detail {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements (capped: each thread loops).
inline unsigned grid_for(int64_t n, int64_t cap = 4096) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

// Throws CudaError if the last launch failed (bad configuration, missing arch...).
inline void check_launch(const char* kernel, const char* file, int line) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda_error(err, kernel, file, line);
}

#define LOCKSTEP_CUDA_CHECK_LAUNCH(name) \
  do {                                   \
    ::lockstep::cuda::detail::check_launch(name, __FILE__, __LINE__); \
  } while (0)

// kernel<<<grid_for(n), kThreads, 0, ctx.stream>>>(args...) for a grid-stride
// kernel over n items, then LOCKSTEP_CUDA_CHECK_LAUNCH(name); nothing when n == 0.
#define LOCKSTEP_CUDA_LAUNCH(ctx, n, name, kernel, ...)                                   \
  do {                                                                                    \
    const int64_t lockstep_launch_n_ = (n);                                               \
    if (lockstep_launch_n_ == 0) break;                                                   \
    kernel<<<::lockstep::cuda::detail::grid_for(lockstep_launch_n_),                      \
             ::lockstep::cuda::detail::kThreads, 0, (ctx).stream>>>(__VA_ARGS__);         \
    LOCKSTEP_CUDA_CHECK_LAUNCH(name);                                                     \
  } while (0)

// Grid-stride loops: for (i = first_index(); i < n; i += grid_stride()).
__device__ __forceinline__ int64_t first_index() {
  return blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return int64_t(gridDim.x) * blockDim.x; }

// Sum over the block of one value per thread, in a fixed tree order; the result
// is valid in thread 0. Needs blockDim.x == kThreads.
template <class T>
__device__ T block_sum(T value) {
  __shared__ T warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset >>= 1) {
    value += __shfl_down_sync(0xFFFFFFFFu, value, offset);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  T total = T(0);
  if (threadIdx.x == 0) {
    for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w];
  }
  __syncthreads();  // warp_sums may be reused by the next call
  return total;
}

// Adds ctx's first `blocks` partials (in index order, times sum_scale) to *sum and
// *count (either may be null); with `overwrite`, stores instead of adding.
void finish_reduction(const CudaContext& ctx, int blocks, double sum_scale, double* sum,
                      int64_t* count, bool overwrite);

}  // namespace lockstep::cuda::detail
