// Optimizer class and learning-rate schedules against hand-computed values.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "src/optimizer.h"

namespace lockstep {
namespace {

Config with(OptimizerKind k) {
  Config c;
  c.data_path = "x";
  c.optimizer = k;
  return c;
}

TEST(Optimizer, AdamTwoStepsByHandWithBiasCorrection) {
  Config c = with(OptimizerKind::kAdam);
  c.learning_rate = 0.1f;
  Optimizer opt(c, 1);
  std::vector<float> p = {1.0f}, g = {0.5f};
  // Step 1: m = 0.05, v = 0.00025; m^ = 0.5, v^ = 0.25; p -= 0.1 * 0.5 / (0.5 + 1e-7).
  opt.apply(p.data(), g.data(), 0, 1, 0.1f, 0);
  const double p1 = 1.0 - 0.1 * 0.5 / (0.5 + 1e-7);
  EXPECT_NEAR(p[0], p1, 1e-6);
  // Step 2 with g = -1: m = 0.9*0.05 - 0.1 = -0.055; v = 0.999*0.00025 + 0.001 = 0.00124975
  g[0] = -1.0f;
  opt.apply(p.data(), g.data(), 0, 1, 0.1f, 1);
  const double mh = -0.055 / (1 - 0.81), vh = 0.00124975 / (1 - 0.998001);
  EXPECT_NEAR(p[0], p1 - 0.1 * mh / (std::sqrt(vh) + 1e-7), 1e-6);
}

TEST(Optimizer, SgdNesterovByHand) {
  Config c = with(OptimizerKind::kSgd);
  c.momentum = 0.9f;
  c.nesterov = true;
  Optimizer opt(c, 1);
  std::vector<float> p = {2.0f}, g = {1.0f};
  opt.apply(p.data(), g.data(), 0, 1, 0.5f, 0);  // v = 1; p -= 0.5 * (1 + 0.9 * 1) = 0.95
  EXPECT_NEAR(p[0], 1.05, 1e-6);
  opt.apply(p.data(), g.data(), 0, 1, 0.5f, 1);  // v = 1.9; p -= 0.5 * (1 + 0.9 * 1.9) = 1.355
  EXPECT_NEAR(p[0], 1.05 - 1.355, 1e-6);
}

TEST(Optimizer, AdamWDecaysDecoupled) {
  Config c = with(OptimizerKind::kAdamW);
  c.weight_decay = 0.1f;
  Optimizer opt(c, 1);
  std::vector<float> p = {1.0f}, g = {0.0f};
  opt.apply(p.data(), g.data(), 0, 1, 0.01f, 0);  // zero gradient: only p *= (1 - lr*wd)
  EXPECT_NEAR(p[0], 1.0 - 0.01 * 0.1, 1e-7);
}

TEST(Optimizer, RangesComposeToTheWholeUpdate) {
  Config c = with(OptimizerKind::kAdam);
  Optimizer a(c, 10), b(c, 10);
  std::vector<float> pa(10), pb(10), g(10);
  for (int i = 0; i < 10; ++i) pa[size_t(i)] = pb[size_t(i)] = 0.1f * i, g[size_t(i)] = 0.3f - 0.07f * i;
  a.apply(pa.data(), g.data(), 0, 10, 1e-2f, 0);
  b.apply(pb.data(), g.data(), 0, 3, 1e-2f, 0);
  b.apply(pb.data(), g.data(), 3, 10, 1e-2f, 0);
  EXPECT_EQ(pa, pb);
  ASSERT_EQ(a.slots().size(), 2u);
}

TEST(Schedule, WarmupStepAndCosine) {
  Config c;
  c.warmup_steps = 4;
  EXPECT_DOUBLE_EQ(learning_rate_at(c, 1.0, 0, 100), 0.25);
  EXPECT_DOUBLE_EQ(learning_rate_at(c, 1.0, 3, 100), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate_at(c, 1.0, 50, 100), 1.0);
  c.schedule = ScheduleKind::kStep;
  c.decay_steps = 10;
  c.decay_rate = 0.5f;
  EXPECT_DOUBLE_EQ(learning_rate_at(c, 1.0, 13, 100), 1.0);  // 9 steps after warm-up
  EXPECT_DOUBLE_EQ(learning_rate_at(c, 1.0, 14, 100), 0.5);  // 10
  EXPECT_DOUBLE_EQ(learning_rate_at(c, 1.0, 24, 100), 0.25);
  c.schedule = ScheduleKind::kCosine;
  c.decay_steps = 0;  // whole run: 96 steps after warm-up
  c.min_lr_ratio = 0.1f;
  EXPECT_NEAR(learning_rate_at(c, 1.0, 4, 100), 1.0, 1e-12);
  EXPECT_NEAR(learning_rate_at(c, 1.0, 52, 100), 0.1 + 0.9 * 0.5, 1e-6);  // half way
  EXPECT_NEAR(learning_rate_at(c, 1.0, 100, 100), 0.1, 1e-6);
}

}  // namespace
}  // namespace lockstep
