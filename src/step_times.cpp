// Per-step time samples and their medians (see step_times.h).
#include "src/step_times.h"

#include <algorithm>
#include <cstdio>

namespace lockstep {

void StepTimes::begin_epoch(int64_t steps) {
  for (auto* v : {&step_, &compute_, &comm_, &input_, &optimizer_}) {
    v->clear();
    v->reserve(size_t(std::max<int64_t>(0, steps)));
  }
}

void StepTimes::add(const StepCounters& before, const StepCounters& after) {
  if (step_.size() == step_.capacity()) return;  // more steps than announced: keep what fits
  const double input = after.input - before.input, step = after.step - before.step;
  const double comm = after.comm - before.comm, opt = after.optimizer - before.optimizer;
  step_.push_back(input + step);
  compute_.push_back(std::max(0.0, step - comm - opt));
  comm_.push_back(comm);
  input_.push_back(input);
  optimizer_.push_back(opt);
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + long(mid), v.end());
  const double hi = v[mid];
  if (v.size() % 2) return hi;
  return (hi + *std::max_element(v.begin(), v.begin() + long(mid))) / 2.0;
}

StepBreakdown StepTimes::summary() const {
  StepBreakdown b;
  b.steps = int64_t(step_.size());
  b.step_ms = 1e3 * median(step_);
  b.compute_ms = 1e3 * median(compute_);
  b.allreduce_ms = 1e3 * median(comm_);
  b.input_ms = 1e3 * median(input_);
  b.optimizer_ms = 1e3 * median(optimizer_);
  return b;
}

std::string where_time_went(const StepBreakdown& b, int replicas, const char* comm) {
  struct Part {
    const char* name;
    double ms;
  };
  const Part parts[] = {{"compute", b.compute_ms}, {comm, b.allreduce_ms},
                        {"input wait", b.input_ms}, {"optimizer", b.optimizer_ms}};
  double total = 0;
  for (const Part& p : parts) total += p.ms;
  if (total <= 0) total = 1e-12;
  const Part* lead = &parts[1];
  for (const Part& p : parts) {
    if (&p != &parts[0] && p.ms > lead->ms) lead = &p;
  }
  char buf[512];
  int n = std::snprintf(buf, sizeof buf, "%s %.0f%% of a step at %d replica%s (median step %.3f ms:",
                        lead->name, 100.0 * lead->ms / total, replicas, replicas == 1 ? "" : "s",
                        b.step_ms);
  for (const Part& p : parts) {
    n += std::snprintf(buf + n, sizeof buf - size_t(n), "%s %s %.3f ms %.0f%%", &p == parts ? "" : ",",
                       p.name, p.ms, 100.0 * p.ms / total);
  }
  std::snprintf(buf + n, sizeof buf - size_t(n), ")");
  return buf;
}

}  // namespace lockstep
