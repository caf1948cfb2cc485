// The GEMMs that skip an input batch's zeros (contract: ZeroIndex in ops.h).
// A ZeroIndex holds, per column of A and per 32 rows, a word whose bits say which
// rows are nonzero there. gemm_nonzeros walks a block of P columns of A (P rows of
// B held in registers) over the rows whose bits are set in any of them, adding
// each row's terms into its row of C; gemm_nonzeros_t keeps P rows of C in
// registers and walks the rows of A (and B) that touch them. A row visited for a
// block in which some of its entries are zero multiplies those too: each adds a
// signed zero, which leaves a chain's value alone (masking them off cost a quarter
// of the time on Zen 4).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/pack.h"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

namespace lockstep::cpu {
namespace {

#if defined(__AVX512F__)
// 16 lanes, 32 registers: blocks of 3 columns of A x 8 vectors (the fastest of
// the variants timed on Zen 4; for the weights 3 x 8 beat 5 x 4, 4 x 4 and 2 x 8
// once each vector of B is loaded once per visit, in_register).
struct V {
  static constexpr int kWidth = 16, kFwdCols = 3, kFwdVecs = 8, kWgtRows = 3, kWgtVecs = 8;
  // ZeroIndex::*_pays: the visited shares where gemm() (oneDNN) catches up, from
  // kernels_bench --data's fill sweep on Zen 4 (kernels/README.md).
  static constexpr double kFwdSwitch = 0.85, kWgtSwitch = 0.9;
  using T = __m512;
  static T zero() { return _mm512_setzero_ps(); }
  static T set1(float x) { return _mm512_set1_ps(x); }
  static T fma(T a, T b, T acc) { return _mm512_fmadd_ps(a, b, acc); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T load(const float* p, int len) {
    return _mm512_maskz_loadu_ps(__mmask16((1u << len) - 1), p);
  }
  static void store(float* p, T v, int len) {
    _mm512_mask_storeu_ps(p, __mmask16((1u << len) - 1), v);
  }
};
#elif defined(__AVX2__) && defined(__FMA__)
// 8 lanes, 16 registers: blocks of 3 x 4 (12 held, 3 broadcasts, 1 loaded; 2 x 4
// ran slower). The forward pays up to 0.62 visited, the weights up to 0.7
// (kernels/README.md).
struct V {
  static constexpr int kWidth = 8, kFwdCols = 3, kFwdVecs = 4, kWgtRows = 3, kWgtVecs = 4;
  static constexpr double kFwdSwitch = 0.62, kWgtSwitch = 0.7;
  using T = __m256;
  static T zero() { return _mm256_setzero_ps(); }
  static T set1(float x) { return _mm256_set1_ps(x); }
  static T fma(T a, T b, T acc) { return _mm256_fmadd_ps(a, b, acc); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static T load(const float* p, int len) { return _mm256_maskload_ps(p, detail::tail_mask(len)); }
  static void store(float* p, T v, int len) { _mm256_maskstore_ps(p, detail::tail_mask(len), v); }
};
#else
// One lane: exact (std::fma) and slow; ZeroIndex::vectorized() is false here, so
// training keeps gemm() and only the tests run this.
struct V {
  static constexpr int kWidth = 1, kFwdCols = 2, kFwdVecs = 4, kWgtRows = 2, kWgtVecs = 4;
  static constexpr double kFwdSwitch = 0.0, kWgtSwitch = 0.0;  // never pays
  using T = float;
  static T zero() { return 0.0f; }
  static T set1(float x) { return x; }
  static T fma(T a, T b, T acc) { return std::fma(a, b, acc); }
  static T load(const float* p) { return *p; }
  static void store(float* p, T v) { *p = v; }
  static T load(const float* p, int) { return *p; }
  static void store(float* p, T v, int) { *p = v; }
};
#endif

constexpr int W = V::kWidth;
constexpr int kRows = ZeroIndex::kRowsPerWord;

// Vector v of a chunk of CV vectors whose last one holds `tail` lanes when Tail.
template <int CV, bool Tail>
inline V::T load_vec(const float* p, int v, int tail) {
  return (Tail && v == CV - 1) ? V::load(p + v * W, tail) : V::load(p + v * W);
}
template <int CV, bool Tail>
inline void store_vec(float* p, int v, V::T x, int tail) {
  if (Tail && v == CV - 1) {
    V::store(p + v * W, x, tail);
  } else {
    V::store(p + v * W, x);
  }
}

// The set bits of the words of columns [p, p + np) for rows block w.
inline uint32_t block_bits(const ZeroIndex& ix, int64_t p, int np, int64_t w) {
  uint32_t u = 0;
  for (int i = 0; i < np; ++i) u |= ix.word(p + i, w);
  return u;
}

// Calls f(std::integral_constant<int, count>) for count in [1, N].
template <int N, class F>
void with_count(int count, F&& f) {
  if constexpr (N > 1) {
    if (count < N) return with_count<N - 1>(count, f);
  }
  f(std::integral_constant<int, N>{});
}

// Keeps x in a register: without this GCC folds a vector used by several FMAs
// into each of them as a memory operand, one load per FMA.
template <class T>
inline void in_register(T& x) {
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
  asm("" : "+v"(x));
#else
  (void)x;
#endif
}

// Row s's entries [p, p + P) of A, broadcast.
template <int P>
inline void row_terms(const float* as, V::T* av) {
#pragma GCC unroll 8
  for (int i = 0; i < P; ++i) av[i] = V::set1(as[i]);
}

// Rows [32w, 32w + 32) of C, columns [col0, col0 + CV*W) (less the tail), from
// the P columns of A at p: their terms added to C's rows in place.
template <int P, int CV, bool Tail>
void forward_block(const ZeroIndex& ix, int64_t w, int64_t p, const float* b, int64_t ldb,
                   float* c, int64_t ldc, int64_t col0, int tail) {
  uint32_t u = block_bits(ix, p, P, w);
  if (u == 0) return;
  const float* a = ix.matrix();
  const int64_t lda = ix.lda(), row0 = w * kRows;
  V::T bv[P][CV];
#pragma GCC unroll 8
  for (int i = 0; i < P; ++i) {
#pragma GCC unroll 8
    for (int v = 0; v < CV; ++v) bv[i][v] = load_vec<CV, Tail>(b + (p + i) * ldb + col0, v, tail);
  }
  while (u != 0) {
    const int64_t s = row0 + std::countr_zero(u);
    u &= u - 1;
    V::T av[P];
    row_terms<P>(a + s * lda + p, av);
    float* cs = c + s * ldc + col0;
#pragma GCC unroll 8
    for (int v = 0; v < CV; ++v) {
      V::T acc = load_vec<CV, Tail>(cs, v, tail);
#pragma GCC unroll 8
      for (int i = 0; i < P; ++i) acc = V::fma(av[i], bv[i][v], acc);
      store_vec<CV, Tail>(cs, v, acc, tail);
    }
  }
}

// Rows [p, p + P) of C = A^T B, columns [col0, col0 + CV*W) (less the tail).
template <int P, int CV, bool Tail>
void weights_block(const ZeroIndex& ix, int64_t p, const float* b, int64_t ldb, float* c,
                   int64_t ldc, int64_t col0, int tail) {
  const float* a = ix.matrix();
  const int64_t lda = ix.lda();
  V::T acc[P][CV];
#pragma GCC unroll 8
  for (int i = 0; i < P; ++i) {
#pragma GCC unroll 8
    for (int v = 0; v < CV; ++v) acc[i][v] = V::zero();
  }
  for (int64_t w = 0; w < ix.words(); ++w) {
    uint32_t u = block_bits(ix, p, P, w);
    while (u != 0) {
      const int64_t s = w * kRows + std::countr_zero(u);
      u &= u - 1;
      V::T av[P];
      row_terms<P>(a + s * lda + p, av);
      const float* bs = b + s * ldb + col0;
#pragma GCC unroll 8
      for (int v = 0; v < CV; ++v) {
        V::T d = load_vec<CV, Tail>(bs, v, tail);
        in_register(d);
#pragma GCC unroll 8
        for (int i = 0; i < P; ++i) acc[i][v] = V::fma(av[i], d, acc[i][v]);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < P; ++i) {
#pragma GCC unroll 8
    for (int v = 0; v < CV; ++v) store_vec<CV, Tail>(c + (p + i) * ldc + col0, v, acc[i][v], tail);
  }
}

// Calls block(p, P) over the blocks of P columns of A covering [0, k), the last
// with the columns that are left (a compile-time count, like P).
template <int P, class Block>
void over_blocks(int64_t k, Block&& block) {
  int64_t p = 0;
  for (; p + P <= k; p += P) block(p, std::integral_constant<int, P>{});
  if (p < k) with_count<P - 1>(int(k - p), [&](auto np) { block(p, np); });
}


// Calls chunk(col0, vecs, masked, tail) for the chunks of CV vectors covering the
// columns [0, n): vecs is CV but in a last, shorter chunk; masked says whether the
// chunk's last vector holds only `tail` lanes (both compile-time constants).
template <int CV, class Chunk>
void over_chunks(int64_t n, Chunk&& chunk) {
  int64_t col0 = 0;
  for (; col0 + CV * W <= n; col0 += CV * W) {
    chunk(col0, std::integral_constant<int, CV>{}, std::false_type{}, W);
  }
  const int64_t rest = n - col0;
  if (rest == 0) return;
  const int vecs = int((rest + W - 1) / W);
  const int tail = int(rest - int64_t(vecs - 1) * W);
  with_count<CV>(vecs, [&](auto cv) {
    if (tail == W) return chunk(col0, cv, std::false_type{}, W);
    chunk(col0, cv, std::true_type{}, tail);
  });
}

void check_ld(const char* what, int64_t ld, int64_t need) {
  if (ld < need) {
    throw std::invalid_argument(std::string(what) + ": leading dimension " + std::to_string(ld) +
                                " < " + std::to_string(need));
  }
}

}  // namespace

bool ZeroIndex::vectorized() { return W > 1; }
bool ZeroIndex::forward_pays() const { return vectorized() && forward_visits_ <= V::kFwdSwitch; }
bool ZeroIndex::weights_pays() const { return vectorized() && weights_visits_ <= V::kWgtSwitch; }

// The bits of rows [32w, 32w + 32): per column, which of them are nonzero.
void ZeroIndex::index_word(int64_t w) {
  const int64_t r0 = w * kRows, r1 = std::min(m_, r0 + kRows);
  const float* a = a_;
  int64_t col = 0;
#if defined(__AVX512F__)
  alignas(64) uint32_t lane[16];
  // Four groups of 16 columns at a time: each row is then read 256 bytes at a go
  // (four whole lines when a row starts on one) rather than a line per row per pass.
  const int64_t lda = lda_;
  alignas(64) uint32_t quad[4][16];
  for (; col + 64 <= k_; col += 64) {
    __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                      _mm512_setzero_si512()};
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = a + r * lda + col;
      const __m512i bit = _mm512_set1_epi32(int(1u << (r - r0)));
      for (int g = 0; g < 4; ++g) {
        const __mmask16 nz =
            _mm512_cmp_ps_mask(_mm512_loadu_ps(row + 16 * g), _mm512_setzero_ps(), _CMP_NEQ_UQ);
        acc[g] = _mm512_mask_or_epi32(acc[g], nz, acc[g], bit);
      }
    }
    for (int g = 0; g < 4; ++g) _mm512_store_si512(quad[g], acc[g]);
    for (int g = 0; g < 4; ++g) {
      for (int i = 0; i < 16; ++i) bits_[size_t((col + 16 * g + i) * words_ + w)] = quad[g][i];
    }
  }
  for (; col < k_; col += 16) {
    const int len = int(std::min<int64_t>(16, k_ - col));
    __m512i acc = _mm512_setzero_si512();
    for (int64_t r = r0; r < r1; ++r) {
      const __m512 x = V::load(a + r * lda_ + col, len);
      const __mmask16 nz = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NEQ_UQ);
      acc = _mm512_mask_or_epi32(acc, nz, acc, _mm512_set1_epi32(int(1u << (r - r0))));
    }
    _mm512_store_si512(lane, acc);
    for (int i = 0; i < len; ++i) bits_[size_t((col + i) * words_ + w)] = lane[i];
  }
#elif defined(__AVX2__) && defined(__FMA__)
  alignas(32) uint32_t lane[8];
  // Four groups of 8 columns at a time, as above: 128 bytes of each row at a go.
  const int64_t lda = lda_;
  alignas(32) uint32_t quad[4][8];
  for (; col + 32 <= k_; col += 32) {
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                      _mm256_setzero_si256()};
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = a + r * lda + col;
      const __m256i bit = _mm256_set1_epi32(int(1u << (r - r0)));
      for (int g = 0; g < 4; ++g) {
        const __m256 x = _mm256_loadu_ps(row + 8 * g);
        const __m256i nz = _mm256_castps_si256(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NEQ_UQ));
        acc[g] = _mm256_or_si256(acc[g], _mm256_and_si256(nz, bit));
      }
    }
    for (int g = 0; g < 4; ++g) _mm256_store_si256(reinterpret_cast<__m256i*>(quad[g]), acc[g]);
    for (int g = 0; g < 4; ++g) {
      for (int i = 0; i < 8; ++i) bits_[size_t((col + 8 * g + i) * words_ + w)] = quad[g][i];
    }
  }
  for (; col < k_; col += 8) {
    const int len = int(std::min<int64_t>(8, k_ - col));
    __m256i acc = _mm256_setzero_si256();
    for (int64_t r = r0; r < r1; ++r) {
      const __m256 x = V::load(a + r * lda_ + col, len);
      const __m256i nz = _mm256_castps_si256(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NEQ_UQ));
      acc = _mm256_or_si256(acc, _mm256_and_si256(nz, _mm256_set1_epi32(int(1u << (r - r0)))));
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(lane), acc);
    for (int i = 0; i < len; ++i) bits_[size_t((col + i) * words_ + w)] = lane[i];
  }
#endif
  for (; col < k_; ++col) {
    uint32_t u = 0;
    for (int64_t r = r0; r < r1; ++r) u |= uint32_t(!(a[r * lda_ + col] == 0.0f)) << (r - r0);
    bits_[size_t(col * words_ + w)] = u;
  }
}

// The share of (row, block of `block` columns) pairs with a nonzero in the block.
double ZeroIndex::visits(int block) const {
  int64_t visited = 0, blocks = 0;
  for (int64_t p = 0; p < k_; p += block, ++blocks) {
    const int np = int(std::min<int64_t>(block, k_ - p));
    for (int64_t w = 0; w < words_; ++w) visited += std::popcount(block_bits(*this, p, np, w));
  }
  return m_ * blocks > 0 ? double(visited) / double(m_ * blocks) : 1.0;
}

void ZeroIndex::build(const float* a, int64_t m, int64_t k, int64_t lda) {
  check_ld("ZeroIndex::build", lda, k);
  a_ = a, m_ = m, k_ = k, lda_ = lda;
  words_ = (m + kRows - 1) / kRows;
  bits_.resize(size_t(k * words_));  // index_word writes every entry
  for (int64_t w = 0; w < words_; ++w) index_word(w);
  forward_visits_ = visits(V::kFwdCols);
  weights_visits_ = V::kWgtRows == V::kFwdCols ? forward_visits_ : visits(V::kWgtRows);
}

void gemm_nonzeros(const ZeroIndex& a, const float* b, int64_t ldb, int64_t n, float* c,
                   int64_t ldc) {
  check_ld("gemm_nonzeros (B)", ldb, n);
  check_ld("gemm_nonzeros (C)", ldc, n);
  constexpr int P = V::kFwdCols, CV = V::kFwdVecs;
  for (int64_t w = 0; w < a.words(); ++w) {
    const int64_t r0 = w * kRows, r1 = std::min(a.rows(), r0 + kRows);
    for (int64_t r = r0; r < r1 && n > 0; ++r) std::memset(c + r * ldc, 0, sizeof(float) * size_t(n));
    over_chunks<CV>(n, [&](int64_t col0, auto cv, auto masked, int tail) {
      over_blocks<P>(a.cols(), [&](int64_t p, auto np) {
        forward_block<decltype(np)::value, decltype(cv)::value, decltype(masked)::value>(
            a, w, p, b, ldb, c, ldc, col0, tail);
      });
    });
  }
}

void gemm_nonzeros_t(const ZeroIndex& a, const float* b, int64_t ldb, int64_t n, float* c,
                     int64_t ldc) {
  check_ld("gemm_nonzeros_t (B)", ldb, n);
  check_ld("gemm_nonzeros_t (C)", ldc, n);
  constexpr int P = V::kWgtRows, CV = V::kWgtVecs;
  over_chunks<CV>(n, [&](int64_t col0, auto cv, auto masked, int tail) {
    over_blocks<P>(a.cols(), [&](int64_t p, auto np) {
      weights_block<decltype(np)::value, decltype(cv)::value, decltype(masked)::value>(
          a, p, b, ldb, c, ldc, col0, tail);
    });
  });
}

}  // namespace lockstep::cpu
