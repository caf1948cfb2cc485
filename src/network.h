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
    for (const LayerSpec& l : model.layers()) layers_.push_back(make_layer(l, max_rows_, dev_));
    out_.resize(layers_.size());
    for (auto& layer : layers_) std::visit([&](auto& k) { k.deferred(deferred_); }, layer);
    int64_t total = 0;
    for (const auto& d : deferred_) total += d.count;
    if (deferred_.size() > 1) fused_ = typename D::template Buffer<double>(size_t(total));
  }
  Network(const Model& model, int64_t max_rows)
      : Network(model, max_rows, D(model.layers().size())) {}

  D& device() { return dev_; }
  int64_t max_rows() const { return max_rows_; }
  // When set, train() stores there the time its forward pass (with the loss)
  // ended: the timeline's forward/backward boundary. nullptr costs nothing.
  std::chrono::steady_clock::time_point* mark_forward = nullptr;
  // Batch norm's all-reduce across the replicas in sync (src/layers/call.h);
  // unset: this network is the only replica.
  SyncSum sync;
  // false: the arena's state part (batch norm's moving statistics) is shared with
  // a replica that writes it, and this one leaves it alone.
  bool writes_state = true;

  // Forward + backward. grads (num_params) are OVERWRITTEN with the gradient of
  // loss_scale * (sum of per-example losses). on_ready(end) is called whenever the
  // arena prefix [0, end) of grads is final, last layer first (bucketing).
  // dropout_seed identifies the step's dropout masks (see kernels dropout).
  // params is only read: the state the step changes (batch norm's moving
  // statistics) waits for commit_state().
  SliceStats train(float* params, float* grads, const ReplicaBatch& b, float loss_scale,
                   uint64_t dropout_seed, const std::function<void(int64_t)>& on_ready) {
    LayerCall c{b.rows, b.global_rows, true, 0, &sync};
    if (b.rows == 0) return empty_train(params, grads, c, on_ready);
    dev_.begin_slice(dropout_seed, b.sample_base + b.first_row);
    const DeviceInputs in = dev_.inputs(b);
    const float* out = forward(params, in.x, c);
    float* dy = grad_a_.data();
    float* dprev = grad_b_.data();
    const SliceStats s = loss(out, in, b.rows, dy, loss_scale);  // dy = d loss / d logits
    if (mark_forward) *mark_forward = std::chrono::steady_clock::now();
    for (size_t l = layers_.size(); l-- > 0;) {
      const float* x = l == 0 ? in.x : out_[l - 1];
      c.index = int(l);
      c.reads_input = x == in.x;  // as in forward (a pass-through keeps the pointer)
      std::visit([&](auto& k) { k.backward(dev_, params, grads, x, dy, l > 0 ? dprev : nullptr, c); },
                 layers_[l]);
      on_ready(model_.grad_ready_end(l));
      std::swap(dy, dprev);
    }
    finish(params, c);
    return s;
  }

  // The last train()'s state (batch norm's moving statistics) into params, once
  // the step is applied; a skipped step calls nothing. Only when writes_state.
  void commit_state(float* params) {
    if (!writes_state) return;
    for (auto& layer : layers_) std::visit([&](auto& k) { k.commit(dev_, params); }, layer);
  }

  // Whether what commit_state() would write is finite (the same on every replica:
  // batch norm's statistics are the global batch's).
  bool state_finite() {
    bool ok = true;
    for (auto& layer : layers_) std::visit([&](auto& k) { ok = ok && k.state_finite(dev_); }, layer);
    return ok;
  }

  // Forward only (no dropout, batch norm's moving statistics): loss and accuracy.
  // (Inference writes nothing: params is read only.)
  SliceStats evaluate(const float* params, const ReplicaBatch& b) {
    if (b.rows == 0) return {};
    const DeviceInputs in = dev_.inputs(b);
    const LayerCall c{b.rows, b.rows, false, 0, nullptr};
    return loss(forward(const_cast<float*>(params), in.x, c), in, b.rows, nullptr, 1.0f);
  }

  // Forward only: returns the output layer (rows, output_dim) before softmax.
  const float* predict(const float* params, const float* x, int64_t rows) {
    return forward(const_cast<float*>(params), x, LayerCall{rows, rows, false, 0, nullptr});
  }

 private:
  const float* forward(float* params, const float* x, LayerCall c) {
    if (c.rows > max_rows_) {
      throw std::invalid_argument("replica workspace holds " + std::to_string(max_rows_) +
                                  " rows, asked for " + std::to_string(c.rows));
    }
    const float* in = x;
    for (size_t l = 0; l < layers_.size(); ++l) {
      c.index = int(l);
      c.reads_input = in == x;
      in = std::visit([&](auto& k) { return k.forward(dev_, params, in, c); }, layers_[l]);
      out_[l] = in;
    }
    return in;
  }
  // A short last batch can leave a replica without rows: zero gradients, every
  // bucket, and its part in every collective the layers make (batch norm).
  SliceStats empty_train(float* params, float* grads, LayerCall c,
                         const std::function<void(int64_t)>& on_ready) {
    dev_.zero(grads, model_.num_params());
    for (auto& layer : layers_) std::visit([&](auto& k) { k.empty_forward(dev_, params, c); }, layer);
    for (size_t l = layers_.size(); l-- > 0;) {
      std::visit([&](auto& k) { k.empty_backward(dev_, c, l > 0); }, layers_[l]);
      on_ready(model_.grad_ready_end(l));
    }
    finish(params, c);
    return dev_.empty_slice();
  }
  // The deferred sums in one all-reduce (copied through one buffer when there
  // are several), then every layer's finish.
  void finish(float* params, const LayerCall& c) {
    if (deferred_.size() == 1) c.sum(deferred_[0].data, deferred_[0].count);
    if (deferred_.size() > 1) {
      int64_t at = 0;
      for (const auto& d : deferred_) dev_.copy(fused_.data() + at, d.data, d.count), at += d.count;
      c.sum(fused_.data(), at);
      at = 0;
      for (const auto& d : deferred_) dev_.copy(d.data, fused_.data() + at, d.count), at += d.count;
    }
    for (auto& layer : layers_) std::visit([&](auto& k) { k.finish(dev_, params, c); }, layer);
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
  std::vector<DeferredSum> deferred_;            // what the layers leave to sum after backward
  typename D::template Buffer<double> fused_;    // their one all-reduce buffer (several of them)
};

// The CPU network: evaluation, predict, serve and the CPU replicas' step.
using CpuNetwork = Network<CpuDevice>;

}  // namespace lockstep
