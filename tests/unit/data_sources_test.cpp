// Synthetic and in-memory tensor sources: seeded determinism, a structure a
// model can actually learn (checked against the generating centres/weights),
// validation of bad tensors, Source rows flowing through the views, and the
// storage of large splits (their own 2 MiB-aligned mapping).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <new>
#include <numeric>
#include <random>

#include "data/aligned.h"
#include "data/memory_source.h"
#include "data/sources.h"
#include "data/views.h"

namespace lockstep {
namespace {

std::vector<float> read_all(const Source& s, std::vector<int32_t>* labels, std::vector<float>* targets) {
  const DatasetInfo& info = s.info();
  std::vector<int64_t> rows(static_cast<size_t>(info.size));
  std::iota(rows.begin(), rows.end(), 0);
  std::vector<float> x(size_t(info.size * info.feature_dim));
  if (labels != nullptr) labels->resize(size_t(info.size));
  if (targets != nullptr) targets->resize(size_t(info.size * info.target_dim));
  s.read(rows.data(), info.size, x.data(), labels ? labels->data() : nullptr, targets ? targets->data() : nullptr);
  return x;
}

TEST(DataSources, SyntheticIsDeterministicPerSeed) {
  SyntheticOptions o;
  o.size = 300;
  o.feature_shape = {2, 4};
  o.seed = 11;
  std::vector<int32_t> la, lb, lc;
  const std::vector<float> a = read_all(*make_synthetic(o), &la, nullptr);
  const std::vector<float> b = read_all(*make_synthetic(o), &lb, nullptr);
  o.seed = 12;
  const std::vector<float> c = read_all(*make_synthetic(o), &lc, nullptr);
  EXPECT_EQ(a, b);
  EXPECT_EQ(la, lb);
  EXPECT_NE(a, c);
  EXPECT_EQ(make_synthetic(o)->info().feature_dim, 8);
  EXPECT_EQ(make_synthetic(o)->info().num_classes, 4);
}

TEST(DataSources, SyntheticClassesAreSeparableByTheirCentres) {
  SyntheticOptions o;
  o.size = 2000;
  o.feature_shape = {16};
  o.num_classes = 5;
  o.separation = 3.0f;
  o.noise = 1.0f;
  o.seed = 3;
  auto source = make_synthetic(o);
  std::vector<int32_t> labels;
  const std::vector<float> x = read_all(*source, &labels, nullptr);
  const std::vector<float> centres = synthetic_class_centres(o);
  int64_t correct = 0;
  std::vector<int64_t> count(5, 0);
  for (int64_t i = 0; i < o.size; ++i) {
    int best = 0;
    double best_d = 1e300;
    for (int c = 0; c < 5; ++c) {
      double d = 0;
      for (int j = 0; j < 16; ++j) d += std::pow(x[size_t(i * 16 + j)] - centres[size_t(c * 16 + j)], 2);
      if (d < best_d) {
        best_d = d;
        best = c;
      }
    }
    correct += best == labels[size_t(i)];
    count[size_t(labels[size_t(i)])]++;
  }
  // Centres ~12 apart against unit noise: nearest-centre is nearly always right.
  EXPECT_GT(double(correct) / double(o.size), 0.97);
  for (int64_t c : count) EXPECT_GT(c, 300);  // labels roughly uniform
}

TEST(DataSources, SyntheticRegressionIsLinearPlusNoise) {
  SyntheticOptions o;
  o.task = SyntheticTask::kRegression;
  o.size = 4000;
  o.feature_shape = {8};
  o.target_dim = 2;
  o.noise = 0.1f;
  auto source = make_synthetic(o);
  EXPECT_EQ(source->info().target_dim, 2);
  EXPECT_EQ(source->info().num_classes, 0);
  std::vector<float> y;
  const std::vector<float> x = read_all(*source, nullptr, &y);
  const std::vector<float> w = synthetic_regression_weights(o);
  double residual2 = 0, signal2 = 0;
  for (int64_t i = 0; i < o.size; ++i)
    for (int t = 0; t < 2; ++t) {
      double pred = 0;
      for (int j = 0; j < 8; ++j) pred += double(w[size_t(t * 8 + j)]) * x[size_t(i * 8 + j)];
      residual2 += std::pow(y[size_t(i * 2 + t)] - pred, 2);
      signal2 += pred * pred;
    }
  const double residual_std = std::sqrt(residual2 / double(o.size * 2));
  EXPECT_NEAR(residual_std, 0.1, 0.01);
  EXPECT_GT(signal2 / double(o.size * 2), 0.3);  // W x carries real signal
}

TEST(DataSources, TensorSourceValidatesAndServesRows) {
  TensorSet t;
  t.feature_shape = {2};
  t.x = {1, 2, 3, 4, 5, 6};
  t.labels = {0, 2, 1};
  t.num_classes = 3;
  t.description = "my tensors";
  auto source = make_tensor_source(t, 10.0f);
  float x[4];
  int32_t labels[2];
  const int64_t rows[2] = {2, 0};
  source->read(rows, 2, x, labels, nullptr);
  EXPECT_EQ(std::vector<float>(x, x + 4), (std::vector<float>{50, 60, 10, 20}));
  EXPECT_EQ(labels[0], 1);
  EXPECT_EQ(labels[1], 0);
  const int64_t outside = 3;
  EXPECT_THROW(source->read(&outside, 1, x, labels, nullptr), DataError);

  auto expect_error = [](TensorSet bad, const std::string& words) {
    try {
      make_tensor_source(std::move(bad));
      ADD_FAILURE() << "accepted; expected an error about " << words;
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find("my tensors"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  TensorSet bad = t;
  bad.labels[1] = 3;
  expect_error(bad, "label 3 at row 1");
  bad = t;
  bad.x.push_back(7);
  expect_error(bad, "not a whole number");
  bad = t;
  bad.x[3] = INFINITY;
  expect_error(bad, "non-finite");
  bad = t;
  bad.labels.pop_back();
  expect_error(bad, "2 labels for 3 rows");
  bad = t;
  bad.target_dim = 1;
  expect_error(bad, "exactly one of");
}

bool aligned_to(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// From kLargePageBytes up a buffer starts on a 2 MiB boundary (the kernel can back
// only such a range with 2 MiB pages); below it, on a cache line. Growing and
// shrinking across the threshold keeps every byte.
TEST(DataSources, LargeBuffersStartOnALargePage) {
  const size_t big = kLargePageBytes + (kLargePageBytes >> 1) + 5;
  LargePageVector<unsigned char> a(big);
  EXPECT_TRUE(aligned_to(a.data(), kLargePageBytes));
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<unsigned char>(i * 7 + 3);
  a.resize(3 * kLargePageBytes + 1);  // a new mapping, the old bytes copied over
  EXPECT_TRUE(aligned_to(a.data(), kLargePageBytes));
  for (size_t i = 0; i < a.size(); ++i) {
    const unsigned char want = i < big ? static_cast<unsigned char>(i * 7 + 3) : 0;
    ASSERT_EQ(a[i], want) << "byte " << i << " after growing";
  }
  a.resize(1000);
  a.shrink_to_fit();  // back under the threshold: plain aligned memory
  EXPECT_TRUE(aligned_to(a.data(), 64));
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], static_cast<unsigned char>(i * 7 + 3)) << i;
  LargePageVector<float> empty;
  empty.shrink_to_fit();
  EXPECT_EQ(empty.data(), nullptr);
  // A size whose rounding to whole pages would wrap is refused, not mapped short.
  EXPECT_THROW(LargePageAllocator<unsigned char>().allocate(SIZE_MAX - 5), std::bad_alloc);
}

// A uint8 split of 3.1 MB (on its own mapping) read back at random rows: every
// value is its pixel times the scale.
TEST(DataSources, MemorySourceReadsALargeSplitAtRandomRows) {
  const int64_t rows = 4000, dim = 784;
  HostArray x;
  x.type = ElementType::kUInt8;
  x.shape = {rows, 28, 28};
  x.bytes.resize(size_t(rows * dim));
  ASSERT_TRUE(aligned_to(x.bytes.data(), kLargePageBytes));
  const auto pixel = [](int64_t r, int64_t j) { return static_cast<unsigned char>((r * 31 + j * 17) % 251); };
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < dim; ++j) x.bytes[size_t(r * dim + j)] = pixel(r, j);
  std::vector<int32_t> labels(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) labels[size_t(r)] = int32_t(r % 10);
  DatasetInfo info;
  info.num_classes = 10;
  info.description = "large split";
  const MemorySource source(info, std::move(x), labels, {}, 0.5f);
  std::mt19937 rng(5);
  std::vector<int64_t> pick(64);
  for (auto& r : pick) r = int64_t(rng() % uint32_t(rows));
  pick[0] = rows - 1;  // the last row ends on the mapping's last bytes
  std::vector<float> out(size_t(64 * dim));
  std::vector<int32_t> got(64);
  source.read(pick.data(), 64, out.data(), got.data(), nullptr);
  for (int64_t i = 0; i < 64; ++i) {
    ASSERT_EQ(got[size_t(i)], int32_t(pick[size_t(i)] % 10)) << "row " << pick[size_t(i)];
    for (int64_t j = 0; j < dim; ++j)
      ASSERT_EQ(out[size_t(i * dim + j)], 0.5f * float(pixel(pick[size_t(i)], j)))
          << "row " << pick[size_t(i)] << ", element " << j;
  }
}

TEST(DataSources, SourceRowsFlowThroughViews) {
  SyntheticOptions o;
  o.size = 50;
  o.feature_shape = {3};
  auto source = make_synthetic(o);
  std::vector<int32_t> labels;
  const std::vector<float> x = read_all(*source, &labels, nullptr);
  auto it = batch(shuffle(from_source(source), 50, 2), 8);
  std::vector<Example> b;
  std::vector<bool> seen(50, false);
  int64_t total = 0;
  while (it->next(b)) {
    for (const Example& e : b) {
      EXPECT_FALSE(seen[size_t(e.row)]);
      seen[size_t(e.row)] = true;
      EXPECT_EQ(e.label, labels[size_t(e.row)]);
      EXPECT_EQ(e.x, std::vector<float>(x.begin() + e.row * 3, x.begin() + e.row * 3 + 3));
    }
    total += int64_t(b.size());
  }
  EXPECT_EQ(total, 50);
  EXPECT_THROW(make_synthetic(SyntheticOptions{.size = 0}), DataError);
}

}  // namespace
}  // namespace lockstep
