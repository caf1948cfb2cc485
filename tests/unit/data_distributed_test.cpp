// DistributedInput against hand-checkable sources: each row's features encode
// its row id, so a batch's content can be compared with exact expectations —
// replica slices add up to the one-replica batch for any R, evaluation sees
// every row once, resume continues identically, prefetch changes nothing, and
// replicas reading their own rows (replica_gather) get exactly the same slices
// and prefetch the rows of their next batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <mutex>
#include <numeric>
#include <set>
#include <thread>

#include "data/input.h"
#include "data/sources.h"

namespace lockstep {
namespace {

constexpr int64_t kDim = 3;

// Row i: x = (10 i, 10 i + 1, 10 i + 2), label i % 5.
std::shared_ptr<Source> numbered_rows(int64_t n) {
  TensorSet t;
  t.feature_shape = {kDim};
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < kDim; ++j) t.x.push_back(float(10 * i + j));
    t.labels.push_back(int32_t(i % 5));
  }
  t.num_classes = 5;
  t.description = "numbered rows";
  return make_tensor_source(std::move(t));
}

// Row ids of a replica slice, checking that x and labels agree with them.
std::vector<int64_t> row_ids(const ReplicaBatch& b) {
  std::vector<int64_t> ids;
  for (int64_t r = 0; r < b.rows; ++r) {
    const int64_t id = int64_t(b.x[r * kDim]) / 10;
    for (int64_t j = 0; j < kDim; ++j) EXPECT_EQ(b.x[r * kDim + j], float(10 * id + j));
    EXPECT_EQ(b.labels[r], id % 5);
    ids.push_back(id);
  }
  return ids;
}

// Every global batch of one epoch as the row ids of the whole batch, read by
// `num_processes` inputs that each feed R / num_processes replicas.
std::vector<std::vector<int64_t>> epoch_batches(const std::shared_ptr<Source>& src, InputOptions o,
                                                int num_processes) {
  std::vector<std::unique_ptr<DistributedInput>> inputs;
  o.local_replicas = o.num_replicas / num_processes;
  for (int p = 0; p < num_processes; ++p) {
    o.first_replica = p * o.local_replicas;
    inputs.push_back(std::make_unique<DistributedInput>(src, o));
  }
  std::vector<std::vector<int64_t>> batches;
  std::vector<ReplicaBatch> out;
  for (;;) {
    std::vector<int64_t> global;
    bool any = false;
    for (auto& input : inputs) {
      if (!input->next(out)) continue;
      any = true;
      for (const ReplicaBatch& b : out) {
        const int64_t replica = &b - out.data() + (&input - inputs.data()) * o.local_replicas;
        EXPECT_EQ(b.first_row, replica * b.global_rows / o.num_replicas);
        EXPECT_EQ(b.rows, (replica + 1) * b.global_rows / o.num_replicas - b.first_row);
        std::vector<int64_t> ids = row_ids(b);
        global.insert(global.end(), ids.begin(), ids.end());
      }
    }
    if (!any) break;
    batches.push_back(global);
  }
  return batches;
}

TEST(DataDistributed, ReplicaSlicesAddUpToTheOneReplicaBatch) {
  auto src = numbered_rows(103);
  InputOptions o;
  o.global_batch = 16;
  o.seed = 5;
  o.num_replicas = 1;
  const auto reference = epoch_batches(src, o, 1);
  ASSERT_EQ(reference.size(), 7u);  // 6 full batches and one of 7
  EXPECT_EQ(reference.back().size(), 7u);
  for (int replicas = 1; replicas <= 4; ++replicas) {
    for (int processes : {1, replicas}) {
      o.num_replicas = replicas;
      EXPECT_EQ(epoch_batches(src, o, processes), reference) << replicas << " replicas, " << processes << " processes";
    }
  }
}

TEST(DataDistributed, EvaluationSeesEveryExampleExactlyOnce) {
  for (int64_t n : {103, 21, 64}) {
    auto src = numbered_rows(n);
    InputOptions o;
    o.global_batch = 20;
    o.num_replicas = 3;
    o.drop_remainder = true;
    o.seed = 9;
    o.whole_shares = true;  // 20 rows do not divide into 3 whole shares: evaluation splits evenly
    o = for_evaluation(o);
    auto batches = epoch_batches(src, o, 3);
    std::vector<int64_t> seen;
    for (const auto& b : batches) seen.insert(seen.end(), b.begin(), b.end());
    std::vector<int64_t> expected(static_cast<size_t>(n));
    std::iota(expected.begin(), expected.end(), 0);
    EXPECT_EQ(seen, expected) << "n = " << n;  // in order, since evaluation does not shuffle
  }
}

TEST(DataDistributed, ShortLastBatchWithFewerRowsThanReplicas) {
  auto src = numbered_rows(21);
  InputOptions o = for_evaluation({});
  o.global_batch = 20;
  o.num_replicas = 4;
  o.local_replicas = 4;
  DistributedInput input(src, o);
  std::vector<ReplicaBatch> out;
  ASSERT_TRUE(input.next(out));
  ASSERT_TRUE(input.next(out));
  int64_t total = 0;
  for (const ReplicaBatch& b : out) {
    EXPECT_EQ(b.global_rows, 1);
    total += b.rows;
  }
  EXPECT_EQ(total, 1);
  EXPECT_EQ(out[3].rows, 1);
  EXPECT_EQ(row_ids(out[3]), std::vector<int64_t>{20});
  EXPECT_FALSE(input.next(out));
}

TEST(DataDistributed, DropRemainderAndEpochsReshuffle) {
  auto src = numbered_rows(50);
  InputOptions o;
  o.global_batch = 16;
  o.drop_remainder = true;
  o.seed = 1;
  DistributedInput input(src, o);
  EXPECT_EQ(input.steps_per_epoch(), 3);
  std::vector<ReplicaBatch> out;
  std::vector<std::vector<int64_t>> epoch0, epoch1;
  while (input.next(out)) epoch0.push_back(row_ids(out[0]));
  EXPECT_EQ(input.position().epoch, 1);
  EXPECT_EQ(input.position().step, 0);
  while (input.next(out)) epoch1.push_back(row_ids(out[0]));
  ASSERT_EQ(epoch0.size(), 3u);
  ASSERT_EQ(epoch1.size(), 3u);
  for (const auto& b : epoch0) EXPECT_EQ(b.size(), 16u);
  EXPECT_NE(epoch0, epoch1);
  std::set<int64_t> distinct;
  for (const auto& b : epoch0) distinct.insert(b.begin(), b.end());
  EXPECT_EQ(distinct.size(), 48u);
}

TEST(DataDistributed, SampleBaseNumbersEveryGlobalBatch) {
  auto src = numbered_rows(40);
  InputOptions o;
  o.global_batch = 16;
  o.num_replicas = 2;
  o.local_replicas = 2;
  DistributedInput input(src, o);
  std::vector<ReplicaBatch> out;
  std::vector<int64_t> bases;
  for (int i = 0; i < 7; ++i)
    if (input.next(out)) bases.push_back(out[1].sample_base);
  EXPECT_EQ(bases, (std::vector<int64_t>{0, 16, 32, 40, 56, 72}));
}

TEST(DataDistributed, ResumeFromPositionContinuesIdentically) {
  auto src = numbered_rows(77);
  // Replica 1's rows of the next batch (with replica_gather from its own stream).
  auto next_slice = [](DistributedInput& input, std::vector<ReplicaBatch>& out) {
    if (!input.next(out)) return std::vector<int64_t>{-1};
    return row_ids(out[1]);
  };
  for (int mode : {0, 1, 2}) {  // no prefetch, prefetch 2, replicas read their own rows
    InputOptions o;
    o.global_batch = 8;
    o.num_replicas = 2;
    o.local_replicas = 2;
    o.seed = 123;
    o.prefetch = mode == 1 ? 2 : 0;
    o.replica_gather = mode == 2;
    DistributedInput original(src, o);
    std::vector<ReplicaBatch> out;
    for (int i = 0; i < 13; ++i) original.next(out);  // into epoch 1 (10 steps per epoch)
    const InputPosition saved = original.position();
    EXPECT_EQ(saved.epoch, 1);
    EXPECT_EQ(saved.step, 2);
    std::vector<std::vector<int64_t>> rest;
    for (int i = 0; i < 15; ++i) rest.push_back(next_slice(original, out));
    DistributedInput resumed(src, o);
    resumed.seek(saved);
    for (int i = 0; i < 15; ++i) EXPECT_EQ(next_slice(resumed, out), rest[size_t(i)]) << "mode " << mode << ", " << i;
  }
}

TEST(DataDistributed, PrefetchChangesNothingButTiming) {
  auto src = numbered_rows(200);
  InputOptions o;
  o.global_batch = 32;
  o.seed = 77;
  o.prefetch = 0;
  DistributedInput plain(src, o);
  o.prefetch = 3;
  DistributedInput fetched(src, o);
  std::vector<ReplicaBatch> a, b;
  for (int i = 0; i < 30; ++i) {
    const bool more = plain.next(a);
    ASSERT_EQ(more, fetched.next(b));
    if (more) {
      EXPECT_EQ(row_ids(a[0]), row_ids(b[0]));
    }
  }
}

TEST(DataDistributed, SteadyStateReusesItsBuffers) {
  auto src = numbered_rows(640);
  InputOptions o;
  o.global_batch = 64;
  o.prefetch = 2;
  DistributedInput input(src, o);
  std::vector<ReplicaBatch> out;
  std::set<const float*> buffers;
  for (int i = 0; i < 30; ++i) {
    if (!input.next(out)) continue;
    if (i >= 3) buffers.insert(out[0].x);
  }
  // The consumer's batch and the prefetch ring's slots rotate; nothing new is made.
  EXPECT_LE(buffers.size(), 3u);
}

TEST(DataDistributed, BadOptionsAreDataErrors) {
  auto src = numbered_rows(10);
  InputOptions o;
  o.global_batch = 11;
  try {
    DistributedInput input(src, o);
    FAIL() << "a global batch larger than the dataset was accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("numbered rows"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("larger than the dataset"), std::string::npos) << e.what();
  }
  o.global_batch = 4;
  o.num_replicas = 2;
  o.first_replica = 1;
  o.local_replicas = 2;
  EXPECT_THROW(DistributedInput(src, o), DataError);
  o.first_replica = 0;
  DistributedInput input(src, o);
  EXPECT_THROW(input.seek({0, 4}), DataError);
}

// A source that refuses concurrent reads and records whether two ever overlapped.
class OneReaderSource : public Source {
 public:
  explicit OneReaderSource(std::shared_ptr<Source> inner) : inner_(std::move(inner)) {}
  const DatasetInfo& info() const override { return inner_->info(); }
  void read(const int64_t* rows, int64_t n, float* x, int32_t* labels, float* targets) const override {
    if (inside_.fetch_add(1) != 0) overlapped_ = true;
    std::this_thread::sleep_for(std::chrono::microseconds(200));  // widen the window
    inner_->read(rows, n, x, labels, targets);
    inside_.fetch_sub(1);
  }
  bool overlapped() const { return overlapped_; }

 private:
  std::shared_ptr<Source> inner_;
  mutable std::atomic<int> inside_{0};
  mutable std::atomic<bool> overlapped_{false};
};

// Every slice of `epochs` epochs, each replica walking its own batch sequence
// and reading its own rows on its own thread, with no meeting between them (as
// MirroredStrategy::fetch does), as row ids in the order of the shared pipeline.
std::vector<std::vector<int64_t>> gathered_slices(const std::shared_ptr<Source>& src, InputOptions o,
                                                  int epochs) {
  o.replica_gather = true;
  DistributedInput input(src, o);
  EXPECT_TRUE(input.replica_gather());
  std::vector<std::vector<std::vector<int64_t>>> per(size_t(o.local_replicas));
  std::vector<std::thread> readers;
  for (int i = 0; i < o.local_replicas; ++i) {
    readers.emplace_back([&, i] {
      ReplicaBatch b;
      for (int e = 0; e < epochs; ++e)
        while (input.next_own(i, b)) per[size_t(i)].push_back(row_ids(b));
    });
  }
  for (auto& t : readers) t.join();
  std::vector<std::vector<int64_t>> slices;
  for (size_t step = 0; step < per[0].size(); ++step)
    for (const auto& mine : per) slices.push_back(step < mine.size() ? mine[step] : std::vector<int64_t>{-1});
  return slices;
}

std::vector<std::vector<int64_t>> threaded_slices(const std::shared_ptr<Source>& src, InputOptions o,
                                                  int epochs) {
  DistributedInput input(src, o);
  EXPECT_FALSE(input.replica_gather());
  std::vector<std::vector<int64_t>> slices;
  std::vector<ReplicaBatch> out;
  for (int e = 0; e < epochs; ++e)
    while (input.next(out))
      for (const ReplicaBatch& b : out) slices.push_back(row_ids(b));
  return slices;
}

// The kernels stream over a slice's features in 64-byte lines: a replica's own
// buffer starts on a line (whatever the row length), and so does the shared
// pipeline's batch that the first replica's slice begins.
TEST(DataDistributed, SlicesStartOnCacheLines) {
  auto src = numbered_rows(103);  // rows of 3 floats: 12 bytes, so no slice but the first is aligned by luck
  const auto on_line = [](const float* p) { return reinterpret_cast<uintptr_t>(p) % 64 == 0; };
  InputOptions o;
  o.global_batch = 10;
  o.num_replicas = 3;
  o.local_replicas = 3;
  o.seed = 5;
  {
    DistributedInput shared(src, o);
    std::vector<ReplicaBatch> out;
    for (int step = 0; step < 4 && shared.next(out); ++step) EXPECT_TRUE(on_line(out[0].x)) << "step " << step;
  }
  o.replica_gather = true;
  DistributedInput own(src, o);
  for (int i = 0; i < 3; ++i) {
    ReplicaBatch b;
    for (int step = 0; step < 4 && own.next_own(i, b); ++step)
      EXPECT_TRUE(on_line(b.x)) << "replica " << i << ", step " << step;
  }
}

TEST(DataDistributed, ReplicasReadingTheirOwnRowsGetTheSameSlices) {
  auto src = numbered_rows(103);  // 103 = 6 x 16 + 7: a short last batch of 7 rows for 4 replicas
  for (int processes : {1, 2}) {
    InputOptions o;
    o.global_batch = 16;
    o.num_replicas = 4;
    o.local_replicas = 4 / processes;
    o.first_replica = (processes - 1) * o.local_replicas;  // the last process
    o.seed = 9;
    const auto expected = threaded_slices(src, o, 2);
    const auto got = gathered_slices(src, o, 2);
    ASSERT_EQ(got.size(), expected.size());
    EXPECT_EQ(got, expected) << processes << " process(es)";
    EXPECT_EQ(got.size(), size_t(2 * 7 * o.local_replicas));
  }
}

TEST(DataDistributed, ReplicaGatherOverASerialSourceReadsOneAtATime) {
  auto serial = std::make_shared<OneReaderSource>(numbered_rows(64));
  EXPECT_FALSE(serial->concurrent_reads());
  EXPECT_TRUE(numbered_rows(4)->concurrent_reads());
  InputOptions o;
  o.global_batch = 16;
  o.num_replicas = 4;
  o.local_replicas = 4;
  o.seed = 4;
  EXPECT_EQ(gathered_slices(serial, o, 1), threaded_slices(numbered_rows(64), o, 1));
  EXPECT_FALSE(serial->overlapped());
}

// A source that logs, in call order, which replica read or prefetched which rows
// (the test says whose turn it is before each next_own call). `concurrent`
// stands for an in-memory source (true) or one read row by row from a file.
class LoggingSource : public Source {
 public:
  struct Event {
    int replica;
    bool prefetch;
    std::vector<int64_t> rows;
    bool operator==(const Event& o) const { return replica == o.replica && prefetch == o.prefetch && rows == o.rows; }
  };
  LoggingSource(std::shared_ptr<Source> inner, bool concurrent) : inner_(std::move(inner)), concurrent_(concurrent) {}
  const DatasetInfo& info() const override { return inner_->info(); }
  bool concurrent_reads() const override { return concurrent_; }
  void read(const int64_t* rows, int64_t n, float* x, int32_t* labels, float* targets) const override {
    note(false, rows, n);
    inner_->read(rows, n, x, labels, targets);
  }
  void prefetch(const int64_t* rows, int64_t n) const override {
    note(true, rows, n);
    inner_->prefetch(rows, n);
  }
  std::atomic<int> turn{0};
  std::vector<Event> events() const {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    log_.clear();
  }

 private:
  void note(bool prefetch, const int64_t* rows, int64_t n) const {
    std::lock_guard<std::mutex> lock(mu_);
    log_.push_back({turn.load(), prefetch, std::vector<int64_t>(rows, rows + n)});
  }
  std::shared_ptr<Source> inner_;
  bool concurrent_;
  mutable std::mutex mu_;
  mutable std::vector<Event> log_;
};

// A replica reading its own rows prefetches its rows of its next batch right
// after reading this one, within the epoch only, and only from a source with
// concurrent reads: for each replica, each non-empty slice but an epoch's
// first is hinted with exactly its rows before it is read, and nothing else is
// hinted (not the next epoch's first batch, not an empty slice). The slices are
// those of the shared pipeline. A seek mid-epoch drops the look-ahead.
TEST(DataDistributed, ReplicasPrefetchTheRowsOfTheirNextBatch) {
  // 103 rows: 7 batches of 16, the last of 7 rows (3 and 4 per replica);
  // 97 rows: the last batch is 1 row, and replica 0's slice of it is empty.
  for (const int64_t size : {103, 97}) {
    for (const bool concurrent : {true, false}) {
      SCOPED_TRACE(std::to_string(size) + " rows, " + (concurrent ? "concurrent reads" : "one read at a time"));
      auto logging = std::make_shared<LoggingSource>(numbered_rows(size), concurrent);
      InputOptions o;
      o.global_batch = 16;
      o.num_replicas = 2;
      o.local_replicas = 2;
      o.seed = 11;
      const auto expected = threaded_slices(numbered_rows(size), o, 2);  // step by step, replica by replica
      o.replica_gather = true;
      DistributedInput input(logging, o);
      std::vector<std::vector<int64_t>> got;
      ReplicaBatch b;
      const auto take = [&](int i) {
        logging->turn = i;
        const bool more = input.next_own(i, b);
        if (more) got.push_back(row_ids(b));
        return more;
      };
      for (int epoch = 0; epoch < 2; ++epoch) {
        for (bool more = true; more;) {
          const bool first = take(0);
          const bool second = take(1);
          ASSERT_EQ(first, second);
          more = first;
        }
      }
      EXPECT_EQ(got, expected);
      const size_t per_epoch = expected.size() / 4;  // batches in an epoch
      for (int replica : {0, 1}) {
        std::vector<LoggingSource::Event> want;
        for (size_t k = 0; k < 2 * per_epoch; ++k) {
          const std::vector<int64_t>& rows = expected[2 * k + size_t(replica)];
          if (rows.empty()) continue;
          if (concurrent && k % per_epoch != 0) want.push_back({replica, true, rows});
          want.push_back({replica, false, rows});
        }
        std::vector<LoggingSource::Event> mine;
        for (const auto& e : logging->events()) if (e.replica == replica) mine.push_back(e);
        EXPECT_EQ(mine, want) << "replica " << replica;
      }
      // Mid-epoch, with a batch looked ahead: seek elsewhere and read that position.
      input.seek({0, 0});
      ASSERT_TRUE(take(1));
      logging->clear();
      input.seek({1, 3});
      ASSERT_TRUE(take(1));
      EXPECT_EQ(got.back(), expected[2 * (per_epoch + 3) + 1]) << "epoch 1, step 3, replica 1";
      const auto after = logging->events();
      ASSERT_FALSE(after.empty());
      EXPECT_EQ(after[0], (LoggingSource::Event{1, false, expected[2 * (per_epoch + 3) + 1]}));
    }
  }
}

// The hint skips rows outside the split (under the sanitizer build, a pointer
// made for one would be reported) and changes nothing a read returns.
TEST(DataDistributed, PrefetchHintSkipsRowsOutsideTheSplit) {
  auto src = numbered_rows(10);
  const int64_t rows[] = {-1, 10, 3, std::numeric_limits<int64_t>::max(), 9};
  EXPECT_NO_THROW(src->prefetch(rows, 5));
  const int64_t good[] = {3, 9};
  float x[2 * kDim];
  int32_t labels[2];
  src->read(good, 2, x, labels, nullptr);
  EXPECT_EQ(x[0], 30.0f);
  EXPECT_EQ(x[kDim], 90.0f);
  EXPECT_EQ(labels[1], 4);
}

TEST(DataDistributed, NextOwnOutsideReplicaGatherIsAnError) {
  auto src = numbered_rows(32);
  InputOptions o;
  o.global_batch = 8;
  o.num_replicas = 2;
  o.local_replicas = 2;
  DistributedInput threaded(src, o);
  std::vector<ReplicaBatch> out;
  ASSERT_TRUE(threaded.next(out));
  EXPECT_THROW(threaded.next_own(0, out[0]), DataError);
  o.replica_gather = true;
  DistributedInput own(src, o);
  EXPECT_THROW(own.next_own(2, out[0]), DataError);  // only local replicas 0 and 1
  EXPECT_THROW(own.next_own(-1, out[0]), DataError);
  EXPECT_TRUE(own.next_own(1, out[1]));
}

}  // namespace
}  // namespace lockstep
