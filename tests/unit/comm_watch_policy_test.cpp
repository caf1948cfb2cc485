// The rules the NCCL watchdog applies to waits no host thread sits in (a collective
// on the GPU, a replayed step): deadlines from the same DeadlineClock as the CPU
// backends (fixed, adaptive with its floor, long phases), the grace after a signal,
// the teardown limit, and the comm settings the GPU group is given. Host logic only.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "comm/deadline.h"
#include "comm/watch_policy.h"
#include "src/config.h"
#include "src/strategy.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;

TEST(CommWatchPolicy, OverdueOnlyPastTheBudget) {
  const WaitBudget budget{milliseconds(1500), ""};
  EXPECT_EQ(overdue(budget, milliseconds(1500)), "");
  EXPECT_EQ(overdue(budget, milliseconds(1501)), "did not finish within 1.5 s");
  const WaitBudget phase{milliseconds(600000), "checkpoint write"};
  EXPECT_EQ(overdue(phase, milliseconds(700000)),
            "did not finish within 600.0 s (long phase 'checkpoint write')");
  EXPECT_EQ(overdue(WaitBudget{}, std::chrono::hours(24)), "") << "an explicit forever";
}

TEST(CommWatchPolicy, ZeroTimeoutIsAdaptiveNeverForever) {
  // comm.timeout_s: 0 is the adaptive deadline: the 10 s floor until steps are known.
  DeadlineClock adaptive(CommOptions::from_seconds(0, false));
  const WaitBudget first = adaptive.start();
  EXPECT_FALSE(first.forever());
  EXPECT_EQ(first.limit, milliseconds(10000));
  EXPECT_EQ(overdue(first, milliseconds(10001)), "did not finish within 10.0 s");
  DeadlineClock fixed(CommOptions::from_seconds(2.5, false));
  EXPECT_EQ(fixed.start().limit, milliseconds(2500));
}

TEST(CommWatchPolicy, LongPhaseBudgetReachesTheNextWait) {
  DeadlineClock clock(CommOptions::from_seconds(2, false));
  EXPECT_EQ(clock.start().limit, milliseconds(2000));
  {
    const LongPhase phase("checkpoint write", milliseconds(60000));
    const WaitBudget in = clock.start();
    EXPECT_EQ(in.limit, milliseconds(60000));
    EXPECT_EQ(in.phase, "checkpoint write");
  }
  EXPECT_EQ(clock.start().limit, milliseconds(60000)) << "the wait right after the phase";
  EXPECT_EQ(clock.start().limit, milliseconds(2000));
}

TEST(CommWatchPolicy, SignalEndsTheWaitAfterTheGraceOutsideLongPhases) {
  bool signalled = false;
  CommOptions o = CommOptions::from_seconds(0, false);
  o.interrupted = [&] { return signalled; };
  o.interrupt_grace = milliseconds(300);
  InterruptGrace grace(o);
  const WaitBudget step{milliseconds(10000), ""};
  const auto t0 = WatchClock::now();
  EXPECT_FALSE(grace.expired(t0, step));
  signalled = true;
  EXPECT_FALSE(grace.expired(t0 + milliseconds(100), step));
  EXPECT_FALSE(grace.expired(t0 + milliseconds(399), step));
  EXPECT_TRUE(grace.expired(t0 + milliseconds(400), step));
  const WaitBudget phase{milliseconds(600000), "start-up"};
  EXPECT_FALSE(grace.expired(t0 + milliseconds(5000), phase)) << "a long phase waits its budget";
  EXPECT_FALSE(grace.expired(t0 + milliseconds(5100), step)) << "grace restarts after the phase";
  EXPECT_TRUE(grace.expired(t0 + milliseconds(5400), step));
  grace.reset();
  EXPECT_FALSE(grace.expired(t0 + milliseconds(5500), step));
  InterruptGrace none{CommOptions{}};  // no probe: signals are not watched
  EXPECT_FALSE(none.expired(t0 + std::chrono::hours(1), step));
}

TEST(CommWatchPolicy, TeardownLimit) {
  EXPECT_EQ(drain_limit(CommOptions::from_seconds(0, false)), milliseconds(10000));
  EXPECT_EQ(drain_limit(CommOptions::from_seconds(3, false)), milliseconds(3000));
  CommOptions forever;
  forever.timeout = milliseconds(0);
  EXPECT_EQ(drain_limit(forever), milliseconds(0));
}

TEST(CommWatchPolicy, GroupsGetTheConfiguredCommSettings) {
  // What the trainer builds every group from, the GPU one included.
  Config c;
  c.comm_timeout_s = 0;
  CommOptions o = comm_options(c);
  EXPECT_TRUE(o.adaptive);
  EXPECT_EQ(o.timeout, milliseconds(0));
  EXPECT_TRUE(static_cast<bool>(o.interrupted)) << "SIGTERM must reach the waits";
  c.comm_timeout_s = 4;
  o = comm_options(c);
  EXPECT_FALSE(o.adaptive);
  EXPECT_EQ(o.timeout, milliseconds(4000));
}

}  // namespace
}  // namespace lockstep
