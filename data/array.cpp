// Element-type names and sizes, and shape formatting for HostArray and for
// error messages.
#include "data/array.h"

namespace lockstep {

size_t element_size(ElementType type) {
  switch (type) {
    case ElementType::kUInt8: return 1;
    case ElementType::kInt32: return 4;
    case ElementType::kInt64: return 8;
    case ElementType::kFloat32: return 4;
  }
  return 0;
}

const char* element_type_name(ElementType type) {
  switch (type) {
    case ElementType::kUInt8: return "uint8";
    case ElementType::kInt32: return "int32";
    case ElementType::kInt64: return "int64";
    case ElementType::kFloat32: return "float32";
  }
  return "?";
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string text;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += "x";
    text += std::to_string(shape[i]);
  }
  return text.empty() ? "scalar" : text;
}

int64_t shape_product(const std::vector<int64_t>& shape) {
  int64_t product = 1;
  for (int64_t d : shape) product *= d;
  return product;
}

}  // namespace lockstep
