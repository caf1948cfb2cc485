// ZeroIndex, gemm_nonzeros and gemm_nonzeros_t against the contract in
// kernels/cpu/ops.h: every element bitwise the scalar std::fma chain over its
// terms in ascending order (a zero's sign aside), for odd shapes, tails, padded
// leading dimensions (padding never written), all-zero rows and columns and NaN in
// A, negative entries; rows computed alone equal rows computed in a batch; within
// rounding of a double-precision product; and the index's bits, visited shares and
// choices. CMake also builds this test for AVX2 and for the scalar path.
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

constexpr float kSentinel = 12345.0f;

// This file is also built for AVX2 and for plain x86-64 (tests/CMakeLists.txt):
// a CPU without what the build uses skips rather than faults.
bool cpu_runs_this_build() {
#if defined(__AVX512F__)
  return __builtin_cpu_supports("avx512f");
#elif defined(__AVX2__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return true;
#endif
}

class ZeroSkipping : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu_runs_this_build()) GTEST_SKIP() << "this CPU lacks the ISA this test was built for";
  }
};

// A (m, k) with lda: about `zeros` of the entries exactly zero, the rest in
// (0, 1] like scaled pixels; row 1 (when there) all zero, column 2 all zero.
std::vector<float> sparse_matrix(int64_t m, int64_t k, int64_t lda, double zeros, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> val(0.0f, 1.0f);
  std::bernoulli_distribution zero(zeros);
  std::vector<float> a(size_t(m * lda), kSentinel);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      const bool z = zero(gen) || i == 1 || j == 2;
      a[size_t(i * lda + j)] = z ? 0.0f : std::max(val(gen), 1e-3f);
    }
  }
  return a;
}

std::vector<float> dense_matrix(int64_t rows, int64_t cols, int64_t ld, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> val(-1.0f, 1.0f);
  std::vector<float> b(size_t(rows * ld), kSentinel);
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) b[size_t(i * ld + j)] = val(gen);
  }
  return b;
}

// The contract, one element at a time: C = A B (forward) or A^T B, the zero terms
// left out (with finite B, leaving them in changes at most the sign of a zero).
float chain(const std::vector<float>& a, int64_t lda, const std::vector<float>& b, int64_t ldb,
            int64_t terms, int64_t row, int64_t col, bool transposed) {
  float acc = 0.0f;
  for (int64_t t = 0; t < terms; ++t) {
    const float x = transposed ? a[size_t(t * lda + row)] : a[size_t(row * lda + t)];
    if (x == 0.0f) continue;
    acc = std::fma(x, b[size_t(t * ldb + col)], acc);
  }
  return acc;
}

// Bitwise equal, or both zero (of either sign).
bool same_value(float x, float y) {
  return std::memcmp(&x, &y, sizeof x) == 0 || (x == 0.0f && y == 0.0f);
}

struct Shape {
  int64_t m, k, n;
};

std::vector<Shape> shapes() {
  return {{1, 1, 1},    {1, 784, 128}, {5, 3, 7},    {31, 17, 16},  {32, 16, 17},
          {33, 9, 40},  {64, 784, 128}, {70, 50, 129}, {100, 13, 300}, {3, 100, 1}};
}

// Every shape at padding 0 and `pad`: gemm_nonzeros (C = A B, B (k, n)) or, when
// transposed, gemm_nonzeros_t (C = A^T B, B (m, n)), each element against chain(),
// and C's padding columns never written.
void expect_chains(bool transposed, int64_t pad_to, uint32_t seed) {
  for (const Shape& s : shapes()) {
    for (const int64_t pad : {int64_t(0), pad_to}) {
      const int64_t lda = s.k + pad, ldb = s.n + pad, ldc = s.n + pad;
      const int64_t c_rows = transposed ? s.k : s.m, terms = transposed ? s.m : s.k;
      const auto a = sparse_matrix(s.m, s.k, lda, 0.5, seed++);
      const auto b = dense_matrix(terms, s.n, ldb, seed++);
      std::vector<float> c(size_t(c_rows * ldc), kSentinel);
      ZeroIndex ix;
      ix.build(a.data(), s.m, s.k, lda);
      if (transposed) {
        gemm_nonzeros_t(ix, b.data(), ldb, s.n, c.data(), ldc);
      } else {
        gemm_nonzeros(ix, b.data(), ldb, s.n, c.data(), ldc);
      }
      float largest = 0.0f, largest_b = 0.0f;  // of what was stored, and of B
      for (int64_t i = 0; i < terms; ++i) {
        for (int64_t j = 0; j < s.n; ++j) largest_b = std::max(largest_b, std::fabs(b[size_t(i * ldb + j)]));
      }
      for (int64_t i = 0; i < c_rows; ++i) {
        for (int64_t j = 0; j < ldc; ++j) {
          const float got = c[size_t(i * ldc + j)];
          const float want = j < s.n ? chain(a, lda, b, ldb, terms, i, j, transposed) : kSentinel;
          ASSERT_TRUE(same_value(got, want)) << "m=" << s.m << " k=" << s.k << " n=" << s.n
                                            << " pad=" << pad << " at (" << i << ", " << j
                                            << "): " << got << " vs " << want;
          if (j < s.n) largest = std::max(largest, std::fabs(got));
        }
      }
      if (transposed) {  // ZeroIndex::magnitude_bound's bound on the products, with room for rounding
        EXPECT_LE(double(largest), 1.001 * double(s.m) * ix.magnitude_bound() * largest_b)
            << "m=" << s.m << " k=" << s.k << " n=" << s.n << " pad=" << pad;
      }
    }
  }
}

TEST_F(ZeroSkipping, ForwardIsTheChainOverNonzerosBitwiseForAnyShape) { expect_chains(false, 3, 1); }

TEST_F(ZeroSkipping, WeightsAreTheChainOverNonzerosBitwiseForAnyShape) { expect_chains(true, 5, 100); }

// Independent of the contract's own formula: the products agree with a double
// sum within float rounding (k terms of magnitude <= 1).
TEST_F(ZeroSkipping, AgreesWithADoubleProduct) {
  const int64_t m = 40, k = 300, n = 70;
  const auto a = sparse_matrix(m, k, k, 0.6, 7);
  const auto b = dense_matrix(k, n, n, 8);
  const auto d = dense_matrix(m, n, n, 9);
  ZeroIndex ix;
  ix.build(a.data(), m, k, k);
  std::vector<float> c(size_t(m * n)), g(size_t(k * n));
  gemm_nonzeros(ix, b.data(), n, n, c.data(), n);
  gemm_nonzeros_t(ix, d.data(), n, n, g.data(), n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double want = 0.0;
      for (int64_t t = 0; t < k; ++t) want += double(a[size_t(i * k + t)]) * b[size_t(t * n + j)];
      EXPECT_NEAR(c[size_t(i * n + j)], want, 1e-5 * k);
    }
  }
  for (int64_t p = 0; p < k; ++p) {
    for (int64_t j = 0; j < n; ++j) {
      double want = 0.0;
      for (int64_t s = 0; s < m; ++s) want += double(a[size_t(s * k + p)]) * d[size_t(s * n + j)];
      EXPECT_NEAR(g[size_t(p * n + j)], want, 1e-5 * m);
    }
  }
}

// A row's output is the same alone as inside any batch: the other rows (and
// so the blocks the kernel visits) do not change a bit.
TEST_F(ZeroSkipping, ARowAloneEqualsTheSameRowInABatch) {
  const int64_t m = 45, k = 200, n = 130;
  const auto a = sparse_matrix(m, k, k, 0.5, 11);
  const auto b = dense_matrix(k, n, n, 12);
  ZeroIndex ix;
  ix.build(a.data(), m, k, k);
  std::vector<float> batch(size_t(m * n));
  std::vector<float> alone(static_cast<size_t>(n));
  gemm_nonzeros(ix, b.data(), n, n, batch.data(), n);
  for (int64_t i = 0; i < m; ++i) {
    ZeroIndex one;
    one.build(a.data() + i * k, 1, k, k);
    gemm_nonzeros(one, b.data(), n, n, alone.data(), n);
    for (int64_t j = 0; j < n; ++j) ASSERT_TRUE(same_value(alone[size_t(j)], batch[size_t(i * n + j)]));
  }
}

// NaN in A counts as nonzero: it reaches its row of C (forward) and its row of
// A^T B; an all-zero row of A gives a zero row.
TEST_F(ZeroSkipping, NanInAPropagates) {
  const int64_t m = 3, k = 4, n = 20;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> a = {0.5f, 0.0f, 0.25f, 0.0f,  //
                          0.0f, 0.0f, 0.0f,  0.0f,  //
                          0.0f, nan,  0.0f,  0.0f};
  const auto b = dense_matrix(k, n, n, 13);
  const auto d = dense_matrix(m, n, n, 14);
  ZeroIndex ix;
  ix.build(a.data(), m, k, k);
  EXPECT_EQ(ix.word(1, 0), 0b100u);
  EXPECT_EQ(ix.word(3, 0), 0u);
  std::vector<float> c(size_t(m * n)), g(size_t(k * n));
  gemm_nonzeros(ix, b.data(), n, n, c.data(), n);
  gemm_nonzeros_t(ix, d.data(), n, n, g.data(), n);
  for (int64_t j = 0; j < n; ++j) {
    EXPECT_TRUE(std::isfinite(c[size_t(j)]));
    EXPECT_EQ(c[size_t(n + j)], 0.0f);
    EXPECT_TRUE(std::isnan(c[size_t(2 * n + j)]));
    EXPECT_TRUE(std::isfinite(g[size_t(j)]));
    EXPECT_TRUE(std::isnan(g[size_t(n + j)]));
    EXPECT_EQ(g[size_t(3 * n + j)], 0.0f);
  }
}

TEST_F(ZeroSkipping, IndexBitsVisitedSharesAndChoice) {
  const int64_t m = 70, k = 37;
  const auto a = sparse_matrix(m, k, k + 1, 0.5, 21);
  ZeroIndex ix;
  ix.build(a.data(), m, k, k + 1);
  ASSERT_EQ(ix.words(), 3);
  for (int64_t col = 0; col < k; ++col) {
    for (int64_t r = 0; r < m; ++r) {
      const bool bit = (ix.word(col, r / ZeroIndex::kRowsPerWord) >> (r % ZeroIndex::kRowsPerWord)) & 1u;
      ASSERT_EQ(bit, a[size_t(r * (k + 1) + col)] != 0.0f) << "row " << r << " col " << col;
    }
  }
  // Independent zeros at 50%: nearly every block of 3 or more holds a nonzero.
  EXPECT_GT(ix.forward_visits(), 0.6);
  EXPECT_LT(ix.forward_visits(), 1.0);
  EXPECT_GE(ix.weights_visits(), ix.forward_visits() - 0.2);
  EXPECT_FALSE(ix.forward_pays() && ix.forward_visits() > 0.9);

  std::vector<float> zeros(size_t(m * k), 0.0f), ones(size_t(m * k), 1.0f);
  ix.build(zeros.data(), m, k, k);
  EXPECT_EQ(ix.forward_visits(), 0.0);
  EXPECT_EQ(ix.weights_visits(), 0.0);
  EXPECT_EQ(ix.forward_pays(), ZeroIndex::vectorized());
  EXPECT_EQ(ix.weights_pays(), ZeroIndex::vectorized());
  ix.build(ones.data(), m, k, k);
  EXPECT_EQ(ix.forward_visits(), 1.0);
  EXPECT_EQ(ix.weights_visits(), 1.0);
  EXPECT_FALSE(ix.forward_pays());
  EXPECT_FALSE(ix.weights_pays());
  // One nonzero per row: each row visits one block of columns.
  for (int64_t r = 0; r < m; ++r) zeros[size_t(r * k + r % k)] = 1.0f;
  ix.build(zeros.data(), m, k, k);
  EXPECT_GT(ix.forward_visits(), 0.0);
  EXPECT_LT(ix.forward_visits(), 0.1);
}

// Negative entries, both signs of B, and an infinity of B met by a nonzero of A.
TEST_F(ZeroSkipping, SignsAndAnInfinityMetByANonzero) {
  const int64_t m = 9, k = 21, n = 19;
  auto a = sparse_matrix(m, k, k, 0.5, 31);
  for (size_t i = 0; i < a.size(); i += 3) a[i] = -a[i];
  auto b = dense_matrix(k, n, n, 32);
  std::vector<float> c(size_t(m * n));
  ZeroIndex ix;
  ix.build(a.data(), m, k, k);
  gemm_nonzeros(ix, b.data(), n, n, c.data(), n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) ASSERT_TRUE(same_value(c[size_t(i * n + j)], chain(a, k, b, n, k, i, j, false)));
  }
  a[0] = 0.5f;  // row 0, column 0 nonzero, facing an infinite row of B
  for (int64_t j = 0; j < n; ++j) b[size_t(j)] = std::numeric_limits<float>::infinity();
  ix.build(a.data(), m, k, k);
  gemm_nonzeros(ix, b.data(), n, n, c.data(), n);
  for (int64_t j = 0; j < n; ++j) EXPECT_FALSE(std::isfinite(c[size_t(j)]));
}

// ZeroIndex::magnitude_bound of a matrix without negative entries is its largest
// entry (never one of the padding past k), wherever it sits (a full group of
// columns, the short last one, the scalar tail; any row of a word); a NaN makes
// it NaN, and a negative entry (-0 and -Inf too) makes it +Inf, not known.
TEST_F(ZeroSkipping, TheIndexBoundsTheMagnitudes) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (const Shape& s : shapes()) {
    const int64_t lda = s.k + 3;  // padding holds kSentinel, larger than any entry
    auto a = sparse_matrix(s.m, s.k, lda, 0.5, 21);
    ZeroIndex ix;
    ix.build(a.data(), s.m, s.k, lda);
    float largest = 0.0f;
    for (int64_t i = 0; i < s.m; ++i) {
      for (int64_t j = 0; j < s.k; ++j) largest = std::max(largest, a[size_t(i * lda + j)]);
    }
    EXPECT_EQ(ix.magnitude_bound(), largest) << "m=" << s.m << " k=" << s.k;
    for (const int64_t j : {int64_t(0), s.k / 2, s.k - 1}) {
      const int64_t i = s.m - 1, at = i * lda + j;
      const float keep = a[size_t(at)];
      for (const float x : {3e38f, inf, nan, -7.5f, -0.0f, -inf}) {
        a[size_t(at)] = x;
        ix.build(a.data(), s.m, s.k, lda);
        SCOPED_TRACE("m=" + std::to_string(s.m) + " k=" + std::to_string(s.k) + " A(" + std::to_string(i) + ", " +
                     std::to_string(j) + ") = " + std::to_string(x));
        if (std::isnan(x)) {
          EXPECT_TRUE(std::isnan(ix.magnitude_bound()));
        } else if (std::signbit(x)) {
          EXPECT_EQ(ix.magnitude_bound(), inf);
        } else {
          EXPECT_EQ(ix.magnitude_bound(), std::max(largest, x));
        }
      }
      a[size_t(at)] = keep;
    }
  }
}

TEST_F(ZeroSkipping, EmptyShapesAndBadLeadingDimensions) {
  std::vector<float> a(12, 1.0f), b(12, 1.0f), c(12, kSentinel);
  ZeroIndex ix;
  ix.build(a.data(), 0, 3, 3);
  gemm_nonzeros(ix, b.data(), 4, 4, c.data(), 4);  // no rows: nothing written
  for (int i = 0; i < 12; ++i) EXPECT_EQ(c[size_t(i)], kSentinel);
  gemm_nonzeros_t(ix, b.data(), 4, 4, c.data(), 4);  // k = 3 rows of empty sums
  for (int i = 0; i < 12; ++i) EXPECT_EQ(c[size_t(i)], 0.0f);
  ix.build(a.data(), 3, 0, 0);
  gemm_nonzeros(ix, b.data(), 4, 4, c.data(), 4);  // no columns: rows of empty sums
  for (int i = 0; i < 12; ++i) EXPECT_EQ(c[size_t(i)], 0.0f);
  ix.build(a.data(), 3, 4, 4);
  std::fill(c.begin(), c.end(), kSentinel);
  gemm_nonzeros(ix, b.data(), 0, 0, c.data(), 0);  // n = 0: nothing written
  gemm_nonzeros_t(ix, b.data(), 0, 0, c.data(), 0);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(c[size_t(i)], kSentinel);
  EXPECT_THROW(ix.build(a.data(), 3, 4, 3), std::invalid_argument);
  EXPECT_THROW(gemm_nonzeros(ix, b.data(), 2, 3, c.data(), 3), std::invalid_argument);
  EXPECT_THROW(gemm_nonzeros_t(ix, b.data(), 3, 3, c.data(), 2), std::invalid_argument);
}

}  // namespace
}  // namespace lockstep::cpu
