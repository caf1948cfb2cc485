// Device-side fixed-order reduction for replicas that share one GPU (NCCL refuses
// two ranks on one device, so lockstep combines them itself before NCCL runs).
// Internal to comm/; compiled only with LOCKSTEP_HAVE_CUDA.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "comm/communicator.h"

namespace lockstep::nccl_detail {

// Enqueues on `stream`: dst[i] = srcs[0][i] op srcs[1][i] op ... op srcs[nsrc-1][i],
// combined strictly left to right (the same order as comm/reduce.h on the host, so
// the result is the same bits every run). Integer sums wrap. All pointers are device
// memory of the current device; dst may alias any source (each element is read in
// full before it is written, by the same thread). Throws CudaError if the launch fails.
void reduce_on_device(const void* const* srcs, int nsrc, void* dst, size_t count, DType dtype,
                      ReduceOp op, cudaStream_t stream);

}  // namespace lockstep::nccl_detail
