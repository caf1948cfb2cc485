// How the local backend fails: a member that never arrives ends the wait with a
// CommError naming it and the operation; disagreeing calls and a failed group are
// reported to every member instead of corrupting memory or hanging.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "comm/local_communicator.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;

// Runs fn(member) on members [0, active) only; returns each one's error text ("" = none).
std::vector<std::string> run_some(LocalGroup& group, int active,
                                  const std::function<void(Communicator&)>& fn) {
  std::vector<std::string> errors(active);
  std::vector<std::thread> threads;
  for (int i = 0; i < active; ++i) {
    threads.emplace_back([&, i] {
      try {
        fn(group.member(i));
      } catch (const CommError& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(LocalFailure, TimeoutNamesTheAbsentMemberAndOperation) {
  LocalGroup group(3, CommOptions{milliseconds(200)});
  const auto start = std::chrono::steady_clock::now();
  const auto errors = run_some(group, 2, [](Communicator& c) {
    float x[4] = {1, 2, 3, 4};
    c.allreduce(x, 4);
  });
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited, 0.2);
  EXPECT_LT(waited, 5.0);
  for (const std::string& e : errors) {
    EXPECT_TRUE(contains(e, "allreduce")) << e;
    EXPECT_TRUE(contains(e, "timed out")) << e;
    EXPECT_TRUE(contains(e, "member(s) 2")) << e;
  }
  // The late member finds a failed group instead of waiting forever.
  float y = 0;
  try {
    group.member(2).allreduce(&y, 1);
    FAIL() << "late member was accepted";
  } catch (const CommError& e) {
    EXPECT_TRUE(contains(e.what(), "failed")) << e.what();
    EXPECT_TRUE(contains(e.what(), "member(s) 2")) << e.what();
  }
}

TEST(LocalFailure, TimeoutInBarrierNamesEveryAbsentMember) {
  LocalGroup group(4, CommOptions{milliseconds(100)});
  const auto errors = run_some(group, 2, [](Communicator& c) { c.barrier(); });
  for (const std::string& e : errors) {
    EXPECT_TRUE(contains(e, "barrier")) << e;
    EXPECT_TRUE(contains(e, "member(s) 2, 3")) << e;
  }
}

TEST(LocalFailure, DisagreeingCallsAreReportedToAll) {
  LocalGroup group(2, CommOptions{milliseconds(2000)});
  const auto errors = run_some(group, 2, [](Communicator& c) {
    float x[5] = {};
    c.allreduce(x, c.rank() == 0 ? 4 : 5);
  });
  for (const std::string& e : errors) {
    EXPECT_TRUE(contains(e, "disagree")) << e;
    EXPECT_TRUE(contains(e, "allreduce(count=4, float32, sum)")) << e;
    EXPECT_TRUE(contains(e, "allreduce(count=5, float32, sum)")) << e;
  }
}

TEST(LocalFailure, FailReleasesWaitingMembers) {
  LocalGroup group(2);  // default deadline: only fail() can end the wait quickly
  std::string error;
  std::thread waiter([&] {
    try {
      group.member(0).barrier();
    } catch (const CommError& e) {
      error = e.what();
    }
  });
  std::this_thread::sleep_for(milliseconds(50));
  group.fail("replica 1 ran out of memory");
  waiter.join();
  EXPECT_TRUE(contains(error, "replica 1 ran out of memory")) << error;
}

TEST(LocalFailure, ZeroTimeoutMeansWaitForever) {
  LocalGroup group(2, CommOptions{milliseconds(0)});
  std::vector<std::thread> threads;
  int32_t got[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      if (i == 1) std::this_thread::sleep_for(milliseconds(300));
      int32_t v = i + 1;
      group.member(i).allreduce(&v, 1);
      got[i] = v;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(got[0], 3);
  EXPECT_EQ(got[1], 3);
}

}  // namespace
}  // namespace lockstep
