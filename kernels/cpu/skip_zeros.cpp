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
#include <limits>
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
float ZeroIndex::magnitude_bound() const {
  // A pattern with the sign bit set: some entry is negative (or -0), and the
  // largest magnitude is not known.
  return top_ >= 0x80000000u ? std::numeric_limits<float>::infinity() : std::bit_cast<float>(top_);
}
bool ZeroIndex::forward_pays() const { return vectorized() && forward_visits_ <= V::kFwdSwitch; }
bool ZeroIndex::weights_pays() const { return vectorized() && weights_visits_ <= V::kWgtSwitch; }

namespace {

// The index's vector operations: mark(acc, x, bit) sets `bit` in each lane of
// acc whose float in x is nonzero (NaN counts as nonzero); widen(top, x) keeps
// lanewise the largest bit pattern of x as unsigned, which for floats without
// the sign bit orders as their values do (a NaN's above Inf's above every
// number's, as in all_finite) and exceeds all of them for one with it (one
// operation, where |x| would take two); load(p, len) reads len floats, the rest
// of the lanes 0.
#if defined(__AVX512F__)
struct Bits {
  using M = __m512i;
  static constexpr int kLanes = 16;
  static M zero() { return _mm512_setzero_si512(); }
  static M bit(int r) { return _mm512_set1_epi32(int(1u << r)); }
  static __m512 load(const float* p, int len) { return len == kLanes ? V::load(p) : V::load(p, len); }
  static M mark(M acc, __m512 x, M bit) {
    return _mm512_mask_or_epi32(acc, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NEQ_UQ), acc, bit);
  }
  static M widen(M top, M x) { return _mm512_max_epu32(top, x); }
  static M widen(M top, __m512 x) { return widen(top, _mm512_castps_si512(x)); }
  static void store(uint32_t* out, M acc) { _mm512_storeu_si512(out, acc); }
};
#elif defined(__AVX2__) && defined(__FMA__)
struct Bits {
  using M = __m256i;
  static constexpr int kLanes = 8;
  static M zero() { return _mm256_setzero_si256(); }
  static M bit(int r) { return _mm256_set1_epi32(int(1u << r)); }
  static __m256 load(const float* p, int len) { return len == kLanes ? V::load(p) : V::load(p, len); }
  static M mark(M acc, __m256 x, M bit) {
    const __m256i nz = _mm256_castps_si256(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NEQ_UQ));
    return _mm256_or_si256(acc, _mm256_and_si256(nz, bit));
  }
  static M widen(M top, M x) { return _mm256_max_epu32(top, x); }
  static M widen(M top, __m256 x) { return widen(top, _mm256_castps_si256(x)); }
  static void store(uint32_t* out, M acc) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), acc);
  }
};
#endif

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
// G groups of kLanes columns from col (the last group `last` wide), rows [r0, r1):
// each column's word of row bits into bits[column * words + w], and lanewise the
// largest bit patterns into `top`. Several groups at a time read each row G x 64
// bytes at a go (whole lines when a row starts on one) rather than a line per row
// per group (kernels/README.md: the index's times).
template <int G>
void mark_groups(const float* a, int64_t lda, int64_t r0, int64_t r1, int64_t col, int last,
                 uint32_t* bits, int64_t words, int64_t w, Bits::M& top) {
  constexpr int L = Bits::kLanes;
  Bits::M acc[G], most = top;
  for (int g = 0; g < G; ++g) acc[g] = Bits::zero();
  for (int64_t r = r0; r < r1; ++r) {
    const float* row = a + r * lda + col;
    const Bits::M bit = Bits::bit(int(r - r0));
    for (int g = 0; g < G; ++g) {
      const auto x = Bits::load(row + g * L, g == G - 1 ? last : L);
      acc[g] = Bits::mark(acc[g], x, bit);
      most = Bits::widen(most, x);
    }
  }
  uint32_t lane[G][L];
  for (int g = 0; g < G; ++g) Bits::store(lane[g], acc[g]);
  for (int g = 0; g < G; ++g) {
    for (int i = 0; i < (g == G - 1 ? last : L); ++i) bits[(col + g * L + i) * words + w] = lane[g][i];
  }
  top = most;
}
#endif

}  // namespace

// The bits of rows [32w, 32w + 32): per column, which of them are nonzero.
void ZeroIndex::index_word(int64_t w) {
  const int64_t r0 = w * kRows, r1 = std::min(m_, r0 + kRows);
  const float* a = a_;
  int64_t col = 0;
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
  constexpr int L = Bits::kLanes;
  Bits::M top = Bits::zero();
  for (; col + 4 * L <= k_; col += 4 * L) mark_groups<4>(a, lda_, r0, r1, col, L, bits_.data(), words_, w, top);
  for (; col < k_; col += L) {
    mark_groups<1>(a, lda_, r0, r1, col, int(std::min<int64_t>(L, k_ - col)), bits_.data(), words_, w, top);
  }
  uint32_t lane[L];
  Bits::store(lane, top);
  top_ = std::max(top_, *std::max_element(lane, lane + L));
#endif
  for (; col < k_; ++col) {
    uint32_t u = 0;
    for (int64_t r = r0; r < r1; ++r) {
      const float x = a[r * lda_ + col];
      u |= uint32_t(!(x == 0.0f)) << (r - r0);
      top_ = std::max(top_, std::bit_cast<uint32_t>(x));
    }
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
  top_ = 0;
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
