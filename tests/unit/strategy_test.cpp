// Mirrored strategy inside one process: 1, 2, 3 and 4 local replicas give the
// weights of one replica up to fp32 summation order, every replica holds
// bitwise identical weights, and the same replica count twice is bitwise equal.
#include <gtest/gtest.h>

#include <cstring>

#include "tests/common/train_harness.h"

namespace lockstep {
namespace {

using testing::RunResult;
using testing::RunSpec;

RunResult run(int replicas, OptimizerKind opt, int64_t size, int epochs, float dropout = 0.0f) {
  testing::SingleWorld w;
  return testing::train_synthetic(w.world, RunSpec{replicas, opt, size, epochs, dropout});
}

TEST(MirroredStrategy, ReplicaCountsAgreeWithOneReplica) {
  for (OptimizerKind opt : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
    const RunResult one = run(1, opt, 250, 2);  // the last batch (10 rows) splits unevenly
    EXPECT_LT(one.loss_last, one.loss_first);
    for (int r : {2, 3, 4}) {
      const double worst = testing::worst_relative_difference(run(r, opt, 250, 2).params, one.params);
      EXPECT_LT(worst, testing::kReplicaTolerance) << r << " replicas, " << optimizer_name(opt);
      std::printf("%d replicas, %s: worst relative weight difference %.3g\n", r, optimizer_name(opt), worst);
    }
  }
}

TEST(MirroredStrategy, SameReplicaCountIsBitwiseReproducible) {
  for (int r : {1, 3}) {
    const RunResult a = run(r, OptimizerKind::kAdam, 250, 2, 0.2f);
    const RunResult b = run(r, OptimizerKind::kAdam, 250, 2, 0.2f);
    EXPECT_EQ(0, std::memcmp(a.params.data(), b.params.data(), a.params.size() * 4));
  }
}

TEST(MirroredStrategy, OverlappedBucketsGiveBitwiseTheSameWeights) {
  for (int r : {1, 2, 3}) {
    testing::SingleWorld w;
    const RunResult inline_reduce = testing::train_synthetic(w.world, RunSpec{r, OptimizerKind::kAdam});
    RunSpec spec{r, OptimizerKind::kAdam};
    spec.overlap = true;
    const RunResult overlapped = testing::train_synthetic(w.world, spec);
    EXPECT_EQ(0, std::memcmp(inline_reduce.params.data(), overlapped.params.data(),
                             inline_reduce.params.size() * 4)) << r << " replicas";
  }
}

TEST(MirroredStrategy, DropoutMasksDoNotDependOnTheReplicaCount) {
  EXPECT_LT(testing::worst_relative_difference(run(2, OptimizerKind::kSgd, 240, 1, 0.3f).params,
                                               run(1, OptimizerKind::kSgd, 240, 1, 0.3f).params),
            testing::kReplicaTolerance);
}

TEST(MirroredStrategy, ReplicaFailureDoesNotHangTheOthers) {
  testing::SingleWorld w;
  Config cfg;
  cfg.data_path = "x";
  cfg.local_replicas = 3;
  Model model({{4, Activation::kRelu, 0.0f}}, 3, 2, LossKind::kSoftmaxCrossEntropy);
  MirroredStrategy strategy(model, cfg, w.world, 8);
  EXPECT_THROW(strategy.run([&](Replica& r) {
                 if (r.local_index == 1) throw std::runtime_error("replica 1 broke");
                 r.comm->barrier();  // the others would wait for replica 1 forever
               }),
               std::runtime_error);
}

}  // namespace
}  // namespace lockstep
