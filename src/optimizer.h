// Optimizers as one fused pass over the flat parameter arena, with their slots
// (momentum, Adam moments) in arenas of the same layout, and the learning-rate
// schedule. Every replica runs the same update on the same reduced gradient.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.h"
#include "kernels/cpu/ops.h"
#include "src/config.h"

namespace lockstep {

// The learning rate at a 0-based step: linear warm-up, then constant, step or
// cosine decay. total_steps is the run's length (cosine with decay_steps == 0).
// base_lr already includes linear scaling if the config asks for it.
double learning_rate_at(const Config& c, double base_lr, int64_t step, int64_t total_steps);

class Optimizer {
 public:
  // memory(n) gives each slot arena (n zeroed floats): this process's own
  // memory by default, or memory the processes of a node share
  // (Communicator::allocate_common), so that they keep one copy of the slots.
  using Memory = std::function<CommBuffer(size_t)>;
  Optimizer(const Config& config, int64_t num_params, const Memory& memory = host_buffer);
  // How many slot arenas (calls of memory) an optimizer of this kind makes.
  static size_t slot_count(OptimizerKind kind) { return kind == OptimizerKind::kSgd ? 1 : 2; }

  // One update of params[begin, end) from grads[begin, end). `step` counts
  // updates already applied (0 for the first); lr is this step's rate.
  void apply(float* params, const float* grads, int64_t begin, int64_t end, float lr,
             int64_t step);
  // The same update of params[g.offset, g.offset + n) from a gradient given as
  // parts (cpu::GradientParts: summed left to right in the pass, and stored into
  // its copies): bitwise the update of their fixed-order all-reduce.
  void apply(float* params, const cpu::GradientParts& g, int64_t n, float lr, int64_t step);

  // Named slot arenas, for checkpoints ("m", "v", "velocity").
  std::vector<std::pair<std::string, CommBuffer*>> slots();

 private:
  OptimizerKind kind_;
  float beta1_, beta2_, eps_, momentum_, weight_decay_;
  bool nesterov_;
  CommBuffer m_, v_;  // Adam moments, or SGD velocity in m_
};

}  // namespace lockstep
