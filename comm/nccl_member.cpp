// The collectives of one NcclGroup member. Every call follows one pattern:
//   compute stream --ready event--> NCCL stream: [same-GPU reduce] NCCL call [copies]
//   NCCL stream --done event--> every member's compute stream
// so no host thread ever waits for the device. Replicas sharing a GPU meet on the
// host first (their buffers must be known to the leader) and reduce in replica order.
// With a deferred wait the last arrow is drawn once, at join(), so backward keeps
// running while earlier buckets are reduced.
#include "comm/nccl_member.h"

#include "comm/nccl_check.h"
#include "comm/nccl_reduce.h"

namespace lockstep {
namespace {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::kFloat32: return ncclFloat32;
    case DType::kFloat64: return ncclFloat64;
    case DType::kInt32: return ncclInt32;
    case DType::kInt64: return ncclInt64;
    case DType::kUInt8: return ncclUint8;
  }
  throw CommError("NCCL: unknown dtype " + std::to_string(static_cast<int>(t)));
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  throw CommError("NCCL: unknown reduce op " + std::to_string(static_cast<int>(op)));
}

}  // namespace

NcclMember::NcclMember(NcclState& state, int local)
    : state_(state),
      local_(local),
      device_(state.local_devices[size_t(local)]),
      slot_index_(state.slot_of[size_t(local)]),
      position_(state.position[size_t(local)]) {}

int NcclMember::rank() const { return state_.global_rank(local_); }
int NcclMember::size() const { return state_.process_count * state_.local_size(); }

bool NcclMember::capturing() const {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  LOCKSTEP_CUDA_CHECK(cudaStreamIsCapturing(compute_, &status));
  return status != cudaStreamCaptureStatusNone;
}

// Host memory or another GPU's memory would make NCCL fail deep inside a kernel;
// say so here instead. Only new pointers are looked up (buffers are reused).
void NcclMember::check_device_pointer(const void* ptr, const char* what, const char* op) {
  const void*& last = what[0] == 's' ? checked_send_ : checked_;
  if (ptr == last) return;
  cudaPointerAttributes attr{};
  const cudaError_t err = cudaPointerGetAttributes(&attr, ptr);
  if (err != cudaSuccess) cudaGetLastError();
  const bool on_device = err == cudaSuccess &&
                         (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged);
  if (!on_device || attr.device != device_) {
    const std::string found = !on_device ? std::string("host or unknown memory")
                                         : "memory of device " + std::to_string(attr.device);
    throw CommError(state_.where(local_) + ": " + op + ": " + what + " is " + found +
                    "; the NCCL backend needs device memory of device " + std::to_string(device_) +
                    " (hint: allocate with cudaMalloc after binding the replica's device)");
  }
  last = ptr;
}

void NcclMember::check_same_call(const NcclSlot& slot) const {
  const NcclPublished& first = slot.published[0];
  for (const NcclPublished& other : slot.published) {
    const CallSignature& a = first.sig;
    const CallSignature& b = other.sig;
    if (a == b) continue;
    throw CommError(state_.where(local_) + ": replicas sharing device " +
                    std::to_string(slot.device) + " called different collectives: replica " +
                    std::to_string(first.local) + " called " + describe_call(a) + ", replica " +
                    std::to_string(other.local) + " called " + describe_call(b));
  }
}

void NcclMember::copy_to_others(const std::vector<NcclPublished>& members, const void* from,
                                const void* skip, size_t bytes, cudaStream_t stream) const {
  for (const NcclPublished& m : members) {
    if (m.buf == from || m.buf == skip) continue;
    LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(m.buf, from, bytes, cudaMemcpyDeviceToDevice, stream));
  }
}

void NcclMember::lead(NcclSlot& slot, const std::vector<NcclPublished>& members, const char* op,
                      const Enqueue& enqueue) {
  const cudaStream_t stream = slot.stream->get();
  for (const NcclPublished& m : members) LOCKSTEP_CUDA_CHECK(cudaStreamWaitEvent(stream, m.ready, 0));
  {
    std::unique_lock<std::timed_mutex> lock(slot.call_mu);
    if (state_.failed() || slot.comm == nullptr) {
      lock.unlock();
      state_.throw_failed(local_, op);
    }
    enqueue(slot, members, stream);
  }
  slot.done->record(stream);
}

void NcclMember::run(const CallSignature& sig, const void* send, void* buf,
                     const Enqueue& enqueue) {
  const char* op = collective_name(sig.kind);
  if (state_.failed()) state_.throw_failed(local_, op);
  uint64_t seq = 0;
  const WaitBudget budget = state_.begin_wait(local_, &seq);
  DeviceGuard guard(device_);
  NcclSlot& slot = *state_.slots[size_t(slot_index_)];
  const bool shared = slot.members.size() > 1;
  const bool captured = capturing();
  if (shared && captured) {
    throw CommError(state_.where(local_) + ": " + op + ": replicas sharing device " +
                    std::to_string(device_) + " cannot be captured into CUDA graphs (each "
                    "replica's capture is separate, and the same-GPU reduction joins them); "
                    "run them uncaptured or give each replica its own GPU");
  }
  ready_.record(compute_);
  const NcclPublished mine{sig, send, buf, ready_.get(), local_, 0};
  const uint64_t generation = shared ? state_.arrive(local_, mine, op, budget) : 0;
  if (position_ == 0) {
    try {
      if (shared) check_same_call(slot);
      if (!shared) solo_[0] = mine;
      lead(slot, shared ? slot.published : solo_, op, enqueue);
      if (!captured) {
        state_.track(slot_index_, slot.stream->get(), state_.where(local_) + ": " + describe_call(sig),
                     budget, local_, seq);
      }
    } catch (const std::exception& e) {
      state_.abort_all(e.what());
      throw;
    }
    if (shared) state_.mark_enqueued(slot_index_, generation);
  } else {
    state_.wait_enqueued(local_, generation, op, budget);
  }
  // Same-GPU results are copied into the other members' buffers: they wait per call.
  if (defer_wait_ && !shared) {
    join_pending_ = true;
  } else {
    slot.done->wait_on(compute_);
  }
}

void NcclMember::join() {
  if (!join_pending_) return;
  DeviceGuard guard(device_);
  state_.slots[size_t(slot_index_)]->done->wait_on(compute_);
  join_pending_ = false;
}

// A replayed graph holds this member's collectives but records nothing the
// watchdog sees; an event after it, on the compute stream, stands for all of them.
void NcclMember::track_compute(const std::string& what) {
  if (state_.failed()) state_.throw_failed(local_, "step");
  uint64_t seq = 0;
  const WaitBudget budget = state_.begin_wait(local_, &seq);
  DeviceGuard guard(device_);
  state_.track(slot_index_, compute_, state_.where(local_) + ": " + what, budget, local_, seq);
}

void NcclMember::wait_compute(const char* op) {
  DeviceGuard guard(device_);
  state_.wait_stream(local_, compute_, op);
}

void NcclMember::do_allreduce(void* buf, size_t count, DType dtype, ReduceOp op) {
  check_device_pointer(buf, "buf", "allreduce");
  const size_t bytes = count * dtype_size(dtype);
  CallSignature sig{CollectiveKind::kAllreduce, dtype, op, 0, count};
  run(sig, nullptr, buf, [&](NcclSlot& slot, const std::vector<NcclPublished>& m, cudaStream_t s) {
    void* lead_buf = m[0].buf;
    if (m.size() > 1) {
      sources_.clear();
      for (const NcclPublished& p : m) sources_.push_back(p.buf);
      nccl_detail::reduce_on_device(sources_.data(), static_cast<int>(sources_.size()), lead_buf,
                                    count, dtype, op, s);
    }
    LOCKSTEP_NCCL_CHECK(state_.where(local_), slot.comm,
                        ncclAllReduce(lead_buf, lead_buf, count, nccl_type(dtype), nccl_op(op),
                                      slot.comm, s));
    copy_to_others(m, lead_buf, nullptr, bytes, s);
  });
}

void NcclMember::do_broadcast(void* buf, size_t count, DType dtype, int root) {
  check_device_pointer(buf, "buf", "broadcast");
  const size_t bytes = count * dtype_size(dtype);
  CallSignature sig{CollectiveKind::kBroadcast, dtype, ReduceOp::kSum, root, count};
  run(sig, nullptr, buf, [&](NcclSlot& slot, const std::vector<NcclPublished>& m, cudaStream_t s) {
    const int k = state_.local_size();
    const int root_local = root % k;
    const bool root_here = root / k == state_.process_rank &&
                           state_.slot_of[size_t(root_local)] == slot_index_;
    void* lead_buf = m[0].buf;
    const void* source = root_here ? m[size_t(state_.position[size_t(root_local)])].buf : lead_buf;
    LOCKSTEP_NCCL_CHECK(state_.where(local_), slot.comm,
                        ncclBroadcast(source, lead_buf, count, nccl_type(dtype),
                                      state_.nccl_rank_of(root), slot.comm, s));
    copy_to_others(m, lead_buf, source, bytes, s);
  });
}

void NcclMember::do_allgather(const void* send, void* recv, size_t count, DType dtype) {
  check_device_pointer(send, "send", "allgather");
  check_device_pointer(recv, "recv", "allgather");
  const size_t bytes = count * dtype_size(dtype);
  CallSignature sig{CollectiveKind::kAllgather, dtype, ReduceOp::kSum, 0, count};
  run(sig, send, recv, [&](NcclSlot& slot, const std::vector<NcclPublished>& m, cudaStream_t s) {
    const std::string who = state_.where(local_);
    if (state_.one_replica_per_gpu) {  // NCCL ranks are lockstep ranks: one call does it
      LOCKSTEP_NCCL_CHECK(who, slot.comm,
                          ncclAllGather(m[0].send, m[0].buf, count, nccl_type(dtype), slot.comm, s));
      return;
    }
    // Several replicas per GPU somewhere: place this GPU's pieces, then every rank's
    // piece is broadcast from the GPU that holds it (one NCCL group call).
    char* lead = static_cast<char*>(m[0].buf);
    for (const NcclPublished& p : m) {
      char* at = lead + size_t(state_.global_rank(p.local)) * bytes;
      if (at == p.send) continue;
      LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(at, p.send, bytes, cudaMemcpyDeviceToDevice, s));
    }
    LOCKSTEP_NCCL_CHECK(who, slot.comm, ncclGroupStart());
    ncclResult_t rc = ncclSuccess;
    for (int r = 0; r < size() && rc == ncclSuccess; ++r) {
      char* piece = lead + size_t(r) * bytes;
      rc = ncclBroadcast(piece, piece, count, nccl_type(dtype), state_.nccl_rank_of(r), slot.comm, s);
    }
    const ncclResult_t end = ncclGroupEnd();
    LOCKSTEP_NCCL_CHECK(who, slot.comm, rc);
    LOCKSTEP_NCCL_CHECK(who, slot.comm, end);
    copy_to_others(m, lead, nullptr, bytes * size_t(size()), s);
  });
}

// Stream-ordered like the rest: work enqueued after it on any member's compute
// stream runs after every member's work enqueued before it.
void NcclMember::barrier() {
  CallSignature sig{CollectiveKind::kBarrier, DType::kInt32, ReduceOp::kMax, 0, 0};
  run(sig, nullptr, nullptr, [&](NcclSlot& slot, const std::vector<NcclPublished>&, cudaStream_t s) {
    LOCKSTEP_NCCL_CHECK(state_.where(local_), slot.comm,
                        ncclAllReduce(slot.token.data(), slot.token.data(), 1, ncclInt32, ncclMax,
                                      slot.comm, s));
  });
}

}  // namespace lockstep
