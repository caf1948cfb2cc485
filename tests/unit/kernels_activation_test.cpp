// Fused bias + activation and activation backward against independent double-precision
// formulas; backward checked by central finite differences of those formulas. Also
// bias_grad against exact column sums.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/ops.h"

namespace lockstep::cpu {
namespace {

// The documented activations, written out in double (GELU: tanh approximation).
double reference_act(Activation act, double x) {
  switch (act) {
    case Activation::kLinear: return x;
    case Activation::kRelu: return x > 0.0 ? x : 0.0;
    case Activation::kTanh: return std::tanh(x);
    case Activation::kSigmoid: return 1.0 / (1.0 + std::exp(-x));
    case Activation::kGelu: {
      const double c = std::sqrt(2.0 / M_PI);
      return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
    }
  }
  return 0.0;
}

const Activation kAll[] = {Activation::kLinear, Activation::kRelu, Activation::kTanh,
                           Activation::kSigmoid, Activation::kGelu};

// Values in [-4, 4], kept away from ReLU's kink at 0 so differences are meaningful.
std::vector<float> random_inputs(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
  std::vector<float> v(n);
  for (auto& x : v) {
    do x = dist(gen);
    while (std::abs(x) < 0.05f);
  }
  return v;
}

TEST(KernelsActivation, ForwardAddsBiasThenMatchesDoubleFormula) {
  const int64_t rows = 5, cols = 37;  // odd width: exercises vector tails
  for (Activation act : kAll) {
    auto z = random_inputs(rows * cols, 1);
    const auto z0 = z;
    const auto bias = random_inputs(cols, 2);
    std::vector<float> out(rows * cols, std::numeric_limits<float>::quiet_NaN());
    bias_activation_forward(z.data(), bias.data(), out.data(), rows, cols, act);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const size_t i = static_cast<size_t>(r * cols + c);
        const float pre = z0[i] + bias[c];
        ASSERT_EQ(z[i], pre) << "z must hold the biased pre-activation";
        const double want = reference_act(act, pre);
        ASSERT_NEAR(out[i], want, 2e-6 * (1.0 + std::abs(want)))
            << "activation " << static_cast<int>(act) << " at z=" << pre;
      }
    }
  }
}

TEST(KernelsActivation, LinearMayRunInPlace) {
  std::vector<float> z = {1.0f, -2.0f, 3.0f, 4.0f};
  const std::vector<float> bias = {0.5f, 0.25f};
  bias_activation_forward(z.data(), bias.data(), z.data(), 2, 2, Activation::kLinear);
  EXPECT_EQ(z, (std::vector<float>{1.5f, -1.75f, 3.5f, 4.25f}));
}

// dz must equal d_out * d act/dz, the derivative taken by central differences of the
// double formula (step 1e-4: truncation error ~1e-9, well under the float tolerance).
TEST(KernelsActivation, BackwardMatchesFiniteDifferences) {
  const int64_t n = 203;
  const double h = 1e-4;
  for (Activation act : kAll) {
    auto z = random_inputs(n, 3);
    const auto d_out = random_inputs(n, 4);
    std::vector<float> out(n), dz(n, std::numeric_limits<float>::quiet_NaN());
    const std::vector<float> zero_bias(n, 0.0f);
    bias_activation_forward(z.data(), zero_bias.data(), out.data(), 1, n, act);
    activation_backward(d_out.data(), z.data(), out.data(), dz.data(), n, act);
    for (int64_t i = 0; i < n; ++i) {
      const double fd =
          (reference_act(act, z[i] + h) - reference_act(act, z[i] - h)) / (2.0 * h);
      const double want = d_out[i] * fd;
      ASSERT_NEAR(dz[i], want, 1e-5 * (1.0 + std::abs(want)))
          << "activation " << static_cast<int>(act) << " at z=" << z[i];
    }
  }
}

TEST(KernelsActivation, BackwardMayRunInPlaceOnDOut) {
  for (Activation act : kAll) {
    auto z = random_inputs(19, 5);
    auto g = random_inputs(19, 6);
    std::vector<float> out(19), separate(19);
    const std::vector<float> zero_bias(19, 0.0f);
    bias_activation_forward(z.data(), zero_bias.data(), out.data(), 1, 19, act);
    activation_backward(g.data(), z.data(), out.data(), separate.data(), 19, act);
    activation_backward(g.data(), z.data(), out.data(), g.data(), 19, act);
    EXPECT_EQ(g, separate) << "activation " << static_cast<int>(act);
  }
}

// The same values at a different address (another replica's slice of the batch)
// must give bitwise the same outputs: no alignment-dependent scalar peeling.
TEST(KernelsActivation, ResultsDoNotDependOnAddress) {
  const int64_t n = 29;
  for (Activation act : kAll) {
    const auto z = random_inputs(n, 7);
    const auto g = random_inputs(n, 8);
    std::vector<float> out_a(n), dz_a(n), za = z;
    const std::vector<float> zero_bias(n + 5, 0.0f);
    bias_activation_forward(za.data(), zero_bias.data(), out_a.data(), 1, n, act);
    activation_backward(g.data(), za.data(), out_a.data(), dz_a.data(), n, act);
    for (int64_t shift : {1, 3, 5}) {
      std::vector<float> zb(n + shift), gb(n + shift), out_b(n + shift), dz_b(n + shift);
      std::copy(z.begin(), z.end(), zb.begin() + shift);
      std::copy(g.begin(), g.end(), gb.begin() + shift);
      bias_activation_forward(zb.data() + shift, zero_bias.data(), out_b.data() + shift, 1, n,
                              act);
      activation_backward(gb.data() + shift, zb.data() + shift, out_b.data() + shift,
                          dz_b.data() + shift, n, act);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(out_a[i], out_b[i + shift]) << "act " << static_cast<int>(act) << " i " << i;
        ASSERT_EQ(dz_a[i], dz_b[i + shift]) << "act " << static_cast<int>(act) << " i " << i;
      }
    }
  }
}

TEST(KernelsActivation, BiasGradIsColumnSumPlusBetaTimesOld) {
  const int64_t rows = 6, cols = 11;
  std::vector<float> dz(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dz[r * cols + c] = static_cast<float>(r * 100 + c);
  // Integers: the column sums are exact in float. Column c: sum_r (100 r + c) = 1500 + 6c.
  std::vector<float> db(cols, std::numeric_limits<float>::quiet_NaN());
  bias_grad(dz.data(), db.data(), rows, cols, 0.0f);
  for (int64_t c = 0; c < cols; ++c) EXPECT_EQ(db[c], 1500.0f + 6.0f * c);
  bias_grad(dz.data(), db.data(), rows, cols, 0.5f);
  for (int64_t c = 0; c < cols; ++c) EXPECT_EQ(db[c], 1.5f * (1500.0f + 6.0f * c));
}

}  // namespace
}  // namespace lockstep::cpu
