// Seeded synthetic datasets with a structure a model can learn: Gaussian class
// clusters for classification, a noisy linear map for regression. Every number
// comes from the portable Rng, so the same options give the same data anywhere.
#include <cmath>

#include "data/memory_source.h"
#include "data/random.h"
#include "data/sources.h"

namespace lockstep {

namespace {

// Independent streams under one seed, so the centres do not depend on `size`.
constexpr uint64_t kCentreStream = 1, kWeightStream = 2, kRowStream = 3;

// Validates the options; returns the feature dimension.
int64_t check_options(const SyntheticOptions& o) {
  if (o.feature_shape.empty()) throw DataError("synthetic dataset: feature_shape is empty");
  for (int64_t d : o.feature_shape)
    if (d <= 0) throw DataError("synthetic dataset: feature_shape " + shape_string(o.feature_shape) +
                                " has a non-positive dimension");
  if (o.size <= 0) throw DataError("synthetic dataset: size must be > 0, got " + std::to_string(o.size));
  if (o.task == SyntheticTask::kClassification && o.num_classes < 2)
    throw DataError("synthetic dataset: num_classes must be >= 2, got " + std::to_string(o.num_classes));
  if (o.task == SyntheticTask::kRegression && o.target_dim < 1)
    throw DataError("synthetic dataset: target_dim must be >= 1, got " + std::to_string(o.target_dim));
  if (!(o.noise >= 0.0f) || !std::isfinite(o.noise) || !std::isfinite(o.separation))
    throw DataError("synthetic dataset: noise must be finite and >= 0, separation finite");
  return shape_product(o.feature_shape);
}

std::vector<float> normal_matrix(uint64_t seed, int64_t rows, int64_t cols, double stddev) {
  Rng rng(seed);
  std::vector<float> m(size_t(rows * cols));
  for (float& v : m) v = static_cast<float>(stddev * rng.normal());
  return m;
}

}  // namespace

std::vector<float> synthetic_class_centres(const SyntheticOptions& o) {
  return normal_matrix(derive_seed(o.seed, kCentreStream), o.num_classes, check_options(o), o.separation);
}

std::vector<float> synthetic_regression_weights(const SyntheticOptions& o) {
  const int64_t dim = check_options(o);
  return normal_matrix(derive_seed(o.seed, kWeightStream), o.target_dim, dim, 1.0 / std::sqrt(double(dim)));
}

std::shared_ptr<Source> make_synthetic(const SyntheticOptions& o) {
  const int64_t dim = check_options(o);
  std::vector<int64_t> shape = {o.size};
  shape.insert(shape.end(), o.feature_shape.begin(), o.feature_shape.end());
  std::vector<float> x(size_t(o.size * dim));
  std::vector<int32_t> labels;
  std::vector<float> targets;
  DatasetInfo info;
  Rng rng(derive_seed(o.seed, kRowStream));
  if (o.task == SyntheticTask::kClassification) {
    const std::vector<float> centres = synthetic_class_centres(o);
    labels.resize(size_t(o.size));
    for (int64_t i = 0; i < o.size; ++i) {
      labels[i] = static_cast<int32_t>(rng.below(uint64_t(o.num_classes)));
      const float* centre = centres.data() + labels[i] * dim;
      for (int64_t j = 0; j < dim; ++j)
        x[i * dim + j] = centre[j] + static_cast<float>(o.noise * rng.normal());
    }
    info.num_classes = o.num_classes;
    info.description = "synthetic classification (seed " + std::to_string(o.seed) + ")";
  } else {
    const std::vector<float> w = synthetic_regression_weights(o);
    targets.resize(size_t(o.size * o.target_dim));
    for (int64_t i = 0; i < o.size; ++i) {
      float* row = x.data() + i * dim;
      for (int64_t j = 0; j < dim; ++j) row[j] = static_cast<float>(rng.normal());
      for (int64_t t = 0; t < o.target_dim; ++t) {
        double y = 0.0;
        for (int64_t j = 0; j < dim; ++j) y += double(w[t * dim + j]) * row[j];
        targets[i * o.target_dim + t] = static_cast<float>(y + o.noise * rng.normal());
      }
    }
    info.target_dim = o.target_dim;
    info.description = "synthetic regression (seed " + std::to_string(o.seed) + ")";
  }
  return std::make_shared<MemorySource>(std::move(info), make_array(std::move(shape), x),
                                        std::move(labels), std::move(targets), 1.0f);
}

}  // namespace lockstep
