// Model layout and whole-model gradients: finite differences through
// CpuNetwork for every activation, dropout, and both losses.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/ops.h"
#include "src/model.h"
#include "src/network.h"

namespace lockstep {
namespace {

TEST(Model, LayoutPutsLastLayerFirstAndCountsParams) {
  Model m({{128, Activation::kRelu, 0.0f}}, 784, 10, LossKind::kSoftmaxCrossEntropy);
  ASSERT_EQ(m.layers().size(), 2u);
  EXPECT_EQ(m.num_params(), 784 * 128 + 128 + 128 * 10 + 10);  // 101,770 as in Keras
  EXPECT_EQ(m.layers()[1].weight_offset, 0);
  EXPECT_EQ(m.layers()[1].bias_offset, 1280);
  EXPECT_EQ(m.layers()[0].weight_offset, 1290);
  EXPECT_EQ(m.grad_ready_end(1), 1290);
  EXPECT_EQ(m.grad_ready_end(0), m.num_params());
}

TEST(Model, GlorotUniformWithinLimitZeroBiasDeterministic) {
  Model m({{64, Activation::kTanh, 0.0f}}, 100, 5, LossKind::kSoftmaxCrossEntropy);
  std::vector<float> a(size_t(m.num_params())), b(a.size()), c(a.size());
  m.init_params(a.data(), 7);
  m.init_params(b.data(), 7);
  m.init_params(c.data(), 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  const auto& l0 = m.layers()[0];
  const double limit = std::sqrt(6.0 / (100 + 64));
  double sum = 0, sum2 = 0;
  for (int64_t i = 0; i < l0.in_size() * l0.out_size(); ++i) {
    const double w = a[size_t(l0.weight_offset + i)];
    ASSERT_LE(std::abs(w), limit);
    sum += w, sum2 += w * w;
  }
  const double n = double(l0.in_size() * l0.out_size());
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sum2 / n, limit * limit / 3.0, 0.1 * limit * limit / 3.0);  // var of U(-l, l)
  for (int64_t i = 0; i < l0.out_size(); ++i) EXPECT_EQ(a[size_t(l0.bias_offset + i)], 0.0f);
}

struct GradCase {
  Activation act;
  float dropout;
  LossKind loss;
};

class ModelGradient : public ::testing::TestWithParam<GradCase> {};

// Central differences of the training loss (same dropout masks) against backward.
TEST_P(ModelGradient, MatchesFiniteDifferences) {
  const GradCase gc = GetParam();
  const int64_t rows = 6, in = 5, out = 3;
  Model m({{7, gc.act, gc.dropout}, {4, gc.act, 0.0f}}, in, out, gc.loss);
  std::vector<float> p(size_t(m.num_params())), g(p.size()), scratch(p.size());
  m.init_params(p.data(), 3);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& v : p) v += 0.05f * nd(rng);  // non-zero biases too
  std::vector<float> x(size_t(rows * in)), targets(size_t(rows * out));
  std::vector<int32_t> labels(static_cast<size_t>(rows));
  for (auto& v : x) v = nd(rng);
  for (auto& v : targets) v = nd(rng);
  for (int64_t r = 0; r < rows; ++r) labels[size_t(r)] = int32_t(r % out);
  ReplicaBatch b;
  b.rows = rows;
  b.global_rows = rows;
  b.x = x.data();
  if (gc.loss == LossKind::kSoftmaxCrossEntropy) b.labels = labels.data(); else b.targets = targets.data();
  CpuNetwork rm(m, rows);
  const float scale = 1.0f / rows;
  int ready_calls = 0;
  int64_t last_ready = 0;
  rm.train(p.data(), g.data(), b, scale, 99, [&](int64_t end) {
    EXPECT_GT(end, last_ready);
    last_ready = end;
    ++ready_calls;
  });
  EXPECT_EQ(ready_calls, 3);
  EXPECT_EQ(last_ready, m.num_params());
  auto loss_at = [&](size_t i, float delta) {
    const float saved = p[i];
    p[i] = saved + delta;
    const double l = rm.train(p.data(), scratch.data(), b, scale, 99, [](int64_t) {}).loss_sum;
    p[i] = saved;
    return l * scale;
  };
  const float eps = 1e-3f;  // small: a relu kink is rarely inside [w - eps, w + eps]
  for (size_t i = 0; i < p.size(); ++i) {
    const double fd = (loss_at(i, eps) - loss_at(i, -eps)) / (2.0 * eps);
    EXPECT_NEAR(g[i], fd, 1e-3 + 2e-2 * std::abs(fd)) << "parameter " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllActivationsAndLosses, ModelGradient,
    ::testing::Values(GradCase{Activation::kRelu, 0.0f, LossKind::kSoftmaxCrossEntropy},
                      GradCase{Activation::kTanh, 0.0f, LossKind::kSoftmaxCrossEntropy},
                      GradCase{Activation::kSigmoid, 0.0f, LossKind::kSoftmaxCrossEntropy},
                      GradCase{Activation::kGelu, 0.0f, LossKind::kSoftmaxCrossEntropy},
                      GradCase{Activation::kLinear, 0.0f, LossKind::kMeanSquaredError},
                      GradCase{Activation::kTanh, 0.3f, LossKind::kSoftmaxCrossEntropy},
                      GradCase{Activation::kSigmoid, 0.0f, LossKind::kMeanSquaredError}));

TEST(CpuNetwork, EmptySliceGivesZeroGradientsAndAllBuckets) {
  Model m({{4, Activation::kRelu, 0.0f}}, 3, 2, LossKind::kSoftmaxCrossEntropy);
  std::vector<float> p(size_t(m.num_params()), 0.3f), g(p.size(), 7.0f);
  CpuNetwork rm(m, 4);
  ReplicaBatch b;  // rows == 0
  int calls = 0;
  const SliceStats s = rm.train(p.data(), g.data(), b, 1.0f, 0, [&](int64_t) { ++calls; });
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(s.rows, 0);
  for (float v : g) EXPECT_EQ(v, 0.0f);
}

TEST(CpuNetwork, RejectsSliceLargerThanWorkspace) {
  Model m({{4, Activation::kRelu, 0.0f}}, 3, 2, LossKind::kSoftmaxCrossEntropy);
  std::vector<float> p(size_t(m.num_params()), 0.1f), x(30, 0.0f);
  CpuNetwork rm(m, 4);
  EXPECT_THROW(rm.predict(p.data(), x.data(), 10), std::invalid_argument);
}

// The CPU device with every kernel call written down by name, then run.
class RecordingDevice : public CpuDevice {
 public:
  using CpuDevice::CpuDevice;
  std::vector<std::string> calls;
  template <class... A>
  void gemm(A... a) { calls.push_back("gemm"), CpuDevice::gemm(a...); }
  template <class... A>
  void input_gemm(A&&... a) { calls.push_back("input_gemm"), CpuDevice::input_gemm(a...); }
  template <class... A>
  void input_gemm_weights(A&&... a) {
    calls.push_back("input_gemm_weights"), CpuDevice::input_gemm_weights(a...);
  }
  template <class... A>
  void bias_activation_forward(A... a) {
    calls.push_back("bias_activation"), CpuDevice::bias_activation_forward(a...);
  }
  template <class... A>
  void activation_backward(A... a) { calls.push_back("activation_backward"), CpuDevice::activation_backward(a...); }
  template <class... A>
  void bias_grad(A... a) { calls.push_back("bias_grad"), CpuDevice::bias_grad(a...); }
  template <class... A>
  void dropout_forward(A... a) { calls.push_back("dropout_forward"), CpuDevice::dropout_forward(a...); }
  template <class... A>
  void dropout_backward(A... a) { calls.push_back("dropout_backward"), CpuDevice::dropout_backward(a...); }
  template <class... A>
  void copy(A... a) { calls.push_back("copy"), CpuDevice::copy(a...); }
  template <class... A>
  SliceStats loss(A... a) { return calls.push_back("loss"), CpuDevice::loss(a...); }
};

// The step's kernels in order (the CUDA device gets the same sequence): the first
// layer's GEMMs go through input_gemm (the input's zeros), each layer's backward
// starts from d(its output) (dropout's mask, the activation), and a bucket's ready
// point follows each layer's parameter gradients.
TEST(Network, RunsTheStepsKernelsInOrder) {
  Model m({{7, Activation::kRelu, 0.5f}}, 5, 3, LossKind::kSoftmaxCrossEntropy);
  std::vector<float> p(size_t(m.num_params())), g(p.size()), g_cpu(p.size());
  m.init_params(p.data(), 3);
  std::vector<float> x(4 * 5, 0.25f);
  std::vector<int32_t> labels{0, 1, 2, 0};
  ReplicaBatch b;
  b.rows = b.global_rows = 4;
  b.x = x.data();
  b.labels = labels.data();
  Network<RecordingDevice> net(m, 4);
  net.train(p.data(), g.data(), b, 0.25f, 11, [&](int64_t end) {
    net.device().calls.push_back("ready " + std::to_string(end));
  });
  const std::vector<std::string> want{
      "input_gemm", "bias_activation", "copy", "dropout_forward",       // hidden layer
      "gemm", "bias_activation",                                        // output layer
      "loss",
      "gemm", "bias_grad", "gemm",                                      // output layer
      "ready " + std::to_string(m.grad_ready_end(1)),
      "dropout_backward", "activation_backward", "input_gemm_weights", "bias_grad",  // hidden
      "ready " + std::to_string(m.num_params())};
  EXPECT_EQ(net.device().calls, want);
  CpuNetwork cpu(m, 4);
  cpu.train(p.data(), g_cpu.data(), b, 0.25f, 11, [](int64_t) {});
  EXPECT_EQ(g, g_cpu);
}

}  // namespace
}  // namespace lockstep
