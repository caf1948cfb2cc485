// GEMM for the CPU replicas, one thread per call because each replica thread owns
// a core: oneDNN's sgemm (JIT kernels for the exact shapes) when LOCKSTEP_HAVE_DNNL,
// else OpenBLAS (cblas_sgemm) when LOCKSTEP_HAVE_BLAS, else Eigen on strided Maps
// of the caller's buffers (no temporaries, no per-call allocation; a single row
// goes through a per-thread scratch that grows once, gemm_one_row).
#include "kernels/cpu/ops.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

#if defined(LOCKSTEP_HAVE_DNNL)
#include <oneapi/dnnl/dnnl.h>
// oneDNN parallelises a GEMM with the OpenMP threads of its caller (libgomp).
extern "C" void omp_set_num_threads(int);
#endif
#if defined(LOCKSTEP_HAVE_BLAS)
#include <cblas.h>
#endif

#include "kernels/host_device.h"

namespace lockstep::cpu {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
using MutMap = Eigen::Map<RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;

// C = beta * C without reading C when beta == 0 (C may hold garbage or NaN).
void scale_c(float* c, int64_t m, int64_t n, int64_t ldc, float beta) {
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    if (beta == 0.0f) {
      for (int64_t j = 0; j < n; ++j) row[j] = 0.0f;
    } else if (beta != 1.0f) {
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
    }
  }
}

}  // namespace

// Eigen GEMM, also used directly by the benchmark for the side-by-side comparison.
void gemm_eigen(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                int64_t ldc) {
  MutMap cm(c, m, n, Eigen::OuterStride<>(ldc));
  const ConstMap am(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  const ConstMap bm(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  scale_c(c, m, n, ldc, beta);
  if (trans_a && trans_b) {
    cm.noalias() += alpha * am.transpose() * bm.transpose();
  } else if (trans_a) {
    cm.noalias() += alpha * am.transpose() * bm;
  } else if (trans_b) {
    cm.noalias() += alpha * am * bm.transpose();
  } else {
    cm.noalias() += alpha * am * bm;
  }
}

const char* gemm_backend() {
#if defined(LOCKSTEP_HAVE_DNNL)
  return "onednn";
#elif defined(LOCKSTEP_HAVE_BLAS)
  return "openblas";
#else
  return "eigen";
#endif
}

std::string gemm_library() {
#if defined(LOCKSTEP_HAVE_DNNL)
  const dnnl_version_t* v = dnnl_version();
  char isa[16];
  std::snprintf(isa, sizeof isa, "0x%x", unsigned(dnnl_get_effective_cpu_isa()));
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch) + " (cpu isa " + isa + ")";
#elif defined(LOCKSTEP_HAVE_BLAS)
  return std::string(openblas_get_config()) + " (kernel " + openblas_get_corename() + ")";
#else
  return "Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
         std::to_string(EIGEN_MINOR_VERSION);
#endif
}

void init_kernels() {
#if defined(LOCKSTEP_HAVE_DNNL)
  omp_set_num_threads(1);
#endif
#if defined(LOCKSTEP_HAVE_BLAS)
  // Also beside oneDNN, where only kernels_bench calls OpenBLAS: its own threads
  // would otherwise take every core and time it against one-threaded oneDNN.
  openblas_set_num_threads(1);
#endif
  Eigen::initParallel();  // Eigen's cached blocking sizes, set before replica threads start
  Eigen::setNbThreads(1);
}

namespace {

void library_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc) {
#if defined(LOCKSTEP_HAVE_DNNL)
  // OpenMP's thread count is per thread: each caller asks for one, once.
  static thread_local const bool one_thread = (omp_set_num_threads(1), true);
  (void)one_thread;
  const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda,
                                      b, ldb, beta, c, ldc);
  if (st != dnnl_success) {
    throw std::runtime_error("lockstep::cpu::gemm: oneDNN sgemm failed (status " + std::to_string(int(st)) +
                             ") for m=" + std::to_string(m) + " n=" + std::to_string(n) +
                             " k=" + std::to_string(k));
  }
#elif defined(LOCKSTEP_HAVE_BLAS)
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
#else
  gemm_eigen(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

// One row of op(A): the libraries take another path for a single row (a
// matrix-vector product, which sums in another order), so that row's result
// would differ from the same row's among others, and a prediction would depend on
// whether its row came alone. It runs as the first of two equal rows instead.
void gemm_one_row(bool trans_a, bool trans_b, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c) {
  static thread_local std::vector<float> a2, c2;
  a2.resize(size_t(2 * k));
  c2.resize(size_t(2 * n));
  for (int64_t i = 0; i < k; ++i) a2[size_t(i)] = a2[size_t(k + i)] = trans_a ? a[i * lda] : a[i];
  if (beta != 0.0f) std::copy(c, c + n, c2.begin());
  library_gemm(false, trans_b, 2, n, k, alpha, a2.data(), k, b, ldb, beta, c2.data(), n);
  std::copy(c2.begin(), c2.begin() + n, c);
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc) {
  kernels::check_gemm_args("lockstep::cpu::gemm", trans_a, trans_b, m, n, k, lda, ldb, ldc);
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == 0.0f) {
    scale_c(c, m, n, ldc, beta);
    return;
  }
  if (m == 1) return gemm_one_row(trans_a, trans_b, n, k, alpha, a, lda, b, ldb, beta, c);
  library_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace lockstep::cpu
