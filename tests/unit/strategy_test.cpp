// Mirrored strategy inside one process: 1, 2, 3 and 4 local replicas give the
// weights of one replica up to fp32 summation order, every replica holds
// bitwise identical weights, and the same replica count twice is bitwise equal.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "src/cpu_replica.h"
#include "tests/common/train_harness.h"

namespace lockstep {
namespace {

using testing::RunResult;
using testing::RunSpec;

RunResult run(int replicas, OptimizerKind opt, int64_t size, int epochs, float dropout = 0.0f) {
  testing::SingleWorld w;
  return testing::train_synthetic(w.world, RunSpec{replicas, opt, size, epochs, dropout});
}

// A config for `local` CPU replicas of a model the test builds itself (no data is read).
Config replicas_config(int local) {
  Config cfg;
  cfg.data_path = "x";
  cfg.local_replicas = local;
  return cfg;
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

TEST(MirroredStrategy, ReplicasReadingTheirOwnRowsGiveBitwiseTheSameWeights) {
  for (int r : {1, 2, 3}) {
    testing::SingleWorld w;
    RunSpec spec{r, OptimizerKind::kAdam, 250, 2, 0.2f};
    const RunResult one_reader = testing::train_synthetic(w.world, spec);
    spec.replica_gather = true;
    const RunResult own_rows = testing::train_synthetic(w.world, spec);
    EXPECT_EQ(0, std::memcmp(one_reader.params.data(), own_rows.params.data(),
                             one_reader.params.size() * 4)) << r << " replicas";
  }
}

TEST(MirroredStrategy, AutoReplicaCountDividesTheGlobalBatch) {
  // One replica per CPU when that divides the batch, else the most that do.
  EXPECT_EQ(auto_replica_count(4, 64, 1), 4);
  EXPECT_EQ(auto_replica_count(3, 64, 1), 2);
  EXPECT_EQ(auto_replica_count(6, 64, 1), 4);
  EXPECT_EQ(auto_replica_count(6, 60, 1), 6);
  EXPECT_EQ(auto_replica_count(6, 60, 4), 5);   // 4 processes: 20 replicas divide 60
  EXPECT_EQ(auto_replica_count(8, 7, 1), 7);
  EXPECT_EQ(auto_replica_count(8, 13, 2), 1);   // 13 does not split over 2 processes at all
  EXPECT_EQ(auto_replica_count(1, 64, 1), 1);
  Config c;
  c.local_replicas = 3;
  EXPECT_EQ(resolve_local_replicas(c, 2, 2), 3);  // a number is taken as given
}

// A source read one row at a time (as serial HDF5 is): concurrent_reads false.
class SerialSource : public Source {
 public:
  explicit SerialSource(std::shared_ptr<Source> inner) : inner_(std::move(inner)) {}
  const DatasetInfo& info() const override { return inner_->info(); }
  void read(const int64_t* rows, int64_t n, float* x, int32_t* labels, float* targets) const override {
    inner_->read(rows, n, x, labels, targets);
  }

 private:
  std::shared_ptr<Source> inner_;
};

TEST(MirroredStrategy, GatherModeFollowsTheConfig) {
  SyntheticOptions so;
  so.size = 8;
  so.feature_shape = {2};
  auto memory = make_synthetic(so);
  Config c;
  c.data_gather = GatherMode::kThread;
  EXPECT_FALSE(resolve_gather(c, *memory));
  c.data_gather = GatherMode::kReplicas;
  EXPECT_TRUE(resolve_gather(c, *memory));
  c.data_gather = GatherMode::kAuto;
  EXPECT_TRUE(resolve_gather(c, *memory)) << "a cached split: the replicas read their own rows";
  const SerialSource serial(memory);
  EXPECT_FALSE(resolve_gather(c, serial)) << "a source read one row at a time: the prefetch thread";
}

TEST(MirroredStrategy, DropoutMasksDoNotDependOnTheReplicaCount) {
  EXPECT_LT(testing::worst_relative_difference(run(2, OptimizerKind::kSgd, 240, 1, 0.3f).params,
                                               run(1, OptimizerKind::kSgd, 240, 1, 0.3f).params),
            testing::kReplicaTolerance);
}

// A finite loss with a gradient that overflows (a huge input whose weight is 0:
// the prediction and the loss stay small, the weight's gradient does not) must
// skip the update on every replica, like a non-finite loss, and say which.
TEST(MirroredStrategy, NonFiniteGradientWithFiniteLossSkipsTheUpdateEverywhere) {
  testing::SingleWorld w;
  Config cfg = replicas_config(2);
  cfg.optimizer = OptimizerKind::kAdam;
  Model model({}, 2, 1, LossKind::kMeanSquaredError);
  MirroredStrategy strategy(model, cfg, w.world, 1);
  // Replica i gets row i of a global batch of 2: x = (3e38, 1), target 10.
  const float x_bad[2][2] = {{3e38f, 1.0f}, {3e38f, 1.0f}};
  const float x_ok[2][2] = {{0.5f, 1.0f}, {-0.5f, 1.0f}};
  const float targets[2] = {10.0f, 10.0f};
  std::vector<StepResult> bad(2), ok(2);
  std::vector<AlignedVector<float>> after_bad(2), after_ok(2), m_after_bad(2);
  strategy.run([&](Replica& r) {
    if (r.local_index == 0) std::fill(r.step->params->begin(), r.step->params->end(), 0.0f);  // one arena
    r.local_comm->barrier();
    const int i = r.local_index;
    ReplicaBatch b = testing::one_row(i, 2, x_bad, targets);
    bad[size_t(i)] = strategy.train_step(r, b, 0.1f, 1);
    after_bad[size_t(i)] = testing::values(*r.step->params);
    m_after_bad[size_t(i)] = testing::values(*r.step->optimizer->slots().at(0).second);
    b.x = x_ok[i];
    ok[size_t(i)] = strategy.train_step(r, b, 0.1f, 2);
    after_ok[size_t(i)] = testing::values(*r.step->params);
  });
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE("replica " + std::to_string(i));
    EXPECT_TRUE(bad[size_t(i)].finite_loss) << "the loss (0 - 10)^2 = 100 is finite";
    EXPECT_EQ(bad[size_t(i)].global.loss_sum, 200.0);
    EXPECT_FALSE(bad[size_t(i)].finite) << "the weight gradient 2 * -10 * 3e38 overflows";
    EXPECT_EQ(after_bad[size_t(i)], AlignedVector<float>(3, 0.0f)) << "no weight moved";
    EXPECT_EQ(m_after_bad[size_t(i)], AlignedVector<float>(3, 0.0f)) << "no optimizer slot moved";
    EXPECT_TRUE(ok[size_t(i)].finite);
    EXPECT_TRUE(ok[size_t(i)].finite_loss);
    // The one applied Adam step moves every weight whose gradient is non-zero by
    // lr * sign(g) (bias-corrected m / sqrt(v) = g / |g|): the bias by +0.1.
    EXPECT_NEAR(after_ok[size_t(i)][2], 0.1f, 1e-6f);
  }
  EXPECT_EQ(after_ok[0], after_ok[1]);
}

// Each replica checks its own gradient before the sum and the answers ride in
// the extras (src/step.h): an overflow anywhere in the arena (shards of one
// arena, or an arena each), from any one replica's row, must still skip the
// update on every replica. 100 inputs -> 101 parameters, which one arena splits
// into 2 or 3 shards (boundaries at 48, or at 32 and 64); the overflowing weight
// sits in the first, a middle or the last, and only the row of replica (k mod R)
// carries it.
TEST(MirroredStrategy, AnOverflowInAnyPartOfTheSplitCheckSkipsEveryReplica) {
  constexpr int kInputs = 100;
  for (const bool share : {true, false}) {
    for (const int replicas : {2, 3}) {
      for (const int k : {0, 40, 99}) {
        SCOPED_TRACE(std::string(share ? "one arena" : "an arena each") + ", " + std::to_string(replicas) +
                     " replicas, weight " + std::to_string(k));
        testing::SingleWorld w;
        Config cfg = replicas_config(replicas);
        cfg.optimizer = OptimizerKind::kAdam;
        cfg.share_weights = share;
        Model model({}, kInputs, 1, LossKind::kMeanSquaredError);
        MirroredStrategy strategy(model, cfg, w.world, 1);
        std::vector<float> x(size_t(replicas) * kInputs, 0.5f);
        x[size_t(k % replicas) * kInputs + size_t(k)] = 3e38f;  // weight 0: a small loss, a huge gradient
        const std::vector<float> targets(size_t(replicas), 1000.0f);
        auto res = std::vector<StepResult>(size_t(replicas));
        auto after = std::vector<AlignedVector<float>>(size_t(replicas));
        strategy.run([&](Replica& r) {
          if (!share || r.local_index == 0) std::fill(r.step->params->begin(), r.step->params->end(), 0.0f);
          r.local_comm->barrier();
          const int i = r.local_index;
          res[size_t(i)] = strategy.train_step(r, testing::one_row(i, replicas, x.data(), kInputs, targets.data()),
                                               0.1f, 1);
          after[size_t(i)] = testing::values(*r.step->params);
        });
        for (int i = 0; i < replicas; ++i) {
          EXPECT_TRUE(res[size_t(i)].finite_loss) << "replica " << i;
          EXPECT_FALSE(res[size_t(i)].finite) << "replica " << i << " missed the overflow";
          EXPECT_EQ(after[size_t(i)], AlignedVector<float>(kInputs + 1, 0.0f)) << "replica " << i;
        }
      }
    }
  }
}

// A gradient beyond kGradientLimit (2^63, src/step.h) is skipped like a NaN
// (Adam's square of it would overflow its slot), and so is a sum that overflows
// though each replica's part is finite. The plain step decides before the sum,
// from each replica's own gradient against its share, kGradientLimit / (2 x
// replicas) (kGradientLimit itself for one); micro-batched steps decide on the
// sum (deterministic mode's exact one, or fp32 accumulation: micro-batches of 1
// row against train.batch_size 64). With the weights at 0 and target 1000, row x's MSE gradient is
// -2000 x / replicas, summing to -2000 x. The input is zero but for x (the first
// layer skips the zeros, and its index and dz bound dW, which is read only when
// that bound is not within the share) or 0.5 elsewhere (gemm(), dW read).
TEST(MirroredStrategy, AGradientBeyondTheLimitIsSkipped) {
  constexpr int kInputs = 100, k = 57;
  const double limit = 0x1p63;
  enum Mode { kPlain, kDeterministic, kAccumulated };
  for (const Mode mode : {kPlain, kDeterministic, kAccumulated}) {
    for (const float background : {0.0f, 0.5f}) {
      for (const int replicas : {1, 2, 3}) {
        for (const float x : {2.5e35f, 1e16f, 3e15f, 1e12f}) {
          const double sum = 2000.0 * x, own = sum / replicas;
          const bool applied = mode != kPlain || replicas == 1 ? sum <= limit : own <= limit / (2 * replicas);
          SCOPED_TRACE("mode " + std::to_string(mode) + ", x = " + std::to_string(x) + ", " +
                       std::to_string(replicas) + " replicas, background " + std::to_string(background));
          testing::SingleWorld w;
          Config cfg = replicas_config(replicas);
          cfg.optimizer = OptimizerKind::kSgd;  // its step shows the gradient itself
          cfg.share_weights = false;
          cfg.deterministic = mode == kDeterministic;
          if (mode != kPlain) cfg.micro_batch_size = 1;  // a replica's one row: slices start on micro-batches
          Model model({}, kInputs, 1, LossKind::kMeanSquaredError);
          MirroredStrategy strategy(model, cfg, w.world, 1);
          std::vector<float> in(size_t(replicas) * kInputs, background);
          for (int i = 0; i < replicas; ++i) in[size_t(i) * kInputs + k] = x;
          const std::vector<float> targets(size_t(replicas), 1000.0f);
          auto res = std::vector<StepResult>(size_t(replicas));
          auto after = std::vector<AlignedVector<float>>(size_t(replicas));
          std::vector<int64_t> spans(static_cast<size_t>(replicas));
          strategy.run([&](Replica& r) {
            std::fill(r.step->params->begin(), r.step->params->end(), 0.0f);
            const int i = r.local_index;
            res[size_t(i)] = strategy.train_step(
                r, testing::one_row(i, replicas, in.data(), kInputs, targets.data()), 0.1f, 1);
            after[size_t(i)] = testing::values(*r.step->params);
            spans[size_t(i)] = static_cast<CpuReplica*>(r.step)->net.device().bounded.count;
          });
          for (int i = 0; i < replicas; ++i) {
            SCOPED_TRACE("replica " + std::to_string(i));
            EXPECT_TRUE(res[size_t(i)].finite_loss);
            EXPECT_EQ(res[size_t(i)].finite, applied);
            if (applied) {  // SGD's first step: w = -lr x g = 0.1 x 2000 x input
              EXPECT_NEAR(after[size_t(i)][k] / (200.0 * x), 1.0, 1e-6);
              EXPECT_NEAR(after[size_t(i)][kInputs], 200.0f, 1e-3f) << "the bias";
            } else {
              EXPECT_EQ(after[size_t(i)], AlignedVector<float>(kInputs + 1, 0.0f));
            }
            const bool skips_zeros = background == 0.0f && cpu::ZeroIndex::vectorized();
            if (mode == kPlain) EXPECT_EQ(spans[size_t(i)], skips_zeros ? kInputs : 0) << "dW bounded";
          }
        }
      }
    }
  }
}

// A skipped step changes no state at all: batch norm's moving statistics wait
// for the update (a NaN input makes the step's statistics NaN; they must not
// reach the arena), and the next finite step moves them on every replica alike.
TEST(MirroredStrategy, SkippedStepLeavesBatchNormStatisticsAlone) {
  testing::SingleWorld w;
  Config cfg = replicas_config(2);
  cfg.nonfinite = NonFinitePolicy::kSkip;
  LayerConfig bn;
  bn.type = LayerType::kBatchNorm;
  Model model({bn}, 2, 1, LossKind::kMeanSquaredError);
  MirroredStrategy strategy(model, cfg, w.world, 1);
  const float x_bad[2][2] = {{std::nanf(""), 1.0f}, {2.0f, 1.0f}};
  const float x_ok[2][2] = {{0.5f, 1.0f}, {-0.5f, 3.0f}};
  const float targets[2] = {1.0f, 1.0f};
  AlignedVector<float> initial, after_bad, after_ok;
  StepResult bad;
  strategy.run([&](Replica& r) {
    strategy.broadcast_initial_weights(r);
    if (r.local_index == 0) initial = testing::values(*r.step->params);
    const int i = r.local_index;
    ReplicaBatch b = testing::one_row(i, 2, x_bad, targets);
    const StepResult res = strategy.train_step(r, b, 0.1f, 1);
    if (r.local_index == 0) bad = res, after_bad = testing::values(*r.step->params);
    r.local_comm->barrier();
    b.x = x_ok[i];
    strategy.train_step(r, b, 0.1f, 2);
    if (r.local_index == 0) after_ok = testing::values(*r.step->params);
  });
  EXPECT_FALSE(bad.finite);
  EXPECT_EQ(after_bad, initial) << "weights and moving statistics as before the skipped step";
  // The finite step's moving mean of feature 1: 0.99 * 0 + 0.01 * mean(1, 3) = 0.02.
  const int64_t n = model.num_params();
  ASSERT_EQ(model.arena_size(), n + 4);  // moving_mean (2), moving_variance (2)
  EXPECT_NEAR(after_ok[size_t(n + 1)], 0.02f, 1e-6f);
  EXPECT_NEAR(after_ok[size_t(n + 3)], 0.99f + 0.01f * 1.0f, 1e-6f) << "biased variance of (1, 3) is 1";
}

// A batch variance beyond float's range (rows of +-3e19) leaves the loss and
// gradient finite (batch norm divides it out) but would make the moving
// variance Inf: the step is skipped like a non-finite one, and says why.
TEST(MirroredStrategy, OverflowedBatchStatisticsSkipTheStep) {
  testing::SingleWorld w;
  Config cfg = replicas_config(2);
  LayerConfig bn;
  bn.type = LayerType::kBatchNorm;
  Model model({bn}, 2, 1, LossKind::kMeanSquaredError);
  MirroredStrategy strategy(model, cfg, w.world, 1);
  const float x[2][2] = {{3e19f, 1.0f}, {-3e19f, 2.0f}};
  const float targets[2] = {1.0f, 1.0f};
  AlignedVector<float> initial, after;
  std::vector<StepResult> res(2);
  strategy.run([&](Replica& r) {
    strategy.broadcast_initial_weights(r);
    if (r.local_index == 0) initial = testing::values(*r.step->params);
    res[size_t(r.local_index)] = strategy.train_step(r, testing::one_row(r.local_index, 2, x, targets), 0.1f, 1);
    if (r.local_index == 0) after = testing::values(*r.step->params);
  });
  for (const StepResult& s : res) {
    EXPECT_TRUE(s.finite_loss);
    EXPECT_FALSE(s.finite_state) << "variance 9e38 > FLT_MAX";
    EXPECT_FALSE(s.finite);
  }
  EXPECT_EQ(after, initial);
}

// The CPU replicas of a process share one weight arena (and one optimizer):
// there is nothing to copy between them after an update, and the periodic
// checksum passes between them by construction (across processes it is tested
// in tests/mpi/strategy_mpi_test.cpp).
TEST(MirroredStrategy, CpuReplicasOfAProcessShareOneArena) {
  testing::SingleWorld w;
  Config cfg = replicas_config(3);
  Model model({{4, Activation::kRelu, 0.0f}}, 3, 2, LossKind::kSoftmaxCrossEntropy);
  MirroredStrategy strategy(model, cfg, w.world, 8);
  std::vector<const float*> arenas(3);
  std::string error;
  strategy.run([&](Replica& r) {
    strategy.broadcast_initial_weights(r);
    arenas[size_t(r.local_index)] = r.step->params->data();
    try {
      strategy.check_in_sync(r);
    } catch (const std::exception& e) {
      if (r.local_index == 0) error = e.what();
    }
  });
  EXPECT_EQ(arenas[0], arenas[1]);
  EXPECT_EQ(arenas[0], arenas[2]);
  EXPECT_EQ(error, "");
}

// strategy.share_weights false: each replica keeps its own arena and slots and
// runs the whole update. The weights and slots come out bitwise those of the
// shared arena (every replica applies the same reduced gradient), for SGD with
// momentum and for Adam, with the gradient summed inside the update (each
// replica its slice, stored into the others' arenas; no all-reduce) or, with
// strategy.overlap, by buckets all-reduced on the helper thread. The shared
// arena all-reduces the gradient whole, so its sums are the independent check.
TEST(MirroredStrategy, ReplicasWithWeightsOfTheirOwnMatchTheSharedArenaBitwise) {
  for (OptimizerKind opt : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
    for (int r : {2, 3}) {
      for (bool overlap : {false, true}) {
        testing::SingleWorld w;
        RunSpec spec{r, opt, 250, 2, 0.2f};
        spec.overlap = overlap;
        const RunResult shared = testing::train_synthetic(w.world, spec);
        spec.share_weights = false;
        const RunResult own = testing::train_synthetic(w.world, spec);
        const std::string what = std::to_string(r) + " replicas, " + optimizer_name(opt) +
                                 (overlap ? ", overlap" : "");
        EXPECT_EQ(shared.params, own.params) << what;
        EXPECT_EQ(shared.slots, own.slots) << what;
        EXPECT_FALSE(own.slots.empty()) << what;
      }
    }
  }
}

// With weights of their own, the replicas' arenas are apart, each replica writes
// its own batch norm statistics (the same values as the shared arena's), and the
// cross-replica checksum finds them equal.
TEST(MirroredStrategy, ReplicasWithWeightsOfTheirOwnEachKeepBatchNormStatistics) {
  const float x[2][2] = {{0.5f, 1.0f}, {-0.5f, 3.0f}};
  const float targets[2] = {1.0f, 1.0f};
  LayerConfig bn;
  bn.type = LayerType::kBatchNorm;
  Model model({bn}, 2, 1, LossKind::kMeanSquaredError);
  std::vector<AlignedVector<float>> arenas[2];
  std::vector<const float*> where(2);
  for (bool share : {true, false}) {
    testing::SingleWorld w;
    Config cfg = replicas_config(2);
    cfg.share_weights = share;
    MirroredStrategy strategy(model, cfg, w.world, 1);
    arenas[share].resize(2);
    strategy.run([&](Replica& r) {
      strategy.broadcast_initial_weights(r);
      for (uint64_t step = 1; step <= 3; ++step) {
        strategy.train_step(r, testing::one_row(r.local_index, 2, x, targets), 0.1f, step);
      }
      strategy.check_in_sync(r);
      r.local_comm->barrier();  // the shared arena: both updates are in
      arenas[share][size_t(r.local_index)] = testing::values(*r.step->params);
      if (!share) where[size_t(r.local_index)] = r.step->params->data();
    });
  }
  EXPECT_NE(where[0], where[1]);
  const int64_t n = model.num_params();
  ASSERT_EQ(model.arena_size(), n + 4);
  EXPECT_NE(arenas[false][0][size_t(n + 1)], 0.0f) << "moving mean of feature 1 written";
  EXPECT_EQ(arenas[false][0], arenas[true][0]);
  EXPECT_EQ(arenas[false][1], arenas[true][0]);
}

// What the kernels stream over starts on a 64-byte line: the weight arena, the
// optimizer's slots and each replica's gradient arena.
TEST(MirroredStrategy, ArenasStartOnCacheLines) {
  testing::SingleWorld w;
  Config cfg = replicas_config(3);
  cfg.optimizer = OptimizerKind::kAdam;
  Model model({{5, Activation::kRelu, 0.0f}}, 3, 2, LossKind::kSoftmaxCrossEntropy);
  MirroredStrategy strategy(model, cfg, w.world, 8);
  std::vector<std::vector<const float*>> seen(3);
  strategy.run([&](Replica& r) {
    auto& mine = seen[size_t(r.local_index)];
    mine.push_back(r.step->params->data());
    for (auto& [name, slot] : r.step->optimizer->slots()) mine.push_back(slot->data());
    mine.push_back(dynamic_cast<CpuReplica&>(*r.step).grads.data());
  });
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(seen[size_t(i)].size(), 4u) << "weights, m, v, gradients";
    for (const float* p : seen[size_t(i)])
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << "replica " << i;
  }
}

TEST(MirroredStrategy, ReplicaFailureDoesNotHangTheOthers) {
  testing::SingleWorld w;
  Config cfg = replicas_config(3);
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
