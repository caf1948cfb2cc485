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
        stats_(size_t(2 * C_)), sums_(size_t(2 * C_)), shift_(size_t(C_)), mean_(size_t(C_)),
        var_(size_t(C_)), inv_std_(size_t(C_)), gamma_(tensor_offset(spec, "gamma")), beta_(tensor_offset(spec, "beta")),
        mm_(tensor_offset(spec, "moving_mean")), mv_(tensor_offset(spec, "moving_variance")) {}

  const float* forward(D& dev, float* params, const float* in, const LayerCall& c) {
    if (!c.training) {
      dev.batch_norm_inference(in, c.rows, C_, P_, params + mm_, params + mv_, params + gamma_,
                               params + beta_, L_.epsilon, y_.data());
      return y_.data();
    }
    take_shift(dev, params);
    dev.batch_norm_stats(in, c.rows, C_, P_, shift_.data(), stats_.data());
    if (L_.sync) c.sum(stats_.data(), 2 * C_);
    moments(dev, L_.sync ? c.global_rows : c.rows);
    dev.batch_norm_forward(in, c.rows, C_, P_, mean_.data(), inv_std_.data(), params + gamma_,
                           params + beta_, y_.data());
    if (L_.sync) update_moving(dev, params, c);
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
    moments(dev, c.global_rows);
    update_moving(dev, params, c);
  }

  // No rows: zero partials into the same all-reduces, in the same order.
  void empty_forward(D& dev, float* params, const LayerCall& c) {
    take_shift(dev, params);
    dev.zero_doubles(stats_.data(), 2 * C_);
    if (!L_.sync) return;
    c.sum(stats_.data(), 2 * C_);
    moments(dev, c.global_rows);
    update_moving(dev, params, c);
  }
  void empty_backward(D& dev, const LayerCall& c, bool has_dx) {
    if (!L_.sync || !has_dx) return;
    dev.zero_doubles(sums_.data(), 2 * C_);
    c.sum(sums_.data(), 2 * C_);
  }
  bool sync() const { return L_.sync; }

 private:
  // The partials are shifted by the moving mean as it was when the step began,
  // kept here: on CPU replicas sharing one arena, replica 0 may update the moving
  // mean while another replica still computes its moments.
  void take_shift(D& dev, const float* params) { dev.copy(shift_.data(), params + mm_, C_); }
  void moments(D& dev, int64_t rows) {
    dev.batch_norm_moments(stats_.data(), double(rows) * double(P_), shift_.data(), C_, L_.epsilon,
                           mean_.data(), var_.data(), inv_std_.data());
  }
  // Identical on every replica; only the ones that own their arena's state write it.
  void update_moving(D& dev, float* params, const LayerCall& c) {
    if (!c.write_state) return;
    dev.batch_norm_update_moving(params + mm_, params + mv_, mean_.data(), var_.data(), C_,
                                 L_.momentum);
  }

  LayerSpec L_;
  int64_t C_, P_;
  typename D::template Buffer<float> y_;
  typename D::template Buffer<double> stats_, sums_;
  typename D::template Buffer<float> shift_, mean_, var_, inv_std_;
  int64_t gamma_, beta_, mm_, mv_;
};

}  // namespace lockstep
