// Inputs for collective tests whose results are exact in every dtype: small
// integers, so float and integer sums carry no rounding, and uint8 values stay
// small enough that the sum over a few members wraps predictably modulo 256.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

#include "comm/communicator.h"

namespace lockstep::testing {

// Member `rank`'s element i.
template <typename T>
T exact_value(int rank, size_t i) {
  if constexpr (std::is_same_v<T, uint8_t>) return static_cast<T>((i * 5 + rank * 3) % 60);
  else return static_cast<T>(static_cast<int>((i * 5 + rank * 3) % 17) - 8);
}

// Element i after an all-reduce with `op` over members 0..members-1, computed
// in int64 (uint8 sums then wrap like the reduction's).
template <typename T>
T exact_expected(ReduceOp op, int members, size_t i) {
  int64_t sum = 0;
  T best = exact_value<T>(0, i);
  for (int r = 0; r < members; ++r) {
    const T v = exact_value<T>(r, i);
    sum += static_cast<int64_t>(v);
    if (op == ReduceOp::kMax && v > best) best = v;
    if (op == ReduceOp::kMin && v < best) best = v;
  }
  return op == ReduceOp::kSum ? static_cast<T>(sum) : best;
}

// Member c.rank() all-reduces `count` exact values with `op`; returns how many
// elements differ from the exact result.
template <typename T>
size_t wrong_after_allreduce(Communicator& c, size_t count, ReduceOp op) {
  std::vector<T> buf(count);
  for (size_t i = 0; i < count; ++i) buf[i] = exact_value<T>(c.rank(), i);
  c.allreduce(buf.data(), count, op);
  size_t wrong = 0;
  for (size_t i = 0; i < count; ++i) wrong += buf[i] != exact_expected<T>(op, c.size(), i);
  return wrong;
}

// Values whose fp32 sums round (mixed magnitudes), the same for a given seed and
// member on every process: for checking that a backend adds in member order.
inline std::vector<float> rounding_values(uint32_t seed, int member, size_t count) {
  std::mt19937 rng(seed + uint32_t(member));
  std::uniform_real_distribution<float> dist(-1e3f, 1e3f);
  std::vector<float> v(count);
  for (float& x : v) x = dist(rng) * (rng() % 2 ? 1e-4f : 1.0f);
  return v;
}

// ((v0 + v1) + v2) + ... of rounding_values over members 0..members-1.
inline std::vector<float> member_order_sum(uint32_t seed, int members, size_t count) {
  std::vector<float> sum = rounding_values(seed, 0, count);
  for (int m = 1; m < members; ++m) {
    const std::vector<float> other = rounding_values(seed, m, count);
    for (size_t i = 0; i < count; ++i) sum[i] += other[i];
  }
  return sum;
}

}  // namespace lockstep::testing
