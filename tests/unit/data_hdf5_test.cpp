// The lockstep HDF5 dataset layout: byte-exact round trips (cached and per-row
// reads), atomic no-overwrite writes, and every malformed file a user can hand
// us failing as a DataError that names the file and what is wrong.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "data/hdf5_dataset.h"
#include "data/hdf5_util.h"
#include "data/random.h"

namespace lockstep {
namespace {

namespace fs = std::filesystem;

class DataHdf5 : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/lockstep-data-h5-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // Expects `call` to throw DataError whose message holds `file` and `words`.
  template <typename F>
  void expect_error(F call, const std::string& file, const std::string& words) {
    try {
      call();
      ADD_FAILURE() << "no DataError; expected one about: " << words;
    } catch (const DataError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(file), std::string::npos) << msg;
      EXPECT_NE(msg.find(words), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }

  std::string dir_;
};

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<uint8_t> v(n);
  for (uint8_t& b : v) b = uint8_t(rng.below(256));
  return v;
}

DatasetSplit image_split(const std::string& name, int64_t n, uint64_t seed) {
  DatasetSplit s;
  s.name = name;
  s.x = make_array({n, 4, 5}, random_bytes(size_t(n * 20), seed));
  std::vector<uint8_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[size_t(i)] = uint8_t((i * 7 + seed) % 10);
  s.y = make_array({n}, labels);
  return s;
}

std::vector<int64_t> all_rows(int64_t n) {
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[size_t(i)] = i;
  return rows;
}

TEST_F(DataHdf5, ClassificationRoundTripIsByteExact) {
  std::vector<DatasetSplit> splits = {image_split("train", 37, 1), image_split("test", 11, 2)};
  write_hdf5_dataset(path("d.h5"), splits, 10, {.chunk_rows = 8});
  int64_t classes = 0;
  DatasetSplit back = load_hdf5_split(path("d.h5"), "train", &classes);
  EXPECT_EQ(classes, 10);
  EXPECT_EQ(back.x.type, ElementType::kUInt8);
  EXPECT_EQ(back.x.shape, splits[0].x.shape);
  EXPECT_EQ(back.x.bytes, splits[0].x.bytes);
  for (int64_t i = 0; i < 37; ++i) EXPECT_EQ(back.y.as<int64_t>()[i], splits[0].y.as<uint8_t>()[i]);

  auto source = open_dataset(path("d.h5"), "test", 1.0f / 255.0f);
  const DatasetInfo& info = source->info();
  EXPECT_EQ(info.size, 11);
  EXPECT_EQ(info.feature_shape, (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(info.feature_dim, 20);
  EXPECT_EQ(info.num_classes, 10);
  EXPECT_EQ(info.target_dim, 0);
  EXPECT_EQ(info.description, path("d.h5") + ":/test");
  std::vector<float> x(11 * 20);
  std::vector<int32_t> labels(11);
  std::vector<int64_t> rows = all_rows(11);
  source->read(rows.data(), 11, x.data(), labels.data(), nullptr);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i], float(splits[1].x.bytes[i]) * (1.0f / 255.0f));
  for (int i = 0; i < 11; ++i) EXPECT_EQ(labels[size_t(i)], splits[1].y.bytes[size_t(i)]);
}

TEST_F(DataHdf5, RegressionRoundTripWithCompression) {
  Rng rng(4);
  std::vector<float> x(20 * 3), y(20 * 2);
  for (float& v : x) v = float(rng.normal());
  for (float& v : y) v = float(rng.normal());
  DatasetSplit s{"train", make_array({20, 3}, x), make_array({20, 2}, y)};
  write_hdf5_dataset(path("r.h5"), {s}, 0, {.chunk_rows = 3, .deflate_level = 4});
  DatasetSplit back = load_hdf5_split(path("r.h5"), "train");
  EXPECT_EQ(back.x.bytes, s.x.bytes);
  EXPECT_EQ(back.y.bytes, s.y.bytes);
  auto source = open_dataset(path("r.h5"), "train");
  EXPECT_EQ(source->info().target_dim, 2);
  EXPECT_EQ(source->info().num_classes, 0);
  std::vector<float> gx(3), gy(2);
  int64_t row = 13;
  source->read(&row, 1, gx.data(), nullptr, gy.data());
  EXPECT_EQ(gx, std::vector<float>(x.begin() + 39, x.begin() + 42));
  EXPECT_EQ(gy, std::vector<float>(y.begin() + 26, y.begin() + 28));
}

TEST_F(DataHdf5, PerRowReadsMatchTheCachedSplit) {
  write_hdf5_dataset(path("d.h5"), {image_split("train", 300, 3)}, 10, {.chunk_rows = 16});
  auto cached = open_hdf5_split(path("d.h5"), "train", {.scale = 0.5f});
  auto direct = open_hdf5_split(path("d.h5"), "train", {.scale = 0.5f, .cache_limit_bytes = 0});
  // Unordered, with runs and a duplicate: selections must come back in request order.
  std::vector<int64_t> rows = {299, 5, 6, 7, 120, 5, 0, 64, 63};
  const size_t n = rows.size();
  std::vector<float> xa(n * 20), xb(n * 20);
  std::vector<int32_t> la(n), lb(n);
  cached->read(rows.data(), int64_t(n), xa.data(), la.data(), nullptr);
  direct->read(rows.data(), int64_t(n), xb.data(), lb.data(), nullptr);
  EXPECT_EQ(xa, xb);
  EXPECT_EQ(la, lb);
  InputOptions o;
  o.global_batch = 64;
  o.num_replicas = 2;
  o.local_replicas = 1;
  o.first_replica = 1;
  DistributedInput a(cached, o), b(direct, o);
  std::vector<ReplicaBatch> ba, bb;
  for (int step = 0; step < 5; ++step) {
    ASSERT_TRUE(a.next(ba));
    ASSERT_TRUE(b.next(bb));
    ASSERT_EQ(ba[0].rows, bb[0].rows);
    EXPECT_TRUE(std::equal(ba[0].x, ba[0].x + ba[0].rows * 20, bb[0].x));
    EXPECT_TRUE(std::equal(ba[0].labels, ba[0].labels + ba[0].rows, bb[0].labels));
  }
}

TEST_F(DataHdf5, WritesAtomicallyAndNeverOverwritesUnlessAsked) {
  write_hdf5_dataset(path("d.h5"), {image_split("train", 10, 1)}, 10);
  const auto size_before = fs::file_size(path("d.h5"));
  expect_error([&] { write_hdf5_dataset(path("d.h5"), {image_split("train", 50, 2)}, 10); }, path("d.h5"),
               "already exists");
  EXPECT_EQ(fs::file_size(path("d.h5")), size_before);
  write_hdf5_dataset(path("d.h5"), {image_split("train", 50, 2)}, 10, {.overwrite = true});
  EXPECT_EQ(open_dataset(path("d.h5"), "train")->info().size, 50);
  // A failed write leaves neither the target nor a temp file behind.
  DatasetSplit bad = image_split("train", 10, 1);
  bad.y.bytes[3] = 12;
  expect_error([&] { write_hdf5_dataset(path("bad.h5"), {bad}, 10); }, path("bad.h5"), "label 12");
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) files += entry.is_regular_file();
  EXPECT_EQ(files, 1);
  expect_error([&] { write_hdf5_dataset(path("no/such/dir.h5"), {image_split("train", 10, 1)}, 10); },
               path("no/such/dir.h5"), "does not exist");
}

// ---- malformed files, built with the raw HDF5 API ----

struct RawFile {
  explicit RawFile(const std::string& path) {
    hdf5_quiet();
    file = h5_check_id(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), path);
  }
  hid_t group(const std::string& name) {
    groups.push_back(h5_check_id(H5Gcreate2(file.get(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), name));
    return groups.back().get();
  }
  void dataset(hid_t where, const char* name, hid_t type, std::vector<hsize_t> dims, const void* data) {
    H5Handle space = h5_check_id(H5Screate_simple(int(dims.size()), dims.data(), nullptr), name);
    H5Handle d = h5_check_id(H5Dcreate2(where, name, type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), name);
    if (data != nullptr) h5_check_status(H5Dwrite(d.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), name);
  }
  H5Handle file;
  std::vector<H5Handle> groups;
};

TEST_F(DataHdf5, MissingNotHdf5TruncatedAndCorruptFiles) {
  expect_error([&] { open_dataset(path("none.h5"), "train"); }, path("none.h5"), "no such file");
  std::ofstream(path("text.h5")) << "just some text, not a dataset\n";
  expect_error([&] { open_dataset(path("text.h5"), "train"); }, path("text.h5"), "not an HDF5 file");

  write_hdf5_dataset(path("good.h5"), {image_split("train", 2000, 1)}, 10);
  std::string bytes;
  {
    std::ifstream in(path("good.h5"), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::ofstream(path("cut.h5"), std::ios::binary).write(bytes.data(), std::streamsize(bytes.size() / 2));
  expect_error([&] { open_dataset(path("cut.h5"), "train"); }, path("cut.h5"), "truncated");
  std::string garbled = bytes;
  for (size_t i = 8; i < 200; ++i) garbled[i] = char(0xA5);
  std::ofstream(path("garbled.h5"), std::ios::binary).write(garbled.data(), std::streamsize(garbled.size()));
  expect_error([&] { open_dataset(path("garbled.h5"), "train"); }, path("garbled.h5"), "corrupt");
}

TEST_F(DataHdf5, MissingSplitOrDatasetsAndMismatchedRows) {
  const uint8_t x[6] = {1, 2, 3, 4, 5, 6};
  const int64_t y[3] = {0, 1, 2};
  {
    RawFile f(path("m.h5"));
    h5_write_attr_int(f.file.get(), "num_classes", 3, "m.h5");
    f.dataset(f.group("only_x"), "x", H5T_NATIVE_UINT8, {3, 2}, x);
    f.dataset(f.group("only_y"), "y", H5T_NATIVE_INT64, {3}, y);
    hid_t g = f.group("mismatch");
    f.dataset(g, "x", H5T_NATIVE_UINT8, {3, 2}, x);
    f.dataset(g, "y", H5T_NATIVE_INT64, {2}, y);
    g = f.group("empty");
    f.dataset(g, "x", H5T_NATIVE_UINT8, {0, 2}, nullptr);
    f.dataset(g, "y", H5T_NATIVE_INT64, {0}, nullptr);
  }
  const std::string p = path("m.h5");
  expect_error([&] { open_dataset(p, "validation"); }, p, "no split '/validation'");
  expect_error([&] { open_dataset(p, "only_x"); }, p + ":/only_x/y", "is missing");
  expect_error([&] { open_dataset(p, "only_y"); }, p + ":/only_y/x", "is missing");
  expect_error([&] { open_dataset(p, "mismatch"); }, p + ":/mismatch", "x has 3 rows but y has 2");
  expect_error([&] { open_dataset(p, "empty"); }, p + ":/empty/x", "zero rows");
}

TEST_F(DataHdf5, UnsupportedTypesRanksAndBadValues) {
  const int16_t wide[6] = {1, 2, 3, 4, 5, 6};
  const uint8_t x[6] = {1, 2, 3, 4, 5, 6};
  const float fx[6] = {1, 2, NAN, 4, 5, 6};
  const int64_t y[3] = {0, 1, 2}, bad_y[3] = {0, 7, 1};
  {
    RawFile f(path("t.h5"));
    h5_write_attr_int(f.file.get(), "num_classes", 3, "t.h5");
    hid_t g = f.group("int16");
    f.dataset(g, "x", H5T_NATIVE_INT16, {3, 2}, wide);
    f.dataset(g, "y", H5T_NATIVE_INT64, {3}, y);
    g = f.group("rank1");
    f.dataset(g, "x", H5T_NATIVE_UINT8, {6}, x);
    f.dataset(g, "y", H5T_NATIVE_INT64, {3}, y);
    g = f.group("labels2d");
    f.dataset(g, "x", H5T_NATIVE_UINT8, {3, 2}, x);
    f.dataset(g, "y", H5T_NATIVE_INT64, {3, 1}, y);
    g = f.group("out_of_range");
    f.dataset(g, "x", H5T_NATIVE_UINT8, {3, 2}, x);
    f.dataset(g, "y", H5T_NATIVE_INT64, {3}, bad_y);
    g = f.group("nan");
    f.dataset(g, "x", H5T_NATIVE_FLOAT, {3, 2}, fx);
    f.dataset(g, "y", H5T_NATIVE_INT64, {3}, y);
  }
  const std::string p = path("t.h5");
  expect_error([&] { open_dataset(p, "int16"); }, p + ":/int16/x", "unsupported dtype int16");
  expect_error([&] { open_dataset(p, "rank1"); }, p + ":/rank1/x", "unsupported rank 1");
  expect_error([&] { open_dataset(p, "labels2d"); }, p + ":/labels2d/y", "unsupported rank 2");
  expect_error([&] { open_dataset(p, "out_of_range"); }, p + ":/out_of_range/y", "label 7 at row 1");
  expect_error([&] { open_dataset(p, "nan"); }, p + ":/nan/x", "non-finite");
  // A split served per row is read whole by the trial read at open...
  expect_error([&] { open_hdf5_split(p, "nan", {.cache_limit_bytes = 0}); }, p + ":/nan/x", "row 1 holds a non-finite");
  // ...and without it, per-row reads find a NaN when they read its row.
  auto direct = open_hdf5_split(p, "nan", {.cache_limit_bytes = 0, .trial_read = false});
  float out[2];
  int64_t row = 0;
  direct->read(&row, 1, out, nullptr, nullptr);
  row = 1;
  expect_error([&] { direct->read(&row, 1, out, nullptr, nullptr); }, p + ":/nan/x", "row 1 holds a non-finite");
}

TEST_F(DataHdf5, RootAttributesAreChecked) {
  const uint8_t x[6] = {1, 2, 3, 4, 5, 6};
  const int64_t y[3] = {0, 1, 2};
  for (const char* name : {"nolabels.h5", "format.h5"}) {
    RawFile f(path(name));
    if (std::string(name) == "format.h5") {
      h5_write_attr_int(f.file.get(), "num_classes", 3, name);
      h5_write_attr_string(f.file.get(), "format", "something-else", name);
    }
    hid_t g = f.group("train");
    f.dataset(g, "x", H5T_NATIVE_UINT8, {3, 2}, x);
    f.dataset(g, "y", H5T_NATIVE_INT64, {3}, y);
  }
  expect_error([&] { open_dataset(path("nolabels.h5"), "train"); }, path("nolabels.h5"), "num_classes");
  expect_error([&] { open_dataset(path("format.h5"), "train"); }, path("format.h5"), "something-else");
}

// The format attribute as h5py writes a Python str: a variable-length UTF-8
// string (and a fixed-length UTF-8 one): both read, the right one accepted.
TEST_F(DataHdf5, Utf8StringAttributesAreRead) {
  const uint8_t x[6] = {1, 2, 3, 4, 5, 6};
  const int64_t y[3] = {0, 1, 2};
  for (const bool variable : {true, false}) {
    for (const std::string format : {"lockstep-dataset", "other-format"}) {
      const std::string name = std::string(variable ? "vlen_" : "fixed_") + format + ".h5";
      {
        RawFile f(path(name));
        h5_write_attr_int(f.file.get(), "num_classes", 3, name);
        H5Handle type(H5Tcopy(H5T_C_S1));
        H5Tset_size(type.get(), variable ? H5T_VARIABLE : format.size());
        H5Tset_cset(type.get(), H5T_CSET_UTF8);
        H5Handle space = h5_check_id(H5Screate(H5S_SCALAR), name);
        H5Handle attr = h5_check_id(H5Acreate2(f.file.get(), "format", type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), name);
        const char* text = format.c_str();
        h5_check_status(variable ? H5Awrite(attr.get(), type.get(), &text) : H5Awrite(attr.get(), type.get(), text), name);
        hid_t g = f.group("train");
        f.dataset(g, "x", H5T_NATIVE_UINT8, {3, 2}, x);
        f.dataset(g, "y", H5T_NATIVE_INT64, {3}, y);
      }
      if (format == "lockstep-dataset") {
        EXPECT_EQ(open_dataset(path(name), "train")->info().size, 3) << name;
      } else {
        expect_error([&] { open_dataset(path(name), "train"); }, path(name), "other-format");
      }
    }
  }
}

}  // namespace
}  // namespace lockstep
