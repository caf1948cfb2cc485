// Replicas on an accelerator: a DeviceReplica holds one replica's state there
// (parameter, gradient and optimizer-slot arenas, workspaces) and runs the step
// of src/step.h on it; the CPU replicas need none. The CUDA implementation is
// gpu/ (built with CUDA); src/accelerator.cpp answers for a build without it,
// and the rest of the trunk never names CUDA.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "src/strategy.h"

namespace lockstep {

// True when replicas of this process run on CUDA devices: strategy.device cuda,
// or auto with CUDA built in and a device visible. Throws ConfigError naming the
// key when cuda is asked for and cannot be had (no CUDA in the build, no device).
bool use_cuda(const Config& config);
// Visible CUDA devices; 0 in a build without CUDA or on a machine without a GPU.
int visible_cuda_devices();
// Which replica uses which GPU: src/gpu_mapping.h.

// One replica's device state and step. Each call runs on the replica's thread
// after bind_thread(); host arenas (Replica::params, the optimizer's slots) are
// only a mirror, exchanged with upload()/download().
class DeviceReplica {
 public:
  virtual ~DeviceReplica() = default;
  // "cuda:0 NVIDIA H100 80GB HBM3 (sm_90)" for the plan.
  virtual std::string describe() const = 0;
  // Makes the calling thread use this replica's device.
  virtual void bind_thread() = 0;
  // Host params and optimizer slots -> device (start, resume, a loaded model).
  virtual void upload(Replica& r) = 0;
  // Device params and optimizer slots -> host (checkpoints, the sync hash, the end).
  virtual void download(Replica& r) = 0;
  // As MirroredStrategy::train_step; r.updates counts updates applied before this one.
  virtual StepResult train_step(Replica& r, const ReplicaBatch& batch, float lr,
                                uint64_t step_seed, bool stop_requested) = 0;
  // Forward only: loss sum and correct count of a slice.
  virtual SliceStats evaluate(const ReplicaBatch& batch) = 0;
};

// The device replicas of one process and what they share (the NCCL group that
// all-reduces their gradients with every other process's). Made on the main
// thread of every process at once: the NCCL bootstrap is collective over MPI.
class DeviceGroup {
 public:
  virtual ~DeviceGroup() = default;
  virtual DeviceReplica& replica(int local_index) = 0;
  // Releases members waiting in a collective after a replica failed.
  virtual void fail(const std::string& reason) = 0;
};

// CUDA replicas for this process (device binding above, printed by describe()).
// Throws ConfigError in a build without CUDA.
std::unique_ptr<DeviceGroup> make_cuda_group(const Model& model, const Config& config,
                                             World& world, int local_replicas, int64_t max_rows);

}  // namespace lockstep
