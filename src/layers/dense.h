// The Dense layer kind (z = x W + b, then activation, then dropout when
// training), written once over the device's kernels (src/device.h): its
// parameters are views into the arena at the offsets the Model assigned, its
// activations live in workspaces sized once for the most rows a slice has. An
// input with a shape (C, H, W) is read as its C*H*W features. Reading the
// network's input (LayerCall::reads_input) in a training step, it hands its two
// big GEMMs to the device's input_gemm (the CPU skips the input's zeros where that
// pays, a choice made per slice). Evaluation, predict and serve keep gemm(), so a
// row's outputs there never depend on the rows evaluated beside it.
#pragma once

#include <cstdint>
#include <vector>

#include "src/layers/call.h"
#include "src/model.h"

namespace lockstep {

template <class D>
class Dense : public NoCollectives {
 public:
  Dense(const LayerSpec& spec, int64_t max_rows)
      : L_(spec), in_(spec.in_size()), out_(spec.out_size()), z_(size_t(max_rows * out_)),
        a_(spec.activation != Activation::kLinear ? size_t(max_rows * out_) : 0),
        d_(spec.dropout > 0.0f ? size_t(max_rows * out_) : 0) {}

  const float* forward(D& dev, float* params, const float* in, const LayerCall& c) {
    const int64_t rows = c.rows;
    float* z = z_.data();
    if (c.reads_input && c.training) {  // the network's input: the device may skip its zeros
      dev.input_gemm(input_, rows, out_, in_, in, params + L_.weight_offset, z);
    } else {
      dev.gemm(false, false, rows, out_, in_, 1.0f, in, in_, params + L_.weight_offset, out_,
               0.0f, z, out_);  // (rows, in) x (in, out)
    }
    float* a = a_.size() == 0 ? z : a_.data();
    dev.bias_activation_forward(z, params + L_.bias_offset, a, rows, out_, L_.activation);
    if (!c.training || L_.dropout <= 0.0f) return a;
    dev.copy(d_.data(), a, rows * out_);
    dev.dropout_forward(d_.data(), rows, out_, L_.dropout, c.index);
    return d_.data();
  }

  // dy = d(output) -> dz = d(pre-activation), in place: dropout's mask, then the
  // activation; then dW, db, and d(input) unless dx is null (the first layer).
  void backward(D& dev, const float* params, float* grads, const float* in, float* dy, float* dx,
                const LayerCall& c) {
    const int64_t rows = c.rows;
    if (L_.dropout > 0.0f) dev.dropout_backward(dy, rows, out_, L_.dropout, c.index);
    if (L_.activation != Activation::kLinear) {
      dev.activation_backward(dy, z_.data(), a_.data(), dy, rows * out_, L_.activation);
    }
    // dW (in, out) = in^T (in, rows) x dz (rows, out); db = column sums of dz.
    if (c.reads_input) {  // as its forward did
      dev.input_gemm_weights(input_, rows, out_, in_, in, dy, grads + L_.weight_offset);
    } else {
      dev.gemm(true, false, in_, out_, rows, 1.0f, in, in_, dy, out_, 0.0f,
               grads + L_.weight_offset, out_);
    }
    dev.bias_grad(dy, grads + L_.bias_offset, rows, out_, 0.0f);
    if (dx == nullptr) return;
    // d(in) (rows, in) = dz (rows, out) x W^T (out, in).
    dev.gemm(false, true, rows, in_, out_, 1.0f, dy, out_, params + L_.weight_offset, out_, 0.0f,
             dx, in_);
  }

 private:
  LayerSpec L_;
  int64_t in_, out_;
  typename D::template Buffer<float> z_;  // pre-activation
  typename D::template Buffer<float> a_;  // activation (empty if linear)
  typename D::template Buffer<float> d_;  // after dropout (empty if none)
  typename D::InputIndex input_;          // where the network's input is zero (reads_input)
};

}  // namespace lockstep
