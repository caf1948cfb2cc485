// The Communicator basics: dtype/op names and sizes, and the single-rank backend,
// which must behave as a group of one (identity reductions, copy allgather) and
// still reject bad arguments with a clear message), and the default allocate.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.h"

namespace lockstep {
namespace {

TEST(CommNames, DtypeSizesAndNames) {
  EXPECT_EQ(dtype_size(DType::kFloat32), 4u);
  EXPECT_EQ(dtype_size(DType::kFloat64), 8u);
  EXPECT_EQ(dtype_size(DType::kInt32), 4u);
  EXPECT_EQ(dtype_size(DType::kInt64), 8u);
  EXPECT_EQ(dtype_size(DType::kUInt8), 1u);
  EXPECT_STREQ(dtype_name(DType::kFloat32), "float32");
  EXPECT_STREQ(dtype_name(DType::kFloat64), "float64");
  EXPECT_STREQ(dtype_name(DType::kInt32), "int32");
  EXPECT_STREQ(dtype_name(DType::kInt64), "int64");
  EXPECT_STREQ(dtype_name(DType::kUInt8), "uint8");
  EXPECT_STREQ(reduce_op_name(ReduceOp::kSum), "sum");
  EXPECT_STREQ(reduce_op_name(ReduceOp::kMax), "max");
  EXPECT_STREQ(reduce_op_name(ReduceOp::kMin), "min");
  EXPECT_THROW(dtype_size(static_cast<DType>(42)), CommError);
}

TEST(SingleCommunicator, IsAGroupOfOne) {
  auto comm = make_single_communicator();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->name(), "single");
}

TEST(SingleCommunicator, ReductionsAreTheIdentity) {
  auto comm = make_single_communicator();
  std::vector<float> f = {1.5f, -2.0f, 3.25f};
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin}) comm->allreduce(f.data(), 3, op);
  EXPECT_EQ(f, (std::vector<float>{1.5f, -2.0f, 3.25f}));
  std::vector<uint8_t> u = {0, 255, 7};
  comm->allreduce(u.data(), u.size());
  EXPECT_EQ(u, (std::vector<uint8_t>{0, 255, 7}));
  std::vector<int64_t> l = {-5, 1LL << 40};
  comm->allreduce(l.data(), l.size(), ReduceOp::kMax);
  EXPECT_EQ(l, (std::vector<int64_t>{-5, 1LL << 40}));
}

TEST(SingleCommunicator, BroadcastAndAllgather) {
  auto comm = make_single_communicator();
  std::vector<double> d = {1.0, 2.0};
  comm->broadcast(d.data(), d.size(), 0);
  EXPECT_EQ(d, (std::vector<double>{1.0, 2.0}));
  std::vector<int32_t> send = {4, 5, 6};
  std::vector<int32_t> recv(3, 0);
  comm->allgather(send.data(), recv.data(), 3);
  EXPECT_EQ(recv, send);
  comm->barrier();
}

TEST(SingleCommunicator, ZeroLengthIsANoOp) {
  auto comm = make_single_communicator();
  comm->allreduce(static_cast<float*>(nullptr), 0);
  comm->broadcast(static_cast<float*>(nullptr), 0, 0);
  comm->allgather(static_cast<const float*>(nullptr), static_cast<float*>(nullptr), 0);
}

// The default allocate: zeroed, 64-byte aligned, its own memory each time, and
// movable (the owner goes with it).
TEST(SingleCommunicator, AllocateGivesZeroedAlignedMemory) {
  auto comm = make_single_communicator();
  CommBuffer a = comm->allocate(1001);
  const CommBuffer b = comm->allocate(1001);
  ASSERT_EQ(a.size(), 1001u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 64, 0u);
  for (const float x : a) EXPECT_EQ(x, 0.0f);
  a[1000] = 3.0f;
  EXPECT_EQ(b[1000], 0.0f);
  const CommBuffer moved = std::move(a);
  EXPECT_EQ(moved[1000], 3.0f);
  EXPECT_EQ(moved.end() - moved.begin(), 1001);
  EXPECT_EQ(comm->allocate(0).size(), 0u);
}

TEST(SingleCommunicator, BadArgumentsAreNamed) {
  auto comm = make_single_communicator();
  float x = 1.0f;
  try {
    comm->broadcast(&x, 1, 1);
    FAIL() << "root 1 accepted";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("root 1 is out of range"), std::string::npos) << e.what();
  }
  EXPECT_THROW(comm->allreduce(static_cast<float*>(nullptr), 3), CommError);
  EXPECT_THROW(comm->allreduce(&x, 1, static_cast<DType>(9), ReduceOp::kSum), CommError);
  EXPECT_THROW(comm->allreduce(&x, 1, DType::kFloat32, static_cast<ReduceOp>(9)), CommError);
}

}  // namespace
}  // namespace lockstep
