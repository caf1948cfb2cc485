// DistributedInput: the per-replica feed of the mirrored strategy, built from
// the views: range -> shuffle(full, seed, epoch) -> batch(global) -> gather
// (this process's replicas' rows only) -> prefetch. The order of global batches
// depends on the seed and epoch alone, never on how many replicas share them.
#include <algorithm>
#include <mutex>
#include <utility>

#include "data/aligned.h"
#include "data/views.h"

namespace lockstep {

struct DistributedInput::Impl {
  std::shared_ptr<Source> source;
  InputOptions options;
  IteratorPtr<RowBatch> pipeline;  // rows read by one thread (maybe a prefetch thread)
  RowBatch current;
  // replica_gather: each local replica walks its own copy of the sequence of
  // global batches (row ids; a pure function of seed and epoch) and reads its own
  // rows into its own buffers, so replicas never wait for one another.
  struct Own {
    IteratorPtr<std::vector<int64_t>> indices;
    std::vector<int64_t> batch_rows;  // the current global batch
    // The batch after it, taken early to prefetch its rows (same epoch only):
    // `ahead` is valid when has_ahead; ahead_more is what indices->next said.
    std::vector<int64_t> ahead;
    bool has_ahead = false, ahead_more = false;
    AlignedVector<float> x, targets;
    std::vector<int32_t> labels;
    int64_t epoch = 0, step = 0;
  };
  std::vector<Own> own;  // per local replica; empty without replica_gather
  std::mutex read_mu;    // sources without concurrent reads
  int64_t epoch = 0;     // the shared pipeline's position
  int64_t step = 0;
};

namespace {

std::string where(const Source& source) { return "input " + source.info().description; }

void check_options(const Source& source, const InputOptions& o) {
  const int64_t size = source.info().size;
  if (o.global_batch < 1)
    throw DataError(where(source) + ": global_batch must be >= 1, got " + std::to_string(o.global_batch));
  if (o.global_batch > size)
    throw DataError(where(source) + ": global batch " + std::to_string(o.global_batch) +
                    " is larger than the dataset (" + std::to_string(size) + " examples); lower global_batch");
  if (o.num_replicas < 1 || o.local_replicas < 1 || o.first_replica < 0 ||
      o.first_replica + o.local_replicas > o.num_replicas)
    throw DataError(where(source) + ": replicas [" + std::to_string(o.first_replica) + ", " +
                    std::to_string(o.first_replica + o.local_replicas) + ") do not fit in num_replicas " +
                    std::to_string(o.num_replicas));
  if (o.whole_shares && o.global_batch % o.num_replicas != 0)
    throw DataError(where(source) + ": whole_shares needs a global batch (" + std::to_string(o.global_batch) +
                    ") that divides by num_replicas " + std::to_string(o.num_replicas));
  if (o.prefetch < 0) throw DataError(where(source) + ": prefetch must be >= 0, got " + std::to_string(o.prefetch));
}

// Where replica r's rows of a global batch of n rows begin: r*n/R, or with
// whole_shares r*S cut to n (S = global_batch / R, the full batch's share).
int64_t replica_begin(const InputOptions& o, int64_t replica, int64_t n) {
  if (o.whole_shares) return std::min(n, replica * (o.global_batch / o.num_replicas));
  return replica * n / o.num_replicas;
}

IteratorPtr<std::vector<int64_t>> global_batches(const std::shared_ptr<Source>& source,
                                                 const InputOptions& o) {
  const int64_t size = source->info().size;
  IteratorPtr<int64_t> rows = range(size);
  // A full-size buffer makes the shuffle an exact permutation: f(seed, epoch).
  if (o.shuffle) rows = shuffle(std::move(rows), size, o.seed, /*reshuffle_each_epoch=*/true);
  return batch(std::move(rows), o.global_batch, o.drop_remainder);
}

IteratorPtr<RowBatch> build_pipeline(const std::shared_ptr<Source>& source, const InputOptions& o) {
  IteratorPtr<std::vector<int64_t>> batches = global_batches(source, o);
  const int64_t first = o.first_replica, last = o.first_replica + o.local_replicas;
  SliceFn local_rows = [o, first, last](int64_t n) {
    return std::pair<int64_t, int64_t>(replica_begin(o, first, n), replica_begin(o, last, n));
  };
  IteratorPtr<RowBatch> pipeline = gather(std::move(batches), source, std::move(local_rows));
  if (o.prefetch > 0) pipeline = prefetch(std::move(pipeline), o.prefetch, o.on_thread_start);
  return pipeline;
}

}  // namespace

InputOptions for_evaluation(InputOptions options) {
  options.shuffle = false;
  options.drop_remainder = false;
  options.whole_shares = false;
  return options;
}

DistributedInput::DistributedInput(std::shared_ptr<Source> source, const InputOptions& options)
    : impl_(std::make_unique<Impl>()) {
  if (!source) throw DataError("DistributedInput: no source given");
  check_options(*source, options);
  impl_->source = std::move(source);
  impl_->options = options;
  if (options.replica_gather) {
    impl_->own.resize(size_t(options.local_replicas));
    for (auto& o : impl_->own) o.indices = global_batches(impl_->source, options);
  } else {
    impl_->pipeline = build_pipeline(impl_->source, options);
  }
  seek(InputPosition{});
}

DistributedInput::~DistributedInput() = default;

const DatasetInfo& DistributedInput::info() const { return impl_->source->info(); }

int64_t DistributedInput::steps_per_epoch() const {
  const int64_t n = info().size, b = impl_->options.global_batch;
  return impl_->options.drop_remainder ? n / b : (n + b - 1) / b;
}

void DistributedInput::seek(const InputPosition& position) {
  if (position.epoch < 0 || position.step < 0 || position.step > steps_per_epoch())
    throw DataError(where(*impl_->source) + ": cannot seek to epoch " + std::to_string(position.epoch) +
                    ", step " + std::to_string(position.step) + " (an epoch has " +
                    std::to_string(steps_per_epoch()) + " steps); was the checkpoint made with another batch size?");
  const ViewPosition at{position.epoch, position.step};
  if (impl_->own.empty()) impl_->pipeline->seek(at);
  for (auto& o : impl_->own) {
    o.indices->seek(at);
    o.epoch = position.epoch;
    o.step = position.step;
    o.has_ahead = false;
  }
  impl_->epoch = position.epoch;
  impl_->step = position.step;
}

InputPosition DistributedInput::position() const {
  if (!impl_->own.empty()) return InputPosition{impl_->own[0].epoch, impl_->own[0].step};
  return InputPosition{impl_->epoch, impl_->step};
}

namespace {

// Local replica i's slice of a global batch of `global_rows` rows: shape only.
ReplicaBatch slice_of(const InputOptions& o, int i, int64_t global_rows, int64_t sample_base) {
  const int64_t replica = o.first_replica + i;
  const int64_t begin = replica_begin(o, replica, global_rows);
  ReplicaBatch r;
  r.rows = replica_begin(o, replica + 1, global_rows) - begin;
  r.first_row = begin;
  r.global_rows = global_rows;
  r.sample_base = sample_base;
  return r;
}

}  // namespace

bool DistributedInput::next(std::vector<ReplicaBatch>& out) {
  Impl& s = *impl_;
  const int k = s.options.local_replicas;
  out.resize(size_t(k));
  if (!s.own.empty()) {  // every local replica's own stream, one after another
    bool more = true;
    for (int i = 0; i < k; ++i) more = next_own(i, out[size_t(i)]) && more;
    return more;
  }
  if (!s.pipeline->next(s.current)) {
    // Start preparing the next epoch now, while the caller wraps this one up.
    ++s.epoch;
    s.step = 0;
    s.pipeline->start(s.epoch);
    return false;
  }
  const InputOptions& o = s.options;
  const DatasetInfo& info = s.source->info();
  const RowBatch& b = s.current;
  for (int i = 0; i < k; ++i) {
    ReplicaBatch& r = out[size_t(i)];
    r = slice_of(o, i, b.global_rows, s.epoch * info.size + s.step * o.global_batch);
    const int64_t local = r.first_row - b.first_row;  // row offset inside the gathered slice
    r.x = b.x.data() + local * info.feature_dim;
    r.labels = info.num_classes > 0 ? b.labels.data() + local : nullptr;
    r.targets = info.target_dim > 0 ? b.targets.data() + local * info.target_dim : nullptr;
  }
  ++s.step;
  return true;
}

bool DistributedInput::replica_gather() const { return !impl_->own.empty(); }

bool DistributedInput::next_own(int local_index, ReplicaBatch& slice) {
  Impl& s = *impl_;
  if (s.own.empty() || local_index < 0 || local_index >= s.options.local_replicas)
    throw DataError(where(*s.source) + ": next_own(" + std::to_string(local_index) +
                    ") needs replica_gather and a local replica index below " +
                    std::to_string(s.options.local_replicas));
  Impl::Own& me = s.own[size_t(local_index)];
  bool more;
  if (me.has_ahead) {
    me.batch_rows.swap(me.ahead);
    more = me.ahead_more;
    me.has_ahead = false;
  } else {
    more = me.indices->next(me.batch_rows);
  }
  if (!more) {
    ++me.epoch;
    me.step = 0;
    me.indices->start(me.epoch);
    return false;
  }
  const DatasetInfo& info = s.source->info();
  slice = slice_of(s.options, local_index, int64_t(me.batch_rows.size()),
                   me.epoch * info.size + me.step * s.options.global_batch);
  ++me.step;
  // resize() keeps capacity: after the first full batch this allocates nothing.
  me.x.resize(size_t(slice.rows * info.feature_dim));
  me.labels.resize(info.num_classes > 0 ? size_t(slice.rows) : 0);
  me.targets.resize(size_t(slice.rows * info.target_dim));
  if (slice.rows > 0) {
    std::unique_lock<std::mutex> lock(s.read_mu, std::defer_lock);
    if (!s.source->concurrent_reads()) lock.lock();
    s.source->read(me.batch_rows.data() + slice.first_row, slice.rows, me.x.data(),
                   info.num_classes > 0 ? me.labels.data() : nullptr,
                   info.target_dim > 0 ? me.targets.data() : nullptr);
  }
  slice.x = me.x.data();
  slice.labels = info.num_classes > 0 ? me.labels.data() : nullptr;
  slice.targets = info.target_dim > 0 ? me.targets.data() : nullptr;
  prefetch_ahead(local_index);
  return true;
}

void DistributedInput::prefetch_ahead(int local_index) {
  Impl& s = *impl_;
  // A source whose reads go one at a time is read from a file, row by row: no
  // hint to give, so nothing to look ahead for (and no other replica's read to wait for).
  if (!s.source->concurrent_reads()) return;
  Impl::Own& me = s.own[size_t(local_index)];
  me.ahead_more = me.indices->next(me.ahead);
  me.has_ahead = true;
  if (!me.ahead_more) return;  // the epoch's end: the next call says so
  const ReplicaBatch next = slice_of(s.options, local_index, int64_t(me.ahead.size()), 0);
  if (next.rows > 0) s.source->prefetch(me.ahead.data() + next.first_row, next.rows);
}

}  // namespace lockstep
