// conv2d and pooling kernels against independent expectations: the output sizes and
// padding of Keras/TF by hand, forward against direct loops in double, and every
// backward against central finite differences of those double loops (the loss is
// sum(r * y) for a fixed random r, so dL/dy = r). Odd shapes throughout.
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/cnn.h"
#include "tests/unit/grad_check.h"

namespace lockstep {
namespace {

using testing::DVec;
using testing::expect_close;
using testing::Vec;
DVec numeric_grad(DVec& v, const std::function<double()>& loss, double h = 1e-3) {
  return testing::numeric_grad(v, loss, h);
}

Vec random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Vec v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

DVec to_double(const Vec& v) { return DVec(v.begin(), v.end()); }

// Direct convolution in double; padding from the geometry (checked by hand below).
DVec conv_reference(const Conv2dGeometry& g, const DVec& x, const DVec& w, const DVec* bias) {
  DVec y(static_cast<size_t>(g.batch * g.filters * g.out_h * g.out_w));
  size_t at = 0;
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t f = 0; f < g.filters; ++f)
      for (int64_t oh = 0; oh < g.out_h; ++oh)
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          double sum = bias ? (*bias)[f] : 0.0;
          for (int64_t c = 0; c < g.in_channels; ++c)
            for (int64_t i = 0; i < g.kernel_h; ++i)
              for (int64_t j = 0; j < g.kernel_w; ++j) {
                const int64_t ih = oh * g.stride_h - g.pad_top + i;
                const int64_t iw = ow * g.stride_w - g.pad_left + j;
                if (ih < 0 || ih >= g.height || iw < 0 || iw >= g.width) continue;
                sum += x[((n * g.in_channels + c) * g.height + ih) * g.width + iw] *
                       w[((f * g.in_channels + c) * g.kernel_h + i) * g.kernel_w + j];
              }
          y[at++] = sum;
        }
  return y;
}

double weighted_sum(const DVec& y, const Vec& r) {
  double s = 0.0;
  for (size_t i = 0; i < y.size(); ++i) s += y[i] * r[i];
  return s;
}

struct ConvCase {
  int64_t n, c, h, w, f, kh, kw, sh, sw;
  Padding padding;
};

std::string describe(const ConvCase& t) {
  return "N" + std::to_string(t.n) + " C" + std::to_string(t.c) + " " + std::to_string(t.h) +
         "x" + std::to_string(t.w) + " F" + std::to_string(t.f) + " k" + std::to_string(t.kh) +
         "x" + std::to_string(t.kw) + " s" + std::to_string(t.sh) + "x" + std::to_string(t.sw) +
         (t.padding == Padding::kSame ? " same" : " valid");
}

const ConvCase kConvCases[] = {
    {2, 3, 7, 5, 4, 3, 3, 2, 2, Padding::kSame},   // stride 2, same, odd sizes
    {1, 1, 6, 9, 2, 3, 2, 1, 2, Padding::kValid},  // non-square, batch 1, channel 1
    {3, 3, 5, 4, 2, 1, 1, 1, 1, Padding::kValid},  // pointwise (no im2col)
    {2, 2, 8, 6, 3, 5, 5, 1, 1, Padding::kSame},   // padding 2 on each side
    {2, 3, 5, 7, 2, 1, 1, 2, 2, Padding::kSame},   // 1x1 stride 2
    {1, 2, 4, 4, 1, 4, 4, 1, 1, Padding::kValid},  // one output pixel
    {2, 1, 10, 6, 3, 3, 3, 3, 2, Padding::kSame},  // stride 3
    {1, 3, 2, 3, 2, 5, 4, 1, 1, Padding::kSame},   // kernel larger than the input
};

Conv2dGeometry geometry(const ConvCase& t) {
  return conv2d_geometry(t.n, t.c, t.h, t.w, t.f, t.kh, t.kw, t.sh, t.sw, t.padding);
}

TEST(KernelsConv, GeometryFollowsKeras) {
  // same, stride 2, odd input 7: out 4, pad_total (4-1)*2+3-7 = 2, 1 before.
  auto g = conv2d_geometry(1, 1, 7, 6, 1, 3, 3, 2, 2, Padding::kSame);
  EXPECT_EQ(g.out_h, 4);
  EXPECT_EQ(g.pad_top, 1);
  // even input 6: out 3, pad_total (3-1)*2+3-6 = 1, 0 before (the extra one after).
  EXPECT_EQ(g.out_w, 3);
  EXPECT_EQ(g.pad_left, 0);
  g = conv2d_geometry(1, 1, 28, 28, 32, 3, 3, 1, 1, Padding::kSame);
  EXPECT_EQ(g.out_h, 28);
  EXPECT_EQ(g.pad_top, 1);
  EXPECT_EQ(g.patch, 9);
  g = conv2d_geometry(1, 2, 9, 8, 1, 3, 2, 2, 3, Padding::kValid);
  EXPECT_EQ(g.out_h, 4);  // (9-3)/2+1
  EXPECT_EQ(g.out_w, 3);  // (8-2)/3+1
  EXPECT_EQ(g.pad_top, 0);
  EXPECT_FALSE(g.pointwise);
  EXPECT_TRUE(conv2d_geometry(1, 2, 5, 5, 3, 1, 1, 1, 1, Padding::kSame).pointwise);
  // im2col (patch 2*3*2, pixels 4*3) + padded image (2, (4-1)*2+3, (3-1)*3+2)
  EXPECT_EQ(cpu::conv2d_workspace_size(g), 2 * 3 * 2 * 4 * 3 + 2 * 9 * 8);
  EXPECT_THROW(conv2d_geometry(1, 1, 2, 5, 1, 3, 3, 1, 1, Padding::kValid), std::invalid_argument);
  EXPECT_THROW(conv2d_geometry(1, 1, 5, 5, 1, 3, 3, 0, 1, Padding::kSame), std::invalid_argument);
  EXPECT_THROW(conv2d_geometry(0, 1, 5, 5, 1, 3, 3, 1, 1, Padding::kSame), std::invalid_argument);
}

TEST(KernelsConv, ForwardMatchesDirectLoops) {
  uint32_t seed = 1;
  for (const auto& t : kConvCases) {
    const auto g = geometry(t);
    const auto x = random_vec(g.batch * g.in_channels * g.height * g.width, seed++);
    const auto w = random_vec(g.filters * g.patch, seed++);
    const auto b = random_vec(g.filters, seed++);
    Vec ws(static_cast<size_t>(cpu::conv2d_workspace_size(g)), NAN);
    Vec y(static_cast<size_t>(g.batch * g.filters * g.out_pixels), NAN);
    cpu::conv2d_forward(g, x.data(), w.data(), b.data(), y.data(), ws.data());
    const DVec bd = to_double(b);
    expect_close(y, conv_reference(g, to_double(x), to_double(w), &bd), 1e-5, describe(t));
    cpu::conv2d_forward(g, x.data(), w.data(), nullptr, y.data(), ws.data());
    expect_close(y, conv_reference(g, to_double(x), to_double(w), nullptr), 1e-5,
                 describe(t) + " no bias");
  }
}

TEST(KernelsConv, BackwardMatchesFiniteDifferences) {
  uint32_t seed = 100;
  for (const auto& t : kConvCases) {
    const auto g = geometry(t);
    const auto x = random_vec(g.batch * g.in_channels * g.height * g.width, seed++);
    const auto w = random_vec(g.filters * g.patch, seed++);
    const auto b = random_vec(g.filters, seed++);
    const auto r = random_vec(g.batch * g.filters * g.out_pixels, seed++);  // dL/dy
    Vec ws(static_cast<size_t>(cpu::conv2d_workspace_size(g)), NAN);
    Vec dx(x.size(), NAN), dw(w.size(), NAN), db(b.size(), NAN);
    cpu::conv2d_backward_data(g, r.data(), w.data(), dx.data(), ws.data());
    cpu::conv2d_backward_weights(g, x.data(), r.data(), dw.data(), db.data(), 0.0f, ws.data());
    DVec xd = to_double(x), wd = to_double(w), bd = to_double(b);
    auto loss = [&] { return weighted_sum(conv_reference(g, xd, wd, &bd), r); };
    expect_close(dx, numeric_grad(xd, loss), 1e-4, describe(t) + " dx");
    expect_close(dw, numeric_grad(wd, loss), 1e-4, describe(t) + " dw");
    expect_close(db, numeric_grad(bd, loss), 1e-4, describe(t) + " db");
    // beta = 1 adds to what is there.
    Vec dw2 = dw, db2 = db;
    cpu::conv2d_backward_weights(g, x.data(), r.data(), dw2.data(), db2.data(), 1.0f, ws.data());
    for (size_t i = 0; i < dw.size(); ++i) ASSERT_NEAR(dw2[i], 2 * dw[i], 1e-5 * (1 + std::abs(dw[i])));
    for (size_t i = 0; i < db.size(); ++i) ASSERT_NEAR(db2[i], 2 * db[i], 1e-5 * (1 + std::abs(db[i])));
  }
}

TEST(KernelsConv, ResultDoesNotDependOnTheBatchSplit) {
  // A replica computing images [1, 3) alone gets bitwise the rows of the full batch.
  const auto g = conv2d_geometry(3, 3, 9, 7, 5, 3, 3, 2, 1, Padding::kSame);
  const auto g2 = conv2d_geometry(2, 3, 9, 7, 5, 3, 3, 2, 1, Padding::kSame);
  const int64_t in = 3 * 9 * 7, out = 5 * g.out_pixels;
  const auto x = random_vec(3 * in, 7), w = random_vec(5 * g.patch, 8);
  Vec ws(static_cast<size_t>(cpu::conv2d_workspace_size(g)));
  Vec y(3 * out), y2(2 * out);
  cpu::conv2d_forward(g, x.data(), w.data(), nullptr, y.data(), ws.data());
  cpu::conv2d_forward(g2, x.data() + in, w.data(), nullptr, y2.data(), ws.data());
  for (int64_t i = 0; i < 2 * out; ++i) ASSERT_EQ(y[out + i], y2[i]) << i;
}

// ---- pooling ----

DVec pool_reference(const Pool2dGeometry& g, const DVec& x, bool max) {
  DVec y;
  for (int64_t p = 0; p < g.batch * g.channels; ++p)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        double acc = max ? -INFINITY : 0.0;
        for (int64_t i = 0; i < g.pool_h; ++i)
          for (int64_t j = 0; j < g.pool_w; ++j) {
            const double v = x[(p * g.height + oh * g.stride_h + i) * g.width + ow * g.stride_w + j];
            acc = max ? std::max(acc, v) : acc + v;
          }
        y.push_back(max ? acc : acc / double(g.pool_h * g.pool_w));
      }
  return y;
}

struct PoolCase {
  int64_t n, c, h, w, ph, pw, sh, sw;
};

const PoolCase kPoolCases[] = {
    {2, 3, 28, 28, 2, 2, 2, 2},  // the CNN's pool
    {1, 1, 7, 5, 2, 2, 2, 2},    // odd sizes: the last row/column is dropped
    {2, 2, 6, 7, 3, 2, 1, 2},    // overlapping rows, non-square
    {1, 3, 5, 5, 3, 3, 2, 2},    // overlapping windows
};

TEST(KernelsPool, GeometryIsValidPadding) {
  auto g = pool2d_geometry(1, 1, 7, 5, 2, 2, 2, 2);
  EXPECT_EQ(g.out_h, 3);
  EXPECT_EQ(g.out_w, 2);
  g = pool2d_geometry(1, 1, 6, 7, 3, 2, 1, 2);
  EXPECT_EQ(g.out_h, 4);
  EXPECT_EQ(g.out_w, 3);
  EXPECT_THROW(pool2d_geometry(1, 1, 1, 5, 2, 2, 2, 2), std::invalid_argument);
  EXPECT_THROW(pool2d_geometry(1, 1, 4, 4, 2, 2, 0, 2), std::invalid_argument);
}

TEST(KernelsPool, MaxAndAverageMatchReferenceAndFiniteDifferences) {
  uint32_t seed = 300;
  for (const auto& t : kPoolCases) {
    const auto g = pool2d_geometry(t.n, t.c, t.h, t.w, t.ph, t.pw, t.sh, t.sw);
    const std::string what = std::to_string(t.h) + "x" + std::to_string(t.w) + " pool " +
                             std::to_string(t.ph) + "x" + std::to_string(t.pw);
    const auto x = random_vec(g.batch * g.channels * g.height * g.width, seed++);
    const size_t outs = static_cast<size_t>(g.batch * g.channels * g.out_h * g.out_w);
    const auto r = random_vec(outs, seed++);
    Vec y(outs, NAN), dx(x.size(), NAN);
    std::vector<int32_t> argmax(outs, -1);
    DVec xd = to_double(x);
    cpu::max_pool2d_forward(g, x.data(), y.data(), argmax.data());
    expect_close(y, pool_reference(g, xd, true), 0.0, what + " max");
    cpu::max_pool2d_backward(g, r.data(), argmax.data(), dx.data());
    expect_close(dx, numeric_grad(xd, [&] { return weighted_sum(pool_reference(g, xd, true), r); },
                                  1e-4), 1e-4, what + " max dx");
    cpu::avg_pool2d_forward(g, x.data(), y.data());
    expect_close(y, pool_reference(g, xd, false), 1e-6, what + " avg");
    cpu::avg_pool2d_backward(g, r.data(), dx.data());
    expect_close(dx, numeric_grad(xd, [&] { return weighted_sum(pool_reference(g, xd, false), r); }),
                 1e-4, what + " avg dx");
  }
}

TEST(KernelsPool, MaxPoolTiesGoToTheFirstMaximum) {
  const auto g = pool2d_geometry(1, 1, 2, 2, 2, 2, 2, 2);
  const Vec x = {1.0f, 3.0f, 3.0f, 2.0f};
  Vec y(1), dx(4);
  std::vector<int32_t> argmax(1);
  cpu::max_pool2d_forward(g, x.data(), y.data(), argmax.data());
  EXPECT_EQ(y[0], 3.0f);
  EXPECT_EQ(argmax[0], 1);
  const Vec dy = {5.0f};
  cpu::max_pool2d_backward(g, dy.data(), argmax.data(), dx.data());
  EXPECT_EQ(dx, (Vec{0.0f, 5.0f, 0.0f, 0.0f}));
}

TEST(KernelsPool, GlobalAverageMatchesReferenceAndFiniteDifferences) {
  const int64_t n = 3, c = 2, pixels = 5 * 3;
  const auto x = random_vec(n * c * pixels, 400), r = random_vec(n * c, 401);
  Vec y(n * c, NAN), dx(x.size(), NAN);
  DVec xd = to_double(x);
  auto reference = [&] {
    DVec out(n * c, 0.0);
    for (int64_t p = 0; p < n * c; ++p) {
      for (int64_t i = 0; i < pixels; ++i) out[p] += xd[p * pixels + i];
      out[p] /= pixels;
    }
    return out;
  };
  cpu::global_avg_pool2d_forward(x.data(), y.data(), n, c, pixels);
  expect_close(y, reference(), 1e-6, "global avg");
  cpu::global_avg_pool2d_backward(r.data(), dx.data(), n, c, pixels);
  expect_close(dx, numeric_grad(xd, [&] { return weighted_sum(reference(), r); }), 1e-4,
               "global avg dx");
}

}  // namespace
}  // namespace lockstep
