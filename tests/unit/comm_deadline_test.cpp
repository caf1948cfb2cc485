// Deadline policy: a fixed timeout, the adaptive floor, the adaptive multiple of
// the slowest recent interval, the budget of a repeated long phase, and LongPhase
// budgets that also reach the first collective after the phase, then stop applying.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "comm/deadline.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;

TEST(Deadline, FixedTimeoutIsUsedAsIs) {
  CommOptions o;
  o.timeout = milliseconds(1500);
  DeadlineClock clock(o);
  EXPECT_EQ(clock.start().limit, milliseconds(1500));
  EXPECT_EQ(clock.start().limit, milliseconds(1500));
}

TEST(Deadline, AdaptiveFollowsTheSlowestIntervalAboveTheFloor) {
  CommOptions o = CommOptions::from_seconds(0, false);
  ASSERT_TRUE(o.adaptive);
  o.floor = milliseconds(100);
  o.pace_factor = 20;
  DeadlineClock clock(o);
  EXPECT_EQ(clock.start().limit, milliseconds(100));  // nothing observed yet: the floor
  std::this_thread::sleep_for(milliseconds(30));
  const WaitBudget b = clock.start();  // one 30+ ms interval: 20x is at least 600 ms
  EXPECT_GE(b.limit, milliseconds(600));
  EXPECT_LT(b.limit, milliseconds(5000));
  EXPECT_TRUE(b.phase.empty());
  EXPECT_GE(clock.slowest_recent_seconds(), 0.03);
}

TEST(Deadline, RepeatedPhaseGetsItsPaceAboveTheFloorBelowTheWhole) {
  const milliseconds whole(600000);
  CommOptions adaptive = CommOptions::from_seconds(0, false);  // floor 10 s, 20x
  EXPECT_EQ(repeat_phase_budget(adaptive, milliseconds(0), whole), whole);  // never ran
  EXPECT_EQ(repeat_phase_budget(adaptive, milliseconds(100), whole), milliseconds(10000));
  EXPECT_EQ(repeat_phase_budget(adaptive, milliseconds(1500), whole), milliseconds(30000));
  EXPECT_EQ(repeat_phase_budget(adaptive, milliseconds(100000), whole), whole);
  const CommOptions fixed = CommOptions::from_seconds(30, false);
  EXPECT_EQ(repeat_phase_budget(fixed, milliseconds(100), whole), milliseconds(30000));
  EXPECT_EQ(repeat_phase_budget(fixed, milliseconds(2000), whole), milliseconds(40000));
}

TEST(Deadline, LongPhaseReachesTheNextCollectiveOnly) {
  CommOptions o;
  o.timeout = milliseconds(200);
  DeadlineClock clock(o);
  clock.start();
  {
    const LongPhase phase("checkpoint write", milliseconds(9000));
    const WaitBudget inside = clock.start();
    EXPECT_EQ(inside.limit, milliseconds(9000));
    EXPECT_EQ(inside.phase, "checkpoint write");
  }
  const WaitBudget after = clock.start();  // first collective after the phase
  EXPECT_EQ(after.limit, milliseconds(9000));
  EXPECT_EQ(after.describe(), "9.0 s (long phase 'checkpoint write')");
  EXPECT_EQ(clock.start().limit, milliseconds(200));  // then back to the usual deadline
}

TEST(Deadline, ShorterPhaseNeverShortensTheDeadlineAndForeverStaysForever) {
  CommOptions o;
  o.timeout = milliseconds(5000);
  DeadlineClock fixed(o);
  o.timeout = milliseconds(0);  // not adaptive: wait forever
  DeadlineClock forever(o);
  const LongPhase phase("evaluation", milliseconds(1000));
  EXPECT_EQ(fixed.start().limit, milliseconds(5000));
  EXPECT_TRUE(forever.start().forever());
}

}  // namespace
}  // namespace lockstep
