// NcclGroup setup and teardown: check the devices, group replicas by GPU, agree on
// the rank layout with the other processes over MPI, share rank 0's ncclUniqueId,
// create one NCCL communicator per distinct GPU (one ncclGroupStart/End, so one
// thread can bring up several GPUs), then the per-GPU streams and events.
#include "comm/nccl_communicator.h"

#include <algorithm>
#include <cstdio>
#include <exception>

#include "comm/mpi_check.h"
#include "comm/nccl_check.h"
#include "comm/nccl_member.h"
#include "comm/nccl_state.h"

namespace lockstep {
namespace {

void check_devices(const std::vector<int>& devices) {
  if (devices.empty()) throw CommError("NcclGroup: local_devices is empty (need one per replica)");
  const int visible = cuda::device_count();
  for (size_t i = 0; i < devices.size(); ++i) {
    if (devices[i] < 0 || devices[i] >= visible) {
      throw CommError("NcclGroup: local_devices[" + std::to_string(i) + "] = " +
                      std::to_string(devices[i]) + ", but " + std::to_string(visible) +
                      " CUDA devices are visible (hint: check CUDA_VISIBLE_DEVICES and the "
                      "replicas per process)");
    }
  }
}

// Distinct GPUs in order of first use; replicas keep their order within a GPU.
void group_by_device(NcclState& st) {
  const int k = st.local_size();
  st.slot_of.assign(size_t(k), -1);
  st.position.assign(size_t(k), 0);
  for (int i = 0; i < k; ++i) {
    const int device = st.local_devices[size_t(i)];
    auto it = std::find_if(st.slots.begin(), st.slots.end(),
                           [&](const auto& s) { return s->device == device; });
    if (it == st.slots.end()) {
      st.slots.push_back(std::make_unique<NcclSlot>());
      st.slots.back()->device = device;
      it = st.slots.end() - 1;
    }
    st.slot_of[size_t(i)] = static_cast<int>(it - st.slots.begin());
    st.position[size_t(i)] = static_cast<int>((*it)->members.size());
    (*it)->members.push_back(i);
  }
}

// Every process learns every process's replica -> GPU-slot map; NCCL ranks are
// numbered process by process, GPU slot by slot.
void exchange_layout(MPI_Comm world, NcclState& st) {
  const int k = st.local_size();
  if (world != MPI_COMM_NULL) {
    LOCKSTEP_MPI_CHECK(MPI_Comm_rank(world, &st.process_rank));
    LOCKSTEP_MPI_CHECK(MPI_Comm_size(world, &st.process_count));
  }
  std::vector<int> counts(size_t(st.process_count), k);
  std::vector<int> table(size_t(st.process_count) * size_t(k));
  if (world != MPI_COMM_NULL) {
    LOCKSTEP_MPI_CHECK(MPI_Allgather(&k, 1, MPI_INT, counts.data(), 1, MPI_INT, world));
    for (int p = 0; p < st.process_count; ++p) {
      if (counts[size_t(p)] != k) {
        throw CommError("NcclGroup on process " + std::to_string(st.process_rank) + ": " +
                        std::to_string(k) + " local replicas here but " +
                        std::to_string(counts[size_t(p)]) + " on process " + std::to_string(p) +
                        " (every process must run the same number)");
      }
    }
    LOCKSTEP_MPI_CHECK(MPI_Allgather(st.slot_of.data(), k, MPI_INT, table.data(), k, MPI_INT, world));
  } else {
    table = st.slot_of;
  }
  st.slot_table.assign(size_t(st.process_count), {});
  st.nccl_base.assign(size_t(st.process_count), 0);
  int next = 0;
  for (int p = 0; p < st.process_count; ++p) {
    auto first = table.begin() + ptrdiff_t(p) * k;
    st.slot_table[size_t(p)].assign(first, first + k);
    const int gpus = *std::max_element(first, first + k) + 1;
    st.nccl_base[size_t(p)] = next;
    next += gpus;
    st.one_replica_per_gpu = st.one_replica_per_gpu && gpus == k;
  }
  st.nccl_size = next;
  for (size_t s = 0; s < st.slots.size(); ++s) {
    st.slots[s]->nccl_rank = st.nccl_base[size_t(st.process_rank)] + static_cast<int>(s);
  }
}

// Rank 0 makes the id; its success travels with it, so a failure there is an
// error everywhere instead of a hang in the broadcast.
ncclUniqueId share_unique_id(MPI_Comm world, const NcclState& st) {
  ncclUniqueId id{};
  int rc = ncclSuccess;
  if (st.process_rank == 0) rc = ncclGetUniqueId(&id);
  if (world != MPI_COMM_NULL) LOCKSTEP_MPI_CHECK(MPI_Bcast(&rc, 1, MPI_INT, 0, world));
  if (rc != ncclSuccess) {
    const std::string who = "NCCL process " + std::to_string(st.process_rank);
    if (st.process_rank == 0) {
      throw_nccl_error(static_cast<ncclResult_t>(rc), nullptr, who, "ncclGetUniqueId(&id)",
                       __FILE__, __LINE__);
    }
    throw CommError(who + ": process 0 could not create the NCCL unique id: " +
                    ncclGetErrorString(static_cast<ncclResult_t>(rc)));
  }
  if (world != MPI_COMM_NULL) {
    LOCKSTEP_MPI_CHECK(MPI_Bcast(&id, static_cast<int>(sizeof(id)), MPI_BYTE, 0, world));
  }
  return id;
}

void init_comms(NcclState& st, const ncclUniqueId& id) {
  const std::string who = "NCCL process " + std::to_string(st.process_rank) + " (" +
                          std::to_string(st.slots.size()) + " GPUs, NCCL ranks " +
                          std::to_string(st.slots.front()->nccl_rank) + ".." +
                          std::to_string(st.slots.back()->nccl_rank) + " of " +
                          std::to_string(st.nccl_size) + ")";
  // Nothing may throw between ncclGroupStart and ncclGroupEnd (an unclosed group
  // breaks every later NCCL call of this thread): a failed device switch is kept
  // and reported after the group is closed.
  ncclResult_t rc = ncclGroupStart();
  cudaError_t device_err = cudaSuccess;
  for (auto& slot : st.slots) {
    if (rc != ncclSuccess) break;
    device_err = cudaSetDevice(slot->device);
    if (device_err != cudaSuccess) break;
    rc = ncclCommInitRank(&slot->comm, st.nccl_size, id, slot->nccl_rank);
  }
  const ncclResult_t end = ncclGroupEnd();
  if (device_err != cudaSuccess) {
    cudaGetLastError();
    for (auto& slot : st.slots) {
      if (slot->comm != nullptr) ncclCommAbort(slot->comm);
      slot->comm = nullptr;
    }
    cuda::throw_cuda_error(device_err, "cudaSetDevice(slot->device)", __FILE__, __LINE__);
  }
  if (rc == ncclSuccess) rc = end;
  if (rc == ncclSuccess) return;
  ncclComm_t any = st.slots.front()->comm;
  const std::string detail = ncclGetLastError(any) != nullptr ? ncclGetLastError(any) : "";
  for (auto& slot : st.slots) {
    if (slot->comm != nullptr) ncclCommAbort(slot->comm);
    slot->comm = nullptr;
  }
  throw CommError(who + ": ncclCommInitRank failed: " + ncclGetErrorString(rc) +
                  (detail.empty() ? "" : " (" + detail + ")") + "; hint: " + nccl_hint(rc));
}

void make_slot_resources(NcclState& st) {
  for (auto& slot : st.slots) {
    DeviceGuard guard(slot->device);
    slot->stream = std::make_unique<cuda::Stream>();
    slot->done = std::make_unique<cuda::Event>();
    slot->token = cuda::DeviceBuffer<int32_t>(1);
    LOCKSTEP_CUDA_CHECK(cudaMemset(slot->token.data(), 0, sizeof(int32_t)));
    slot->published.resize(slot->members.size());
    for (size_t p = 0; p < slot->members.size(); ++p) slot->published[p].local = slot->members[p];
  }
}

}  // namespace

NcclGroup::NcclGroup(MPI_Comm world, const std::vector<int>& local_devices, CommOptions options,
                     const std::vector<cudaStream_t>& compute_streams) {
  check_devices(local_devices);
  if (!compute_streams.empty() && compute_streams.size() != local_devices.size()) {
    throw CommError("NcclGroup: " + std::to_string(compute_streams.size()) + " compute streams for " +
                    std::to_string(local_devices.size()) + " local devices (give one per replica, or none)");
  }
  state_ = std::make_unique<NcclState>(options, local_devices);
  NcclState& st = *state_;
  group_by_device(st);
  exchange_layout(world, st);
  const ncclUniqueId id = share_unique_id(world, st);
  {
    DeviceGuard guard(local_devices[0]);  // restores the caller's binding afterwards
    init_comms(st, id);
  }
  try {
    make_slot_resources(st);
    for (int i = 0; i < st.local_size(); ++i) {
      DeviceGuard guard(local_devices[size_t(i)]);  // member events live on its GPU
      members_.push_back(std::make_unique<NcclMember>(st, i));
      if (!compute_streams.empty()) nccl_member(i).set_stream(compute_streams[size_t(i)]);
    }
  } catch (...) {
    st.abort_all("NcclGroup setup failed");
    throw;
  }
  st.start_watchdog();
}

NcclGroup::~NcclGroup() {
  members_.clear();
  try {
    state_->shutdown();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lockstep: closing the NCCL group: %s\n", e.what());
  }
}

int NcclGroup::local_size() const { return state_->local_size(); }

Communicator& NcclGroup::member_at(int i) { return *members_[size_t(i)]; }

void NcclGroup::set_stream(int i, cudaStream_t compute_stream) {
  nccl_member(i).set_stream(compute_stream);
}

void NcclGroup::fail(const std::string& reason) { state_->abort_all(reason); }

bool NcclGroup::failed() const { return state_->failed(); }

NcclMember& NcclGroup::nccl_member(int i) { return static_cast<NcclMember&>(member(i)); }

void NcclGroup::set_deferred_wait(int i, bool on) { nccl_member(i).set_deferred_wait(on); }

void NcclGroup::join(int i) { nccl_member(i).join(); }

void NcclGroup::track_compute(int i, const std::string& what) { nccl_member(i).track_compute(what); }

void NcclGroup::wait_compute(int i, const char* op) { nccl_member(i).wait_compute(op); }

}  // namespace lockstep
