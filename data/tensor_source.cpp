// Tensors already in memory as a Source (tests, small experiments, data built
// by another program): checked like a file, then served by MemorySource.
#include "data/memory_source.h"
#include "data/sources.h"

namespace lockstep {

std::shared_ptr<Source> make_tensor_source(TensorSet data, float scale) {
  const std::string& where = data.description;
  if (data.feature_shape.empty()) throw DataError(where + ": feature_shape is empty");
  const int64_t dim = shape_product(data.feature_shape);
  if (dim <= 0) throw DataError(where + ": feature_shape " + shape_string(data.feature_shape) + " is empty");
  if (data.x.size() % size_t(dim) != 0)
    throw DataError(where + ": " + std::to_string(data.x.size()) + " feature values are not a whole number of " +
                    shape_string(data.feature_shape) + " rows");
  if ((data.num_classes > 0) == (data.target_dim > 0))
    throw DataError(where + ": set exactly one of num_classes (classification) or target_dim (regression)");
  std::vector<int64_t> shape = {int64_t(data.x.size()) / dim};
  shape.insert(shape.end(), data.feature_shape.begin(), data.feature_shape.end());
  DatasetInfo info;
  info.num_classes = data.num_classes;
  info.target_dim = data.target_dim;
  info.description = where;
  return std::make_shared<MemorySource>(std::move(info), make_array(std::move(shape), data.x),
                                        std::move(data.labels), std::move(data.targets), scale);
}

}  // namespace lockstep
