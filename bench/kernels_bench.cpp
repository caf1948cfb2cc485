// Times the CPU kernels at the shapes of one training step of the 784-128-10 MLP
// (batch 64 and 256) on one thread: medians of many repetitions, microseconds and
// GFLOP/s in fixed-width columns, gemm() (oneDNN or OpenBLAS), OpenBLAS when it is
// not gemm()'s library, and Eigen side by side. It is also a check: the backends
// must agree (#wrong), else the last line says FAILED. Then the convolutional
// kernels at the Fashion-MNIST CNN's shapes (batch 32 and 64 per replica) with
// GFLOP/s and their share of the measured single-core FMA peak
// (bench/pytorch_cnn_kernels.py times PyTorch on the same shapes).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "bench/machine.h"
#include "bench/run_main.h"
#include "data/memory_source.h"
#include "kernels/cpu/cnn.h"
#include "kernels/cpu/ops.h"

#if defined(LOCKSTEP_HAVE_DNNL) && defined(LOCKSTEP_HAVE_BLAS)
#include <cblas.h>
#define LOCKSTEP_BENCH_OPENBLAS 1  // OpenBLAS beside gemm()'s oneDNN
#endif

namespace {

using namespace lockstep;

// Median wall time of one call, in microseconds. Each sample runs `inner` calls,
// with `inner` chosen so a sample lasts at least ~50 us (clock noise stays small).
double median_us(const std::function<void()>& fn, int reps) {
  using Clock = std::chrono::steady_clock;
  fn();  // warm caches and lazily initialised state
  auto t0 = Clock::now();
  fn();
  const double one = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  const int inner = std::max(1, static_cast<int>(50.0 / std::max(one, 1e-3)));
  std::vector<double> samples(static_cast<size_t>(reps));
  for (auto& s : samples) {
    t0 = Clock::now();
    for (int i = 0; i < inner; ++i) fn();
    s = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / inner;
  }
  std::nth_element(samples.begin(), samples.begin() + reps / 2, samples.end());
  return samples[static_cast<size_t>(reps / 2)];
}

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

struct GemmShape {
  const char* name;
  bool ta, tb;
  int64_t m, n, k;
};

struct Totals {
  double gemm_us = 0.0, other_us = 0.0;  // other: the step's elementwise kernels
  int64_t wrong = 0;
};

// One GEMM through gemm() and through gemm_eigen(); counts elements where they
// disagree beyond float rounding of a k-term dot product.
void bench_gemm(const GemmShape& s, int reps, Totals* totals) {
  const int64_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
  const auto a = random_vec(static_cast<size_t>(s.m * s.k), 1);
  const auto b = random_vec(static_cast<size_t>(s.k * s.n), 2);
  std::vector<float> c1(static_cast<size_t>(s.m * s.n)), c2(c1.size());
  auto blas = [&] {
    cpu::gemm(s.ta, s.tb, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c1.data(), s.n);
  };
  auto eigen = [&] {
    cpu::gemm_eigen(s.ta, s.tb, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f,
                    c2.data(), s.n);
  };
  const double t1 = median_us(blas, reps), t2 = median_us(eigen, reps);
  int64_t wrong = 0;
  const double tol = 1e-6 * static_cast<double>(s.k) + 1e-6;
  for (size_t i = 0; i < c1.size(); ++i) wrong += std::abs(c1[i] - c2[i]) > tol;
  const double gflop = 2.0 * s.m * s.n * s.k * 1e-9;
  std::printf("%-22s %5s%1s%1s %6lld %6lld %6lld %10.2f %8.2f", s.name, "", s.ta ? "T" : "N",
              s.tb ? "T" : "N", static_cast<long long>(s.m), static_cast<long long>(s.n),
              static_cast<long long>(s.k), t1, gflop / (t1 * 1e-6));
#if defined(LOCKSTEP_BENCH_OPENBLAS)
  std::vector<float> c3(c1.size());
  auto openblas = [&] {
    cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
                blasint(s.m), blasint(s.n), blasint(s.k), 1.0f, a.data(), blasint(lda), b.data(),
                blasint(ldb), 0.0f, c3.data(), blasint(s.n));
  };
  const double t3 = median_us(openblas, reps);
  for (size_t i = 0; i < c1.size(); ++i) wrong += std::abs(c1[i] - c3[i]) > tol;
  std::printf(" %10.2f %8.2f", t3, gflop / (t3 * 1e-6));
#endif
  std::printf(" %10.2f %8.2f %7lld\n", t2, gflop / (t2 * 1e-6), static_cast<long long>(wrong));
  totals->gemm_us += t1;
  totals->wrong += wrong;
}

void print_gemm_header(int64_t batch) {
#if defined(LOCKSTEP_BENCH_OPENBLAS)
  const char* others = "OpenBLAS and Eigen";
  const std::string head = " openblas          eigen          ", units = "     (us)   (GF/s)       (us)   (GF/s)";
#else
  const char* others = "Eigen";
  const std::string head = "    eigen          ", units = "       (us)   (GF/s)";
#endif
  std::printf("#\n# batch %lld: GEMMs of one step (gemm() = %s, side by side with %s)\n",
              static_cast<long long>(batch), cpu::gemm_backend(), others);
  std::printf("# %-20s %7s %6s %6s %6s %10s %8s %s #wrong\n", "gemm", "op", "m", "n", "k",
              "gemm()", "", head.c_str());
  std::printf("# %-20s %7s %6s %6s %6s %10s %8s%s\n", "", "", "", "", "", "(us)", "(GF/s)",
              units.c_str());
}

// An elementwise kernel: time, bytes touched and flops per call (for GB/s, GFLOP/s).
void row(const char* name, const std::string& shape, double us, double bytes, double flops) {
  std::printf("%-22s %-22s %10.2f %8.2f %8.2f\n", name, shape.c_str(), us,
              bytes / (us * 1e3), flops / (us * 1e3));
}

std::string dims(int64_t a, int64_t b) { return std::to_string(a) + "x" + std::to_string(b); }

void bench_elementwise(int64_t batch, int reps, Totals* totals) {
  const int64_t h = 128, k = 10;
  auto z = random_vec(static_cast<size_t>(batch * h), 3), bias = random_vec(h, 4);
  std::vector<float> act(z.size()), dz(z.size()), db(h);
  const auto d_out = random_vec(z.size(), 5);
  auto logits = random_vec(static_cast<size_t>(batch * k), 6, -4.0f, 4.0f);
  std::vector<float> d_logits(logits.size()), bias_k = random_vec(k, 7);
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  for (int64_t r = 0; r < batch; ++r) labels[r] = static_cast<int32_t>(r % k);
  const double n = static_cast<double>(batch * h);
  std::printf("#\n# batch %lld: elementwise kernels of one step\n", static_cast<long long>(batch));
  std::printf("# %-20s %-22s %10s %8s %8s\n", "kernel", "shape", "time", "", "");
  std::printf("# %-20s %-22s %10s %8s %8s\n", "", "", "(us)", "(GB/s)", "(GF/s)");
  auto add = [&](const char* name, const std::string& shape, double bytes, double flops,
                 const std::function<void()>& fn) {
    const double us = median_us(fn, reps);
    row(name, shape, us, bytes, flops);
    totals->other_us += us;
  };
  add("bias+relu fwd", dims(batch, h), 12 * n, 2 * n, [&] {
    cpu::bias_activation_forward(z.data(), bias.data(), act.data(), batch, h, Activation::kRelu);
  });
  add("bias+linear fwd", dims(batch, k), 8.0 * batch * k, 1.0 * batch * k, [&] {
    cpu::bias_activation_forward(logits.data(), bias_k.data(), logits.data(), batch, k,
                                 Activation::kLinear);
  });
  add("softmax_xent", dims(batch, k), 8.0 * batch * k, 0.0, [&] {
    int64_t correct = 0;
    cpu::softmax_xent(logits.data(), labels.data(), d_logits.data(), batch, k, 1.0f, &correct);
  });
  add("bias_grad out", dims(batch, k), 4.0 * batch * k, 1.0 * batch * k,
      [&] { cpu::bias_grad(d_logits.data(), db.data(), batch, k, 0.0f); });
  add("relu bwd", dims(batch, h), 12 * n, n, [&] {
    cpu::activation_backward(d_out.data(), z.data(), act.data(), dz.data(), batch * h,
                             Activation::kRelu);
  });
  add("bias_grad hidden", dims(batch, h), 4 * n, n,
      [&] { cpu::bias_grad(dz.data(), db.data(), batch, h, 0.0f); });
  // Not in the default step; shown for their cost relative to the rest.
  auto x = random_vec(z.size(), 8);
  std::printf("# (not in the default MLP step)\n");
  const double gelu_us = median_us([&] {
    cpu::bias_activation_forward(z.data(), bias.data(), act.data(), batch, h, Activation::kGelu);
  }, reps);
  row("bias+gelu fwd", dims(batch, h), gelu_us, 12 * n, 0.0);
  const double drop_us = median_us(
      [&] { cpu::dropout_forward(x.data(), batch, h, 0.2f, 42, 0); }, reps);
  row("dropout fwd", dims(batch, h), drop_us, 8 * n, 0.0);
}

// Returns the Adam time (it runs once per step whatever the batch).
double bench_optimizer(int reps) {
  const int64_t n = 101770;  // 784*128 + 128 + 128*10 + 10
  auto p = random_vec(n, 9), g = random_vec(n, 10, -1e-2f, 1e-2f);
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  int64_t step = 1;
  std::printf("#\n# optimizer and arena kernels over the MLP's %lld parameters\n",
              static_cast<long long>(n));
  std::printf("# %-20s %-22s %10s %8s %8s\n", "kernel", "shape", "time", "", "");
  std::printf("# %-20s %-22s %10s %8s %8s\n", "", "", "(us)", "(GB/s)", "(GF/s)");
  const double nd = static_cast<double>(n);
  const double adam_us = median_us([&] {
    cpu::adam_update(p.data(), g.data(), m.data(), v.data(), n, 1e-3f, 0.9f, 0.999f, 1e-7f,
                     step++, 0.0f, false);
  }, reps);
  row("adam", std::to_string(n), adam_us, 28 * nd, 12 * nd);
  const double sgd_us = median_us([&] {
    cpu::sgd_update(p.data(), g.data(), m.data(), n, 1e-2f, 0.9f, true, 0.0f);
  }, reps);
  row("sgd nesterov", std::to_string(n), sgd_us, 20 * nd, 6 * nd);
  const double ss_us = median_us([&] { volatile double s = cpu::sum_squares(g.data(), n); (void)s; },
                                 reps);
  row("sum_squares", std::to_string(n), ss_us, 4 * nd, 2 * nd);
  // Run on every step's reduced gradient before the update (non-finite check).
  const double fin_us = median_us([&] { volatile bool f = cpu::all_finite(g.data(), n); (void)f; },
                                  reps);
  row("all_finite", std::to_string(n), fin_us, 4 * nd, 0.0);
  const double axpy_us = median_us([&] { cpu::axpy(n, 1e-3f, g.data(), p.data()); }, reps);
  row("axpy", std::to_string(n), axpy_us, 12 * nd, 2 * nd);
  return adam_us;
}

// The input side of a step: MemorySource::read of one replica's 64 rows from a
// cached 60000 x 784 split (Fashion-MNIST's shape, random content), in shuffled
// order, for uint8 pixels (the Fashion-MNIST case) and float32 features; for
// uint8 also the step-ahead hint (Source::prefetch) and a read after one.
void bench_input(int reps) {
  const int64_t size = 60000, dim = 784, rows = 64;
  std::mt19937_64 rng(5);
  std::vector<int64_t> order(static_cast<size_t>(size));
  for (int64_t i = 0; i < size; ++i) order[static_cast<size_t>(i)] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<int32_t> labels(static_cast<size_t>(size));
  for (auto& l : labels) l = static_cast<int32_t>(rng() % 10);
  std::printf("#\n# input: one replica's rows gathered from a cached %lld x %lld split, shuffled order\n",
              static_cast<long long>(size), static_cast<long long>(dim));
  std::printf("# %-20s %-22s %10s %8s %8s\n", "kernel", "shape", "time", "", "");
  std::printf("# %-20s %-22s %10s %8s %8s\n", "", "", "(us)", "(GB/s)", "(GF/s)");
  std::vector<float> x(static_cast<size_t>(rows * dim));
  std::vector<int32_t> y(static_cast<size_t>(rows));
  for (bool bytes : {true, false}) {
    DatasetInfo info;
    info.num_classes = 10;
    info.description = "bench split";
    HostArray features;
    if (bytes) {
      std::vector<uint8_t> v(static_cast<size_t>(size * dim));
      for (auto& b : v) b = static_cast<uint8_t>(rng());
      features = make_array({size, dim}, v);
    } else {
      features = make_array({size, dim}, random_vec(size * dim, 11));
    }
    const MemorySource source(info, std::move(features), labels, {}, bytes ? 1.0f / 255 : 1.0f);
    int64_t at = 0;
    const double us = median_us([&] {
      if (at + rows > size) at = 0;
      source.read(order.data() + at, rows, x.data(), y.data(), nullptr);
      at += rows;
    }, reps);
    const double moved = static_cast<double>(rows * dim) * ((bytes ? 1 : 4) + 4);
    row(bytes ? "gather uint8 rows" : "gather float32 rows", dims(rows, dim), us, moved, 0.0);
    if (!bytes) continue;
    // What a replica reading its own rows does (data/README.md): after each read
    // it hints its next batch's rows, then computes a step (here 300 us of
    // waiting that touches no memory). The hint's own cost, then the read after it.
    const double hint_us = median_us([&] {
      if (at + rows > size) at = 0;
      source.prefetch(order.data() + at, rows);
      at += rows;
    }, reps);
    row("prefetch hint", dims(rows, dim), hint_us, 0.0, 0.0);  // moves nothing itself
    std::vector<double> hinted(static_cast<size_t>(reps));
    for (auto& sample : hinted) {
      if (at + rows > size) at = 0;
      source.prefetch(order.data() + at, rows);
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(300);
      while (std::chrono::steady_clock::now() < until) {
      }
      const auto t0 = std::chrono::steady_clock::now();
      source.read(order.data() + at, rows, x.data(), y.data(), nullptr);
      sample = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
      at += rows;
    }
    std::nth_element(hinted.begin(), hinted.begin() + reps / 2, hinted.end());
    row("gather uint8, hinted", dims(rows, dim), hinted[size_t(reps / 2)], moved, 0.0);
  }
}

// ---- the first layer with the input's zeros skipped ----

struct SkipTimes {
  double index = 0, fwd_gemm = 0, fwd_skip = 0, dw_gemm = 0, dw_skip = 0;  // us
  double fwd_visits = 0, dw_visits = 0;  // mean over the batches
  int64_t wrong = 0;
};

// `batches` batches of `batch` rows from the shuffled order, each zero pixel
// raised to 1/255 with probability `fill` (a denser input, for the switch points).
std::vector<std::vector<float>> input_batches(const Source& src, const std::vector<int64_t>& order,
                                              int64_t batch, int64_t batches, double fill) {
  const int64_t dim = src.info().feature_dim;
  std::mt19937_64 rng(23);
  std::bernoulli_distribution raise(fill);
  std::vector<int32_t> y(static_cast<size_t>(batch));
  std::vector<std::vector<float>> xs(static_cast<size_t>(batches));
  for (int64_t i = 0; i < batches; ++i) {
    auto& x = xs[size_t(i)];
    x.resize(static_cast<size_t>(batch * dim));
    src.read(order.data() + i * batch, batch, x.data(), y.data(), nullptr);
    for (float& v : x) v = (v == 0.0f && fill > 0 && raise(rng)) ? 1.0f / 255.0f : v;
  }
  return xs;
}

// Elements where two results differ by more than float rounding of `terms`
// products of magnitude <= scale allows.
int64_t count_wrong(const std::vector<float>& a, const std::vector<float>& b, int64_t n,
                    int64_t terms, float scale) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += std::fabs(a[size_t(i)] - b[size_t(i)]) > 1e-6f * scale * float(terms);
  return bad;
}

// The first layer's two GEMMs through gemm() and through the zero-skipping
// kernels on each batch (its rows warm in cache, as a replica's freshly gathered
// rows are): per batch the median of its samples, then the median over batches.
SkipTimes time_skip_zeros(const std::vector<std::vector<float>>& xs, int64_t dim, int64_t h,
                          const std::vector<float>& w1, const std::vector<float>& dz, int reps) {
  const int64_t batches = int64_t(xs.size()), batch = int64_t(xs[0].size()) / dim;
  std::vector<cpu::ZeroIndex> ix(xs.size());
  SkipTimes t;
  for (size_t i = 0; i < xs.size(); ++i) {
    ix[i].build(xs[i].data(), batch, dim, dim);
    t.fwd_visits += ix[i].forward_visits() / double(batches);
    t.dw_visits += ix[i].weights_visits() / double(batches);
  }
  std::vector<float> c1(static_cast<size_t>(dim * h)), c2(c1.size());
  const int per_batch = std::max(3, reps / 8);
  auto over_batches = [&](const std::function<void(size_t)>& fn) {
    std::vector<double> us(xs.size());
    for (size_t i = 0; i < us.size(); ++i) us[i] = median_us([&] { fn(i); }, per_batch);
    std::nth_element(us.begin(), us.begin() + batches / 2, us.end());
    return us[size_t(batches / 2)];
  };
  t.index = over_batches([&](size_t i) { ix[i].build(xs[i].data(), batch, dim, dim); });
  t.fwd_gemm = over_batches([&](size_t i) {
    cpu::gemm(false, false, batch, h, dim, 1.0f, xs[i].data(), dim, w1.data(), h, 0.0f, c1.data(), h);
  });
  t.fwd_skip = over_batches([&](size_t i) { cpu::gemm_nonzeros(ix[i], w1.data(), h, h, c2.data(), h); });
  t.wrong += count_wrong(c1, c2, batch * h, dim, 0.08f);
  t.dw_gemm = over_batches([&](size_t i) {
    cpu::gemm(true, false, dim, h, batch, 1.0f, xs[i].data(), dim, dz.data(), h, 0.0f, c1.data(), h);
  });
  t.dw_skip = over_batches([&](size_t i) { cpu::gemm_nonzeros_t(ix[i], dz.data(), h, h, c2.data(), h); });
  t.wrong += count_wrong(c1, c2, dim * h, batch, 0.01f);
  return t;
}

// The first layer's GEMMs on real rows of `path`'s train split, 16 batches of 32
// and of 64; then the same with the images' zeros partly filled, for the switch
// points (ZeroIndex::*_pays). Returns the elements that disagree.
int64_t bench_skip_zeros(const std::string& path, int reps) {
  std::printf("#\n# first layer, input zeros skipped (ZeroIndex, vectorized: %s)\n",
              cpu::ZeroIndex::vectorized() ? "yes" : "no, scalar loop");
  if (path.empty()) {
    std::printf("# (needs real images: --data datasets/fashion_mnist.h5)\n");
    return 0;
  }
  const auto src = open_dataset(path, "train", 1.0f / 255.0f);
  const int64_t dim = src->info().feature_dim, h = 128;
  std::mt19937_64 rng(17);
  std::vector<int64_t> order(static_cast<size_t>(src->info().size));
  for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
  std::shuffle(order.begin(), order.end(), rng);
  const auto w1 = random_vec(static_cast<size_t>(dim * h), 31, -0.08f, 0.08f);
  std::printf("# %s, medians over batches; visits = share of (row, column block) pairs each\n"
              "# kernel visits; fill = chance a zero pixel was raised to 1/255 (a denser input)\n",
              src->info().description.c_str());
  std::printf("# %5s %4s %8s %9s %9s %9s %6s %9s %9s %9s %6s %6s %6s #wrong\n", "batch", "fill",
              "index", "fwd", "fwd skip", "", "visits", "dW", "dW skip", "", "visits", "both", "");
  std::printf("# %5s %4s %8s %9s %9s %9s %6s %9s %9s %9s %6s %6s\n", "", "", "(us)", "gemm()", "(us)",
              "(ratio)", "", "gemm()", "(us)", "(ratio)", "", "(ratio)");
  int64_t wrong = 0;
  for (const double fill : {0.0, 0.1, 0.2, 0.3, 0.5, 1.0}) {
    for (int64_t batch : {32, 64}) {
      const auto dz = random_vec(static_cast<size_t>(batch * h), 32, -0.01f, 0.01f);
      const auto xs = input_batches(*src, order, batch, fill == 0.0 ? 16 : 4, fill);
      const SkipTimes t = time_skip_zeros(xs, dim, h, w1, dz, reps);
      std::printf("%7lld %4.1f %8.2f %9.2f %9.2f %9.3f %6.3f %9.2f %9.2f %9.3f %6.3f %6.3f %lld\n",
                  static_cast<long long>(batch), fill, t.index, t.fwd_gemm, t.fwd_skip,
                  t.fwd_skip / t.fwd_gemm, t.fwd_visits, t.dw_gemm, t.dw_skip, t.dw_skip / t.dw_gemm,
                  t.dw_visits, (t.index + t.fwd_skip + t.dw_skip) / (t.fwd_gemm + t.dw_gemm),
                  static_cast<long long>(t.wrong));
      wrong += t.wrong;
    }
  }
  return wrong;
}

// ---- convolutional kernels at the Fashion-MNIST CNN's shapes ----

void cnn_row(const char* name, const std::string& shape, double us, double flops, double peak) {
  const double gflops = flops / (us * 1e3);
  std::printf("%-22s %-22s %10.2f %8.2f %7.1f%%\n", name, shape.c_str(), us, gflops,
              peak > 0 ? 100.0 * gflops / peak : 0.0);
}

std::string nchw(int64_t n, int64_t c, int64_t h, int64_t w) {
  return std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" +
         std::to_string(w);
}

// One Conv2D(filters, 3x3, same) on (batch, c, h, w): forward (with bias), backward
// data and backward weights (+ bias); returns the sum of the times it ran.
double bench_conv(const char* name, int64_t batch, int64_t c, int64_t hw, int64_t filters,
                  bool need_dx, int reps, double peak) {
  const auto g = conv2d_geometry(batch, c, hw, hw, filters, 3, 3, 1, 1, Padding::kSame);
  const auto x = random_vec(static_cast<size_t>(batch * c * hw * hw), 20);
  const auto w = random_vec(static_cast<size_t>(filters * g.patch), 21, -0.1f, 0.1f);
  const auto b = random_vec(static_cast<size_t>(filters), 22);
  const auto dy = random_vec(static_cast<size_t>(batch * filters * g.out_pixels), 23);
  std::vector<float> y(dy.size()), dx(x.size()), dw(w.size()), db(b.size());
  std::vector<float> ws(static_cast<size_t>(cpu::conv2d_workspace_size(g)));
  const double flops = 2.0 * batch * filters * g.out_pixels * g.patch;
  const std::string shape = nchw(batch, c, hw, hw) + "->" + std::to_string(filters);
  const double fwd = median_us(
      [&] { cpu::conv2d_forward(g, x.data(), w.data(), b.data(), y.data(), ws.data()); }, reps);
  cnn_row((std::string(name) + " fwd").c_str(), shape, fwd, flops, peak);
  const double bww = median_us([&] {
    cpu::conv2d_backward_weights(g, x.data(), dy.data(), dw.data(), db.data(), 0.0f, ws.data());
  }, reps);
  cnn_row((std::string(name) + " bwd w+b").c_str(), shape, bww, flops, peak);
  double bwd = 0.0;
  if (need_dx) {
    bwd = median_us([&] { cpu::conv2d_backward_data(g, dy.data(), w.data(), dx.data(), ws.data()); },
                    reps);
    cnn_row((std::string(name) + " bwd data").c_str(), shape, bwd, flops, peak);
  }
  return fwd + bww + bwd;
}

// MaxPool(2) forward and backward on (batch, c, hw, hw); returns their sum.
double bench_pool(const char* name, int64_t batch, int64_t c, int64_t hw, int reps, double peak) {
  const auto g = pool2d_geometry(batch, c, hw, hw, 2, 2, 2, 2);
  const auto x = random_vec(static_cast<size_t>(batch * c * hw * hw), 24);
  const size_t outs = static_cast<size_t>(batch * c * g.out_h * g.out_w);
  const auto dy = random_vec(outs, 25);
  std::vector<float> y(outs), dx(x.size());
  std::vector<int32_t> argmax(outs);
  const double fwd = median_us(
      [&] { cpu::max_pool2d_forward(g, x.data(), y.data(), argmax.data()); }, reps);
  cnn_row((std::string(name) + " fwd").c_str(), nchw(batch, c, hw, hw), fwd, 0.0, peak);
  const double bwd = median_us(
      [&] { cpu::max_pool2d_backward(g, dy.data(), argmax.data(), dx.data()); }, reps);
  cnn_row((std::string(name) + " bwd").c_str(), nchw(batch, c, hw, hw), bwd, 0.0, peak);
  return fwd + bwd;
}

// Training batch norm on (batch, c, hw, hw) through the split API (no all-reduce:
// one replica): statistics + normalize, backward partials + dx.
void bench_batch_norm(int64_t batch, int64_t c, int64_t hw, int reps, double peak) {
  const int64_t pixels = hw * hw;
  const auto x = random_vec(static_cast<size_t>(batch * c * pixels), 26);
  const auto dy = random_vec(x.size(), 27);
  std::vector<float> y(x.size()), dx(x.size()), gamma(c, 1.0f), beta(c, 0.0f), shift(c, 0.0f);
  std::vector<float> mean(c), var(c), inv_std(c), dg(c), db(c);
  std::vector<double> stats(2 * c);
  const double count = double(batch * pixels), n = double(x.size());
  const double fwd = median_us([&] {
    cpu::batch_norm_stats(x.data(), batch, c, pixels, shift.data(), stats.data());
    cpu::batch_norm_moments(stats.data(), count, shift.data(), c, 1e-3f, mean.data(), var.data(),
                            inv_std.data());
    cpu::batch_norm_forward(x.data(), batch, c, pixels, mean.data(), inv_std.data(), gamma.data(),
                            beta.data(), y.data());
  }, reps);
  cnn_row("batch_norm fwd", nchw(batch, c, hw, hw), fwd, 5 * n, peak);
  const double bwd = median_us([&] {
    cpu::batch_norm_backward_stats(dy.data(), x.data(), batch, c, pixels, mean.data(),
                                   inv_std.data(), stats.data(), dg.data(), db.data(), 0.0f);
    cpu::batch_norm_backward_data(dy.data(), x.data(), batch, c, pixels, mean.data(),
                                  inv_std.data(), gamma.data(), stats.data(), count, dx.data());
  }, reps);
  cnn_row("batch_norm bwd", nchw(batch, c, hw, hw), bwd, 9 * n, peak);
}

void bench_cnn(int reps) {
  const double peak512 = bench::fma_peak_best(512), peak256 = bench::fma_peak_best(256);
  const double peak = std::max(peak512, peak256);
  std::printf("#\n# CNN kernels (Conv2D(32,3x3,same) on 1x28x28 -> MaxPool(2) -> Conv2D(64,3x3,same)"
              " -> MaxPool(2)), one replica's batch\n");
  std::printf("# single-core FMA peak measured here: %.0f GFLOP/s (512-bit), %.0f GFLOP/s (256-bit);"
              " %% of the larger\n", peak512, peak256);
  for (int64_t batch : {32, 64}) {
    std::printf("#\n# batch %lld\n", static_cast<long long>(batch));
    std::printf("# %-20s %-22s %10s %8s %8s\n", "kernel", "shape", "time", "", "peak");
    std::printf("# %-20s %-22s %10s %8s %8s\n", "", "", "(us)", "(GF/s)", "(%)");
    double total = bench_conv("conv1", batch, 1, 28, 32, false, reps, peak);
    total += bench_pool("maxpool1", batch, 32, 28, reps, peak);
    total += bench_conv("conv2", batch, 32, 14, 64, true, reps, peak);
    total += bench_pool("maxpool2", batch, 64, 14, reps, peak);
    std::printf("# batch %lld: conv + pool kernels of one step (conv1 needs no dx): %.1f us\n",
                static_cast<long long>(batch), total);
    std::printf("# (batch norm, for a BN layer after conv1; not in the CNN config)\n");
    bench_batch_norm(batch, 32, 28, reps, peak);
  }
}

}  // namespace

static int run_bench(int argc, char** argv) {
  CLI::App app{"lockstep kernels benchmark: CPU kernels at the 784-128-10 MLP's and the Fashion-MNIST CNN's shapes"};
  int reps = 200;
  std::string data_path;
  app.add_option("--reps", reps, "samples per kernel (median reported)")->check(CLI::Range(3, 100000));
  app.add_option("--data", data_path,
                 "an HDF5 dataset in lockstep's layout (e.g. datasets/fashion_mnist.h5): times the first "
                 "layer's GEMMs with its images' zeros skipped");
  CLI11_PARSE(app, argc, argv);
  lockstep::cpu::init_kernels();
  std::printf("# CPU: %s\n", bench::cpu_description().c_str());
  std::printf("# lockstep kernels_bench: 1 thread, median of %d samples, gemm() backend %s\n",
              reps, lockstep::cpu::gemm_backend());
  const double adam_us = bench_optimizer(reps);
  bench_input(reps);
  int64_t wrong = 0;
  for (int64_t batch : {64, 256}) {
    Totals totals;
    print_gemm_header(batch);
    const GemmShape shapes[] = {
        {"fwd L1  x*W1", false, false, batch, 128, 784},
        {"fwd L2  h*W2", false, false, batch, 10, 128},
        {"bwd L2  dW2=h'*dy", true, false, 128, 10, batch},
        {"bwd L2  dh=dy*W2'", false, true, batch, 128, 10},
        {"bwd L1  dW1=x'*dz", true, false, 784, 128, batch},
    };
    for (const auto& s : shapes) bench_gemm(s, reps, &totals);
    bench_elementwise(batch, reps, &totals);
    std::printf("#\n# batch %lld step: GEMMs %.1f us; elementwise %.1f us (%.1f%% of GEMMs); "
                "adam %.1f us (%.1f%%)\n",
                static_cast<long long>(batch), totals.gemm_us, totals.other_us,
                100.0 * totals.other_us / totals.gemm_us, adam_us,
                100.0 * adam_us / totals.gemm_us);
    wrong += totals.wrong;
  }
  wrong += bench_skip_zeros(data_path, reps);
  bench_cnn(reps);
  std::printf("# %s\n", wrong == 0 ? "OK" : "FAILED: GEMM backends disagree");
  return wrong == 0 ? 0 : 1;
}

int main(int argc, char** argv) { return lockstep::bench::run_main("kernels_bench", run_bench, argc, argv); }
