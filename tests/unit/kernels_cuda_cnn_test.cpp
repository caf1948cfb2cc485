// The CUDA convolution, pooling and batch-norm kernels against their CPU twins
// (kernels/cpu/cnn.h, themselves checked against direct loops and finite
// differences) on random inputs, outputs poisoned with NaN first so unwritten
// elements show. Without CUDA in the build, or without a visible device, each test
// is SKIPPED loudly (never silently passed).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/cnn.h"

#if defined(LOCKSTEP_HAVE_CUDA)
#include "kernels/cuda/cnn.h"
#endif

namespace lockstep {
namespace {

#if !defined(LOCKSTEP_HAVE_CUDA)

TEST(KernelsCudaCnn, AllKernelsAgainstCpu) {
  std::fprintf(stderr, "\n*** no CUDA device: CUDA CNN kernel tests SKIPPED (built without CUDA) ***\n");
  GTEST_SKIP() << "no CUDA device: CUDA CNN kernel tests SKIPPED (built without LOCKSTEP_HAVE_CUDA)";
}

#else

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

template <class T>
std::vector<T> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(gen));
  return v;
}

template <class T>
cuda::DeviceBuffer<T> to_device(const std::vector<T>& host) {
  cuda::DeviceBuffer<T> d(host.size());
  if (!host.empty()) d.upload(host.data(), host.size());
  return d;
}

template <class T>
cuda::DeviceBuffer<T> poisoned(size_t n) {
  return to_device(std::vector<T>(n, std::numeric_limits<T>::quiet_NaN()));
}

template <class T>
std::vector<T> to_host(const cuda::DeviceBuffer<T>& d) {
  std::vector<T> host(d.size());
  d.download(host.data(), host.size());
  return host;
}

// |got - want| <= abs_tol + rel_tol |want| everywhere; NaN (unwritten) always fails.
template <class T>
void expect_close(const std::vector<T>& got, const std::vector<T>& want, double abs_tol,
                  double rel_tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << what << ": element " << i << " not written";
    ASSERT_NEAR(got[i], want[i], abs_tol + rel_tol * std::abs(want[i])) << what << ": element " << i;
  }
}

class KernelsCudaCnn : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::device_count() == 0) {
      std::fprintf(stderr, "\n*** no CUDA device: CUDA CNN kernel tests SKIPPED ***\n");
      GTEST_SKIP() << "no CUDA device: CUDA CNN kernel tests SKIPPED";
    }
    cuda::set_device(0);
    owner_ = std::make_unique<cuda::CudaContextOwner>();
  }
  const cuda::CudaContext& ctx() const { return owner_->get(); }

  std::unique_ptr<cuda::CudaContextOwner> owner_;
};

const Conv2dGeometry kConvs[] = {
    conv2d_geometry(2, 3, 7, 5, 4, 3, 3, 2, 2, Padding::kSame),
    conv2d_geometry(1, 1, 6, 9, 2, 3, 2, 1, 2, Padding::kValid),
    conv2d_geometry(3, 3, 5, 4, 2, 1, 1, 1, 1, Padding::kValid),
    conv2d_geometry(2, 2, 8, 6, 3, 5, 5, 1, 1, Padding::kSame),
    conv2d_geometry(4, 32, 14, 14, 64, 3, 3, 1, 1, Padding::kSame),
};

// GEMM sums in another order: 1e-6 per sqrt(term) of the patch or pixel count.
TEST_F(KernelsCudaCnn, Conv2dMatchesCpu) {
  uint32_t seed = 1;
  for (const auto& g : kConvs) {
    const std::string what = "conv " + std::to_string(g.height) + "x" + std::to_string(g.width) +
                             " k" + std::to_string(g.kernel_h) + "x" + std::to_string(g.kernel_w);
    const auto x = random_vec<float>(g.batch * g.in_channels * g.height * g.width, seed++);
    const auto w = random_vec<float>(g.filters * g.patch, seed++);
    const auto b = random_vec<float>(g.filters, seed++);
    const auto dy = random_vec<float>(g.batch * g.filters * g.out_pixels, seed++);
    std::vector<float> ws(cpu::conv2d_workspace_size(g)), y(dy.size()), dx(x.size());
    auto dw = random_vec<float>(w.size(), seed++), db = random_vec<float>(b.size(), seed++);
    auto ddw = to_device(dw), ddb = to_device(db);
    cpu::conv2d_forward(g, x.data(), w.data(), b.data(), y.data(), ws.data());
    cpu::conv2d_backward_data(g, dy.data(), w.data(), dx.data(), ws.data());
    cpu::conv2d_backward_weights(g, x.data(), dy.data(), dw.data(), db.data(), 0.5f, ws.data());
    auto d_x = to_device(x), d_w = to_device(w), d_b = to_device(b), d_dy = to_device(dy);
    auto d_ws = poisoned<float>(cuda::conv2d_workspace_size(g));
    auto d_y = poisoned<float>(y.size()), d_dx = poisoned<float>(x.size());
    cuda::conv2d_forward(ctx(), g, d_x.data(), d_w.data(), d_b.data(), d_y.data(), d_ws.data());
    cuda::conv2d_backward_data(ctx(), g, d_dy.data(), d_w.data(), d_dx.data(), d_ws.data());
    cuda::conv2d_backward_weights(ctx(), g, d_x.data(), d_dy.data(), ddw.data(), ddb.data(), 0.5f,
                                  d_ws.data());
    const double k_fwd = std::sqrt(double(g.patch)), k_bwd = std::sqrt(double(g.batch * g.out_pixels));
    expect_close(to_host(d_y), y, 2e-6 * k_fwd, 1e-6, what + " forward");
    expect_close(to_host(d_dx), dx, 2e-6 * std::sqrt(double(g.filters * 9)), 1e-6, what + " dx");
    expect_close(to_host(ddw), dw, 2e-6 * k_bwd, 1e-6, what + " dw");
    expect_close(to_host(ddb), db, 2e-6 * k_bwd, 1e-6, what + " db");
  }
}

// Max pooling selects, so it is exact; the gathers add in the CPU's order.
TEST_F(KernelsCudaCnn, PoolingMatchesCpu) {
  const Pool2dGeometry pools[] = {pool2d_geometry(2, 3, 28, 28, 2, 2, 2, 2),
                                  pool2d_geometry(1, 2, 7, 5, 2, 2, 2, 2),
                                  pool2d_geometry(2, 2, 6, 7, 3, 2, 1, 2)};
  uint32_t seed = 40;
  for (const auto& g : pools) {
    const std::string what = "pool " + std::to_string(g.height) + "x" + std::to_string(g.width);
    const size_t ins = g.batch * g.channels * g.height * g.width;
    const size_t outs = g.batch * g.channels * g.out_h * g.out_w;
    const auto x = random_vec<float>(ins, seed++), dy = random_vec<float>(outs, seed++);
    std::vector<float> y(outs), dx(ins), ya(outs), dxa(ins);
    std::vector<int32_t> argmax(outs);
    cpu::max_pool2d_forward(g, x.data(), y.data(), argmax.data());
    cpu::max_pool2d_backward(g, dy.data(), argmax.data(), dx.data());
    cpu::avg_pool2d_forward(g, x.data(), ya.data());
    cpu::avg_pool2d_backward(g, dy.data(), dxa.data());
    auto d_x = to_device(x), d_dy = to_device(dy);
    auto d_y = poisoned<float>(outs), d_dx = poisoned<float>(ins);
    auto d_arg = to_device(std::vector<int32_t>(outs, -1));
    cuda::max_pool2d_forward(ctx(), g, d_x.data(), d_y.data(), d_arg.data());
    cuda::max_pool2d_backward(ctx(), g, d_dy.data(), d_arg.data(), d_dx.data());
    EXPECT_EQ(to_host(d_y), y) << what;
    EXPECT_EQ(to_host(d_arg), argmax) << what;
    expect_close(to_host(d_dx), dx, 0.0, 0.0, what + " max backward");
    cuda::avg_pool2d_forward(ctx(), g, d_x.data(), d_y.data());
    cuda::avg_pool2d_backward(ctx(), g, d_dy.data(), d_dx.data());
    expect_close(to_host(d_y), ya, 1e-6, 1e-6, what + " avg forward");
    expect_close(to_host(d_dx), dxa, 1e-6, 1e-6, what + " avg backward");
  }
  const int64_t n = 3, c = 5, pixels = 49;
  const auto x = random_vec<float>(n * c * pixels, 60), dy = random_vec<float>(n * c, 61);
  std::vector<float> y(n * c), dx(x.size());
  cpu::global_avg_pool2d_forward(x.data(), y.data(), n, c, pixels);
  cpu::global_avg_pool2d_backward(dy.data(), dx.data(), n, c, pixels);
  auto d_x = to_device(x), d_dy = to_device(dy);
  auto d_y = poisoned<float>(y.size()), d_dx = poisoned<float>(x.size());
  cuda::global_avg_pool2d_forward(ctx(), d_x.data(), d_y.data(), n, c, pixels);
  cuda::global_avg_pool2d_backward(ctx(), d_dy.data(), d_dx.data(), n, c, pixels);
  expect_close(to_host(d_y), y, 1e-7, 1e-6, "global avg forward");
  expect_close(to_host(d_dx), dx, 1e-7, 1e-6, "global avg backward");
}

TEST_F(KernelsCudaCnn, BatchNormMatchesCpu) {
  const int64_t n = 4, c = 6, pixels = 11 * 9;
  const double count = double(n * pixels);
  const auto x = random_vec<float>(n * c * pixels, 70, 2.0f, 5.0f);
  const auto dy = random_vec<float>(x.size(), 71);
  const auto gamma = random_vec<float>(c, 72, 0.5f, 1.5f), beta = random_vec<float>(c, 73);
  const auto shift = random_vec<float>(c, 74, 3.0f, 4.0f);
  auto moving_mean = random_vec<float>(c, 75), moving_var = random_vec<float>(c, 76, 0.5f, 2.0f);
  auto d_mm = to_device(moving_mean), d_mv = to_device(moving_var);
  std::vector<double> stats(2 * c), sums(2 * c);
  std::vector<float> mean(c), var(c), inv_std(c), y(x.size()), yi(x.size()), dx(x.size());
  std::vector<float> dg(c), db(c);
  cpu::batch_norm_stats(x.data(), n, c, pixels, shift.data(), stats.data());
  cpu::batch_norm_moments(stats.data(), count, shift.data(), c, 1e-3f, mean.data(), var.data(),
                          inv_std.data());
  cpu::batch_norm_forward(x.data(), n, c, pixels, mean.data(), inv_std.data(), gamma.data(),
                          beta.data(), y.data());
  cpu::batch_norm_update_moving(moving_mean.data(), moving_var.data(), mean.data(), var.data(), c,
                                0.99f);
  cpu::batch_norm_inference(x.data(), n, c, pixels, moving_mean.data(), moving_var.data(),
                            gamma.data(), beta.data(), 1e-3f, yi.data());
  cpu::batch_norm_backward_stats(dy.data(), x.data(), n, c, pixels, mean.data(), inv_std.data(),
                                 sums.data(), dg.data(), db.data(), 0.0f);
  cpu::batch_norm_backward_data(dy.data(), x.data(), n, c, pixels, mean.data(), inv_std.data(),
                                gamma.data(), sums.data(), count, dx.data());

  auto d_x = to_device(x), d_dy = to_device(dy), d_gamma = to_device(gamma);
  auto d_beta = to_device(beta), d_shift = to_device(shift);
  auto d_stats = poisoned<double>(2 * c), d_sums = poisoned<double>(2 * c);
  auto d_mean = poisoned<float>(c), d_var = poisoned<float>(c), d_inv = poisoned<float>(c);
  auto d_y = poisoned<float>(x.size()), d_yi = poisoned<float>(x.size());
  auto d_dx = poisoned<float>(x.size()), d_dg = poisoned<float>(c), d_db = poisoned<float>(c);
  cuda::batch_norm_stats(ctx(), d_x.data(), n, c, pixels, d_shift.data(), d_stats.data());
  cuda::batch_norm_moments(ctx(), d_stats.data(), count, d_shift.data(), c, 1e-3f, d_mean.data(),
                           d_var.data(), d_inv.data());
  cuda::batch_norm_forward(ctx(), d_x.data(), n, c, pixels, d_mean.data(), d_inv.data(),
                           d_gamma.data(), d_beta.data(), d_y.data());
  cuda::batch_norm_update_moving(ctx(), d_mm.data(), d_mv.data(), d_mean.data(), d_var.data(), c,
                                 0.99f);
  cuda::batch_norm_inference(ctx(), d_x.data(), n, c, pixels, d_mm.data(), d_mv.data(),
                             d_gamma.data(), d_beta.data(), 1e-3f, d_yi.data());
  cuda::batch_norm_backward_stats(ctx(), d_dy.data(), d_x.data(), n, c, pixels, d_mean.data(),
                                  d_inv.data(), d_sums.data(), d_dg.data(), d_db.data(), 0.0f);
  cuda::batch_norm_backward_data(ctx(), d_dy.data(), d_x.data(), n, c, pixels, d_mean.data(),
                                 d_inv.data(), d_gamma.data(), d_sums.data(), count, d_dx.data());
  expect_close(to_host(d_stats), stats, 1e-9, 1e-12, "stats");
  expect_close(to_host(d_mean), mean, 0.0, 1e-6, "mean");
  expect_close(to_host(d_var), var, 0.0, 1e-6, "var");
  expect_close(to_host(d_inv), inv_std, 0.0, 1e-6, "inv_std");
  expect_close(to_host(d_y), y, 1e-5, 1e-5, "forward");
  expect_close(to_host(d_mm), moving_mean, 1e-6, 1e-6, "moving mean");
  expect_close(to_host(d_mv), moving_var, 1e-6, 1e-6, "moving var");
  expect_close(to_host(d_yi), yi, 1e-5, 1e-5, "inference");
  expect_close(to_host(d_sums), sums, 1e-9, 1e-9, "backward sums");
  expect_close(to_host(d_dg), dg, 1e-5, 1e-6, "dgamma");
  expect_close(to_host(d_db), db, 1e-5, 1e-6, "dbeta");
  expect_close(to_host(d_dx), dx, 1e-5, 1e-5, "dx");
}

#endif

}  // namespace
}  // namespace lockstep
