// Batch normalization over (rows, H, W) per channel, synchronized by default:
// the statistics partials (shifted sums, doubles) of every replica are summed
// with one all-reduce before normalizing, and d(input) needs the global sums of
// dy and dy*xhat, a second one in backward. Every replica then sees the global
// batch's mean and variance and updates identical moving statistics.
// sync: false normalizes with the replica's own slice; its moving statistics
// are still updated from the global batch's (the partials all-reduced once, after
// backward, together with every other such layer's), so they stay the same on every replica, in checkpoints and in
// evaluation whatever the replica count. Inference uses the moving statistics.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/layers/call.h"
#include "src/model.h"

namespace lockstep {

inline int64_t tensor_offset(const LayerSpec& L, const char* name) {
  for (const auto& t : L.tensors) {
    if (t.name == name) return t.offset;
  }
  return -1;
}

template <class D>
class BatchNorm {
 public:
  BatchNorm(const LayerSpec& spec, int64_t max_rows)
      : L_(spec), C_(spec.in.c), P_(spec.in.h * spec.in.w), y_(size_t(max_rows * spec.in_size())),
        stats_(size_t(2 * C_)), sums_(size_t(2 * C_)), mean_(size_t(C_)), var_(size_t(C_)),
        inv_std_(size_t(C_)), gamma_(tensor_offset(spec, "gamma")), beta_(tensor_offset(spec, "beta")),
        mm_(tensor_offset(spec, "moving_mean")), mv_(tensor_offset(spec, "moving_variance")) {}

  const float* forward(D& dev, float* params, const float* in, const LayerCall& c) {
    if (!c.training) {
      dev.batch_norm_inference(in, c.rows, C_, P_, params + mm_, params + mv_, params + gamma_,
                               params + beta_, L_.epsilon, y_.data());
      return y_.data();
    }
    dev.batch_norm_stats(in, c.rows, C_, P_, params + mm_, stats_.data());
    if (L_.sync) c.sum(stats_.data(), 2 * C_);
    moments(dev, params, L_.sync ? c.global_rows : c.rows);
    dev.batch_norm_forward(in, c.rows, C_, P_, mean_.data(), inv_std_.data(), params + gamma_,
                           params + beta_, y_.data());
    pending_ = L_.sync;
    return y_.data();
  }

  void backward(D& dev, const float* params, float* grads, const float* in, float* dy, float* dx,
                const LayerCall& c) {
    dev.batch_norm_backward_stats(dy, in, c.rows, C_, P_, mean_.data(), inv_std_.data(), sums_.data(),
                                  grads + gamma_, grads + beta_, 0.0f);
    if (!dx) return;
    if (L_.sync) c.sum(sums_.data(), 2 * C_);
    dev.batch_norm_backward_data(dy, in, c.rows, C_, P_, mean_.data(), inv_std_.data(),
                                 params + gamma_, sums_.data(),
                                 double(L_.sync ? c.global_rows : c.rows) * double(P_), dx);
  }

  // sync: false: the partials the network sums after backward (one all-reduce
  // for every such layer), then the moving statistics from the global batch's.
  void deferred(std::vector<DeferredSum>& out) {
    if (!L_.sync) out.push_back({stats_.data(), 2 * C_});
  }
  void finish(D& dev, float* params, const LayerCall& c) {
    if (L_.sync) return;
    moments(dev, params, c.global_rows);
    pending_ = true;
  }

  // No rows: zero partials into the same all-reduces, in the same order.
  void empty_forward(D& dev, float* params, const LayerCall& c) {
    dev.zero(stats_.data(), 2 * C_);
    if (!L_.sync) return;
    c.sum(stats_.data(), 2 * C_);
    moments(dev, params, c.global_rows);
    pending_ = true;
  }
  void empty_backward(D& dev, const LayerCall& c, bool has_dx) {
    if (!L_.sync || !has_dx) return;
    dev.zero(sums_.data(), 2 * C_);
    c.sum(sums_.data(), 2 * C_);
  }
  // Whether the step's statistics, which commit() would blend in, are finite (a
  // batch variance beyond float's range overflows the moving variance).
  bool state_finite(D& dev) {
    return !pending_ || (dev.all_finite(mean_.data(), C_) && dev.all_finite(var_.data(), C_));
  }
  // The step's moving statistics into the arena, once the step is known to be
  // applied (a skipped, non-finite step leaves them as they were).
  void commit(D& dev, float* params) {
    if (!pending_) return;
    pending_ = false;
    dev.batch_norm_update_moving(params + mm_, params + mv_, mean_.data(), var_.data(), C_,
                                 L_.momentum);
  }

 private:
  // The partials are shifted by the moving mean, which no replica changes before
  // every replica's step is over (commit()).
  void moments(D& dev, const float* params, int64_t rows) {
    dev.batch_norm_moments(stats_.data(), double(rows) * double(P_), params + mm_, C_, L_.epsilon,
                           mean_.data(), var_.data(), inv_std_.data());
  }

  LayerSpec L_;
  int64_t C_, P_;
  typename D::template Buffer<float> y_;
  typename D::template Buffer<double> stats_, sums_;
  typename D::template Buffer<float> mean_, var_, inv_std_;
  int64_t gamma_, beta_, mm_, mv_;
  bool pending_ = false;  // this step's moments wait for commit()
};

}  // namespace lockstep
