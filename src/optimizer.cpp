// Optimizer dispatch onto the fused CPU kernels, and the LR schedules.
#include "src/optimizer.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/ops.h"

namespace lockstep {

double learning_rate_at(const Config& c, double base_lr, int64_t step, int64_t total_steps) {
  if (c.warmup_steps > 0 && step < c.warmup_steps) {
    return base_lr * double(step + 1) / double(c.warmup_steps);
  }
  const int64_t t = step - c.warmup_steps;  // steps since warm-up ended
  switch (c.schedule) {
    case ScheduleKind::kConstant:
      return base_lr;
    case ScheduleKind::kStep:
      return base_lr * std::pow(double(c.decay_rate), double(t / c.decay_steps));
    case ScheduleKind::kCosine: {
      const int64_t span =
          c.decay_steps > 0 ? c.decay_steps : std::max<int64_t>(1, total_steps - c.warmup_steps);
      const double p = std::min(1.0, double(t) / double(span));
      const double floor = c.min_lr_ratio;
      return base_lr * (floor + (1.0 - floor) * 0.5 * (1.0 + std::cos(M_PI * p)));
    }
  }
  return base_lr;
}

Optimizer::Optimizer(const Config& c, int64_t num_params, const Memory& memory)
    : kind_(c.optimizer), beta1_(c.beta1), beta2_(c.beta2), eps_(c.epsilon),
      momentum_(c.momentum), weight_decay_(c.weight_decay), nesterov_(c.nesterov) {
  const size_t n = size_t(num_params);
  m_ = memory(n);  // Adam's first moment, or SGD's velocity (stays zero without momentum)
  if (slot_count(kind_) > 1) v_ = memory(n);
}

void Optimizer::apply(float* params, const float* grads, int64_t begin, int64_t end, float lr,
                      int64_t step) {
  apply(params, cpu::GradientParts{&grads, 1, begin, nullptr, 0}, end - begin, lr, step);
}

void Optimizer::apply(float* params, const cpu::GradientParts& g, int64_t n, float lr, int64_t step) {
  if (n <= 0) return;
  const int64_t begin = g.offset;
  switch (kind_) {
    case OptimizerKind::kSgd:
      cpu::sgd_update(params + begin, g, m_.data() + begin, n, lr, momentum_, nesterov_, weight_decay_);
      return;
    case OptimizerKind::kAdam:
    case OptimizerKind::kAdamW:
      cpu::adam_update(params + begin, g, m_.data() + begin, v_.data() + begin, n, lr, beta1_, beta2_,
                       eps_, step + 1, weight_decay_, kind_ == OptimizerKind::kAdamW);
      return;
  }
}

std::vector<std::pair<std::string, CommBuffer*>> Optimizer::slots() {
  std::vector<std::pair<std::string, CommBuffer*>> s;
  if (kind_ == OptimizerKind::kSgd) {
    s.emplace_back("velocity", &m_);
  } else {
    s.emplace_back("m", &m_);
    s.emplace_back("v", &v_);
  }
  return s;
}

}  // namespace lockstep
