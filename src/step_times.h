// Where a training step's time goes: per step, the input wait, the compute
// (forward and backward), the all-reduce wait and the optimizer of one replica,
// summarised per epoch as medians (the metrics record's *_ms fields) and, at
// the end of a run, as one line naming the largest share after compute.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace lockstep {

// Seconds from t0 to now on the steady clock: every step and phase timing.
inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One replica's cumulative counters (seconds), as Replica keeps them.
struct StepCounters {
  double input = 0, step = 0, comm = 0, optimizer = 0;
};

// Medians over an epoch's steps, in milliseconds; each part's median on its own.
struct StepBreakdown {
  int64_t steps = 0;
  double step_ms = 0;       // input wait + train_step
  double compute_ms = 0;    // train_step - all-reduce wait - optimizer
  double allreduce_ms = 0;  // waiting inside (or for) the gradient all-reduce
  double input_ms = 0;      // waiting for the batch
  double optimizer_ms = 0;
};

class StepTimes {
 public:
  // Starts an epoch of up to `steps` steps (reserved now: adding never allocates).
  void begin_epoch(int64_t steps);
  // One step: the counters before and after it.
  void add(const StepCounters& before, const StepCounters& after);
  StepBreakdown summary() const;

 private:
  std::vector<double> step_, compute_, comm_, input_, optimizer_;
};

double median(std::vector<double> v);

// "all-reduce wait 31% of a step at 2 replicas (median step 0.412 ms: compute
// 0.250 ms 61%, ...)": the largest part after compute leads. `comm` names the
// communication part: "meeting wait" where the replicas sum the gradient
// inside the update (no all-reduce; its time is the two meetings').
std::string where_time_went(const StepBreakdown& b, int replicas, const char* comm = "all-reduce wait");

}  // namespace lockstep
