// Local collectives over LocalFabric. All-reduce: after everyone arrives, members
// share out blocks (each starting with its own slice), reduce each block across all
// members' buffers in member order and store the result into every buffer; a
// second barrier keeps buffers alive until all blocks are done.
// Broadcast and allgather copy from the published buffers the same way.
#include "comm/local_communicator.h"

#include <cstring>

#include "comm/local_fabric.h"
#include "comm/reduce.h"

namespace lockstep {
namespace {

class LocalCommunicator final : public Communicator {
 public:
  LocalCommunicator(LocalFabric& fabric, int member) : fabric_(fabric), member_(member) {}

  int rank() const override { return member_; }
  int size() const override { return fabric_.size(); }
  std::string name() const override { return "local"; }

  void do_allreduce(void* buf, size_t count, DType dtype, ReduceOp op) override;
  void do_broadcast(void* buf, size_t count, DType dtype, int root) override;
  void do_allgather(const void* send, void* recv, size_t count, DType dtype) override;
  void barrier() override;

 private:
  LocalFabric& fabric_;
  int member_;
};

void LocalCommunicator::do_allreduce(void* buf, size_t count, DType dtype, ReduceOp op) {
  if (fabric_.size() == 1) return;
  const CallSignature sig{CollectiveKind::kAllreduce, dtype, op, 0, count};
  const LocalFabric::Peers peers = fabric_.arrive(member_, sig, nullptr, buf);
  const size_t elem = dtype_size(dtype);
  std::vector<const void*>& srcs = fabric_.src_scratch(member_);
  std::vector<void*>& dsts = fabric_.dst_scratch(member_);
  fabric_.share_blocks(member_, peers, count, elem, [&](size_t begin, size_t end) {
    for (int j = 0; j < fabric_.size(); ++j) {
      dsts[j] = static_cast<std::byte*>(peers.buf(j)) + begin * elem;
      srcs[j] = dsts[j];
    }
    reduce_fixed_order(srcs.data(), fabric_.size(), dsts.data(), fabric_.size(), end - begin,
                       dtype, op);
  });
  fabric_.sync(member_, CollectiveKind::kAllreduce, "slices reduced");
}

void LocalCommunicator::do_broadcast(void* buf, size_t count, DType dtype, int root) {
  if (fabric_.size() == 1) return;
  const CallSignature sig{CollectiveKind::kBroadcast, dtype, ReduceOp::kSum, root, count};
  const LocalFabric::Peers peers = fabric_.arrive(member_, sig, nullptr, buf);
  if (member_ != root && buf != peers.buf(root)) {
    std::memcpy(buf, peers.buf(root), count * dtype_size(dtype));
  }
  fabric_.sync(member_, CollectiveKind::kBroadcast, "copied from root");
}

void LocalCommunicator::do_allgather(const void* send, void* recv, size_t count, DType dtype) {
  const size_t bytes = count * dtype_size(dtype);
  if (fabric_.size() == 1) {
    if (send != recv) std::memmove(recv, send, bytes);
    return;
  }
  const CallSignature sig{CollectiveKind::kAllgather, dtype, ReduceOp::kSum, 0, count};
  const LocalFabric::Peers peers = fabric_.arrive(member_, sig, send, recv);
  for (int j = 0; j < fabric_.size(); ++j) {
    std::byte* dst = static_cast<std::byte*>(recv) + j * bytes;
    if (dst != peers.send(j)) std::memcpy(dst, peers.send(j), bytes);
  }
  fabric_.sync(member_, CollectiveKind::kAllgather, "blocks copied");
}

void LocalCommunicator::barrier() {
  if (fabric_.size() == 1) return;
  fabric_.arrive(member_, CallSignature{}, nullptr, nullptr);
}

}  // namespace

LocalGroup::LocalGroup(int size, CommOptions options)
    : fabric_(std::make_unique<LocalFabric>(size, options, "local")) {
  members_.reserve(size);
  for (int i = 0; i < size; ++i) members_.push_back(std::make_unique<LocalCommunicator>(*fabric_, i));
}

LocalGroup::~LocalGroup() = default;

int LocalGroup::local_size() const { return fabric_->size(); }

void LocalGroup::fail(const std::string& reason) { fabric_->fail(reason); }

}  // namespace lockstep
