// Reading the lockstep HDF5 layout: open and validate a split (every check
// names file:/split/dataset), then serve it from memory (small splits) or by
// hyperslab selections of just the requested rows (large ones).
#include <algorithm>
#include <filesystem>

#include "data/hdf5_dataset.h"
#include "data/hdf5_util.h"
#include "data/memory_source.h"

namespace lockstep {

namespace {

constexpr const char* kFormatName = "lockstep-dataset";
constexpr int64_t kFormatVersion = 1;

// One open split and everything learnt about it while validating.
struct OpenSplit {
  std::string path, where;  // where = "path:/split"
  H5Handle file, x, y;
  ElementType x_type = ElementType::kUInt8;
  std::vector<int64_t> x_shape, y_shape;
  bool classification = false;
  int64_t num_classes = 0;
};

H5Handle open_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw DataError(path + ": no such file (check the path; IDX files can be converted with `lockstep convert idx`)");
  if (std::filesystem::is_directory(path, ec)) throw DataError(path + ": is a folder, not an HDF5 dataset file");
  if (!std::filesystem::is_regular_file(path, ec)) throw DataError(path + ": not a regular file");
  if (!has_hdf5_signature(path))
    throw DataError(path + ": not an HDF5 file (no HDF5 signature); expected the lockstep dataset layout (data/README.md)");
  return h5_check_id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT),
                     path + ": cannot open as HDF5 (truncated or corrupt file?)");
}

herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->push_back(std::string("/") + name);
  return 0;
}

std::string list_splits(hid_t file) {
  std::vector<std::string> names;
  H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_name, &names);
  H5Eclear2(H5E_DEFAULT);
  std::string text;
  for (const std::string& n : names) text += (text.empty() ? "" : ", ") + n;
  return text.empty() ? "nothing" : text;
}

std::vector<int64_t> dataset_shape(hid_t dataset, const std::string& where) {
  H5Handle space = h5_check_id(H5Dget_space(dataset), where + ": cannot read its dataspace");
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) throw DataError(where + ": cannot read its rank");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

std::string type_text(hid_t type) {
  const size_t bits = H5Tget_size(type) * 8;
  switch (H5Tget_class(type)) {
    case H5T_INTEGER:
      return (H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + std::to_string(bits);
    case H5T_FLOAT: return "float" + std::to_string(bits);
    case H5T_STRING: return "string";
    default: return "a compound/other type";
  }
}

// Bytes a dataset declares (every dimension times the element size); a damaged
// header can declare dimensions whose product overflows.
int64_t declared_bytes(const std::vector<int64_t>& shape, size_t element, const std::string& where) {
  int64_t bytes = int64_t(element);
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(bytes, d, &bytes))
      throw DataError(where + ": impossible shape " + shape_string(shape) + " (its size overflows)");
  return bytes;
}

// The file must hold the data a dataset declares: a few KiB of file must not
// make lockstep allocate and read gigabytes. Sparse datasets (chunks never
// written, read back as fill values) and cut files fail here. Compression
// bounds how much declared data a stored byte can carry: deflate at most
// about 1032:1, shuffle and checksums not at all; other filters are not bounded.
void check_storage(hid_t dataset, const std::vector<int64_t>& shape, size_t element, const std::string& where) {
  const int64_t declared = declared_bytes(shape, element, where);
  H5Handle create = h5_check_id(H5Dget_create_plist(dataset), where + ": cannot read its creation properties");
  const int filters = H5Pget_nfilters(create.get());
  double ratio = 1.0;
  for (int i = 0; i < filters; ++i) {
    unsigned flags = 0;
    size_t values = 0;
    const H5Z_filter_t id = H5Pget_filter2(create.get(), unsigned(i), &flags, &values, nullptr, 0, nullptr, nullptr);
    if (id == H5Z_FILTER_DEFLATE || id == H5Z_FILTER_SZIP) ratio = 1100.0;
    else if (id != H5Z_FILTER_SHUFFLE && id != H5Z_FILTER_FLETCHER32) return;
  }
  H5Eclear2(H5E_DEFAULT);
  const double stored = double(H5Dget_storage_size(dataset));
  if (stored * ratio < double(declared))
    throw DataError(where + ": declares shape " + shape_string(shape) + " (" + std::to_string(declared) +
                    " bytes) but the file stores only " + std::to_string(int64_t(stored)) +
                    " bytes of it (truncated file, or chunks never written)");
}

H5Handle open_member(hid_t group, const std::string& name, const std::string& where, hid_t access) {
  if (H5Lexists(group, name.c_str(), H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw DataError(where + "/" + name + " is missing (each split needs datasets x and y)");
  }
  return h5_check_id(H5Dopen2(group, name.c_str(), access),
                     where + "/" + name + ": cannot open dataset (corrupt file?)");
}

void inspect_x(OpenSplit& s) {
  const std::string where = s.where + "/x";
  H5Handle type = h5_check_id(H5Dget_type(s.x.get()), where + ": cannot read its type");
  const H5T_class_t cls = H5Tget_class(type.get());
  const size_t size = H5Tget_size(type.get());
  if (cls == H5T_INTEGER && size == 1 && H5Tget_sign(type.get()) == H5T_SGN_NONE)
    s.x_type = ElementType::kUInt8;
  else if (cls == H5T_FLOAT && size == 4)
    s.x_type = ElementType::kFloat32;
  else
    throw DataError(where + ": unsupported dtype " + type_text(type.get()) + " (x must be uint8 or float32)");
  s.x_shape = dataset_shape(s.x.get(), where);
  if (s.x_shape.size() < 2)
    throw DataError(where + ": unsupported rank " + std::to_string(s.x_shape.size()) + " (shape " +
                    shape_string(s.x_shape) + "); x must be (N, feature dims...)");
  if (s.x_shape[0] == 0) throw DataError(where + ": zero rows");
  check_storage(s.x.get(), s.x_shape, size, where);
}

void inspect_y(OpenSplit& s) {
  const std::string where = s.where + "/y";
  H5Handle type = h5_check_id(H5Dget_type(s.y.get()), where + ": cannot read its type");
  const H5T_class_t cls = H5Tget_class(type.get());
  s.y_shape = dataset_shape(s.y.get(), where);
  if (s.classification) {
    if (cls != H5T_INTEGER || H5Tget_size(type.get()) > 8)
      throw DataError(where + ": labels have dtype " + type_text(type.get()) +
                      " but the file declares num_classes; labels must be uint8, int32 or int64");
    if (s.y_shape.size() != 1)
      throw DataError(where + ": unsupported rank " + std::to_string(s.y_shape.size()) +
                      " for labels (shape " + shape_string(s.y_shape) + "); expected (N)");
  } else {
    if (cls == H5T_INTEGER)
      throw DataError(where + ": integer labels need the root attribute num_classes (classification)");
    if (cls != H5T_FLOAT || H5Tget_size(type.get()) != 4)
      throw DataError(where + ": unsupported dtype " + type_text(type.get()) + " (regression targets must be float32)");
    if (s.y_shape.size() != 1 && s.y_shape.size() != 2)
      throw DataError(where + ": unsupported rank " + std::to_string(s.y_shape.size()) +
                      " for targets (shape " + shape_string(s.y_shape) + "); expected (N, target_dim)");
  }
  if (s.y_shape[0] != s.x_shape[0])
    throw DataError(s.where + ": x has " + std::to_string(s.x_shape[0]) + " rows but y has " +
                    std::to_string(s.y_shape[0]));
  check_storage(s.y.get(), s.y_shape, H5Tget_size(type.get()), where);
}

void check_root_attributes(OpenSplit& s) {
  const hid_t root = s.file.get();
  if (auto format = h5_read_attr_string(root, "format", s.path); format && *format != kFormatName)
    throw DataError(s.path + ": attribute format is '" + *format + "', expected '" + kFormatName + "'");
  if (auto version = h5_read_attr_int(root, "version", s.path); version && *version > kFormatVersion)
    throw DataError(s.path + ": dataset layout version " + std::to_string(*version) +
                    " is newer than this lockstep understands (" + std::to_string(kFormatVersion) + ")");
  if (auto classes = h5_read_attr_int(root, "num_classes", s.path)) {
    if (*classes < 1) throw DataError(s.path + ": attribute num_classes must be >= 1, got " + std::to_string(*classes));
    // The output layer has one unit per class: beyond this no model fits in memory.
    constexpr int64_t kMaxClasses = 1000000;
    if (*classes > kMaxClasses) {
      throw DataError(s.path + ": attribute num_classes is " + std::to_string(*classes) + ", more than " +
                      std::to_string(kMaxClasses) + " (one output unit per class); set it to the largest label + 1");
    }
    s.classification = true;
    s.num_classes = *classes;
  }
}

OpenSplit open_split(const std::string& path, const std::string& split, int64_t chunk_cache_bytes) {
  Hdf5Lock lock(hdf5_mutex());
  OpenSplit s;
  s.path = path;
  s.where = path + ":/" + split;
  s.file = open_file(path);
  check_root_attributes(s);
  if (split.empty() || split.find('/') != std::string::npos || H5Lexists(s.file.get(), split.c_str(), H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw DataError(path + ": no split '/" + split + "' (the file has " + list_splits(s.file.get()) + ")");
  }
  H5Handle group = h5_check_id(H5Gopen2(s.file.get(), split.c_str(), H5P_DEFAULT),
                               s.where + ": not a group (corrupt file?)");
  H5Handle access = h5_check_id(H5Pcreate(H5P_DATASET_ACCESS), s.where);
  h5_check_status(H5Pset_chunk_cache(access.get(), 100003, size_t(std::max<int64_t>(chunk_cache_bytes, 0)), 1.0),
                  s.where + ": bad chunk cache size");
  s.x = open_member(group.get(), "x", s.where, access.get());
  s.y = open_member(group.get(), "y", s.where, H5P_DEFAULT);
  inspect_x(s);
  inspect_y(s);
  return s;
}

std::string read_failure(const std::string& where) {
  return where + ": read failed (truncated or corrupt file?)";
}

std::vector<int64_t> read_labels(const OpenSplit& s) {
  Hdf5Lock lock(hdf5_mutex());
  std::vector<int64_t> labels(size_t(s.y_shape[0]));
  h5_check_status(H5Dread(s.y.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels.data()),
                  read_failure(s.where + "/y"));
  check_labels(labels.data(), int64_t(labels.size()), s.num_classes, s.where + "/y");
  return labels;
}

std::vector<float> read_targets(const OpenSplit& s) {
  Hdf5Lock lock(hdf5_mutex());
  std::vector<float> targets(size_t(shape_product(s.y_shape)));
  h5_check_status(H5Dread(s.y.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, targets.data()),
                  read_failure(s.where + "/y"));
  const int64_t dim = s.y_shape.size() == 2 ? s.y_shape[1] : 1;
  check_finite(targets.data(), s.y_shape[0], dim, s.where + "/y");
  return targets;
}

hid_t native_type(ElementType type) {
  return type == ElementType::kUInt8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
}

HostArray read_all_x(const OpenSplit& s) {
  Hdf5Lock lock(hdf5_mutex());
  HostArray x;
  x.type = s.x_type;
  x.shape = s.x_shape;
  x.bytes.resize(size_t(x.elements()) * element_size(x.type));
  h5_check_status(H5Dread(s.x.get(), native_type(s.x_type), H5S_ALL, H5S_ALL, H5P_DEFAULT, x.bytes.data()),
                  read_failure(s.where + "/x"));
  return x;
}

DatasetInfo split_info(const OpenSplit& s) {
  DatasetInfo info;
  info.size = s.x_shape[0];
  info.feature_shape.assign(s.x_shape.begin() + 1, s.x_shape.end());
  info.feature_dim = shape_product(info.feature_shape);
  info.num_classes = s.num_classes;
  if (!s.classification) info.target_dim = s.y_shape.size() == 2 ? s.y_shape[1] : 1;
  info.description = s.where;
  return info;
}

}  // namespace

DatasetSplit load_hdf5_split(const std::string& path, const std::string& split, int64_t* num_classes) {
  hdf5_trial_read(path, [&] { open_split(path, split, 0); });
  OpenSplit s = open_split(path, split, 0);
  DatasetSplit out;
  out.name = split;
  out.x = read_all_x(s);
  if (s.x_type == ElementType::kFloat32)
    check_finite(out.x.as<float>(), s.x_shape[0], out.x.row_elements(), s.where + "/x");
  if (s.classification) {
    out.y = make_array(s.y_shape, read_labels(s));
  } else {
    out.y = make_array(s.y_shape, read_targets(s));
  }
  if (num_classes != nullptr) *num_classes = s.num_classes;
  return out;
}

namespace {

// A split too large to cache: labels/targets in memory, features read per call
// with a hyperslab selection of just the requested rows.
class Hdf5RowSource : public Source {
 public:
  bool reads_rows_from_file() const override { return true; }
  Hdf5RowSource(OpenSplit split, std::vector<int32_t> labels, std::vector<float> targets, float scale)
      : split_(std::move(split)), info_(split_info(split_)), scale_(scale), labels_(std::move(labels)),
        targets_(std::move(targets)) {
    Hdf5Lock lock(hdf5_mutex());
    file_space_ = h5_check_id(H5Dget_space(split_.x.get()), info_.description + "/x");
    row_bytes_ = size_t(info_.feature_dim) * element_size(split_.x_type);
  }

  const DatasetInfo& info() const override { return info_; }

  void read(const int64_t* rows, int64_t n, float* x, int32_t* labels, float* targets) const override {
    std::lock_guard<std::mutex> guard(scratch_mutex_);
    sort_rows(rows, n);
    read_sorted_rows();
    const int64_t dim = info_.feature_dim;
    for (int64_t i = 0; i < n; ++i) {
      const size_t slot = size_t(slot_of_[size_t(i)]);
      convert_row(scratch_.data() + slot * row_bytes_, split_.x_type, dim, scale_, x + i * dim);
      if (labels != nullptr && !labels_.empty()) labels[i] = labels_[size_t(rows[i])];
      if (targets != nullptr && !targets_.empty())
        std::copy_n(targets_.data() + rows[i] * info_.target_dim, info_.target_dim, targets + i * info_.target_dim);
    }
    if (split_.x_type == ElementType::kFloat32) check_finite(x, n, dim, info_.description + "/x", rows);
  }

 private:
  // unique_ = the distinct requested rows ascending (HDF5 delivers a selection
  // in file order); slot_of_[i] = where request i sits in unique_.
  void sort_rows(const int64_t* rows, int64_t n) const {
    order_.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) {
      if (rows[i] < 0 || rows[i] >= info_.size)
        throw DataError(info_.description + ": row " + std::to_string(rows[i]) + " is outside [0, " +
                        std::to_string(info_.size) + ")");
      order_[size_t(i)] = {rows[i], i};
    }
    std::sort(order_.begin(), order_.end());
    unique_.clear();
    slot_of_.resize(size_t(n));
    for (const auto& [row, request] : order_) {
      if (unique_.empty() || unique_.back() != row) unique_.push_back(row);
      slot_of_[size_t(request)] = int64_t(unique_.size()) - 1;
    }
  }

  // One H5Dread per run of consecutive rows, each a plain (regular) hyperslab:
  // a union of many blocks is an irregular selection, which HDF5 1.10 maps to
  // chunks element by element (milliseconds per batch).
  void read_sorted_rows() const {
    Hdf5Lock lock(hdf5_mutex());
    const std::string where = info_.description + "/x";
    const size_t rank = split_.x_shape.size();
    start_.assign(rank, 0);
    count_.assign(split_.x_shape.begin(), split_.x_shape.end());
    scratch_.resize(unique_.size() * row_bytes_);
    for (size_t i = 0; i < unique_.size();) {
      size_t j = i + 1;
      while (j < unique_.size() && unique_[j] == unique_[j - 1] + 1) ++j;
      start_[0] = hsize_t(unique_[i]);
      count_[0] = hsize_t(j - i);
      h5_check_status(H5Sselect_hyperslab(file_space_.get(), H5S_SELECT_SET, start_.data(), nullptr,
                                          count_.data(), nullptr), where + ": bad row selection");
      // The memory space has the selection's own shape, so HDF5 maps chunks by
      // projection instead of element by element.
      H5Handle mem_space = h5_check_id(H5Screate_simple(int(rank), count_.data(), nullptr), where);
      h5_check_status(H5Dread(split_.x.get(), native_type(split_.x_type), mem_space.get(), file_space_.get(),
                              H5P_DEFAULT, scratch_.data() + i * row_bytes_), read_failure(where));
      i = j;
    }
  }

  OpenSplit split_;
  DatasetInfo info_;
  float scale_ = 1.0f;
  std::vector<int32_t> labels_;
  std::vector<float> targets_;
  H5Handle file_space_;
  size_t row_bytes_ = 0;
  // Scratch reused across calls: allocation-free once warm.
  mutable std::mutex scratch_mutex_;
  mutable std::vector<std::pair<int64_t, int64_t>> order_;
  mutable std::vector<int64_t> unique_, slot_of_;
  mutable std::vector<unsigned char> scratch_;
  mutable std::vector<hsize_t> start_, count_;
};

// Every row through the source, in bounded slices: what training will read, for
// a trial read of a split served per row.
void read_every_row(const Source& source) {
  const DatasetInfo& info = source.info();
  const int64_t per_call = std::max<int64_t>(1, (int64_t(64) << 20) / std::max<int64_t>(info.feature_dim * 4, 1));
  const int64_t n = std::min(per_call, info.size);
  std::vector<int64_t> rows(static_cast<size_t>(n));
  std::vector<float> x(static_cast<size_t>(n * info.feature_dim));
  std::vector<float> targets(static_cast<size_t>(n * info.target_dim));
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (int64_t first = 0; first < info.size; first += n) {
    const int64_t count = std::min(n, info.size - first);
    for (int64_t i = 0; i < count; ++i) rows[size_t(i)] = first + i;
    source.read(rows.data(), count, x.data(), info.num_classes > 0 ? labels.data() : nullptr,
                info.target_dim > 0 ? targets.data() : nullptr);
  }
}

std::shared_ptr<Source> open_split_source(const std::string& path, const std::string& split,
                                          const Hdf5ReadOptions& options) {
  OpenSplit s = open_split(path, split, options.chunk_cache_bytes);
  std::vector<int32_t> labels;
  std::vector<float> targets;
  if (s.classification) {
    std::vector<int64_t> wide = read_labels(s);
    labels.assign(wide.begin(), wide.end());
  } else {
    targets = read_targets(s);
  }
  const int64_t x_bytes = shape_product(s.x_shape) * int64_t(element_size(s.x_type));
  if (x_bytes > options.cache_limit_bytes)
    return std::make_shared<Hdf5RowSource>(std::move(s), std::move(labels), std::move(targets), options.scale);
  DatasetInfo info = split_info(s);
  HostArray x = read_all_x(s);
  if (s.x_type == ElementType::kFloat32)
    check_finite(x.as<float>(), s.x_shape[0], x.row_elements(), s.where + "/x");
  return std::make_shared<MemorySource>(std::move(info), std::move(x), std::move(labels),
                                        std::move(targets), options.scale);
}

}  // namespace

std::shared_ptr<Source> open_hdf5_split(const std::string& path, const std::string& split,
                                        const Hdf5ReadOptions& options) {
  if (options.trial_read) {
    hdf5_trial_read(path, [&] {
      std::shared_ptr<Source> source = open_split_source(path, split, options);
      if (!dynamic_cast<const MemorySource*>(source.get())) read_every_row(*source);
    });
  }
  return open_split_source(path, split, options);
}

std::shared_ptr<Source> open_dataset(const std::string& path, const std::string& split, float scale) {
  return open_hdf5_split(path, split, {.scale = scale});
}

}  // namespace lockstep
