// A timeline of training (lockstep train --trace FILE.json): one track per rank
// and local replica holding spans for input wait, forward, backward, each
// bucket's all-reduce (bytes, backend), the optimizer, weight checksums,
// evaluation and checkpoint writes, written as Chrome trace-event JSON that
// Perfetto and chrome://tracing open. Memory is bounded: spans of steps are
// kept for a window of --trace-steps steps after a warm-up, and every track
// holds at most a fixed number of spans. Tracing off is a null pointer.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace lockstep {

using TraceClock = std::chrono::steady_clock;

struct TraceSpan {
  const char* name;  // a string literal
  int64_t start_ns, dur_ns;
  int64_t step;      // the global step (1-based), or -1 outside steps
  int64_t bytes;     // all-reduce payload, or -1
};

// The spans of one thread; only that thread writes it. Spans past the capacity
// are counted, not kept (the step path never allocates).
class TraceTrack {
 public:
  TraceTrack(std::string name, int tid, size_t capacity);
  void span(const char* name, TraceClock::time_point t0, TraceClock::time_point t1, int64_t bytes = -1);
  void set_step(int64_t step) { step_ = step; }
  void set_backend(std::string backend) { backend_ = std::move(backend); }
  const std::vector<TraceSpan>& spans() const { return spans_; }
  int64_t dropped() const { return dropped_; }
  // This track's events as JSON objects separated by commas (pid = rank).
  std::string json(int rank, TraceClock::time_point origin) const;

 private:
  std::string name_, backend_;
  int tid_;
  size_t capacity_;
  int64_t step_ = -1;
  int64_t dropped_ = 0;
  std::vector<TraceSpan> spans_;
};

class Tracer {
 public:
  static constexpr int64_t kWarmupSteps = 20;  // untraced steps before the window

  Tracer(int rank, int local_replicas, int64_t steps);
  // Where training starts (0, or a resumed step): the window is the `steps`
  // steps after kWarmupSteps more. Every replica calls it with the same value.
  void start_at(int64_t global_step) { first_step_.store(global_step + kWarmupSteps); }
  // global_step is 1-based (the step about to run).
  bool traces_step(int64_t global_step) const {
    const int64_t first = first_step_.load(std::memory_order_relaxed);
    return global_step > first && global_step <= first + steps_;
  }
  int64_t first_step() const { return first_step_.load() + 1; }
  int64_t last_step() const { return first_step_.load() + steps_; }
  TraceTrack& replica(int local_index) { return replicas_[size_t(local_index)]; }
  // The bucket-reducing thread of a replica (strategy.overlap).
  TraceTrack& reducer(int local_index) { return reducers_[size_t(local_index)]; }
  // This rank's tracks as JSON objects separated by commas.
  std::string json() const;
  int64_t dropped() const;

 private:
  int rank_;
  std::atomic<int64_t> first_step_{kWarmupSteps};
  int64_t steps_;
  TraceClock::time_point origin_;
  std::vector<TraceTrack> replicas_, reducers_;
};

// Writes {"traceEvents": [...], "displayTimeUnit": "ms", "metadata": ...} from
// the JSON of every rank's tracks. Throws std::runtime_error naming the path.
void write_trace_file(const std::string& path, const std::vector<std::string>& rank_events,
                      const std::string& metadata_json);

}  // namespace lockstep
