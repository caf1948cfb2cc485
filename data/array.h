// A typed, shaped block of host memory: what readers load from files (IDX,
// HDF5) and writers store, before a source maps it to float features. Kept raw
// (uint8 pixels stay uint8) so a cached split costs its file size, not 4x.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "data/aligned.h"

namespace lockstep {

// Element types a dataset file may hold. (Named apart from comm's DType, which
// describes collective buffers.)
enum class ElementType { kUInt8, kInt32, kInt64, kFloat32 };

size_t element_size(ElementType type);
const char* element_type_name(ElementType type);

template <typename T> constexpr ElementType element_type_of() {
  if constexpr (std::is_same_v<T, uint8_t>) return ElementType::kUInt8;
  else if constexpr (std::is_same_v<T, int32_t>) return ElementType::kInt32;
  else if constexpr (std::is_same_v<T, int64_t>) return ElementType::kInt64;
  else {
    static_assert(std::is_same_v<T, float>, "HostArray holds uint8, int32, int64 or float");
    return ElementType::kFloat32;
  }
}

// "60000x28x28"
std::string shape_string(const std::vector<int64_t>& shape);
// Product of the dimensions (1 for an empty shape).
int64_t shape_product(const std::vector<int64_t>& shape);

struct HostArray {
  ElementType type = ElementType::kFloat32;
  std::vector<int64_t> shape;         // (rows, per-row dims...)
  LargePageVector<unsigned char> bytes;  // row-major, native byte order (read at random rows)

  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t elements() const { return shape_product(shape); }
  // Elements in one row: the product of every dimension after the first.
  int64_t row_elements() const {
    return shape.size() <= 1 ? 1 : shape_product(std::vector<int64_t>(shape.begin() + 1, shape.end()));
  }
  template <typename T> const T* as() const { return reinterpret_cast<const T*>(bytes.data()); }
  template <typename T> T* as() { return reinterpret_cast<T*>(bytes.data()); }
};

// Copies `values` into a new array of the given shape (sizes must agree).
template <typename T>
HostArray make_array(std::vector<int64_t> shape, const std::vector<T>& values) {
  HostArray array;
  array.type = element_type_of<T>();
  array.shape = std::move(shape);
  array.bytes.resize(values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(array.bytes.data(), values.data(), array.bytes.size());
  return array;
}

}  // namespace lockstep
