// The residual block (ResNet v1 "basic block"): out = act(bn2(conv2(act(bn1(
// conv1(x))))) + shortcut(x)), both convolutions 3x3 "same" without bias (batch
// norm follows), conv1 with the block's stride; the shortcut is x itself, or a
// 1x1 convolution with the stride and its batch norm when the shape changes.
// Made of the Conv2d and BatchNorm kinds, so the block has no kernels of its own.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "src/layers/batch_norm.h"
#include "src/layers/call.h"
#include "src/layers/conv.h"
#include "src/model.h"

namespace lockstep {

template <class D>
class Residual {
 public:
  Residual(const LayerSpec& spec, int64_t max_rows, D& dev)
      : L_(spec), in_(spec.in_size()), out_(spec.out_size()),
        conv1_(spec.parts[0], max_rows, dev), bn1_(spec.parts[1], max_rows),
        conv2_(spec.parts[2], max_rows, dev), bn2_(spec.parts[3], max_rows),
        a1_(size_t(max_rows * out_)), sum_(size_t(max_rows * out_)), a_(size_t(max_rows * out_)),
        zeros_(size_t(spec.out.h * spec.out.w)), t1_(size_t(max_rows * out_)),
        t2_(size_t(max_rows * out_)), t3_(spec.parts.size() > 4 ? size_t(max_rows * in_) : 0) {
    if (spec.parts.size() > 4) {
      proj_.emplace(spec.parts[4], max_rows, dev);
      proj_bn_.emplace(spec.parts[5], max_rows);
    }
    dev.zero(zeros_.data(), int64_t(zeros_.size()));
  }

  const float* forward(D& dev, float* params, const float* x, const LayerCall& c) {
    const int64_t n = c.rows * out_;
    c1_ = conv1_.forward(dev, params, x, c);
    b1_ = bn1_.forward(dev, params, c1_, c);
    act(dev, const_cast<float*>(b1_), a1_.data(), c.rows);
    c2_ = conv2_.forward(dev, params, a1_.data(), c);
    const float* b2 = bn2_.forward(dev, params, c2_, c);
    const float* s = x;
    if (proj_) {
      pc_ = proj_->forward(dev, params, x, c);
      s = proj_bn_->forward(dev, params, pc_, c);
    }
    dev.copy(sum_.data(), b2, n);
    dev.axpy(n, 1.0f, s, sum_.data());
    act(dev, sum_.data(), a_.data(), c.rows);
    return a_.data();
  }

  // The batch norms' collectives run in the order bn2, proj_bn, bn1.
  void backward(D& dev, const float* params, float* grads, const float* x, float* dy, float* dx,
                const LayerCall& c) {
    const int64_t n = c.rows * out_;
    dev.activation_backward(dy, sum_.data(), a_.data(), dy, n, L_.activation);  // dy: d(sum)
    bn2_.backward(dev, params, grads, c2_, dy, t1_.data(), c);                   // t1: d(conv2 out)
    if (proj_) {
      proj_bn_->backward(dev, params, grads, pc_, dy, t2_.data(), c);            // t2: d(proj out)
      proj_->backward(dev, params, grads, x, t2_.data(), dx ? t3_.data() : nullptr, c);
    }
    conv2_.backward(dev, params, grads, a1_.data(), t1_.data(), t2_.data(), c);  // t2: d(a1)
    dev.activation_backward(t2_.data(), b1_, a1_.data(), t2_.data(), n, L_.activation);
    bn1_.backward(dev, params, grads, c1_, t2_.data(), t1_.data(), c);           // t1: d(conv1 out)
    conv1_.backward(dev, params, grads, x, t1_.data(), dx, c);
    if (dx) dev.axpy(c.rows * in_, 1.0f, proj_ ? t3_.data() : dy, dx);          // + the shortcut's
  }

  void deferred(std::vector<DeferredSum>& out) { each_bn([&](auto& b) { b.deferred(out); }); }
  void finish(D& dev, float* params, const LayerCall& c) { each_bn([&](auto& b) { b.finish(dev, params, c); }); }
  bool state_finite(D& dev) {
    return bn1_.state_finite(dev) && bn2_.state_finite(dev) && (!proj_bn_ || proj_bn_->state_finite(dev));
  }
  void commit(D& dev, float* params) { each_bn([&](auto& b) { b.commit(dev, params); }); }
  void empty_forward(D& dev, float* params, const LayerCall& c) {
    each_bn([&](auto& b) { b.empty_forward(dev, params, c); });
  }
  void empty_backward(D& dev, const LayerCall& c, bool) {
    bn2_.empty_backward(dev, c, true);
    if (proj_bn_) proj_bn_->empty_backward(dev, c, true);
    bn1_.empty_backward(dev, c, true);
  }

 private:
  // bn1, bn2, then the projection's (the order of the deferred sums and collectives).
  template <class F>
  void each_bn(F f) {
    f(bn1_);
    f(bn2_);
    if (proj_bn_) f(*proj_bn_);
  }
  // out = act(z), z kept for the backward (a zero bias over each plane's pixels).
  void act(D& dev, float* z, float* out, int64_t rows) {
    dev.bias_activation_forward(z, zeros_.data(), out, rows * L_.filters, L_.out.h * L_.out.w,
                                L_.activation);
  }

  LayerSpec L_;
  int64_t in_, out_;
  Conv2d<D> conv1_;
  BatchNorm<D> bn1_;
  Conv2d<D> conv2_;
  BatchNorm<D> bn2_;
  std::optional<Conv2d<D>> proj_;
  std::optional<BatchNorm<D>> proj_bn_;
  typename D::template Buffer<float> a1_, sum_, a_, zeros_, t1_, t2_, t3_;
  const float *c1_ = nullptr, *b1_ = nullptr, *c2_ = nullptr, *pc_ = nullptr;  // this step's
};

}  // namespace lockstep
