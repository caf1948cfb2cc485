// The rendezvous under the local backends: slices partition a buffer on cache-line
// boundaries, and shared-out blocks cover every element exactly once, also when a
// member is late and the others take its whole slice.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "comm/local_fabric.h"

namespace lockstep {
namespace {

TEST(ChunkOf, PartitionsOnCacheLines) {
  for (size_t elem : {size_t{1}, size_t{4}, size_t{8}}) {
    for (size_t count : {size_t{0}, size_t{1}, size_t{1000}, size_t{4097}, size_t{1000003}}) {
      for (int parts : {1, 2, 3, 7}) {
        size_t expect_begin = 0;
        for (int i = 0; i < parts; ++i) {
          const ElementRange r = chunk_of(count, elem, parts, i);
          EXPECT_EQ(r.begin, expect_begin) << count << " " << parts << " " << i;
          EXPECT_LE(r.begin, r.end);
          if (r.end < count) {
            EXPECT_EQ(r.end * elem % 64, 0u) << "slice end splits a cache line";
          }
          expect_begin = r.end;
        }
        EXPECT_EQ(expect_begin, count) << "slices do not cover the buffer";
      }
    }
  }
}

TEST(ChunkOf, TinyBuffersStayWithOneMember) {
  const ElementRange first = chunk_of(100, 4, 4, 0);
  EXPECT_EQ(first.begin, 0u);
  EXPECT_EQ(first.end, 100u);
  EXPECT_EQ(chunk_of(100, 4, 4, 3).begin, 100u);
}

// Every member arrives, then shares out blocks of `count` elements, counting visits.
// Returns how many elements the late member (if any) reduced itself.
size_t check_cover(int members, size_t count, int late_member) {
  LocalFabric fabric(members, CommOptions{}, "test");
  std::vector<std::atomic<int>> visits(count);
  std::atomic<size_t> by_late{0};
  std::vector<std::thread> threads;
  for (int m = 0; m < members; ++m) {
    threads.emplace_back([&, m] {
      for (int call = 0; call < 3; ++call) {
        const CallSignature sig{CollectiveKind::kAllreduce, DType::kFloat32, ReduceOp::kSum, 0, count};
        const LocalFabric::Peers peers = fabric.arrive(m, sig, nullptr, nullptr);
        if (m == late_member) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        fabric.share_blocks(m, peers, count, sizeof(float), [&](size_t begin, size_t end) {
          for (size_t i = begin; i < end; ++i) visits[i].fetch_add(1, std::memory_order_relaxed);
          if (m == late_member) by_late += end - begin;
        });
        fabric.sync(m, CollectiveKind::kAllreduce, "test");
      }
    });
  }
  for (auto& t : threads) t.join();
  size_t wrong = 0;
  for (size_t i = 0; i < count; ++i) wrong += visits[i].load() != 3;
  EXPECT_EQ(wrong, 0u) << members << " members, count " << count << ", late " << late_member;
  return by_late.load();
}

TEST(ShareBlocks, EveryElementExactlyOnce) {
  for (int members : {1, 2, 3}) {
    for (size_t count : {size_t{0}, size_t{5}, size_t{16385}, size_t{300001}}) check_cover(members, count, -1);
  }
}

TEST(ShareBlocks, OthersTakeALateMembersSlice) {
  // 100 ms is ample for the others to finish 1 MiB of counting three times over.
  const size_t count = size_t{1} << 18;
  EXPECT_LT(check_cover(2, count, 1), count / 2) << "the late member still did its whole slice";
  EXPECT_LT(check_cover(3, count, 0), count / 3) << "the late member still did its whole slice";
}

}  // namespace
}  // namespace lockstep
