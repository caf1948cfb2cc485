// MirroredStrategy: the model mirrored on num_replicas_in_sync = local replicas x
// processes. Each replica has a Communicator spanning all replicas and its step
// on its device, which holds its gradients and workspaces (src/replica.h); the
// CPU replicas of a process share one weight arena and one set of optimizer
// slots and split the update (strategy.share_weights; false: a copy each, each
// running the whole update, and replica threads of one process then sum the
// gradient inside it rather than all-reduce it). Every replica runs the same program (SPMD) on its
// own thread, and one replica is simply the one-replica case of the same code.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/options.h"
#include "data/input.h"
#include "src/micro_batch.h"
#include "src/model.h"
#include "src/replica.h"
#include "src/world.h"

namespace lockstep {

class LocalGroup;
class ReplicaGroup;
class DeviceGroup;
class CpuReplica;

// Optimizer slots by name ("m", "v", "velocity"), as checkpoints hold them.
using NamedSlots = std::vector<std::pair<std::string, std::vector<float>>>;

class MirroredStrategy {
 public:
  // max_rows: the largest slice one replica will see (train or evaluation).
  MirroredStrategy(const Model& model, const Config& config, World& world, int64_t max_rows);
  ~MirroredStrategy();

  int local_replicas() const { return int(replicas_.size()); }
  int num_replicas_in_sync() const;
  int first_replica() const;
  bool is_chief() const;  // rank 0's replica 0 prints and writes files
  // The replicas sum the gradient inside the update (sum_in_update below): no
  // all-reduce, and the step's communication is its two meetings.
  bool sums_in_update() const { return !sum_slices_.empty(); }
  Replica& replica(int local_index) { return *replicas_[size_t(local_index)]; }

  // Runs fn on every local replica at once (replica 0 on the calling thread) and
  // returns when all are done. The first exception is rethrown after the group
  // is failed, so no replica waits forever for one that threw.
  void run(const std::function<void(Replica&)>& fn);

  // The next global batch from `input`, this replica's slice of it; nullptr at
  // the end of the epoch (the next call starts the next epoch). With
  // replica_gather each replica walks its own copy of the batch sequence and
  // reads its own rows, meeting no one; otherwise local replica 0 takes the
  // batch from the pipeline and all local replicas meet before reading their
  // slices. A slice stays valid until this replica's next fetch; a loop that runs
  // no collective per batch (evaluation) must call release() before fetching
  // again (the shared pipeline reuses its buffers).
  const ReplicaBatch* fetch(Replica& r, DistributedInput& input);
  // Positions `input` (start of training, a resume, each evaluation): local
  // replica 0 seeks, then the local replicas meet, so none fetches before.
  void seek(Replica& r, DistributedInput& input, const InputPosition& position);
  void release(Replica& r, const DistributedInput& input) {
    if (!input.replica_gather()) r.local_comm->barrier();
  }

  // Start of training: every replica gets rank 0 replica 0's initial weights.
  void broadcast_initial_weights(Replica& r);
  // One synchronous step on this replica's slice: forward, backward, bucketed
  // all-reduce of the gradient (a SUM of gradients of loss/global_rows, i.e. the
  // global mean), then the optimizer. Every replica ends with identical weights.
  // stop_requested is OR-ed across replicas into the result. A non-finite global
  // loss or reduced gradient skips the update on every replica alike.
  // With train.deterministic, or micro-batches smaller than the slice, the slice
  // runs as micro-batches (micro_step, src/micro_batch.cpp).
  StepResult train_step(Replica& r, const ReplicaBatch& batch, float lr, uint64_t step_seed,
                        bool stop_requested = false);
  // Throws if any replica's weights differ from replica 0's, naming it.
  void check_in_sync(Replica& r);
  // Forward only: loss sum and correct count of this replica's slice.
  SliceStats evaluate(Replica& r, const ReplicaBatch& batch);
  // The replica's weights, and its optimizer's slots when `slots` is given, as
  // host arrays (checkpoints, the saved model), wherever the replica keeps them.
  void snapshot(Replica& r, std::vector<float>& params, NamedSlots* slots);
  // Every replica takes rank 0's local replica 0's values: `params` (and the
  // slots named in `slots`, when given; others stay zero) where given there, else
  // that replica's own. Collective over all replicas (a broadcast between
  // processes that keep an arena each; a meeting where the node keeps one).
  void restore(Replica& r, const std::vector<float>* params, const NamedSlots* slots);
  // "replica 0 -> cuda:0 NVIDIA H100 ...; ..." for the plan ("" on the CPU).
  std::string device_plan() const;
  // Where the CPU replicas keep the weights and who updates them, for the plan
  // ("" for one replica alone, or on devices).
  std::string arena_plan() const;

 private:
  friend class CpuReplica;
  // The CPU state of a replica whose step runs on the CPU.
  static CpuReplica& cpu(Replica& r);
  struct CpuStep;  // the CPU replicas' side of run_step (src/step.h)
  StepResult cpu_step(Replica& r, const ReplicaBatch& batch, float lr, uint64_t step_seed,
                      bool stop_requested);
  void reduce_range(Replica& r, int64_t begin, int64_t end);
  // Whether the step's reduced gradient is finite and within kGradientLimit
  // (src/step.h); every replica answers alike (the micro-batched step: the
  // plain step checks each replica's own gradient).
  bool grads_finite(Replica& r);
  void update(Replica& r, float lr);
  // The micro-batched step (src/micro_batch.cpp): deterministic mode's exact
  // sum, or fp32 gradient accumulation.
  StepResult micro_step(Replica& r, const ReplicaBatch& batch, float lr, uint64_t step_seed,
                        bool stop_requested);
  SliceStats micro_backward(Replica& r, const ReplicaBatch& batch, uint64_t step_seed, bool keep_each);
  void exact_sum(Replica& r, const ReplicaBatch& batch, const SliceStats& local, bool stop_requested,
                 StepResult& out);
  void float_sum(Replica& r, const SliceStats& local, bool stop_requested, StepResult& out);
  void apply_exact(Replica& r, float lr, int64_t begin, int64_t end);  // [begin, end) of the arena

  // CPU replicas share one arena and one Optimizer and split the update: each
  // updates its shard [begin, end) (the same values, bitwise, as a full
  // update). The sharers are this process's replicas, or, when every
  // process is on this node and they can map common memory (node_shared_), all
  // the node's replicas. shards_[shard_index(r)] is r's shard (empty when each
  // replica holds an arena of its own: one replica, GPU replicas, or
  // strategy.share_weights false) and finite_flags_[16 * shard_index(r)] its
  // finite flag, a line each.
  // The micro-batched step's finite check of the reduced gradient is split the
  // same way (the plain step checks each replica's own gradient before the sum,
  // src/step.h): each replica checks check_parts_[shard_index(r)] and the
  // meeting publishes the flags. With an arena each, every local replica holds
  // the same reduced gradient, so the process's replicas split the check among
  // them; empty for one CPU replica, or on devices.
  void share_cpu_state(int local);  // makes the arena, the optimizer and the shards
  void split_finite_check(int parts);  // check_parts_ and finite_flags_ for an arena each
  bool leads(const Replica& r) const;  // writes its arena whole (the first sharer, or an owner)
  int shard_index(const Replica& r) const;
  void meet(Replica& r);  // a barrier of the sharers
  bool node_shared_ = false;
  std::shared_ptr<CommBuffer> cpu_params_;
  std::shared_ptr<Optimizer> cpu_optimizer_;
  CommBuffer finite_flags_;
  std::vector<std::pair<int64_t, int64_t>> shards_;
  std::vector<std::pair<int64_t, int64_t>> check_parts_;
  const Model& model_;
  const Config& config_;
  World& world_;
  int64_t bucket_elems_;
  int64_t micro_rows_ = 0;                 // rows per micro-batch
  bool micro_batched_ = false;             // steps go through micro_step
  // The largest |element| a replica's own gradient may hold for the sum across
  // the replicas to stay within kGradientLimit: kGradientLimit / (2 x
  // replicas), or kGradientLimit itself for one. Beyond it the step is skipped
  // like a NaN.
  float own_grad_limit_ = 0.0f;
  // Replicas with weights of their own (strategy.share_weights false;
  // strategy.overlap false, not micro-batched) that all reach each other's
  // memory, the replica threads of one process or single-replica processes on
  // one node (their gradient arenas in one block they all map), all-reduce no
  // gradient. Once all have written theirs, each sums its slice
  // sum_slices_[global_index] of every replica's gradient (gradient_parts_, in
  // replica order, as the all-reduce adds them), updates that slice of its
  // weights in the same pass and stores the sum into the other replicas'
  // arenas (CpuReplica::sum_copies; update_slice); after a second meeting it
  // updates the rest from the sums the others stored in its own. Bitwise the
  // all-reduce and then the update, but a replica never writes its slice's sum
  // to memory and reads it back. Empty otherwise (and where the processes
  // cannot share memory).
  void sum_in_update();  // fills the members below and each CpuReplica::sum_copies
  void update_slice(Replica& r, float lr);
  std::vector<float*> gradient_parts_;
  std::vector<const void*> extras_parts_;  // each replica's extras (after its gradient)
  std::vector<std::pair<int64_t, int64_t>> sum_slices_;
  std::vector<ArenaSegment> segments_;     // the arena's tensors (deterministic scales)
  std::unique_ptr<LocalGroup> local_group_;         // barriers among this process's replicas
  std::unique_ptr<ReplicaGroup> group_;             // every replica (comm/replica_group.h)
  std::unique_ptr<DeviceGroup> devices_;            // strategy.device cuda
  std::vector<std::unique_ptr<CpuReplica>> cpus_;   // the CPU replicas' state and step
  std::vector<ReplicaBatch> batches_;  // filled by local replica 0 in fetch()
  bool has_batch_[2] = {false, false};
  std::vector<std::unique_ptr<Replica>> replicas_;
};

// Resolves strategy.local_replicas. 0 = auto: with strategy.device cuda this
// process's share of the node's visible GPUs (src/gpu_mapping.h) x
// strategy.replicas_per_gpu; on the CPU one replica per CPU of
// this process (its affinity mask if a launcher bound it, else its share of the
// node among processes_on_node), lowered to the largest count that divides
// train.batch_size evenly over `processes` processes.
int resolve_local_replicas(const Config& config, int processes = 1, int processes_on_node = 1);
// The most replicas, at most `cpus` (one per CPU), that split global_batch
// evenly over `processes` processes; 1 if none does.
int auto_replica_count(int cpus, int64_t global_batch, int processes);

// data.gather: whether each local replica reads its own rows (true) or one
// prefetch thread reads them for all (false). auto picks the replicas on the CPU
// with a source that allows concurrent reads (a cached split: a gather is a copy,
// and handing a prefetched batch to the replica's core costs more than making
// it there, even with a core to spare); replicas asked for over a source without
// concurrent reads read one at a time.
bool resolve_gather(const Config& config, const Source& source);

// The communicators' settings from the comm.* keys: comm.timeout_s (0 = the
// adaptive deadline), comm.verify, and a SIGTERM that arrives while a
// collective waits for a peer ends the wait naming that peer.
CommOptions comm_options(const Config& config);

}  // namespace lockstep
