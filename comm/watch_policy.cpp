// The watched-wait rules (watch_policy.h): deadline against a DeadlineClock budget,
// the grace after a signal, the teardown limit.
#include "comm/watch_policy.h"

namespace lockstep {

std::string overdue(const WaitBudget& budget, WatchClock::duration waited) {
  if (budget.forever() || waited <= budget.limit) return "";
  return "did not finish within " + budget.describe();
}

bool InterruptGrace::expired(WatchClock::time_point now, const WaitBudget& budget) {
  if (!probe_ || !budget.phase.empty() || !probe_()) {
    seen_ = false;
    return false;
  }
  if (!seen_) {
    seen_ = true;
    since_ = now;
  }
  return now - since_ >= grace_;
}

std::chrono::milliseconds drain_limit(const CommOptions& options) {
  if (options.timeout.count() > 0) return options.timeout;
  return options.adaptive ? options.floor : std::chrono::milliseconds(0);
}

}  // namespace lockstep
