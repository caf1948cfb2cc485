// Replicas on an accelerator: each one's ReplicaStep (src/replica.h) holds its
// state there (parameter, gradient and optimizer-slot arenas, workspaces) and
// runs the step of src/step.h on it. The CUDA implementation is gpu/ (built
// with CUDA); a build without it gets the answers at the end of this file, and
// the rest of the trunk never names CUDA.
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

// The device replicas of one process and what they share (the NCCL group that
// all-reduces their gradients with every other process's). Made on the main
// thread of every process at once: the NCCL bootstrap is collective over MPI.
class DeviceGroup {
 public:
  virtual ~DeviceGroup() = default;
  virtual ReplicaStep& replica(int local_index) = 0;
  // Releases members waiting in a collective after a replica failed.
  virtual void fail(const std::string& reason) = 0;
};

// CUDA replicas for this process (device binding above, printed by describe()).
// Throws ConfigError in a build without CUDA.
std::unique_ptr<DeviceGroup> make_cuda_group(const Model& model, const Config& config,
                                             World& world, int local_replicas, int64_t max_rows);

#if !defined(LOCKSTEP_HAVE_CUDA)
inline int visible_cuda_devices() { return 0; }
inline bool use_cuda(const Config& config) {
  if (config.device == DeviceKind::kCuda) {
    throw ConfigError(config.where("strategy.device") + ": key 'strategy.device': cuda, but this lockstep was built "
                      "without CUDA (rebuild with -DLOCKSTEP_CUDA=ON, or use device: cpu or auto)");
  }
  return false;
}
inline std::unique_ptr<DeviceGroup> make_cuda_group(const Model&, const Config& config, World&, int,
                                                    int64_t) {
  throw ConfigError(config.where("strategy.device") + ": key 'strategy.device': this lockstep was built without CUDA");
}
#endif

}  // namespace lockstep
