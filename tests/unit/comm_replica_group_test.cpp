// ReplicaGroup in one process: make_replica_group picks the local backend, member
// indices are range-checked, and run() runs every replica on its own thread, fails
// the group on the first exception (so replicas waiting in a collective are
// released instead of hanging), calls the caller's also_fail and rethrows it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
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

// The argument checks live once, in the Communicator base: every backend refuses
// the same mistakes with the same words, before any member waits for the others.
TEST(ReplicaGroup, EveryBackendRefusesBadArgumentsTheSameWay) {
  auto group = make_replica_group({MPI_COMM_NULL, nullptr, 2, CommOptions{}});
  auto single = make_single_communicator();
  const auto message = [](const std::function<void()>& call) {
    try {
      call();
    } catch (const CommError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  for (Communicator* c : {&group->member(1), single.get()}) {
    const std::string who = c->name() + " ";
    const std::string of = " (rank " + std::to_string(c->rank()) + " of " + std::to_string(c->size()) + "): ";
    float x = 0;
    EXPECT_EQ(message([&] { c->broadcast(&x, 1, c->size()); }).rfind(who + "broadcast" + of + "root " +
                                                                     std::to_string(c->size()) + " is out of range", 0), 0u);
    EXPECT_EQ(message([&] { c->allreduce(static_cast<float*>(nullptr), 3); }),
              who + "allreduce" + of + "buf is null with count 3 (hint: pass a buffer of count elements, or count 0)");
    EXPECT_EQ(message([&] { c->allgather(&x, static_cast<float*>(nullptr), 1); }).rfind(who + "allgather" + of + "recv is null", 0), 0u);
    EXPECT_NE(message([&] { c->allreduce(&x, 1, static_cast<DType>(9), ReduceOp::kSum); }).find("unknown dtype 9"),
              std::string::npos);
    EXPECT_NE(message([&] { c->allreduce(&x, 1, DType::kFloat32, static_cast<ReduceOp>(7)); }).find("unknown reduce op 7"),
              std::string::npos);
  }
}

}  // namespace
}  // namespace lockstep
