// The convolutional layer kinds over the device's kernels (kernels/cpu/cnn.h,
// kernels/cuda/cnn.h): Conv2d (+ bias, activation), Pool2d (max, average,
// global average), Reshape (flatten: the same memory, a new shape) and Dropout.
// Activations are (rows, C, H, W) row-major; workspaces are sized once.
#pragma once

#include <cstdint>
#include <vector>

#include "src/layers/call.h"
#include "src/model.h"

namespace lockstep {

inline Conv2dGeometry conv_geometry(const LayerSpec& L, int64_t rows) {
  return conv2d_geometry(rows, L.in.c, L.in.h, L.in.w, L.filters, L.kernel, L.kernel, L.stride,
                         L.stride, L.padding);
}

template <class D>
class Conv2d : public NoCollectives {
 public:
  Conv2d(const LayerSpec& spec, int64_t max_rows, D& dev)
      : L_(spec), out_(spec.out_size()), z_(size_t(max_rows * out_)),
        a_(spec.activation != Activation::kLinear ? size_t(max_rows * out_) : 0),
        zeros_(spec.activation != Activation::kLinear ? size_t(spec.out.h * spec.out.w) : 0),
        ws_(size_t(std::max<int64_t>(1, dev.conv2d_workspace_size(conv_geometry(spec, 1))))) {
    if (zeros_.size() > 0) dev.zero(zeros_.data(), int64_t(zeros_.size()));
  }

  const float* forward(D& dev, float* params, const float* in, const LayerCall& c) {
    const Conv2dGeometry g = conv_geometry(L_, c.rows);
    dev.conv2d_forward(g, in, params + L_.weight_offset, L_.use_bias ? params + L_.bias_offset : nullptr,
                       z_.data(), ws_.data());
    if (a_.size() == 0) return z_.data();
    // The activation alone: a zero "bias" over each (row, filter) plane's pixels.
    dev.bias_activation_forward(z_.data(), zeros_.data(), a_.data(), c.rows * L_.filters,
                                g.out_pixels, L_.activation);
    return a_.data();
  }

  void backward(D& dev, const float* params, float* grads, const float* in, float* dy, float* dx,
                const LayerCall& c) {
    const Conv2dGeometry g = conv_geometry(L_, c.rows);
    if (a_.size() > 0) dev.activation_backward(dy, z_.data(), a_.data(), dy, c.rows * out_, L_.activation);
    dev.conv2d_backward_weights(g, in, dy, grads + L_.weight_offset,
                                L_.use_bias ? grads + L_.bias_offset : nullptr, 0.0f, ws_.data());
    if (dx) dev.conv2d_backward_data(g, dy, params + L_.weight_offset, dx, ws_.data());
  }

 private:
  LayerSpec L_;
  int64_t out_;
  typename D::template Buffer<float> z_, a_, zeros_, ws_;
};

// Max, average (valid windows) and global average pooling.
template <class D>
class Pool2d : public NoCollectives {
 public:
  Pool2d(const LayerSpec& spec, int64_t max_rows)
      : L_(spec), y_(size_t(max_rows * spec.out_size())),
        argmax_(spec.type == LayerType::kMaxPool2d ? size_t(max_rows * spec.out_size()) : 0) {}

  const float* forward(D& dev, float*, const float* in, const LayerCall& c) {
    const Shape& s = L_.in;
    if (L_.type == LayerType::kGlobalAvgPool2d) {
      dev.global_avg_pool2d_forward(in, y_.data(), c.rows, s.c, s.h * s.w);
    } else if (L_.type == LayerType::kMaxPool2d) {
      dev.max_pool2d_forward(geometry(c.rows), in, y_.data(), argmax_.data());
    } else {
      dev.avg_pool2d_forward(geometry(c.rows), in, y_.data());
    }
    return y_.data();
  }

  void backward(D& dev, const float*, float*, const float*, float* dy, float* dx, const LayerCall& c) {
    if (!dx) return;
    const Shape& s = L_.in;
    if (L_.type == LayerType::kGlobalAvgPool2d) {
      dev.global_avg_pool2d_backward(dy, dx, c.rows, s.c, s.h * s.w);
    } else if (L_.type == LayerType::kMaxPool2d) {
      dev.max_pool2d_backward(geometry(c.rows), dy, argmax_.data(), dx);
    } else {
      dev.avg_pool2d_backward(geometry(c.rows), dy, dx);
    }
  }

 private:
  Pool2dGeometry geometry(int64_t rows) const {
    return pool2d_geometry(rows, L_.in.c, L_.in.h, L_.in.w, L_.pool, L_.pool, L_.pool_stride,
                           L_.pool_stride);
  }
  LayerSpec L_;
  typename D::template Buffer<float> y_;
  typename D::template Buffer<int32_t> argmax_;
};

// Flatten: the output is the input read as (rows, C*H*W).
template <class D>
class Reshape : public NoCollectives {
 public:
  explicit Reshape(const LayerSpec& spec) : size_(spec.in_size()) {}
  const float* forward(D&, float*, const float* in, const LayerCall&) { return in; }
  void backward(D& dev, const float*, float*, const float*, float* dy, float* dx, const LayerCall& c) {
    if (dx) dev.copy(dx, dy, c.rows * size_);
  }

 private:
  int64_t size_;
};

// Dropout as a layer of its own (training only; the same masks as Dense's).
template <class D>
class Dropout : public NoCollectives {
 public:
  Dropout(const LayerSpec& spec, int64_t max_rows)
      : rate_(spec.dropout), size_(spec.in_size()), d_(size_t(max_rows * size_)) {}
  const float* forward(D& dev, float*, const float* in, const LayerCall& c) {
    if (!c.training || rate_ <= 0.0f) return in;
    dev.copy(d_.data(), in, c.rows * size_);
    dev.dropout_forward(d_.data(), c.rows, size_, rate_, c.index);
    return d_.data();
  }
  void backward(D& dev, const float*, float*, const float*, float* dy, float* dx, const LayerCall& c) {
    if (!dx) return;
    if (rate_ > 0.0f) dev.dropout_backward(dy, c.rows, size_, rate_, c.index);
    dev.copy(dx, dy, c.rows * size_);
  }

 private:
  float rate_;
  int64_t size_;
  typename D::template Buffer<float> d_;
};

}  // namespace lockstep
