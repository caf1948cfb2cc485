// CPU compute kernels. kernels/cuda/ops.h declares the same operations with the
// same names and arguments (device pointers plus a stream context) so tests can
// compare the two. All matrices are row-major; shapes are given in comments.
// Every function is single-threaded: a replica owns one core, parallelism comes
// from replicas.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lockstep {

// kGelu is the tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
// (as in GPT-2 / Keras gelu(approximate=True)), on CPU and CUDA alike.
enum class Activation { kLinear, kRelu, kTanh, kSigmoid, kGelu };

namespace cpu {

// Which GEMM library is behind gemm(): "onednn", "openblas" or "eigen".
const char* gemm_backend();
// The same with its version and the kernel or ISA it chose on this CPU (results
// differ in the last bits between libraries and kernels; baselines record it).
std::string gemm_library();
// Call once per process before any replica thread runs (pins BLAS to 1 thread).
void init_kernels();

// C (m, n) = alpha * op(A) * op(B) + beta * C.
// op(A) is (m, k): A is (m, k) with lda >= k, or (k, m) with lda >= m when trans_a.
// op(B) is (k, n): B is (k, n) with ldb >= n, or (n, k) with ldb >= k when trans_b.
// beta == 0 never reads C (it may hold NaN). Leading dimensions too small for the
// widths throw std::invalid_argument. Safe to call from several threads at once.
// m == 1 runs as two equal rows: the libraries' single-row path (a matrix-vector
// product) sums in another order than their kernels for several rows, so a row
// alone would come out unlike the same row computed among others.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc);
// The same contract, always through Eigen (the fallback behind gemm() without
// OpenBLAS; exposed so tests and benchmarks can compare the two backends).
void gemm_eigen(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                int64_t ldc);

// GEMMs that skip the zeros of their A operand: the network's input batch, whose
// pixels are often mostly zero (Fashion-MNIST: half of them), in the first layer's
// two big products z = x W and dW = x^T dz. A ZeroIndex records, one bit per entry,
// which entries of a row-major (m, k) matrix are nonzero (NaN counts as nonzero);
// gemm_nonzeros and gemm_nonzeros_t read A through it, so A must stay alive and
// unchanged from build() to the last product that uses the index.
//
// Every element of C is ONE fused multiply-add chain, from +0, over the terms of
// its sum in ascending order of the summed index. Terms whose entry of A is zero
// are left out where A's row is zero across a whole block of adjacent columns (the
// kernels' unit of work), and multiplied in elsewhere: a zero term adds a signed
// zero, which can change only the sign of a sum that is exactly zero. So for
// finite B every element equals, up to the sign of a zero, the plain chain over all
// its terms: the same value whatever m, the other rows, the blocking or the ISA
// (AVX-512, AVX2 and the scalar path agree). Where B holds an infinity or NaN, a
// zero of A that meets it may or may not make that element NaN. C must not alias A
// or B; leading dimensions smaller than the widths throw std::invalid_argument.
class ZeroIndex {
 public:
  static constexpr int kRowsPerWord = 32;

  // Indexes A (m, k), row-major with lda >= k. Reuses its memory across calls.
  void build(const float* a, int64_t m, int64_t k, int64_t lda);
  // Whether the zero skipping is compiled for this ISA (AVX-512, or AVX2 with FMA);
  // elsewhere the kernels run a scalar loop, exact but slow, and never pay.
  static bool vectorized();
  // The share of (row, block of columns) pairs gemm_nonzeros visits, and of
  // (block of columns, row) pairs gemm_nonzeros_t visits: 1 when every block holds
  // a nonzero in every row.
  double forward_visits() const { return forward_visits_; }
  double weights_visits() const { return weights_visits_; }
  // Whether each product beats gemm() on this input: vectorized() and its visited
  // share at most the switch point measured for this ISA (kernels/README.md).
  bool forward_pays() const;
  bool weights_pays() const;
  // An upper bound on every |entry| of A, found while indexing: the largest
  // entry where none has its sign bit set (images), else +Inf (not known); NaN
  // or +Inf where an entry is not finite. With B's, it bounds the products':
  // every element of A^T B is at most rows() x magnitude_bound() x max|B|, up to
  // rounding.
  float magnitude_bound() const;
  const float* matrix() const { return a_; }
  int64_t rows() const { return m_; }
  int64_t cols() const { return k_; }
  int64_t lda() const { return lda_; }
  int64_t words() const { return words_; }
  // Bit r of word(col, w): A[w * kRowsPerWord + r][col] != 0.
  uint32_t word(int64_t col, int64_t w) const { return bits_[size_t(col * words_ + w)]; }

 private:
  void index_word(int64_t w);
  double visits(int block) const;

  const float* a_ = nullptr;
  int64_t m_ = 0, k_ = 0, lda_ = 0, words_ = 0;
  uint32_t top_ = 0;  // the largest bit pattern of an entry, as unsigned
  double forward_visits_ = 1.0, weights_visits_ = 1.0;
  std::vector<uint32_t> bits_;  // (k, words)
};
// C (m, n) = A B, A the indexed (m, k) matrix, B (k, n) with ldb >= n, C with ldc >= n.
void gemm_nonzeros(const ZeroIndex& a, const float* b, int64_t ldb, int64_t n, float* c,
                   int64_t ldc);
// C (k, n) = A^T B, A the indexed (m, k) matrix, B (m, n) with ldb >= n, C with ldc >= n.
void gemm_nonzeros_t(const ZeroIndex& a, const float* b, int64_t ldb, int64_t n, float* c,
                     int64_t ldc);

// z (rows, cols) += bias (cols) broadcast over rows; then out = act(z).
// out may alias z only for kLinear (z is needed by the backward of the others).
void bias_activation_forward(float* z, const float* bias, float* out, int64_t rows,
                             int64_t cols, Activation act);

// dz = d_out * act'(z), given z (pre-activation) and out = act(z). dz may alias d_out.
void activation_backward(const float* d_out, const float* z, const float* out, float* dz,
                         int64_t n, Activation act);

// db (cols) = beta * db + sum over rows of dz (rows, cols). beta == 0 never reads db.
void bias_grad(const float* dz, float* db, int64_t rows, int64_t cols, float beta);

// Softmax cross-entropy on logits (rows, classes) with integer labels (rows).
// d_logits = scale * (softmax(logits) - onehot(label)) (may alias logits).
// Returns the SUM of per-row losses (not scaled); *correct += rows whose argmax
// (first maximum) equals the label; correct may be null. Labels must be in
// [0, classes): that is the caller's contract, checked anyway (one compare per row)
// with std::out_of_range naming the row and label, since a bad label would read
// outside the row. The CUDA version cannot throw: it writes a NaN loss instead.
double softmax_xent(const float* logits, const int32_t* labels, float* d_logits, int64_t rows,
                    int64_t classes, float scale, int64_t* correct);

// Softmax cross-entropy loss and accuracy only (evaluation); no gradient.
double softmax_xent_loss(const float* logits, const int32_t* labels, int64_t rows,
                         int64_t classes, int64_t* correct);

// Mean squared error on pred, target (rows, cols): per row, mean over cols of
// (pred - target)^2. d_pred = scale * 2 (pred - target) / cols (may alias pred).
// Returns the SUM over rows of the per-row loss.
double mse(const float* pred, const float* target, float* d_pred, int64_t rows, int64_t cols,
           float scale);
double mse_loss(const float* pred, const float* target, int64_t rows, int64_t cols);

// Inverted dropout, in place on x (rows, cols): x *= keep / (1 - rate).
// The keep mask is a pure function of (seed, first_row + r, c), so it does not
// depend on how a batch is split across replicas, and backward recomputes it.
// The hash (kernels/host_device.h) is shared with CUDA, so both devices draw the
// same mask. rate must be in [0, 1] (std::invalid_argument otherwise); 1 drops all.
void dropout_forward(float* x, int64_t rows, int64_t cols, float rate, uint64_t seed,
                     int64_t first_row);
void dropout_backward(float* dx, int64_t rows, int64_t cols, float rate, uint64_t seed,
                      int64_t first_row);

// A gradient held as the sum of `count` arrays: element i is
// ((parts[0][offset + i] + parts[1][offset + i]) + parts[2][offset + i]) + ...,
// added left to right in float, the order in which comm/reduce.h sums replicas,
// and the update also stores it into copies[c][offset + i] for each of
// `ncopies` arrays (which must not overlap the parts, the weights or the slots).
// Replicas that share memory update their slice of the arena this way, straight
// from every replica's gradient, and hand the sum to the others: the bits of the
// all-reduce and then the update, without writing the sum and reading it back.
// count >= 1 (std::invalid_argument).
struct GradientParts {
  const float* const* parts;
  int count;
  int64_t offset;
  float* const* copies;
  int ncopies;
};

// Optimizers: one fused pass over the flat parameter arena (n elements).
// SGD: g' = g + wd * p (coupled); v = momentum * v + g';
// p -= lr * (nesterov ? g' + momentum * v : v)   (PyTorch form).
// velocity may be null only when momentum == 0 (std::invalid_argument otherwise).
void sgd_update(float* param, const float* grad, float* velocity, int64_t n, float lr,
                float momentum, bool nesterov, float weight_decay);
void sgd_update(float* param, GradientParts grad, float* velocity, int64_t n, float lr,
                float momentum, bool nesterov, float weight_decay);
// Adam / AdamW (decoupled_wd: p -= lr*wd*p before the Adam step; else wd is added
// to the gradient). `step` is 1-based, used for bias correction:
// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)   (Keras/PyTorch form),
// evaluated as p -= (lr / (1-b1^t)) * m / (sqrt(v) * (1 / sqrt(1-b2^t)) + eps), both
// corrections computed once per call. step < 1 throws std::invalid_argument.
void adam_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                 float beta1, float beta2, float eps, int64_t step, float weight_decay,
                 bool decoupled_wd);
void adam_update(float* param, GradientParts grad, float* m, float* v, int64_t n, float lr,
                 float beta1, float beta2, float eps, int64_t step, float weight_decay,
                 bool decoupled_wd);

// Sum of squares (for norms / finiteness checks); returns NaN/Inf if any element is.
double sum_squares(const float* x, int64_t n);
// True when no element is NaN or +-Inf: one pass over the bits (exponent all
// ones), immune to -ffinite-math-only and fast enough to run on every step's
// reduced gradient (about 4 bytes per cycle per core, bench/kernels_bench).
bool all_finite(const float* x, int64_t n);
// The largest |x[i]| (0 for n == 0); NaN when some x[i] is NaN, else Inf when one
// is infinite. In the same pass over the bits as all_finite.
float max_abs(const float* x, int64_t n);
// y (n) = alpha * x + y.
void axpy(int64_t n, float alpha, const float* x, float* y);
// x *= alpha.
void scale(float* x, int64_t n, float alpha);

}  // namespace cpu
}  // namespace lockstep
