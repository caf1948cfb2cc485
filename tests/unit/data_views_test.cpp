// Views of data/views.h, each alone and composed: shuffle is a seeded
// permutation that changes per epoch, shard partitions, batch remainders,
// prefetch is transparent (stream and errors), repeat/cache/map, and seek
// restores the exact continuation mid-epoch.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <stdexcept>

#include "data/random.h"
#include "data/views.h"

namespace lockstep {
namespace {

template <typename T>
std::vector<T> drain(Iterator<T>& it) {
  std::vector<T> out;
  T item{};
  while (it.next(item)) out.push_back(item);
  return out;
}

std::vector<int64_t> iota_vector(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

TEST(DataViews, ShuffleFullBufferIsAPermutationReproducibleFromSeed) {
  auto a = shuffle(range(1000), 1000, /*seed=*/7);
  auto b = shuffle(range(1000), 1000, /*seed=*/7);
  auto c = shuffle(range(1000), 1000, /*seed=*/8);
  std::vector<int64_t> ea = drain(*a), eb = drain(*b), ec = drain(*c);
  std::vector<int64_t> sorted = ea;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, iota_vector(1000));
  EXPECT_EQ(ea, eb);
  EXPECT_NE(ea, ec);
  EXPECT_NE(ea, iota_vector(1000));
}

// 0..n-1 with no size(): the shuffle cannot know the pass fits its buffer, so it
// draws element by element.
class UnsizedRange : public RangeIterator {
 public:
  using RangeIterator::RangeIterator;
  int64_t size() const override { return -1; }
};

// The documented order of a full-buffer shuffle of 0..n-1 in pass `epoch`: draw j
// uniformly below the live count, hand out slot j, move the last live element into it.
std::vector<int64_t> drawn_order(int64_t n, uint64_t seed, uint64_t epoch) {
  Rng rng(derive_seed(seed, epoch));
  std::vector<int64_t> slots = iota_vector(n), order;
  for (size_t live = slots.size(); live > 0; --live) {
    const size_t j = size_t(rng.below(uint64_t(live)));
    order.push_back(slots[j]);
    slots[j] = slots[live - 1];
  }
  return order;
}

// A pass that fits the buffer is drawn whole when it starts; its order is the
// element-by-element one, in every epoch, with a larger buffer, and after a seek.
TEST(DataViews, ShuffleDrawnWholeKeepsTheElementByElementOrder) {
  for (const int64_t n : {int64_t(0), int64_t(1), int64_t(2), int64_t(997), int64_t(60000)}) {
    auto whole = shuffle(range(n), n == 0 ? 1 : n, 42);
    auto bigger = shuffle(range(n), 2 * n + 1, 42);
    auto unsized = shuffle(IteratorPtr<int64_t>(std::make_unique<UnsizedRange>(n)), n == 0 ? 1 : n, 42);
    for (int64_t epoch = 0; epoch < 3; ++epoch) {
      whole->start(epoch);
      bigger->start(epoch);
      unsized->start(epoch);
      const std::vector<int64_t> want = drawn_order(n, 42, uint64_t(epoch));
      EXPECT_EQ(drain(*whole), want) << n << " rows, epoch " << epoch;
      EXPECT_EQ(drain(*bigger), want) << n << " rows, epoch " << epoch << ", buffer 2n + 1";
      EXPECT_EQ(drain(*unsized), want) << n << " rows, epoch " << epoch << ", no size()";
    }
    if (n < 2) continue;
    whole->seek(ViewPosition{1, n / 2});  // a resume mid-pass continues the same order
    const std::vector<int64_t> want = drawn_order(n, 42, 1);
    EXPECT_EQ(drain(*whole), std::vector<int64_t>(want.begin() + n / 2, want.end())) << n << " rows";
  }
}

// A child that yields more than its size() says is an error, not a silent reorder.
TEST(DataViews, ShuffleRejectsAChildLongerThanItsSize) {
  class Liar : public RangeIterator {
   public:
    Liar() : RangeIterator(10) {}
    int64_t size() const override { return 5; }
  };
  auto it = shuffle(IteratorPtr<int64_t>(std::make_unique<Liar>()), 5, 1);
  int64_t x = 0;
  EXPECT_THROW(it->next(x), DataError);
}

TEST(DataViews, ShuffleChangesEveryEpochAndRepeatsAnEpochExactly) {
  auto it = shuffle(range(200), 200, 3);
  it->start(0);
  std::vector<int64_t> e0 = drain(*it);
  it->start(1);
  std::vector<int64_t> e1 = drain(*it);
  it->start(0);
  std::vector<int64_t> e0_again = drain(*it);
  EXPECT_NE(e0, e1);
  EXPECT_EQ(e0, e0_again);
  auto fixed = shuffle(range(200), 200, 3, /*reshuffle_each_epoch=*/false);
  fixed->start(0);
  std::vector<int64_t> f0 = drain(*fixed);
  fixed->start(5);
  EXPECT_EQ(f0, drain(*fixed));
}

TEST(DataViews, ShuffleWithSmallBufferStillYieldsEveryElementOnce) {
  auto it = shuffle(range(500), 16, 11);
  std::vector<int64_t> got = drain(*it);
  std::vector<int64_t> sorted = got;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, iota_vector(500));
  // A 16-element buffer can only move an element forward by the buffer's reach.
  for (size_t i = 0; i < got.size(); ++i) EXPECT_LE(got[i], int64_t(i) + 16);
}

TEST(DataViews, ShardsPartitionTheStream) {
  for (int64_t shards : {1, 2, 3, 7}) {
    std::vector<int64_t> all;
    for (int64_t index = 0; index < shards; ++index) {
      auto it = shard(range(100), shards, index);
      std::vector<int64_t> part = drain(*it);
      EXPECT_EQ(int64_t(part.size()), it->size());
      for (int64_t v : part) EXPECT_EQ(v % shards, index);
      all.insert(all.end(), part.begin(), part.end());
    }
    std::sort(all.begin(), all.end());
    EXPECT_EQ(all, iota_vector(100)) << shards << " shards";
  }
  EXPECT_THROW(shard(range(10), 3, 3), DataError);
}

TEST(DataViews, BatchKeepsOrDropsTheShortLastBatch) {
  auto keep = batch(range(10), 4, /*drop_remainder=*/false);
  std::vector<std::vector<int64_t>> kept = drain(*keep);
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept[0], (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(kept[2], (std::vector<int64_t>{8, 9}));
  EXPECT_EQ(keep->size(), 3);
  auto drop = batch(range(10), 4, /*drop_remainder=*/true);
  std::vector<std::vector<int64_t>> dropped = drain(*drop);
  ASSERT_EQ(dropped.size(), 2u);
  EXPECT_EQ(dropped[1], (std::vector<int64_t>{4, 5, 6, 7}));
  EXPECT_EQ(drop->size(), 2);
  auto exact = batch(range(8), 4, true);
  EXPECT_EQ(drain(*exact).size(), 2u);
}

TEST(DataViews, MapRepeatAndCache) {
  auto squares = map(range(5), [](const int64_t& v) { return double(v * v); });
  EXPECT_EQ(drain(*squares), (std::vector<double>{0, 1, 4, 9, 16}));

  auto twice = repeat(range(3), 2);
  EXPECT_EQ(drain(*twice), (std::vector<int64_t>{0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(twice->size(), 6);
  // Below a repeat, each repetition of a shuffle gets its own order.
  auto reshuffled = repeat(shuffle(range(50), 50, 1), 2);
  std::vector<int64_t> both = drain(*reshuffled);
  ASSERT_EQ(both.size(), 100u);
  EXPECT_NE(std::vector<int64_t>(both.begin(), both.begin() + 50), std::vector<int64_t>(both.begin() + 50, both.end()));
  auto endless = repeat(range(2));
  int64_t v = 0;
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(endless->next(v));
  EXPECT_EQ(v, 0);

  int calls = 0;
  auto counted = cache(map(range(4), [&calls](const int64_t& x) { ++calls; return x + 10; }));
  EXPECT_EQ(drain(*counted), (std::vector<int64_t>{10, 11, 12, 13}));
  counted->start(1);
  EXPECT_EQ(drain(*counted), (std::vector<int64_t>{10, 11, 12, 13}));
  EXPECT_EQ(calls, 4);  // the second pass came from memory
}

TEST(DataViews, PrefetchYieldsTheSameStreamAsWithout) {
  auto chain = [](int depth) {
    IteratorPtr<std::vector<int64_t>> it = batch(shuffle(range(1003), 1003, 5), 10);
    return depth > 0 ? prefetch(std::move(it), depth) : std::move(it);
  };
  auto plain = chain(0);
  for (int depth : {1, 3}) {
    auto fetched = chain(depth);
    for (int64_t epoch = 0; epoch < 3; ++epoch) {
      plain->start(epoch);
      fetched->start(epoch);
      EXPECT_EQ(drain(*plain), drain(*fetched)) << "depth " << depth << " epoch " << epoch;
    }
  }
}

TEST(DataViews, PrefetchRethrowsWorkerErrorsInOrderAndStopsCleanly) {
  auto failing = map(range(10), [](const int64_t& v) {
    if (v == 6) throw DataError("row 6 is broken");
    return v;
  });
  auto it = prefetch(std::move(failing), 2);
  int64_t v = -1;
  for (int64_t expect = 0; expect < 6; ++expect) {
    ASSERT_TRUE(it->next(v));
    EXPECT_EQ(v, expect);
  }
  EXPECT_THROW(it->next(v), DataError);
  // Abandoning an endless prefetching stream mid-way must not hang.
  auto endless = prefetch(repeat(range(4)), 3);
  ASSERT_TRUE(endless->next(v));
  endless.reset();
}

// Take some elements, save the position, drain the rest; a fresh chain that
// seeks to the saved position must yield exactly that rest.
TEST(DataViews, SeekRestoresTheExactContinuationMidEpoch) {
  auto make = [] { return prefetch(batch(shard(shuffle(range(997), 997, 42), 3, 1), 8), 2); };
  for (int64_t taken : {0, 1, 17, 41}) {
    auto original = make();
    original->start(2);
    std::vector<int64_t> item;
    for (int64_t i = 0; i < taken; ++i) ASSERT_TRUE(original->next(item));
    const ViewPosition saved = original->position();
    EXPECT_EQ(saved.epoch, 2);
    EXPECT_EQ(saved.index, taken);
    std::vector<std::vector<int64_t>> rest = drain(*original);
    auto resumed = make();
    resumed->seek(saved);
    EXPECT_EQ(drain(*resumed), rest) << "after " << taken;
  }
  auto short_one = make();
  EXPECT_THROW(short_one->seek({0, 1000}), DataError);
}

TEST(DataViews, SeekThroughRepeatAndSmallBufferShuffleReplays) {
  auto make = [] { return repeat(shuffle(range(30), 7, 9), 3); };
  auto original = make();
  int64_t v = 0;
  for (int i = 0; i < 47; ++i) ASSERT_TRUE(original->next(v));
  const ViewPosition saved = original->position();
  std::vector<int64_t> rest = drain(*original);
  EXPECT_EQ(rest.size(), 90u - 47u);
  auto resumed = make();
  resumed->seek(saved);
  EXPECT_EQ(drain(*resumed), rest);
}

}  // namespace
}  // namespace lockstep
