// Deterministic mode across MPI ranks (np 2 and 4), alone and with 2 replica
// threads per rank: the weights and optimizer slots are bitwise those of one
// replica in one process, computed here in the same test, and the same on every
// rank. The micro-batches (8 of 3 rows) split over 1 to 8 replicas.
#include <gtest/gtest.h>

#include <cstring>

#include "comm/bootstrap.h"
#include "tests/common/train_harness.h"
#include "tests/mpi/mpi_test_env.h"

namespace lockstep {
namespace {

struct MpiWorld {
  std::unique_ptr<Communicator> comm = test_bootstrap().make_world_communicator();
  World world{test_bootstrap().info(), test_bootstrap().world_comm(), comm.get()};
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

testing::RunSpec deterministic(int local, OptimizerKind opt) {
  testing::RunSpec spec{local, opt, 250, 2, 0.25f};  // dropout, and a short last batch
  spec.deterministic = true;
  spec.micro_batch = 3;
  return spec;
}

TEST(DeterministicMpi, RanksAndThreadsGiveBitwiseTheWeightsOfOneReplica) {
  testing::SingleWorld single;
  MpiWorld mpi;
  for (const OptimizerKind opt : {OptimizerKind::kAdam, OptimizerKind::kSgd}) {
    const auto one = testing::train_synthetic(single.world, deterministic(1, opt));
    for (const int local : {1, 2}) {
      const auto many = testing::train_synthetic(mpi.world, deterministic(local, opt));
      const std::string layout = std::to_string(mpi.world.size()) + " ranks x " + std::to_string(local) +
                                 " threads, " + optimizer_name(opt);
      EXPECT_TRUE(same_bits(one.params, many.params)) << layout;
      ASSERT_EQ(one.slots.size(), many.slots.size());
      for (size_t s = 0; s < one.slots.size(); ++s) {
        EXPECT_TRUE(same_bits(one.slots[s], many.slots[s])) << "slot " << s << ", " << layout;
      }
      EXPECT_EQ(one.loss_last, many.loss_last) << layout;
      std::vector<float> root = many.params;  // and every rank holds them
      mpi.comm->broadcast(root.data(), root.size(), 0);
      EXPECT_TRUE(same_bits(root, many.params)) << layout;
    }
  }
}

// fp32 gradient accumulation across ranks: the weights of one pass per share up
// to fp32 summation order, and the same on every rank.
TEST(DeterministicMpi, GradientAccumulationAcrossRanksMatchesOnePassPerShare) {
  testing::SingleWorld single;
  MpiWorld mpi;
  const auto one = testing::train_synthetic(single.world, {1, OptimizerKind::kAdam});
  for (const int local : {1, 2}) {
    testing::RunSpec spec{local, OptimizerKind::kAdam};
    spec.micro_batch = 1;  // every replica's share runs row by row
    const auto accumulated = testing::train_synthetic(mpi.world, spec);
    EXPECT_LT(testing::worst_relative_difference(accumulated.params, one.params), testing::kReplicaTolerance)
        << mpi.world.size() << " ranks x " << local;
    std::vector<float> root = accumulated.params;
    mpi.comm->broadcast(root.data(), root.size(), 0);
    EXPECT_TRUE(same_bits(root, accumulated.params));
  }
}

}  // namespace
}  // namespace lockstep
