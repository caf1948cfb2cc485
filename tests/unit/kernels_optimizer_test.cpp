// Fused optimizer passes against hand-computed trajectories (3 steps, one parameter
// started at 1.0, gradients 0.5, then -0.25 / -0.3, then 1.0), repeated over 19
// elements so a vector body (8 or 16 lanes) and the scalar tail are both checked;
// Adam's every element against its formula written out in std::fma, bitwise; plus
// sum_squares, axpy and scale.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/ops.h"

namespace lockstep::cpu {
namespace {

constexpr int64_t kN = 19;  // two AVX2 vectors or one AVX-512 vector, and a 3-element tail

struct Expect {
  double p, slot1, slot2;  // param, then velocity or (m, v)
};

void expect_all(const std::vector<float>& x, double want, double tol, const char* what,
                int step) {
  for (int64_t i = 0; i < kN; ++i) {
    ASSERT_NEAR(x[i], want, tol) << what << " element " << i << " after step " << step;
    ASSERT_EQ(x[i], x[0]) << what << ": element " << i << " differs from element 0";
  }
}

void run_sgd(bool nesterov, const double (*grads), const Expect* want) {
  std::vector<float> p(kN, 1.0f), v(kN, 0.0f), g(kN);
  for (int step = 0; step < 3; ++step) {
    g.assign(kN, static_cast<float>(grads[step]));
    sgd_update(p.data(), g.data(), v.data(), kN, 0.1f, 0.9f, nesterov, 0.01f);
    expect_all(p, want[step].p, 1e-6, "param", step + 1);
    expect_all(v, want[step].slot1, 1e-6, "velocity", step + 1);
  }
}

// lr 0.1, momentum 0.9, wd 0.01. Step 1: g' = 0.5 + 0.01 = 0.51, v = 0.51,
// p = 1 - 0.051 = 0.949. Step 2: g' = 0.5 + 0.00949 = 0.50949, v = 0.459 + 0.50949.
TEST(KernelsOptimizer, SgdMomentumWithCoupledDecay) {
  const double grads[] = {0.5, 0.5, -0.3};
  const Expect want[] = {{0.949, 0.51, 0}, {0.852151, 0.96849, 0}, {0.794134749, 0.58016251, 0}};
  run_sgd(false, grads, want);
}

// Nesterov: p -= lr (g' + momentum v). Step 1: 1 - 0.1 (0.51 + 0.459) = 0.9031.
TEST(KernelsOptimizer, SgdNesterov) {
  const double grads[] = {0.5, 0.5, -0.3};
  const Expect want[] = {
      {0.9031, 0.51, 0}, {0.76507411, 0.968031, 0}, {0.742209958191, 0.5788786411, 0}};
  run_sgd(true, grads, want);
}

TEST(KernelsOptimizer, PlainSgdNeedsNoVelocity) {
  std::vector<float> p = {1.0f, 2.0f}, g = {0.5f, -1.0f};
  sgd_update(p.data(), g.data(), nullptr, 2, 0.5f, 0.0f, false, 0.0f);
  EXPECT_EQ(p, (std::vector<float>{0.75f, 2.5f}));
  EXPECT_THROW(sgd_update(p.data(), g.data(), nullptr, 2, 0.5f, 0.9f, false, 0.0f),
               std::invalid_argument);
}

void run_adam(float wd, bool decoupled, const Expect* want) {
  const double grads[] = {0.5, -0.25, 1.0};
  std::vector<float> p(kN, 1.0f), m(kN, 0.0f), v(kN, 0.0f), g(kN);
  for (int step = 1; step <= 3; ++step) {
    g.assign(kN, static_cast<float>(grads[step - 1]));
    adam_update(p.data(), g.data(), m.data(), v.data(), kN, 0.1f, 0.9f, 0.999f, 1e-8f, step, wd,
                decoupled);
    expect_all(p, want[step - 1].p, 2e-6, "param", step);
    expect_all(m, want[step - 1].slot1, 1e-7, "m", step);
    // 1 - 0.999f is 0.99998713e-3 in float, so v is off by ~1.3e-5 relative.
    expect_all(v, want[step - 1].slot2, 2e-5 * want[step - 1].slot2, "v", step);
  }
}

// lr 0.1, b1 0.9, b2 0.999, eps 1e-8. Step 1: m = 0.05, v = 2.5e-4, m^ = 0.5, v^ = 0.25,
// p = 1 - 0.1 * 0.5 / 0.5 = 0.9 (bias correction makes the first step exactly lr).
// Step 2 (g = -0.25): m = 0.02, v = 3.1225e-4, m^ = 0.02 / 0.19, v^ = 3.1225e-4 / 0.001999,
// p = 0.9 - 0.1 * 0.105263 / 0.395225 = 0.873366.
TEST(KernelsOptimizer, AdamBiasCorrection) {
  const Expect want[] = {{0.900000002, 0.05, 0.00025},
                         {0.8733662987, 0.02, 0.00031225},
                         {0.8075551397, 0.118, 0.00131193775}};
  run_adam(0.0f, false, want);
}

// Adam with L2 (coupled): the gradient becomes g + 0.1 p. Step 1: g' = 0.6.
TEST(KernelsOptimizer, AdamCoupledWeightDecay) {
  const Expect want[] = {{0.9000000017, 0.06, 0.00036},
                         {0.8544413675, 0.03800000002, 0.00038523999995},
                         {0.7815043999, 0.1427444137, 0.00156304373}};
  run_adam(0.1f, false, want);
}

// AdamW: p *= 1 - lr wd = 0.99 first, moments see the raw gradient.
// Step 1: p = 0.99 - 0.1 = 0.89.
TEST(KernelsOptimizer, AdamWDecoupledWeightDecay) {
  const Expect want[] = {{0.890000002, 0.05, 0.00025},
                         {0.8544662987, 0.02, 0.00031225},
                         {0.7801104767, 0.118, 0.00131193775}};
  run_adam(0.1f, true, want);
}

TEST(KernelsOptimizer, AdamRejectsStepZero) {
  std::vector<float> p(1), g(1), m(1), v(1);
  EXPECT_THROW(adam_update(p.data(), g.data(), m.data(), v.data(), 1, 0.1f, 0.9f, 0.999f, 1e-8f,
                           0, 0.0f, false),
               std::invalid_argument);
}

// ops.h's evaluation order, one element at a time with std::fma and std::sqrt: what
// every vector width must give bit for bit (a replica's update is the same on every
// machine that builds lockstep for a different ISA, and on the GPU).
void adam_by_formula(float& p, float grad, float& m, float& v, float lr, float b1, float b2,
                     float eps, int64_t step, float wd, bool decoupled) {
  const double bc1 = 1.0 - std::pow(double(b1), double(step));
  const double bc2 = 1.0 - std::pow(double(b2), double(step));
  const float step_size = float(lr / bc1), isb = float(1.0 / std::sqrt(bc2));
  const float g = std::fma(decoupled ? 0.0f : wd, p, grad);
  m = std::fma(b1, m, (1.0f - b1) * g);
  v = std::fma(b2, v, (1.0f - b2) * (g * g));
  const float denom = std::fma(std::sqrt(v), isb, eps);
  p = std::fma(-step_size, m / denom, p * (decoupled ? 1.0f - lr * wd : 1.0f));
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// 1003 elements of mixed magnitudes (tiny, huge, negative, zero gradients), 5 steps.
TEST(KernelsOptimizer, AdamGivesItsFormulasBitsForEveryElement) {
  for (const bool decoupled : {false, true}) {
    const int64_t n = 1003;
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    std::vector<float> p(n), m(n, 0.0f), v(n, 0.0f), g(n);
    for (auto& x : p) x = unit(rng);
    std::vector<float> pw = p, mw = m, vw = v;
    for (int64_t step = 1; step <= 5; ++step) {
      for (int64_t i = 0; i < n; ++i) {
        const float magnitude = std::pow(10.0f, float(int(i % 13) - 8));  // 1e-8 .. 1e4
        g[size_t(i)] = i % 17 == 0 ? 0.0f : unit(rng) * magnitude;
      }
      adam_update(p.data(), g.data(), m.data(), v.data(), n, 3e-3f, 0.9f, 0.999f, 1e-7f, step,
                  0.01f, decoupled);
      for (int64_t i = 0; i < n; ++i) {
        const size_t e = size_t(i);
        adam_by_formula(pw[e], g[e], mw[e], vw[e], 3e-3f, 0.9f, 0.999f, 1e-7f, step, 0.01f,
                        decoupled);
        ASSERT_TRUE(same_bits(p[e], pw[e]) && same_bits(m[e], mw[e]) && same_bits(v[e], vw[e]))
            << "element " << i << ", step " << step << (decoupled ? ", AdamW" : ", Adam")
            << ": p " << p[e] << " want " << pw[e] << ", m " << m[e] << " want " << mw[e]
            << ", v " << v[e] << " want " << vw[e];
      }
    }
  }
}

// The gradient as parts (GradientParts): each element summed left to right in
// float, then the update, gives the bits of the update of that sum, for 1, 2, 3
// and 5 parts, an offset into the parts and lengths with and without a vector
// tail; Adam and AdamW against adam_by_formula, SGD (momentum, Nesterov, none)
// against sgd_update on the summed array.
TEST(KernelsOptimizer, GradientPartsAreSummedLeftToRightBeforeTheUpdate) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  for (const int count : {1, 2, 3, 5}) {
    for (const int64_t n : {int64_t(1), int64_t(16), int64_t(45), int64_t(1003)}) {
      const int64_t offset = 7;
      std::vector<std::vector<float>> parts(size_t(count), std::vector<float>(size_t(n + offset)));
      for (int k = 0; k < count; ++k) {
        for (int64_t i = 0; i < n + offset; ++i) {
          // mixed magnitudes, so the order of the sum shows in its rounding
          parts[size_t(k)][size_t(i)] = unit(rng) * std::pow(10.0f, float(int((i + k) % 9) - 4));
        }
      }
      std::vector<const float*> ptrs;
      for (const auto& v : parts) ptrs.push_back(v.data());
      std::vector<float> sum(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        float x = parts[0][size_t(offset + i)];
        for (int k = 1; k < count; ++k) x += parts[size_t(k)][size_t(offset + i)];
        sum[size_t(i)] = x;
      }
      if (count >= 3 && n == 1003) {  // summed right to left, some elements round differently
        int64_t differs = 0;
        for (int64_t i = 0; i < n; ++i) {
          float x = parts[size_t(count - 1)][size_t(offset + i)];
          for (int k = count - 2; k >= 0; --k) x += parts[size_t(k)][size_t(offset + i)];
          differs += same_bits(x, sum[size_t(i)]) ? 0 : 1;
        }
        EXPECT_GT(differs, 0) << count << " parts: the test could not tell the order of the sum";
      }
      // the sum stored into two copies (each with the offset), or none
      std::vector<std::vector<float>> copies(2, std::vector<float>(static_cast<size_t>(n + offset), -7.0f));
      std::vector<float*> copy_ptrs = {copies[0].data(), copies[1].data()};
      const GradientParts g{ptrs.data(), count, offset, copy_ptrs.data(), std::min(count - 1, 2)};
      for (int c = 0; c < 2; ++c) {
        copies[size_t(c)].assign(copies[size_t(c)].size(), -7.0f);
      }
      for (const bool decoupled : {false, true}) {
        std::vector<float> p(static_cast<size_t>(n)), m(static_cast<size_t>(n), 0.0f), v(static_cast<size_t>(n), 0.0f);
        for (auto& x : p) x = unit(rng);
        std::vector<float> pw = p, mw = m, vw = v;
        for (int64_t step = 1; step <= 3; ++step) {
          adam_update(p.data(), g, m.data(), v.data(), n, 3e-3f, 0.9f, 0.999f, 1e-7f, step, 0.01f, decoupled);
          for (int64_t i = 0; i < n; ++i) {
            const size_t e = size_t(i);
            adam_by_formula(pw[e], sum[e], mw[e], vw[e], 3e-3f, 0.9f, 0.999f, 1e-7f, step, 0.01f, decoupled);
            ASSERT_TRUE(same_bits(p[e], pw[e]) && same_bits(m[e], mw[e]) && same_bits(v[e], vw[e]))
                << count << " parts, n " << n << ", element " << i << ", step " << step;
          }
        }
      }
      for (int c = 0; c < 2; ++c) {  // the copies hold the sum where the update stored it, nothing else
        const bool stored = c < g.ncopies;
        for (int64_t i = 0; i < n + offset; ++i) {
          const float want = stored && i >= offset ? sum[size_t(i - offset)] : -7.0f;
          ASSERT_TRUE(same_bits(copies[size_t(c)][size_t(i)], want)) << count << " parts, copy " << c << ", n " << n
                                                                   << ", element " << i;
        }
      }
      for (const float momentum : {0.0f, 0.9f}) {
        for (const bool nesterov : {false, true}) {
          std::vector<float> p(size_t(n), 0.5f), vel(size_t(n), 0.0f);
          std::vector<float> pw = p, velw = vel;
          for (int step = 0; step < 3; ++step) {
            sgd_update(p.data(), g, momentum == 0.0f ? nullptr : vel.data(), n, 0.1f, momentum, nesterov, 0.01f);
            sgd_update(pw.data(), sum.data(), momentum == 0.0f ? nullptr : velw.data(), n, 0.1f, momentum,
                       nesterov, 0.01f);
          }
          for (int64_t i = 0; i < n; ++i) {
            ASSERT_TRUE(same_bits(p[size_t(i)], pw[size_t(i)]) && same_bits(vel[size_t(i)], velw[size_t(i)]))
                << "sgd, " << count << " parts, n " << n << ", element " << i;
          }
        }
      }
    }
  }
  const float* none[] = {nullptr};
  std::vector<float> p(4), m(4), v(4);
  EXPECT_THROW(adam_update(p.data(), GradientParts{none, 0, 0, nullptr, 0}, m.data(), v.data(), 4, 0.1f, 0.9f, 0.999f,
                           1e-8f, 1, 0.0f, false),
               std::invalid_argument);
}

TEST(KernelsVectorOps, SumSquaresIsExactOnIntegers) {
  std::vector<float> x(1001);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);
  // sum_{i<1001} i^2 = 1000 * 1001 * 2001 / 6 = 333833500, exact in double.
  EXPECT_EQ(sum_squares(x.data(), 1001), 333833500.0);
  EXPECT_EQ(sum_squares(x.data(), 0), 0.0);
  x[17] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(sum_squares(x.data(), 1001)));
  x[17] = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(std::isinf(sum_squares(x.data(), 1001)));
  x[17] = 3e30f;  // its square overflows float but not the double accumulator
  EXPECT_TRUE(std::isfinite(sum_squares(x.data(), 1001)));
}

TEST(KernelsVectorOps, AllFiniteFindsEveryNonFiniteAtEveryPosition) {
  // 9000 elements: two whole 4096-element blocks and a partial one.
  const int64_t n = 9000;
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = (i % 2 ? -1.0f : 1.0f) * float(i) * 1e30f;
  x[1] = std::numeric_limits<float>::max();
  x[2] = -std::numeric_limits<float>::max();
  x[3] = std::numeric_limits<float>::denorm_min();
  x[4] = -0.0f;
  EXPECT_TRUE(all_finite(x.data(), n));
  EXPECT_TRUE(all_finite(x.data(), 0));
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::signaling_NaN(),
                       std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  for (const float b : bad) {
    for (const int64_t at : {int64_t(0), int64_t(4095), int64_t(4096), int64_t(8999)}) {
      const float keep = x[size_t(at)];
      x[size_t(at)] = b;
      EXPECT_FALSE(all_finite(x.data(), n)) << b << " at " << at;
      EXPECT_TRUE(all_finite(x.data(), at)) << "the elements before " << at << " are finite";
      x[size_t(at)] = keep;
    }
  }
}

// max_abs: the largest magnitude exactly, wherever it sits and whatever its
// sign; a NaN anywhere makes it NaN, an Inf (without a NaN) Inf.
TEST(KernelsVectorOps, MaxAbsIsTheLargestMagnitudeOrNonFinite) {
  const int64_t n = 1037;
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = (i % 3 ? -1.0f : 1.0f) * float(i % 101) * 0.25f;
  EXPECT_EQ(max_abs(x.data(), 0), 0.0f);
  EXPECT_EQ(max_abs(x.data(), n), 25.0f);
  for (const int64_t at : {int64_t(0), int64_t(515), n - 1}) {
    const float inf = std::numeric_limits<float>::infinity();
    for (const float big : {-std::numeric_limits<float>::max(), 3e38f, -26.5f, inf}) {
      const float keep = x[size_t(at)];
      x[size_t(at)] = big;
      EXPECT_EQ(max_abs(x.data(), n), std::fabs(big)) << big << " at " << at;
      EXPECT_EQ(max_abs(x.data(), at), at == 0 ? 0.0f : 25.0f) << "the elements before " << at;
      x[size_t(at)] = keep;
    }
    auto y = x;
    y[size_t(n - 1 - at)] = -std::numeric_limits<float>::infinity();
    y[size_t(at)] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_TRUE(std::isnan(max_abs(y.data(), n))) << "a NaN at " << at << " and an Inf";
    y[size_t(at)] = x[size_t(at)];
    EXPECT_EQ(max_abs(y.data(), n), std::numeric_limits<float>::infinity()) << "an Inf at " << n - 1 - at;
  }
}

TEST(KernelsVectorOps, AxpyAndScale) {
  std::vector<float> x(13), y(13);
  for (int i = 0; i < 13; ++i) {
    x[i] = static_cast<float>(i);
    y[i] = 1.0f;
  }
  axpy(13, 0.5f, x.data(), y.data());
  for (int i = 0; i < 13; ++i) EXPECT_EQ(y[i], 1.0f + 0.5f * i);
  scale(y.data(), 13, -2.0f);
  for (int i = 0; i < 13; ++i) EXPECT_EQ(y[i], -2.0f - i);
}

}  // namespace
}  // namespace lockstep::cpu
