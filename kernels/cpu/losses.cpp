// Loss kernels: softmax cross-entropy (with accuracy count) and mean squared error.
// Softmax is max-subtracted and the loss is log-sum-exp in double, so logits of
// 1e4 stay finite. Exponentials run in 8-float packs (pack.h): 8 rows at a time for
// few classes, along the row for many.
#include "kernels/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/cpu/pack.h"

namespace lockstep::cpu {
namespace {

void check_label(const char* fn, int32_t label, int64_t row, int64_t classes) {
  if (label < 0 || label >= classes) {
    throw std::out_of_range(std::string("lockstep::cpu::") + fn + ": label " +
                            std::to_string(label) + " of row " + std::to_string(row) +
                            " is outside [0, " + std::to_string(classes) + ")");
  }
}

// First index of the maximum, and the maximum.
int64_t row_argmax(const float* x, int64_t classes, float* max_out) {
  int64_t best = 0;
  float m = x[0];
  for (int64_t j = 1; j < classes; ++j) {
    if (x[j] > m) {
      m = x[j];
      best = j;
    }
  }
  *max_out = m;
  return best;
}

// exp(x - m) for one row of logits, in packs; e (classes) may alias x or be null.
// Returns the sum of the exponentials: lane-wise float partial sums, then the 8
// lanes added in a fixed order in double, so the training and evaluation paths
// (and any two replicas) agree bitwise.
double row_exp(const float* x, float* e, int64_t classes, float m) {
  detail::Pack acc = detail::Pack::Zero();
  detail::for_each_pack(classes, [&](int64_t i, int len) {
    // Padding lanes read -inf: exp gives 0, they add nothing to the sum.
    const detail::Pack p =
        (detail::load_pack(x + i, len, -std::numeric_limits<float>::infinity()) - m).exp();
    acc += p;
    if (e != nullptr) detail::store_pack(e + i, len, p);
  });
  double sum = 0.0;
  for (int j = 0; j < detail::kPack; ++j) sum += acc[j];
  return sum;
}

// Up to this many classes, rows are processed 8 at a time, one row per vector lane
// (a row of 10 classes would fill only 1.25 vectors otherwise).
constexpr int64_t kGroupClasses = 64;

// Rows [r0, r0 + n), n <= 8, classes <= kGroupClasses: logits transposed so lane l
// holds row r0 + l; every lane runs the same vector ops, so a row's result does not
// depend on which rows share its group. d_logits may be null (evaluation) or alias
// logits. Returns the group's loss sum; adds correct rows to *hits.
double softmax_group(const float* logits, const int32_t* labels, float* d_logits, int64_t r0,
                     int n, int64_t classes, float scale, int64_t* hits) {
  using detail::Pack;
  Pack xt[kGroupClasses];
  Pack m = Pack::Zero();
  float x_label[detail::kPack] = {};
  for (int lane = 0; lane < detail::kPack; ++lane) {
    if (lane >= n) {  // padding lane: harmless zeros, never read back
      for (int64_t j = 0; j < classes; ++j) xt[j][lane] = 0.0f;
      continue;
    }
    const float* x = logits + (r0 + lane) * classes;
    const int32_t label = labels[r0 + lane];
    float mx = 0.0f;
    *hits += row_argmax(x, classes, &mx) == label ? 1 : 0;
    m[lane] = mx;
    x_label[lane] = x[label];
    for (int64_t j = 0; j < classes; ++j) xt[j][lane] = x[j];
  }
  Pack sum = Pack::Zero();
  for (int64_t j = 0; j < classes; ++j) {
    xt[j] = (xt[j] - m).exp();
    sum += xt[j];
  }
  double loss = 0.0;
  for (int lane = 0; lane < n; ++lane) {
    loss += std::log(static_cast<double>(sum[lane])) + static_cast<double>(m[lane]) -
            x_label[lane];
  }
  if (d_logits != nullptr) {
    const Pack k = scale / sum;
    for (int lane = 0; lane < n; ++lane) {
      float* d = d_logits + (r0 + lane) * classes;
      for (int64_t j = 0; j < classes; ++j) d[j] = xt[j][lane] * k[lane];
      d[labels[r0 + lane]] -= scale;
    }
  }
  return loss;
}

// One row, any number of classes (the path for classes > kGroupClasses).
double softmax_row(const float* x, int32_t label, float* d, int64_t classes, float scale,
                   int64_t* hits) {
  float m = 0.0f;
  *hits += row_argmax(x, classes, &m) == label ? 1 : 0;
  const float x_label = x[label];  // read before d (which may alias x) is written
  const double sum = row_exp(x, d, classes, m);
  if (d != nullptr) {
    const float k = static_cast<float>(scale / sum);
    for (int64_t j = 0; j < classes; ++j) d[j] *= k;
    d[label] -= scale;
  }
  return std::log(sum) + static_cast<double>(m) - x_label;
}

// Shared by the training and evaluation entry points, so their losses agree bitwise.
double softmax_rows(const char* fn, const float* logits, const int32_t* labels,
                    float* d_logits, int64_t rows, int64_t classes, float scale,
                    int64_t* correct) {
  for (int64_t r = 0; r < rows; ++r) check_label(fn, labels[r], r, classes);
  double loss = 0.0;
  int64_t hits = 0;
  if (classes <= kGroupClasses) {
    for (int64_t r0 = 0; r0 < rows; r0 += detail::kPack) {
      const int n = static_cast<int>(std::min<int64_t>(detail::kPack, rows - r0));
      loss += softmax_group(logits, labels, d_logits, r0, n, classes, scale, &hits);
    }
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      loss += softmax_row(logits + r * classes, labels[r],
                          d_logits != nullptr ? d_logits + r * classes : nullptr, classes, scale,
                          &hits);
    }
  }
  if (correct != nullptr) *correct += hits;
  return loss;
}

// Per-row mean of squared differences, summed in index order in double.
double mse_row(const float* p, const float* t, int64_t cols) {
  double sum = 0.0;
  for (int64_t j = 0; j < cols; ++j) {
    const double diff = static_cast<double>(p[j]) - static_cast<double>(t[j]);
    sum += diff * diff;
  }
  return sum / static_cast<double>(cols);
}

}  // namespace

double softmax_xent(const float* logits, const int32_t* labels, float* d_logits, int64_t rows,
                    int64_t classes, float scale, int64_t* correct) {
  return softmax_rows("softmax_xent", logits, labels, d_logits, rows, classes, scale, correct);
}

double softmax_xent_loss(const float* logits, const int32_t* labels, int64_t rows,
                         int64_t classes, int64_t* correct) {
  return softmax_rows("softmax_xent_loss", logits, labels, nullptr, rows, classes, 0.0f,
                      correct);
}

double mse(const float* pred, const float* target, float* d_pred, int64_t rows, int64_t cols,
           float scale) {
  const float k = scale * 2.0f / static_cast<float>(cols);
  double loss = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = pred + r * cols;
    const float* t = target + r * cols;
    loss += mse_row(p, t, cols);
    float* d = d_pred + r * cols;  // written after the loss: d_pred may alias pred
    for (int64_t j = 0; j < cols; ++j) d[j] = k * (p[j] - t[j]);
  }
  return loss;
}

double mse_loss(const float* pred, const float* target, int64_t rows, int64_t cols) {
  double loss = 0.0;
  for (int64_t r = 0; r < rows; ++r) loss += mse_row(pred + r * cols, target + r * cols, cols);
  return loss;
}

}  // namespace lockstep::cpu
