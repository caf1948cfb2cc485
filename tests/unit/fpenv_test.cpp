// Denormal flushing (train.flush_denormals): the mode itself, and that every
// thread lockstep computes on sets it from the config rather than inheriting
// whatever the thread that started it had.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "data/sources.h"
#include "kernels/cpu/fpenv.h"
#include "src/strategy.h"
#include "tests/common/train_harness.h"

namespace lockstep {
namespace {

// 1e-20 * 1e-20 = 1e-40 is below FLT_MIN (1.18e-38): a denormal unless flushed.
float tiny_product() {
  volatile float a = 1e-20f, b = 1e-20f;
  return a * b;
}
// A denormal operand (the smallest one) times 1: itself, or 0 when read as 0.
float denormal_times_one() {
  uint32_t bits = 1;
  float d;
  std::memcpy(&d, &bits, 4);
  volatile float x = d, one = 1.0f;
  return x * one;
}

// Restores the calling thread's mode at the end of a test.
struct ModeGuard {
  bool was = cpu::flushing_denormals();
  ~ModeGuard() { cpu::set_flush_denormals(was); }
};

TEST(FlushDenormals, ResultsAndOperandsBecomeZeroOnlyWhenOn) {
  ModeGuard guard;
  ASSERT_TRUE(cpu::set_flush_denormals(false));
  EXPECT_FALSE(cpu::flushing_denormals());
  EXPECT_GT(tiny_product(), 0.0f);
  EXPECT_GT(denormal_times_one(), 0.0f);
  ASSERT_TRUE(cpu::set_flush_denormals(true));
  EXPECT_TRUE(cpu::flushing_denormals());
  EXPECT_EQ(tiny_product(), 0.0f);
  EXPECT_EQ(denormal_times_one(), 0.0f);
  EXPECT_EQ(1e-20f * 1e10f > 0.0f, true);  // normal numbers are untouched
}

// Each replica thread reports its mode and a product that would be denormal.
std::vector<std::pair<bool, float>> replica_modes(bool flush, bool caller_mode) {
  ModeGuard guard;
  cpu::set_flush_denormals(caller_mode);  // the opposite, to rule out inheritance
  testing::SingleWorld w;
  Config cfg;
  cfg.local_replicas = 3;
  cfg.batch_size = 6;
  cfg.flush_denormals = flush;
  Model model({{4, Activation::kRelu, 0.0f}}, 3, 2, LossKind::kSoftmaxCrossEntropy);
  MirroredStrategy strategy(model, cfg, w.world, 2);
  std::vector<std::pair<bool, float>> seen(3);
  strategy.run([&](Replica& r) {
    seen[size_t(r.local_index)] = {cpu::flushing_denormals(), tiny_product()};
  });
  return seen;
}

TEST(FlushDenormals, EveryReplicaThreadFollowsTheConfig) {
  for (const auto& [on, product] : replica_modes(true, false)) {
    EXPECT_TRUE(on);
    EXPECT_EQ(product, 0.0f);
  }
  for (const auto& [on, product] : replica_modes(false, true)) {
    EXPECT_FALSE(on);
    EXPECT_GT(product, 0.0f);
  }
}

TEST(FlushDenormals, PrefetchThreadRunsTheStartHook) {
  ModeGuard guard;
  cpu::set_flush_denormals(false);
  SyntheticOptions so;
  so.size = 40;
  so.feature_shape = {3};
  so.num_classes = 2;
  auto src = make_synthetic(so);
  InputOptions in;
  in.global_batch = 8;
  in.prefetch = 2;
  std::mutex mu;
  std::vector<std::thread::id> hook_threads;
  std::atomic<bool> flushed_there{false};
  in.on_thread_start = [&] {
    cpu::set_flush_denormals(true);
    flushed_there = tiny_product() == 0.0f;
    std::lock_guard<std::mutex> lock(mu);
    hook_threads.push_back(std::this_thread::get_id());
  };
  {
    DistributedInput input(src, in);
    input.seek({0, 0});
    std::vector<ReplicaBatch> batches(1);
    int n = 0;
    while (input.next(batches)) ++n;
    EXPECT_EQ(n, 5);
  }
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_FALSE(hook_threads.empty());
  for (const auto& id : hook_threads) EXPECT_NE(id, std::this_thread::get_id());
  EXPECT_TRUE(flushed_there.load());
  EXPECT_FALSE(cpu::flushing_denormals());  // the consumer's own mode is untouched
}

}  // namespace
}  // namespace lockstep
