// The convolutional layer kinds in a network: gradients against central
// differences for every kind and the residual block, shapes and layout, batch
// norm's synchronized statistics (2 replicas on half batches == 1 on the whole
// batch), its moving statistics against a direct computation, and sync: false.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <thread>

#include "comm/local_communicator.h"
#include "src/config.h"
#include "src/network.h"

namespace lockstep {
namespace {

LayerConfig layer(LayerType t) {
  LayerConfig c;
  c.type = t;
  return c;
}
LayerConfig conv(int64_t filters, int64_t k, int64_t s, Padding p, Activation a = Activation::kRelu) {
  LayerConfig c = layer(LayerType::kConv2d);
  c.filters = filters, c.kernel_size = k, c.strides = s, c.padding = p, c.activation = a;
  return c;
}
LayerConfig pool(LayerType t, int64_t size, int64_t stride = 0) {
  LayerConfig c = layer(t);
  c.pool_size = size, c.pool_strides = stride;
  return c;
}
LayerConfig batch_norm(bool sync = true) {
  LayerConfig c = layer(LayerType::kBatchNorm);
  c.sync = sync;
  return c;
}
LayerConfig residual(int64_t filters, int64_t stride) {
  LayerConfig c = layer(LayerType::kResidual);
  c.filters = filters, c.strides = stride;
  return c;
}
LayerConfig dense(int64_t units) {
  LayerConfig c;
  c.units = units;
  c.activation = Activation::kTanh;
  return c;
}

struct Data {
  std::vector<float> x;
  std::vector<int32_t> labels;
};
Data random_data(int64_t rows, int64_t features, int64_t classes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Data d;
  d.x.resize(size_t(rows * features));
  for (auto& v : d.x) v = nd(rng);
  for (int64_t r = 0; r < rows; ++r) d.labels.push_back(int32_t(r % classes));
  return d;
}
ReplicaBatch batch_of(Data& d, int64_t first, int64_t rows, int64_t global_rows, int64_t features) {
  ReplicaBatch b;
  b.rows = rows;
  b.global_rows = global_rows;
  b.first_row = first;
  b.x = d.x.data() + first * features;
  b.labels = d.labels.data() + first;
  return b;
}

struct GradModel {
  const char* name;
  std::vector<LayerConfig> layers;
  std::vector<int64_t> input;
};

class LayerGradient : public ::testing::TestWithParam<GradModel> {};

// Central differences of the training loss against backward, every trainable
// parameter. Batch norm trains on the batch's statistics (a function of every
// row), so this checks its full backward, not a frozen-statistics shortcut.
TEST_P(LayerGradient, MatchesFiniteDifferences) {
  const GradModel gm = GetParam();
  const int64_t rows = 4, classes = 3;
  Model m(gm.layers, gm.input, classes, LossKind::kSoftmaxCrossEntropy);
  std::vector<float> p(size_t(m.arena_size())), g(size_t(m.num_params())), scratch(g.size());
  m.init_params(p.data(), 3);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int64_t i = 0; i < m.num_params(); ++i) p[size_t(i)] += 0.05f * nd(rng);
  Data d = random_data(rows, m.input_dim(), classes, 11);
  const ReplicaBatch b = batch_of(d, 0, rows, rows, m.input_dim());
  CpuNetwork net(m, rows);
  const float scale = 1.0f / rows;
  int64_t last_ready = -1;
  net.train(p.data(), g.data(), b, scale, 99, [&](int64_t end) {
    EXPECT_GE(end, last_ready);
    last_ready = end;
  });
  EXPECT_EQ(last_ready, m.num_params());
  const auto loss_at = [&](size_t i, float delta) {
    const float saved = p[i];
    p[i] = saved + delta;
    const double l = net.train(p.data(), scratch.data(), b, scale, 99, [](int64_t) {}).loss_sum;
    p[i] = saved;
    return l * scale;
  };
  const float eps = 1e-3f;  // small: a relu kink is rarely inside [w - eps, w + eps]
  int checked = 0;
  for (size_t i = 0; i < size_t(m.num_params()); ++i) {
    const double fd = (loss_at(i, eps) - loss_at(i, -eps)) / (2.0 * eps);
    EXPECT_NEAR(g[i], fd, 2e-3 + 3e-2 * std::abs(fd)) << gm.name << " parameter " << i;
    ++checked;
  }
  EXPECT_EQ(checked, m.num_params());
}

INSTANTIATE_TEST_SUITE_P(
    EveryKind, LayerGradient,
    ::testing::Values(
        GradModel{"conv_same_max_pool", {conv(3, 3, 1, Padding::kSame), pool(LayerType::kMaxPool2d, 2), layer(LayerType::kFlatten)}, {6, 6}},
        GradModel{"conv_valid_stride2_avg_pool", {conv(2, 3, 2, Padding::kValid, Activation::kTanh), pool(LayerType::kAvgPool2d, 2, 1), dense(5)}, {2, 7, 7}},
        GradModel{"conv_global_avg", {conv(4, 2, 1, Padding::kValid, Activation::kSigmoid), layer(LayerType::kGlobalAvgPool2d)}, {5, 5}},
        GradModel{"batch_norm_conv", {conv(3, 3, 1, Padding::kSame, Activation::kLinear), batch_norm(), layer(LayerType::kFlatten)}, {5, 5}},
        GradModel{"batch_norm_dense", {dense(6), batch_norm(false), dense(4)}, {7}},
        GradModel{"residual_identity", {conv(3, 3, 1, Padding::kSame), residual(3, 1), layer(LayerType::kGlobalAvgPool2d)}, {5, 5}},
        GradModel{"residual_projection", {residual(4, 2), layer(LayerType::kFlatten)}, {2, 5, 5}},
        GradModel{"batch_norm_first", {batch_norm(), conv(2, 3, 1, Padding::kSame)}, {3, 4, 4}}),
    [](const ::testing::TestParamInfo<GradModel>& info) { return std::string(info.param.name); });

TEST(LayerShapes, SummaryShapesAndParamCountsAsKeras) {
  // The Fashion-MNIST CNN of configs/fashion_mnist_cnn.yaml.
  Model m({conv(32, 3, 1, Padding::kSame), pool(LayerType::kMaxPool2d, 2), conv(64, 3, 1, Padding::kSame),
           pool(LayerType::kMaxPool2d, 2), layer(LayerType::kFlatten), LayerConfig{128}},
          std::vector<int64_t>{28, 28}, 10, LossKind::kSoftmaxCrossEntropy);
  ASSERT_EQ(m.layers().size(), 7u);
  EXPECT_EQ(m.layers()[0].out, (Shape{32, 28, 28}));
  EXPECT_EQ(m.layers()[3].out, (Shape{64, 7, 7}));
  EXPECT_EQ(m.layers()[4].out, (Shape{3136, 1, 1}));
  // Keras: 320 + 18,496 + 401,536 + 1,290.
  EXPECT_EQ(m.num_params(), 320 + 18496 + 401536 + 1290);
  EXPECT_EQ(m.num_state(), 0);
  const std::string s = m.summary();
  EXPECT_NE(s.find("(None, 32, 28, 28)"), std::string::npos) << s;
  EXPECT_NE(s.find("(None, 3136)"), std::string::npos) << s;
}

TEST(LayerShapes, ResidualBlockAndBatchNormState) {
  LayerConfig bn = batch_norm();
  Model m({conv(8, 3, 1, Padding::kSame), bn, residual(8, 1), residual(16, 2),
           layer(LayerType::kGlobalAvgPool2d)},
          std::vector<int64_t>{1, 12, 12}, 10, LossKind::kSoftmaxCrossEntropy);
  // Identity block: two 3x3x8x8 kernels, two BNs. Projection block: 3x3x8x16,
  // 3x3x16x16, 1x1x8x16, three BNs of 16.
  const int64_t id = 2 * 9 * 8 * 8 + 2 * 2 * 8;
  const int64_t proj = 9 * 8 * 16 + 9 * 16 * 16 + 8 * 16 + 3 * 2 * 16;
  EXPECT_EQ(m.layers()[2].num_params(), id);
  EXPECT_EQ(m.layers()[3].num_params(), proj);
  EXPECT_EQ(m.layers()[3].out, (Shape{16, 6, 6}));
  EXPECT_EQ(m.num_state(), 2 * 8 + 2 * 2 * 8 + 3 * 2 * 16);
  EXPECT_EQ(m.arena_size(), m.num_params() + m.num_state());
  // The state part follows every trainable tensor.
  for (const auto& [layer, t] : m.all_tensors()) {
    EXPECT_EQ(t.trainable, t.offset < m.num_params()) << layer << "/" << t.name;
  }
  std::vector<float> p(size_t(m.arena_size()));
  m.init_params(p.data(), 1);
  for (const auto& [layer, t] : m.all_tensors()) {
    if (t.name.find("moving_variance") != std::string::npos || t.name.find("gamma") != std::string::npos) {
      for (int64_t i = 0; i < t.size(); ++i) EXPECT_EQ(p[size_t(t.offset + i)], 1.0f);
    }
  }
}

TEST(LayerShapes, LayersThatDoNotFitNameTheLayer) {
  try {
    Model m({conv(4, 5, 1, Padding::kValid)}, std::vector<int64_t>{3, 3}, 2, LossKind::kSoftmaxCrossEntropy);
    FAIL() << "a 5x5 valid kernel on a 3x3 image was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("conv2d_1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Model({pool(LayerType::kMaxPool2d, 4)}, std::vector<int64_t>{3, 3}, 2,
                     LossKind::kSoftmaxCrossEntropy),
               ConfigError);
}

// Image layers on flat features (dataset rows (N, F), or after flatten/dense)
// are refused naming the entry, not run as 1x1 images.
TEST(LayerShapes, ImageLayersRefuseFlatInputs) {
  const auto message = [](std::vector<LayerConfig> layers, std::vector<int64_t> input) {
    try {
      Model m(layers, input, 2, LossKind::kSoftmaxCrossEntropy);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string rows = message({conv(2, 3, 1, Padding::kSame)}, {20});
  EXPECT_NE(rows.find("model.layers[0] (conv2d_1): a conv2d layer needs images"), std::string::npos) << rows;
  EXPECT_NE(rows.find("the dataset's rows"), std::string::npos) << rows;
  const std::string after = message({conv(2, 3, 1, Padding::kSame), layer(LayerType::kFlatten), residual(2, 1)}, {6, 6});
  EXPECT_NE(after.find("model.layers[2] (residual_1)"), std::string::npos) << after;
  EXPECT_NE(after.find("the output of flatten_1"), std::string::npos) << after;
  EXPECT_FALSE(message({dense(4), layer(LayerType::kGlobalAvgPool2d)}, {5, 5}).empty());
  EXPECT_FALSE(message({conv(2, 3, 1, Padding::kSame)}, {2, 3, 4, 5}).empty());  // 4-D rows are flat
  // Flat-friendly kinds stay allowed on features.
  EXPECT_TRUE(message({batch_norm(), dense(3), layer(LayerType::kDropout), layer(LayerType::kFlatten)}, {7}).empty());
}

// Two replicas on halves of a batch with synchronized batch norm compute the
// whole batch's statistics: their summed gradients and their moving statistics
// equal one replica's on the whole batch (to rounding: the sums split differently).
// With sync: false each half normalizes on its own and the gradient differs.
void two_replicas(bool sync, const Model& m, std::vector<float> p0, Data& d, int64_t rows,
                  std::vector<float>& grad_sum, std::vector<float>& params_after) {
  LocalGroup group(2);
  std::vector<std::vector<float>> grads(2, std::vector<float>(size_t(m.num_params())));
  std::vector<std::vector<float>> params(2, p0);
  const auto body = [&](int i) {
    CpuNetwork net(m, rows / 2);
    Communicator& comm = group.member(i);
    net.sync = [&](double* x, int64_t n) { comm.allreduce(x, size_t(n)); };
    const ReplicaBatch b = batch_of(d, i * rows / 2, rows / 2, rows, m.input_dim());
    net.train(params[size_t(i)].data(), grads[size_t(i)].data(), b, 1.0f / float(rows), 5, [](int64_t) {});
    net.commit_state(params[size_t(i)].data());
  };
  std::thread t(body, 1);
  body(0);
  t.join();
  grad_sum.assign(grads[0].size(), 0.0f);
  for (size_t k = 0; k < grad_sum.size(); ++k) grad_sum[k] = grads[0][k] + grads[1][k];
  EXPECT_EQ(params[0], params[1]) << "the replicas' moving statistics differ (sync " << sync << ")";
  params_after = params[0];
}

TEST(SyncBatchNorm, TwoReplicasOnHalvesEqualOneOnTheWholeBatch) {
  const int64_t rows = 8;
  for (const bool sync : {true, false}) {
    LayerConfig bn = batch_norm(sync);
    bn.momentum = 0.9f;
    Model m({conv(3, 3, 1, Padding::kSame, Activation::kLinear), bn, layer(LayerType::kFlatten)},
            std::vector<int64_t>{2, 4, 4}, 3, LossKind::kSoftmaxCrossEntropy);
    std::vector<float> p(size_t(m.arena_size()));
    m.init_params(p.data(), 2);
    Data d = random_data(rows, m.input_dim(), 3, 4);
    for (size_t i = 0; i < d.x.size(); ++i) d.x[i] += (i / 16) % 2 ? 3.0f : 0.0f;  // halves differ
    std::vector<float> whole_p = p, whole_g(size_t(m.num_params()));
    CpuNetwork one(m, rows);
    one.train(whole_p.data(), whole_g.data(), batch_of(d, 0, rows, rows, m.input_dim()), 1.0f / rows, 5,
              [](int64_t) {});
    one.commit_state(whole_p.data());
    std::vector<float> sum, after;
    two_replicas(sync, m, p, d, rows, sum, after);
    double worst = 0;
    for (size_t k = 0; k < sum.size(); ++k) worst = std::max(worst, double(std::abs(sum[k] - whole_g[k])));
    if (sync) {
      EXPECT_LT(worst, 1e-5) << "synchronized statistics";
    } else {
      EXPECT_GT(worst, 1e-3) << "per-replica statistics should change the gradient";
    }
    // Moving statistics: the whole batch's in both modes (sync: false takes the
    // global partials after backward), the same on both replicas.
    for (int64_t i = m.num_params(); i < m.arena_size(); ++i) {
      EXPECT_NEAR(after[size_t(i)], whole_p[size_t(i)], 1e-5) << "state " << i << " sync " << sync;
    }
  }
}

// The moving statistics after one step against a direct double computation:
// moving = momentum * moving + (1 - momentum) * batch value (biased variance),
// written by commit_state() only (a skipped step never calls it).
TEST(SyncBatchNorm, MovingStatisticsFollowKeras) {
  LayerConfig bn = batch_norm();
  bn.momentum = 0.8f;
  const int64_t rows = 5, c = 2, hw = 9;
  Model m({bn, layer(LayerType::kFlatten)}, std::vector<int64_t>{c, 3, 3}, 2, LossKind::kSoftmaxCrossEntropy);
  std::vector<float> p(size_t(m.arena_size())), g(size_t(m.num_params()));
  m.init_params(p.data(), 1);
  Data d = random_data(rows, m.input_dim(), 2, 9);
  for (auto& v : d.x) v = 2.0f * v + 5.0f;
  CpuNetwork net(m, rows);
  const std::vector<float> before = p;
  net.train(p.data(), g.data(), batch_of(d, 0, rows, rows, m.input_dim()), 1.0f / rows, 1, [](int64_t) {});
  EXPECT_EQ(p, before) << "train() leaves the arena alone until the step is committed";
  net.commit_state(p.data());
  const LayerSpec& L = m.layers()[0];
  const auto at = [&](const char* name) {
    for (const auto& t : L.tensors) {
      if (t.name == name) return t.offset;
    }
    return int64_t(-1);
  };
  for (int64_t ch = 0; ch < c; ++ch) {
    double s = 0, s2 = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < hw; ++k) {
        const double v = d.x[size_t((r * c + ch) * hw + k)];
        s += v, s2 += v * v;
      }
    }
    const double n = double(rows * hw), mean = s / n, var = s2 / n - mean * mean;
    EXPECT_NEAR(p[size_t(at("moving_mean") + ch)], 0.2 * mean, 1e-5);
    EXPECT_NEAR(p[size_t(at("moving_variance") + ch)], 0.8 + 0.2 * var, 1e-4);
  }
}

// A replica without rows (a short last batch) still joins batch norm's
// collectives, so its peer does not wait forever, and contributes nothing.
TEST(SyncBatchNorm, EmptySliceJoinsTheCollectives) {
  // Two layers with sync: false: their partials share one all-reduce after backward.
  Model m({conv(2, 3, 1, Padding::kSame), batch_norm(), layer(LayerType::kFlatten), batch_norm(false),
           dense(5), batch_norm(false)},
          std::vector<int64_t>{4, 4}, 2, LossKind::kSoftmaxCrossEntropy);
  std::vector<float> p(size_t(m.arena_size()));
  m.init_params(p.data(), 1);
  Data d = random_data(3, m.input_dim(), 2, 1);
  std::vector<float> whole_p = p, whole_g(size_t(m.num_params()));
  CpuNetwork one(m, 3);
  one.train(whole_p.data(), whole_g.data(), batch_of(d, 0, 3, 3, m.input_dim()), 1.0f / 3, 5, [](int64_t) {});
  one.commit_state(whole_p.data());
  CommOptions o;
  o.timeout = std::chrono::seconds(20);
  LocalGroup group(2, o);
  std::vector<std::vector<float>> params(2, p), grads(2, std::vector<float>(whole_g.size()));
  const auto body = [&](int i) {
    CpuNetwork net(m, 3);
    Communicator& comm = group.member(i);
    net.sync = [&](double* x, int64_t n) { comm.allreduce(x, size_t(n)); };
    const ReplicaBatch b = batch_of(d, 0, i == 0 ? 3 : 0, 3, m.input_dim());
    net.train(params[size_t(i)].data(), grads[size_t(i)].data(), b, 1.0f / 3, 5, [](int64_t) {});
    net.commit_state(params[size_t(i)].data());
  };
  std::thread t(body, 1);
  body(0);
  t.join();
  EXPECT_EQ(params[0], params[1]);
  for (size_t k = 0; k < whole_g.size(); ++k) {
    EXPECT_EQ(grads[1][k], 0.0f);
    EXPECT_NEAR(grads[0][k], whole_g[k], 1e-6);
  }
  for (size_t k = size_t(m.num_params()); k < p.size(); ++k) {
    EXPECT_NEAR(params[0][k], whole_p[k], 1e-6);
    if (m.arena_size() > m.num_params()) EXPECT_NE(whole_p, p) << "the step moved the moving statistics";
  }
}

}  // namespace
}  // namespace lockstep
