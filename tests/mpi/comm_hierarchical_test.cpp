// The hierarchical backend under mpirun with 2 replica threads per process: global
// ranks process*2 + replica, every dtype and op exact, broadcast from every global
// root, allgather in global rank order, and float sums bitwise equal to the fixed
// order (replicas within a process, then processes in rank order).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "comm/hierarchical_communicator.h"
#include "comm/replica_group.h"
#include "tests/common/exact_values.h"
#include "tests/mpi/mpi_test_env.h"

namespace lockstep {
namespace {

constexpr int kReplicas = 2;

void run_replicas(HierarchicalGroup& group, const std::function<void(Communicator&)>& fn) {
  group.run([&](int i) { fn(group.member(i)); });
}


template <typename T>
class HierarchicalAllreduce : public ::testing::Test {};
using AllTypes = ::testing::Types<float, double, int32_t, int64_t, uint8_t>;
TYPED_TEST_SUITE(HierarchicalAllreduce, AllTypes);

TYPED_TEST(HierarchicalAllreduce, EveryOpIsExact) {
  using T = TypeParam;
  HierarchicalGroup group(test_bootstrap().world_comm(), kReplicas);
  for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{4097}, size_t{100003}}) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin}) {
      run_replicas(group, [&](Communicator& c) {
        EXPECT_EQ(testing::wrong_after_allreduce<T>(c, count, op), 0u) << "count " << count << ", " << reduce_op_name(op) << ", rank " << c.rank();
      });
    }
  }
}

TEST(Hierarchical, RanksAreProcessMajor) {
  HierarchicalGroup group(test_bootstrap().world_comm(), kReplicas);
  const WorldInfo& w = test_bootstrap().info();
  EXPECT_EQ(group.process_rank(), w.rank);
  EXPECT_EQ(group.process_count(), w.size);
  for (int i = 0; i < kReplicas; ++i) {
    EXPECT_EQ(group.member(i).rank(), w.rank * kReplicas + i);
    EXPECT_EQ(group.member(i).size(), w.size * kReplicas);
    EXPECT_EQ(group.member(i).name(), "hierarchical");
  }
  EXPECT_THROW(group.member(kReplicas), CommError);
}

// The factory: K > 1 replicas per process are hierarchical; one replica per
// process uses the process communicator it was given, as is.
TEST(Hierarchical, FactoryPicksTheBackendFromTheLayout) {
  auto group = make_replica_group({test_bootstrap().world_comm(), nullptr, kReplicas, CommOptions{}});
  EXPECT_EQ(group->member(0).name(), "hierarchical");
  EXPECT_EQ(group->member(kReplicas - 1).rank(), test_bootstrap().info().rank * kReplicas + kReplicas - 1);
  auto world = test_bootstrap().make_world_communicator();
  auto single = make_replica_group({test_bootstrap().world_comm(), world.get(), 1, CommOptions{}});
  EXPECT_EQ(single->local_size(), 1);
  EXPECT_EQ(&single->member(0), world.get());
  EXPECT_THROW(single->member(1), CommError);
}

TEST(Hierarchical, BroadcastFromEveryGlobalRoot) {
  HierarchicalGroup group(test_bootstrap().world_comm(), kReplicas);
  const int size = group.member(0).size();
  for (int root = 0; root < size; ++root) {
    run_replicas(group, [&](Communicator& c) {
      std::vector<int64_t> buf(2049);
      for (size_t i = 0; i < buf.size(); ++i) buf[i] = c.rank() * 100000 + static_cast<int64_t>(i);
      c.broadcast(buf.data(), buf.size(), root);
      size_t wrong = 0;
      for (size_t i = 0; i < buf.size(); ++i) wrong += buf[i] != root * 100000 + static_cast<int64_t>(i);
      EXPECT_EQ(wrong, 0u) << "root " << root << ", rank " << c.rank();
    });
  }
}

TEST(Hierarchical, AllgatherInGlobalRankOrder) {
  HierarchicalGroup group(test_bootstrap().world_comm(), kReplicas);
  run_replicas(group, [&](Communicator& c) {
    std::vector<float> send(3);
    for (size_t i = 0; i < 3; ++i) send[i] = c.rank() * 10.0f + static_cast<float>(i);
    std::vector<float> recv(3 * c.size(), -1.0f);
    c.allgather(send.data(), recv.data(), 3);
    for (int r = 0; r < c.size(); ++r) {
      for (size_t i = 0; i < 3; ++i) EXPECT_EQ(recv[r * 3 + i], r * 10.0f + static_cast<float>(i));
    }
    c.allgather(static_cast<const float*>(nullptr), static_cast<float*>(nullptr), 0);
    c.barrier();
  });
}

TEST(Hierarchical, ManyRepeatedCalls) {
  HierarchicalGroup group(test_bootstrap().world_comm(), kReplicas);
  run_replicas(group, [&](Communicator& c) {
    const int n = c.size();
    int bad = 0;
    for (int step = 0; step < 300; ++step) {
      int32_t v = c.rank() + step;
      c.allreduce(&v, 1);
      bad += v != n * (n - 1) / 2 + n * step;
    }
    EXPECT_EQ(bad, 0);
  });
}

TEST(Hierarchical, FloatSumFollowsTheFixedOrderBitwise) {
  HierarchicalGroup group(test_bootstrap().world_comm(), kReplicas);
  constexpr size_t kCount = 30001;
  auto input = [](int rank) { return testing::rounding_values(500, rank, kCount); };
  const int processes = group.process_count();
  std::vector<float> want(kCount, 0.0f);
  for (int p = 0; p < processes; ++p) {
    std::vector<float> local = input(p * kReplicas);
    for (int k = 1; k < kReplicas; ++k) {
      const std::vector<float> other = input(p * kReplicas + k);
      for (size_t i = 0; i < kCount; ++i) local[i] += other[i];
    }
    for (size_t i = 0; i < kCount; ++i) want[i] = p == 0 ? local[i] : want[i] + local[i];
  }
  run_replicas(group, [&](Communicator& c) {
    std::vector<float> buf = input(c.rank());
    c.allreduce(buf.data(), kCount);
    EXPECT_EQ(std::memcmp(buf.data(), want.data(), kCount * sizeof(float)), 0) << "rank " << c.rank();
  });
}

}  // namespace
}  // namespace lockstep
