// The trainer-facing side of the input pipeline: open a dataset split, and feed
// each local replica its slice of every global batch. Built from the composable
// views in data/ (shuffle, batch, shard, map, prefetch...); see data/README.md.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace lockstep {

// Every data problem: a missing/corrupt file, a bad shape, a label out of range.
// The message names the file (and dataset inside it) and what is wrong.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An output path given to a command that it will not write: the file exists and
// --overwrite was not given, the path is a folder, or its folder is missing. The
// user's arguments are wrong, not their data: the CLI exits 2 (usage) for it.
class OutputPathError : public DataError {
 public:
  using DataError::DataError;
};

// A file could not be written (a full disk, a file-size limit, a read-only
// folder): the CLI exits 5 for it, its own code, so scripts can tell it from bad data.
// reason() is the system's reason alone ("No space left on device"), for a
// caller that names the file in its own words.
class IoError : public std::runtime_error {
 public:
  explicit IoError(const std::string& what, std::string reason = "")
      : std::runtime_error(what), reason_(reason.empty() ? what : std::move(reason)) {}
  const std::string& reason() const { return reason_; }

 private:
  std::string reason_;
};

// What a split holds. Classification datasets have integer labels in
// [0, num_classes); regression datasets have float targets of target_dim.
struct DatasetInfo {
  int64_t size = 0;                   // examples
  std::vector<int64_t> feature_shape; // per example, e.g. {28, 28}
  int64_t feature_dim = 0;            // product of feature_shape
  int64_t num_classes = 0;            // > 0 for classification
  int64_t target_dim = 0;             // > 0 for regression
  std::string description;            // e.g. "fashion_mnist.h5:/train"
};

// A random-access table of examples (HDF5 split, IDX pair, in-memory tensors,
// synthetic). read() gathers arbitrary rows; implementations must be safe to call
// from one background thread while the owner thread does other work.
class Source {
 public:
  virtual ~Source() = default;
  virtual const DatasetInfo& info() const = 0;
  // Whether several threads may call read() at once (in-memory sources: yes;
  // sources behind a non-thread-safe library such as serial HDF5: no).
  virtual bool concurrent_reads() const { return false; }
  // Whether read() goes to the file for just the rows asked (a split too large
  // to hold in memory); false when the rows are already in memory.
  virtual bool reads_rows_from_file() const { return false; }
  // x: (n, feature_dim) floats, already mapped (e.g. uint8 pixels scaled by 1/255);
  // labels: (n) when classification, else nullptr; targets: (n, target_dim) when
  // regression, else nullptr.
  virtual void read(const int64_t* rows, int64_t n, float* x, int32_t* labels,
                    float* targets) const = 0;
  // A hint that read() will soon be asked for these rows: starts moving them
  // toward this core's caches and changes nothing else (rows outside the split
  // are skipped). Called only on sources with concurrent_reads(), from any
  // thread. A replica reading its own rows calls it for its next batch, so that
  // some of that batch's memory latency passes before its read; the default
  // does nothing.
  virtual void prefetch(const int64_t* rows, int64_t n) const {
    (void)rows;
    (void)n;
  }
};

// Open a split of a dataset file by path. `split` names the group ("train", "test").
// Recognised: HDF5 files in the lockstep dataset layout (data/README.md).
// `scale` multiplies every feature (e.g. 1/255); applied by the source's map.
std::shared_ptr<Source> open_dataset(const std::string& path, const std::string& split,
                                     float scale = 1.0f);

// One local replica's slice of one global batch. Memory is owned by the
// pipeline and valid until the next call to next() (with replica_gather: x,
// labels and targets point into the replica's own buffers, filled by next_own()).
struct ReplicaBatch {
  int64_t rows = 0;          // may be 0 when a short last batch has fewer rows than replicas
  int64_t first_row = 0;     // offset of this slice inside the global batch
  int64_t global_rows = 0;   // rows in the whole global batch (all replicas)
  int64_t sample_base = 0;   // unique id of the global batch's first row within the run
                             // (epoch * epoch_size + step * global_batch): seeds dropout
  const float* x = nullptr;         // (rows, feature_dim)
  const int32_t* labels = nullptr;  // (rows) or nullptr
  const float* targets = nullptr;   // (rows, target_dim) or nullptr
};

struct InputOptions {
  int64_t global_batch = 64;
  int num_replicas = 1;       // replicas in sync across all processes
  int first_replica = 0;      // global index of this process's first replica
  int local_replicas = 1;     // replicas fed by this process
  bool shuffle = true;        // global, seeded shuffle, reshuffled every epoch
  uint64_t seed = 0;
  bool drop_remainder = false;
  int prefetch = 2;           // global batches prepared ahead on a background thread (0 = off)
  // Each local replica reads its own rows on its own thread (next_own()), in
  // parallel, instead of one thread reading all of them; prefetch is then unused.
  // The choice for a cached split on the CPU (see resolve_gather in src/strategy.h).
  bool replica_gather = false;
  // Runs first on every thread the pipeline starts (the prefetch thread), so the
  // caller can give it the floating-point mode of its compute threads.
  std::function<void()> on_thread_start;
  // Replica r takes rows [r*S, (r+1)*S) of every batch, S = global_batch /
  // num_replicas, cut to the batch's length, instead of an even split of it: a
  // short last batch then leaves whole fixed-size pieces (micro-batches) on the
  // first replicas and none split between two (deterministic mode).
  bool whole_shares = false;
};

// The same options for evaluation: no shuffle and no dropped remainder, so every
// example is seen exactly once (the last global batch may be short, and a
// replica's slice of it may be empty), and an even split (no whole_shares: an
// evaluation batch need not divide into training's micro-batches).
InputOptions for_evaluation(InputOptions options);

// Where an iterator stands; enough to continue exactly (checkpoints store it).
struct InputPosition {
  int64_t epoch = 0;
  int64_t step = 0;   // global batches already taken in this epoch
};

// Splits every global batch across replicas: replica r of R gets the contiguous
// rows [r*n/R, (r+1)*n/R) of the batch (n rows; whole_shares splits otherwise), so
// the sequence of global batches depends only on the seed, never on R. A process
// reads only its replicas' rows.
class DistributedInput {
 public:
  DistributedInput(std::shared_ptr<Source> source, const InputOptions& options);
  ~DistributedInput();
  DistributedInput(const DistributedInput&) = delete;
  DistributedInput& operator=(const DistributedInput&) = delete;

  const DatasetInfo& info() const;
  int64_t steps_per_epoch() const;
  // Position the iterator (start of training, or resume from a checkpoint).
  void seek(const InputPosition& position);
  InputPosition position() const;
  // Fills out[i] (i < local_replicas) with local replica i's slice of the next
  // global batch and advances. Returns false at the end of the epoch; the next
  // call then starts the following epoch (new shuffle order). With
  // replica_gather this is next_own() for every local replica in turn.
  bool next(std::vector<ReplicaBatch>& out);
  // replica_gather: local replica i's own walk through the same sequence of
  // global batches: fills `slice` with i's rows of i's next batch, read into
  // i's own buffers (valid until i's next call), and advances i alone. False at
  // the end of i's epoch. After each batch it returns, it looks one batch ahead
  // in the same epoch and hands i's rows of it to Source::prefetch (sources with
  // concurrent reads). Calls for different i may run at once and never wait for
  // one another (reads are serialised only for sources without concurrent
  // reads); a seek() must not overlap them.
  bool next_own(int local_index, ReplicaBatch& slice);
  bool replica_gather() const;

 private:
  // next_own's look-ahead: takes i's following batch of the epoch and prefetches its rows.
  void prefetch_ahead(int local_index);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep
