// The local backend (replicas as threads): every dtype and op with exact
// expectations, odd sizes around the slice boundaries, zero length, broadcast from
// every root, allgather, long runs of calls, and bitwise equality with the
// left-to-right member-order sum that the contract promises.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "comm/local_communicator.h"
#include "tests/common/exact_values.h"

namespace lockstep {
namespace {

// Runs fn(member) on one thread per member and waits for all.
void run_group(LocalGroup& group, const std::function<void(Communicator&)>& fn) {
  group.run([&](int i) { fn(group.member(i)); });
}

template <typename T>
class LocalAllreduce : public ::testing::Test {};
using AllTypes = ::testing::Types<float, double, int32_t, int64_t, uint8_t>;
TYPED_TEST_SUITE(LocalAllreduce, AllTypes);

TYPED_TEST(LocalAllreduce, EveryOpIsExact) {
  using T = TypeParam;
  for (int members : {1, 2, 3, 4}) {
    LocalGroup group(members);
    for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{1023}, size_t{4097}, size_t{100003}}) {
      for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin}) {
        run_group(group, [&](Communicator& c) {
          EXPECT_EQ(testing::wrong_after_allreduce<T>(c, count, op), 0u) << members << " members, count " << count << ", "
                               << reduce_op_name(op) << ", member " << c.rank();
        });
      }
    }
  }
}

TEST(LocalGroup, MembersKnowTheirRank) {
  LocalGroup group(3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(group.member(i).rank(), i);
    EXPECT_EQ(group.member(i).size(), 3);
    EXPECT_EQ(group.member(i).name(), "local");
  }
  EXPECT_THROW(group.member(3), CommError);
  EXPECT_THROW(LocalGroup(0), CommError);
}

TEST(LocalGroup, BroadcastFromEveryRoot) {
  LocalGroup group(3);
  for (int root = 0; root < 3; ++root) {
    run_group(group, [&](Communicator& c) {
      std::vector<int64_t> buf(5001);
      for (size_t i = 0; i < buf.size(); ++i) buf[i] = c.rank() * 100000 + static_cast<int64_t>(i);
      c.broadcast(buf.data(), buf.size(), root);
      for (size_t i = 0; i < buf.size(); ++i) {
        ASSERT_EQ(buf[i], root * 100000 + static_cast<int64_t>(i)) << "root " << root;
      }
    });
  }
}

TEST(LocalGroup, AllgatherOrdersBlocksByRank) {
  LocalGroup group(4);
  run_group(group, [&](Communicator& c) {
    std::vector<double> send(5);
    for (size_t i = 0; i < 5; ++i) send[i] = c.rank() * 10.0 + static_cast<double>(i);
    std::vector<double> recv(20, -1.0);
    c.allgather(send.data(), recv.data(), 5);
    for (int r = 0; r < 4; ++r) {
      for (size_t i = 0; i < 5; ++i) EXPECT_EQ(recv[r * 5 + i], r * 10.0 + static_cast<double>(i));
    }
  });
}

TEST(LocalGroup, ZeroLengthNeverHangs) {
  LocalGroup group(2);
  run_group(group, [&](Communicator& c) {
    c.allreduce(static_cast<float*>(nullptr), 0);
    c.broadcast(static_cast<float*>(nullptr), 0, 1);
    c.allgather(static_cast<const float*>(nullptr), static_cast<float*>(nullptr), 0);
    c.barrier();
  });
}

TEST(LocalGroup, ManyRepeatedMixedCalls) {
  LocalGroup group(3);
  run_group(group, [&](Communicator& c) {
    for (int step = 0; step < 3000; ++step) {
      int32_t v[3] = {c.rank() + step, 1, -c.rank()};
      c.allreduce(v, 3);
      ASSERT_EQ(v[0], 3 + 3 * step);
      ASSERT_EQ(v[1], 3);
      ASSERT_EQ(v[2], -3);
      int32_t b = c.rank() == step % 3 ? step : -1;
      c.broadcast(&b, 1, step % 3);
      ASSERT_EQ(b, step);
      if (step % 100 == 0) c.barrier();
    }
  });
}

// Inputs whose float sums round: the result must be bitwise the left-to-right sum
// x0 + x1 + x2 + x3, on every member and in every run.
TEST(LocalGroup, FloatSumIsMemberOrderBitwise) {
  constexpr int kMembers = 4;
  constexpr size_t kCount = 50001;
  std::vector<std::vector<float>> inputs(kMembers, std::vector<float>(kCount));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1e3f, 1e3f);
  for (auto& in : inputs) for (float& x : in) x = dist(rng) * (rng() % 2 ? 1e-4f : 1.0f);
  std::vector<float> want(kCount);
  for (size_t i = 0; i < kCount; ++i) {
    float acc = inputs[0][i];
    for (int r = 1; r < kMembers; ++r) acc += inputs[r][i];
    want[i] = acc;
  }
  LocalGroup group(kMembers);
  for (int run = 0; run < 3; ++run) {
    run_group(group, [&](Communicator& c) {
      std::vector<float> buf = inputs[c.rank()];
      c.allreduce(buf.data(), kCount);
      EXPECT_EQ(std::memcmp(buf.data(), want.data(), kCount * sizeof(float)), 0) << "member " << c.rank();
    });
  }
}

}  // namespace
}  // namespace lockstep
