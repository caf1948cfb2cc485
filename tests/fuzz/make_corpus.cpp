// Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/):
// small valid inputs of every kind each reader accepts, and near-valid ones that
// hit each of its refusals, so mutation starts next to every branch. Run through
// tests/fuzz/make_corpus.sh; the output is checked in and replayed by CTest.
#include <hdf5.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "data/hdf5_dataset.h"
#include "data/hdf5_util.h"
#include "src/checkpoint.h"
#include "tests/fuzz/common.h"

namespace lockstep {
namespace {

namespace fs = std::filesystem;

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

void write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

// ---- configs and --set overrides ----
void config_corpus(const fs::path& dir) {
  const std::map<std::string, std::string> files = {
      {"full.yaml",
       "data: {path: datasets/fashion_mnist.h5, train_split: train, eval_split: test, scale: 0.00392156862745098,\n"
       "       shuffle: true, prefetch: 2}\n"
       "model:\n  layers:\n    - {units: 128, activation: relu, dropout: 0.1}\n    - {units: 64, activation: gelu}\n"
       "  loss: softmax_cross_entropy\n"
       "optimizer: {name: adamw, learning_rate: 0.001, beta1: 0.9, beta2: 0.999, epsilon: 1e-7, weight_decay: 0.01,\n"
       "            schedule: cosine, warmup_steps: 100, decay_steps: 0, min_lr_ratio: 0.1, scale_lr: true}\n"
       "train: {epochs: 10, batch_size: 256, seed: 7, drop_remainder: false, eval_batch_size: 1000, progress: false}\n"
       "strategy: {local_replicas: auto, bucket_mb: 4, overlap: true, check_every: 100}\n"
       "output: {dir: runs/fmnist, save_model: true}\n"},
      {"minimal.yaml", "data: {path: d.h5}\n"},
      {"sgd_step.yaml",
       "data:\n  path: d.h5\noptimizer:\n  name: sgd\n  momentum: 0.9\n  nesterov: true\n  schedule: step\n"
       "  decay_steps: 10\n  decay_rate: 0.5\nmodel:\n  loss: mse\n  layers: []\n"},
      {"unknown_key.yaml", "data: {path: d.h5}\ntrain: {epoch: 3}\n"},
      {"wrong_type.yaml", "data: {path: [a, b]}\ntrain: {epochs: three, batch_size: 1e99}\n"},
      {"out_of_range.yaml", "data: {path: d.h5, scale: -1}\noptimizer: {learning_rate: .nan}\n"},
      {"bad_layers.yaml", "data: {path: d.h5}\nmodel: {layers: [{units: 0}, {activation: swish}, 3, [1]]}\n"},
      {"anchors.yaml", "base: &b {units: 4}\ndata: {path: d.h5}\nmodel: {layers: [*b, *b]}\n"},
      {"tags.yaml", "data: {path: !!str 12}\ntrain: {epochs: !!int \"3\", seed: 0x10}\n"},
      {"not_a_map.yaml", "- data\n- model\n"},
      {"broken.yaml", "train: {epochs: [1\n"},
      {"two_docs.yaml", "data: {path: a.h5}\n---\ndata: {path: b.h5}\n"},
      {"null_value.yaml", "data: {path: d.h5}\ntrain:\n  epochs:\n"},
      {"quoted.yaml", "data: {path: \"a: b # c\\n\\t'\"}\noutput: {dir: '-- ? :'}\n"},
  };
  for (const auto& [name, text] : files) write_text(dir / name, text);
}

void override_corpus(const fs::path& dir) {
  const std::vector<std::string> sets = {
      "train.epochs=3",
      "model.layers=[{units: 64, activation: gelu, dropout: 0.1}, {units: 8}]",
      "optimizer.learning_rate=1e-3",
      "strategy.local_replicas=auto",
      "data.path=",
      "train.epochz=3",
      "=3",
      "optimizer.name=adagrad",
      "model.layers={units: 3}",
      "train.batch_size=[1, 2",
      "data.scale=0x1p-8",
      "output.dir=a=b",
  };
  for (size_t i = 0; i < sets.size(); ++i) write_text(dir / ("set_" + std::to_string(i)), sets[i]);
}

// ---- IDX ----
std::vector<uint8_t> idx(const std::vector<uint32_t>& dims, uint8_t type = 0x08) {
  std::vector<uint8_t> out = {0, 0, type, uint8_t(dims.size())};
  uint64_t n = 1;
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(uint8_t(d >> shift));
    n *= d;
  }
  for (uint64_t i = 0; i < n; ++i) out.push_back(uint8_t(i * 37 % 251));
  return out;
}

std::vector<uint8_t> gzip(const std::vector<uint8_t>& raw) {
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::vector<uint8_t> out(deflateBound(&zs, uLong(raw.size())) + 32);
  zs.next_in = const_cast<uint8_t*>(raw.data());
  zs.avail_in = uInt(raw.size());
  zs.next_out = out.data();
  zs.avail_out = uInt(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

void idx_corpus(const fs::path& dir) {
  std::vector<uint8_t> labels = idx({6});
  for (size_t i = 8; i < labels.size(); ++i) labels[i] = uint8_t(i % 3);  // labels 0..2
  const std::vector<uint8_t> images = idx({6, 3, 2});
  write_bytes(dir / "images.idx3", images);
  write_bytes(dir / "labels.idx1", labels);
  write_bytes(dir / "images.idx3.gz", gzip(images));
  write_bytes(dir / "labels.idx1.gz", gzip(labels));
  write_bytes(dir / "rank4.idx", idx({2, 2, 2, 2}));
  std::vector<uint8_t> cut = images;
  cut.resize(cut.size() - 3);
  write_bytes(dir / "truncated.idx3", cut);
  std::vector<uint8_t> gz_cut = gzip(images);
  gz_cut.resize(gz_cut.size() / 2);
  write_bytes(dir / "truncated.idx3.gz", gz_cut);
  write_bytes(dir / "float_type.idx", idx({2, 2}, 0x0D));
  write_bytes(dir / "rank0.idx", {0, 0, 8, 0});
  write_bytes(dir / "huge_dims.idx", {0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2});
}

// ---- HDF5 datasets ----
HostArray bytes_array(std::vector<int64_t> shape) {
  HostArray a;
  a.type = ElementType::kUInt8;
  a.shape = std::move(shape);
  a.bytes.resize(size_t(a.elements()));
  for (size_t i = 0; i < a.bytes.size(); ++i) a.bytes[i] = uint8_t(i * 29 % 256);
  return a;
}

HostArray float_array(std::vector<int64_t> shape) {
  std::vector<float> v(size_t(shape_product(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(float(i));
  return make_array(std::move(shape), v);
}

void lockstep_written(const fs::path& dir) {
  const std::vector<uint8_t> labels6 = {0, 1, 2, 2, 1, 0};
  const std::vector<uint8_t> labels3 = {2, 0, 1};
  write_hdf5_dataset((dir / "uint8_classes.h5").string(),
                     {{"train", bytes_array({6, 2, 2}), make_array({6}, labels6)},
                      {"test", bytes_array({3, 2, 2}), make_array({3}, labels3)}},
                     3, {true, 0, 0});
  write_hdf5_dataset((dir / "float_regression_gzip.h5").string(),
                     {{"train", float_array({5, 3}), float_array({5, 2})},
                      {"test", float_array({2, 3}), float_array({2, 2})}},
                     0, {true, 2, 1});
  const std::vector<int64_t> wide = {4, 0, 3, 1};
  write_hdf5_dataset((dir / "int64_labels_chunked.h5").string(),
                     {{"train", float_array({4, 2, 2}), make_array({4}, wide)},
                      {"test", bytes_array({1, 2, 2}), make_array({1}, std::vector<int64_t>{1})}},
                     5, {true, 1, 0});
}

// A file written with the raw C API, for layouts lockstep's writer refuses.
struct RawDataset {
  std::string name;  // "train/x"
  hid_t file_type;
  hid_t memory_type;
  std::vector<hsize_t> dims;
  const void* data;
  bool chunked;
};

void write_raw(const fs::path& path, const std::vector<RawDataset>& datasets, int64_t num_classes) {
  Hdf5Lock lock(hdf5_mutex());
  H5Handle file = h5_check_id(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), path.string());
  if (num_classes != 0) h5_write_attr_int(file.get(), "num_classes", num_classes, path.string());
  H5Handle links = h5_check_id(H5Pcreate(H5P_LINK_CREATE), path.string());
  H5Pset_create_intermediate_group(links.get(), 1);
  for (const RawDataset& d : datasets) {
    H5Handle space = h5_check_id(H5Screate_simple(int(d.dims.size()), d.dims.data(), nullptr), d.name);
    H5Handle create = h5_check_id(H5Pcreate(H5P_DATASET_CREATE), d.name);
    if (d.chunked) H5Pset_chunk(create.get(), int(d.dims.size()), d.dims.data());
    H5Handle ds = h5_check_id(H5Dcreate2(file.get(), d.name.c_str(), d.file_type, space.get(), links.get(),
                                         create.get(), H5P_DEFAULT), d.name);
    h5_check_status(H5Dwrite(ds.get(), d.memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, d.data), d.name);
  }
}

void raw_written(const fs::path& dir) {
  const uint8_t x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  const int32_t labels[2] = {0, 1};
  const int32_t bad_labels[2] = {0, 9};
  const int16_t short_labels[2] = {0, 1};
  const float nan_x[4] = {0.5f, NAN, 1.0f, 2.0f};
  const float targets[2] = {1.0f, -1.0f};
  const double wide_x[4] = {1, 2, 3, 4};
  const auto u8 = H5T_STD_U8LE, i32 = H5T_STD_I32LE, f32 = H5T_IEEE_F32LE;
  const auto nu8 = H5T_NATIVE_UINT8, ni32 = H5T_NATIVE_INT32, nf32 = H5T_NATIVE_FLOAT;
  write_raw(dir / "contiguous_int32_labels.h5",
            {{"train/x", u8, nu8, {2, 4}, x, false}, {"train/y", i32, ni32, {2}, labels, false},
             {"test/x", u8, nu8, {2, 2, 2}, x, true}, {"test/y", i32, ni32, {2}, labels, true}}, 2);
  write_raw(dir / "label_out_of_range.h5",
            {{"train/x", u8, nu8, {2, 4}, x, true}, {"train/y", i32, ni32, {2}, bad_labels, true}}, 3);
  write_raw(dir / "int_labels_no_classes.h5",
            {{"train/x", u8, nu8, {2, 4}, x, true}, {"train/y", i32, ni32, {2}, labels, true}}, 0);
  write_raw(dir / "nan_features.h5",
            {{"train/x", f32, nf32, {2, 2}, nan_x, true}, {"train/y", f32, nf32, {2}, targets, true}}, 0);
  write_raw(dir / "rank1_x_int16_y.h5",
            {{"train/x", u8, nu8, {8}, x, true}, {"train/y", H5T_STD_I16LE, H5T_NATIVE_INT16, {2}, short_labels, true},
             {"test/x", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {2, 2}, wide_x, true},
             {"test/y", i32, ni32, {2}, labels, true}}, 2);
  write_raw(dir / "rows_disagree_missing_y.h5",
            {{"train/x", u8, nu8, {4, 2}, x, true}, {"train/y", i32, ni32, {2}, labels, true},
             {"test/x", u8, nu8, {2, 4}, x, true}}, 2);
}

void hdf5_dataset_corpus(const fs::path& dir) {
  lockstep_written(dir);
  raw_written(dir);
  // Not HDF5 at all, and an HDF5 file cut short.
  write_text(dir / "not_hdf5.h5", "plain text, no signature\n");
  std::ifstream in(dir / "uint8_classes.h5", std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  bytes.resize(bytes.size() / 2);
  write_bytes(dir / "truncated.h5", bytes);
}

// ---- model files ----
SavedState state_for(const Model& m, bool slots) {
  SavedState s;
  s.config_yaml = "data: {path: d.h5}\nmodel: {layers: [{units: 6, activation: relu}]}\n";
  s.params.resize(size_t(m.num_params()));
  for (size_t i = 0; i < s.params.size(); ++i) s.params[i] = 0.01f * float(i) - 0.3f;
  if (slots) {
    s.slots.emplace_back("m", std::vector<float>(s.params.size(), 0.125f));
    s.slots.emplace_back("v", std::vector<float>(s.params.size(), 0.5f));
  }
  s.updates = 40;
  s.epoch = 3;
  s.step_in_epoch = 2;
  return s;
}

void model_file_corpus(const fs::path& dir) {
  const Model model = fuzz::model_file_model();
  save_state((dir / "with_slots.h5").string(), model, state_for(model, true));
  save_state((dir / "weights_only.h5").string(), model, state_for(model, false));
  const Model other({{7, Activation::kTanh, 0.0f}}, 5, 3, LossKind::kSoftmaxCrossEntropy);
  save_state((dir / "other_model.h5").string(), other, state_for(other, false));
}

}  // namespace
}  // namespace lockstep

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR (e.g. tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  const fs::path root = argv[1];
  const std::vector<std::pair<const char*, void (*)(const fs::path&)>> targets = {
      {"config", lockstep::config_corpus},
      {"override", lockstep::override_corpus},
      {"idx", lockstep::idx_corpus},
      {"hdf5_dataset", lockstep::hdf5_dataset_corpus},
      {"model_file", lockstep::model_file_corpus},
  };
  try {
    for (const auto& [name, write] : targets) {
      fs::remove_all(root / name);
      fs::create_directories(root / name);
      write(root / name);
      uintmax_t bytes = 0, files = 0;
      for (const auto& e : fs::directory_iterator(root / name)) bytes += e.file_size(), ++files;
      std::printf("%-13s %3ju files %8ju bytes\n", name, files, bytes);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_corpus: %s\n", e.what());
    return 1;
  }
  return 0;
}
