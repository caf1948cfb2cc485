// CUDA replicas against the CPU and against themselves: a few whole training
// steps agree with the CPU per tensor, two replicas sharing one GPU match one
// replica up to fp32 summation order, and captured graphs replay bitwise like the
// uncaptured step. Without a CUDA device every test is SKIPPED, loudly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "data/sources.h"
#include "src/accelerator.h"
#include "tests/common/train_harness.h"

namespace lockstep {
namespace {

#define LOCKSTEP_NEED_GPU()                                                                    \
  do {                                                                                         \
    if (visible_cuda_devices() == 0) {                                                         \
      std::fprintf(stderr, "\n*** no CUDA device: %s SKIPPED (%s) ***\n",                      \
                   ::testing::UnitTest::GetInstance()->current_test_info()->name(),            \
                   kCudaBuilt ? "no GPU visible" : "built without CUDA");                      \
      GTEST_SKIP() << "no CUDA device: SKIPPED";                                               \
    }                                                                                          \
  } while (0)

#if defined(LOCKSTEP_HAVE_CUDA)
constexpr bool kCudaBuilt = true;
#else
constexpr bool kCudaBuilt = false;
#endif

struct GpuSpec {
  DeviceKind device = DeviceKind::kCuda;
  int local_replicas = 1;
  int replicas_per_gpu = 1;
  bool graphs = false;
  OptimizerKind optimizer = OptimizerKind::kSgd;
  float dropout = 0.0f;
  int steps = 4;
};

struct GpuRun {
  std::vector<float> params;
  std::vector<double> losses;  // mean global loss of each step
};

// A Dense(16, tanh, dropout) -> Dense(8, relu) -> Dense(4) model on synthetic
// classification data, 24 rows per global batch (250 rows: 10 full batches and
// a short one, so graphs are captured and the short batch runs uncaptured).
GpuRun train(const GpuSpec& spec) {
  testing::SingleWorld w;
  SyntheticOptions so;
  so.size = 250;
  so.feature_shape = {12};
  so.num_classes = 4;
  so.seed = 3;
  auto src = make_synthetic(so);
  Config cfg;
  cfg.data_path = "synthetic";
  cfg.optimizer = spec.optimizer;
  cfg.momentum = 0.9f;
  cfg.learning_rate = 0.01f;
  cfg.batch_size = 24;
  cfg.local_replicas = spec.local_replicas;
  cfg.bucket_mb = 0.0005;  // several buckets per step
  cfg.device = spec.device;
  cfg.replicas_per_gpu = spec.replicas_per_gpu;
  cfg.cuda_graphs = spec.graphs;
  Model model({{16, Activation::kTanh, spec.dropout}, {8, Activation::kRelu, 0.0f}}, 12, 4,
              LossKind::kSoftmaxCrossEntropy);
  MirroredStrategy strategy(model, cfg, w.world, 24);
  InputOptions in;
  in.global_batch = 24;
  in.num_replicas = strategy.num_replicas_in_sync();
  in.local_replicas = spec.local_replicas;
  in.seed = 11;
  DistributedInput input(src, in);
  GpuRun out;
  std::vector<std::vector<float>> finals(static_cast<size_t>(spec.local_replicas));
  strategy.run([&](Replica& r) {
    strategy.broadcast_initial_weights(r);
    for (int step = 0; step < spec.steps;) {
      const ReplicaBatch* b = strategy.fetch(r, input);
      if (!b) continue;  // next epoch
      const StepResult s = strategy.train_step(r, *b, cfg.learning_rate, uint64_t(step));
      EXPECT_TRUE(s.finite);
      if (r.local_index == 0) out.losses.push_back(s.global.loss_sum / double(s.global.rows));
      ++step;
    }
    strategy.snapshot(r, finals[size_t(r.local_index)], nullptr);
  });
  for (size_t i = 1; i < finals.size(); ++i) {
    EXPECT_EQ(0, std::memcmp(finals[0].data(), finals[i].data(), finals[0].size() * 4))
        << "local replica " << i << " differs from local replica 0";
  }
  out.params = finals[0];
  return out;
}

// Worst |a - b| / (1 + |b|) over one tensor of the arena.
double worst_in(const std::vector<float>& a, const std::vector<float>& b, int64_t off, int64_t n) {
  double worst = 0;
  for (int64_t i = off; i < off + n; ++i) {
    worst = std::max(worst, std::abs(double(a[size_t(i)]) - b[size_t(i)]) /
                                (1.0 + std::abs(double(b[size_t(i)]))));
  }
  return worst;
}

// Tolerances per tensor: cuBLAS and the CPU GEMM sum the same products in
// different orders (a few fp32 ulps, ~1e-7 relative, per GEMM), and 4 SGD steps
// at lr 0.01 move weights by ~1e-2, so their difference stays below ~1e-6;
// 1e-5 keeps a margin while a wrong transpose, bias or scale (>= 1e-3) fails.
// Adam divides by sqrt(v), which magnifies relative gradient noise where the
// gradient is tiny: 1e-4 (1% of one step of lr 0.01) for every tensor.
TEST(GpuReplica, AgreesWithCpuPerTensorForWholeSteps) {
  LOCKSTEP_NEED_GPU();
  Model model({{16, Activation::kTanh, 0.0f}, {8, Activation::kRelu, 0.0f}}, 12, 4,
              LossKind::kSoftmaxCrossEntropy);
  for (OptimizerKind opt : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
    for (float dropout : {0.0f, 0.25f}) {
      GpuSpec spec;
      spec.optimizer = opt;
      spec.dropout = dropout;
      spec.steps = 12;  // ten full batches, the short one (10 rows), one more
      GpuSpec cpu = spec;
      cpu.device = DeviceKind::kCpu;
      const GpuRun c = train(cpu), g = train(spec);
      ASSERT_EQ(c.params.size(), g.params.size());
      const double tol = opt == OptimizerKind::kSgd ? 1e-5 : 1e-4;
      for (const LayerSpec& L : model.layers()) {
        EXPECT_LT(worst_in(g.params, c.params, L.weight_offset, L.in_size() * L.out_size()), tol)
            << L.name << " kernel, " << optimizer_name(opt) << ", dropout " << dropout;
        EXPECT_LT(worst_in(g.params, c.params, L.bias_offset, L.out_size()), tol)
            << L.name << " bias, " << optimizer_name(opt) << ", dropout " << dropout;
      }
      for (size_t i = 0; i < c.losses.size(); ++i) {
        EXPECT_NEAR(g.losses[i], c.losses[i], 1e-5 * (1 + std::abs(c.losses[i]))) << "step " << i;
      }
    }
  }
}

TEST(GpuReplica, TwoReplicasOnOneGpuMatchOne) {
  LOCKSTEP_NEED_GPU();
  for (OptimizerKind opt : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
    GpuSpec one;
    one.optimizer = opt;
    one.steps = 22;  // two epochs, each ending with a short batch split 5/5
    GpuSpec two = one;
    two.local_replicas = 2;
    two.replicas_per_gpu = 2;
    const double worst =
        testing::worst_relative_difference(train(two).params, train(one).params);
    EXPECT_LT(worst, testing::kReplicaTolerance) << optimizer_name(opt);
    std::printf("2 replicas on one GPU, %s: worst relative weight difference %.3g\n",
                optimizer_name(opt), worst);
  }
}

TEST(GpuReplica, GraphsReplayBitwiseLikeUncapturedSteps) {
  LOCKSTEP_NEED_GPU();
  // One replica only: NCCL calls are captured only when a replica has its GPU to
  // itself, so replicas sharing a GPU always run uncaptured.
  for (int replicas : {1}) {
    GpuSpec off;
    off.optimizer = OptimizerKind::kAdam;
    off.dropout = 0.2f;  // seeds and first rows change every step: read from device memory
    off.local_replicas = replicas;
    off.replicas_per_gpu = replicas;
    off.steps = 22;
    GpuSpec on = off;
    on.graphs = true;
    const GpuRun a = train(off), b = train(on);
    ASSERT_EQ(a.params.size(), b.params.size());
    EXPECT_EQ(0, std::memcmp(a.params.data(), b.params.data(), a.params.size() * 4))
        << replicas << " replica(s)";
    EXPECT_EQ(a.losses, b.losses) << replicas << " replica(s)";
  }
}

}  // namespace
}  // namespace lockstep
