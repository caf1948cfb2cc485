// An optional cross-check of the CNN kernels against PyTorch (torch.nn.functional in
// /usr/bin/python3, e.g. Debian's python3-torch): conv2d with TF/Keras `same`
// padding (computed in Python from the Keras formula, applied with F.pad), max
// pooling and training-mode batch norm, forward and backward, on a few shapes.
// Tensors travel as raw float32 files in a temporary folder. Without python3 and
// torch the test reports itself SKIPPED, loudly.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/cnn.h"

namespace lockstep {
namespace {

namespace fs = std::filesystem;
using Vec = std::vector<float>;

constexpr const char* kPython = "/usr/bin/python3";

// argv: folder, then the case: conv N C H W F KH KW SH SW same|valid, or
// pool N C H W PH PW SH SW, or bn N C H W EPS.
constexpr const char* kScript = R"PY(
import math, sys
import numpy as np
import torch
import torch.nn.functional as F

d, kind, a = sys.argv[1], sys.argv[2], sys.argv[3:]
def load(name, shape):
    return torch.from_numpy(np.fromfile(f"{d}/{name}", dtype=np.float32).reshape(shape)).double()
def save(name, t):
    t.detach().float().numpy().tofile(f"{d}/{name}")
def tf_pad(size, k, s, same):
    if not same:
        return 0, 0
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2

if kind == "conv":
    n, c, h, w, f, kh, kw, sh, sw = map(int, a[:9])
    same = a[9] == "same"
    x = load("x", (n, c, h, w)).requires_grad_()
    wt = load("w", (f, c, kh, kw)).requires_grad_()
    b = load("b", (f,)).requires_grad_()
    top, bottom = tf_pad(h, kh, sh, same)
    left, right = tf_pad(w, kw, sw, same)
    y = F.conv2d(F.pad(x, (left, right, top, bottom)), wt, b, stride=(sh, sw))
    y.backward(load("dy", tuple(y.shape)))
    for name, t in (("y", y), ("dx", x.grad), ("dw", wt.grad), ("db", b.grad)):
        save(name, t)
elif kind == "pool":
    n, c, h, w, ph, pw, sh, sw = map(int, a)
    x = load("x", (n, c, h, w)).requires_grad_()
    y = F.max_pool2d(x, (ph, pw), (sh, sw))
    y.backward(load("dy", tuple(y.shape)))
    save("y", y)
    save("dx", x.grad)
else:
    n, c, h, w = map(int, a[:4])
    eps = float(a[4])
    x = load("x", (n, c, h, w)).requires_grad_()
    g = load("gamma", (c,)).requires_grad_()
    b = load("beta", (c,)).requires_grad_()
    y = F.batch_norm(x, None, None, g, b, training=True, eps=eps)
    y.backward(load("dy", (n, c, h, w)))
    for name, t in (("y", y), ("dx", x.grad), ("dgamma", g.grad), ("dbeta", b.grad)):
        save(name, t)
)PY";

Vec random_vec(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Vec v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

class KernelsTorch : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string probe = std::string(kPython) + " -c 'import torch, numpy' >/dev/null 2>&1";
    if (access(kPython, X_OK) != 0 || std::system(probe.c_str()) != 0) {
      std::fprintf(stderr, "\n*** %s with torch and numpy not found: PyTorch cross-check SKIPPED ***\n",
                   kPython);
      GTEST_SKIP() << kPython << " with torch and numpy not found: PyTorch cross-check SKIPPED";
    }
    char pattern[] = "/tmp/lockstep-torch-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    std::ofstream(dir_ + "/check.py") << kScript;
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  void put(const std::string& name, const Vec& v) const {
    std::ofstream out(dir_ + "/" + name, std::ios::binary);
    out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  }
  Vec get(const std::string& name, size_t n) const {
    Vec v(n, NAN);
    std::ifstream in(dir_ + "/" + name, std::ios::binary);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * 4));
    EXPECT_EQ(in.gcount(), static_cast<std::streamsize>(n * 4)) << name << " from PyTorch is short";
    return v;
  }
  void run(const std::string& args) const {
    const std::string cmd = std::string(kPython) + " " + dir_ + "/check.py " + dir_ + " " + args;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }

  std::string dir_;
};

void expect_close(const Vec& got, const Vec& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], tol * (1.0 + std::abs(want[i]))) << what << " element " << i;
  }
}

TEST_F(KernelsTorch, Conv2dMatchesPyTorch) {
  struct Case {
    int64_t n, c, h, w, f, kh, kw, sh, sw;
    Padding padding;
  };
  const Case cases[] = {{2, 3, 7, 5, 4, 3, 3, 2, 2, Padding::kSame},
                        {2, 32, 14, 14, 8, 3, 3, 1, 1, Padding::kSame},
                        {1, 1, 6, 9, 2, 3, 2, 1, 2, Padding::kValid},
                        {2, 2, 8, 6, 3, 3, 4, 2, 3, Padding::kSame}};  // padding 0 before, 1 after
  uint32_t seed = 1;
  for (const auto& t : cases) {
    const auto g = conv2d_geometry(t.n, t.c, t.h, t.w, t.f, t.kh, t.kw, t.sh, t.sw, t.padding);
    const auto x = random_vec(t.n * t.c * t.h * t.w, seed++), w = random_vec(t.f * g.patch, seed++);
    const auto b = random_vec(t.f, seed++), dy = random_vec(t.n * t.f * g.out_pixels, seed++);
    put("x", x), put("w", w), put("b", b), put("dy", dy);
    char args[160];
    std::snprintf(args, sizeof args, "conv %lld %lld %lld %lld %lld %lld %lld %lld %lld %s",
                  (long long)t.n, (long long)t.c, (long long)t.h, (long long)t.w, (long long)t.f,
                  (long long)t.kh, (long long)t.kw, (long long)t.sh, (long long)t.sw,
                  t.padding == Padding::kSame ? "same" : "valid");
    run(args);
    Vec ws(cpu::conv2d_workspace_size(g)), y(dy.size()), dx(x.size()), dw(w.size()), db(b.size());
    cpu::conv2d_forward(g, x.data(), w.data(), b.data(), y.data(), ws.data());
    cpu::conv2d_backward_data(g, dy.data(), w.data(), dx.data(), ws.data());
    cpu::conv2d_backward_weights(g, x.data(), dy.data(), dw.data(), db.data(), 0.0f, ws.data());
    expect_close(y, get("y", y.size()), 1e-5, std::string(args) + " y");
    expect_close(dx, get("dx", dx.size()), 1e-5, std::string(args) + " dx");
    expect_close(dw, get("dw", dw.size()), 1e-5, std::string(args) + " dw");
    expect_close(db, get("db", db.size()), 1e-5, std::string(args) + " db");
  }
}

TEST_F(KernelsTorch, MaxPoolMatchesPyTorch) {
  const auto g = pool2d_geometry(2, 3, 7, 5, 2, 2, 2, 2);
  const auto x = random_vec(2 * 3 * 7 * 5, 50), dy = random_vec(2 * 3 * g.out_h * g.out_w, 51);
  put("x", x), put("dy", dy);
  run("pool 2 3 7 5 2 2 2 2");
  Vec y(dy.size()), dx(x.size());
  std::vector<int32_t> argmax(dy.size());
  cpu::max_pool2d_forward(g, x.data(), y.data(), argmax.data());
  cpu::max_pool2d_backward(g, dy.data(), argmax.data(), dx.data());
  expect_close(y, get("y", y.size()), 0.0, "max pool y");
  expect_close(dx, get("dx", dx.size()), 0.0, "max pool dx");
}

TEST_F(KernelsTorch, BatchNormMatchesPyTorch) {
  const int64_t n = 4, c = 3, pixels = 5 * 7;
  const auto x = random_vec(n * c * pixels, 60), dy = random_vec(x.size(), 61);
  const auto gamma = random_vec(c, 62), beta = random_vec(c, 63);
  put("x", x), put("dy", dy), put("gamma", gamma), put("beta", beta);
  run("bn 4 3 5 7 0.001");
  std::vector<double> stats(2 * c), sums(2 * c);
  Vec mean(c), var(c), inv_std(c), y(x.size()), dx(x.size()), dg(c), db(c);
  cpu::batch_norm_stats(x.data(), n, c, pixels, nullptr, stats.data());
  cpu::batch_norm_moments(stats.data(), double(n * pixels), nullptr, c, 1e-3f, mean.data(),
                          var.data(), inv_std.data());
  cpu::batch_norm_forward(x.data(), n, c, pixels, mean.data(), inv_std.data(), gamma.data(),
                          beta.data(), y.data());
  cpu::batch_norm_backward_stats(dy.data(), x.data(), n, c, pixels, mean.data(), inv_std.data(),
                                 sums.data(), dg.data(), db.data(), 0.0f);
  cpu::batch_norm_backward_data(dy.data(), x.data(), n, c, pixels, mean.data(), inv_std.data(),
                                gamma.data(), sums.data(), double(n * pixels), dx.data());
  expect_close(y, get("y", y.size()), 1e-5, "batch norm y");
  expect_close(dx, get("dx", dx.size()), 1e-5, "batch norm dx");
  expect_close(dg, get("dgamma", dg.size()), 1e-5, "batch norm dgamma");
  expect_close(db, get("dbeta", db.size()), 1e-5, "batch norm dbeta");
}

}  // namespace
}  // namespace lockstep
