// ReplicaGroup in one process: make_replica_group picks the local backend, member
// indices are range-checked, and run() runs every replica on its own thread, fails
// the group on the first exception (so replicas waiting in a collective are
// released instead of hanging), calls the caller's also_fail and rethrows it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "comm/replica_group.h"

namespace lockstep {
namespace {

TEST(ReplicaGroup, OneProcessGetsTheLocalBackend) {
  auto group = make_replica_group({MPI_COMM_NULL, nullptr, 3, CommOptions{}});
  ASSERT_EQ(group->local_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(group->member(i).name(), "local");
    EXPECT_EQ(group->member(i).rank(), i);
    EXPECT_EQ(group->member(i).size(), 3);
  }
  EXPECT_THROW(group->member(3), CommError);
  EXPECT_THROW(group->member(-1), CommError);
}

TEST(ReplicaGroup, RunGivesEveryReplicaItsOwnThreadAndSumsExactly) {
  auto group = make_replica_group({MPI_COMM_NULL, nullptr, 4, CommOptions{}});
  std::vector<float> sums(4);
  std::vector<std::thread::id> ids(4);
  group->run([&](int i) {
    ids[size_t(i)] = std::this_thread::get_id();
    float x = float(i + 1);
    group->member(i).allreduce(&x, 1);
    sums[size_t(i)] = x;
  });
  EXPECT_EQ(ids[0], std::this_thread::get_id());  // replica 0 on the calling thread
  EXPECT_EQ(std::set<std::thread::id>(ids.begin(), ids.end()).size(), 4u);
  for (float s : sums) EXPECT_EQ(s, 10.0f);
}

TEST(ReplicaGroup, FirstExceptionFailsTheGroupAndIsRethrown) {
  // The default deadline is 300 s: only the failure can end the others' wait soon.
  auto group = make_replica_group({MPI_COMM_NULL, nullptr, 3, CommOptions{}});
  std::atomic<int> released{0};
  std::mutex mu;
  std::set<std::string> also;  // every failing replica reports; replica 2's must be there
  const auto t0 = std::chrono::steady_clock::now();
  try {
    group->run(
        [&](int i) {
          if (i == 2) throw std::runtime_error("replica 2 broke");
          float x = 1;
          try {
            group->member(i).allreduce(&x, 1);
          } catch (const CommError& e) {
            if (std::string(e.what()).find("local replica 2 failed") != std::string::npos) ++released;
            throw;
          }
        },
        [&](const std::string& why) {
          std::lock_guard<std::mutex> lock(mu);
          also.insert(why);
        });
    ADD_FAILURE() << "run() returned normally";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "replica 2 broke");  // the first exception, not a CommError
  }
  EXPECT_EQ(released.load(), 2);
  EXPECT_EQ(also.count("local replica 2 failed"), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
}

}  // namespace
}  // namespace lockstep
