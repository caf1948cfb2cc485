// Deterministic mode: the fixed-point helpers against exact expectations, and
// whole training runs whose weights AND optimizer slots are bitwise the same for
// 1, 2, 4 and 8 replica threads (dropout, a short last batch, SGD and Adam, one
// weight arena or one per replica, an input whose zeros the first layer skips);
// gradient accumulation matches one pass per slice up to fp32 summation order.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "src/micro_batch.h"
#include "tests/common/train_harness.h"

namespace lockstep {
namespace {

using testing::RunResult;
using testing::RunSpec;

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

RunResult deterministic_run(int replicas, OptimizerKind opt, float dropout, int64_t micro,
                            bool share_weights = true) {
  testing::SingleWorld w;
  RunSpec spec{replicas, opt, 250, 2, dropout};  // 10 batches of 24, then one of 10
  spec.deterministic = true;
  spec.micro_batch = micro;
  spec.share_weights = share_weights;
  return testing::train_synthetic(w.world, spec);
}

TEST(FixedPoint, MaxAbsIsExactAndFlagsNonFinite) {
  const float x[] = {0.5f, -3.25f, 1e-30f, -0.0f, 2.0f};
  EXPECT_EQ(max_abs(x, 5), 3.25);
  EXPECT_EQ(max_abs(x, 0), 0.0);
  const float nan[] = {1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f};
  EXPECT_TRUE(std::isinf(max_abs(nan, 3)));
  const float inf[] = {-std::numeric_limits<float>::infinity()};
  EXPECT_TRUE(std::isinf(max_abs(inf, 1)));
}

TEST(FixedPoint, ExponentLeavesRoomForEveryTerm) {
  // 3.25 < 2^2: 62 - 0 - 2 = 60 for one term, one bit less per doubling of terms.
  EXPECT_EQ(fixed_point_exponent(3.25, 1), 60);
  EXPECT_EQ(fixed_point_exponent(3.25, 2), 59);
  EXPECT_EQ(fixed_point_exponent(3.25, 3), 58);
  EXPECT_EQ(fixed_point_exponent(4.0, 8), 62 - 3 - 3);  // 4 = 0.5 * 2^3
  // The worst case: `terms` copies of the largest float with that exponent.
  for (const int64_t terms : {1, 2, 5, 64}) {
    const float big = std::nextafter(8.0f, 0.0f);  // just below 2^3
    std::vector<int64_t> acc(1, 0);
    const int f = fixed_point_exponent(big, terms);
    for (int64_t t = 0; t < terms; ++t) accumulate_fixed(&big, 1, f, acc.data());
    EXPECT_LE(acc[0], int64_t(1) << 62) << terms;
    EXPECT_GT(acc[0], 0) << terms;
  }
}

// Values that are multiples of 2^-F sum exactly: the fixed-point result is the
// true sum, which these small dyadic numbers make easy to know.
TEST(FixedPoint, DyadicValuesSumExactly) {
  const float a[] = {0.5f, -1.25f, 3.0f, 0.0f};
  const float b[] = {0.25f, 1.25f, -7.5f, 1.0f / 1024};
  std::vector<int64_t> acc(4, 0);
  const int f = fixed_point_exponent(7.5, 2);
  accumulate_fixed(a, 4, f, acc.data());
  accumulate_fixed(b, 4, f, acc.data());
  std::vector<float> out(4);
  fixed_to_float(acc.data(), 4, f, out.data());
  EXPECT_EQ(out, (std::vector<float>{0.75f, 0.0f, -4.5f, 1.0f / 1024}));
}

// Random gradients: any grouping and order of the terms gives the same bits,
// and the result is within the documented bound of the exact sum (long double
// holds these sums of 16 floats of one magnitude range exactly enough).
TEST(FixedPoint, AnyOrderGivesTheSameBitsNearTheTrueSum) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1e-3f);
  const int terms = 16, n = 2000;
  std::vector<std::vector<float>> g(terms, std::vector<float>(n));
  double most = 0;
  for (auto& v : g) {
    for (float& x : v) x = dist(rng), most = std::max(most, double(std::abs(x)));
  }
  const int f = fixed_point_exponent(most, terms);
  auto sum_in = [&](const std::vector<int>& order) {
    std::vector<int64_t> acc(n, 0);
    for (int t : order) accumulate_fixed(g[size_t(t)].data(), n, f, acc.data());
    std::vector<float> out(n);
    fixed_to_float(acc.data(), n, f, out.data());
    return out;
  };
  std::vector<int> order(terms);
  for (int t = 0; t < terms; ++t) order[size_t(t)] = t;
  const std::vector<float> forward = sum_in(order);
  std::shuffle(order.begin(), order.end(), rng);
  EXPECT_TRUE(same_bits(forward, sum_in(order)));
  // Two replicas' partial sums added later, as the all-reduce does.
  std::vector<int64_t> lo(n, 0), hi(n, 0);
  for (int t = 0; t < terms; ++t) accumulate_fixed(g[size_t(t)].data(), n, f, (t < 5 ? lo : hi).data());
  for (int i = 0; i < n; ++i) lo[size_t(i)] += hi[size_t(i)];
  std::vector<float> split(n);
  fixed_to_float(lo.data(), n, f, split.data());
  EXPECT_TRUE(same_bits(forward, split));
  for (int i = 0; i < n; ++i) {
    long double exact = 0;
    for (int t = 0; t < terms; ++t) exact += g[size_t(t)][size_t(i)];
    // terms roundings of half a unit 2^-F, then one fp32 rounding of the result.
    const double bound = terms * std::ldexp(0.5, -f) + std::abs(double(exact)) * 6e-8;
    ASSERT_LE(std::abs(double(forward[size_t(i)]) - double(exact)), bound) << i;
  }
}

// whole_shares: every full batch splits as usual, a short one keeps whole
// shares on the first replicas (so a micro-batch is never cut in two), and each
// replica gets the rows the split names, with or without a reader per replica.
TEST(WholeShares, ShortLastBatchKeepsWholeSharesOnTheFirstReplicas) {
  TensorSet t;
  t.feature_shape = {1};
  t.num_classes = 2;
  for (int i = 0; i < 34; ++i) t.x.push_back(float(i)), t.labels.push_back(i % 2);
  auto src = make_tensor_source(std::move(t));
  for (const bool own_rows : {false, true}) {
    InputOptions in;
    in.global_batch = 24;
    in.num_replicas = 4;
    in.local_replicas = 4;
    in.shuffle = false;
    in.whole_shares = true;
    in.replica_gather = own_rows;
    DistributedInput input(src, in);
    std::vector<ReplicaBatch> out;
    ASSERT_TRUE(input.next(out));
    for (int r = 0; r < 4; ++r) EXPECT_EQ(out[size_t(r)].first_row, 6 * r);
    ASSERT_TRUE(input.next(out));  // rows 24..33: 10 rows
    const int64_t first[4] = {0, 6, 10, 10}, rows[4] = {6, 4, 0, 0};
    for (int r = 0; r < 4; ++r) {
      ReplicaBatch& b = out[size_t(r)];
      EXPECT_EQ(b.first_row, first[r]) << r;
      EXPECT_EQ(b.rows, rows[r]) << r;
      EXPECT_EQ(b.global_rows, 10);
      if (b.rows > 0) EXPECT_EQ(b.x[0], float(24 + first[r])) << r;
    }
    EXPECT_FALSE(input.next(out));
  }
  InputOptions odd;
  odd.global_batch = 24;
  odd.num_replicas = 5;
  odd.local_replicas = 5;
  odd.whole_shares = true;
  EXPECT_THROW(DistributedInput(src, odd), DataError);
}

// The heart of deterministic mode: 1, 2, 4 and 8 replicas, bitwise, slots too,
// whether the replicas share one arena or each keeps its own
// (strategy.share_weights false: every replica runs the whole exact update).
TEST(Deterministic, WeightsAndSlotsAreBitwiseTheSameForEveryReplicaCount) {
  for (const OptimizerKind opt : {OptimizerKind::kAdam, OptimizerKind::kSgd}) {
    const RunResult one = deterministic_run(1, opt, 0.25f, 3);  // 8 micro-batches of 3 rows
    EXPECT_LT(one.loss_last, one.loss_first);
    ASSERT_FALSE(one.slots.empty());
    for (const int r : {2, 4, 8}) {
      for (const bool share : {true, false}) {
        const RunResult many = deterministic_run(r, opt, 0.25f, 3, share);
        const std::string what = std::to_string(r) + " replicas, " + optimizer_name(opt) +
                                 (share ? ", one arena" : ", an arena each");
        EXPECT_TRUE(same_bits(one.params, many.params)) << what;
        ASSERT_EQ(one.slots.size(), many.slots.size()) << what;
        for (size_t s = 0; s < one.slots.size(); ++s) {
          EXPECT_TRUE(same_bits(one.slots[s], many.slots[s])) << "slot " << s << ", " << what;
        }
        EXPECT_EQ(one.loss_first, many.loss_first) << "the reported loss is exact too, " << what;
        EXPECT_EQ(one.loss_last, many.loss_last) << what;
      }
    }
  }
}

// The same with an input that is mostly zeros, so the first layer skips them
// (cpu::ZeroIndex; checked to pay on a micro-batch where the build vectorizes it):
// which zeros a micro-batch's blocks visit does not depend on the replica count.
TEST(Deterministic, BitwiseForEveryReplicaCountWhenTheInputsZerosAreSkipped) {
  testing::SingleWorld w;
  RunSpec spec{1, OptimizerKind::kAdam, 250, 2, 0.0f};
  spec.deterministic = true;
  spec.micro_batch = 3;
  spec.sparse_input = true;
  const RunResult one = testing::train_synthetic(w.world, spec);
  EXPECT_LT(one.loss_last, one.loss_first);
  SyntheticOptions so;
  so.size = 250, so.feature_shape = {12}, so.num_classes = 4, so.seed = 3;
  const auto src = testing::with_small_features_zeroed(*make_synthetic(so), testing::kSparseBelow);
  std::vector<float> x(3 * 12);
  std::vector<int32_t> y(3);
  int paying = 0, groups = 0;  // 3-row micro-batches whose forward skips zeros
  for (int64_t first = 0; first + 3 <= so.size; first += 3, ++groups) {
    const int64_t rows[] = {first, first + 1, first + 2};
    src->read(rows, 3, x.data(), y.data(), nullptr);
    cpu::ZeroIndex ix;
    ix.build(x.data(), 3, 12, 12);
    paying += ix.forward_pays() ? 1 : 0;
  }
  if (cpu::ZeroIndex::vectorized()) EXPECT_GT(paying, groups * 3 / 4) << paying << " of " << groups;
  for (const int r : {2, 4}) {
    for (const bool share : {true, false}) {
      spec.local_replicas = r;
      spec.share_weights = share;
      const RunResult many = testing::train_synthetic(w.world, spec);
      const std::string what = std::to_string(r) + (share ? " replicas, one arena" : " replicas, an arena each");
      EXPECT_TRUE(same_bits(one.params, many.params)) << what;
      ASSERT_EQ(one.slots.size(), many.slots.size()) << what;
      for (size_t s = 0; s < one.slots.size(); ++s) EXPECT_TRUE(same_bits(one.slots[s], many.slots[s])) << what;
      EXPECT_EQ(one.loss_last, many.loss_last) << what;
    }
  }
}

// Not a different model: deterministic weights are those of the fp32 mode up to
// summation order (the same tolerance as two replica counts in fp32 mode).
TEST(Deterministic, AgreesWithTheFp32ModeUpToSummationOrder) {
  testing::SingleWorld w;
  const RunResult fp32 = testing::train_synthetic(w.world, RunSpec{1, OptimizerKind::kAdam});
  const RunResult exact = deterministic_run(2, OptimizerKind::kAdam, 0.0f, 3);
  EXPECT_LT(testing::worst_relative_difference(exact.params, fp32.params), testing::kReplicaTolerance);
}

// Gradient accumulation: micro-batches smaller than a replica's share give the
// weights of one pass per share up to fp32 summation order, in both modes.
TEST(Deterministic, GradientAccumulationMatchesOnePassPerShare) {
  for (const int r : {1, 2}) {
    testing::SingleWorld w;
    const RunResult whole = testing::train_synthetic(w.world, RunSpec{r, OptimizerKind::kAdam});
    RunSpec spec{r, OptimizerKind::kAdam};
    spec.micro_batch = 4;  // 24 / r rows per replica run as pieces of 4
    const RunResult accumulated = testing::train_synthetic(w.world, spec);
    EXPECT_FALSE(same_bits(whole.params, accumulated.params)) << "the accumulation path ran";
    EXPECT_LT(testing::worst_relative_difference(accumulated.params, whole.params), testing::kReplicaTolerance)
        << r << " replicas";
    spec.share_weights = false;  // an arena each: the same accumulation, the same bits
    const RunResult own = testing::train_synthetic(w.world, spec);
    EXPECT_TRUE(same_bits(accumulated.params, own.params)) << r << " replicas, an arena each";
  }
  const RunResult one_piece = deterministic_run(1, OptimizerKind::kAdam, 0.0f, 24);
  const RunResult pieces = deterministic_run(1, OptimizerKind::kAdam, 0.0f, 3);
  EXPECT_LT(testing::worst_relative_difference(pieces.params, one_piece.params), testing::kReplicaTolerance);
}

// Non-finite steps in deterministic mode skip the update on every replica, as
// in the fp32 mode: an overflow inside one micro-batch's gradient, and finite
// micro-batch gradients whose exact sum overflows fp32 (2 x -2e38).
TEST(Deterministic, NonFiniteGradientsSkipTheUpdateEverywhere) {
  for (const bool share : {true, false}) {
    SCOPED_TRACE(share ? "one arena" : "an arena each");
    testing::SingleWorld w;
    Config cfg;
    cfg.data_path = "x";
    cfg.local_replicas = 2;
    cfg.batch_size = 2;
    cfg.deterministic = true;
    cfg.micro_batch_size = 1;
    cfg.share_weights = share;
    Model model({}, 2, 1, LossKind::kMeanSquaredError);  // y = x0 w0 + x1 w1 + b
    MirroredStrategy strategy(model, cfg, w.world, 1);
    const float targets[2] = {10.0f, 10.0f};
    // With zero weights every prediction is 0: dL/dw0 = x0 * (0 - 10) per row
    // (the 1/2 of the global mean cancels the 2 of the square).
    const float inside[2][2] = {{3e38f, 1.0f}, {3e38f, 1.0f}};  // -3e39: overflows in backward
    const float summed[2][2] = {{2e37f, 1.0f}, {2e37f, 1.0f}};  // -2e38 each, -4e38 together
    const float fine[2][2] = {{0.5f, 1.0f}, {-0.5f, 1.0f}};
    std::vector<StepResult> res(6);
    std::vector<AlignedVector<float>> after(2);
    strategy.run([&](Replica& r) {
      // Zero weights: the one arena (filled once), or each replica's own.
      if (!share || r.local_index == 0) std::fill(r.step->params->begin(), r.step->params->end(), 0.0f);
      r.local_comm->barrier();
      const int i = r.local_index;
      ReplicaBatch b = testing::one_row(i, 2, inside, targets);
      res[size_t(i)] = strategy.train_step(r, b, 0.1f, 1);
      b.x = summed[i];
      res[size_t(2 + i)] = strategy.train_step(r, b, 0.1f, 2);
      EXPECT_EQ(testing::values(*r.step->params), AlignedVector<float>(3, 0.0f)) << "no weight moved";
      b.x = fine[i];
      res[size_t(4 + i)] = strategy.train_step(r, b, 0.1f, 3);
      after[size_t(i)] = testing::values(*r.step->params);
    });
    for (int i = 0; i < 2; ++i) {
      SCOPED_TRACE("replica " + std::to_string(i));
      for (const int step : {0, 2}) {
        const StepResult& bad = res[size_t(step + i)];
        EXPECT_TRUE(bad.finite_loss) << step;
        EXPECT_EQ(bad.global.loss_sum, 200.0) << step;
        EXPECT_EQ(bad.global.rows, 2) << step;
        EXPECT_FALSE(bad.finite) << step;
      }
      EXPECT_TRUE(res[size_t(4 + i)].finite);
      EXPECT_NEAR(after[size_t(i)][2], 0.1f, 1e-6f) << "Adam's first step moves the bias by lr";
    }
    EXPECT_EQ(after[0], after[1]);
  }
}

TEST(Deterministic, MicroBatchSizeIsResolvedAndChecked) {
  Config c;
  c.data_path = "x";
  c.batch_size = 64;
  c.deterministic = true;
  EXPECT_EQ(resolve_micro_batch(c, 2), 16);  // auto: 4 pieces of >= 16 rows, whatever the replicas
  EXPECT_EQ(resolve_micro_batch(c, 4), 16);
  c.batch_size = 256;
  EXPECT_EQ(resolve_micro_batch(c, 1), 32);  // 8 pieces at most
  c.batch_size = 48;
  EXPECT_EQ(resolve_micro_batch(c, 1), 24);  // 8 or 4 pieces would be under 16 rows
  c.batch_size = 24;
  EXPECT_EQ(resolve_micro_batch(c, 1), 24);  // one piece: set micro_batch_size for more
  c.deterministic = false;
  c.batch_size = 64;
  EXPECT_EQ(resolve_micro_batch(c, 4), 16);  // fp32 mode: a replica's share, one pass
  c.deterministic = true;
  c.micro_batch_size = 16;  // 4 micro-batches: 1, 2, 4 replicas
  EXPECT_NO_THROW(check_micro_batches(c, 4));
  try {
    check_micro_batches(c, 8);
    ADD_FAILURE() << "8 replicas cannot share 4 micro-batches";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("key 'train.micro_batch_size'"), std::string::npos) << m;
    EXPECT_NE(m.find("run 1, 2, 4 replicas"), std::string::npos) << m;
  }
  EXPECT_THROW(parse_config("data: {path: x}\ntrain: {batch_size: 64, micro_batch_size: 5}\n", "cfg.yaml"),
               ConfigError);
  const Config ok = parse_config("data: {path: x}\ntrain: {deterministic: true, micro_batch_size: auto}\n", "c");
  EXPECT_TRUE(ok.deterministic);
  EXPECT_EQ(ok.micro_batch_size, 0);
  EXPECT_EQ(parse_config(ok.to_yaml(), "again").micro_batch_size, 0) << "auto survives to_yaml";
}

}  // namespace
}  // namespace lockstep
