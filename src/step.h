// The replica's training step, written once for every device: forward -> loss
// -> backward with bucket cuts -> all-reduce -> extras -> finite flag -> update.
// The devices differ only in the kernels their Network runs (src/device.h) and
// in how the steps below reach memory: S, the replica's step on its device
// (MirroredStrategy's CPU replicas in src/strategy.cpp, gpu/cuda_step.cpp on
// CUDA), provides
//   Network<D>& net(); const float* params(); float* grads();
//   reduce(begin, end): all-reduces grads[begin, end) across the replicas in sync
//     (in order; it may return before the sum is done), or leaves it to
//     update() (CPU replicas with weights of their own that reach each other's
//     memory sum their slice of every replica's gradient inside the update:
//     MirroredStrategy::sum_in_update)
//   extras(stats, stop): writes the step's extras (StepExtra) after the gradient
//   join(): returns once every reduce is done
//   update(): the finite flag of the reduced loss and gradient, then the
//     optimizer, skipped on every replica alike when either is not finite
// The gradient's flag comes either from the reduced gradient (CUDA reads it
// after the sum) or from the extras: the CPU replicas measure their own
// gradients before each reduce, and a sum of R terms each at most
// kGradientLimit / (2R) stays within kGradientLimit, so no replica reads the
// sum again.
// Bucket boundaries depend only on the model's layout and bucket size, so every
// replica issues the same collectives in the same order.
#pragma once

#include <cmath>
#include <cstdint>

#include "data/input.h"
#include "src/device.h"

namespace lockstep {

// The largest |element| of a summed gradient that a CPU step applies: 2^63,
// about 9.2e18 (CUDA steps check for NaN and Inf only). Beyond it the step
// counts as non-finite: Adam squares every element, and past about 1.8e19 the
// square overflows float and leaves its slot v Inf for good (that weight would
// never move again, and no checkpoint or model file could hold it).
inline constexpr float kGradientLimit = 0x1p63f;

// The gradient arena has room for a few values reduced with the last bucket.
// kOverBound counts the replicas whose own gradient held NaN, Inf or an element
// beyond their share of kGradientLimit (0 where the device checks the sum).
enum StepExtra : int64_t { kLossSum = 0, kCorrect, kRows, kStop, kOverBound, kExtras };

// What one synchronous step reports, the same on every replica.
struct StepResult {
  SliceStats global;    // loss sum, correct and rows over ALL replicas
  bool stop = false;    // some replica asked to stop (a signal)
  // The update was applied: the global loss and the reduced gradient were all
  // finite, the gradient within kGradientLimit on the CPU (where the replicas
  // check their own, each within its share). If not, no replica changed
  // anything (finite_loss says which failed).
  bool finite = true;
  bool finite_loss = true;
  bool finite_state = true;  // batch norm's batch statistics (the CPU step checks them)
};

// The slice's values into the extras, reduced with the last bucket.
inline void write_extras(float* extra, const SliceStats& s, bool stop_requested, bool over_bound) {
  extra[kLossSum] = float(s.loss_sum);
  extra[kCorrect] = float(s.correct);
  extra[kRows] = float(s.rows);
  extra[kStop] = stop_requested ? 1.0f : 0.0f;
  extra[kOverBound] = over_bound ? 1.0f : 0.0f;
}
// The step's result from the reduced extras; `finite` still needs the flag of
// the reduced gradient where the device checks that instead.
inline StepResult read_extras(const float* extra) {
  StepResult out;
  out.global.loss_sum = extra[kLossSum];
  out.global.correct = int64_t(std::llround(extra[kCorrect]));
  out.global.rows = int64_t(std::llround(extra[kRows]));
  out.stop = extra[kStop] > 0.0f;
  out.finite_loss = std::isfinite(extra[kLossSum]);
  out.finite = out.finite_loss && extra[kOverBound] == 0.0f;
  return out;
}

// Elements per all-reduce bucket for strategy.bucket_mb.
inline int64_t bucket_elements(double bucket_mb) {
  const int64_t n = int64_t(bucket_mb * 1024.0 * 1024.0 / sizeof(float));
  return n < 1 ? 1 : n;
}

// The gradient of sum(loss)/global_rows on each replica: their SUM over all
// replicas is the gradient of the global batch's mean loss.
template <class S>
void run_step(S& s, const ReplicaBatch& b, int64_t num_params, int64_t bucket_elems,
              uint64_t step_seed, bool stop_requested) {
  const float scale = b.global_rows > 0 ? 1.0f / float(b.global_rows) : 0.0f;
  // Bucketing state behind one pointer: the callback then fits std::function's
  // small buffer and the step allocates nothing.
  struct Cut {
    S* s;
    int64_t n, bucket, reduced;
  } cut{&s, num_params, bucket_elems, 0};
  const auto stats = s.net().train(s.params(), s.grads(), b, scale, step_seed, [c = &cut](int64_t ready) {
    if (ready - c->reduced >= c->bucket && ready < c->n) {
      c->s->reduce(c->reduced, ready);
      c->reduced = ready;
    }
  });
  // The step's metrics and stop requests ride in the last bucket, so every
  // replica learns the global loss (and any stop) with no extra collective.
  s.extras(stats, stop_requested);
  s.reduce(cut.reduced, num_params + kExtras);
  s.join();
  s.update();
}

}  // namespace lockstep
