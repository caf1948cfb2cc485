// Batch normalization on the CPU, split around the caller's all-reduces (see
// kernels/cpu/cnn.h): double partial sums per channel, then float elementwise passes.
// Partial sums use 8 double lanes per channel (lane = position within a plane's
// chunk of 8), added lane by lane in a fixed order, so they vectorize and stay
// bitwise reproducible for a given batch split.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/cnn.h"

namespace lockstep::cpu {
namespace {

constexpr int kLanes = 8;

// acc1[l] += a(i), acc2[l] += b(i) over i in [0, n), lane l = i % kLanes.
template <class A, class B>
void lane_sums(int64_t n, A a, B b, double* acc1, double* acc2) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      acc1[l] += a(i + l);
      acc2[l] += b(i + l);
    }
  }
  for (int l = 0; i < n; ++i, ++l) {
    acc1[l] += a(i);
    acc2[l] += b(i);
  }
}

double fold(const double* acc) {
  double s = 0.0;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

}  // namespace

void batch_norm_stats(const float* x, int64_t batch, int64_t channels, int64_t pixels,
                      const float* shift, double* stats) {
  for (int64_t c = 0; c < channels; ++c) {
    const double k = shift == nullptr ? 0.0 : shift[c];
    double s1[kLanes] = {}, s2[kLanes] = {};
    for (int64_t n = 0; n < batch; ++n) {
      const float* plane = x + (n * channels + c) * pixels;
      lane_sums(
          pixels, [&](int64_t i) { return double(plane[i]) - k; },
          [&](int64_t i) { const double d = double(plane[i]) - k; return d * d; }, s1, s2);
    }
    stats[c] = fold(s1);
    stats[channels + c] = fold(s2);
  }
}

void batch_norm_moments(const double* stats, double count, const float* shift, int64_t channels,
                        float eps, float* mean, float* var, float* inv_std) {
  for (int64_t c = 0; c < channels; ++c) {
    const double m1 = stats[c] / count, m2 = stats[channels + c] / count;
    const double v = std::max(m2 - m1 * m1, 0.0);  // rounding can push a constant channel below 0
    mean[c] = static_cast<float>(m1 + (shift == nullptr ? 0.0 : shift[c]));
    var[c] = static_cast<float>(v);
    inv_std[c] = static_cast<float>(1.0 / std::sqrt(v + double(eps)));
  }
}

void batch_norm_forward(const float* x, int64_t batch, int64_t channels, int64_t pixels,
                        const float* mean, const float* inv_std, const float* gamma,
                        const float* beta, float* y) {
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t at = (n * channels + c) * pixels;
      const float m = mean[c], scale = gamma[c] * inv_std[c], b = beta[c];
      for (int64_t i = 0; i < pixels; ++i) y[at + i] = (x[at + i] - m) * scale + b;
    }
  }
}

void batch_norm_update_moving(float* moving_mean, float* moving_var, const float* mean,
                              const float* var, int64_t channels, float momentum) {
  const float rate = 1.0f - momentum;
  for (int64_t c = 0; c < channels; ++c) {
    moving_mean[c] -= (moving_mean[c] - mean[c]) * rate;
    moving_var[c] -= (moving_var[c] - var[c]) * rate;
  }
}

void batch_norm_inference(const float* x, int64_t batch, int64_t channels, int64_t pixels,
                          const float* moving_mean, const float* moving_var, const float* gamma,
                          const float* beta, float eps, float* y) {
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t at = (n * channels + c) * pixels;
      const float inv_std = static_cast<float>(1.0 / std::sqrt(double(moving_var[c]) + eps));
      const float m = moving_mean[c], scale = gamma[c] * inv_std, b = beta[c];
      for (int64_t i = 0; i < pixels; ++i) y[at + i] = (x[at + i] - m) * scale + b;
    }
  }
}

void batch_norm_backward_stats(const float* dy, const float* x, int64_t batch, int64_t channels,
                               int64_t pixels, const float* mean, const float* inv_std,
                               double* sums, float* dgamma, float* dbeta, float beta_acc) {
  for (int64_t c = 0; c < channels; ++c) {
    const double m = mean[c], s = inv_std[c];
    double s1[kLanes] = {}, s2[kLanes] = {};
    for (int64_t n = 0; n < batch; ++n) {
      const int64_t at = (n * channels + c) * pixels;
      const float *g = dy + at, *xp = x + at;
      lane_sums(
          pixels, [&](int64_t i) { return double(g[i]); },
          [&](int64_t i) { return double(g[i]) * ((double(xp[i]) - m) * s); }, s1, s2);
    }
    sums[c] = fold(s1);
    sums[channels + c] = fold(s2);
    const float db = static_cast<float>(sums[c]), dg = static_cast<float>(sums[channels + c]);
    dbeta[c] = beta_acc == 0.0f ? db : beta_acc * dbeta[c] + db;
    dgamma[c] = beta_acc == 0.0f ? dg : beta_acc * dgamma[c] + dg;
  }
}

void batch_norm_backward_data(const float* dy, const float* x, int64_t batch, int64_t channels,
                              int64_t pixels, const float* mean, const float* inv_std,
                              const float* gamma, const double* sums, double count, float* dx) {
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t at = (n * channels + c) * pixels;
      const float m = mean[c], s = inv_std[c], k = gamma[c] * s;
      const float mean_dy = static_cast<float>(sums[c] / count);
      const float mean_dyx = static_cast<float>(sums[channels + c] / count);
      for (int64_t i = 0; i < pixels; ++i) {
        const float xhat = (x[at + i] - m) * s;
        dx[at + i] = k * (dy[at + i] - mean_dy - xhat * mean_dyx);
      }
    }
  }
}

}  // namespace lockstep::cpu
