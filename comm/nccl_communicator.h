// The NCCL backend: one NCCL communicator over (all processes) x (this process's
// GPU replicas), with replicas that share a GPU combined by lockstep's own device
// kernels first (NCCL refuses two ranks on one GPU). Collectives are stream-ordered:
// they enqueue work and return without waiting for the device. Compiled only with
// LOCKSTEP_HAVE_CUDA (comm/CMakeLists.txt).
#pragma once

#include <cuda_runtime_api.h>
#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/options.h"
#include "comm/replica_group.h"

namespace lockstep {

class NcclMember;
class NcclState;

// Created by the main thread of every process before replica threads start: the
// constructor is collective over `world` (MPI_COMM_NULL for a single process, in
// which case MPI is never called); rank 0 makes the ncclUniqueId and MPI broadcasts
// it. Every process must pass the same number of local devices. Replicas that share
// one GPU (the same id listed twice) are reduced on that GPU in replica order, then
// one NCCL rank per distinct GPU combines across GPUs and processes. Each member
// carries its compute stream from the start: compute_streams[i] when given (one per
// local device), else the legacy default stream until set_stream.
class NcclGroup final : public ReplicaGroup {
 public:
  NcclGroup(MPI_Comm world, const std::vector<int>& local_devices, CommOptions options = {},
            const std::vector<cudaStream_t>& compute_streams = {});
  ~NcclGroup() override;
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  int local_size() const override;
  // member(i), local replica i's communicator: rank() = process_rank*K + i, size() = processes*K,
  // name() == "nccl". Buffers are device pointers on local_devices[i]. Each call is
  // ordered after all work already enqueued on the stream set with set_stream(i, s)
  // and everything enqueued on that stream afterwards sees the result (stream-ordered;
  // no host synchronisation). Call it only from replica i's thread. Calls may be
  // captured into a CUDA graph when replica i has its GPU to itself.
  // The compute stream member i orders against (default: the legacy default stream).
  // Must be on local_devices[i]; set it before member i's first collective.
  void set_stream(int i, cudaStream_t compute_stream);
  // Overlap: with `on`, member i's collectives no longer make its compute stream
  // wait for each result; join(i) makes it wait once for every call so far (call it
  // before anything reads them, and before a stream capture ends). Members that
  // share a GPU keep waiting per call (the results are copied back into their
  // buffers). Both from replica i's thread only.
  void set_deferred_wait(int i, bool on);
  void join(int i);
  // Watches everything enqueued on member i's compute stream so far (a replayed
  // CUDA graph holding its collectives) as a collective: the watchdog aborts the
  // group if it is not done within member i's deadline (comm options, adaptive,
  // long phases); `what` names it in the error.
  void track_compute(int i, const std::string& what);
  // Waits on the host until member i's compute stream is idle, polling it and the
  // group's failure flag instead of blocking in the driver. Throws CommError if the
  // group has failed, even when the stream finished: that work used an aborted
  // collective's partial result.
  void wait_compute(int i, const char* op);
  // Aborts the group: NCCL communicators are aborted (device work waiting on peers
  // ends), members waiting now or calling later throw CommError with `reason`.
  void fail(const std::string& reason) override;
  bool failed() const;

 private:
  Communicator& member_at(int i) override;
  NcclMember& nccl_member(int i);

  std::unique_ptr<NcclState> state_;
  std::vector<std::unique_ptr<Communicator>> members_;
};

}  // namespace lockstep
