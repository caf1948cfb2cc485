// gemm (OpenBLAS or Eigen behind it) and gemm_eigen against a naive double-precision
// reference: all four transpose combinations, odd sizes, padded leading dimensions,
// alpha/beta, beta == 0 over NaN, argument errors, and concurrent calls from 2 threads.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/ops.h"

namespace lockstep::cpu {
namespace {

using GemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                        const float*, int64_t, float, float*, int64_t);

struct Case {
  bool ta, tb;
  int64_t m, n, k, pad_a, pad_b, pad_c;
  float alpha, beta;
};

std::vector<float> random_vec(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// C = alpha op(A) op(B) + beta C in double, element by element.
std::vector<double> reference(const Case& t, const std::vector<float>& a, int64_t lda,
                              const std::vector<float>& b, int64_t ldb,
                              const std::vector<float>& c, int64_t ldc) {
  std::vector<double> out(static_cast<size_t>(t.m * ldc));
  for (int64_t i = 0; i < t.m; ++i) {
    for (int64_t j = 0; j < t.n; ++j) {
      double acc = 0.0;
      for (int64_t p = 0; p < t.k; ++p) {
        const double av = t.ta ? a[p * lda + i] : a[i * lda + p];
        const double bv = t.tb ? b[j * ldb + p] : b[p * ldb + j];
        acc += av * bv;
      }
      const double old = t.beta == 0.0f ? 0.0 : t.beta * static_cast<double>(c[i * ldc + j]);
      out[i * ldc + j] = t.alpha * acc + old;
    }
  }
  return out;
}

void run_case(GemmFn fn, const Case& t, uint32_t seed) {
  const int64_t a_rows = t.ta ? t.k : t.m, a_cols = t.ta ? t.m : t.k;
  const int64_t b_rows = t.tb ? t.n : t.k, b_cols = t.tb ? t.k : t.n;
  const int64_t lda = a_cols + t.pad_a, ldb = b_cols + t.pad_b, ldc = t.n + t.pad_c;
  const auto a = random_vec(a_rows * lda, seed);
  const auto b = random_vec(b_rows * ldb, seed + 1);
  auto c = random_vec(t.m * ldc, seed + 2);
  if (t.beta == 0.0f) {
    for (int64_t i = 0; i < t.m; ++i)
      for (int64_t j = 0; j < t.n; ++j) c[i * ldc + j] = std::numeric_limits<float>::quiet_NaN();
  }
  const auto expect = reference(t, a, lda, b, ldb, c, ldc);
  const auto before = c;
  fn(t.ta, t.tb, t.m, t.n, t.k, t.alpha, a.data(), lda, b.data(), ldb, t.beta, c.data(), ldc);
  // Rounding bound: each term is <= |alpha| in size, so k float products + sum.
  const double tol = 1e-6 * (t.k + 2) * (std::abs(t.alpha) + 1.0);
  for (int64_t i = 0; i < t.m; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      const size_t idx = static_cast<size_t>(i * ldc + j);
      if (j >= t.n) {
        ASSERT_EQ(c[idx], before[idx]) << "padding column " << j << " of C was written";
      } else {
        ASSERT_NEAR(c[idx], expect[idx], tol)
            << "ta=" << t.ta << " tb=" << t.tb << " m=" << t.m << " n=" << t.n << " k=" << t.k
            << " at (" << i << "," << j << ")";
      }
    }
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      cases.push_back({ta, tb, 7, 5, 3, 0, 0, 0, 1.0f, 0.0f});
      cases.push_back({ta, tb, 13, 17, 11, 3, 1, 5, 0.5f, 0.0f});
      cases.push_back({ta, tb, 33, 9, 65, 2, 7, 1, -1.5f, 1.0f});
      cases.push_back({ta, tb, 64, 128, 79, 0, 0, 0, 1.0f, 0.25f});
      cases.push_back({ta, tb, 1, 1, 1, 4, 4, 4, 2.0f, -1.0f});
      cases.push_back({ta, tb, 3, 70, 1, 0, 2, 0, 1.0f, 1.0f});
    }
  }
  return cases;
}

TEST(KernelsGemm, AllTransposesOddSizesPaddedStridesMatchDoubleReference) {
  init_kernels();
  uint32_t seed = 1;
  for (const auto& t : all_cases()) run_case(&gemm, t, seed += 3);
}

TEST(KernelsGemm, EigenBackendMatchesDoubleReference) {
  uint32_t seed = 100;
  for (const auto& t : all_cases()) run_case(&gemm_eigen, t, seed += 3);
}

TEST(KernelsGemm, ZeroInnerDimensionScalesC) {
  std::vector<float> c = {1, 2, 3, 4};
  const float dummy = 0.0f;
  gemm(false, false, 2, 2, 0, 1.0f, &dummy, 1, &dummy, 2, 3.0f, c.data(), 2);
  EXPECT_EQ(c, (std::vector<float>{3, 6, 9, 12}));
  std::vector<float> nan_c(4, std::numeric_limits<float>::quiet_NaN());
  gemm(false, false, 2, 2, 0, 1.0f, &dummy, 1, &dummy, 2, 0.0f, nan_c.data(), 2);
  EXPECT_EQ(nan_c, (std::vector<float>(4, 0.0f)));
}

TEST(KernelsGemm, LeadingDimensionTooSmallThrows) {
  std::vector<float> a(64), b(64), c(64);
  EXPECT_THROW(gemm(false, false, 4, 4, 4, 1.0f, a.data(), 3, b.data(), 4, 0.0f, c.data(), 4),
               std::invalid_argument);
  // trans_a: A is (k, m) = (4, 6), so lda must be >= 6.
  EXPECT_THROW(gemm(true, false, 6, 4, 4, 1.0f, a.data(), 4, b.data(), 4, 0.0f, c.data(), 4),
               std::invalid_argument);
  EXPECT_THROW(gemm(false, true, 4, 4, 5, 1.0f, a.data(), 5, b.data(), 4, 0.0f, c.data(), 4),
               std::invalid_argument);
  EXPECT_THROW(gemm(false, false, 4, 5, 4, 1.0f, a.data(), 4, b.data(), 5, 0.0f, c.data(), 4),
               std::invalid_argument);
}

// Replicas are threads: two threads hammering gemm at once must each get exact results.
// A row computed alone (predict's or serve's last, 1-row batch) gives the bits the
// same row gives among others in a Dense layer's forward (A x W), at the MLP's
// widths and odd ones. (With B transposed, oneDNN's result for a row does depend
// on how many rows come with it; no prediction computes that product.)
TEST(KernelsGemm, ARowAloneMatchesTheSameRowAmongOthers) {
  struct Shape {
    int64_t n, k;
  };
  for (const Shape s : {Shape{128, 784}, Shape{10, 128}, Shape{784, 10}, Shape{7, 33}}) {
    for (const int64_t rows : {int64_t(48), int64_t(1024)}) {
      const bool trans_b = false;
      const std::vector<float> a = random_vec(size_t(rows * s.k), 11);
      const std::vector<float> b = random_vec(size_t(s.n * s.k), 12);
      const int64_t ldb = trans_b ? s.k : s.n;
      std::vector<float> all(size_t(rows * s.n)), one(size_t(s.n));
      gemm(false, trans_b, rows, s.n, s.k, 1.0f, a.data(), s.k, b.data(), ldb, 0.0f, all.data(), s.n);
      for (const int64_t r : {int64_t(0), int64_t(17), rows - 1}) {
        gemm(false, trans_b, 1, s.n, s.k, 1.0f, a.data() + r * s.k, s.k, b.data(), ldb, 0.0f,
             one.data(), s.n);
        for (int64_t j = 0; j < s.n; ++j)
          ASSERT_EQ(one[size_t(j)], all[size_t(r * s.n + j)])
              << "row " << r << ", column " << j << ", n " << s.n << ", k " << s.k
              << (trans_b ? ", B transposed" : "");
      }
    }
  }
}

// m == 1 with op(A) transposed and with beta: still one row of the product.
TEST(KernelsGemm, ARowAloneTransposedAndWithBeta) {
  const int64_t k = 19, n = 5, lda = 3;  // A is (k, 1) inside a (k, 3) buffer
  const std::vector<float> a = random_vec(size_t(k * lda), 21), b = random_vec(size_t(k * n), 22);
  std::vector<float> c = random_vec(size_t(n), 23);
  const std::vector<float> c0 = c;
  gemm(true, false, 1, n, k, 0.5f, a.data() + 1, lda, b.data(), n, 2.0f, c.data(), n);
  for (int64_t j = 0; j < n; ++j) {
    double want = 2.0 * c0[size_t(j)];
    for (int64_t i = 0; i < k; ++i) want += 0.5 * double(a[size_t(i * lda + 1)]) * b[size_t(i * n + j)];
    EXPECT_NEAR(c[size_t(j)], want, 1e-5) << "column " << j;
  }
}

TEST(KernelsGemm, ConcurrentCallsFromTwoThreadsAreCorrect) {
  init_kernels();
  const int64_t m = 64, n = 128, k = 784;
  const auto a = random_vec(m * k, 7), b = random_vec(k * n, 8);
  std::vector<float> expect(m * n), expect_eigen(m * n);
  gemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, expect.data(), n);
  gemm_eigen(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, expect_eigen.data(),
             n);
  int mismatches[2] = {0, 0};
  auto worker = [&](int id) {
    std::vector<float> c(m * n);
    for (int rep = 0; rep < 40; ++rep) {
      gemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
      if (c != expect) ++mismatches[id];
      gemm_eigen(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
      if (c != expect_eigen) ++mismatches[id];
    }
  };
  std::thread t0(worker, 0), t1(worker, 1);
  t0.join();
  t1.join();
  EXPECT_EQ(mismatches[0], 0);
  EXPECT_EQ(mismatches[1], 0);
}

}  // namespace
}  // namespace lockstep::cpu
