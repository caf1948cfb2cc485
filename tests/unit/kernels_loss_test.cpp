// Softmax cross-entropy and MSE: losses against double-precision formulas, gradients
// against central finite differences of those formulas, accuracy counting, extreme
// logits, aliasing, and the out-of-range label check.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/ops.h"

namespace lockstep::cpu {
namespace {

std::vector<float> random_vec(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// -log softmax(x)[label] for one row, in double.
double xent_row(const std::vector<double>& x, int32_t label) {
  double m = x[0];
  for (double v : x) m = std::max(m, v);
  double s = 0.0;
  for (double v : x) s += std::exp(v - m);
  return std::log(s) + m - x[label];
}

void check_softmax_against_fd(int64_t rows, int64_t classes) {
  const float scale = 0.125f;
  const auto logits = random_vec(rows * classes, 1, -3.0f, 3.0f);
  std::vector<int32_t> labels(rows);
  for (int64_t r = 0; r < rows; ++r) labels[r] = static_cast<int32_t>((r * 3) % classes);
  std::vector<float> grad(rows * classes, std::numeric_limits<float>::quiet_NaN());
  int64_t correct = 0;
  const double loss = softmax_xent(logits.data(), labels.data(), grad.data(), rows, classes,
                                   scale, &correct);
  double want_loss = 0.0;
  const double h = 1e-4;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> x(logits.begin() + r * classes, logits.begin() + (r + 1) * classes);
    want_loss += xent_row(x, labels[r]);
    for (int64_t j = 0; j < classes; ++j) {
      auto plus = x, minus = x;
      plus[j] += h;
      minus[j] -= h;
      const double fd = (xent_row(plus, labels[r]) - xent_row(minus, labels[r])) / (2 * h);
      ASSERT_NEAR(grad[r * classes + j], scale * fd, 1e-6) << "row " << r << " class " << j;
    }
  }
  EXPECT_NEAR(loss, want_loss, 1e-5 * want_loss);
  // Evaluation and training share the row math: bitwise the same loss.
  EXPECT_EQ(softmax_xent_loss(logits.data(), labels.data(), rows, classes, nullptr), loss);
}

// 10 classes: rows go 8 per vector; 70 classes: one row at a time along the row.
TEST(KernelsSoftmaxXent, LossAndGradientMatchFiniteDifferences) {
  for (int64_t classes : {10, 70}) {
    SCOPED_TRACE("classes " + std::to_string(classes));
    check_softmax_against_fd(11, classes);
  }
}

// A row's gradient must not depend on which rows share its call (replica split).
TEST(KernelsSoftmaxXent, SplitIntoTwoCallsGivesIdenticalRows) {
  for (int64_t classes : {10, 70}) {
    const int64_t rows = 13;
    const auto logits = random_vec(rows * classes, 5, -3.0f, 3.0f);
    std::vector<int32_t> labels(rows);
    for (int64_t r = 0; r < rows; ++r) labels[r] = static_cast<int32_t>((r * 7) % classes);
    std::vector<float> whole(logits.size()), split(logits.size());
    const double a = softmax_xent(logits.data(), labels.data(), whole.data(), rows, classes,
                                  1.0f, nullptr);
    double b = softmax_xent(logits.data(), labels.data(), split.data(), 5, classes, 1.0f, nullptr);
    b += softmax_xent(logits.data() + 5 * classes, labels.data() + 5, split.data() + 5 * classes,
                      rows - 5, classes, 1.0f, nullptr);
    EXPECT_EQ(whole, split) << "classes " << classes;
    EXPECT_NEAR(a, b, 1e-12 * a);
  }
}

TEST(KernelsSoftmaxXent, CountsFirstArgmaxMatches) {
  // Row 0: argmax 2 == label. Row 1: tie between 0 and 3, first max is 0 != label 3.
  // Row 2: argmax 1 != label 0. Row 3: all equal, first max 0 == label 0.
  const std::vector<float> logits = {0, 1, 5, 2, 9, 1, 1, 9, 0, 4, 1, 1, 3, 3, 3, 3};
  const std::vector<int32_t> labels = {2, 3, 0, 0};
  std::vector<float> grad(16);
  int64_t correct = 10;  // accumulates
  softmax_xent(logits.data(), labels.data(), grad.data(), 4, 4, 1.0f, &correct);
  EXPECT_EQ(correct, 12);
  int64_t eval_correct = 0;
  const double loss = softmax_xent_loss(logits.data(), labels.data(), 4, 4, &eval_correct);
  EXPECT_EQ(eval_correct, 2);
  // Row 3 is uniform over 4 classes: its loss is exactly log 4.
  EXPECT_NEAR(softmax_xent_loss(logits.data() + 12, labels.data() + 3, 1, 4, nullptr),
              std::log(4.0), 1e-7);
  EXPECT_GT(loss, 0.0);
}

TEST(KernelsSoftmaxXent, ExtremeLogitsStayFinite) {
  // Logits 1e4 apart: a naive exp overflows to inf; the stable form stays exact.
  const std::vector<float> logits = {1e4f, -1e4f, 0.0f, -1e4f, 1e4f, 1e4f};
  const std::vector<int32_t> labels = {0, 0};
  std::vector<float> grad(6);
  int64_t correct = 0;
  const double loss =
      softmax_xent(logits.data(), labels.data(), grad.data(), 2, 3, 1.0f, &correct);
  ASSERT_TRUE(std::isfinite(loss));
  // Row 0: p(label) = 1, loss 0. Row 1: two maxima at 1e4, label logit -1e4:
  // loss = log 2 + 1e4 - (-1e4).
  EXPECT_NEAR(loss, std::log(2.0) + 2e4, 1e-6);
  for (float g : grad) EXPECT_TRUE(std::isfinite(g));
  const std::vector<float> want = {0.0f, 0.0f, 0.0f, -1.0f, 0.5f, 0.5f};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(grad[i], want[i], 1e-7) << i;
  EXPECT_EQ(correct, 1);
  EXPECT_EQ(softmax_xent_loss(logits.data(), labels.data(), 2, 3, nullptr), loss);
}

TEST(KernelsSoftmaxXent, GradientMayOverwriteLogits) {
  auto logits = random_vec(30, 2, -2.0f, 2.0f);
  const std::vector<int32_t> labels = {1, 4, 0};
  std::vector<float> separate(30);
  const double a = softmax_xent(logits.data(), labels.data(), separate.data(), 3, 10, 0.5f,
                                nullptr);
  const double b = softmax_xent(logits.data(), labels.data(), logits.data(), 3, 10, 0.5f,
                                nullptr);
  EXPECT_EQ(a, b);
  EXPECT_EQ(logits, separate);
}

TEST(KernelsSoftmaxXent, LabelOutOfRangeThrowsNamingRow) {
  const std::vector<float> logits(6, 0.0f);
  std::vector<float> grad(6);
  for (int32_t bad : {-1, 3}) {
    const std::vector<int32_t> labels = {0, bad};
    try {
      softmax_xent(logits.data(), labels.data(), grad.data(), 2, 3, 1.0f, nullptr);
      FAIL() << "label " << bad << " accepted";
    } catch (const std::out_of_range& e) {
      EXPECT_NE(std::string(e.what()).find("row 1"), std::string::npos) << e.what();
    }
    EXPECT_THROW(softmax_xent_loss(logits.data(), labels.data(), 2, 3, nullptr),
                 std::out_of_range);
  }
}

double mse_row(const std::vector<double>& p, const float* t) {
  double s = 0.0;
  for (size_t j = 0; j < p.size(); ++j) s += (p[j] - t[j]) * (p[j] - t[j]);
  return s / static_cast<double>(p.size());
}

TEST(KernelsMse, LossAndGradientMatchFiniteDifferences) {
  const int64_t rows = 5, cols = 13;
  const float scale = 0.2f;
  const auto pred = random_vec(rows * cols, 3, -2.0f, 2.0f);
  const auto target = random_vec(rows * cols, 4, -2.0f, 2.0f);
  std::vector<float> grad(rows * cols, std::numeric_limits<float>::quiet_NaN());
  const double loss = mse(pred.data(), target.data(), grad.data(), rows, cols, scale);
  double want = 0.0;
  const double h = 1e-3;  // quadratic: central differences are exact up to rounding
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> p(pred.begin() + r * cols, pred.begin() + (r + 1) * cols);
    const float* t = target.data() + r * cols;
    want += mse_row(p, t);
    for (int64_t j = 0; j < cols; ++j) {
      auto plus = p, minus = p;
      plus[j] += h;
      minus[j] -= h;
      const double fd = (mse_row(plus, t) - mse_row(minus, t)) / (2 * h);
      ASSERT_NEAR(grad[r * cols + j], scale * fd, 1e-6) << "row " << r << " col " << j;
    }
  }
  EXPECT_NEAR(loss, want, 1e-6 * want);
  EXPECT_EQ(mse_loss(pred.data(), target.data(), rows, cols), loss);
}

TEST(KernelsMse, HandComputedAndInPlace) {
  // Row (1, 3) vs (0, 1): ((1)^2 + (2)^2) / 2 = 2.5; gradient 2 (p - t) / 2 = (1, 2).
  std::vector<float> pred = {1.0f, 3.0f};
  const std::vector<float> target = {0.0f, 1.0f};
  EXPECT_EQ(mse(pred.data(), target.data(), pred.data(), 1, 2, 1.0f), 2.5);
  EXPECT_EQ(pred, (std::vector<float>{1.0f, 2.0f}));
}

}  // namespace
}  // namespace lockstep::cpu
