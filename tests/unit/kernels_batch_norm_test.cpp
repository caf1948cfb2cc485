// Batch normalization through the split (synchronized-statistics) API: forward
// against a double reference, moving averages by hand, and the backward against
// central finite differences of the double reference, with 1 replica and with 2
// simulated replicas whose partial sums are added as the all-reduce would.
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/cnn.h"
#include "tests/unit/grad_check.h"

namespace lockstep {
namespace {

using testing::DVec;
using testing::expect_close;
using testing::Vec;
DVec numeric_grad(DVec& v, const std::function<double()>& loss) {
  return testing::numeric_grad(v, loss, 1e-4);
}

Vec random_vec(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Vec v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

struct Shape {
  int64_t n, c, pixels;
  size_t size() const { return static_cast<size_t>(n * c * pixels); }
};

// Training-mode batch norm in double: per-channel mean and biased variance.
DVec bn_reference(const Shape& s, const DVec& x, const DVec& gamma, const DVec& beta, double eps) {
  DVec y(x.size());
  const double m = double(s.n * s.pixels);
  for (int64_t c = 0; c < s.c; ++c) {
    double mean = 0, var = 0;
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t i = 0; i < s.pixels; ++i) mean += x[(n * s.c + c) * s.pixels + i];
    mean /= m;
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t i = 0; i < s.pixels; ++i) {
        const double d = x[(n * s.c + c) * s.pixels + i] - mean;
        var += d * d;
      }
    var /= m;
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t i = 0; i < s.pixels; ++i) {
        const size_t at = static_cast<size_t>((n * s.c + c) * s.pixels + i);
        y[at] = gamma[c] * (x[at] - mean) / std::sqrt(var + eps) + beta[c];
      }
  }
  return y;
}

// One training step of batch norm with the batch split into `replicas` equal
// slices: each slice's partials are added (the all-reduce), then each slice is
// normalized and back-propagated with the global sums. dgamma/dbeta are the sum
// of the replicas' own gradients (the gradient all-reduce).
struct BnResult {
  Vec y, dx, dgamma, dbeta, mean, var, inv_std;
};

BnResult run_split(const Shape& s, int replicas, const Vec& x, const Vec& dy, const Vec& gamma,
                   const Vec& beta, const Vec& shift, float eps) {
  const int64_t rows = s.n / replicas, slice = rows * s.c * s.pixels;
  const double count = double(s.n * s.pixels);
  std::vector<double> stats(2 * s.c, 0.0), part(2 * s.c);
  for (int r = 0; r < replicas; ++r) {
    cpu::batch_norm_stats(x.data() + r * slice, rows, s.c, s.pixels, shift.data(), part.data());
    for (size_t i = 0; i < part.size(); ++i) stats[i] += part[i];
  }
  BnResult out;
  out.mean.resize(s.c), out.var.resize(s.c), out.inv_std.resize(s.c);
  cpu::batch_norm_moments(stats.data(), count, shift.data(), s.c, eps, out.mean.data(),
                          out.var.data(), out.inv_std.data());
  out.y.assign(x.size(), NAN);
  out.dx.assign(x.size(), NAN);
  out.dgamma.assign(s.c, 0.0f);
  out.dbeta.assign(s.c, 0.0f);
  std::vector<double> sums(2 * s.c, 0.0);
  Vec dg(s.c, NAN), db(s.c, NAN);
  for (int r = 0; r < replicas; ++r) {
    cpu::batch_norm_forward(x.data() + r * slice, rows, s.c, s.pixels, out.mean.data(),
                            out.inv_std.data(), gamma.data(), beta.data(), out.y.data() + r * slice);
    cpu::batch_norm_backward_stats(dy.data() + r * slice, x.data() + r * slice, rows, s.c,
                                   s.pixels, out.mean.data(), out.inv_std.data(), part.data(),
                                   dg.data(), db.data(), 0.0f);
    for (size_t i = 0; i < part.size(); ++i) sums[i] += part[i];
    for (int64_t c = 0; c < s.c; ++c) out.dgamma[c] += dg[c], out.dbeta[c] += db[c];
  }
  for (int r = 0; r < replicas; ++r) {
    cpu::batch_norm_backward_data(dy.data() + r * slice, x.data() + r * slice, rows, s.c,
                                  s.pixels, out.mean.data(), out.inv_std.data(), gamma.data(),
                                  sums.data(), count, out.dx.data() + r * slice);
  }
  return out;
}

const Shape kShapes[] = {{4, 3, 5 * 7}, {2, 1, 9}, {6, 5, 1} /* dense input */, {2, 2, 4 * 4}};

TEST(KernelsBatchNorm, TrainingMatchesReferenceAndFiniteDifferences) {
  const float eps = 1e-3f;
  uint32_t seed = 10;
  for (const auto& s : kShapes) {
    std::string what = "N";  // built by appending: GCC 12 warns (-Wrestrict) on "N" + to_string()
    what += std::to_string(s.n) + " C" + std::to_string(s.c) + " P" + std::to_string(s.pixels);
    // A mean far from zero tests the shifted sums.
    const auto x = random_vec(s.size(), seed++, 4.0f, 6.0f), dy = random_vec(s.size(), seed++, -1, 1);
    const auto gamma = random_vec(s.c, seed++, 0.5f, 1.5f), beta = random_vec(s.c, seed++, -1, 1);
    const auto shift = random_vec(s.c, seed++, 4.5f, 5.5f);
    const BnResult one = run_split(s, 1, x, dy, gamma, beta, shift, eps);
    DVec xd(x.begin(), x.end()), gd(gamma.begin(), gamma.end()), bd(beta.begin(), beta.end());
    auto loss = [&] {
      const DVec y = bn_reference(s, xd, gd, bd, eps);
      double l = 0;
      for (size_t i = 0; i < y.size(); ++i) l += y[i] * dy[i];
      return l;
    };
    expect_close(one.y, bn_reference(s, xd, gd, bd, eps), 2e-5, what + " y");
    expect_close(one.dx, numeric_grad(xd, loss), 1e-4, what + " dx");
    expect_close(one.dgamma, numeric_grad(gd, loss), 1e-4, what + " dgamma");
    expect_close(one.dbeta, numeric_grad(bd, loss), 1e-4, what + " dbeta");
    if (s.n % 2 != 0) continue;
    const BnResult two = run_split(s, 2, x, dy, gamma, beta, shift, eps);
    expect_close(two.y, DVec(one.y.begin(), one.y.end()), 1e-6, what + " 2 replicas y");
    expect_close(two.dx, DVec(one.dx.begin(), one.dx.end()), 1e-5, what + " 2 replicas dx");
    expect_close(two.dgamma, DVec(one.dgamma.begin(), one.dgamma.end()), 1e-5, what + " 2 replicas dgamma");
    expect_close(two.dbeta, DVec(one.dbeta.begin(), one.dbeta.end()), 1e-5, what + " 2 replicas dbeta");
  }
}

TEST(KernelsBatchNorm, StatisticsAreExactForAKnownChannel) {
  // Channel 0: {1, 2, 3, 4} -> mean 2.5, biased var 1.25; channel 1 constant 1e4 -> var 0.
  const Vec x = {1, 2, 1e4f, 1e4f, 3, 4, 1e4f, 1e4f};  // (N 2, C 2, pixels 2)
  const Vec shift = {0.0f, 9999.0f};
  std::vector<double> stats(4);
  cpu::batch_norm_stats(x.data(), 2, 2, 2, shift.data(), stats.data());
  EXPECT_EQ(stats[0], 10.0);
  EXPECT_EQ(stats[1], 4.0);
  EXPECT_EQ(stats[2], 30.0);
  EXPECT_EQ(stats[3], 4.0);
  Vec mean(2), var(2), inv_std(2);
  cpu::batch_norm_moments(stats.data(), 4.0, shift.data(), 2, 1e-3f, mean.data(), var.data(),
                          inv_std.data());
  EXPECT_EQ(mean[0], 2.5f);
  EXPECT_EQ(var[0], 1.25f);
  EXPECT_FLOAT_EQ(inv_std[0], static_cast<float>(1.0 / std::sqrt(1.251)));
  EXPECT_EQ(mean[1], 1e4f);
  EXPECT_EQ(var[1], 0.0f);
  // Null shift: the same moments for channel 0.
  cpu::batch_norm_stats(x.data(), 2, 2, 2, nullptr, stats.data());
  cpu::batch_norm_moments(stats.data(), 4.0, nullptr, 2, 1e-3f, mean.data(), var.data(),
                          inv_std.data());
  EXPECT_EQ(mean[0], 2.5f);
  EXPECT_EQ(var[0], 1.25f);
}

TEST(KernelsBatchNorm, MovingAveragesAndInference) {
  Vec moving_mean = {0.0f, 1.0f}, moving_var = {1.0f, 1.0f};
  const Vec mean = {2.0f, 3.0f}, var = {5.0f, 0.0f};
  cpu::batch_norm_update_moving(moving_mean.data(), moving_var.data(), mean.data(), var.data(), 2,
                                0.75f);
  EXPECT_FLOAT_EQ(moving_mean[0], 0.5f);  // 0.75 * 0 + 0.25 * 2
  EXPECT_FLOAT_EQ(moving_mean[1], 1.5f);
  EXPECT_FLOAT_EQ(moving_var[0], 2.0f);
  EXPECT_FLOAT_EQ(moving_var[1], 0.75f);
  const Vec x = {1.0f, 2.0f, 3.0f, 4.0f};  // (N 1, C 2, pixels 2)
  const Vec gamma = {2.0f, 1.0f}, beta = {0.5f, -1.0f};
  Vec y(4);
  cpu::batch_norm_inference(x.data(), 1, 2, 2, moving_mean.data(), moving_var.data(), gamma.data(),
                            beta.data(), 1e-3f, y.data());
  const double s0 = 1.0 / std::sqrt(2.001), s1 = 1.0 / std::sqrt(0.751);
  EXPECT_NEAR(y[0], 2.0 * (1.0 - 0.5) * s0 + 0.5, 1e-6);
  EXPECT_NEAR(y[1], 2.0 * (2.0 - 0.5) * s0 + 0.5, 1e-6);
  EXPECT_NEAR(y[2], (3.0 - 1.5) * s1 - 1.0, 1e-6);
  EXPECT_NEAR(y[3], (4.0 - 1.5) * s1 - 1.0, 1e-6);
}

TEST(KernelsBatchNorm, GradientAccumulatesWithBeta) {
  const Shape s{2, 2, 3};
  const auto x = random_vec(s.size(), 50, -1, 1), dy = random_vec(s.size(), 51, -1, 1);
  const Vec mean = {0.1f, -0.2f}, inv_std = {1.5f, 0.8f};
  std::vector<double> sums(4);
  Vec dg(2, NAN), db(2, NAN);
  cpu::batch_norm_backward_stats(dy.data(), x.data(), s.n, s.c, s.pixels, mean.data(),
                                 inv_std.data(), sums.data(), dg.data(), db.data(), 0.0f);
  Vec dg2 = dg, db2 = db;
  cpu::batch_norm_backward_stats(dy.data(), x.data(), s.n, s.c, s.pixels, mean.data(),
                                 inv_std.data(), sums.data(), dg2.data(), db2.data(), 0.5f);
  for (int c = 0; c < 2; ++c) {
    EXPECT_FLOAT_EQ(dg2[c], 1.5f * dg[c]);
    EXPECT_FLOAT_EQ(db2[c], 1.5f * db[c]);
    EXPECT_FLOAT_EQ(db[c], static_cast<float>(sums[c]));
  }
}

}  // namespace
}  // namespace lockstep
