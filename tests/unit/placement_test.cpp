// Thread placement: pin_thread sets exactly the mask asked for on the thread
// named (not the caller), and ThreadPin gives its thread the previous mask back.
#include <gtest/gtest.h>

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <thread>
#include <vector>

#include "comm/placement.h"

namespace lockstep {
namespace {

std::vector<int> mask_of(pthread_t thread) {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(pthread_getaffinity_np(thread, sizeof(set), &set), 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

TEST(Placement, PinThreadSetsTheNamedThreadsMaskOnly) {
  const std::vector<int> all = allowed_cpus();
  ASSERT_FALSE(all.empty());
  const int last = all.back();
  std::atomic<bool> go{false};
  std::thread other([&] { while (!go.load()) std::this_thread::yield(); });
  ASSERT_TRUE(pin_thread(other.native_handle(), {last}));
  EXPECT_EQ(mask_of(other.native_handle()), std::vector<int>{last});
  EXPECT_EQ(mask_of(pthread_self()), all) << "the caller's mask is untouched";
  go = true;
  other.join();
  EXPECT_FALSE(pin_thread(pthread_self(), {})) << "an empty mask is refused";
  EXPECT_EQ(mask_of(pthread_self()), all);
}

TEST(Placement, ThreadPinRestoresThePreviousMask) {
  const std::vector<int> all = allowed_cpus();
  {
    const ThreadPin pinned(int(all.size()) - 1, true);
    EXPECT_EQ(mask_of(pthread_self()), std::vector<int>{all.back()});
    EXPECT_EQ(allowed_cpus(), std::vector<int>{all.back()});
  }
  EXPECT_EQ(mask_of(pthread_self()), all);
  {
    const ThreadPin off(0, false);
    EXPECT_EQ(mask_of(pthread_self()), all);
  }
}

}  // namespace
}  // namespace lockstep
