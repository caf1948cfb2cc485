// The MPI backend under mpirun: every dtype and op with exact expectations, odd and
// zero sizes, broadcast from every root, allgather, repeated calls, float sums
// bitwise equal to the rank-order sum, a deadline, and the checked-error message.
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "comm/mpi_check.h"
#include "comm/mpi_communicator.h"
#include "tests/common/exact_values.h"
#include "tests/mpi/mpi_test_env.h"

namespace lockstep {
namespace {

std::unique_ptr<Communicator> world(CommOptions options = {}) {
  return make_mpi_communicator(test_bootstrap().world_comm(), options);
}

template <typename T>
class MpiAllreduce : public ::testing::Test {};
using AllTypes = ::testing::Types<float, double, int32_t, int64_t, uint8_t>;
TYPED_TEST_SUITE(MpiAllreduce, AllTypes);

TYPED_TEST(MpiAllreduce, EveryOpIsExact) {
  using T = TypeParam;
  auto comm = world();
  for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{4097}, size_t{100003}}) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin}) {
      EXPECT_EQ(testing::wrong_after_allreduce<T>(*comm, count, op), 0u)
          << "count " << count << ", " << reduce_op_name(op);
    }
  }
}

TEST(MpiCommunicator, RankAndSizeMatchTheWorld) {
  auto comm = world();
  int rank = -1;
  int size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(comm->rank(), rank);
  EXPECT_EQ(comm->size(), size);
  EXPECT_EQ(comm->name(), "mpi");
}

TEST(MpiCommunicator, BroadcastFromEveryRoot) {
  auto comm = world();
  for (int root = 0; root < comm->size(); ++root) {
    std::vector<int32_t> buf(3001);
    for (size_t i = 0; i < buf.size(); ++i) buf[i] = comm->rank() * 100000 + static_cast<int32_t>(i);
    comm->broadcast(buf.data(), buf.size(), root);
    size_t wrong = 0;
    for (size_t i = 0; i < buf.size(); ++i) wrong += buf[i] != root * 100000 + static_cast<int32_t>(i);
    EXPECT_EQ(wrong, 0u) << "root " << root;
  }
  float x = 1.0f;
  EXPECT_THROW(comm->broadcast(&x, 1, comm->size()), CommError);
}

TEST(MpiCommunicator, AllgatherAndZeroLength) {
  auto comm = world();
  const int n = comm->size();
  std::vector<double> send(3);
  for (size_t i = 0; i < 3; ++i) send[i] = comm->rank() * 10.0 + static_cast<double>(i);
  std::vector<double> recv(3 * n, -1.0);
  comm->allgather(send.data(), recv.data(), 3);
  for (int r = 0; r < n; ++r) {
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(recv[r * 3 + i], r * 10.0 + static_cast<double>(i));
  }
  comm->allreduce(static_cast<float*>(nullptr), 0);
  comm->broadcast(static_cast<float*>(nullptr), 0, n - 1);
  comm->allgather(static_cast<const float*>(nullptr), static_cast<float*>(nullptr), 0);
  comm->barrier();
}

TEST(MpiCommunicator, ManyRepeatedCalls) {
  auto comm = world();
  const int n = comm->size();
  int bad = 0;
  for (int step = 0; step < 500; ++step) {
    float v[2] = {static_cast<float>(comm->rank() + step), 1.0f};
    comm->allreduce(v, 2);
    bad += v[0] != static_cast<float>(n * (n - 1) / 2 + n * step) || v[1] != static_cast<float>(n);
  }
  EXPECT_EQ(bad, 0);
}

// Rounding inputs: the result must be bitwise ((x0 + x1) + x2) + ..., on every rank.
TEST(MpiCommunicator, FloatSumIsRankOrderBitwise) {
  auto comm = world();
  constexpr size_t kCount = 70001;
  const std::vector<float> want = testing::member_order_sum(100, comm->size(), kCount);
  for (int run = 0; run < 2; ++run) {
    std::vector<float> buf = testing::rounding_values(100, comm->rank(), kCount);
    comm->allreduce(buf.data(), kCount);
    EXPECT_EQ(std::memcmp(buf.data(), want.data(), kCount * sizeof(float)), 0) << "run " << run;
  }
}

// Rank 0 gives up on a barrier the others enter late. MPI cannot cancel the posted
// barrier, so rank 0 then drives progress in a world barrier until the late ranks'
// barrier (which matches its abandoned one) has completed.
TEST(MpiCommunicator, DeadlineEndsAWaitForAMissingRank) {
  const int world_rank = test_bootstrap().info().rank;
  const auto timeout = std::chrono::milliseconds(world_rank == 0 ? 300 : 30000);
  auto comm = world(CommOptions{timeout});
  if (world_rank == 0) {
    const auto start = std::chrono::steady_clock::now();
    try {
      comm->barrier();
      ADD_FAILURE() << "barrier completed although the other ranks were late";
    } catch (const CommError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("mpi barrier (rank 0"), std::string::npos) << msg;
      EXPECT_NE(msg.find("not complete after 0.3"), std::string::npos) << msg;
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1100));
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    comm->barrier();
  }
  MPI_Barrier(test_bootstrap().world_comm());
}

TEST(MpiCheck, FailedCallThrowsTheFormattedMessage) {
  MPI_Comm comm = test_bootstrap().world_comm();
  int size = 0;
  int rank = 0;
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char reference[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(MPI_ERR_ROOT, reference, &len);
  int x = 0;
  try {
    LOCKSTEP_MPI_CHECK(MPI_Bcast(&x, 1, MPI_INT, size + 3, comm));
    FAIL() << "MPI_Bcast with an invalid root succeeded";
  } catch (const CommError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("rank " + std::to_string(rank)), std::string::npos) << msg;
    EXPECT_NE(msg.find("host " + test_bootstrap().info().host), std::string::npos) << msg;
    EXPECT_NE(msg.find("MPI_Bcast(&x, 1, MPI_INT, size + 3, comm)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("comm_mpi_test.cpp:"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::string(reference, len)), std::string::npos) << msg;
    EXPECT_NE(msg.find("hint: the root rank is outside"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace lockstep
