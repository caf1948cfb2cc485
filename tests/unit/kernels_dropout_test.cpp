// Counter-based dropout: the mask is independent of how rows are split across calls,
// matches the shared hash element by element, keeps about 1 - rate of the elements,
// and backward applies exactly the forward mask.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/ops.h"
#include "kernels/host_device.h"

namespace lockstep::cpu {
namespace {

std::vector<float> counting(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 1.0f + static_cast<float>(i % 97);
  return v;
}

TEST(KernelsDropout, MaskDoesNotDependOnHowRowsAreSplit) {
  const int64_t rows = 10, cols = 37;  // 37: vector body plus a tail
  const uint64_t seed = 1234;
  auto whole = counting(rows * cols);
  auto split = whole;
  dropout_forward(whole.data(), rows, cols, 0.4f, seed, 100);
  dropout_forward(split.data(), 4, cols, 0.4f, seed, 100);
  dropout_forward(split.data() + 4 * cols, 6, cols, 0.4f, seed, 104);
  EXPECT_EQ(whole, split);
}

TEST(KernelsDropout, EachElementFollowsTheSharedHash) {
  const int64_t rows = 9, cols = 45;
  const float rate = 0.25f;
  const uint64_t seed = 99;
  const auto x0 = counting(rows * cols);
  auto x = x0;
  dropout_forward(x.data(), rows, cols, rate, seed, 7);
  const uint32_t threshold = kernels::dropout_threshold(rate);
  const float keep_scale = 1.0f / (1.0f - rate);
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t key = kernels::dropout_row_key(seed, 7 + r);
    for (int64_t c = 0; c < cols; ++c) {
      const size_t i = static_cast<size_t>(r * cols + c);
      const bool keep = kernels::dropout_bits(key, c) >= threshold;
      ASSERT_EQ(x[i], keep ? x0[i] * keep_scale : 0.0f) << "row " << r << " col " << c;
    }
  }
}

TEST(KernelsDropout, KeepRateIsNearOneMinusRate) {
  const int64_t rows = 1000, cols = 1000;
  for (float rate : {0.1f, 0.5f, 0.8f}) {
    std::vector<float> x(rows * cols, 1.0f);
    dropout_forward(x.data(), rows, cols, rate, 42, 0);
    int64_t kept = 0, kept_col0 = 0, kept_row0 = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const bool k = x[r * cols + c] != 0.0f;
        kept += k;
        if (c == 0) kept_col0 += k;
        if (r == 0) kept_row0 += k;
      }
    }
    const double p = 1.0 - rate;
    // 6 standard deviations of a binomial proportion: a false alarm is ~1e-9.
    const double sd_all = std::sqrt(p * (1 - p) / (rows * cols));
    const double sd_line = std::sqrt(p * (1 - p) / rows);
    EXPECT_NEAR(static_cast<double>(kept) / (rows * cols), p, 6 * sd_all) << "rate " << rate;
    EXPECT_NEAR(static_cast<double>(kept_col0) / rows, p, 6 * sd_line) << "rate " << rate;
    EXPECT_NEAR(static_cast<double>(kept_row0) / cols, p, 6 * sd_line) << "rate " << rate;
  }
}

TEST(KernelsDropout, DifferentSeedsGiveUnrelatedMasks) {
  const int64_t n = 200000;
  std::vector<float> a(n, 1.0f), b(n, 1.0f);
  dropout_forward(a.data(), 1, n, 0.5f, 1, 0);
  dropout_forward(b.data(), 1, n, 0.5f, 2, 0);
  int64_t same = 0;
  for (int64_t i = 0; i < n; ++i) same += (a[i] != 0.0f) == (b[i] != 0.0f);
  // Independent masks agree on half the elements (sd 0.0011).
  EXPECT_NEAR(static_cast<double>(same) / n, 0.5, 0.01);
}

TEST(KernelsDropout, BackwardAppliesTheForwardMask) {
  const int64_t rows = 6, cols = 21;
  std::vector<float> x(rows * cols, 3.0f), dx(rows * cols, 3.0f);
  dropout_forward(x.data(), rows, cols, 0.3f, 5, 11);
  dropout_backward(dx.data(), rows, cols, 0.3f, 5, 11);
  EXPECT_EQ(x, dx);
  int64_t dropped = 0;
  for (float v : dx) dropped += v == 0.0f;
  EXPECT_GT(dropped, 0);
  EXPECT_LT(dropped, rows * cols);
}

TEST(KernelsDropout, EdgeRatesAndBadRates) {
  auto x = counting(50);
  const auto x0 = x;
  dropout_forward(x.data(), 5, 10, 0.0f, 1, 0);
  EXPECT_EQ(x, x0);
  dropout_forward(x.data(), 5, 10, 1.0f, 1, 0);
  EXPECT_EQ(x, std::vector<float>(50, 0.0f));
  EXPECT_THROW(dropout_forward(x.data(), 5, 10, -0.1f, 1, 0), std::invalid_argument);
  EXPECT_THROW(dropout_backward(x.data(), 5, 10, 1.5f, 1, 0), std::invalid_argument);
  EXPECT_THROW(dropout_forward(x.data(), 5, 10, std::nanf(""), 1, 0), std::invalid_argument);
}

}  // namespace
}  // namespace lockstep::cpu
