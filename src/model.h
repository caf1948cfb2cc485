// The model definition (a stack of Dense layers) and its flat parameter layout.
// A Model holds no state: parameters, gradients and optimizer slots live in flat
// arenas owned by each replica (replica.h), and layers are views (offsets) into
// them. The arena stores the LAST layer first, so the gradients that backward
// finishes first form a growing prefix [0, ready) that buckets can reduce early.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/config.h"

namespace lockstep {

struct DenseLayer {
  std::string name;      // "dense_1", ...
  int64_t in = 0, out = 0;
  Activation activation = Activation::kLinear;
  float dropout = 0.0f;
  int64_t weight_offset = 0;  // (in, out) row-major: z = x W + b
  int64_t bias_offset = 0;    // (out)
  int64_t num_params() const { return in * out + out; }
};

class Model {
 public:
  // hidden: the configured hidden layers; the output layer (output_dim units,
  // linear) is appended. input_dim is the flattened feature size.
  Model(const std::vector<LayerConfig>& hidden, int64_t input_dim, int64_t output_dim,
        LossKind loss);

  const std::vector<DenseLayer>& layers() const { return layers_; }
  int64_t input_dim() const { return input_dim_; }
  int64_t output_dim() const { return output_dim_; }
  int64_t num_params() const { return num_params_; }
  LossKind loss() const { return loss_; }
  // Widest layer output (for sizing activation workspaces).
  int64_t max_width() const;
  // Where the arena prefix of finished gradients ends once backward has done
  // layers [l, L): layer l's parameters end there.
  int64_t grad_ready_end(size_t layer) const;

  // Glorot-uniform weights, zero biases; a pure function of seed.
  void init_params(float* arena, uint64_t seed) const;
  // Keras-style summary: layer, output shape, parameter count, totals.
  std::string summary() const;
  // A stable text description of the architecture, compared on resume/evaluate.
  std::string signature() const;

 private:
  std::vector<DenseLayer> layers_;
  int64_t input_dim_ = 0, output_dim_ = 0, num_params_ = 0;
  LossKind loss_;
};

}  // namespace lockstep
