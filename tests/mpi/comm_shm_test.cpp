// The shared-memory backend under mpirun (every rank on this machine): every dtype
// and op with exact expectations, odd and zero sizes, buffers larger than a slab
// (several pieces), float sums bitwise equal to the MPI backend's rank-order sum,
// all-reduces interleaved with the collectives it hands to MPI, buffers from
// allocate() (shared by the processes, reduced in place, alone or mixed with
// ordinary ones), a deadline that names the ranks that did not arrive, and a
// mismatched call named on every rank.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "comm/mpi_communicator.h"
#include "comm/replica_group.h"
#include "comm/shm_communicator.h"
#include "tests/common/exact_values.h"
#include "tests/mpi/mpi_test_env.h"

namespace lockstep {
namespace {

std::unique_ptr<Communicator> shm(CommOptions options = {}) {
  return make_shm_communicator(test_bootstrap().world_comm(), options);
}

template <typename T>
class ShmAllreduce : public ::testing::Test {};
using AllTypes = ::testing::Types<float, double, int32_t, int64_t, uint8_t>;
TYPED_TEST_SUITE(ShmAllreduce, AllTypes);

// Both ways of writing into the segment (auto times them as it runs).
const CommOptions::ShmStores kStores[] = {CommOptions::ShmStores::kPlain,
                                          CommOptions::ShmStores::kStreaming};
std::unique_ptr<Communicator> shm_with(CommOptions::ShmStores stores) {
  CommOptions options;
  options.shm_stores = stores;
  return shm(options);
}

TYPED_TEST(ShmAllreduce, EveryOpIsExactAtEverySize) {
  using T = TypeParam;
  for (const auto stores : kStores) {
    auto comm = shm_with(stores);
    EXPECT_EQ(comm->name(), "shm");
    EXPECT_EQ(comm->describe(), stores == CommOptions::ShmStores::kStreaming ? "shm (streaming stores)"
                                                                            : "shm (plain stores)");
    // 2 MiB slabs: the largest sizes take several pieces (and an odd last one).
    const size_t slab = (size_t{2} << 20) / sizeof(T);
    for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{4097}, size_t{100003}, slab, 2 * slab + 13}) {
      for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin}) {
        EXPECT_EQ(testing::wrong_after_allreduce<T>(*comm, count, op), 0u)
            << "count " << count << ", " << reduce_op_name(op) << ", " << comm->describe();
      }
    }
  }
}

// Rounding inputs: bitwise ((x0 + x1) + x2) + ..., which is also what the MPI
// backend returns, so switching backends never changes a training run.
TEST(ShmCommunicator, FloatSumIsBitwiseTheMpiBackends) {
  for (const auto stores : kStores) {
    auto comm = shm_with(stores);
    SCOPED_TRACE(comm->describe());
    auto mpi = make_mpi_communicator(test_bootstrap().world_comm());
    constexpr size_t kCount = 600001;  // two pieces
    const std::vector<float> want = testing::member_order_sum(300, comm->size(), kCount);
    std::vector<float> a = testing::rounding_values(300, comm->rank(), kCount), b = a;
    comm->allreduce(a.data(), kCount);
    mpi->allreduce(b.data(), kCount);
    EXPECT_EQ(std::memcmp(a.data(), want.data(), kCount * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), kCount * sizeof(float)), 0);
  }
}

TEST(ShmCommunicator, InterleavedWithTheCollectivesMpiCarries) {
  auto comm = shm();
  const int n = comm->size();
  int bad = 0;
  for (int step = 0; step < 300; ++step) {
    const size_t count = 1 + size_t(step % 5) * 1000;  // sizes change from call to call
    std::vector<int32_t> v(count, comm->rank() + step);
    comm->allreduce(v.data(), count);
    for (int32_t x : v) bad += x != n * (n - 1) / 2 + n * step;
    if (step % 7 == 0) {
      int32_t b = comm->rank() == step % n ? step : -1;
      comm->broadcast(&b, 1, step % n);
      bad += b != step;
    }
    if (step % 11 == 0) {
      const int32_t mine = comm->rank() * 3;
      std::vector<int32_t> all(size_t(n), -1);
      comm->allgather(&mine, all.data(), 1);
      for (int r = 0; r < n; ++r) bad += all[size_t(r)] != r * 3;
    }
    if (step % 13 == 0) comm->barrier();
  }
  EXPECT_EQ(bad, 0);
}

// Rank 0 waits 0.3 s for ranks that come 1.2 s late: it names all of them. The
// late ones then find rank 0 arrived but never reducing: they name rank 0. The
// same with the buffers in ordinary memory and in the shared buffer.
void expect_deadline_names_late_ranks(bool shared) {
  SCOPED_TRACE(shared ? "shared buffer" : "ordinary buffer");
  const int rank = test_bootstrap().info().rank;
  const int size = test_bootstrap().info().size;
  auto comm = shm(CommOptions{std::chrono::milliseconds(rank == 0 ? 300 : 1000)});
  std::vector<float> own(1000, 1.0f);
  CommBuffer mem = comm->allocate(1000);
  float* buf = shared ? mem.data() : own.data();
  const auto start = std::chrono::steady_clock::now();
  if (rank != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  try {
    comm->allreduce(buf, 1000);
    ADD_FAILURE() << "the all-reduce completed although rank 0 gave up";
  } catch (const CommError& e) {
    const std::string msg = e.what();
    std::string absent;
    for (int r = 1; r < size; ++r) absent += (absent.empty() ? "" : ", ") + std::to_string(r);
    EXPECT_NE(msg.find("mpi allreduce (rank " + std::to_string(rank)), std::string::npos) << msg;
    EXPECT_NE(msg.find("collective #2 allreduce(count=1000, float32, sum)"), std::string::npos) << msg;
    if (rank == 0) {
      EXPECT_NE(msg.find("arrival): not complete after 0.3"), std::string::npos) << msg;
      EXPECT_NE(msg.find("rank(s) " + absent + " did not arrive"), std::string::npos) << msg;
      EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1100));
    } else {
      EXPECT_NE(msg.find("slices reduced): not complete after 1.0"), std::string::npos) << msg;
      EXPECT_NE(msg.find("rank(s) 0 did not arrive"), std::string::npos) << msg;
    }
  }
  MPI_Barrier(test_bootstrap().world_comm());
}

TEST(ShmCommunicator, DeadlineNamesTheRanksThatDidNotArrive) {
  expect_deadline_names_late_ranks(false);
  expect_deadline_names_late_ranks(true);
}

// Buffers from allocate(): zeroed, each rank's its own, and all-reduced in place
// across the processes to bitwise the member-order sum, whole and in pieces at
// offsets on no particular boundary (a step's buckets, last layer first).
TEST(ShmCommunicator, SharedBuffersSumBitwiseInPlace) {
  auto comm = shm();
  constexpr size_t kCount = 600001;
  CommBuffer buf = comm->allocate(kCount);
  ASSERT_EQ(buf.size(), kCount);
  EXPECT_TRUE(std::all_of(buf.begin(), buf.end(), [](float x) { return x == 0.0f; }));
  const std::vector<float> mine = testing::rounding_values(301, comm->rank(), kCount);
  const std::vector<float> want = testing::member_order_sum(301, comm->size(), kCount);
  std::copy(mine.begin(), mine.end(), buf.begin());
  comm->allreduce(buf.data(), kCount);
  EXPECT_EQ(std::memcmp(buf.data(), want.data(), kCount * sizeof(float)), 0);
  std::copy(mine.begin(), mine.end(), buf.begin());
  const size_t cuts[] = {0, 1, 17, 4099, 100003, 333333, kCount};
  for (size_t k = std::size(cuts) - 1; k > 0; --k) {
    comm->allreduce(buf.data() + cuts[k - 1], cuts[k] - cuts[k - 1]);
  }
  EXPECT_EQ(std::memcmp(buf.data(), want.data(), kCount * sizeof(float)), 0);
}

// Ranks whose buffer is shared and ranks whose buffer is not reduce together
// (through the segment's slabs) in every mix, in one piece and in several.
TEST(ShmCommunicator, SharedAndOrdinaryBuffersMix) {
  auto comm = shm();
  const int rank = comm->rank();
  const size_t slab = (size_t{2} << 20) / sizeof(float);
  for (const size_t count : {size_t{4097}, slab + 13}) {
    CommBuffer shared = comm->allocate(count);
    std::vector<float> own(count);
    for (int mix = 0; mix < 4; ++mix) {  // none shared, rank 0's alone, all but rank 0's, all
      const bool mine_shared = mix == 3 || (mix == 1 && rank == 0) || (mix == 2 && rank != 0);
      float* buf = mine_shared ? shared.data() : own.data();
      const std::vector<float> mine = testing::rounding_values(302 + uint32_t(mix), rank, count);
      std::copy(mine.begin(), mine.end(), buf);
      comm->allreduce(buf, count);
      const std::vector<float> want = testing::member_order_sum(302 + uint32_t(mix), comm->size(), count);
      EXPECT_EQ(std::memcmp(buf, want.data(), count * sizeof(float)), 0) << "count " << count << ", mix " << mix;
    }
  }
}

// Every rank must allocate alike: a rank that asks for another size is refused
// on every rank (no rank maps past the end of the memory), and the
// communicator goes on working.
TEST(ShmCommunicator, AllocateOfDifferentSizesIsRefusedOnEveryRank) {
  auto comm = shm();
  const int n = comm->size();
  try {
    comm->allocate(comm->rank() == 0 ? 1000 : 3000);  // parts of one page and of three
    ADD_FAILURE() << "buffers of different sizes were made";
  } catch (const CommError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("the ranks asked for different sizes of a shared buffer (rank 0: " +
                       std::to_string(4096 * n) + " bytes"), std::string::npos) << msg;
  }
  CommBuffer buf = comm->allocate(10);
  std::fill(buf.begin(), buf.end(), 1.0f);
  comm->allreduce(buf.data(), buf.size());
  EXPECT_EQ(buf[9], float(n));
}

TEST(ShmCommunicator, SharedBufferMayOutliveItsCommunicator) {
  CommBuffer buf;
  {
    auto comm = shm();
    buf = comm->allocate(1000);
    const CommBuffer none = comm->allocate(0);
    EXPECT_EQ(none.size(), 0u);
  }
  std::fill(buf.begin(), buf.end(), 2.0f);
  EXPECT_EQ(buf[999], 2.0f);
}

TEST(ShmCommunicator, MismatchedCallsAreNamedOnEveryRank) {
  auto comm = shm(CommOptions{std::chrono::milliseconds(5000)});
  const size_t count = comm->rank() == 1 ? 5 : 6;
  std::vector<double> buf(count, 1.0);
  try {
    comm->allreduce(buf.data(), count);
    ADD_FAILURE() << "different counts were reduced";
  } catch (const CommError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("ranks issue different collectives"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rank 1 called collective #1 allreduce(count=5, float64, sum)"), std::string::npos) << msg;
  }
  MPI_Barrier(test_bootstrap().world_comm());
}

// The barrier meets in the segment: it orders a write before it with a read
// after it on another rank (through a common buffer); a barrier against an
// all-reduce is named on every rank; a rank that never comes is named.
TEST(ShmCommunicator, BarrierOrdersAndNamesWhoIsMissing) {
  const int rank = test_bootstrap().info().rank;
  const int size = test_bootstrap().info().size;
  auto comm = shm();
  CommBuffer common = comm->allocate_common(size_t(size));
  for (int round = 1; round <= 200; ++round) {
    common[size_t(rank)] = float(round);
    comm->barrier();
    int bad = 0;
    for (int j = 0; j < size; ++j) bad += common[size_t(j)] != float(round);
    ASSERT_EQ(bad, 0) << "round " << round;
    comm->barrier();  // no rank writes the next round before all have read this one
  }
  // Rank 0 waits 0.3 s in a barrier for ranks that come 1 s late.
  auto late = shm(CommOptions{std::chrono::milliseconds(rank == 0 ? 300 : 3000)});
  if (rank != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  if (rank == 0) {
    try {
      late->barrier();
      ADD_FAILURE() << "the barrier completed without the late ranks";
    } catch (const CommError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("mpi barrier (rank 0"), std::string::npos) << msg;
      EXPECT_NE(msg.find("barrier(), shared memory, arrival): not complete after 0.3"), std::string::npos) << msg;
      EXPECT_NE(msg.find("did not arrive"), std::string::npos) << msg;
    }
  }
  MPI_Barrier(test_bootstrap().world_comm());
}

TEST(ShmCommunicator, BarrierAgainstAnAllreduceIsNamedOnEveryRank) {
  auto comm = shm(CommOptions{std::chrono::milliseconds(5000)});
  std::vector<float> buf(4, 1.0f);
  try {
    if (comm->rank() == 1) comm->barrier();
    else comm->allreduce(buf.data(), buf.size());
    ADD_FAILURE() << "a barrier met an all-reduce";
  } catch (const CommError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("ranks issue different collectives"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rank 1 called collective #1 barrier()"), std::string::npos) << msg;
  }
  MPI_Barrier(test_bootstrap().world_comm());
}

// allocate_common: one zeroed buffer that every rank sees whole, the same
// memory on each; it may outlive its communicator. The mpi backend has none.
TEST(ShmCommunicator, CommonBufferIsTheSameMemoryOnEveryRank) {
  const int rank = test_bootstrap().info().rank;
  const int size = test_bootstrap().info().size;
  CommBuffer common;
  {
    auto comm = shm();
    common = comm->allocate_common(1000);
    ASSERT_EQ(common.size(), 1000u);
    EXPECT_EQ(std::count(common.begin(), common.end(), 0.0f), 1000);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(common.data()) % 64, 0u);
    comm->barrier();  // every rank has read the zeros before any writes
    for (size_t i = size_t(rank); i < common.size(); i += size_t(size)) common[i] = float(i);
    comm->barrier();
  }
  for (size_t i = 0; i < common.size(); ++i) ASSERT_EQ(common[i], float(i)) << i;
  CommOptions mpi;
  mpi.shared_memory = false;
  EXPECT_EQ(make_process_communicator(test_bootstrap().world_comm(), mpi)->allocate_common(10).size(), 0u);
  MPI_Barrier(test_bootstrap().world_comm());
}

TEST(ShmCommunicator, ProcessCommunicatorFollowsTheOption) {
  CommOptions options;
  EXPECT_EQ(make_process_communicator(test_bootstrap().world_comm(), options)->name(), "shm");
  options.shared_memory = false;
  EXPECT_EQ(make_process_communicator(test_bootstrap().world_comm(), options)->name(), "mpi");
}

}  // namespace
}  // namespace lockstep
