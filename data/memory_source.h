// The in-memory Source every file format ends in once loaded (IDX, cached HDF5
// splits, tensors, synthetic data), and the validation every source shares:
// label range and finite features, reported with the source's name.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/array.h"
#include "data/input.h"

namespace lockstep {

// Throws DataError naming `where` and the first offending row when a label is
// outside [0, num_classes).
void check_labels(const int64_t* labels, int64_t n, int64_t num_classes, const std::string& where);
// Throws DataError naming `where` and the first row holding a NaN or Inf (its
// index, or row_ids[index] when the rows were gathered from elsewhere).
void check_finite(const float* values, int64_t rows, int64_t row_elements, const std::string& where,
                  const int64_t* row_ids = nullptr);
// Converts one row of raw features to floats: out[i] = scale * in[i].
void convert_row(const unsigned char* in, ElementType type, int64_t n, float scale, float* out);

// Features kept raw (uint8 or float32) and mapped to float * scale on read, so
// a uint8 image set costs its own size in memory.
class MemorySource : public Source {
 public:
  // x: (size, feature dims...) uint8 or float32. Classification: labels (size)
  // in [0, info.num_classes). Regression: targets (size, info.target_dim).
  // info.size/feature_shape/feature_dim are filled from x; the rest comes from
  // `info`. Validates everything; DataError names info.description.
  MemorySource(DatasetInfo info, HostArray x, std::vector<int32_t> labels,
               std::vector<float> targets, float scale);

  const DatasetInfo& info() const override { return info_; }
  bool concurrent_reads() const override { return true; }  // reads touch nothing mutable
  void read(const int64_t* rows, int64_t n, float* x, int32_t* labels,
            float* targets) const override;
  // Every line of the rows' features, labels and targets.
  void prefetch(const int64_t* rows, int64_t n) const override;

 private:
  DatasetInfo info_;
  HostArray x_;
  std::vector<int32_t> labels_;
  std::vector<float> targets_;
  float scale_ = 1.0f;
  size_t row_bytes_ = 0;
};

}  // namespace lockstep
