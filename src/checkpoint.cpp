// HDF5 layout of a model file (format "lockstep-model", version 1):
//   attributes on /: format, version, signature, config, updates, epoch, step_in_epoch
//   /weights/<layer>/kernel (in, out) float32, /weights/<layer>/bias (out) float32
//   /optimizer/<slot> (num_params) float32, in the arena layout
#include "src/checkpoint.h"

#include <filesystem>

#include "data/hdf5_util.h"

namespace lockstep {
namespace {

constexpr int64_t kVersion = 1;

void write_floats(hid_t parent, const std::string& name, const float* data,
                  const std::vector<hsize_t>& dims, const std::string& ctx) {
  H5Handle space = h5_check_id(H5Screate_simple(int(dims.size()), dims.data(), nullptr), ctx);
  H5Handle ds = h5_check_id(H5Dcreate2(parent, name.c_str(), H5T_IEEE_F32LE, space.get(),
                                       H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                            ctx + ": create " + name);
  h5_check_status(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
                  ctx + ": write " + name);
}

// Reads a float dataset whose total size must be `expect` elements.
void read_floats(hid_t parent, const std::string& name, float* out, int64_t expect,
                 const std::string& ctx) {
  if (H5Lexists(parent, name.c_str(), H5P_DEFAULT) <= 0) {
    throw DataError(ctx + ": missing dataset '" + name + "'");
  }
  H5Handle ds = h5_check_id(H5Dopen2(parent, name.c_str(), H5P_DEFAULT), ctx + ": open " + name);
  H5Handle space = h5_check_id(H5Dget_space(ds.get()), ctx + ": " + name);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n != expect) {
    throw DataError(ctx + ": dataset '" + name + "' has " + std::to_string(n) +
                    " elements, the model needs " + std::to_string(expect));
  }
  H5Handle type = h5_check_id(H5Dget_type(ds.get()), ctx + ": " + name);
  if (H5Tget_class(type.get()) != H5T_FLOAT) {
    throw DataError(ctx + ": dataset '" + name + "' is not floating point");
  }
  h5_check_status(H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out),
                  ctx + ": read " + name);
}

int64_t required_int(hid_t obj, const char* name, const std::string& ctx) {
  auto v = h5_read_attr_int(obj, name, ctx);
  if (!v) throw DataError(ctx + ": missing attribute '" + std::string(name) + "'");
  return *v;
}

std::string required_string(hid_t obj, const char* name, const std::string& ctx) {
  auto v = h5_read_attr_string(obj, name, ctx);
  if (!v) throw DataError(ctx + ": missing attribute '" + std::string(name) + "'");
  return *v;
}

}  // namespace

void save_state(const std::string& path, const Model& model, const SavedState& s) {
  const std::string ctx = path;
  AtomicOutput out(path, /*overwrite=*/true);
  {
    Hdf5Lock lock(hdf5_mutex());
    hdf5_quiet();
    H5Handle file = h5_check_id(
        H5Fcreate(out.temp_path().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
        ctx + ": cannot create the file");
    const hid_t root = file.get();
    h5_write_attr_string(root, "format", "lockstep-model", ctx);
    h5_write_attr_int(root, "version", kVersion, ctx);
    h5_write_attr_string(root, "signature", model.signature(), ctx);
    h5_write_attr_string(root, "config", s.config_yaml, ctx);
    h5_write_attr_int(root, "updates", s.updates, ctx);
    h5_write_attr_int(root, "epoch", s.epoch, ctx);
    h5_write_attr_int(root, "step_in_epoch", s.step_in_epoch, ctx);
    if (int64_t(s.params.size()) != model.num_params()) {  // checked mid-write on purpose:
      throw DataError(ctx + ": " + std::to_string(s.params.size()) +  // the temp file goes away
                      " parameters given, the model has " + std::to_string(model.num_params()));
    }
    H5Handle weights = h5_check_id(
        H5Gcreate2(root, "weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), ctx + ": /weights");
    for (const auto& l : model.layers()) {
      H5Handle g = h5_check_id(
          H5Gcreate2(weights.get(), l.name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
          ctx + ": /weights/" + l.name);
      write_floats(g.get(), "kernel", s.params.data() + l.weight_offset,
                   {hsize_t(l.in), hsize_t(l.out)}, ctx);
      write_floats(g.get(), "bias", s.params.data() + l.bias_offset, {hsize_t(l.out)}, ctx);
    }
    if (!s.slots.empty()) {
      H5Handle opt = h5_check_id(
          H5Gcreate2(root, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), ctx + ": /optimizer");
      for (const auto& [name, data] : s.slots) {
        write_floats(opt.get(), name, data.data(), {hsize_t(data.size())}, ctx);
      }
    }
    h5_check_status(H5Fflush(root, H5F_SCOPE_GLOBAL), ctx + ": flush");
  }
  out.commit();
}

SavedState load_state(const std::string& path, const Model* model) {
  const std::string ctx = path;
  if (!std::filesystem::exists(path)) {
    throw DataError(path + ": no such model file (train first, or check the path)");
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
  if (!model) return s;
  if (s.signature != model->signature()) {
    throw DataError(ctx + ": holds a different model: the file has [" + s.signature +
                    "], the config describes [" + model->signature() + "]");
  }
  s.params.assign(size_t(model->num_params()), 0.0f);
  for (const auto& l : model->layers()) {
    const std::string g = "weights/" + l.name;
    if (H5Lexists(root, "weights", H5P_DEFAULT) <= 0 ||
        H5Lexists(root, g.c_str(), H5P_DEFAULT) <= 0) {
      throw DataError(ctx + ": missing group /" + g);
    }
    H5Handle grp = h5_check_id(H5Gopen2(root, g.c_str(), H5P_DEFAULT), ctx + ": /" + g);
    read_floats(grp.get(), "kernel", s.params.data() + l.weight_offset, l.in * l.out, ctx + ":/" + g);
    read_floats(grp.get(), "bias", s.params.data() + l.bias_offset, l.out, ctx + ":/" + g);
  }
  if (H5Lexists(root, "optimizer", H5P_DEFAULT) > 0) {
    H5Handle opt = h5_check_id(H5Gopen2(root, "optimizer", H5P_DEFAULT), ctx + ": /optimizer");
    H5G_info_t info;
    h5_check_status(H5Gget_info(opt.get(), &info), ctx + ": /optimizer");
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      char name[256] = {0};
      H5Lget_name_by_idx(opt.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
      std::vector<float> data(size_t(model->num_params()));
      read_floats(opt.get(), name, data.data(), model->num_params(), ctx + ":/optimizer");
      s.slots.emplace_back(name, std::move(data));
    }
  }
  return s;
}

}  // namespace lockstep
