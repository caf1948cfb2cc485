// Fixed-order reduction kernels for same-GPU replicas. One thread owns an element
// and combines its sources left to right, so the order never depends on timing;
// more sources than fit in one launch's parameters are folded in further passes
// that start from the partial result, which keeps the same left-to-right order.
#include "comm/nccl_reduce.h"

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/device.h"

namespace lockstep::nccl_detail {
namespace {

constexpr int kMaxSources = 32;  // pointers per launch (kernel parameters stay small)
constexpr int kThreads = 256;

template <typename T>
struct Sources {
  const T* ptr[kMaxSources];
};

template <typename T>
__device__ __forceinline__ T combine(T a, T b, ReduceOp op) {
  if (op == ReduceOp::kSum) {
    if constexpr (std::is_integral_v<T>) {
      using U = std::make_unsigned_t<T>;
      return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));  // wraps, never UB
    } else {
      return a + b;
    }
  }
  if (op == ReduceOp::kMax) return b > a ? b : a;  // same NaN behaviour as the host
  return b < a ? b : a;
}

// fold_into_dst: the partial result already in dst is the leftmost operand.
template <typename T>
__global__ void reduce_kernel(Sources<T> src, int nsrc, T* dst, size_t count, ReduceOp op,
                              bool fold_into_dst) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    T acc = fold_into_dst ? dst[i] : src.ptr[0][i];
    for (int s = fold_into_dst ? 0 : 1; s < nsrc; ++s) acc = combine(acc, src.ptr[s][i], op);
    dst[i] = acc;
  }
}

template <typename T>
void launch(const void* const* srcs, int nsrc, void* dst, size_t count, ReduceOp op,
            cudaStream_t stream) {
  const size_t want = (count + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(want < 4096 ? (want < 1 ? 1 : want) : 4096);
  for (int first = 0; first < nsrc; first += kMaxSources) {
    Sources<T> batch{};
    const int n = nsrc - first < kMaxSources ? nsrc - first : kMaxSources;
    for (int s = 0; s < n; ++s) batch.ptr[s] = static_cast<const T*>(srcs[first + s]);
    reduce_kernel<T><<<blocks, kThreads, 0, stream>>>(batch, n, static_cast<T*>(dst), count, op,
                                                      first > 0);
    LOCKSTEP_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace

void reduce_on_device(const void* const* srcs, int nsrc, void* dst, size_t count, DType dtype,
                      ReduceOp op, cudaStream_t stream) {
  if (count == 0 || nsrc <= 0) return;
  switch (dtype) {
    case DType::kFloat32: return launch<float>(srcs, nsrc, dst, count, op, stream);
    case DType::kFloat64: return launch<double>(srcs, nsrc, dst, count, op, stream);
    case DType::kInt32: return launch<int32_t>(srcs, nsrc, dst, count, op, stream);
    case DType::kInt64: return launch<int64_t>(srcs, nsrc, dst, count, op, stream);
    case DType::kUInt8: return launch<uint8_t>(srcs, nsrc, dst, count, op, stream);
  }
  throw CommError("NCCL group: same-GPU reduction: unknown dtype");
}

}  // namespace lockstep::nccl_detail
