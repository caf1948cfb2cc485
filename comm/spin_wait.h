// Waiting for peers that usually arrive within a few hundred nanoseconds (replica
// threads, processes on one node): a few polls without reading the clock, a
// short spin, then yielding the core (there may be fewer free cores than
// waiters, and a partner sharing our core can only arrive once we yield), and
// naps once the wait is long (another member's big job: stop competing with it).
#pragma once

#include <chrono>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace lockstep {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// Returns once done() is true. Past the spin, check(waited) runs before every
// yield or nap with the time waited so far; it throws to end the wait
// (a deadline, a failed group, a signal).
template <typename Done, typename Check>
void spin_wait(Done&& done, Check&& check) {
  using Clock = std::chrono::steady_clock;
  constexpr int kQuickPolls = 32;
  constexpr std::chrono::nanoseconds kSpinTime{3000};
  constexpr std::chrono::microseconds kYieldTime{500};
  constexpr std::chrono::microseconds kNap{50};
  Clock::time_point start{};
  for (long iter = 0;; ++iter) {
    if (done()) return;
    if (iter < kQuickPolls) {
      cpu_relax();
      continue;
    }
    const auto now = Clock::now();
    if (iter == kQuickPolls) start = now;
    const auto waited = now - start;
    if (waited < kSpinTime) {
      cpu_relax();
      continue;
    }
    check(waited);
    if (waited < kYieldTime) std::this_thread::yield();
    else std::this_thread::sleep_for(kNap);
  }
}

}  // namespace lockstep
