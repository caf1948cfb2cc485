// Fixed-order host reductions. Work goes block by block through a small stack
// buffer that stays in L1: read every source once, combine left to right, then
// store the block to every destination. Sums of integers wrap (two's complement),
// like MPI implementations do, instead of being undefined behaviour.
#include "comm/reduce.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

namespace lockstep {
namespace {

constexpr size_t kBlockBytes = 8192;

template <typename T>
struct SumOp {
  static T apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      using U = std::make_unsigned_t<T>;
      return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
    } else {
      return a + b;
    }
  }
};
template <typename T>
struct MaxOp {
  static T apply(T a, T b) { return b > a ? b : a; }
};
template <typename T>
struct MinOp {
  static T apply(T a, T b) { return b < a ? b : a; }
};

template <typename T, typename Op>
void combine(T* __restrict acc, const T* __restrict src, size_t n) {
  for (size_t i = 0; i < n; ++i) acc[i] = Op::apply(acc[i], src[i]);
}

template <typename T, typename Op>
void reduce_typed(const void* const* srcs, int nsrc, void* const* dsts, int ndst, size_t count) {
  constexpr size_t kBlock = kBlockBytes / sizeof(T);
  alignas(64) T acc[kBlock];
  for (size_t lo = 0; lo < count; lo += kBlock) {
    const size_t n = std::min(kBlock, count - lo);
    std::memcpy(acc, static_cast<const T*>(srcs[0]) + lo, n * sizeof(T));
    for (int s = 1; s < nsrc; ++s) combine<T, Op>(acc, static_cast<const T*>(srcs[s]) + lo, n);
    for (int d = 0; d < ndst; ++d) {
      T* dst = static_cast<T*>(dsts[d]) + lo;
      if (dst != acc) std::memcpy(dst, acc, n * sizeof(T));
    }
  }
}

template <typename T>
void reduce_op(const void* const* srcs, int nsrc, void* const* dsts, int ndst, size_t count,
               ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return reduce_typed<T, SumOp<T>>(srcs, nsrc, dsts, ndst, count);
    case ReduceOp::kMax: return reduce_typed<T, MaxOp<T>>(srcs, nsrc, dsts, ndst, count);
    case ReduceOp::kMin: return reduce_typed<T, MinOp<T>>(srcs, nsrc, dsts, ndst, count);
  }
}

}  // namespace

void check_dtype_and_op(DType dtype, ReduceOp op, const char* where) {
  const int t = static_cast<int>(dtype);
  if (t < static_cast<int>(DType::kFloat32) || t > static_cast<int>(DType::kUInt8)) {
    throw CommError(std::string(where) + ": unknown dtype " + std::to_string(t));
  }
  const int o = static_cast<int>(op);
  if (o < static_cast<int>(ReduceOp::kSum) || o > static_cast<int>(ReduceOp::kMin)) {
    throw CommError(std::string(where) + ": unknown reduce op " + std::to_string(o));
  }
}

void reduce_fixed_order(const void* const* srcs, int nsrc, void* const* dsts, int ndst,
                        size_t count, DType dtype, ReduceOp op) {
  if (count == 0 || nsrc <= 0) return;
  switch (dtype) {
    case DType::kFloat32: return reduce_op<float>(srcs, nsrc, dsts, ndst, count, op);
    case DType::kFloat64: return reduce_op<double>(srcs, nsrc, dsts, ndst, count, op);
    case DType::kInt32: return reduce_op<int32_t>(srcs, nsrc, dsts, ndst, count, op);
    case DType::kInt64: return reduce_op<int64_t>(srcs, nsrc, dsts, ndst, count, op);
    case DType::kUInt8: return reduce_op<uint8_t>(srcs, nsrc, dsts, ndst, count, op);
  }
}

}  // namespace lockstep
