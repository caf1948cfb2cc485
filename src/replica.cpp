// Forward/backward of a Dense stack on one replica's slice. Backward walks the
// layers from the last, so every layer's gradient is final as soon as its GEMMs
// are done and can be handed to the reducer while earlier layers still compute.
#include "src/replica.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/cpu/ops.h"
#include "src/random.h"

namespace lockstep {

ReplicaModel::ReplicaModel(const Model& model, int64_t max_rows)
    : model_(model), max_rows_(std::max<int64_t>(max_rows, 1)) {
  const auto& layers = model.layers();
  z_.resize(layers.size());
  a_.resize(layers.size());
  d_.resize(layers.size());
  out_.resize(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    const size_t n = size_t(max_rows_ * layers[l].out);
    z_[l].assign(n, 0.0f);
    if (layers[l].activation != Activation::kLinear) a_[l].assign(n, 0.0f);
    if (layers[l].dropout > 0.0f) d_[l].assign(n, 0.0f);
  }
  const size_t g = size_t(max_rows_ * model.max_width());
  grad_a_.assign(g, 0.0f);
  grad_b_.assign(g, 0.0f);
}

const float* ReplicaModel::forward(const float* params, const float* x, int64_t rows,
                                   bool training, uint64_t dropout_seed, int64_t first_row) {
  if (rows > max_rows_) {
    throw std::invalid_argument("replica workspace holds " + std::to_string(max_rows_) +
                                " rows, asked for " + std::to_string(rows));
  }
  const auto& layers = model_.layers();
  const float* in = x;
  for (size_t l = 0; l < layers.size(); ++l) {
    const DenseLayer& L = layers[l];
    float* z = z_[l].data();
    cpu::gemm(false, false, rows, L.out, L.in, 1.0f, in, L.in, params + L.weight_offset, L.out,
              0.0f, z, L.out);  // (rows, in) x (in, out)
    float* a = a_[l].empty() ? z : a_[l].data();
    cpu::bias_activation_forward(z, params + L.bias_offset, a, rows, L.out, L.activation);
    const float* out = a;
    if (training && L.dropout > 0.0f) {
      std::memcpy(d_[l].data(), a, sizeof(float) * size_t(rows * L.out));
      cpu::dropout_forward(d_[l].data(), rows, L.out, L.dropout, mix_seed(dropout_seed, l),
                           first_row);
      out = d_[l].data();
    }
    out_[l] = out;
    in = out;
  }
  return in;
}

SliceStats ReplicaModel::loss_forward(const float* out, const ReplicaBatch& b, float* d_out,
                                      float scale) {
  SliceStats s;
  s.rows = b.rows;
  const int64_t k = model_.output_dim();
  if (model_.loss() == LossKind::kSoftmaxCrossEntropy) {
    s.loss_sum = d_out ? cpu::softmax_xent(out, b.labels, d_out, b.rows, k, scale, &s.correct)
                       : cpu::softmax_xent_loss(out, b.labels, b.rows, k, &s.correct);
  } else {
    s.loss_sum = d_out ? cpu::mse(out, b.targets, d_out, b.rows, k, scale)
                       : cpu::mse_loss(out, b.targets, b.rows, k);
  }
  return s;
}

SliceStats ReplicaModel::train(const float* params, float* grads, const ReplicaBatch& b,
                               float loss_scale, uint64_t dropout_seed,
                               const std::function<void(int64_t)>& on_ready) {
  const auto& layers = model_.layers();
  const size_t last = layers.size() - 1;
  if (b.rows == 0) {  // a short last batch can leave a replica without rows
    std::fill(grads, grads + model_.num_params(), 0.0f);
    for (size_t l = layers.size(); l-- > 0;) on_ready(model_.grad_ready_end(l));
    return {};
  }
  const int64_t rows = b.rows;
  const float* out = forward(params, b.x, rows, true, dropout_seed, b.sample_base + b.first_row);
  float* dz = grad_a_.data();
  float* dprev = grad_b_.data();
  SliceStats s = loss_forward(out, b, dz, loss_scale);  // dz = d loss / d logits
  if (mark_forward) *mark_forward = std::chrono::steady_clock::now();
  for (size_t l = last + 1; l-- > 0;) {
    const DenseLayer& L = layers[l];
    const float* in = l == 0 ? b.x : out_[l - 1];
    // dW (in, out) = in^T (in, rows) x dz (rows, out); db = column sums of dz.
    cpu::gemm(true, false, L.in, L.out, rows, 1.0f, in, L.in, dz, L.out, 0.0f,
              grads + L.weight_offset, L.out);
    cpu::bias_grad(dz, grads + L.bias_offset, rows, L.out, 0.0f);
    if (l > 0) {
      const DenseLayer& P = layers[l - 1];
      // d(in) (rows, in) = dz (rows, out) x W^T (out, in).
      cpu::gemm(false, true, rows, L.in, L.out, 1.0f, dz, L.out, params + L.weight_offset, L.out,
                0.0f, dprev, L.in);
      if (P.dropout > 0.0f) {
        cpu::dropout_backward(dprev, rows, P.out, P.dropout,
                              mix_seed(dropout_seed, l - 1), b.sample_base + b.first_row);
      }
      const float* pa = a_[l - 1].empty() ? z_[l - 1].data() : a_[l - 1].data();
      cpu::activation_backward(dprev, z_[l - 1].data(), pa, dprev, rows * P.out, P.activation);
    }
    on_ready(model_.grad_ready_end(l));
    std::swap(dz, dprev);
  }
  return s;
}

SliceStats ReplicaModel::evaluate(const float* params, const ReplicaBatch& b) {
  if (b.rows == 0) return {};
  const float* out = forward(params, b.x, b.rows, false, 0, 0);
  return loss_forward(out, b, nullptr, 1.0f);
}

const float* ReplicaModel::predict(const float* params, const float* x, int64_t rows) {
  return forward(params, x, rows, false, 0, 0);
}

}  // namespace lockstep
