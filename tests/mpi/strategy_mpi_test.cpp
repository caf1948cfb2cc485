// The mirrored strategy across MPI ranks (np 2, 3 and 4), alone and mixed with
// local replicas (hierarchical): the same weights as one replica up to fp32
// summation order, bitwise identical on every rank and every run; sharding covers
// every example exactly once (exact evaluation end to end: cli/mpi_train_test.sh).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "comm/bootstrap.h"
#include "data/sources.h"
#include "tests/common/train_harness.h"
#include "tests/mpi/mpi_test_env.h"

namespace lockstep {
namespace {

// shared: the processes (all on this node in these tests) all-reduce through
// shared memory and keep one weight arena; false: MPI messages, an arena each,
// as processes on different nodes.
struct MpiWorld {
  explicit MpiWorld(bool shared = true) : comm(make_comm(shared)) {}
  static std::unique_ptr<Communicator> make_comm(bool shared) {
    CommOptions o;
    o.shared_memory = shared;
    return test_bootstrap().make_world_communicator(o);
  }
  std::unique_ptr<Communicator> comm;
  World world{test_bootstrap().info(), test_bootstrap().world_comm(), comm.get()};
};

TEST(StrategyMpi, RanksAndMixedReplicasAgreeWithOneReplica) {
  testing::SingleWorld single;
  MpiWorld mpi;
  for (OptimizerKind opt : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
    const auto one = testing::train_synthetic(single.world, {1, opt});
    for (int local : {1, 2}) {
      testing::RunSpec spec{local, opt};
      const auto many = testing::train_synthetic(mpi.world, spec);
      const double worst = testing::worst_relative_difference(many.params, one.params);
      EXPECT_LT(worst, testing::kReplicaTolerance)
          << mpi.world.size() << " ranks x " << local << " local, " << optimizer_name(opt);
      // Every rank must hold bitwise the same weights (check_in_sync also ran).
      std::vector<float> root = many.params;
      mpi.comm->broadcast(root.data(), root.size(), 0);
      EXPECT_EQ(0, std::memcmp(root.data(), many.params.data(), root.size() * 4));
    }
  }
}

// N replica threads of one process share one arena and one optimizer and each
// updates its shard. N ranks of one replica each do the same over shared memory
// (one arena for the node), or over MPI each update the whole arena of its own.
// Same reduction order, elementwise update: the same bits, weights and slots;
// also (Adam) with an input whose zeros the first layer skips.
TEST(StrategyMpi, RanksAndReplicaThreadsGiveBitwiseTheSameWeights) {
  for (const bool shared : {true, false}) {
    MpiWorld mpi(shared);
    for (const int kind : {0, 1, 2}) {
      const OptimizerKind opt = kind == 0 ? OptimizerKind::kSgd : OptimizerKind::kAdam;
      testing::RunSpec spec{1, opt, 250, 2, 0.25f};
      spec.sparse_input = kind == 2;
      const auto ranks = testing::train_synthetic(mpi.world, spec);
      if (mpi.world.rank() != 0) continue;
      testing::SingleWorld single;
      spec.local_replicas = mpi.world.size();
      const auto threads = testing::train_synthetic(single.world, spec);
      const std::string what = std::to_string(mpi.world.size()) + " ranks (" + (shared ? "shm" : "mpi") +
                               ") against as many threads, " + optimizer_name(opt) +
                               (spec.sparse_input ? ", zeros skipped" : "");
      EXPECT_EQ(0, std::memcmp(ranks.params.data(), threads.params.data(), ranks.params.size() * 4))
          << what << ": worst relative difference " << testing::worst_relative_difference(ranks.params, threads.params);
      EXPECT_EQ(ranks.slots, threads.slots) << what;
    }
  }
}

// Over shared memory the node's replicas keep one arena: a weight rank 0
// writes is the weight every rank reads after a barrier; each rank still has
// its own optimizer object over the same slots. Over MPI each has its own.
TEST(StrategyMpi, OneNodeKeepsOneArenaInSharedMemory) {
  for (const bool shared : {true, false}) {
    MpiWorld mpi(shared);
    Config cfg;
    cfg.data_path = "x";
    cfg.local_replicas = 2;
    cfg.optimizer = OptimizerKind::kAdam;
    Model model({{4, Activation::kRelu, 0.0f}}, 3, 2, LossKind::kSoftmaxCrossEntropy);
    MirroredStrategy strategy(model, cfg, mpi.world, 8);
    std::vector<float> seen(2);
    strategy.run([&](Replica& r) {
      strategy.broadcast_initial_weights(r);
      if (mpi.world.rank() == 0 && r.local_index == 0) {
        r.step->params->data()[5] = 42.0f;
        r.step->optimizer->slots().at(1).second->data()[3] = 7.0f;
      }
      r.local_comm->barrier();
      if (r.local_index == 0) mpi.comm->barrier();
      r.local_comm->barrier();
      seen[size_t(r.local_index)] = r.step->params->data()[5] + r.step->optimizer->slots().at(1).second->data()[3];
    });
    const bool sees = mpi.world.rank() == 0 || shared;
    for (const float v : seen) EXPECT_EQ(v == 49.0f, sees) << (shared ? "shm" : "mpi") << ", rank " << mpi.world.rank();
  }
}

// The periodic checksum: one flipped bit in one process's arena (which its
// local replicas share) is caught on every rank, and every replica of that
// process is named when the others agree; 2 processes that differ have no
// majority and the message says so. Processes with an arena each: over MPI, as
// on different nodes (on one node over shm they share one, which cannot differ).
std::string sync_error(MpiWorld& mpi, int local, int flipped_rank) {
  Config cfg;
  cfg.data_path = "x";
  cfg.local_replicas = local;
  Model model({{4, Activation::kRelu, 0.0f}}, 3, 2, LossKind::kSoftmaxCrossEntropy);
  MirroredStrategy strategy(model, cfg, mpi.world, 8);
  std::string error;
  try {
    strategy.run([&](Replica& r) {
      strategy.broadcast_initial_weights(r);
      if (mpi.world.rank() == flipped_rank && r.local_index == 0) {
        uint32_t bits;
        std::memcpy(&bits, r.step->params->data() + 5, 4);
        bits ^= 1u;  // the last mantissa bit of one weight
        std::memcpy(r.step->params->data() + 5, &bits, 4);
      }
      r.local_comm->barrier();
      strategy.check_in_sync(r);
    });
  } catch (const std::exception& e) {
    error = e.what();
  }
  return error;
}

TEST(StrategyMpi, DivergedProcessIsNamedByTheChecksum) {
  MpiWorld mpi(false);
  const int n = mpi.world.size();
  for (const int local : {1, 2}) {
    EXPECT_EQ(sync_error(mpi, local, -1), "") << "identical replicas pass";
    for (int flipped = 0; flipped < n; ++flipped) {
      const std::string e = sync_error(mpi, local, flipped);
      SCOPED_TRACE(std::to_string(n) + " ranks x " + std::to_string(local) + ", rank " +
                   std::to_string(flipped) + " flipped: " + e);
      std::string named;
      for (int i = 0; i < local; ++i) {
        if (i > 0) named += ", ";
        named += std::to_string(flipped * local + i) + " (process " + std::to_string(flipped) + ")";
      }
      if (n > 2) {
        EXPECT_NE(e.find("replica(s) " + named + " hold weights that differ from the other " +
                         std::to_string((n - 1) * local) + " of " + std::to_string(n * local) +
                         " replicas"), std::string::npos);
      } else {
        EXPECT_NE(e.find("with no majority (replicas 0 (process 0)"), std::string::npos);
      }
    }
  }
}

TEST(StrategyMpi, SameLayoutTwiceIsBitwiseEqual) {
  MpiWorld mpi;
  const auto a = testing::train_synthetic(mpi.world, {2, OptimizerKind::kAdam, 250, 2, 0.25f});
  const auto b = testing::train_synthetic(mpi.world, {2, OptimizerKind::kAdam, 250, 2, 0.25f});
  EXPECT_EQ(0, std::memcmp(a.params.data(), b.params.data(), a.params.size() * 4));
}

TEST(StrategyMpi, OverlappedBucketsGiveBitwiseTheSameWeights) {
  MpiWorld mpi;
  for (int local : {1, 2}) {
    testing::RunSpec spec{local, OptimizerKind::kAdam};
    const auto a = testing::train_synthetic(mpi.world, spec);
    spec.overlap = true;
    const auto b = testing::train_synthetic(mpi.world, spec);
    EXPECT_EQ(0, std::memcmp(a.params.data(), b.params.data(), a.params.size() * 4)) << local;
  }
}

// Feature 0 of example i is i, so the gathered rows say which examples came.
std::shared_ptr<Source> numbered(int64_t n) {
  TensorSet t;
  t.feature_shape = {2};
  t.num_classes = 2;
  for (int64_t i = 0; i < n; ++i) {
    t.x.push_back(float(i));
    t.x.push_back(0.0f);
    t.labels.push_back(int32_t(i % 2));
  }
  return make_tensor_source(std::move(t));
}

// Every example of an epoch, gathered from every replica of every rank.
std::vector<int64_t> epoch_rows(MpiWorld& mpi, int64_t n, int64_t batch, bool shuffle, int local) {
  InputOptions in;
  in.global_batch = batch;
  in.num_replicas = local * mpi.world.size();
  in.first_replica = mpi.world.rank() * local;
  in.local_replicas = local;
  in.shuffle = shuffle;
  in.seed = 5;
  DistributedInput input(numbered(n), in);
  std::vector<int64_t> mine;
  std::vector<ReplicaBatch> out;
  while (input.next(out)) {
    for (const auto& b : out) {
      for (int64_t r = 0; r < b.rows; ++r) mine.push_back(int64_t(b.x[r * 2]));
    }
  }
  int64_t count = int64_t(mine.size());
  std::vector<int64_t> counts(size_t(mpi.world.size()));
  mpi.comm->allgather(&count, counts.data(), 1);
  const int64_t most = *std::max_element(counts.begin(), counts.end());
  mine.resize(size_t(most), -1);  // pad to a common length for allgather
  std::vector<int64_t> all(size_t(most) * counts.size());
  mpi.comm->allgather(mine.data(), all.data(), size_t(most));
  all.erase(std::remove(all.begin(), all.end(), int64_t(-1)), all.end());
  std::sort(all.begin(), all.end());
  return all;
}

TEST(StrategyMpi, ShardingCoversEveryExampleExactlyOnce) {
  MpiWorld mpi;
  for (int local : {1, 2}) {
    for (bool shuffle : {true, false}) {
      // 1001 examples do not divide by the global batch or by the replica count.
      const int64_t batch = 8 * local * mpi.world.size();
      const auto rows = epoch_rows(mpi, 1001, batch, shuffle, local);
      std::vector<int64_t> expect(1001);
      std::iota(expect.begin(), expect.end(), 0);
      EXPECT_EQ(rows, expect) << "local " << local << " shuffle " << shuffle;
    }
  }
}

}  // namespace
}  // namespace lockstep
