// Deadline bookkeeping. LongPhase state is process-wide (a phase is something the
// process does, whichever communicator waits next); a generation counter lets
// every member's clock notice, with one atomic load per collective, that a phase
// began or ended since its previous collective.
#include "comm/deadline.h"

#include "comm/fault_injection.h"

#include <signal.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

namespace lockstep {
namespace {

// Intervals per window of the "slowest recent" maximum: the maximum covers the
// last 64 to 128 collectives.
constexpr int kWindow = 64;

struct PhaseRegistry {
  std::mutex mu;
  std::vector<std::pair<std::string, std::chrono::milliseconds>> active;
  // The budget the next collective of each member gets: the largest active one,
  // or that of the phase that ended last.
  std::string name;
  std::chrono::milliseconds budget{0};
  std::atomic<uint64_t> generation{0};
  std::atomic<int> active_count{0};
};

PhaseRegistry& registry() {
  static PhaseRegistry r;
  return r;
}

// The adaptive rule: factor x the slowest interval, never below the floor.
std::chrono::milliseconds paced(std::chrono::milliseconds floor, double factor,
                                std::chrono::steady_clock::duration slowest) {
  return std::max(floor, std::chrono::duration_cast<std::chrono::milliseconds>(slowest * factor));
}

}  // namespace

CommOptions CommOptions::from_seconds(double timeout_s, bool verify) {
  CommOptions o;
  o.verify = verify;
  if (timeout_s > 0) {
    o.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000.0 + 0.5));
  } else {
    o.timeout = std::chrono::milliseconds(0);
    o.adaptive = true;
  }
  return o;
}

LongPhase::LongPhase(std::string name, std::chrono::milliseconds budget)
    : name_(std::move(name)), budget_(budget) {
  {
    PhaseRegistry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    r.active.emplace_back(name_, budget_);
    if (r.active_count.load(std::memory_order_relaxed) == 0 || budget_ > r.budget) {
      r.name = name_;
      r.budget = budget_;
    }
    r.active_count.fetch_add(1, std::memory_order_release);
    r.generation.fetch_add(1, std::memory_order_release);
  }
  inject_fault_at_phase(name_);
}

LongPhase::~LongPhase() {
  PhaseRegistry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  for (auto it = r.active.begin(); it != r.active.end(); ++it) {
    if (it->first == name_ && it->second == budget_) {
      r.active.erase(it);
      break;
    }
  }
  // Still-active phases keep the largest of theirs; with none left, this one's
  // budget stays for every member's next collective.
  if (!r.active.empty()) {
    const auto top = std::max_element(r.active.begin(), r.active.end(),
                                      [](const auto& a, const auto& b) { return a.second < b.second; });
    r.name = top->first;
    r.budget = top->second;
  } else {
    r.name = name_;
    r.budget = budget_;
  }
  r.active_count.fetch_sub(1, std::memory_order_release);
  r.generation.fetch_add(1, std::memory_order_release);
}

std::string WaitBudget::describe() const {
  char text[64];
  std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(limit.count()) / 1000.0);
  if (phase.empty()) return text;
  return std::string(text) + " (long phase '" + phase + "')";
}

DeadlineClock::DeadlineClock(const CommOptions& options)
    : timeout_(options.timeout),
      floor_(options.floor),
      adaptive_(options.adaptive),
      factor_(options.pace_factor) {}

double DeadlineClock::slowest_recent_seconds() const {
  return std::chrono::duration<double>(std::max(window_max_[0], window_max_[1])).count();
}

std::chrono::milliseconds DeadlineClock::base() const {
  if (timeout_.count() > 0) return timeout_;
  if (!adaptive_) return std::chrono::milliseconds(0);
  return paced(floor_, factor_, std::max(window_max_[0], window_max_[1]));
}

std::chrono::milliseconds repeat_phase_budget(const CommOptions& options, std::chrono::milliseconds slowest,
                                              std::chrono::milliseconds whole) {
  if (slowest.count() <= 0) return whole;
  const auto floor = options.timeout.count() > 0 ? options.timeout : options.floor;
  return std::min(whole, paced(floor, options.pace_factor, slowest));
}

WaitBudget DeadlineClock::start() {
  const Clock::time_point now = Clock::now();
  PhaseRegistry& r = registry();
  const uint64_t generation = r.generation.load(std::memory_order_acquire);
  const bool in_phase =
      generation != seen_phase_generation_ || r.active_count.load(std::memory_order_acquire) > 0;
  // An interval that spans a long phase is not the pace of the job.
  if (started_ && !in_phase) {
    const Clock::duration interval = now - last_start_;
    window_max_[0] = std::max(window_max_[0], interval);
    if (++window_fill_ == kWindow) {
      window_max_[1] = window_max_[0];
      window_max_[0] = Clock::duration::zero();
      window_fill_ = 0;
    }
  }
  started_ = true;
  last_start_ = now;
  WaitBudget out{base(), ""};
  if (!in_phase) return out;
  seen_phase_generation_ = generation;
  std::lock_guard<std::mutex> lock(r.mu);
  if (!out.forever() && r.budget > out.limit) {
    out.limit = r.budget;
    out.phase = r.name;
  }
  return out;
}

// ---- freezes of the whole process ----
namespace {

using Steady = std::chrono::steady_clock;
constexpr auto kTick = std::chrono::milliseconds(100);
constexpr int64_t kFrozenGapNs = 1000000000;  // 1 s without a tick

// A gap alone could be a starved process on a crowded machine; a freeze also
// ends with SIGCONT. Both must be seen.
struct FreezeLog {
  std::atomic<int64_t> last_tick{0};  // steady ns of the ticker's latest stamp
  std::atomic<int64_t> gap_start{0};  // the latest gap of more than a second
  std::atomic<int64_t> gap_end{0};
  std::atomic<int64_t> continued{0};  // steady ns of the latest SIGCONT
};

FreezeLog& freeze_log() {
  static FreezeLog log;
  return log;
}

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe; what steady_clock reads on Linux
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int64_t to_ns(Steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

void on_sigcont(int) { freeze_log().continued.store(now_ns()); }

}  // namespace

void watch_for_freezes() {
  static std::once_flag once;
  std::call_once(once, [] {
    FreezeLog& log = freeze_log();
    log.last_tick.store(now_ns());
    struct sigaction sa {};
    sa.sa_handler = on_sigcont;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGCONT, &sa, nullptr);
    std::thread([&log] {
      for (;;) {
        std::this_thread::sleep_for(kTick);
        const int64_t now = now_ns();
        const int64_t last = log.last_tick.load();
        if (now - last > kFrozenGapNs) {
          log.gap_start.store(last);
          log.gap_end.store(now);
        }
        log.last_tick.store(now);
      }
    }).detach();
  });
}

double frozen_seconds_since(Steady::time_point since) {
  FreezeLog& log = freeze_log();
  const int64_t tick = log.last_tick.load();
  if (tick == 0) return 0.0;  // not watching
  const int64_t now = now_ns(), continued = log.continued.load();
  // Resumed a moment ago: the ticker has not run since, but its stamp is old.
  if (now - tick > kFrozenGapNs + 2 * std::chrono::nanoseconds(kTick).count() && continued > tick) {
    return double(now - tick) / 1e9;
  }
  const int64_t start = log.gap_start.load(), end = log.gap_end.load();
  if (end >= to_ns(since) && continued > start) return double(end - start) / 1e9;
  return 0.0;
}

std::string freeze_report(Steady::time_point since) {
  const double s = frozen_seconds_since(since);
  if (s <= 0.0) return "";
  char text[320];
  std::snprintf(text, sizeof text,
                "this process was stopped for %.1f s (SIGSTOP or SIGTSTP, or a suspended host) just before "
                "or while it waited, long enough for its peers' deadline to pass: they have named this rank "
                "and given up on it, so the peers are not to blame (hint: never stop a rank of a running job; "
                "restart it with --resume auto)", s);
  return text;
}

}  // namespace lockstep
