// One replica's compute on the CPU: forward and backward of the Model over its
// slice of a global batch, with activation workspaces sized once (no allocation
// per step). Parameters and gradients are flat arenas owned by the caller.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "data/input.h"
#include "src/model.h"

namespace lockstep {

struct SliceStats {
  double loss_sum = 0.0;  // sum of per-example losses (unscaled)
  int64_t correct = 0;    // classification: argmax == label
  int64_t rows = 0;
};

class ReplicaModel {
 public:
  // max_rows: the most rows a slice passed to train/evaluate may have.
  ReplicaModel(const Model& model, int64_t max_rows);

  // Forward + backward. grads (num_params) are OVERWRITTEN with the gradient of
  // loss_scale * (sum of per-example losses). on_ready(end) is called whenever the
  // arena prefix [0, end) of grads is final, last layer first (bucketing).
  // dropout_seed identifies the step's dropout masks (see kernels dropout).
  SliceStats train(const float* params, float* grads, const ReplicaBatch& batch, float loss_scale,
                   uint64_t dropout_seed, const std::function<void(int64_t)>& on_ready);

  // Forward only (no dropout): loss and accuracy of a slice.
  SliceStats evaluate(const float* params, const ReplicaBatch& batch);

  // Forward only: returns the output layer (rows, output_dim) before softmax.
  const float* predict(const float* params, const float* x, int64_t rows);

  int64_t max_rows() const { return max_rows_; }
  // When set, train() stores there the time its forward pass (with the loss)
  // ended: the timeline's forward/backward boundary. nullptr costs nothing.
  std::chrono::steady_clock::time_point* mark_forward = nullptr;

 private:
  const float* forward(const float* params, const float* x, int64_t rows, bool training,
                       uint64_t dropout_seed, int64_t first_row);
  SliceStats loss_forward(const float* out, const ReplicaBatch& b, float* d_out, float scale);

  const Model& model_;
  int64_t max_rows_;
  std::vector<std::vector<float>> z_;    // per layer (rows, out): pre-activation
  std::vector<std::vector<float>> a_;    // per layer (rows, out): activation (empty if linear)
  std::vector<std::vector<float>> d_;    // per layer (rows, out): after dropout (empty if none)
  std::vector<const float*> out_;        // per layer: what the next layer reads
  std::vector<float> grad_a_, grad_b_;   // (rows, max_width) ping-pong for backward
};

}  // namespace lockstep
