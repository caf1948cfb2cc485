// Model layout and whole-model gradients: finite differences through
// CpuNetwork for every activation, dropout, and both losses.
#include <gtest/gtest.h>

#include <algorithm>
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

// The CPU device with the input's zeros never skipped: gemm() for every product.
class PlainInputDevice : public CpuDevice {
 public:
  using CpuDevice::CpuDevice;
  void input_gemm(InputIndex&, int64_t rows, int64_t out, int64_t in, const float* x,
                  const float* w, float* z) {
    cpu::gemm(false, false, rows, out, in, 1.0f, x, in, w, out, 0.0f, z, out);
  }
  void input_gemm_weights(InputIndex&, int64_t rows, int64_t out, int64_t in, const float* x,
                          const float* dz, float* dw) {
    cpu::gemm(true, false, in, out, rows, 1.0f, x, in, dz, out, 0.0f, dw, out);
  }
};

// An image-like input whose zeros the first Dense layer skips (the forward checked
// to pay where the build vectorizes it), directly and behind a flatten: the step's loss
// and every gradient match the network that runs gemm() throughout, within
// float rounding.
TEST(Network, SkippingTheInputsZerosGivesTheSameStep) {
  const int64_t rows = 40, h = 10, w = 20, features = h * w;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> pixel(0.05f, 1.0f);
  std::vector<float> x(size_t(rows * features), 0.0f);
  std::vector<int32_t> labels;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t start = int64_t(rng() % 120);  // a band of 60 nonzero pixels
    for (int64_t j = start; j < start + 60; ++j) x[size_t(r * features + j)] = pixel(rng);
    labels.push_back(int32_t(r % 3));
  }
  cpu::ZeroIndex ix;
  ix.build(x.data(), rows, features, features);
  EXPECT_EQ(ix.forward_pays(), cpu::ZeroIndex::vectorized()) << ix.forward_visits();
  EXPECT_LT(ix.weights_visits(), 0.5);  // dW skips them too where the ISA's switch point allows
  ReplicaBatch b;
  b.rows = b.global_rows = rows;
  b.x = x.data();
  b.labels = labels.data();
  LayerConfig flatten;
  flatten.type = LayerType::kFlatten;
  const LayerConfig hidden{24, Activation::kRelu, 0.0f};
  for (const bool flat : {false, true}) {
    const std::vector<LayerConfig> layers =
        flat ? std::vector<LayerConfig>{flatten, hidden} : std::vector<LayerConfig>{hidden};
    const std::vector<int64_t> shape = flat ? std::vector<int64_t>{h, w} : std::vector<int64_t>{features};
    Model m(layers, shape, 3, LossKind::kSoftmaxCrossEntropy);
    std::vector<float> p(size_t(m.arena_size())), g(size_t(m.num_params())), want(g.size());
    m.init_params(p.data(), 9);
    CpuNetwork skipping(m, rows);
    Network<PlainInputDevice> plain(m, rows);
    const SliceStats got = skipping.train(p.data(), g.data(), b, 1.0f / rows, 1, [](int64_t) {});
    const SliceStats ref = plain.train(p.data(), want.data(), b, 1.0f / rows, 1, [](int64_t) {});
    EXPECT_NEAR(got.loss_sum, ref.loss_sum, 1e-5 * std::abs(ref.loss_sum)) << "flatten " << flat;
    double worst = 0.0;
    for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, double(std::abs(g[i] - want[i])));
    EXPECT_LT(worst, 1e-6) << "flatten " << flat;
    EXPECT_NE(g, std::vector<float>(g.size(), 0.0f));
  }
}

// Evaluation keeps gemm() (only training steps skip the input's zeros, a choice
// made per slice): a row's outputs are the same bits whether it is predicted
// beside rows of another density or among its own kind.
TEST(Network, PredictionsDoNotDependOnTheRowsBeside) {
  const int64_t rows = 48, features = 784;  // oneDNN blocks k = 784: its sums round otherwise
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> pixel(0.05f, 1.0f);
  std::vector<float> x(size_t(rows * features), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const bool dense = r < 16;  // rows 0-15 dense, 16-47 a band of 150 nonzero pixels
    const int64_t start = dense ? 0 : int64_t(rng() % 600), end = dense ? features : start + 150;
    for (int64_t j = start; j < end; ++j) x[size_t(r * features + j)] = pixel(rng);
  }
  Model m({{128, Activation::kRelu, 0.0f}}, features, 3, LossKind::kSoftmaxCrossEntropy);
  std::vector<float> p(size_t(m.arena_size()));
  m.init_params(p.data(), 4);
  CpuNetwork net(m, rows);
  const float* all = net.predict(p.data(), x.data(), rows);
  const std::vector<float> together(all, all + rows * 3);
  for (int64_t first = 0; first < rows; first += 16) {
    const float* part = net.predict(p.data(), x.data() + first * features, 16);
    for (int64_t i = 0; i < 16 * 3; ++i) {
      ASSERT_EQ(part[i], together[size_t(first * 3 + i)]) << "row " << first + i / 3;
    }
  }
}

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
