// The small pieces of the Communicator contract: names and sizes of dtypes and
// reduction ops, the argument checks every collective passes before its backend,
// and the single-rank communicator that is every program's default.
#include "comm/communicator.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>


namespace lockstep {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32: return 4;
    case DType::kFloat64: return 8;
    case DType::kInt32: return 4;
    case DType::kInt64: return 8;
    case DType::kUInt8: return 1;
  }
  throw CommError("dtype_size: unknown dtype " + std::to_string(static_cast<int>(t)));
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kUInt8: return "uint8";
  }
  return "unknown-dtype";
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "unknown-op";
}

// No allocation on the hot path: the message is built only for a bad value.
void Communicator::check_known(DType dtype, ReduceOp op, const char* what) const {
  const int t = static_cast<int>(dtype);
  const int o = static_cast<int>(op);
  if (t < static_cast<int>(DType::kFloat32) || t > static_cast<int>(DType::kUInt8))
    throw CommError(name() + " " + what + ": unknown dtype " + std::to_string(t));
  if (o < static_cast<int>(ReduceOp::kSum) || o > static_cast<int>(ReduceOp::kMin))
    throw CommError(name() + " " + what + ": unknown reduce op " + std::to_string(o));
}

void Communicator::check_buffer(const void* p, size_t count, const char* op, const char* what) const {
  if (count > 0 && p == nullptr) {
    throw CommError(name() + " " + op + " (rank " + std::to_string(rank()) + " of " +
                    std::to_string(size()) + "): " + what + " is null with count " +
                    std::to_string(count) + " (hint: pass a buffer of count elements, or count 0)");
  }
}

void Communicator::allreduce(void* buf, size_t count, DType dtype, ReduceOp op) {
  check_known(dtype, op, "allreduce");
  check_buffer(buf, count, "allreduce", "buf");
  if (count == 0) return;  // the contract: a no-op
  do_allreduce(buf, count, dtype, op);
}

void Communicator::broadcast(void* buf, size_t count, DType dtype, int root) {
  check_known(dtype, ReduceOp::kSum, "broadcast");
  if (root < 0 || root >= size()) {
    throw CommError(name() + " broadcast (rank " + std::to_string(rank()) + " of " +
                    std::to_string(size()) + "): root " + std::to_string(root) +
                    " is out of range for " + std::to_string(size()) + " ranks (valid: 0.." +
                    std::to_string(size() - 1) + ")");
  }
  check_buffer(buf, count, "broadcast", "buf");
  if (count == 0) return;  // the contract: a no-op
  do_broadcast(buf, count, dtype, root);
}

void Communicator::allgather(const void* send, void* recv, size_t count, DType dtype) {
  check_known(dtype, ReduceOp::kSum, "allgather");
  check_buffer(send, count, "allgather", "send");
  check_buffer(recv, count, "allgather", "recv");
  if (count == 0) return;  // the contract: a no-op
  do_allgather(send, recv, count, dtype);
}

CommBuffer Communicator::allocate(size_t count) { return host_buffer(count); }

CommBuffer Communicator::allocate_common(size_t) { return {}; }

CommBuffer host_buffer(size_t count) {
  constexpr std::align_val_t kAlign{64};
  const size_t bytes = std::max<size_t>(count, 1) * sizeof(float);
  void* p = ::operator new(bytes, kAlign);
  std::memset(p, 0, bytes);
  std::shared_ptr<void> owner(p, [kAlign](void* q) { ::operator delete(q, kAlign); });
  return CommBuffer(static_cast<float*>(p), count, std::move(owner));
}

namespace {

// A group of one: reductions are the identity, broadcast's root is 0 (checked
// by the base), allgather is a copy.
class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "single"; }

  void do_allreduce(void*, size_t, DType, ReduceOp) override {}
  void do_broadcast(void*, size_t, DType, int) override {}
  void do_allgather(const void* send, void* recv, size_t count, DType dtype) override {
    if (count > 0 && send != recv) std::memmove(recv, send, count * dtype_size(dtype));
  }
  void barrier() override {}
};

}  // namespace

std::unique_ptr<Communicator> make_single_communicator() {
  return std::make_unique<SingleCommunicator>();
}

}  // namespace lockstep
