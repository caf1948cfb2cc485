// lockstep predict: forward passes over a split in chunks on one replica,
// softmax for classifiers, output written atomically.
#include "src/predict.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/array.h"
#include "data/hdf5_util.h"
#include "data/input.h"
#include "src/checkpoint.h"
#include "src/model.h"
#include "src/network.h"
#include "src/saved_model.h"

namespace lockstep {
namespace {

bool is_hdf5_name(const std::string& p) {
  for (const char* ext : {".h5", ".hdf5"}) {
    const std::string e = ext;
    if (p.size() >= e.size() && p.compare(p.size() - e.size(), e.size(), e) == 0) return true;
  }
  return false;
}

void write_hdf5(const std::string& path, bool overwrite, const std::vector<float>& out, int64_t n,
                int64_t k, const std::vector<int32_t>& classes, bool classification) {
  AtomicOutput file(path, overwrite, "predictions.h5");
  try {
    Hdf5Lock lock(hdf5_mutex());
    hdf5_quiet();
    H5Handle f = h5_check_id(H5Fcreate(file.temp_path().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
                             path + ": cannot create");
    const hsize_t dims[2] = {hsize_t(n), hsize_t(k)};
    H5Handle space = h5_check_id(H5Screate_simple(2, dims, nullptr), path);
    const char* name = classification ? "probabilities" : "outputs";
    H5Handle ds = h5_check_id(H5Dcreate2(f.get(), name, H5T_IEEE_F32LE, space.get(), H5P_DEFAULT,
                                         H5P_DEFAULT, H5P_DEFAULT), path);
    h5_check_status(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), path);
    if (classification) {
      const hsize_t d1 = hsize_t(n);
      H5Handle s1 = h5_check_id(H5Screate_simple(1, &d1, nullptr), path);
      H5Handle c = h5_check_id(H5Dcreate2(f.get(), "classes", H5T_STD_I32LE, s1.get(), H5P_DEFAULT,
                                          H5P_DEFAULT, H5P_DEFAULT), path);
      h5_check_status(H5Dwrite(c.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, classes.data()), path);
    }
    ds.reset();
    space.reset();
    h5_check_status(H5Fclose(f.release()), path + ": cannot finish writing");
  } catch (const DataError& e) {  // creating or writing the file failed
    throw IoError(e.what());
  }
  file.commit();
}

void write_json(const std::string& path, bool overwrite, const std::vector<float>& out, int64_t n,
                int64_t k, const std::vector<int32_t>& classes, bool classification) {
  AtomicOutput file(path, overwrite, "predictions.jsonl");
  std::FILE* f = std::fopen(file.temp_path().c_str(), "w");
  if (!f) throw IoError(path + ": cannot create the output file: " + std::strerror(errno));
  for (int64_t i = 0; i < n; ++i) {
    nlohmann::json rec = {{"row", i}};
    std::vector<float> row(out.begin() + i * k, out.begin() + (i + 1) * k);
    if (classification) {
      rec["class"] = classes[size_t(i)];
      rec["probabilities"] = row;
    } else {
      rec["outputs"] = row;
    }
    const std::string line = rec.dump() + "\n";
    std::fwrite(line.data(), 1, line.size(), f);
  }
  const bool failed = std::ferror(f) != 0;
  if (std::fclose(f) != 0 || failed) throw IoError(path + ": cannot finish writing (disk full?)");
  file.commit();
}

// A split's example shape as a model file's signature writes it: for an image
// model (model_rank 3) CxHxW, a 2-D example being one channel; otherwise, and
// for flat examples, the feature count.
std::vector<int64_t> example_shape(const DatasetInfo& info, size_t model_rank) {
  const std::vector<int64_t>& s = info.feature_shape;
  if (model_rank == 3 && s.size() == 2) return {1, s[0], s[1]};
  if (model_rank == 3 && s.size() == 3) return s;
  return {info.feature_dim};
}

}  // namespace

int64_t predict(const Config& config, const PredictArgs& args) {
  // Refuse a bad output path before any work (the writers check again).
  AtomicOutput::check(args.output_path, args.overwrite,
                      is_hdf5_name(args.output_path) ? "predictions.h5" : "predictions.jsonl");
  auto source = open_dataset(args.input_path, args.split, config.data_scale);
  const DatasetInfo& info = source->info();
  const bool classification = config.loss == LossKind::kSoftmaxCrossEntropy;
  int64_t k = classification ? info.num_classes : info.target_dim;
  // The output width comes from the model file's signature if the split differs.
  const SavedState head = load_state(args.model_path, nullptr);
  // The examples' shape against the file's before the config's layers are laid
  // over them (they would not fit, and the error would blame the config).
  const std::vector<int64_t> takes = signature_input_shape(head.signature);
  std::vector<int64_t> has = example_shape(info, takes.size());
  // Flat rows of an image model's size are its images, row-major (as serve and
  // the ONNX export take them).
  if (takes.size() == 3 && has.size() == 1 && has[0] == takes[0] * takes[1] * takes[2]) has = takes;
  if (!takes.empty() && takes != has) {
    throw DataError(args.input_path + ": split '" + args.split + "' has examples of " + shape_string(has) +
                    ", but " + args.model_path + " takes " + shape_string(takes) +
                    " (predict data shaped like the training data)");
  }
  Model model(config.layers, takes.empty() ? info.feature_shape : has, k, config.loss);
  if (head.signature != model.signature()) {
    throw DataError(args.model_path + ": holds a different model: the file has [" + head.signature +
                    "], the config and " + args.input_path + " describe [" + model.signature() + "]");
  }
  const SavedState saved = load_state(args.model_path, &model);
  const int64_t n = info.size, chunk = 1024;
  CpuNetwork replica(model, chunk);
  std::vector<float> x(size_t(chunk * info.feature_dim)), out(size_t(n * k));
  std::vector<int32_t> labels(static_cast<size_t>(chunk)), classes(static_cast<size_t>(n));
  std::vector<float> targets(size_t(chunk * std::max<int64_t>(info.target_dim, 1)));
  std::vector<int64_t> rows(static_cast<size_t>(chunk));
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t m = std::min(chunk, n - begin);
    std::iota(rows.begin(), rows.begin() + m, begin);
    source->read(rows.data(), m, x.data(), info.num_classes > 0 ? labels.data() : nullptr,
                 info.target_dim > 0 ? targets.data() : nullptr);
    const float* y = replica.predict(saved.params.data(), x.data(), m);
    std::copy(y, y + m * k, out.begin() + begin * k);
  }
  if (classification) {
    softmax_rows(out.data(), n, k);
    for (int64_t i = 0; i < n; ++i) {
      const float* row = out.data() + i * k;
      classes[size_t(i)] = int32_t(std::max_element(row, row + k) - row);
    }
  }
  if (is_hdf5_name(args.output_path)) {
    write_hdf5(args.output_path, args.overwrite, out, n, k, classes, classification);
  } else {
    write_json(args.output_path, args.overwrite, out, n, k, classes, classification);
  }
  return n;
}

}  // namespace lockstep
