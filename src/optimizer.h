// Optimizers as one fused pass over the flat parameter arena, with their slots
// (momentum, Adam moments) in arenas of the same layout, and the learning-rate
// schedule. Every replica runs the same update on the same reduced gradient.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/aligned.h"
#include "src/config.h"

namespace lockstep {

// The learning rate at a 0-based step: linear warm-up, then constant, step or
// cosine decay. total_steps is the run's length (cosine with decay_steps == 0).
// base_lr already includes linear scaling if the config asks for it.
double learning_rate_at(const Config& c, double base_lr, int64_t step, int64_t total_steps);

class Optimizer {
 public:
  Optimizer(const Config& config, int64_t num_params);

  // One update of params[begin, end) from grads[begin, end). `step` counts
  // updates already applied (0 for the first); lr is this step's rate.
  void apply(float* params, const float* grads, int64_t begin, int64_t end, float lr,
             int64_t step);

  // Named slot arenas, for checkpoints ("m", "v", "velocity").
  std::vector<std::pair<std::string, AlignedVector<float>*>> slots();

 private:
  OptimizerKind kind_;
  float beta1_, beta2_, eps_, momentum_, weight_decay_;
  bool nesterov_;
  AlignedVector<float> m_, v_;  // Adam moments, or SGD velocity in m_
};

}  // namespace lockstep
