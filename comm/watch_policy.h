// When a watched wait must end: the rules the NCCL watchdog applies to collectives
// and replayed steps that run on a GPU while no host thread waits in them. They
// are the CPU backends' rules (DeadlineClock budgets: comm.timeout_s, the adaptive
// default, long phases; the grace after SIGTERM), kept here as host logic so the
// CPU build tests them and the CUDA build cannot drift from them.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "comm/deadline.h"
#include "comm/options.h"

namespace lockstep {

using WatchClock = std::chrono::steady_clock;

// "" while a wait of `waited` may go on under `budget`, else the reason it must
// end: "did not finish within 10.0 s" (with the long phase, if one set it).
std::string overdue(const WaitBudget& budget, WatchClock::duration waited);

// Tracks how long options.interrupted() has held during waits. A signal (the
// launcher tearing the job down after a peer died) ends a wait once it has held
// for options.interrupt_grace, except inside a long phase, as in the MPI backend.
class InterruptGrace {
 public:
  explicit InterruptGrace(const CommOptions& options)
      : probe_(options.interrupted), grace_(options.interrupt_grace) {}
  // Call on each poll of a wait that is still pending; true when it must end.
  bool expired(WatchClock::time_point now, const WaitBudget& budget);
  // Nothing is pending any more: a later signal starts a fresh grace.
  void reset() { seen_ = false; }

 private:
  std::function<bool()> probe_;
  std::chrono::milliseconds grace_;
  bool seen_ = false;
  WatchClock::time_point since_{};
};

// How long teardown may wait for in-flight device work before aborting: the fixed
// timeout, else the adaptive floor; zero (forever) only when the options ask for it
// (timeout 0 without adaptive).
std::chrono::milliseconds drain_limit(const CommOptions& options);

}  // namespace lockstep
