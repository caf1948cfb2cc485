// Settings every backend shares. The deadline lives here so that each backend
// (local threads, MPI, shared memory, hierarchical, and NCCL through its watchdog,
// comm/watch_policy.h) honours the same knob: a member that never arrives ends the
// wait with a CommError instead of hanging the job.
// How long a collective may wait is decided per collective by DeadlineClock
// (comm/deadline.h), which also honours LongPhase guards.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>

namespace lockstep {

struct CommOptions {
  // A fixed deadline per collective. Zero means no fixed deadline: the adaptive
  // one below if `adaptive`, else wait forever. The default is generous: a slow
  // first step (JIT, page faults, a large broadcast) must not trip it.
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};
  // Adaptive deadline (with timeout == 0): pace_factor x the slowest recent
  // interval between this member's collectives (a step), never below `floor`.
  // A rank that is merely slow keeps its peers' deadlines long; one that stops
  // is found after `floor` once steps are fast.
  bool adaptive = false;
  std::chrono::milliseconds floor{std::chrono::seconds(10)};
  double pace_factor = 20.0;
  // Debug: before every collective the MPI backend checks that all ranks issue
  // the same one (sequence number, operation, count, dtype, op, root) and throws
  // naming the difference. Costs one small extra collective each time.
  bool verify = false;
  // Polled while a collective waits (may be empty). Once it has returned true
  // for `interrupt_grace`, the wait gives up with a CommError naming the ranks
  // that did not arrive: a launcher that is tearing the job down (a peer died)
  // sends SIGTERM and then SIGKILL a second later, and this is the chance to say
  // which peer and which collective. Not applied during a LongPhase. The
  // shared-memory backend gives up so only when a missing peer's process is
  // gone: with every peer alive (a SIGTERM to all ranks, a checkpoint to write)
  // it waits for them under the usual deadline.
  std::function<bool()> interrupted{};
  std::chrono::milliseconds interrupt_grace{300};
  // Processes on one node all-reduce through a shared-memory segment instead of
  // MPI messages (make_process_communicator, comm/replica_group.h).
  bool shared_memory = true;
  // How the shared-memory backend writes into its segment: plain or streaming
  // stores, whichever its timing finds cheaper lately (auto), or one forced.
  enum class ShmStores { kAuto, kPlain, kStreaming };
  ShmStores shm_stores = ShmStores::kAuto;
  // Their names (config comm.shm_stores, the benchmarks' --shm-stores).
  static std::map<std::string, ShmStores> shm_store_names() {
    return {{"auto", ShmStores::kAuto}, {"plain", ShmStores::kPlain}, {"streaming", ShmStores::kStreaming}};
  }

  // What the trainer uses: timeout_s > 0 is a fixed deadline, 0 the adaptive one
  // (10 s floor, 20x the slowest recent step).
  static CommOptions from_seconds(double timeout_s, bool verify);
};

}  // namespace lockstep
