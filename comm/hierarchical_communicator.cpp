// Hierarchical collectives: local phases over LocalFabric (every replica thread
// takes part), the inter-process phase by the leader alone over the process
// communicator (shared memory on one node, else MPI; both sum in rank order).
// The sum order is fixed: replicas 0..K-1 within a process, then processes in rank
// order, so results are bitwise reproducible. A leader whose inter-process phase
// fails marks the local group failed, so its replicas stop waiting at once.
#include "comm/hierarchical_communicator.h"

#include <cstring>

#include "comm/local_fabric.h"
#include "comm/mpi_check.h"
#include "comm/reduce.h"

namespace lockstep {
namespace {

class HierarchicalCommunicator final : public Communicator {
 public:
  HierarchicalCommunicator(LocalFabric& fabric, Communicator& inter, int member)
      : fabric_(fabric), inter_(inter), member_(member) {}

  int rank() const override { return inter_.rank() * fabric_.size() + member_; }
  int size() const override { return inter_.size() * fabric_.size(); }
  std::string name() const override { return "hierarchical"; }

  void do_allreduce(void* buf, size_t count, DType dtype, ReduceOp op) override;
  void do_broadcast(void* buf, size_t count, DType dtype, int root) override;
  void do_allgather(const void* send, void* recv, size_t count, DType dtype) override;
  void barrier() override;
  // The leader's buffer is the one the inter-process phase runs on: the
  // process communicator's memory (shared with the other processes on shm).
  // The leaders of all processes allocate alike, as every member must.
  CommBuffer allocate(size_t count) override {
    return leader() ? inter_.allocate(count) : Communicator::allocate(count);
  }

 private:
  bool leader() const { return member_ == 0; }
  template <typename Fn>
  void as_leader(Fn&& fn);

  LocalFabric& fabric_;
  Communicator& inter_;
  int member_;
};

// Runs the inter-process phase on the leader; a failure there fails the local group.
template <typename Fn>
void HierarchicalCommunicator::as_leader(Fn&& fn) {
  if (!leader()) return;
  try {
    fn();
  } catch (const std::exception& e) {
    fabric_.fail(std::string("the leader's inter-process phase failed: ") + e.what());
    throw;
  }
}

void HierarchicalCommunicator::do_allreduce(void* buf, size_t count, DType dtype, ReduceOp op) {
  if (size() == 1) return;
  const CallSignature sig{CollectiveKind::kAllreduce, dtype, op, 0, count};
  const LocalFabric::Peers peers = fabric_.arrive(member_, sig, nullptr, buf);
  const int k = fabric_.size();
  const size_t elem = dtype_size(dtype);
  if (k > 1) {
    std::vector<const void*>& srcs = fabric_.src_scratch(member_);
    fabric_.share_blocks(member_, peers, count, elem, [&](size_t begin, size_t end) {
      for (int j = 0; j < k; ++j) srcs[j] = static_cast<std::byte*>(peers.buf(j)) + begin * elem;
      void* dst = static_cast<std::byte*>(peers.buf(0)) + begin * elem;
      reduce_fixed_order(srcs.data(), k, &dst, 1, end - begin, dtype, op);
    });
    fabric_.sync(member_, CollectiveKind::kAllreduce, "local reduce");
  }
  as_leader([&] { inter_.allreduce(buf, count, dtype, op); });
  if (k == 1) return;
  fabric_.sync(member_, CollectiveKind::kAllreduce, "inter-process allreduce", true);
  if (!leader()) std::memcpy(buf, peers.buf(0), count * elem);
  fabric_.sync(member_, CollectiveKind::kAllreduce, "local broadcast");
}

void HierarchicalCommunicator::do_broadcast(void* buf, size_t count, DType dtype, int root) {
  if (size() == 1) return;
  const CallSignature sig{CollectiveKind::kBroadcast, dtype, ReduceOp::kSum, root, count};
  const LocalFabric::Peers peers = fabric_.arrive(member_, sig, nullptr, buf);
  const int k = fabric_.size();
  const int root_process = root / k;
  const int root_member = root % k;
  const bool root_here = root_process == inter_.rank();
  const size_t bytes = count * dtype_size(dtype);
  if (root_here && root_member != 0) {
    if (leader()) std::memcpy(buf, peers.buf(root_member), bytes);
    fabric_.sync(member_, CollectiveKind::kBroadcast, "root to leader");
  }
  as_leader([&] { inter_.broadcast(buf, count, dtype, root_process); });
  if (k == 1) return;
  fabric_.sync(member_, CollectiveKind::kBroadcast, "inter-process broadcast", true);
  if (!leader() && !(root_here && member_ == root_member)) std::memcpy(buf, peers.buf(0), bytes);
  fabric_.sync(member_, CollectiveKind::kBroadcast, "local broadcast");
}

void HierarchicalCommunicator::do_allgather(const void* send, void* recv, size_t count, DType dtype) {
  const size_t bytes = count * dtype_size(dtype);
  const CallSignature sig{CollectiveKind::kAllgather, dtype, ReduceOp::kSum, 0, count};
  const LocalFabric::Peers peers = fabric_.arrive(member_, sig, send, recv);
  const int k = fabric_.size();
  // Every replica drops its block into the leader's recv at its global rank.
  std::byte* leader_recv = static_cast<std::byte*>(peers.buf(0));
  std::byte* block = leader_recv + static_cast<size_t>(rank()) * bytes;
  if (block != send) std::memmove(block, send, bytes);
  if (k > 1) fabric_.sync(member_, CollectiveKind::kAllgather, "blocks to leader");
  const size_t process_bytes = static_cast<size_t>(k) * bytes;
  as_leader([&] {
    inter_.allgather(leader_recv + inter_.rank() * process_bytes, leader_recv, k * count, dtype);
  });
  if (k == 1) return;
  fabric_.sync(member_, CollectiveKind::kAllgather, "inter-process allgather", true);
  if (!leader()) std::memcpy(recv, leader_recv, static_cast<size_t>(inter_.size()) * process_bytes);
  fabric_.sync(member_, CollectiveKind::kAllgather, "local broadcast");
}

void HierarchicalCommunicator::barrier() {
  fabric_.arrive(member_, CallSignature{}, nullptr, nullptr);
  as_leader([&] { inter_.barrier(); });
  if (fabric_.size() > 1) fabric_.sync(member_, CollectiveKind::kBarrier, "inter-process barrier", true);
}

void check_thread_level(int local_replicas) {
  if (local_replicas <= 1) return;
  int provided = MPI_THREAD_SINGLE;
  LOCKSTEP_MPI_CHECK(MPI_Query_thread(&provided));
  if (provided < MPI_THREAD_SERIALIZED) {
    throw CommError("hierarchical: " + std::to_string(local_replicas) +
                    " local replicas need MPI_THREAD_SERIALIZED (the leader replica's thread calls "
                    "MPI) but MPI provides level " + std::to_string(provided) +
                    " (hint: start MPI through lockstep::Bootstrap, which requests it)");
  }
}

}  // namespace

HierarchicalGroup::HierarchicalGroup(MPI_Comm process_comm, int local_replicas, CommOptions options) {
  if (local_replicas < 1) {
    throw CommError("hierarchical: local_replicas must be at least 1, got " +
                    std::to_string(local_replicas));
  }
  check_thread_level(local_replicas);
  inter_ = make_process_communicator(process_comm, options);
  fabric_ = std::make_unique<LocalFabric>(
      local_replicas, options, "hierarchical process " + std::to_string(inter_->rank()));
  members_.reserve(local_replicas);
  for (int i = 0; i < local_replicas; ++i) {
    members_.push_back(std::make_unique<HierarchicalCommunicator>(*fabric_, *inter_, i));
  }
}

HierarchicalGroup::~HierarchicalGroup() = default;

int HierarchicalGroup::local_size() const { return fabric_->size(); }
int HierarchicalGroup::process_rank() const { return inter_->rank(); }
int HierarchicalGroup::process_count() const { return inter_->size(); }

void HierarchicalGroup::fail(const std::string& reason) { fabric_->fail(reason); }

}  // namespace lockstep
