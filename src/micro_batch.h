// Micro-batches and the exact gradient sum of deterministic mode. A global batch
// is cut into fixed micro-batches of M rows; each one's gradient is computed on
// its own, turned into 64-bit fixed point with a scale every replica agrees on,
// and summed as integers: integer addition is associative, so the sum, and with
// it every weight, is the same bit for bit whoever computed which micro-batch and
// whatever order the all-reduce adds in (README: "Deterministic mode").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/config.h"

namespace lockstep {

// Rows per micro-batch for `replicas` replicas in sync. train.micro_batch_size
// when set; auto (0): with train.deterministic the global batch cut into the
// most of 8, 4 or 2 pieces of at least 16 rows each, else 1 (a count that must
// not depend on the replicas); otherwise a replica's whole share (no accumulation).
int64_t resolve_micro_batch(const Config& config, int64_t replicas);

// Throws ConfigError naming the keys when a replica's share of the global batch
// is not a whole number of micro-batches (deterministic mode needs that), with
// the replica counts that would work.
void check_micro_batches(const Config& config, int64_t replicas);

// What the plan prints about micro-batches ("" when a step is one plain pass).
std::string micro_batch_plan(const Config& config, int64_t replicas);

// One replica's buffers for micro-batched steps, sized on first use.
struct MicroBuffers {
  std::vector<std::vector<float>> grads;  // one gradient per local micro-batch
  std::vector<int64_t> fixed;             // num_params + extras: the fixed-point sum
  std::vector<double> maxima;             // the max-reduced vector (see micro_batch.cpp)
  std::vector<double> losses;             // per local micro-batch
  std::vector<int> exponents;             // per tensor: the fixed-point scale 2^F
  std::vector<double> tensor_max;         // per tensor: the largest |gradient| of the slice
  bool converted = false;                 // this step's fp32 gradient is already in the arena
};

// ---- fixed point (exposed for tests) ----
// A tensor of the gradient arena: [begin, end), scaled on its own.
struct ArenaSegment {
  int64_t begin = 0, end = 0;
};

// The largest |x[i]| of x[0, n) as a double (cpu::max_abs); +inf when any element
// is NaN or infinite, since a max all-reduce could drop a NaN. Exact, so the same
// on every replica.
double max_abs(const float* x, int64_t n);

// The power of two 2^F that turns values of magnitude <= max_abs into integers
// whose sum over `terms` (>= 1) values fits in int64 with a bit to spare:
// F = 62 - ceil(log2 terms) - e, where max_abs < 2^e. max_abs must be finite.
int fixed_point_exponent(double max_abs, int64_t terms);

// acc[i] += round(x[i] * 2^F) (to nearest, ties to even) for i < n.
void accumulate_fixed(const float* x, int64_t n, int exponent, int64_t* acc);

// out[i] = float(acc[i] * 2^-F) for i < n.
void fixed_to_float(const int64_t* acc, int64_t n, int exponent, float* out);

}  // namespace lockstep
