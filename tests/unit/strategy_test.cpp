// Mirrored strategy inside one process: 1, 2, 3 and 4 local replicas give the
// weights of one replica up to fp32 summation order, every replica holds
// bitwise identical weights, and the same replica count twice is bitwise equal.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "data/sources.h"
#include "src/strategy.h"

namespace lockstep {
namespace {

struct RunResult {
  std::vector<float> params;
  double loss_first = 0, loss_last = 0;
};

RunResult train(int replicas, OptimizerKind opt, int64_t dataset_size, int epochs, float dropout = 0.0f) {
  WorldInfo info;
  auto single = make_single_communicator();
  World world{info, MPI_COMM_NULL, single.get()};
  SyntheticOptions so;
  so.size = dataset_size;
  so.feature_shape = {12};
  so.num_classes = 4;
  so.seed = 3;
  auto src = make_synthetic(so);
  Config cfg;
  cfg.data_path = "synthetic";
  cfg.optimizer = opt;
  cfg.momentum = 0.9f;
  cfg.learning_rate = 0.01f;
  cfg.batch_size = 24;
  cfg.local_replicas = replicas;
  cfg.bucket_mb = 0.0005;  // ~131 floats: several buckets per step
  cfg.check_every = 5;
  Model model({{16, Activation::kTanh, dropout}, {8, Activation::kRelu, 0.0f}}, 12, 4,
              LossKind::kSoftmaxCrossEntropy);
  MirroredStrategy strategy(model, cfg, world, 24);
  InputOptions in;
  in.global_batch = 24;
  in.num_replicas = replicas;
  in.local_replicas = replicas;
  in.seed = 11;
  DistributedInput input(src, in);
  RunResult run;
  std::vector<std::vector<float>> finals(static_cast<size_t>(replicas));
  strategy.run([&](Replica& r) {
    strategy.broadcast_initial_weights(r);
    int64_t step = 0;
    for (int e = 0; e < epochs; ++e) {
      while (const ReplicaBatch* b = strategy.fetch(r, input)) {
        const SliceStats s = strategy.train_step(r, *b, cfg.learning_rate, uint64_t(step));
        double v[2] = {s.loss_sum, double(s.rows)};
        r.comm->allreduce(v, 2);
        if (r.local_index == 0) (step == 0 ? run.loss_first : run.loss_last) = v[0] / v[1];
        ++step;
        if (step % cfg.check_every == 0) strategy.check_in_sync(r);
      }
    }
    finals[size_t(r.local_index)] = r.params;
  });
  for (int i = 1; i < replicas; ++i) {
    EXPECT_EQ(0, std::memcmp(finals[0].data(), finals[size_t(i)].data(), finals[0].size() * 4))
        << "replica " << i << " differs from replica 0";
  }
  run.params = finals[0];
  return run;
}

// Tolerance: the replicas' gradients are the same per-example terms summed in a
// different order (per slice, then across replicas), so each step differs by a
// few fp32 ulps (~1e-7 relative) and 20 steps of SGD/Adam keep the weights within
// 2e-5 * (1 + |w|) of the single-replica run.
void expect_close(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(double(a[i]) - b[i]) / (1.0 + std::abs(double(b[i]))));
  }
  EXPECT_LT(worst, 2e-5);
}

TEST(MirroredStrategy, ReplicaCountsAgreeWithOneReplica) {
  for (OptimizerKind opt : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
    // 250 examples: 10 full global batches and a short one of 10 rows (uneven split).
    const RunResult one = train(1, opt, 250, 2);
    EXPECT_LT(one.loss_last, one.loss_first);
    for (int r : {2, 3, 4}) {
      SCOPED_TRACE("replicas " + std::to_string(r));
      expect_close(train(r, opt, 250, 2).params, one.params);
    }
  }
}

TEST(MirroredStrategy, SameReplicaCountIsBitwiseReproducible) {
  for (int r : {1, 3}) {
    const RunResult a = train(r, OptimizerKind::kAdam, 250, 2, 0.2f);
    const RunResult b = train(r, OptimizerKind::kAdam, 250, 2, 0.2f);
    EXPECT_EQ(0, std::memcmp(a.params.data(), b.params.data(), a.params.size() * 4));
  }
}

TEST(MirroredStrategy, DropoutMasksDoNotDependOnTheReplicaCount) {
  expect_close(train(2, OptimizerKind::kSgd, 240, 1, 0.3f).params,
               train(1, OptimizerKind::kSgd, 240, 1, 0.3f).params);
}

TEST(MirroredStrategy, ReplicaFailureDoesNotHangTheOthers) {
  WorldInfo info;
  auto single = make_single_communicator();
  World world{info, MPI_COMM_NULL, single.get()};
  Config cfg;
  cfg.data_path = "x";
  cfg.local_replicas = 3;
  Model model({{4, Activation::kRelu, 0.0f}}, 3, 2, LossKind::kSoftmaxCrossEntropy);
  MirroredStrategy strategy(model, cfg, world, 8);
  EXPECT_THROW(strategy.run([&](Replica& r) {
                 if (r.local_index == 1) throw std::runtime_error("replica 1 broke");
                 r.comm->barrier();  // the others would wait for replica 1 forever
               }),
               std::runtime_error);
}

}  // namespace
}  // namespace lockstep
