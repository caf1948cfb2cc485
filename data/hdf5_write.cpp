// Writing the lockstep HDF5 layout: validate every split first, write into a
// temp file in the target's folder, rename into place. Also the IDX -> HDF5
// conversion behind `lockstep convert idx`.
#include <algorithm>
#include <filesystem>
#include <set>
#include <tuple>
#include <utility>

#include "data/hdf5_dataset.h"
#include "data/hdf5_util.h"
#include "data/memory_source.h"
#include "data/sources.h"

namespace lockstep {

namespace {

// Small chunks: a per-row read (a split too big to cache) costs about one chunk
// per row read, while a whole-split read does not care.
constexpr int64_t kChunkBytes = int64_t(64) << 10;

std::vector<int64_t> labels_as_int64(const HostArray& y) {
  std::vector<int64_t> out(size_t(y.rows()));
  for (int64_t i = 0; i < y.rows(); ++i) {
    switch (y.type) {
      case ElementType::kUInt8: out[size_t(i)] = y.as<uint8_t>()[i]; break;
      case ElementType::kInt32: out[size_t(i)] = y.as<int32_t>()[i]; break;
      case ElementType::kInt64: out[size_t(i)] = y.as<int64_t>()[i]; break;
      case ElementType::kFloat32: break;
    }
  }
  return out;
}

void check_array_bytes(const HostArray& a, const std::string& where) {
  if (int64_t(a.bytes.size()) != a.elements() * int64_t(element_size(a.type)))
    throw DataError(where + ": holds " + std::to_string(a.bytes.size()) + " bytes but shape " +
                    shape_string(a.shape) + " of " + element_type_name(a.type) + " needs " +
                    std::to_string(a.elements() * int64_t(element_size(a.type))));
}

void check_split(const DatasetSplit& s, int64_t num_classes, const std::string& where) {
  if (s.x.type != ElementType::kUInt8 && s.x.type != ElementType::kFloat32)
    throw DataError(where + "/x: dtype " + element_type_name(s.x.type) + " is not supported (uint8 or float32)");
  if (s.x.shape.size() < 2)
    throw DataError(where + "/x: shape " + shape_string(s.x.shape) + " must be (N, feature dims...)");
  if (s.x.rows() <= 0) throw DataError(where + "/x: zero rows");
  check_array_bytes(s.x, where + "/x");
  check_array_bytes(s.y, where + "/y");
  if (s.y.shape.empty() || s.y.rows() != s.x.rows())
    throw DataError(where + ": x has " + std::to_string(s.x.rows()) + " rows but y has shape " + shape_string(s.y.shape));
  if (s.x.type == ElementType::kFloat32)
    check_finite(s.x.as<float>(), s.x.rows(), s.x.row_elements(), where + "/x");
  if (num_classes > 0) {
    if (s.y.type == ElementType::kFloat32 || s.y.shape.size() != 1)
      throw DataError(where + "/y: classification labels must be (N) uint8/int32/int64, got " +
                      element_type_name(s.y.type) + " " + shape_string(s.y.shape));
    std::vector<int64_t> labels = labels_as_int64(s.y);
    check_labels(labels.data(), s.y.rows(), num_classes, where + "/y");
  } else {
    if (s.y.type != ElementType::kFloat32 || s.y.shape.size() > 2)
      throw DataError(where + "/y: regression targets must be (N, target_dim) float32, got " +
                      element_type_name(s.y.type) + " " + shape_string(s.y.shape) +
                      " (pass num_classes > 0 for integer labels)");
    check_finite(s.y.as<float>(), s.y.rows(), s.y.row_elements(), where + "/y");
  }
}

void check_splits(const std::string& path, const std::vector<DatasetSplit>& splits, int64_t num_classes) {
  if (splits.empty()) throw DataError(path + ": no splits to write");
  std::set<std::string> names;
  for (const DatasetSplit& s : splits) {
    if (s.name.empty() || s.name.find('/') != std::string::npos || s.name == ".")
      throw DataError(path + ": bad split name '" + s.name + "'");
    if (!names.insert(s.name).second) throw DataError(path + ": split '" + s.name + "' given twice");
    check_split(s, num_classes, path + ":/" + s.name);
  }
}

// The HDF5 types of an element type: in the file (little-endian) and in memory.
std::pair<hid_t, hid_t> h5_types(ElementType type) {
  switch (type) {
    case ElementType::kUInt8: return {H5T_STD_U8LE, H5T_NATIVE_UINT8};
    case ElementType::kInt32: return {H5T_STD_I32LE, H5T_NATIVE_INT32};
    case ElementType::kInt64: return {H5T_STD_I64LE, H5T_NATIVE_INT64};
    case ElementType::kFloat32: break;
  }
  return {H5T_IEEE_F32LE, H5T_NATIVE_FLOAT};
}

// One dataset, chunked along N so a batch of rows touches few chunks.
void write_array(hid_t group, const char* name, const HostArray& a, const Hdf5WriteOptions& options,
                 const std::string& where) {
  const auto [file_type, memory_type] = h5_types(a.type);
  std::vector<hsize_t> dims(a.shape.begin(), a.shape.end());
  const int64_t row_bytes = a.row_elements() * int64_t(element_size(a.type));
  int64_t chunk_rows = options.chunk_rows > 0 ? options.chunk_rows : kChunkBytes / std::max<int64_t>(row_bytes, 1);
  chunk_rows = std::clamp<int64_t>(chunk_rows, 1, a.rows());
  std::vector<hsize_t> chunk = dims;
  chunk[0] = hsize_t(chunk_rows);
  H5Handle space = h5_check_id(H5Screate_simple(int(dims.size()), dims.data(), nullptr), where);
  H5Handle dcpl = h5_check_id(H5Pcreate(H5P_DATASET_CREATE), where);
  h5_check_status(H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data()), where + ": bad chunk shape");
  if (options.deflate_level > 0)
    h5_check_status(H5Pset_deflate(dcpl.get(), unsigned(std::min(options.deflate_level, 9))), where);
  H5Handle dataset = h5_check_id(H5Dcreate2(group, name, file_type, space.get(), H5P_DEFAULT,
                                            dcpl.get(), H5P_DEFAULT),
                                 where + ": cannot create dataset");
  h5_check_status(H5Dwrite(dataset.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.bytes.data()),
                  where + ": write failed (disk full?)");
}

void write_file(const std::string& temp, const std::string& path, const std::vector<DatasetSplit>& splits,
                int64_t num_classes, const Hdf5WriteOptions& options) {
  Hdf5Lock lock(hdf5_mutex());
  H5Handle file = h5_check_id(H5Fcreate(temp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
                              path + ": cannot create " + temp);
  h5_write_attr_string(file.get(), "format", "lockstep-dataset", path);
  h5_write_attr_int(file.get(), "version", 1, path);
  if (num_classes > 0) h5_write_attr_int(file.get(), "num_classes", num_classes, path);
  for (const DatasetSplit& s : splits) {
    const std::string where = path + ":/" + s.name;
    H5Handle group = h5_check_id(H5Gcreate2(file.get(), s.name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                                 where + ": cannot create group");
    write_array(group.get(), "x", s.x, options, where + "/x");
    write_array(group.get(), "y", s.y, options, where + "/y");
  }
  h5_check_status(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), path + ": flush failed");
}

}  // namespace

void write_hdf5_dataset(const std::string& path, const std::vector<DatasetSplit>& splits,
                        int64_t num_classes, const Hdf5WriteOptions& options) {
  check_splits(path, splits, num_classes);
  AtomicOutput output(path, options.overwrite);
  try {
    write_file(output.temp_path(), path, splits, num_classes, options);
  } catch (const DataError& e) {  // the splits were checked: the write itself failed
    throw IoError(e.what());
  }
  output.commit();
}

std::string ConvertSummary::to_string() const {
  return "wrote " + path + ": train " + std::to_string(train_rows) + " and test " +
         std::to_string(test_rows) + " examples of " + shape_string(feature_shape) + ", " +
         std::to_string(num_classes) + " classes, " + std::to_string(file_bytes) + " bytes";
}

ConvertSummary convert_idx_to_hdf5(const std::string& train_images, const std::string& train_labels,
                                   const std::string& test_images, const std::string& test_labels,
                                   const std::string& out_path, const Hdf5WriteOptions& options) {
  // Refuse early, before reading anything: a folder, a missing folder, an existing file.
  AtomicOutput::check(out_path, options.overwrite, "data.h5");
  std::vector<DatasetSplit> splits{{"train", {}, {}}, {"test", {}, {}}};
  std::tie(splits[0].x, splits[0].y) = read_idx_pair(train_images, train_labels);
  std::tie(splits[1].x, splits[1].y) = read_idx_pair(test_images, test_labels);
  const auto per_row = [](const HostArray& a) { return std::vector<int64_t>(a.shape.begin() + 1, a.shape.end()); };
  if (per_row(splits[0].x) != per_row(splits[1].x))
    throw DataError(test_images + ": images are " + shape_string(per_row(splits[1].x)) + " but " + train_images +
                    " has " + shape_string(per_row(splits[0].x)));
  int64_t num_classes = 0;
  for (const DatasetSplit& s : splits)
    for (unsigned char label : s.y.bytes) num_classes = std::max<int64_t>(num_classes, int64_t(label) + 1);
  write_hdf5_dataset(out_path, splits, num_classes, options);
  ConvertSummary summary{.path = out_path, .train_rows = splits[0].x.rows(), .test_rows = splits[1].x.rows(),
                         .feature_shape = per_row(splits[0].x), .num_classes = num_classes};
  std::error_code ec;
  summary.file_bytes = int64_t(std::filesystem::file_size(out_path, ec));
  return summary;
}

}  // namespace lockstep
