// Deadlines for collectives: how long one member may wait for the others before
// it declares them stuck. A fixed timeout, or an adaptive one that follows the
// pace of the job (a multiple of the slowest recent step, above a floor), and a
// larger budget for known long phases (start-up, evaluation, checkpoint writes)
// announced with a LongPhase guard, so a rank that is merely slow is not
// mistaken for a stuck one.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "comm/options.h"

namespace lockstep {

// RAII: while alive, and for the first collective of every member after it
// ends, collectives in this process may wait `budget` (if that is longer than
// their usual deadline). The budget reaches the collective right after the
// phase too, because that is where the peers of a rank still in its phase wait
// (the chief writes a checkpoint; the others wait in the next step's
// all-reduce). Every rank should open the same phase at the same point, since
// it is the waiting ranks' budget that matters. Phases nest and may be opened
// by several replica threads at once; the largest active budget applies.
class LongPhase {
 public:
  LongPhase(std::string name, std::chrono::milliseconds budget);
  ~LongPhase();
  LongPhase(const LongPhase&) = delete;
  LongPhase& operator=(const LongPhase&) = delete;

 private:
  std::string name_;
  std::chrono::milliseconds budget_;
};

// The budget of a long phase that ran before (a later evaluation) and costs the
// same work again: what the adaptive rule allows for a wait of that length,
// options.pace_factor x `slowest` (its slowest earlier run), at least the usual
// collective deadline (options.timeout when fixed, else options.floor), at most
// `whole`, the budget of its first run. `slowest` <= 0 (it never ran) gives
// `whole`. A rank frozen inside the phase is then named within seconds of its
// expected end, not after `whole`.
std::chrono::milliseconds repeat_phase_budget(const CommOptions& options, std::chrono::milliseconds slowest,
                                              std::chrono::milliseconds whole);

// The deadline of one collective, as DeadlineClock::start decides it.
struct WaitBudget {
  std::chrono::milliseconds limit{0};  // 0 = wait forever
  std::string phase;                   // the long phase that set it, or ""
  bool forever() const { return limit.count() <= 0; }
  // "10.0 s" or "60.0 s (long phase 'checkpoint write')".
  std::string describe() const;
};

// One member's clock: call start() as each collective begins. Not thread safe:
// each member (thread) of a group owns one.
class DeadlineClock {
 public:
  DeadlineClock() : DeadlineClock(CommOptions{}) {}
  explicit DeadlineClock(const CommOptions& options);
  WaitBudget start();
  // Seconds of the slowest recent interval between collectives (for tests/logs).
  double slowest_recent_seconds() const;

 private:
  using Clock = std::chrono::steady_clock;
  std::chrono::milliseconds base() const;

  std::chrono::milliseconds timeout_, floor_;
  bool adaptive_;
  double factor_;
  Clock::time_point last_start_{};
  bool started_ = false;
  uint64_t seen_phase_generation_ = 0;
  // Windowed maximum of intervals: the current window and the one before it.
  Clock::duration window_max_[2] = {Clock::duration::zero(), Clock::duration::zero()};
  int window_fill_ = 0;
};

// Whether this whole process was stopped (SIGSTOP, SIGTSTP, a suspended host or
// VM) and resumed: a ticker thread stamps the steady clock every 100 ms, and a
// gap of more than a second between stamps means no thread of the process ran.
// A rank that was frozen long enough for its peers to give up on it must say
// so, not blame the peers that waited (they already named it). Started by the
// MPI backends; idempotent and thread safe.
void watch_for_freezes();
// Seconds of the longest freeze of this process that ended at or after `since`
// (including one still being noticed now); 0 when there was none.
double frozen_seconds_since(std::chrono::steady_clock::time_point since);
// The sentence a stuck-peer report gives instead when this process was frozen:
// "this process was stopped for 5.1 s (...)", or "" when it was not.
std::string freeze_report(std::chrono::steady_clock::time_point since);

}  // namespace lockstep
