// One replica's Communicator in an NcclGroup: it records "my inputs are ready" on
// the replica's compute stream, meets the replicas sharing its GPU, and (as the
// GPU's leader) enqueues the same-GPU reduction and the NCCL call on the NCCL
// stream; every member's compute stream then waits for the result on the device
// (after each call, or once at join() with a deferred wait).
// Internal to comm/; compiled only with LOCKSTEP_HAVE_CUDA.
#pragma once

#include <cuda_runtime_api.h>

#include <vector>

#include "comm/communicator.h"
#include "comm/nccl_state.h"

namespace lockstep {

class NcclMember final : public Communicator {
 public:
  NcclMember(NcclState& state, int local);

  int rank() const override;
  int size() const override;
  std::string name() const override { return "nccl"; }
  void do_allreduce(void* buf, size_t count, DType dtype, ReduceOp op) override;
  void do_broadcast(void* buf, size_t count, DType dtype, int root) override;
  void do_allgather(const void* send, void* recv, size_t count, DType dtype) override;
  void barrier() override;

  void set_stream(cudaStream_t stream) { compute_ = stream; }
  // NcclGroup's set_deferred_wait / join / track_compute / wait_compute for this member.
  void set_deferred_wait(bool on) { defer_wait_ = on; }
  void join();
  void track_compute(const std::string& what);
  void wait_compute(const char* op);

 private:
  // What the leader enqueues on the NCCL stream, given every member's arguments in
  // replica order (element 0 is the leader's own).
  using Enqueue = std::function<void(NcclSlot&, const std::vector<NcclPublished>&, cudaStream_t)>;

  void run(const CallSignature& sig, const void* send, void* buf, const Enqueue& enqueue);
  void lead(NcclSlot& slot, const std::vector<NcclPublished>& members, const char* op,
            const Enqueue& enqueue);
  void check_same_call(const NcclSlot& slot) const;
  void check_device_pointer(const void* ptr, const char* what, const char* op);
  bool capturing() const;
  void copy_to_others(const std::vector<NcclPublished>& members, const void* from,
                      const void* skip, size_t bytes, cudaStream_t stream) const;

  NcclState& state_;
  int local_;
  int device_;
  int slot_index_;
  int position_;
  cudaStream_t compute_ = nullptr;
  bool defer_wait_ = false;   // compute waits once, in join(), not after each call
  bool join_pending_ = false;  // a deferred call's result not yet waited for
  cuda::Event ready_;
  std::vector<NcclPublished> solo_ = std::vector<NcclPublished>(1);  // leader alone on its GPU
  std::vector<const void*> sources_;   // scratch for the same-GPU reduction
  const void* checked_ = nullptr;      // last pointers found on our device
  const void* checked_send_ = nullptr;
};

}  // namespace lockstep
