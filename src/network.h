// A Model's layers on one device: forward, loss and backward of a replica's
// slice, written once over the device (src/device.h) for the CPU and CUDA
// alike, with activation workspaces sized once (no allocation per step).
// Parameters and gradients are flat arenas owned by the caller. Backward walks
// the layers from the last, so every layer's gradient is final as soon as its
// GEMMs are done and can be handed to the reducer while earlier layers compute.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "data/input.h"
#include "src/device.h"
#include "src/layers/layers.h"
#include "src/model.h"

namespace lockstep {

template <class D>
class Network {
 public:
  // max_rows: the most rows a slice passed to train/evaluate/predict may have.
  Network(const Model& model, int64_t max_rows, D device)
      : model_(model), max_rows_(std::max<int64_t>(max_rows, 1)), dev_(std::move(device)),
        grad_a_(size_t(max_rows_ * model.max_width())),
        grad_b_(size_t(max_rows_ * model.max_width())) {
    layers_.reserve(model.layers().size());
    for (const DenseLayer& l : model.layers()) layers_.emplace_back(Dense<D>(l, max_rows_));
    out_.resize(layers_.size());
  }
  Network(const Model& model, int64_t max_rows)
      : Network(model, max_rows, D(model.layers().size())) {}

  D& device() { return dev_; }
  int64_t max_rows() const { return max_rows_; }
  // When set, train() stores there the time its forward pass (with the loss)
  // ended: the timeline's forward/backward boundary. nullptr costs nothing.
  std::chrono::steady_clock::time_point* mark_forward = nullptr;

  // Forward + backward. grads (num_params) are OVERWRITTEN with the gradient of
  // loss_scale * (sum of per-example losses). on_ready(end) is called whenever the
  // arena prefix [0, end) of grads is final, last layer first (bucketing).
  // dropout_seed identifies the step's dropout masks (see kernels dropout).
  SliceStats train(const float* params, float* grads, const ReplicaBatch& b, float loss_scale,
                   uint64_t dropout_seed, const std::function<void(int64_t)>& on_ready) {
    if (b.rows == 0) {  // a short last batch can leave a replica without rows
      dev_.zero(grads, model_.num_params());
      for (size_t l = layers_.size(); l-- > 0;) on_ready(model_.grad_ready_end(l));
      return dev_.empty_slice();
    }
    dev_.begin_slice(dropout_seed, b.sample_base + b.first_row);
    const DeviceInputs in = dev_.inputs(b);
    const int64_t rows = b.rows;
    const float* out = forward(params, in.x, rows, true);
    float* dz = grad_a_.data();
    float* dprev = grad_b_.data();
    const SliceStats s = loss(out, in, rows, dz, loss_scale);  // dz = d loss / d logits
    if (mark_forward) *mark_forward = std::chrono::steady_clock::now();
    for (size_t l = layers_.size(); l-- > 0;) {
      const float* x = l == 0 ? in.x : out_[l - 1];
      std::visit([&](auto& k) { k.backward(dev_, params, grads, x, dz, l > 0 ? dprev : nullptr, rows); },
                 layers_[l]);
      if (l > 0) {
        std::visit([&](auto& k) { k.backward_output(dev_, dprev, rows, int(l - 1)); }, layers_[l - 1]);
      }
      on_ready(model_.grad_ready_end(l));
      std::swap(dz, dprev);
    }
    return s;
  }

  // Forward only (no dropout): loss and accuracy of a slice.
  SliceStats evaluate(const float* params, const ReplicaBatch& b) {
    if (b.rows == 0) return {};
    const DeviceInputs in = dev_.inputs(b);
    return loss(forward(params, in.x, b.rows, false), in, b.rows, nullptr, 1.0f);
  }

  // Forward only: returns the output layer (rows, output_dim) before softmax.
  const float* predict(const float* params, const float* x, int64_t rows) {
    return forward(params, x, rows, false);
  }

 private:
  const float* forward(const float* params, const float* x, int64_t rows, bool training) {
    if (rows > max_rows_) {
      throw std::invalid_argument("replica workspace holds " + std::to_string(max_rows_) +
                                  " rows, asked for " + std::to_string(rows));
    }
    const float* in = x;
    for (size_t l = 0; l < layers_.size(); ++l) {
      in = std::visit([&](auto& k) { return k.forward(dev_, params, in, rows, training, int(l)); },
                      layers_[l]);
      out_[l] = in;
    }
    return in;
  }
  SliceStats loss(const float* out, const DeviceInputs& in, int64_t rows, float* d_out,
                  float scale) {
    return dev_.loss(model_.loss(), out, in, rows, model_.output_dim(), d_out, scale);
  }

  const Model& model_;
  int64_t max_rows_;
  D dev_;
  std::vector<Layer<D>> layers_;
  std::vector<const float*> out_;  // per layer: what the next layer reads
  typename D::template Buffer<float> grad_a_, grad_b_;  // (rows, max_width) ping-pong for backward
};

// The CPU network: evaluation, predict, serve and the CPU replicas' step.
using CpuNetwork = Network<CpuDevice>;

}  // namespace lockstep
