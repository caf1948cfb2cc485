// Sources besides HDF5 (see data/hdf5_dataset.h): MNIST-style IDX files, tensors
// already in memory, and seeded synthetic data with a learnable structure, which
// tests and benchmarks use when no file is at hand.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/array.h"
#include "data/input.h"

namespace lockstep {

// ---- IDX (the MNIST format) ----
// Reads one IDX file, raw or gzip-compressed (detected by its magic bytes, not
// its name). Supports element type 0x08 (unsigned byte). DataError on a missing
// file, gzip errors, a bad magic number, or dimensions that disagree with the
// data size.
HostArray read_idx(const std::string& path);
// An images (N, rows, cols...) + labels (N) pair, checked to match: DataError
// naming the file for a wrong rank, different counts or no images.
std::pair<HostArray, HostArray> read_idx_pair(const std::string& images, const std::string& labels);

// Opens an images (idx3-ubyte: N x rows x cols) + labels (idx1-ubyte: N) pair as
// a classification source; num_classes = largest label + 1. `scale` multiplies
// every pixel (1/255 maps them to [0, 1]).
std::shared_ptr<Source> open_idx(const std::string& images, const std::string& labels,
                                 float scale = 1.0f);

// ---- tensors in memory ----
struct TensorSet {
  std::vector<int64_t> feature_shape;  // per example, e.g. {28, 28}
  std::vector<float> x;                // (size, feature_dim)
  std::vector<int32_t> labels;         // (size), classification
  int64_t num_classes = 0;             // > 0 for classification
  std::vector<float> targets;          // (size, target_dim), regression
  int64_t target_dim = 0;              // > 0 for regression
  std::string description = "tensors";
};
// Validates (sizes, label range, finite values) and takes ownership.
std::shared_ptr<Source> make_tensor_source(TensorSet data, float scale = 1.0f);

// ---- synthetic, seeded ----
enum class SyntheticTask { kClassification, kRegression };

struct SyntheticOptions {
  SyntheticTask task = SyntheticTask::kClassification;
  int64_t size = 1024;
  std::vector<int64_t> feature_shape = {16};
  int64_t num_classes = 4;   // classification: Gaussian clusters, one per class
  int64_t target_dim = 1;    // regression: y = W x + noise
  float separation = 3.0f;   // class centres ~ N(0, separation^2) per coordinate
  float noise = 1.0f;        // cluster stddev (classification) / noise stddev (regression)
  uint64_t seed = 0;
};

// Classification: row i has label drawn uniformly and x = centre[label] +
// noise * N(0, I). Regression: x ~ N(0, I), y = W x + noise * N(0, I), with W's
// entries ~ N(0, 1/feature_dim). Materialised once (size x feature_dim floats),
// identical for identical options.
std::shared_ptr<Source> make_synthetic(const SyntheticOptions& options);

// The structure behind make_synthetic, for checking what a model learns:
// class centres (num_classes, feature_dim) and regression weights (target_dim,
// feature_dim), both row-major.
std::vector<float> synthetic_class_centres(const SyntheticOptions& options);
std::vector<float> synthetic_regression_weights(const SyntheticOptions& options);

}  // namespace lockstep
