// HDF5 layout of a model file (format "lockstep-model", version 1):
//   attributes on /: format, version, signature, config, updates, epoch, step_in_epoch,
//   replicas, checksum (of everything else; files from before it have none)
//   /weights/<layer>/<tensor> float32 in its shape: dense kernel (in, out) and bias
//   (out); conv2d kernel (filters, channels, k, k) and bias; batch norm gamma, beta,
//   moving_mean, moving_variance (channels); a residual block's parts as
//   /weights/residual_N/conv1.kernel, bn1.gamma, ...
//   /optimizer/<slot> (num_params) float32, in the arena layout (trainable part)
#include "src/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <map>
#include <type_traits>

#include "data/hdf5_util.h"
#include "src/run_folder.h"

namespace lockstep {
namespace {

constexpr int64_t kVersion = 1;

// The checksum of what a file holds (FNV-1a 64, src/run_folder.h): its
// attributes, and the bytes of every weight and optimizer value (float32 in host
// order, which is the file's little-endian on the hosts lockstep runs on, as the
// baseline's weight hashes assume too). It catches values changed after lockstep wrote
// them (a bad disk or copy, an edit) that the shape, NaN and variance checks let
// through; it is no defence against a file made on purpose to pass.
class Checksum {
 public:
  void add(uint64_t word) { h_.add(&word, sizeof word); }
  void add(const std::string& s) {
    add(uint64_t(s.size()));
    h_.add(s.data(), s.size());
  }
  void add(const float* v, int64_t n) {
    add(uint64_t(n));
    h_.add(v, size_t(n) * sizeof(float));
  }
  std::string hex() const { return h_.hex(); }

 private:
  Fnv1a h_;
};

// The checksum of a state of `model` as save_state writes it (slots by name).
std::string content_checksum(const Model& model, const SavedState& s) {
  Checksum c;
  c.add(model.signature());
  c.add(s.config_yaml);
  for (int64_t v : {s.updates, s.epoch, s.step_in_epoch, s.replicas}) c.add(uint64_t(v));
  for (double d : s.progress) {
    uint64_t bits;
    std::memcpy(&bits, &d, sizeof bits);
    c.add(bits);
  }
  for (const auto& [layer, t] : model.all_tensors()) {
    c.add(layer);
    c.add(t.name);
    c.add(s.params.data() + t.offset, t.size());
  }
  std::vector<const std::pair<std::string, std::vector<float>>*> slots;
  for (const auto& slot : s.slots) slots.push_back(&slot);
  std::sort(slots.begin(), slots.end(), [](auto* a, auto* b) { return a->first < b->first; });
  for (const auto* slot : slots) {
    c.add(slot->first);
    c.add(slot->second.data(), int64_t(slot->second.size()));
  }
  return c.hex();
}

// A float32 (T = float) or float64 (T = double) dataset of shape `dims`.
template <typename T>
void write_values(hid_t parent, const std::string& name, const T* data, const std::vector<hsize_t>& dims,
                  const std::string& ctx) {
  constexpr bool f32 = std::is_same_v<T, float>;
  H5Handle space = h5_check_id(H5Screate_simple(int(dims.size()), dims.data(), nullptr), ctx);
  H5Handle ds = h5_check_id(H5Dcreate2(parent, name.c_str(), f32 ? H5T_IEEE_F32LE : H5T_IEEE_F64LE, space.get(),
                                       H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                            ctx + ": create " + name);
  h5_check_status(H5Dwrite(ds.get(), f32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
                  ctx + ": write " + name);
}

// Reads a float dataset of exactly the shape `dims` (a kernel stored transposed
// has the right element count but not the right shape), all finite: a model
// file holding NaN or Inf is refused as the data reader refuses such features.
void read_floats(hid_t parent, const std::string& name, float* out, const std::vector<int64_t>& dims,
                 const std::string& ctx) {
  if (H5Lexists(parent, name.c_str(), H5P_DEFAULT) <= 0) {
    throw DataError(ctx + ": missing dataset '" + name + "'");
  }
  H5Handle ds = h5_check_id(H5Dopen2(parent, name.c_str(), H5P_DEFAULT), ctx + ": open " + name);
  H5Handle space = h5_check_id(H5Dget_space(ds.get()), ctx + ": " + name);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> have(size_t(std::max(rank, 0)));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), have.data(), nullptr);
  const auto shape = [](const auto& d) {
    std::string t = "(";
    for (size_t i = 0; i < d.size(); ++i) t += (i ? ", " : "") + std::to_string(d[i]);
    return t + (d.size() == 1 ? ",)" : ")");
  };
  bool same = have.size() == dims.size();
  for (size_t i = 0; same && i < dims.size(); ++i) same = int64_t(have[i]) == dims[i];
  if (!same) {
    throw DataError(ctx + ": dataset '" + name + "' has shape " + shape(have) + ", the model needs " +
                    shape(dims) + (have.size() == 2 && dims.size() == 2 && int64_t(have[0]) == dims[1] &&
                                           int64_t(have[1]) == dims[0]
                                       ? " (stored transposed? lockstep kernels are (in, out))"
                                       : ""));
  }
  H5Handle type = h5_check_id(H5Dget_type(ds.get()), ctx + ": " + name);
  if (H5Tget_class(type.get()) != H5T_FLOAT) {
    throw DataError(ctx + ": dataset '" + name + "' is not floating point");
  }
  h5_check_status(H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out),
                  ctx + ": read " + name);
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(out[i])) {
      throw DataError(ctx + ": dataset '" + name + "' holds " + (std::isnan(out[i]) ? "NaN" : "Inf") +
                      " (element " + std::to_string(i) + "); a model file must hold finite values "
                      "(use an earlier checkpoint)");
    }
  }
}

// Variances (batch norm's moving_variance, Adam's slot v) are never negative: a
// file that says otherwise is corrupt, and would turn into NaN at the first sqrt.
void check_variance(const float* x, int64_t n, const std::string& name, const std::string& ctx) {
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] < 0.0f) {
      throw DataError(ctx + ": dataset '" + name + "' holds a negative variance (" + std::to_string(x[i]) +
                      " at element " + std::to_string(i) + "); the file is corrupt (use an earlier checkpoint)");
    }
  }
}

void read_doubles(hid_t parent, const std::string& name, double* out, hssize_t expect,
                  const std::string& ctx) {
  H5Handle ds = h5_check_id(H5Dopen2(parent, name.c_str(), H5P_DEFAULT), ctx + ": open " + name);
  H5Handle space = h5_check_id(H5Dget_space(ds.get()), ctx + ": " + name);
  if (H5Sget_simple_extent_npoints(space.get()) != expect) {
    throw DataError(ctx + ": dataset '" + name + "' has the wrong size");
  }
  h5_check_status(H5Dread(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out),
                  ctx + ": read " + name);
}

[[noreturn]] void missing_attribute(const char* name, const std::string& ctx) {
  throw DataError(ctx + ": missing attribute '" + std::string(name) +
                  "' (every lockstep model file has it: the file is damaged)");
}

int64_t required_int(hid_t obj, const char* name, const std::string& ctx) {
  if (const auto v = h5_read_attr_int(obj, name, ctx)) return *v;
  missing_attribute(name, ctx);
}

std::string required_string(hid_t obj, const char* name, const std::string& ctx) {
  if (const auto v = h5_read_attr_string(obj, name, ctx)) return *v;
  missing_attribute(name, ctx);
}

// The whole file is built in memory (HDF5's core driver) and written in one go:
// HDF5 never meets a failing disk, which it reports badly and, after a failed
// close, crashes on at exit.
std::vector<char> file_image(const Model& model, const SavedState& s, const std::string& ctx) {
  Hdf5Lock lock(hdf5_mutex());
  hdf5_quiet();
  H5Handle fapl = h5_check_id(H5Pcreate(H5P_FILE_ACCESS), ctx);
  h5_check_status(H5Pset_fapl_core(fapl.get(), 1 << 20, /*backing_store=*/0), ctx);
  H5Handle file = h5_check_id(H5Fcreate(ctx.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()),
                              ctx + ": cannot create the file");
  {
    const hid_t root = file.get();
    h5_write_attr_string(root, "format", "lockstep-model", ctx);
    h5_write_attr_int(root, "version", kVersion, ctx);
    h5_write_attr_string(root, "signature", model.signature(), ctx);
    h5_write_attr_string(root, "config", s.config_yaml, ctx);
    h5_write_attr_int(root, "updates", s.updates, ctx);
    h5_write_attr_int(root, "epoch", s.epoch, ctx);
    h5_write_attr_int(root, "step_in_epoch", s.step_in_epoch, ctx);
    h5_write_attr_int(root, "replicas", s.replicas, ctx);
    write_values(root, "progress", s.progress, {4}, ctx);
    if (int64_t(s.params.size()) != model.arena_size()) {
      throw DataError(ctx + ": " + std::to_string(s.params.size()) +
                      " parameters given, the model has " + std::to_string(model.arena_size()));
    }
    h5_write_attr_string(root, "checksum", content_checksum(model, s), ctx);
    H5Handle weights = h5_check_id(
        H5Gcreate2(root, "weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), ctx + ": /weights");
    std::string open_name;
    H5Handle g;
    for (const auto& [layer, t] : model.all_tensors()) {
      if (layer != open_name) {
        g = h5_check_id(H5Gcreate2(weights.get(), layer.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                        ctx + ": /weights/" + layer);
        open_name = layer;
      }
      write_values(g.get(), t.name, s.params.data() + t.offset,
                   std::vector<hsize_t>(t.shape.begin(), t.shape.end()), ctx);
    }
    if (!s.slots.empty()) {
      H5Handle opt = h5_check_id(
          H5Gcreate2(root, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), ctx + ": /optimizer");
      for (const auto& [name, data] : s.slots) {
        write_values(opt.get(), name, data.data(), {hsize_t(data.size())}, ctx);
      }
    }
  }
  h5_check_status(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), ctx + ": flush");
  const ssize_t size = H5Fget_file_image(file.get(), nullptr, 0);
  if (size <= 0) throw DataError(ctx + ": cannot build the file image");
  std::vector<char> bytes(static_cast<size_t>(size));
  if (H5Fget_file_image(file.get(), bytes.data(), size_t(size)) != size) {
    throw DataError(ctx + ": cannot build the file image");
  }
  return bytes;
}

SavedState read_state(const std::string& path, const Model* model) {
  const std::string ctx = path;
  if (!std::filesystem::exists(path)) {
    throw DataError(path + ": no such model or checkpoint file (check the path; train writes "
                    "OUTPUT_DIR/model.h5 and checkpoints in checkpoint.dir)");
  }
  if (std::error_code ec; std::filesystem::is_directory(path, ec)) {
    throw DataError(path + ": is a folder; name a model or checkpoint file in it (e.g. " +
                    (std::filesystem::path(path) / "model.h5").string() + ")");
  }
  if (!has_hdf5_signature(path)) {
    throw DataError(path + ": not an HDF5 file (expected a lockstep model or checkpoint)");
  }
  Hdf5Lock lock(hdf5_mutex());
  hdf5_quiet();
  H5Handle file = h5_check_id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT),
                              ctx + ": cannot open (truncated or corrupt?)");
  const hid_t root = file.get();
  auto format = h5_read_attr_string(root, "format", ctx);
  if (!format || *format != "lockstep-model") {
    throw DataError(ctx + ": not a lockstep model file (attribute format='" +
                    format.value_or("") + "')");
  }
  const int64_t version = required_int(root, "version", ctx);
  if (version != kVersion) {
    throw DataError(ctx + ": model file version " + std::to_string(version) +
                    " is not supported (this lockstep reads version " + std::to_string(kVersion) + ")");
  }
  SavedState s;
  s.signature = required_string(root, "signature", ctx);
  s.config_yaml = required_string(root, "config", ctx);
  s.updates = required_int(root, "updates", ctx);
  s.epoch = required_int(root, "epoch", ctx);
  s.step_in_epoch = required_int(root, "step_in_epoch", ctx);
  s.replicas = h5_read_attr_int(root, "replicas", ctx).value_or(0);
  if (s.updates < 0 || s.epoch < 0 || s.step_in_epoch < 0) {
    throw DataError(ctx + ": negative training position (corrupt file)");
  }
  if (H5Lexists(root, "progress", H5P_DEFAULT) > 0) read_doubles(root, "progress", s.progress, 4, ctx);
  if (!model) return s;
  if (s.signature != model->signature()) {
    throw DataError(ctx + ": holds a different model: the file has [" + s.signature +
                    "], the config describes [" + model->signature() + "]");
  }
  s.params.assign(size_t(model->arena_size()), 0.0f);
  for (const auto& [layer, t] : model->all_tensors()) {
    const std::string g = "weights/" + layer;
    if (H5Lexists(root, "weights", H5P_DEFAULT) <= 0 ||
        H5Lexists(root, g.c_str(), H5P_DEFAULT) <= 0) {
      throw DataError(ctx + ": missing group /" + g);
    }
    H5Handle grp = h5_check_id(H5Gopen2(root, g.c_str(), H5P_DEFAULT), ctx + ": /" + g);
    read_floats(grp.get(), t.name, s.params.data() + t.offset, t.shape, ctx + ":/" + g);
    if (t.name.size() >= 15 && t.name.compare(t.name.size() - 15, 15, "moving_variance") == 0) {
      check_variance(s.params.data() + t.offset, t.size(), t.name, ctx + ":/" + g);
    }
  }
  if (H5Lexists(root, "optimizer", H5P_DEFAULT) > 0) {
    H5Handle opt = h5_check_id(H5Gopen2(root, "optimizer", H5P_DEFAULT), ctx + ": /optimizer");
    H5G_info_t info;
    h5_check_status(H5Gget_info(opt.get(), &info), ctx + ": /optimizer");
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      char name[256] = {0};
      H5Lget_name_by_idx(opt.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
      std::vector<float> data(size_t(model->num_params()));
      read_floats(opt.get(), name, data.data(), {model->num_params()}, ctx + ":/optimizer");
      if (std::string(name) == "v") check_variance(data.data(), model->num_params(), name, ctx + ":/optimizer");
      s.slots.emplace_back(name, std::move(data));
    }
  }
  const auto stored = h5_read_attr_string(root, "checksum", ctx);
  if (stored && *stored != content_checksum(*model, s)) {
    throw DataError(ctx + ": checksum mismatch: the weights, optimizer slots or attributes are not "
                    "the ones lockstep wrote (a corrupt or edited file); resume from another "
                    "checkpoint, or train again");
  }
  return s;
}

}  // namespace

void save_state(const std::string& path, const Model& model, const SavedState& s) {
  AtomicOutput out(path, /*overwrite=*/true);
  const std::vector<char> bytes = file_image(model, s, path);
  out.write({bytes.data(), bytes.size()});
  out.commit();
}

SavedState load_state(const std::string& path, const Model* model) {
  // HDF5 1.10 itself reads out of bounds on some crafted files (found by
  // tests/fuzz): read it in a checking child first (data/hdf5_util.h).
  hdf5_trial_read(path, [&] { read_state(path, model); });
  return read_state(path, model);
}

std::string checkpoint_path(const std::string& dir, int64_t global_step) {
  char name[64];
  std::snprintf(name, sizeof name, "ckpt-%010lld.h5", (long long)global_step);
  return (std::filesystem::path(dir) / name).string();
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return out;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() == 18 && name.rfind("ckpt-", 0) == 0 && name.substr(15) == ".h5" &&
        e.is_regular_file()) {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.rbegin(), out.rend());  // zero-padded step: newest first
  return out;
}

void prune_checkpoints(const std::string& dir, int64_t keep, const std::string& protect) {
  std::vector<std::string> others;
  for (const auto& p : list_checkpoints(dir)) {
    std::error_code ec;
    if (protect.empty() || !std::filesystem::equivalent(p, protect, ec)) others.push_back(p);
  }
  // The protected file counts as one of the `keep`.
  const int64_t left = std::max<int64_t>(keep, 1) - (protect.empty() ? 0 : 1);
  for (size_t i = size_t(std::max<int64_t>(left, 0)); i < others.size(); ++i) {
    std::error_code ec;
    std::filesystem::remove(others[i], ec);
  }
}

namespace {
// The first layer that differs, on one line.
std::string layers_diff(const std::vector<LayerConfig>& now, const std::vector<LayerConfig>& was) {
  for (size_t i = 0; i < std::min(now.size(), was.size()); ++i) {
    const std::string a = describe_layer(now[i]), b = describe_layer(was[i]);
    if (a != b) return "model.layers[" + std::to_string(i) + "] is " + a + " but was " + b;
  }
  return "model.layers has " + std::to_string(now.size()) + " layers but had " + std::to_string(was.size());
}
}  // namespace

std::string check_resume_compatible(const std::string& saved_yaml, const Config& now,
                                    const std::string& path) {
  const Config saved = parse_config(saved_yaml, path + " (its saved config)");
  auto may_change = [](const std::string& key) {
    for (const char* prefix : {"strategy.", "output.", "checkpoint.", "train.epochs",
                               "train.progress", "train.eval_batch_size", "train.on_nonfinite",
                               "data.prefetch", "data.gather", "data.path", "comm."}) {
      if (key.rfind(prefix, 0) == 0) return true;
    }
    return false;
  };
  std::map<std::string, std::string> before;
  for (const auto& row : saved.table()) before[row[0]] = row[1];
  std::string diff, allowed;
  for (const auto& row : now.table()) {
    const auto it = before.find(row[0]);
    const std::string old = it == before.end() ? "(unset)" : it->second;
    if (old == row[1]) continue;
    if (row[0] == "model.layers") {
      diff += (diff.empty() ? "" : "; ") + layers_diff(now.layers, saved.layers);
    } else if (!may_change(row[0])) {
      diff += (diff.empty() ? "" : "; ") + row[0] + " is " + row[1] + " but was " + old;
    } else if (row[0] != "strategy.local_replicas") {  // the replica count is reported on its own
      allowed += (allowed.empty() ? "" : "; ") + row[0] + " " + old + " -> " + row[1];
    }
  }
  if (!diff.empty()) {
    throw ConfigError(path + ": cannot resume: the config differs from the one the checkpoint was "
                      "written with: " + diff + " (resume with the original values, or start a new run)");
  }
  return allowed;
}

}  // namespace lockstep
