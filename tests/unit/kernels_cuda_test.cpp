// Every CUDA kernel against its CPU twin on fresh random inputs, outputs poisoned
// with NaN first so unwritten elements show. Tolerances are stated per kernel.
// Without CUDA in the build, or without a visible device, each test is SKIPPED
// loudly (never silently passed).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/ops.h"

#if defined(LOCKSTEP_HAVE_CUDA)
#include "kernels/cuda/ops.h"
#endif

namespace lockstep {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

#if !defined(LOCKSTEP_HAVE_CUDA)

TEST(KernelsCuda, AllKernelsAgainstCpu) {
  std::fprintf(stderr, "\n*** no CUDA device: CUDA kernel tests SKIPPED (built without CUDA) ***\n");
  GTEST_SKIP() << "no CUDA device: CUDA kernel tests SKIPPED (built without LOCKSTEP_HAVE_CUDA)";
}

#else

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

template <class T>
cuda::DeviceBuffer<T> to_device(const std::vector<T>& host) {
  cuda::DeviceBuffer<T> d(host.size());
  d.upload(host.data(), host.size());
  return d;
}

template <class T>
std::vector<T> to_host(const cuda::DeviceBuffer<T>& d) {
  std::vector<T> host(d.size());
  d.download(host.data(), host.size());
  return host;
}

// |got - want| <= abs_tol + rel_tol |want| everywhere; NaN (unwritten) always fails.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double abs_tol,
                  double rel_tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << what << ": element " << i << " not written";
    ASSERT_NEAR(got[i], want[i], abs_tol + rel_tol * std::abs(want[i]))
        << what << ": element " << i;
  }
}

class KernelsCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::device_count() == 0) {
      std::fprintf(stderr, "\n*** no CUDA device: CUDA kernel tests SKIPPED ***\n");
      GTEST_SKIP() << "no CUDA device: CUDA kernel tests SKIPPED";
    }
    cuda::set_device(0);
    owner_ = std::make_unique<cuda::CudaContextOwner>();
  }
  const cuda::CudaContext& ctx() const { return owner_->get(); }
  void sync() const { owner_->synchronize(); }

  std::unique_ptr<cuda::CudaContextOwner> owner_;
};

struct GemmCase {
  bool ta, tb;
  int64_t m, n, k, pad;
  float alpha, beta;
};

void run_gemm_case(const cuda::CudaContext& ctx, const GemmCase& t, double tol_per_sqrt_k,
                   uint32_t seed) {
  const int64_t a_cols = t.ta ? t.m : t.k, a_rows = t.ta ? t.k : t.m;
  const int64_t b_cols = t.tb ? t.k : t.n, b_rows = t.tb ? t.n : t.k;
  const int64_t lda = a_cols + t.pad, ldb = b_cols + t.pad, ldc = t.n + t.pad;
  const auto a = random_vec(a_rows * lda, seed), b = random_vec(b_rows * ldb, seed + 1);
  auto c = random_vec(t.m * ldc, seed + 2);
  if (t.beta == 0.0f) {
    for (int64_t i = 0; i < t.m; ++i)
      for (int64_t j = 0; j < t.n; ++j) c[i * ldc + j] = kNaN;  // must not be read
  }
  auto want = c;
  cpu::gemm(t.ta, t.tb, t.m, t.n, t.k, t.alpha, a.data(), lda, b.data(), ldb, t.beta,
            want.data(), ldc);
  auto da = to_device(a), db = to_device(b), dc = to_device(c);
  cuda::gemm(ctx, t.ta, t.tb, t.m, t.n, t.k, t.alpha, da.data(), lda, db.data(), ldb, t.beta,
             dc.data(), ldc);
  const auto got = to_host(dc);
  const double tol = tol_per_sqrt_k * std::sqrt(static_cast<double>(t.k)) * (1 + std::abs(t.alpha));
  for (int64_t i = 0; i < t.m; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      const size_t idx = static_cast<size_t>(i * ldc + j);
      if (j >= t.n) {
        ASSERT_EQ(got[idx], c[idx]) << "padding of C written at (" << i << "," << j << ")";
      } else {
        ASSERT_NEAR(got[idx], want[idx], tol) << "ta=" << t.ta << " tb=" << t.tb << " m=" << t.m
                                              << " n=" << t.n << " k=" << t.k;
      }
    }
  }
}

std::vector<GemmCase> gemm_cases() {
  std::vector<GemmCase> cases;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      cases.push_back({ta, tb, 64, 128, 784, 0, 1.0f, 0.0f});
      cases.push_back({ta, tb, 13, 17, 11, 3, 0.5f, 0.0f});
      cases.push_back({ta, tb, 33, 9, 65, 5, -1.5f, 1.0f});
      cases.push_back({ta, tb, 7, 70, 1, 1, 2.0f, 0.25f});
    }
  }
  return cases;
}

// FP32: cuBLAS and OpenBLAS/Eigen differ only in summation order (~1e-6 sqrt(k)).
TEST_F(KernelsCuda, GemmFp32MatchesCpu) {
  uint32_t seed = 1;
  for (const auto& t : gemm_cases()) run_gemm_case(ctx(), t, 2e-6, seed += 3);
}

// TF32 rounds inputs to 10 mantissa bits: allow ~2^-10 per term, growing as sqrt(k).
TEST_F(KernelsCuda, GemmTf32MatchesCpuLoosely) {
  cuda::CudaContextOwner tf32(cuda::GemmMath::kTf32);
  uint32_t seed = 50;
  for (const auto& t : gemm_cases()) run_gemm_case(tf32.get(), t, 4e-3, seed += 3);
}

TEST_F(KernelsCuda, GemmZeroInnerDimensionScalesC) {
  auto dc = to_device(std::vector<float>{1, 2, 3, 4});
  cuda::gemm(ctx(), false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 3.0f, dc.data(), 2);
  EXPECT_EQ(to_host(dc), (std::vector<float>{3, 6, 9, 12}));
}

const Activation kAllActs[] = {Activation::kLinear, Activation::kRelu, Activation::kTanh,
                               Activation::kSigmoid, Activation::kGelu};

// Both sides: float formulas with different tanh/exp implementations: 2e-6 relative.
TEST_F(KernelsCuda, BiasActivationForwardAndBackwardMatchCpu) {
  const int64_t rows = 37, cols = 130;
  for (Activation act : kAllActs) {
    const auto z0 = random_vec(rows * cols, 3, -4.0f, 4.0f), bias = random_vec(cols, 4);
    const auto d_out = random_vec(rows * cols, 5);
    auto z_cpu = z0;
    std::vector<float> out_cpu(z0.size()), dz_cpu(z0.size());
    cpu::bias_activation_forward(z_cpu.data(), bias.data(), out_cpu.data(), rows, cols, act);
    cpu::activation_backward(d_out.data(), z_cpu.data(), out_cpu.data(), dz_cpu.data(),
                             rows * cols, act);
    auto dz = to_device(z0), dbias = to_device(bias), dd = to_device(d_out);
    auto dout = to_device(std::vector<float>(z0.size(), kNaN));
    auto ddz = to_device(std::vector<float>(z0.size(), kNaN));
    cuda::bias_activation_forward(ctx(), dz.data(), dbias.data(), dout.data(), rows, cols, act);
    cuda::activation_backward(ctx(), dd.data(), dz.data(), dout.data(), ddz.data(), rows * cols,
                              act);
    const std::string name = "activation " + std::to_string(static_cast<int>(act));
    EXPECT_EQ(to_host(dz), z_cpu) << name << ": biased z must match exactly";
    expect_close(to_host(dout), out_cpu, 1e-6, 2e-6, name + " forward");
    expect_close(to_host(ddz), dz_cpu, 1e-6, 1e-5, name + " backward");
  }
}

// Column sums in a different order: 1e-6 per row summed.
TEST_F(KernelsCuda, BiasGradMatchesCpu) {
  for (float beta : {0.0f, 0.5f}) {
    const int64_t rows = 300, cols = 77;
    const auto dz = random_vec(rows * cols, 6), db0 = random_vec(cols, 7);
    auto want = db0;
    if (beta == 0.0f) want.assign(cols, kNaN);
    auto ddb = to_device(want);
    cpu::bias_grad(dz.data(), want.data(), rows, cols, beta);
    auto ddz = to_device(dz);
    cuda::bias_grad(ctx(), ddz.data(), ddb.data(), rows, cols, beta);
    expect_close(to_host(ddb), want, 1e-6 * rows, 0.0, "bias_grad beta " + std::to_string(beta));
  }
}

// Loss sums agree to 1e-6 relative; gradients to 1e-6; the correct count exactly.
TEST_F(KernelsCuda, SoftmaxXentMatchesCpu) {
  for (int64_t classes : {10, 100}) {
    const int64_t rows = 3000;  // > kReduceBlocks * 8 rows: every block loops
    const auto logits = random_vec(rows * classes, 8, -5.0f, 5.0f);
    std::vector<int32_t> labels(rows);
    std::mt19937 gen(9);
    for (auto& l : labels) l = static_cast<int32_t>(gen() % classes);
    std::vector<float> grad_cpu(logits.size());
    int64_t correct_cpu = 0;
    const double loss_cpu = cpu::softmax_xent(logits.data(), labels.data(), grad_cpu.data(),
                                              rows, classes, 0.25f, &correct_cpu);
    auto dl = to_device(logits);
    auto dlab = to_device(labels);
    auto dgrad = to_device(std::vector<float>(logits.size(), kNaN));
    auto dloss = to_device(std::vector<double>{0.5});  // accumulates onto 0.5
    auto dcorrect = to_device(std::vector<int64_t>{3});
    cuda::softmax_xent(ctx(), dl.data(), dlab.data(), dgrad.data(), rows, classes, 0.25f,
                       dloss.data(), dcorrect.data());
    EXPECT_NEAR(to_host(dloss)[0] - 0.5, loss_cpu, 1e-6 * loss_cpu) << classes;
    EXPECT_EQ(to_host(dcorrect)[0] - 3, correct_cpu) << classes;
    expect_close(to_host(dgrad), grad_cpu, 1e-6, 1e-5, "softmax gradient");
    // Evaluation path, run twice: the fixed-order reduction gives bitwise equal sums.
    auto dl2 = to_device(std::vector<double>{0.0}), dl3 = to_device(std::vector<double>{0.0});
    cuda::softmax_xent_loss(ctx(), dl.data(), dlab.data(), rows, classes, dl2.data(), nullptr);
    cuda::softmax_xent_loss(ctx(), dl.data(), dlab.data(), rows, classes, dl3.data(), nullptr);
    EXPECT_EQ(to_host(dl2)[0], to_host(dl3)[0]);
    EXPECT_NEAR(to_host(dl2)[0], loss_cpu, 1e-6 * loss_cpu);
  }
}

TEST_F(KernelsCuda, SoftmaxXentExtremeLogitsAndBadLabels) {
  const std::vector<float> logits = {1e4f, -1e4f, 0.0f, -1e4f, 1e4f, 1e4f};
  auto dl = to_device(logits);
  auto dlab = to_device(std::vector<int32_t>{0, 0});
  auto dgrad = to_device(std::vector<float>(6, kNaN));
  auto dloss = to_device(std::vector<double>{0.0});
  auto dcorrect = to_device(std::vector<int64_t>{0});
  cuda::softmax_xent(ctx(), dl.data(), dlab.data(), dgrad.data(), 2, 3, 1.0f, dloss.data(),
                     dcorrect.data());
  EXPECT_NEAR(to_host(dloss)[0], std::log(2.0) + 2e4, 1e-6);
  expect_close(to_host(dgrad), {0, 0, 0, -1, 0.5f, 0.5f}, 1e-7, 0.0, "extreme gradient");
  auto bad = to_device(std::vector<int32_t>{0, 3});
  cuda::softmax_xent_loss(ctx(), dl.data(), bad.data(), 2, 3, dloss.data(), nullptr);
  EXPECT_TRUE(std::isnan(to_host(dloss)[0])) << "an out-of-range label must poison the loss";
}

TEST_F(KernelsCuda, MseMatchesCpu) {
  const int64_t rows = 500, cols = 13;
  const auto pred = random_vec(rows * cols, 10), target = random_vec(rows * cols, 11);
  std::vector<float> grad_cpu(pred.size());
  const double loss_cpu = cpu::mse(pred.data(), target.data(), grad_cpu.data(), rows, cols, 0.5f);
  auto dp = to_device(pred), dt = to_device(target);
  auto dg = to_device(std::vector<float>(pred.size(), kNaN));
  auto dloss = to_device(std::vector<double>{0.0});
  cuda::mse(ctx(), dp.data(), dt.data(), dg.data(), rows, cols, 0.5f, dloss.data());
  EXPECT_NEAR(to_host(dloss)[0], loss_cpu, 1e-9 * loss_cpu);
  expect_close(to_host(dg), grad_cpu, 0.0, 1e-6, "mse gradient");
  cuda::mse_loss(ctx(), dp.data(), dt.data(), rows, cols, dloss.data());
  EXPECT_NEAR(to_host(dloss)[0], 2 * loss_cpu, 2e-9 * loss_cpu);
}

// The step block the training kernels read (kernels/host_device.h), with one
// layer's dropout seed after it.
cuda::DeviceBuffer<char> step_block(const kernels::StepParams& p, uint64_t seed = 0) {
  std::vector<char> host(sizeof(p) + sizeof(seed));
  std::memcpy(host.data(), &p, sizeof(p));
  std::memcpy(host.data() + sizeof(p), &seed, sizeof(seed));
  return to_device(host);
}
const kernels::StepParams* params_of(const cuda::DeviceBuffer<char>& block) {
  return reinterpret_cast<const kernels::StepParams*>(block.data());
}

// Same hash on both devices: the masks (and values) must be identical.
TEST_F(KernelsCuda, DropoutMaskIdenticalToCpu) {
  const int64_t rows = 33, cols = 45;
  const auto x = random_vec(rows * cols, 12);
  kernels::StepParams p{};
  p.first_row = 1000;
  const auto block = step_block(p, 777);
  auto want = x;
  cpu::dropout_forward(want.data(), rows, cols, 0.3f, 777, 1000);
  auto dx = to_device(x);
  cuda::dropout_forward(ctx(), dx.data(), rows, cols, 0.3f, params_of(block), 0);
  EXPECT_EQ(to_host(dx), want);
  auto back = x;
  cpu::dropout_backward(back.data(), rows, cols, 0.3f, 777, 1000);
  auto dback = to_device(x);
  cuda::dropout_backward(ctx(), dback.data(), rows, cols, 0.3f, params_of(block), 0);
  EXPECT_EQ(to_host(dback), back);
}

// Shared per-element code with explicit FMAs: agreement to 1 ulp-ish (1e-6 relative).
TEST_F(KernelsCuda, OptimizersMatchCpuOverThreeSteps) {
  const int64_t n = 10007;
  auto p_cpu = random_vec(n, 13), m_cpu = std::vector<float>(n, 0.0f), v_cpu = m_cpu;
  auto dp = to_device(p_cpu), dm = to_device(m_cpu), dv = to_device(v_cpu);
  auto sp_cpu = p_cpu, vel_cpu = m_cpu;
  auto dsp = to_device(sp_cpu), dvel = to_device(vel_cpu);
  auto loss = to_device(std::vector<float>{1.5f}), ok = to_device(std::vector<float>{0.0f});
  for (int step = 1; step <= 3; ++step) {
    const auto g = random_vec(n, 20 + step);
    auto dg = to_device(g);
    kernels::StepParams p{};
    p.adam = kernels::adam_consts(1e-2f, 0.9f, 0.999f, 1e-8f, step, 0.01f, step % 2 == 1);
    p.lr = 0.1f;
    const auto block = step_block(p);
    cpu::adam_update(p_cpu.data(), g.data(), m_cpu.data(), v_cpu.data(), n, 1e-2f, 0.9f, 0.999f,
                     1e-8f, step, 0.01f, step % 2 == 1);
    cuda::adam_update(ctx(), dp.data(), dg.data(), dm.data(), dv.data(), n, params_of(block),
                      loss.data(), ok.data());
    cpu::sgd_update(sp_cpu.data(), g.data(), vel_cpu.data(), n, 0.1f, 0.9f, step == 2, 1e-3f);
    cuda::sgd_update(ctx(), dsp.data(), dg.data(), dvel.data(), n, 0.9f, step == 2, 1e-3f,
                     params_of(block), loss.data(), ok.data());
  }
  expect_close(to_host(dp), p_cpu, 1e-7, 1e-6, "adam param");
  expect_close(to_host(dm), m_cpu, 1e-9, 1e-6, "adam m");
  expect_close(to_host(dv), v_cpu, 1e-12, 1e-6, "adam v");
  expect_close(to_host(dsp), sp_cpu, 1e-7, 1e-6, "sgd param");
  expect_close(to_host(dvel), vel_cpu, 1e-7, 1e-6, "sgd velocity");
}

// all_finite flags a NaN or Inf anywhere; the updates then (or with a non-finite
// loss) leave every parameter and slot as it was.
TEST_F(KernelsCuda, NonFiniteFlagSkipsTheUpdates) {
  const int64_t n = 4099;
  auto g = random_vec(n, 31);
  auto flag = to_device(std::vector<float>{kNaN});
  auto dg = to_device(g);
  cuda::all_finite(ctx(), dg.data(), n, flag.data());
  EXPECT_EQ(to_host(flag)[0], 0.0f) << "finite gradient";
  g[n - 1] = std::numeric_limits<float>::infinity();
  dg = to_device(g);
  cuda::all_finite(ctx(), dg.data(), n, flag.data());
  EXPECT_EQ(to_host(flag)[0], 1.0f) << "an Inf at the end";
  kernels::StepParams p{};
  p.adam = kernels::adam_consts(1e-2f, 0.9f, 0.999f, 1e-8f, 1, 0.0f, false);
  p.lr = 0.1f;
  const auto block = step_block(p);
  const auto p0 = random_vec(n, 32);
  auto dp = to_device(p0), dm = to_device(std::vector<float>(n, 0.0f)), dv = to_device(std::vector<float>(n, 0.0f));
  auto finite_loss = to_device(std::vector<float>{1.0f}), nan_loss = to_device(std::vector<float>{kNaN});
  auto clear = to_device(std::vector<float>{0.0f});
  dg = to_device(random_vec(n, 33));  // finite gradient: only the flags can stop the updates
  cuda::adam_update(ctx(), dp.data(), dg.data(), dm.data(), dv.data(), n, params_of(block),
                    finite_loss.data(), flag.data());
  cuda::sgd_update(ctx(), dp.data(), dg.data(), dm.data(), n, 0.9f, false, 0.0f, params_of(block),
                   nan_loss.data(), clear.data());
  EXPECT_EQ(to_host(dp), p0);
  EXPECT_EQ(to_host(dm), std::vector<float>(n, 0.0f));
  cuda::sgd_update(ctx(), dp.data(), dg.data(), dm.data(), n, 0.9f, false, 0.0f, params_of(block),
                   finite_loss.data(), clear.data());
  EXPECT_NE(to_host(dp), p0) << "with both flags clear the update runs";
}

// Double accumulation of ~1e5 squares in two orders: 1e-12 relative.
TEST_F(KernelsCuda, VectorOpsMatchCpu) {
  const int64_t n = 101770;
  const auto x = random_vec(n, 30), y = random_vec(n, 31);
  auto dx = to_device(x), dy = to_device(y);
  auto dss = to_device(std::vector<double>{kNaN});
  cuda::sum_squares(ctx(), dx.data(), n, dss.data());
  const double ss = cpu::sum_squares(x.data(), n);
  EXPECT_NEAR(to_host(dss)[0], ss, 1e-12 * ss);
  auto want = y;
  cpu::axpy(n, 0.75f, x.data(), want.data());
  cpu::scale(want.data(), n, -1.5f);
  cuda::axpy(ctx(), n, 0.75f, dx.data(), dy.data());
  cuda::scale(ctx(), dy.data(), n, -1.5f);
  expect_close(to_host(dy), want, 1e-7, 1e-6, "axpy + scale");
}

TEST_F(KernelsCuda, ErrorsNameTheCallAndHint) {
  try {
    cuda::set_device(cuda::device_count() + 3);
    FAIL() << "an out-of-range device was accepted";
  } catch (const cuda::CudaError& e) {
    EXPECT_NE(std::string(e.what()).find("hint"), std::string::npos) << e.what();
  }
  try {
    LOCKSTEP_CUDA_CHECK(cudaMemcpy(nullptr, nullptr, 16, cudaMemcpyHostToDevice));
    FAIL() << "an invalid memcpy was accepted";
  } catch (const cuda::CudaError& e) {
    EXPECT_NE(std::string(e.what()).find("cudaMemcpy"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("kernels_cuda_test.cpp"), std::string::npos) << e.what();
  }
  // The failed memcpy left cudaErrorInvalidValue as this thread's last error:
  // clear it, so no later check on this thread reports it as its own.
  (void)cudaGetLastError();
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

#endif  // LOCKSTEP_HAVE_CUDA

}  // namespace
}  // namespace lockstep
