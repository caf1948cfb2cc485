// The small pieces of the Communicator contract: names and sizes of dtypes and
// reduction ops, and the single-rank communicator that is every program's default.
#include "comm/communicator.h"

#include <cstring>
#include <string>

#include "comm/reduce.h"

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

namespace {

// A group of one: reductions are the identity, broadcast needs root 0, allgather
// is a copy. Arguments are still validated so that a bug shows up on one rank too.
class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "single"; }

  void allreduce(void* buf, size_t count, DType dtype, ReduceOp op) override {
    check_dtype_and_op(dtype, op, "single allreduce");
    if (count > 0 && buf == nullptr) throw CommError("single allreduce: null buffer with count > 0");
  }
  void broadcast(void* buf, size_t count, DType dtype, int root) override {
    check_dtype_and_op(dtype, ReduceOp::kSum, "single broadcast");
    if (root != 0) {
      throw CommError("single broadcast: root " + std::to_string(root) +
                      " is out of range for a group of 1 (valid: 0)");
    }
    if (count > 0 && buf == nullptr) throw CommError("single broadcast: null buffer with count > 0");
  }
  void allgather(const void* send, void* recv, size_t count, DType dtype) override {
    check_dtype_and_op(dtype, ReduceOp::kSum, "single allgather");
    if (count == 0) return;
    if (send == nullptr || recv == nullptr) throw CommError("single allgather: null buffer with count > 0");
    if (send != recv) std::memmove(recv, send, count * dtype_size(dtype));
  }
  void barrier() override {}
};

}  // namespace

std::unique_ptr<Communicator> make_single_communicator() {
  return std::make_unique<SingleCommunicator>();
}

}  // namespace lockstep
