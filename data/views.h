// Composable dataset views, tf.data style: an Iterator<T> yields the elements of
// one pass (epoch) at a time; views wrap iterators (map, shuffle, batch, shard,
// repeat, cache, prefetch) and own what they wrap. Every iterator can report
// its position (epoch, elements taken) and seek back to it for exact resume.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "data/aligned.h"
#include "data/input.h"
#include "data/random.h"

namespace lockstep {

// Pass number and elements already taken in that pass.
struct ViewPosition {
  int64_t epoch = 0;
  int64_t index = 0;
};

// One pass at a time over a stream of T. start(epoch) begins pass `epoch` (views
// that shuffle derive their order from it); an iterator never started begins
// pass 0 on its first next(). next(out) may reuse out's storage (views swap
// buffers instead of copying, so steady state does not allocate).
template <typename T>
class Iterator {
 public:
  virtual ~Iterator() = default;

  void start(int64_t epoch) {
    started_ = true;
    epoch_ = epoch;
    taken_ = 0;
    on_start(epoch);
  }
  bool next(T& out) {
    if (!started_) start(0);
    if (!produce(out)) return false;
    ++taken_;
    return true;
  }
  // Skips up to n elements; returns how many there were.
  int64_t skip(int64_t n) {
    if (!started_) start(0);
    const int64_t done = n > 0 ? advance(n) : 0;
    taken_ += done;
    return done;
  }
  ViewPosition position() const { return {epoch_, taken_}; }
  // Continue exactly where position() was taken: same pass, same next element.
  void seek(const ViewPosition& p) {
    start(p.epoch);
    if (skip(p.index) != p.index)
      throw DataError("input position (epoch " + std::to_string(p.epoch) + ", element " +
                      std::to_string(p.index) + ") lies past the end of the pass");
  }
  // Elements per pass, or -1 when unknown without iterating.
  virtual int64_t size() const { return -1; }

 protected:
  virtual void on_start(int64_t epoch) = 0;
  virtual bool produce(T& out) = 0;
  // Default: produce and drop. Views that can jump (random access) override.
  virtual int64_t advance(int64_t n) {
    T scratch{};
    int64_t done = 0;
    while (done < n && produce(scratch)) ++done;
    return done;
  }

 private:
  bool started_ = false;
  int64_t epoch_ = 0;
  int64_t taken_ = 0;
};

template <typename T>
using IteratorPtr = std::unique_ptr<Iterator<T>>;

// ---------------------------------------------------------------- sources

// 0, 1, ..., n-1: the row indices of a dataset.
class RangeIterator : public Iterator<int64_t> {
 public:
  explicit RangeIterator(int64_t n) : n_(n) {}
  int64_t size() const override { return n_; }

 protected:
  void on_start(int64_t) override { i_ = 0; }
  bool produce(int64_t& out) override {
    if (i_ >= n_) return false;
    out = i_++;
    return true;
  }
  int64_t advance(int64_t n) override {
    const int64_t k = std::min(n, n_ - i_);
    i_ += k;
    return k;
  }

 private:
  int64_t n_ = 0, i_ = 0;
};

inline IteratorPtr<int64_t> range(int64_t n) { return std::make_unique<RangeIterator>(n); }

// ---------------------------------------------------------------- map

// f applied to every element (1:1, so skipping needs no f).
template <typename In, typename Out>
class MapIterator : public Iterator<Out> {
 public:
  MapIterator(IteratorPtr<In> child, std::function<Out(const In&)> f)
      : child_(std::move(child)), f_(std::move(f)) {}
  int64_t size() const override { return child_->size(); }

 protected:
  void on_start(int64_t epoch) override { child_->start(epoch); }
  bool produce(Out& out) override {
    if (!child_->next(in_)) return false;
    out = f_(in_);
    return true;
  }
  int64_t advance(int64_t n) override { return child_->skip(n); }

 private:
  IteratorPtr<In> child_;
  std::function<Out(const In&)> f_;
  In in_{};
};

template <typename In, typename F>
auto map(IteratorPtr<In> child, F f) {
  using Out = std::decay_t<std::invoke_result_t<F, const In&>>;
  return IteratorPtr<Out>(std::make_unique<MapIterator<In, Out>>(std::move(child), std::move(f)));
}

// ---------------------------------------------------------------- shuffle

// Buffered shuffle: keep `buffer` elements, hand out a uniformly chosen one and
// refill its place from the child. With buffer >= pass size this is an exact,
// uniformly random permutation. The order of pass e is f(seed, e) when
// reshuffling each epoch, f(seed) otherwise.
// When the buffer holds the child's whole pass (its size() known), the pass's
// draws are all made when it starts, as swaps in place, and elements are then
// handed out from the buffer's end: the same draws, so the same order, but one
// burst of random accesses to a buffer that is in cache at that moment, instead
// of one cache miss per element spread over the pass (a 60,000-row split's
// buffer is 480 KB, evicted by each training step in between).
template <typename T>
class ShuffleIterator : public Iterator<T> {
 public:
  ShuffleIterator(IteratorPtr<T> child, int64_t buffer, uint64_t seed, bool reshuffle_each_epoch)
      : child_(std::move(child)), capacity_(buffer), seed_(seed), reshuffle_(reshuffle_each_epoch) {
    if (buffer < 1) throw DataError("shuffle: buffer size must be >= 1, got " + std::to_string(buffer));
  }
  int64_t size() const override { return child_->size(); }

 protected:
  void on_start(int64_t epoch) override {
    child_->start(epoch);
    rng_.reseed(derive_seed(seed_, reshuffle_ ? uint64_t(epoch) : 0));
    live_ = 0;
    filled_ = false;
    exhausted_ = false;
    drawn_ = false;
  }
  bool produce(T& out) override {
    if (!filled_) fill();
    if (live_ == 0) return false;
    if (drawn_) {
      using std::swap;
      swap(out, buffer_[--live_]);
      return true;
    }
    const size_t j = size_t(rng_.below(uint64_t(live_)));
    using std::swap;
    swap(out, buffer_[j]);
    if (exhausted_ || !child_->next(buffer_[j])) {
      exhausted_ = true;
      if (j != live_ - 1) swap(buffer_[j], buffer_[live_ - 1]);
      --live_;  // the slot stays allocated for the next pass
    }
    return true;
  }

 private:
  void fill() {
    filled_ = true;
    while (live_ < size_t(capacity_)) {
      if (live_ == buffer_.size()) buffer_.emplace_back();
      if (!child_->next(buffer_[live_])) {
        exhausted_ = true;
        break;
      }
      ++live_;
    }
    if (!exhausted_ && child_->size() >= 0 && int64_t(live_) >= child_->size()) draw_all();
  }

  // The whole pass is in the buffer: make every draw now. Draw k swaps the chosen
  // element with the last live one, which the per-element path hands out and then
  // refills the chosen slot from (the child is exhausted), leaving the same live
  // elements in the same slots; the buffer's tail then holds the order, reversed.
  void draw_all() {
    T extra{};
    if (child_->next(extra))
      throw DataError("shuffle: the input holds more elements than its size() of " +
                      std::to_string(child_->size()));
    exhausted_ = true;
    drawn_ = true;
    using std::swap;
    for (size_t live = live_; live > 1; --live) {
      const size_t j = size_t(rng_.below(uint64_t(live)));
      if (j != live - 1) swap(buffer_[j], buffer_[live - 1]);
    }
  }

  IteratorPtr<T> child_;
  int64_t capacity_;
  uint64_t seed_;
  bool reshuffle_;
  Rng rng_;
  std::vector<T> buffer_;
  size_t live_ = 0;
  bool filled_ = false, exhausted_ = false, drawn_ = false;
};

template <typename T>
IteratorPtr<T> shuffle(IteratorPtr<T> child, int64_t buffer, uint64_t seed, bool reshuffle_each_epoch = true) {
  return std::make_unique<ShuffleIterator<T>>(std::move(child), buffer, seed, reshuffle_each_epoch);
}

// ---------------------------------------------------------------- batch

// Groups consecutive elements into vectors of `batch_size`; the last, shorter
// one is kept unless drop_remainder.
template <typename T>
class BatchIterator : public Iterator<std::vector<T>> {
 public:
  BatchIterator(IteratorPtr<T> child, int64_t batch_size, bool drop_remainder)
      : child_(std::move(child)), batch_(batch_size), drop_(drop_remainder) {
    if (batch_size < 1) throw DataError("batch: batch size must be >= 1, got " + std::to_string(batch_size));
  }
  int64_t size() const override {
    const int64_t n = child_->size();
    if (n < 0) return -1;
    return drop_ ? n / batch_ : (n + batch_ - 1) / batch_;
  }

 protected:
  void on_start(int64_t epoch) override { child_->start(epoch); }
  bool produce(std::vector<T>& out) override {
    size_t k = 0;
    while (int64_t(k) < batch_) {
      if (k == out.size()) out.emplace_back();
      if (!child_->next(out[k])) break;
      ++k;
    }
    out.resize(k);
    return k > 0 && (int64_t(k) == batch_ || !drop_);
  }
  int64_t advance(int64_t n) override {
    const int64_t rows = child_->skip(n * batch_);
    return drop_ ? rows / batch_ : (rows + batch_ - 1) / batch_;
  }

 private:
  IteratorPtr<T> child_;
  int64_t batch_;
  bool drop_;
};

template <typename T>
IteratorPtr<std::vector<T>> batch(IteratorPtr<T> child, int64_t batch_size, bool drop_remainder = false) {
  return std::make_unique<BatchIterator<T>>(std::move(child), batch_size, drop_remainder);
}

// ---------------------------------------------------------------- shard

// Elements index, index + num_shards, index + 2 num_shards, ... of the child:
// the shards for index 0..num_shards-1 partition the stream.
template <typename T>
class ShardIterator : public Iterator<T> {
 public:
  ShardIterator(IteratorPtr<T> child, int64_t num_shards, int64_t index)
      : child_(std::move(child)), shards_(num_shards), index_(index) {
    if (num_shards < 1 || index < 0 || index >= num_shards)
      throw DataError("shard: need 0 <= index < num_shards, got index " + std::to_string(index) +
                      " of " + std::to_string(num_shards));
  }
  int64_t size() const override {
    const int64_t n = child_->size();
    if (n < 0) return -1;
    return n > index_ ? (n - index_ + shards_ - 1) / shards_ : 0;
  }

 protected:
  void on_start(int64_t epoch) override {
    child_->start(epoch);
    first_ = true;
  }
  bool produce(T& out) override {
    const int64_t gap = first_ ? index_ : shards_ - 1;
    first_ = false;
    if (child_->skip(gap) < gap) return false;
    return child_->next(out);
  }
  int64_t advance(int64_t n) override {
    const int64_t gap = first_ ? index_ : shards_ - 1;
    first_ = false;
    const int64_t got = child_->skip(gap + 1 + (n - 1) * shards_);
    return got <= gap ? 0 : 1 + (got - gap - 1) / shards_;
  }

 private:
  IteratorPtr<T> child_;
  int64_t shards_, index_;
  bool first_ = true;
};

template <typename T>
IteratorPtr<T> shard(IteratorPtr<T> child, int64_t num_shards, int64_t index) {
  return std::make_unique<ShardIterator<T>>(std::move(child), num_shards, index);
}

// ---------------------------------------------------------------- repeat

// `count` passes of the child as one pass (count < 0: without end). Pass k of
// epoch e runs the child's epoch e*count + k (e + k when endless), so a shuffle
// below a repeat gives every repetition its own order.
template <typename T>
class RepeatIterator : public Iterator<T> {
 public:
  RepeatIterator(IteratorPtr<T> child, int64_t count) : child_(std::move(child)), count_(count) {}
  int64_t size() const override {
    const int64_t n = child_->size();
    return count_ < 0 || n < 0 ? -1 : n * count_;
  }

 protected:
  void on_start(int64_t epoch) override {
    epoch_ = epoch;
    pass_ = 0;
    any_in_pass_ = false;
    if (count_ != 0) child_->start(child_epoch());
  }
  bool produce(T& out) override {
    while (count_ != 0) {
      if (child_->next(out)) {
        any_in_pass_ = true;
        return true;
      }
      if (!next_pass()) return false;
    }
    return false;
  }
  int64_t advance(int64_t n) override {
    int64_t done = 0;
    while (count_ != 0 && done < n) {
      const int64_t got = child_->skip(n - done);
      done += got;
      if (got > 0) any_in_pass_ = true;
      if (done < n && !next_pass()) break;
    }
    return done;
  }

 private:
  int64_t child_epoch() const { return count_ > 0 ? epoch_ * count_ + pass_ : epoch_ + pass_; }
  // Moves to the child's next pass; false when done (or the child is empty,
  // which would otherwise repeat nothing forever).
  bool next_pass() {
    if (!any_in_pass_) return false;
    ++pass_;
    if (count_ > 0 && pass_ >= count_) return false;
    any_in_pass_ = false;
    child_->start(child_epoch());
    return true;
  }

  IteratorPtr<T> child_;
  int64_t count_;
  int64_t epoch_ = 0, pass_ = 0;
  bool any_in_pass_ = false;
};

template <typename T>
IteratorPtr<T> repeat(IteratorPtr<T> child, int64_t count = -1) {
  return std::make_unique<RepeatIterator<T>>(std::move(child), count);
}

// ---------------------------------------------------------------- cache

// Records the first complete pass in memory and replays it for every later
// pass (whatever its epoch: a cache above a shuffle freezes the first order,
// as in tf.data). A pass abandoned half way is recorded again from scratch.
template <typename T>
class CacheIterator : public Iterator<T> {
 public:
  explicit CacheIterator(IteratorPtr<T> child) : child_(std::move(child)) {}
  int64_t size() const override { return complete_ ? int64_t(items_.size()) : child_->size(); }

 protected:
  void on_start(int64_t epoch) override {
    pos_ = 0;
    if (!complete_) {
      items_.clear();
      child_->start(epoch);
    }
  }
  bool produce(T& out) override {
    if (complete_) {
      if (pos_ >= items_.size()) return false;
      out = items_[pos_++];
      return true;
    }
    if (!child_->next(out)) {
      complete_ = true;
      pos_ = items_.size();
      return false;
    }
    items_.push_back(out);
    return true;
  }
  int64_t advance(int64_t n) override {
    if (!complete_) return Iterator<T>::advance(n);  // must still record what it skips
    const size_t k = std::min(size_t(n), items_.size() - pos_);
    pos_ += k;
    return int64_t(k);
  }

 private:
  IteratorPtr<T> child_;
  std::vector<T> items_;
  size_t pos_ = 0;
  bool complete_ = false;
};

template <typename T>
IteratorPtr<T> cache(IteratorPtr<T> child) {
  return std::make_unique<CacheIterator<T>>(std::move(child));
}

// ---------------------------------------------------------------- prefetch

// Runs the child on a background thread, up to `depth` elements ahead, so
// preparing input overlaps the consumer's work. Elements travel by swap through
// a ring of `depth` slots (buffers are recycled, not reallocated). An exception
// in the worker is re-thrown to the consumer once the elements before it are
// taken. The child is touched only by the worker while it runs. on_thread_start
// (optional) runs first on each worker thread (e.g. its floating-point mode).
template <typename T>
class PrefetchIterator : public Iterator<T> {
 public:
  PrefetchIterator(IteratorPtr<T> child, int depth, std::function<void()> on_thread_start = {})
      : child_(std::move(child)), slots_(size_t(std::max(depth, 1))), size_(child_->size()),
        on_thread_start_(std::move(on_thread_start)) {
    if (depth < 1) throw DataError("prefetch: depth must be >= 1, got " + std::to_string(depth));
  }
  ~PrefetchIterator() override { stop_worker(); }
  int64_t size() const override { return size_; }

 protected:
  void on_start(int64_t epoch) override {
    stop_worker();
    head_ = tail_ = count_ = 0;
    finished_ = false;
    error_ = nullptr;
    child_->start(epoch);
    launch_worker();
  }
  bool produce(T& out) override {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [&] { return count_ > 0 || finished_; });
    if (count_ == 0) {
      if (error_) std::rethrow_exception(error_);
      return false;
    }
    const size_t slot = head_;
    lock.unlock();
    using std::swap;
    swap(out, slots_[slot]);
    lock.lock();
    head_ = (head_ + 1) % slots_.size();
    --count_;
    lock.unlock();
    space_.notify_one();
    return true;
  }
  int64_t advance(int64_t n) override {
    stop_worker();  // queue contents stay: the child is already past them
    int64_t done = 0;
    while (done < n && count_ > 0) {
      head_ = (head_ + 1) % slots_.size();
      --count_;
      ++done;
    }
    if (done < n && !finished_) done += child_->skip(n - done);
    if (!finished_) launch_worker();
    return done;
  }

 private:
  void launch_worker() {
    stop_ = false;
    worker_ = std::thread([this] {
      if (on_thread_start_) on_thread_start_();
      run();
    });
  }
  void stop_worker() {
    if (!worker_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    space_.notify_all();
    worker_.join();
  }
  void run() {
    for (;;) {
      size_t slot = 0;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        space_.wait(lock, [&] { return count_ < slots_.size() || stop_; });
        if (stop_) return;
        slot = tail_;
      }
      bool got = false;
      std::exception_ptr error;
      try {
        got = child_->next(slots_[slot]);
      } catch (...) {
        error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (got) {
          tail_ = (tail_ + 1) % slots_.size();
          ++count_;
        } else {
          finished_ = true;
          error_ = error;
        }
      }
      ready_.notify_one();
      if (!got) return;
    }
  }

  IteratorPtr<T> child_;
  std::vector<T> slots_;
  int64_t size_;
  std::function<void()> on_thread_start_;
  std::thread worker_;
  std::mutex mutex_;
  std::condition_variable ready_, space_;
  size_t head_ = 0, tail_ = 0, count_ = 0;
  bool finished_ = false, stop_ = false;
  std::exception_ptr error_;
};

template <typename T>
IteratorPtr<T> prefetch(IteratorPtr<T> child, int depth, std::function<void()> on_thread_start = {}) {
  return std::make_unique<PrefetchIterator<T>>(std::move(child), depth, std::move(on_thread_start));
}

// ---------------------------------------------------------------- rows of a Source

// One example read from a Source (row = its index in the source).
struct Example {
  int64_t row = 0;
  std::vector<float> x;         // (feature_dim)
  int32_t label = 0;            // classification
  std::vector<float> target;    // (target_dim), regression
};

// Every row of a source in order, as Examples (pair with shuffle/shard/batch).
class SourceIterator : public Iterator<Example> {
 public:
  explicit SourceIterator(std::shared_ptr<Source> source);
  int64_t size() const override;

 protected:
  void on_start(int64_t epoch) override;
  bool produce(Example& out) override;
  int64_t advance(int64_t n) override;

 private:
  std::shared_ptr<Source> source_;
  int64_t i_ = 0;
};

IteratorPtr<Example> from_source(std::shared_ptr<Source> source);

// A batch of rows gathered from a Source into contiguous float buffers.
struct RowBatch {
  int64_t global_rows = 0;  // rows in the index batch it came from
  int64_t first_row = 0;    // offset of the gathered slice inside that batch
  int64_t rows = 0;         // rows gathered
  AlignedVector<float> x;        // (rows, feature_dim)
  std::vector<int32_t> labels;   // (rows), classification
  std::vector<float> targets;    // (rows, target_dim), regression
};

// Which rows [begin, end) of an index batch of n rows to gather.
using SliceFn = std::function<std::pair<int64_t, int64_t>(int64_t n)>;

// Turns batches of row indices into RowBatches by reading the rows from the
// source: all of them, or only the slice chosen by `slice` (the distributed
// input reads just this process's replicas' rows). Buffers are reused.
class GatherIterator : public Iterator<RowBatch> {
 public:
  GatherIterator(IteratorPtr<std::vector<int64_t>> child, std::shared_ptr<Source> source, SliceFn slice = {});
  int64_t size() const override;

 protected:
  void on_start(int64_t epoch) override;
  bool produce(RowBatch& out) override;
  int64_t advance(int64_t n) override;

 private:
  IteratorPtr<std::vector<int64_t>> child_;
  std::shared_ptr<Source> source_;
  SliceFn slice_;
  std::vector<int64_t> indices_;
};

IteratorPtr<RowBatch> gather(IteratorPtr<std::vector<int64_t>> child, std::shared_ptr<Source> source,
                             SliceFn slice = {});

}  // namespace lockstep
