// The CUDA path's failure classes, each with a test that finds it at once on a GPU:
// NCCL inside captured graphs with two replicas, a peer that never arrives during a
// replayed step, an abort in the middle of a step, and the device paths the step
// tests leave out (mse, evaluate, TF32, non-finite skip, upload/download on resume).
// Without a GPU (or with fewer than a test needs) each test says SKIPPED, loudly.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "src/accelerator.h"
#include "src/optimizer.h"
#include "tests/common/train_harness.h"

namespace lockstep {
namespace {

bool skip_below(int gpus) {
  const int have = visible_cuda_devices();
  if (have >= gpus) return false;
  std::fprintf(stderr, "\n*** %s SKIPPED: needs %d CUDA device(s), %d visible ***\n",
               ::testing::UnitTest::GetInstance()->current_test_info()->name(), gpus, have);
  return true;
}

#define LOCKSTEP_NEED_GPUS(n)                                          \
  do {                                                                 \
    if (skip_below(n)) GTEST_SKIP() << "needs " << (n) << " GPU(s): SKIPPED"; \
  } while (0)

constexpr int64_t kGlobal = 24, kIn = 12, kOut = 4, kBatches = 3;

// kBatches global batches of synthetic rows (x in [-1, 1], labels and targets
// from x), so every test sees the same inputs on the CPU and the GPU.
struct Data {
  std::vector<float> x, targets;
  std::vector<int32_t> labels;
  Data() : x(size_t(kBatches * kGlobal * kIn)), targets(size_t(kBatches * kGlobal * kOut)),
           labels(size_t(kBatches * kGlobal)) {
    std::mt19937 gen(5);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float& v : x) v = u(gen);
    for (int64_t r = 0; r < kBatches * kGlobal; ++r) {
      labels[size_t(r)] = int32_t(r % kOut);
      for (int64_t j = 0; j < kOut; ++j) {
        targets[size_t(r * kOut + j)] = 0.5f * x[size_t(r * kIn + j)] - 0.25f * x[size_t(r * kIn + j + 4)];
      }
    }
  }
  // Replica `index` of `replicas`'s slice of global batch `step` (cycled).
  ReplicaBatch slice(int64_t step, int index, int replicas) const {
    const int64_t rows = kGlobal / replicas, base = (step % kBatches) * kGlobal + index * rows;
    ReplicaBatch b;
    b.rows = rows;
    b.first_row = index * rows;
    b.global_rows = kGlobal;
    b.sample_base = step * kGlobal;
    b.x = x.data() + base * kIn;
    b.labels = labels.data() + base;
    b.targets = targets.data() + base * kOut;
    return b;
  }
};

Config base_config(DeviceKind device, int replicas) {
  Config c;
  c.data_path = "synthetic";
  c.device = device;
  c.optimizer = OptimizerKind::kAdam;
  c.learning_rate = 0.01f;
  c.batch_size = kGlobal;
  c.local_replicas = replicas;
  c.bucket_mb = 0.0005;  // several buckets per step
  c.cuda_graphs = false;
  return c;
}

Model make_model(LossKind loss = LossKind::kSoftmaxCrossEntropy) {
  return Model({{16, Activation::kTanh, 0.0f}, {8, Activation::kRelu, 0.0f}}, kIn, kOut, loss);
}

struct StepsRun {
  std::vector<float> params;
  std::vector<double> losses;      // replica 0's mean global loss per step
  std::vector<bool> finite;        // per step
  SliceStats eval;                 // replica 0's slice of batch 0 after training
};

// `steps` steps on every local replica through the strategy (no input pipeline:
// the slices above), then evaluation of batch 0 and the weights back on the host.
StepsRun run_steps(const Model& model, const Config& cfg, int steps, const Data& data,
              const std::function<void(int64_t, ReplicaBatch&)>& edit = {}) {
  testing::SingleWorld w;
  MirroredStrategy strategy(model, cfg, w.world, kGlobal);
  StepsRun out;
  std::vector<std::vector<float>> finals(size_t(cfg.local_replicas));
  strategy.run([&](Replica& r) {
    strategy.broadcast_initial_weights(r);
    for (int64_t s = 0; s < steps; ++s) {
      ReplicaBatch b = data.slice(s, r.local_index, cfg.local_replicas);
      if (edit) edit(s, b);
      const StepResult res = strategy.train_step(r, b, cfg.learning_rate, uint64_t(s));
      if (r.local_index == 0) {
        out.losses.push_back(res.global.loss_sum / double(res.global.rows));
        out.finite.push_back(res.finite);
      }
    }
    const SliceStats e = strategy.evaluate(r, data.slice(0, r.local_index, cfg.local_replicas));
    if (r.local_index == 0) out.eval = e;
    strategy.snapshot(r, finals[size_t(r.local_index)], nullptr);
  });
  for (size_t i = 1; i < finals.size(); ++i) {
    EXPECT_EQ(0, std::memcmp(finals[0].data(), finals[i].data(), finals[0].size() * 4))
        << "local replica " << i << " differs from replica 0";
  }
  out.params = finals[0];
  return out;
}

TEST(GpuSafety, CapturedNcclWithTwoReplicasReplaysBitwise) {
  LOCKSTEP_NEED_GPUS(2);  // NCCL calls are captured only on a GPU of their own
  const Data data;
  const Model model = make_model();
  Config off = base_config(DeviceKind::kCuda, 2);
  Config on = off;
  on.cuda_graphs = true;
  const StepsRun a = run_steps(model, off, 8, data), b = run_steps(model, on, 8, data);
  ASSERT_EQ(a.params.size(), b.params.size());
  EXPECT_EQ(0, std::memcmp(a.params.data(), b.params.data(), a.params.size() * 4));
  EXPECT_EQ(a.losses, b.losses);
  const StepsRun one = run_steps(model, base_config(DeviceKind::kCuda, 1), 8, data);
  EXPECT_LT(testing::worst_relative_difference(b.params, one.params), testing::kReplicaTolerance);
}

// Replica threads driving a DeviceGroup directly (no local barrier between them),
// so one can stop while the other goes on.
struct Direct {
  testing::SingleWorld w;
  Model model = make_model();
  Config cfg;
  std::unique_ptr<DeviceGroup> group;
  std::vector<std::unique_ptr<Replica>> replicas;
  explicit Direct(const Config& c) : cfg(c) {
    group = make_cuda_group(model, cfg, w.world, cfg.local_replicas, kGlobal);
    for (int i = 0; i < cfg.local_replicas; ++i) {
      auto r = std::make_unique<Replica>();
      r->local_index = i;
      r->step = &group->replica(i);
      r->step->params = std::make_shared<CommBuffer>(host_buffer(size_t(model.num_params())));
      model.init_params(r->step->params->data(), 7);
      r->step->optimizer = std::make_unique<Optimizer>(cfg, model.num_params());
      replicas.push_back(std::move(r));
    }
  }
  // Replica i's thread: bind, upload, then `steps` steps; the error text or "".
  std::string steps(int i, int steps, const Data& data) {
    try {
      ReplicaStep& d = group->replica(i);
      d.bind_thread();
      d.upload();
      for (int s = 0; s < steps; ++s) {
        d.train_step(*replicas[size_t(i)], data.slice(s, i, cfg.local_replicas), 0.01f, uint64_t(s), false);
      }
      return "";
    } catch (const std::exception& e) {
      group->fail(e.what());
      return e.what();
    }
  }
};

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(GpuSafety, PeerThatNeverArrivesDuringReplayEndsTheStepNamingIt) {
  LOCKSTEP_NEED_GPUS(2);
  Config cfg = base_config(DeviceKind::kCuda, 2);
  cfg.cuda_graphs = true;
  cfg.comm_timeout_s = 2;
  const Data data;
  Direct d(cfg);
  std::string late_error;
  // Steps 1 eager, 2 captured, 3 replayed on both; replica 1 then stops, and
  // replica 0's replayed step 4 waits for it inside the graph.
  std::thread late([&] { late_error = d.steps(1, 3, data); });
  const auto t0 = std::chrono::steady_clock::now();
  const std::string error = d.steps(0, 4, data);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  late.join();
  EXPECT_EQ(late_error, "");
  EXPECT_TRUE(has(error, "replayed training step")) << error;
  EXPECT_TRUE(has(error, "did not finish within 2.0 s")) << error;
  EXPECT_TRUE(has(error, "local replica(s) 1 of process 0 have not got this far")) << error;
  EXPECT_LT(seconds, 20.0) << "the deadline is 2 s";
}

TEST(GpuSafety, AbortInTheMiddleOfAStepFailsIt) {
  LOCKSTEP_NEED_GPUS(1);
  Config cfg = base_config(DeviceKind::kCuda, 2);
  // Two GPUs: replica 0's step is on the device, waiting in NCCL for replica 1.
  // One GPU: it waits on the host for its GPU partner. Either way it must fail.
  cfg.replicas_per_gpu = visible_cuda_devices() >= 2 ? 1 : 2;
  cfg.comm_timeout_s = 60;
  const Data data;
  Direct d(cfg);
  std::atomic<bool> aborted{false};
  std::string error1;
  std::thread second([&] {
    error1 = d.steps(1, 1, data);  // one step together, then lag behind
    while (!aborted.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    try {
      d.group->replica(1).train_step(*d.replicas[1], data.slice(1, 1, 2), 0.01f, 1, false);
      error1 = "a step after the abort returned normally";
    } catch (const std::exception& e) {
      error1 = e.what();
    }
  });
  std::thread aborter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // replica 0 is mid-step 2
    d.group->fail("injected abort in the middle of a step");
    aborted.store(true);
  });
  const std::string error0 = d.steps(0, 2, data);
  aborter.join();
  second.join();
  EXPECT_TRUE(has(error0, "injected abort in the middle of a step")) << error0;
  EXPECT_TRUE(has(error1, "has failed")) << error1;
}

// Tolerances as tests/unit/gpu_replica_test.cpp: cuBLAS and the CPU GEMM sum in
// different orders (~1e-7 relative per GEMM); Adam magnifies that where gradients
// are tiny, so 1e-4 of a weight over a few steps; a wrong kernel is >= 1e-3.
TEST(GpuSafety, MseStepsMatchTheCpu) {
  LOCKSTEP_NEED_GPUS(1);
  const Data data;
  const Model model = make_model(LossKind::kMeanSquaredError);
  const StepsRun c = run_steps(model, base_config(DeviceKind::kCpu, 1), 6, data);
  const StepsRun g = run_steps(model, base_config(DeviceKind::kCuda, 1), 6, data);
  EXPECT_LT(testing::worst_relative_difference(g.params, c.params), 1e-4);
  for (size_t i = 0; i < c.losses.size(); ++i) {
    EXPECT_NEAR(g.losses[i], c.losses[i], 1e-5 * (1 + std::abs(c.losses[i]))) << "step " << i;
  }
  EXPECT_NEAR(g.eval.loss_sum, c.eval.loss_sum, 1e-5 * (1 + std::abs(c.eval.loss_sum)));
}

TEST(GpuSafety, EvaluateMatchesTheCpu) {
  LOCKSTEP_NEED_GPUS(1);
  const Data data;
  const Model model = make_model();
  const StepsRun c = run_steps(model, base_config(DeviceKind::kCpu, 1), 5, data);
  const StepsRun g = run_steps(model, base_config(DeviceKind::kCuda, 1), 5, data);
  EXPECT_EQ(g.eval.rows, kGlobal);
  EXPECT_NEAR(g.eval.loss_sum, c.eval.loss_sum, 1e-4 * (1 + std::abs(c.eval.loss_sum)));
  // A logit pair within fp32 noise of a tie may flip one prediction, no more.
  EXPECT_LE(std::abs(g.eval.correct - c.eval.correct), 1);
}

TEST(GpuSafety, Tf32StaysCloseToFp32) {
  LOCKSTEP_NEED_GPUS(1);
  const Data data;
  const Model model = make_model();
  Config fp32 = base_config(DeviceKind::kCuda, 1);
  Config tf32 = fp32;
  tf32.tf32 = true;
  const StepsRun a = run_steps(model, fp32, 6, data), b = run_steps(model, tf32, 6, data);
  // TF32 keeps 10 mantissa bits (~5e-4 relative per product); six Adam steps of
  // lr 0.01 move a weight by at most ~0.06, so the runs stay within 1e-2.
  for (float v : b.params) ASSERT_TRUE(std::isfinite(v));
  EXPECT_LT(testing::worst_relative_difference(b.params, a.params), 1e-2);
  for (size_t i = 0; i < a.losses.size(); ++i) EXPECT_NEAR(b.losses[i], a.losses[i], 1e-2) << i;
}

TEST(GpuSafety, NonFiniteStepIsSkippedOnTheDevice) {
  LOCKSTEP_NEED_GPUS(1);
  const Data data;
  const Model model = make_model();
  for (bool graphs : {false, true}) {
    Config cfg = base_config(DeviceKind::kCuda, 1);
    cfg.cuda_graphs = graphs;
    // Step 3 (replayed with graphs) gets an infinite input; the run must equal one
    // that never saw that step, with the data and step seeds of the others kept.
    auto poison = [](int64_t s, ReplicaBatch& b) {
      if (s != 3) return;
      static std::vector<float> bad;
      bad.assign(b.x, b.x + b.rows * kIn);
      bad[5] = std::numeric_limits<float>::infinity();
      b.x = bad.data();
    };
    const StepsRun skipped = run_steps(model, cfg, 5, data, poison);
    ASSERT_EQ(skipped.finite.size(), 5u);
    for (float p : skipped.params) ASSERT_TRUE(std::isfinite(p)) << "a skipped step wrote NaN/Inf";
    EXPECT_FALSE(skipped.finite[3]) << "graphs " << graphs;
    for (int s : {0, 1, 2, 4}) EXPECT_TRUE(skipped.finite[size_t(s)]) << s;
    Config cpu = cfg;
    cpu.device = DeviceKind::kCpu;
    const StepsRun reference = run_steps(model, cpu, 5, data, poison);
    EXPECT_EQ(reference.finite, skipped.finite);
    EXPECT_LT(testing::worst_relative_difference(skipped.params, reference.params), 1e-4)
        << "graphs " << graphs;
  }
}

TEST(GpuSafety, UploadDownloadRoundTripAndResume) {
  LOCKSTEP_NEED_GPUS(1);
  const Data data;
  const Model model = make_model();
  Config cfg = base_config(DeviceKind::kCuda, 1);
  testing::SingleWorld w;
  // Round trip: odd patterns in the weights and both Adam slots come back bitwise.
  {
    MirroredStrategy strategy(model, cfg, w.world, kGlobal);
    strategy.run([&](Replica& r) {
      std::vector<float> p(size_t(model.num_params()));
      for (size_t i = 0; i < p.size(); ++i) p[i] = float(i % 97) * 0.125f - 3.0f;
      NamedSlots slots{{"m", p}, {"v", p}};
      for (auto& [name, v] : slots) {
        for (size_t i = 0; i < v.size(); ++i) v[i] = float(i % 13) * 1e-3f + 1e-7f;
      }
      strategy.restore(r, &p, &slots);
      std::vector<float> back;
      NamedSlots back_slots;
      strategy.snapshot(r, back, &back_slots);
      EXPECT_EQ(back, p);
      EXPECT_EQ(back_slots, slots);
    });
  }
  // Resume: 2 steps, state to the host, a fresh strategy, 2 more steps equal 4 in one go.
  const StepsRun whole = run_steps(model, cfg, 4, data);
  std::vector<float> params;
  NamedSlots slots;
  int64_t updates = 0;
  {
    MirroredStrategy first(model, cfg, w.world, kGlobal);
    first.run([&](Replica& r) {
      first.broadcast_initial_weights(r);
      for (int64_t s = 0; s < 2; ++s) first.train_step(r, data.slice(s, 0, 1), cfg.learning_rate, uint64_t(s));
      first.snapshot(r, params, &slots);
      updates = r.updates;
    });
  }
  MirroredStrategy second(model, cfg, w.world, kGlobal);
  second.run([&](Replica& r) {
    second.restore(r, &params, &slots);
    r.updates = updates;
    for (int64_t s = 2; s < 4; ++s) second.train_step(r, data.slice(s, 0, 1), cfg.learning_rate, uint64_t(s));
    second.snapshot(r, params, nullptr);
    EXPECT_EQ(0, std::memcmp(params.data(), whole.params.data(), params.size() * 4))
        << "a resumed run must equal the uninterrupted one bitwise";
  });
}

}  // namespace
}  // namespace lockstep
