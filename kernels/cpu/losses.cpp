// Loss kernels: softmax cross-entropy (with accuracy count) and mean squared error.
// Softmax is max-subtracted and the loss is log-sum-exp in double, so logits of
// 1e4 stay finite. Exponentials run in 8-float packs (pack.h).
#include "kernels/cpu/ops.h"

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
  double loss = 0.0;
  int64_t hits = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * classes;
    float* d = d_logits + r * classes;
    const int32_t label = labels[r];
    check_label("softmax_xent", label, r, classes);
    float m = 0.0f;
    hits += row_argmax(x, classes, &m) == label ? 1 : 0;
    const float x_label = x[label];  // read before d (which may alias x) is written
    const double sum = row_exp(x, d, classes, m);
    loss += std::log(sum) + static_cast<double>(m) - x_label;
    const float k = static_cast<float>(scale / sum);
    for (int64_t j = 0; j < classes; ++j) d[j] *= k;
    d[label] -= scale;
  }
  if (correct != nullptr) *correct += hits;
  return loss;
}

double softmax_xent_loss(const float* logits, const int32_t* labels, int64_t rows,
                         int64_t classes, int64_t* correct) {
  double loss = 0.0;
  int64_t hits = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * classes;
    const int32_t label = labels[r];
    check_label("softmax_xent_loss", label, r, classes);
    float m = 0.0f;
    hits += row_argmax(x, classes, &m) == label ? 1 : 0;
    const double sum = row_exp(x, nullptr, classes, m);
    loss += std::log(sum) + static_cast<double>(m) - x[label];
  }
  if (correct != nullptr) *correct += hits;
  return loss;
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
