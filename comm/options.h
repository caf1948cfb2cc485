// Settings every backend shares. The deadline lives here so that each backend
// (local threads, MPI, hierarchical, later NCCL) honours the same knob: a member that
// never arrives ends the wait with a CommError instead of hanging the job.
#pragma once

#include <chrono>

namespace lockstep {

struct CommOptions {
  // How long a collective may wait for the other members before it throws.
  // Zero means wait forever. The default is generous: a slow first step (JIT,
  // page faults, a large broadcast) must not trip it.
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};
};

}  // namespace lockstep
