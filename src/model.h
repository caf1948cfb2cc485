// The model definition (a stack of layers: dense, conv2d, pooling, flatten,
// batch norm, dropout, residual blocks) and its flat parameter layout.
// A Model holds no state: parameters, gradients and optimizer slots live in flat
// arenas owned by each replica (replica.h), and layers are views (offsets) into
// them. The arena is [trainable | state]: the trainable part stores the LAST
// layer first, so the gradients that backward finishes first form a growing
// prefix [0, ready) that buckets can reduce early; the state part (batch norm's
// moving statistics) follows it, has no gradient and no optimizer slots, and is
// the same on every replica (src/layers/batch_norm.h says why).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu/cnn.h"
#include "src/config.h"

namespace lockstep {

// One example's activation shape: channels x height x width. A flat vector of F
// features is (F, 1, 1).
struct Shape {
  int64_t c = 0, h = 1, w = 1;
  int64_t size() const { return c * h * w; }
  bool operator==(const Shape& o) const { return c == o.c && h == o.h && w == o.w; }
};

// A named piece of the arena ("kernel", "bias", "gamma", "moving_mean", ...):
// checkpoints store each under /weights/<layer>/<name> with its shape.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;
  bool trainable = true;  // false: the state part (no gradient, no optimizer)
  int64_t size() const;
};

// One layer as built from its LayerConfig, with its shapes and arena views.
// A residual block keeps its convolutions and batch norms in `parts`.
struct LayerSpec {
  LayerType type = LayerType::kDense;
  std::string name;  // "dense_1", "conv2d_1", "residual_1/conv1", ...
  Shape in{}, out{};
  Activation activation = Activation::kLinear;
  float dropout = 0.0f;  // dense: applied to its output; dropout: the layer's rate
  // conv2d (and a residual block's filters/stride)
  int64_t filters = 0, kernel = 0, stride = 1;
  Padding padding = Padding::kValid;
  bool use_bias = true;
  // max/avg pooling
  int64_t pool = 0, pool_stride = 0;
  // batch norm
  bool sync = true;
  float momentum = 0.99f, epsilon = 1e-3f;
  std::vector<TensorSpec> tensors{};  // trainable first, then state
  std::vector<LayerSpec> parts{};     // residual: conv1 bn1 conv2 bn2 [proj proj_bn]
  // Dense/conv2d views (kernel, bias) kept by name for the hot paths.
  int64_t weight_offset = 0, bias_offset = 0;

  int64_t in_size() const { return in.size(); }  // per example
  int64_t out_size() const { return out.size(); }
  int64_t num_params() const;     // trainable floats, parts included
  int64_t num_state() const;      // state floats, parts included
  bool has_batch_norm() const;
};

class Model {
 public:
  // hidden: the configured layers; the output layer (output_dim units, linear
  // dense) is appended. input_shape is one example's shape as stored: (F),
  // (H, W) for one channel, (C, H, W). Throws ConfigError naming the layer when
  // a layer does not fit its input (a kernel larger than the image, ...).
  Model(const std::vector<LayerConfig>& hidden, const std::vector<int64_t>& input_shape,
        int64_t output_dim, LossKind loss);
  Model(const std::vector<LayerConfig>& hidden, int64_t input_dim, int64_t output_dim,
        LossKind loss)
      : Model(hidden, std::vector<int64_t>{input_dim}, output_dim, loss) {}

  const std::vector<LayerSpec>& layers() const { return layers_; }
  Shape input_shape() const { return input_; }
  int64_t input_dim() const { return input_.size(); }
  int64_t output_dim() const { return output_dim_; }
  // Trainable floats: the gradient arena, the optimizer and the all-reduce.
  int64_t num_params() const { return num_params_; }
  // Non-trainable floats after them (batch norm's moving statistics).
  int64_t num_state() const { return num_state_; }
  // Floats of a replica's parameter arena: num_params() + num_state().
  int64_t arena_size() const { return num_params_ + num_state_; }
  LossKind loss() const { return loss_; }
  // Every layer is dense (its signature then states the input as F features).
  bool dense_only() const;
  bool has_batch_norm() const;
  // Largest per-example activation (for sizing the backward workspaces).
  int64_t max_width() const;
  // Where the arena prefix of finished gradients ends once backward has done
  // layers [l, L): layer l's parameters end there.
  int64_t grad_ready_end(size_t layer) const;
  // Every trainable tensor (with those of residual parts), in arena order.
  std::vector<TensorSpec> trainable_tensors() const;
  // Every tensor of every layer and part, with its checkpoint path "layer/name".
  std::vector<std::pair<std::string, TensorSpec>> all_tensors() const;

  // Weights: Glorot-uniform (dense, conv: fan in and out of the kernel); biases
  // and beta 0, gamma 1, moving mean 0, moving variance 1. A pure function of seed.
  void init_params(float* arena, uint64_t seed) const;
  // Keras-style summary: layer, output shape, parameter count, totals.
  std::string summary() const;
  // A stable text description of the architecture, compared on resume/evaluate.
  std::string signature() const;

 private:
  std::vector<LayerSpec> layers_;
  Shape input_;
  bool flat_input_ = true;  // the stored example is a vector (F)
  int64_t output_dim_ = 0, num_params_ = 0, num_state_ = 0;
  LossKind loss_;
};

// The input shape a model signature states ("input=784" or "input=1x28x28"), or
// an empty vector when it states none.
std::vector<int64_t> signature_input_shape(const std::string& signature);

}  // namespace lockstep
