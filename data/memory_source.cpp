// MemorySource: gathers arbitrary rows of an in-memory split into float
// buffers (the hot path of the input pipeline; no allocation), hints rows to
// the caches a step before they are read, plus the shared label/finite checks.
#include "data/memory_source.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace lockstep {
namespace {

// A prefetch the optimiser keeps: GCC 12 deletes a loop whose only statements
// are __builtin_prefetch/_mm_prefetch (it treats them as free of side effects).
inline void prefetch_line(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht0 (%0)" : : "r"(p));
#else
  __builtin_prefetch(p);
#endif
}

// The same into the outer caches only (prefetcht2): for rows wanted a whole
// step later. On the Zen 4 VM a step-ahead hint with prefetcht0 left the later
// read about as slow as a cold one; with prefetcht2 it ran faster
// (bench/kernels_bench, "gather uint8, hinted").
inline void prefetch_line_outer(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht2 (%0)" : : "r"(p));
#else
  __builtin_prefetch(p, 0, 1);
#endif
}

// Applies `fetch` to every 64-byte line that [p, p + bytes) touches, once (a
// row that starts mid-line touches one line more than its length suggests).
template <typename Fetch>
inline void each_line(const void* p, size_t bytes, Fetch fetch) {
  if (bytes == 0) return;
  const uintptr_t first = reinterpret_cast<uintptr_t>(p) & ~uintptr_t(63);
  const uintptr_t last = (reinterpret_cast<uintptr_t>(p) + bytes - 1) & ~uintptr_t(63);
  for (uintptr_t line = first; line <= last; line += 64) fetch(reinterpret_cast<const void*>(line));
}

}  // namespace

void check_labels(const int64_t* labels, int64_t n, int64_t num_classes, const std::string& where) {
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes)
      throw DataError(where + ": label " + std::to_string(labels[i]) + " at row " +
                      std::to_string(i) + " is outside [0, " + std::to_string(num_classes) +
                      "); fix the labels or the num_classes attribute");
  }
}

void check_finite(const float* values, int64_t rows, int64_t row_elements, const std::string& where,
                  const int64_t* row_ids) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = values + r * row_elements;
    for (int64_t i = 0; i < row_elements; ++i) {
      if (!std::isfinite(row[i]))
        throw DataError(where + ": row " + std::to_string(row_ids != nullptr ? row_ids[r] : r) + " holds a non-finite feature (" +
                        std::to_string(row[i]) + ") at element " + std::to_string(i));
    }
  }
}

void convert_row(const unsigned char* in, ElementType type, int64_t n, float scale, float* out) {
  if (type == ElementType::kUInt8) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]) * scale;
  } else {
    const float* values = reinterpret_cast<const float*>(in);
    for (int64_t i = 0; i < n; ++i) out[i] = values[i] * scale;
  }
}

MemorySource::MemorySource(DatasetInfo info, HostArray x, std::vector<int32_t> labels,
                           std::vector<float> targets, float scale)
    : info_(std::move(info)), x_(std::move(x)), labels_(std::move(labels)),
      targets_(std::move(targets)), scale_(scale) {
  const std::string& where = info_.description;
  if (x_.type != ElementType::kUInt8 && x_.type != ElementType::kFloat32)
    throw DataError(where + ": features of type " + element_type_name(x_.type) +
                    " are not supported (use uint8 or float32)");
  if (x_.shape.size() < 2)
    throw DataError(where + ": features must be shaped (N, feature dims...), got " +
                    shape_string(x_.shape));
  if (x_.rows() <= 0) throw DataError(where + ": the split holds zero rows");
  if (static_cast<int64_t>(x_.bytes.size()) != x_.elements() * int64_t(element_size(x_.type)))
    throw DataError(where + ": feature buffer size does not match shape " + shape_string(x_.shape));
  if (!std::isfinite(scale_)) throw DataError(where + ": the feature scale is not finite");
  info_.size = x_.rows();
  info_.feature_shape.assign(x_.shape.begin() + 1, x_.shape.end());
  info_.feature_dim = x_.row_elements();
  row_bytes_ = size_t(info_.feature_dim) * element_size(x_.type);
  if (info_.num_classes > 0) {
    if (static_cast<int64_t>(labels_.size()) != info_.size)
      throw DataError(where + ": " + std::to_string(labels_.size()) + " labels for " +
                      std::to_string(info_.size) + " rows of features");
    std::vector<int64_t> wide(labels_.begin(), labels_.end());
    check_labels(wide.data(), info_.size, info_.num_classes, where);
    info_.target_dim = 0;
  } else if (info_.target_dim > 0) {
    if (static_cast<int64_t>(targets_.size()) != info_.size * info_.target_dim)
      throw DataError(where + ": " + std::to_string(targets_.size()) + " target values for " +
                      std::to_string(info_.size) + " rows x target_dim " + std::to_string(info_.target_dim));
    check_finite(targets_.data(), info_.size, info_.target_dim, where + " (targets)");
  } else {
    throw DataError(where + ": neither num_classes nor target_dim is set");
  }
  if (x_.type == ElementType::kFloat32)
    check_finite(x_.as<float>(), info_.size, info_.feature_dim, where);
}

void MemorySource::prefetch(const int64_t* rows, int64_t n) const {
  const unsigned char* base = x_.bytes.data();
  const size_t target_bytes = size_t(info_.target_dim) * sizeof(float);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = rows[i];
    if (row < 0 || row >= info_.size) continue;
    each_line(base + size_t(row) * row_bytes_, row_bytes_, prefetch_line_outer);
    if (info_.num_classes > 0) prefetch_line_outer(labels_.data() + row);  // size checked: one per row
    if (info_.target_dim > 0) each_line(targets_.data() + row * info_.target_dim, target_bytes, prefetch_line_outer);
  }
}

void MemorySource::read(const int64_t* rows, int64_t n, float* x, int32_t* labels,
                        float* targets) const {
  const int64_t dim = info_.feature_dim;
  // Rows sit at random places in a split far larger than the caches: ask for
  // the row kPrefetchRows ahead while converting this one (halves a 64-row
  // uint8 gather of Fashion-MNIST; float rows stay bandwidth-bound).
  constexpr int64_t kPrefetchRows = 2;
  const unsigned char* base = x_.bytes.data();
  const size_t row_bytes = row_bytes_;
  const int64_t size = info_.size;
  auto prefetch_row = [base, row_bytes, rows, n](int64_t i) {  // rows checked below, first
    if (i >= n) return;
    each_line(base + size_t(rows[i]) * row_bytes, row_bytes, prefetch_line);
  };
  for (int64_t i = 0; i < n; ++i) {
    if (rows[i] < 0 || rows[i] >= size)
      throw DataError(info_.description + ": row " + std::to_string(rows[i]) + " is outside [0, " +
                      std::to_string(size) + ")");
  }
  for (int64_t i = 0; i < kPrefetchRows; ++i) prefetch_row(i);
  // The labels first, in a loop of their own: they too sit at random in an array
  // larger than the inner caches, and these loads, independent of each other,
  // overlap; made one per row between conversions, each waited alone (45% of
  // the read's time in a profile of the shipped job at 1 replica).
  if (labels != nullptr && !labels_.empty()) {
    for (int64_t i = 0; i < n; ++i) labels[i] = labels_[size_t(rows[i])];
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = rows[i];
    prefetch_row(i + kPrefetchRows);
    convert_row(base + size_t(row) * row_bytes, x_.type, dim, scale_, x + i * dim);
    if (targets != nullptr && !targets_.empty()) {
      const float* t = targets_.data() + row * info_.target_dim;
      std::copy(t, t + info_.target_dim, targets + i * info_.target_dim);
    }
  }
}

}  // namespace lockstep
