// A replica of MirroredStrategy: its place among the replicas in sync, its
// communicators, and its step on its device (ReplicaStep, which holds the
// weights and optimizer slots it steps: the CPU's in src/cpu_replica.h, an
// accelerator's through src/accelerator.h), with the replica's time accounting.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "data/aligned.h"
#include "data/input.h"
#include "src/optimizer.h"
#include "src/step.h"
#include "src/trace.h"

namespace lockstep {

struct Replica;

// One replica's step on its device, and the state it steps: its weights and
// optimizer slots in host memory (the device's own state lives in the
// subclass). Each call runs on the replica's thread after bind_thread().
class ReplicaStep {
 public:
  virtual ~ReplicaStep() = default;
  // "cuda:0 NVIDIA H100 80GB HBM3 (sm_90)" for the plan; "" on the CPU.
  virtual std::string describe() const { return ""; }
  // Makes the calling thread use this replica's device.
  virtual void bind_thread() {}
  // params and the optimizer's slots -> device (start, resume, a loaded model).
  virtual void upload() {}
  // Device weights and optimizer slots -> params and the slots (checkpoints, the
  // sync hash, the end).
  virtual void download() {}
  // As MirroredStrategy::train_step: the step of src/step.h; r.updates counts the
  // updates applied, this one included, and r's seconds its time.
  virtual StepResult train_step(Replica& r, const ReplicaBatch& batch, float lr,
                                uint64_t step_seed, bool stop_requested) = 0;
  // Forward only: loss sum and correct count of a slice.
  virtual SliceStats evaluate(Replica& r, const ReplicaBatch& batch) = 0;

  // The weight arena [trainable | state]. The CPU replicas of one process share
  // one, and when every process of the job is on one node, all of the node's
  // CPU replicas share one in memory the processes map: forward and backward
  // only read it, each replica updates its shard of it (MirroredStrategy::update)
  // and only one replica writes batch norm's moving statistics. With
  // strategy.share_weights false each CPU replica has its own and writes all of
  // it. A replica on an accelerator has its own, the host mirror of its device's
  // (upload/download).
  std::shared_ptr<CommBuffer> params;
  // The optimizer's slots: shared by the CPU replicas like params (each updates
  // its shard of them); an accelerator's host mirror.
  std::shared_ptr<Optimizer> optimizer;
};

// A replica: its place among the replicas in sync, its communicators, its step
// on its device (which holds the replica's state: src/cpu_replica.h on the CPU,
// gpu/ on CUDA), and its time accounting.
struct Replica {
  int local_index = 0;
  int global_index = 0;
  Communicator* comm = nullptr;        // all replicas in sync
  Communicator* local_comm = nullptr;  // the replicas of this process
  // The step on the replica's device, with its weights and optimizer slots
  // (owned by the strategy or its device group).
  ReplicaStep* step = nullptr;
  int64_t updates = 0;                 // optimizer steps applied
  int64_t fetches = 0;                 // MirroredStrategy::fetch calls
  // Where this replica's time went (seconds): waiting for input (fetch, which
  // includes waiting for the other local replicas), inside gradient
  // collectives, the finite check and optimizer update, and the whole
  // train_step (forward and backward = step - comm - optimizer).
  double input_seconds = 0, comm_seconds = 0, optimizer_seconds = 0, step_seconds = 0;
  // --trace: this replica's track while the current step is traced, else
  // nullptr (the whole cost of tracing off); the trainer sets it per step.
  TraceTrack* trace = nullptr;
  TraceTrack* reducer_trace = nullptr;  // the strategy.overlap thread's track
};

}  // namespace lockstep
