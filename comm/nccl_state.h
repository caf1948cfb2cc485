// What the members of one NcclGroup share: per-GPU slots (NCCL communicator, its
// stream, the same-GPU rendezvous), the rank layout across processes, the failure
// state, and the watchdog that polls NCCL's asynchronous errors and enforces the
// deadline. Internal to comm/ (nccl_*.cpp); compiled only with LOCKSTEP_HAVE_CUDA.
#pragma once

#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/deadline.h"
#include "comm/local_fabric.h"
#include "comm/options.h"
#include "comm/watch_policy.h"
#include "kernels/cuda/device.h"

namespace lockstep {

using NcclClock = std::chrono::steady_clock;

// One member's arguments to the current collective, seen by its slot's leader.
struct NcclPublished {
  CallSignature sig;
  const void* send = nullptr;
  void* buf = nullptr;
  cudaEvent_t ready = nullptr;  // recorded on the member's compute stream
  int local = 0;
  uint64_t arrival = 0;  // the slot generation this member arrived for, plus one
};

// Binds the calling thread to `device` for a scope and restores its previous device
// after (replica threads and the main thread keep the binding they chose).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      cudaGetLastError();
      previous_ = -1;
    }
    if (previous_ != device) LOCKSTEP_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() {
    int now = -1;
    if (previous_ >= 0 && cudaGetDevice(&now) == cudaSuccess && now != previous_) {
      cudaSetDevice(previous_);
    }
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// A collective (or a replayed step) whose completion the watchdog still waits for.
struct NcclPending {
  cudaEvent_t event = nullptr;
  std::string what;  // "NCCL rank 3 (device 1): allreduce of 1024 float32"
  NcclClock::time_point since;
  WaitBudget budget;  // from the issuing member's DeadlineClock
  int local = 0;      // the issuing member
  uint64_t seq = 0;   // its count of waits begun, this one included
  // The member's slowest recent interval between waits: a healthy wait may take
  // this long, so a signal ends the wait only after it plus the grace.
  std::chrono::milliseconds usual{0};
};

// One distinct GPU of this process: one NCCL rank. members[0] (the lowest local
// replica index on this GPU) leads: it issues the NCCL calls and the same-GPU
// reduction for all of them.
struct NcclSlot {
  int device = 0;
  int nccl_rank = 0;
  std::vector<int> members;
  ncclComm_t comm = nullptr;
  std::unique_ptr<cuda::Stream> stream;  // NCCL's own stream
  std::unique_ptr<cuda::Event> done;     // recorded after each collective
  cuda::DeviceBuffer<int32_t> token;     // what barrier() all-reduces
  // Held while NCCL calls are issued on `comm`, and by abort (never both at once).
  std::timed_mutex call_mu;
  // Same-GPU rendezvous (only used when members.size() > 1).
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;  // completed arrivals
  uint64_t enqueued = 0;    // generations whose work the leader has enqueued
  std::vector<NcclPublished> published;
  // Watchdog bookkeeping, guarded by NcclState::watch_mu_.
  std::deque<NcclPending> pending;
  std::vector<cudaEvent_t> spare_events;
};

class NcclState {
 public:
  NcclState(CommOptions options, std::vector<int> local_devices);
  ~NcclState();
  NcclState(const NcclState&) = delete;
  NcclState& operator=(const NcclState&) = delete;

  // Layout, fixed after construction.
  CommOptions options;
  // One per local replica, used only on its thread: the deadline of each of its
  // waits (comm.timeout_s, or adaptive, with long phases), as the CPU backends.
  std::vector<DeadlineClock> clocks;
  // Starts local replica `local`'s next wait (a collective or a watched replay):
  // its budget, and in *seq how many waits it has begun, this one included.
  WaitBudget begin_wait(int local, uint64_t* seq);
  // That member's slowest recent interval between waits.
  std::chrono::milliseconds usual_interval(int local) const;
  // "; local replicas 1, 2 have not got this far" for the replicas of this process
  // that have begun fewer than `seq` waits ("" when none).
  std::string behind(uint64_t seq) const;
  int process_rank = 0;
  int process_count = 1;
  std::vector<int> local_devices;
  std::vector<int> slot_of;            // local replica -> slot index
  std::vector<int> position;           // local replica -> index in its slot's members
  std::vector<std::vector<int>> slot_table;  // [process][local replica] -> that process's slot
  std::vector<int> nccl_base;          // [process] -> its first NCCL rank
  int nccl_size = 1;
  bool one_replica_per_gpu = true;     // on every process: NCCL rank == lockstep rank
  std::vector<std::unique_ptr<NcclSlot>> slots;

  int local_size() const { return static_cast<int>(local_devices.size()); }
  int global_rank(int local) const { return process_rank * local_size() + local; }
  // The NCCL rank holding lockstep rank `rank` (any process).
  int nccl_rank_of(int rank) const;
  // "NCCL rank 5 (process 1, replica 1, device 0)" for messages.
  std::string where(int local) const;

  // Failure: the first reason wins; communicators are aborted and every waiter woken.
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  void abort_all(const std::string& reason);
  [[noreturn]] void throw_failed(int local, const char* op) const;
  // Aborts NCCL and tears down; called once by the destructor of NcclGroup.
  void shutdown();

  // Same-GPU rendezvous. arrive() publishes and waits until every member of the
  // slot has; it returns the generation. The leader enqueues, then calls
  // mark_enqueued(); the others wait_enqueued() before ordering their streams.
  uint64_t arrive(int local, const NcclPublished& mine, const char* op, const WaitBudget& budget);
  void mark_enqueued(int slot, uint64_t generation);
  void wait_enqueued(int local, uint64_t generation, const char* op, const WaitBudget& budget);

  // Watchdog: track() records an event on `stream` (the slot's NCCL stream after a
  // collective, or a compute stream after a replayed graph; never while it is being
  // captured) and aborts the group if it has not completed within `budget`.
  void start_watchdog();
  void track(int slot, cudaStream_t stream, std::string what, const WaitBudget& budget, int local,
             uint64_t seq);
  // Host wait for `stream` that polls it and the failure flag (never blocks in the
  // driver); throws the group's CommError if it has failed, also when the stream
  // did finish, since its work then rests on an aborted collective.
  void wait_stream(int local, cudaStream_t stream, const char* op) const;

 private:
  void watch_loop();
  std::string poll_slot(NcclSlot& slot);  // the problem found, or ""
  void wait_slot_until(NcclSlot& slot, std::unique_lock<std::mutex>& lock,
                       const std::function<bool()>& done, int local, const char* op,
                       const char* phase, const WaitBudget& budget);
  void abort_comms();
  void drain_before_destroy();
  void destroy_comms();
  void free_events();

  std::atomic<bool> failed_{false};
  std::unique_ptr<std::atomic<uint64_t>[]> begun_;  // per local replica
  mutable std::mutex fail_mu_;
  std::string reason_;

  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  bool stop_ = false;
  InterruptGrace grace_;  // watchdog thread only
  std::thread watchdog_;
};

}  // namespace lockstep
