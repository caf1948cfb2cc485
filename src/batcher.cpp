// The batching worker: wait for a first request, give the batch until its
// deadline (or until it is full) to grow, gather the rows, run once, scatter
// the results and wake each caller. A request that finds nothing running and
// nothing queued runs on its caller's thread instead, while fewer than `lanes` runs
// are active (active_ counts batches and inline runs).
#include "src/batcher.h"

#include <algorithm>
#include <exception>

namespace lockstep {

Batcher::Batcher(int64_t in_width, int64_t out_width, int64_t max_rows,
                 std::chrono::microseconds timeout, Run run, int lanes)
    : in_width_(in_width), out_width_(out_width), max_rows_(std::max<int64_t>(1, max_rows)),
      timeout_(timeout), lanes_(std::max(1, lanes)), run_(std::move(run)), worker_([this] { work(); }) {}

Batcher::~Batcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void Batcher::infer(const float* x, int64_t rows, float* y) {
  std::unique_lock<std::mutex> lock(mu_);
  if (active_ < lanes_ && queue_.empty()) {
    // Nothing runs or waits: run on this thread, no handoff. Requests that come
    // meanwhile queue up and form the worker's next batch.
    ++active_;
    ++batches_;
    rows_done_ += rows;
    lock.unlock();
    try {
      run_(x, rows, y);
    } catch (...) {
      release();
      throw;
    }
    release();
    return;
  }
  Pending p{x, rows, y, std::chrono::steady_clock::now(), {}};
  std::future<void> done = p.done.get_future();
  queue_.push_back(&p);
  queued_rows_ += rows;
  lock.unlock();
  cv_.notify_one();
  done.get();
}

void Batcher::release() {
  bool waiting = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --active_;
    waiting = !queue_.empty();
  }
  // Only the worker waits on cv_, and only for queued work: waking it for
  // nothing would cost a context switch per request.
  if (waiting) cv_.notify_one();
}

int64_t Batcher::batches() const {
  std::lock_guard<std::mutex> lock(mu_);
  return batches_;
}

int64_t Batcher::rows_done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rows_done_;
}

std::vector<Batcher::Pending*> Batcher::take_batch(std::unique_lock<std::mutex>& lock) {
  cv_.wait(lock, [&] { return (stopping_ || !queue_.empty()) && active_ < lanes_; });
  if (queue_.empty()) return {};
  const auto deadline = queue_.front()->arrived + timeout_;
  cv_.wait_until(lock, deadline, [&] { return stopping_ || queued_rows_ >= max_rows_; });
  std::vector<Pending*> batch;
  int64_t rows = 0;
  while (!queue_.empty() && (batch.empty() || rows + queue_.front()->rows <= max_rows_)) {
    rows += queue_.front()->rows;
    batch.push_back(queue_.front());
    queue_.pop_front();
  }
  queued_rows_ -= rows;
  ++active_;
  ++batches_;
  rows_done_ += rows;
  return batch;
}

void Batcher::run_batch(const std::vector<Pending*>& batch) {
  int64_t rows = 0;
  for (const Pending* p : batch) rows += p->rows;
  try {
    x_.resize(size_t(rows * in_width_));
    y_.resize(size_t(rows * out_width_));
    int64_t at = 0;
    for (const Pending* p : batch) {
      std::copy(p->x, p->x + p->rows * in_width_, x_.begin() + at * in_width_);
      at += p->rows;
    }
    run_(x_.data(), rows, y_.data());
  } catch (...) {
    for (Pending* p : batch) p->done.set_exception(std::current_exception());
    return;
  }
  // A caller may return (and its Pending end) as soon as it is answered.
  int64_t at = 0;
  for (Pending* p : batch) {
    const int64_t n = p->rows;
    std::copy(y_.begin() + at * out_width_, y_.begin() + (at + n) * out_width_, p->y);
    at += n;
    p->done.set_value();
  }
}

void Batcher::work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    const std::vector<Pending*> batch = take_batch(lock);
    if (batch.empty()) return;  // stopping, nothing queued
    lock.unlock();
    run_batch(batch);
    lock.lock();
    --active_;
  }
}

}  // namespace lockstep
