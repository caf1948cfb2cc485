// Server-side batching for lockstep serve (TF Serving's max_batch_size and
// batch_timeout_micros): requests from many HTTP threads share forward passes
// when every core is busy, and run at once on their own thread when one is free.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace lockstep {

// A request is never split; one larger than max_rows runs alone. A queued batch
// waits at most `timeout` after its first request arrived for more rows. While
// nothing is queued and fewer than `lanes` runs are active, a request runs at
// once on its caller's thread (no handoff); once every lane is busy, arrivals
// queue, and the worker thread runs them as one pass when a lane frees.
class Batcher {
 public:
  // run(x, rows, y): x (rows, in_width) -> y (rows, out_width); called on the
  // worker thread or a caller's, at most `lanes` calls at once (with lanes 1 it
  // may own scratch state).
  using Run = std::function<void(const float* x, int64_t rows, float* y)>;

  Batcher(int64_t in_width, int64_t out_width, int64_t max_rows, std::chrono::microseconds timeout,
          Run run, int lanes = 1);
  ~Batcher();  // finishes every queued request, then joins the worker
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Blocks until this request's rows are computed into y (rows, out_width).
  // Rethrows what run threw for the batch it was part of.
  void infer(const float* x, int64_t rows, float* y);

  // Forward passes run and rows computed so far (for the log and the bench).
  int64_t batches() const;
  int64_t rows_done() const;

 private:
  struct Pending {
    const float* x;
    int64_t rows;
    float* y;
    std::chrono::steady_clock::time_point arrived;
    std::promise<void> done;
  };
  void work();
  void release();  // an inline run ended
  std::vector<Pending*> take_batch(std::unique_lock<std::mutex>& lock);
  void run_batch(const std::vector<Pending*>& batch);

  const int64_t in_width_, out_width_, max_rows_;
  const std::chrono::microseconds timeout_;
  const int lanes_;
  Run run_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending*> queue_;
  int64_t queued_rows_ = 0, batches_ = 0, rows_done_ = 0;
  bool stopping_ = false;
  int active_ = 0;  // runs in progress: batches and inline requests
  std::vector<float> x_, y_;  // the gathered batch (worker only)
  std::thread worker_;
};

}  // namespace lockstep
