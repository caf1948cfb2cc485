// The Dense layer kind (z = x W + b, then activation, then dropout when
// training), written once over the device's kernels (src/device.h): its
// parameters are views into the arena at the offsets the Model assigned, its
// activations live in workspaces sized once for the most rows a slice has.
#pragma once

#include <cstdint>

#include "src/model.h"

namespace lockstep {

template <class D>
class Dense {
 public:
  Dense(const DenseLayer& spec, int64_t max_rows)
      : L_(spec), z_(size_t(max_rows * spec.out)),
        a_(spec.activation != Activation::kLinear ? size_t(max_rows * spec.out) : 0),
        d_(spec.dropout > 0.0f ? size_t(max_rows * spec.out) : 0) {}

  // Returns the output the next layer reads (rows, out); `index` names the
  // layer's dropout seed in the step block.
  const float* forward(D& dev, const float* params, const float* in, int64_t rows, bool training,
                       int index) {
    float* z = z_.data();
    dev.gemm(false, false, rows, L_.out, L_.in, 1.0f, in, L_.in, params + L_.weight_offset, L_.out,
             0.0f, z, L_.out);  // (rows, in) x (in, out)
    float* a = a_.size() == 0 ? z : a_.data();
    dev.bias_activation_forward(z, params + L_.bias_offset, a, rows, L_.out, L_.activation);
    if (!training || L_.dropout <= 0.0f) return a;
    dev.copy(d_.data(), a, rows * L_.out);
    dev.dropout_forward(d_.data(), rows, L_.out, L_.dropout, index);
    return d_.data();
  }

  // d(output) -> d(pre-activation), in place: dropout's mask, then the activation.
  void backward_output(D& dev, float* d, int64_t rows, int index) {
    if (L_.dropout > 0.0f) dev.dropout_backward(d, rows, L_.out, L_.dropout, index);
    const float* a = a_.size() == 0 ? z_.data() : a_.data();
    dev.activation_backward(d, z_.data(), a, d, rows * L_.out, L_.activation);
  }

  // From dz = d(pre-activation): the parameter gradients, and d(input) into
  // d_in unless it is null (the first layer).
  void backward(D& dev, const float* params, float* grads, const float* in, const float* dz,
                float* d_in, int64_t rows) {
    // dW (in, out) = in^T (in, rows) x dz (rows, out); db = column sums of dz.
    dev.gemm(true, false, L_.in, L_.out, rows, 1.0f, in, L_.in, dz, L_.out, 0.0f,
             grads + L_.weight_offset, L_.out);
    dev.bias_grad(dz, grads + L_.bias_offset, rows, L_.out, 0.0f);
    if (d_in == nullptr) return;
    // d(in) (rows, in) = dz (rows, out) x W^T (out, in).
    dev.gemm(false, true, rows, L_.in, L_.out, 1.0f, dz, L_.out, params + L_.weight_offset, L_.out,
             0.0f, d_in, L_.in);
  }

 private:
  DenseLayer L_;
  typename D::template Buffer<float> z_;  // pre-activation
  typename D::template Buffer<float> a_;  // activation (empty if linear)
  typename D::template Buffer<float> d_;  // after dropout (empty if none)
};

}  // namespace lockstep
