// IDX (MNIST format) files, raw and gzip: byte-exact reads, every malformed
// file as a DataError naming it, conversion into the HDF5 layout, and the real
// Fashion-MNIST files when the machine has them.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "data/hdf5_dataset.h"
#include "data/sources.h"

namespace lockstep {
namespace {

namespace fs = std::filesystem;

// IDX bytes: 00 00 <type> <rank>, big-endian dims, then the data.
std::string idx_bytes(std::vector<uint32_t> dims, const std::vector<uint8_t>& data, uint8_t type = 0x08) {
  std::string out = {0, 0, char(type), char(dims.size())};
  for (uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(char((d >> shift) & 0xff));
  out.append(data.begin(), data.end());
  return out;
}

std::string gzip(const std::string& raw) {
  uLongf bound = compressBound(uLong(raw.size())) + 64;
  std::string out(bound, '\0');
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = uInt(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = uInt(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

class DataIdx : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/lockstep-data-idx-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    for (size_t i = 0; i < 25 * 7 * 6; ++i) pixels_.push_back(uint8_t((i * 37 + 11) % 251));
    for (size_t i = 0; i < 25; ++i) labels_.push_back(uint8_t((i * 3) % 8));
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& bytes) {
    const std::string p = dir_ + "/" + name;
    std::ofstream(p, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
    return p;
  }
  template <typename F>
  void expect_error(F call, const std::string& file, const std::string& words) {
    try {
      call();
      ADD_FAILURE() << "no DataError; expected one about: " << words;
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  }

  std::string dir_;
  std::vector<uint8_t> pixels_, labels_;
};

TEST_F(DataIdx, RawAndGzipReadBackByteExact) {
  const std::string images = idx_bytes({25, 7, 6}, pixels_);
  const std::string raw = write("img-idx3-ubyte", images);
  const std::string packed = write("img-idx3-ubyte.gz", gzip(images));
  for (const std::string& p : {raw, packed}) {
    HostArray a = read_idx(p);
    EXPECT_EQ(a.type, ElementType::kUInt8);
    EXPECT_EQ(a.shape, (std::vector<int64_t>{25, 7, 6}));
    EXPECT_EQ(std::vector<uint8_t>(a.bytes.begin(), a.bytes.end()), pixels_);
  }
  const std::string labels = write("lbl.gz", gzip(idx_bytes({25}, labels_)));
  auto source = open_idx(packed, labels, 2.0f);
  EXPECT_EQ(source->info().size, 25);
  EXPECT_EQ(source->info().feature_shape, (std::vector<int64_t>{7, 6}));
  EXPECT_EQ(source->info().num_classes, 8);  // largest label (7) + 1
  std::vector<float> x(42);
  int32_t label = -1;
  int64_t row = 9;
  source->read(&row, 1, x.data(), &label, nullptr);
  EXPECT_EQ(label, labels_[9]);
  for (size_t j = 0; j < 42; ++j) EXPECT_EQ(x[j], 2.0f * pixels_[9 * 42 + j]);
}

TEST_F(DataIdx, MalformedFilesNameTheFileAndTheProblem) {
  expect_error([&] { read_idx(dir_ + "/absent"); }, dir_ + "/absent", "no such file");
  const std::string zip = write("zip", "PK\x03\x04 not an idx file");
  expect_error([&] { read_idx(zip); }, zip, "bad magic 50 4b 03 04");
  const std::string shorts = write("shorts", idx_bytes({3}, {0, 1, 0, 2, 0, 3}, 0x0B));
  expect_error([&] { read_idx(shorts); }, shorts, "element type 0x0b");
  std::vector<uint8_t> fewer(pixels_.begin(), pixels_.end() - 10);
  const std::string cut = write("cut", idx_bytes({25, 7, 6}, fewer));
  expect_error([&] { read_idx(cut); }, cut, "1050 bytes of data but the file holds 1040 (truncated)");
  std::vector<uint8_t> more = pixels_;
  more.push_back(1);
  const std::string extra = write("extra", idx_bytes({25, 7, 6}, more));
  expect_error([&] { read_idx(extra); }, extra, "(trailing bytes)");
  const std::string header = write("header", std::string{0, 0, 8, 3, 0, 0});
  expect_error([&] { read_idx(header); }, header, "truncated IDX header");

  const std::string packed = gzip(idx_bytes({25, 7, 6}, pixels_));
  const std::string half = write("half.gz", packed.substr(0, packed.size() / 2));
  expect_error([&] { read_idx(half); }, half, "gzip error");
  std::string flipped = packed;
  for (size_t i = 20; i < 60; ++i) flipped[i] = char(flipped[i] ^ 0x5a);
  const std::string bad = write("bad.gz", flipped);
  expect_error([&] { read_idx(bad); }, bad, "gzip error");

  const std::string images = write("i", idx_bytes({25, 7, 6}, pixels_));
  const std::string few = write("l", idx_bytes({24}, std::vector<uint8_t>(labels_.begin(), labels_.end() - 1)));
  expect_error([&] { open_idx(images, few); }, few, "holds 25 images but");
}

TEST_F(DataIdx, ConvertsToTheHdf5LayoutByteExact) {
  const std::string ti = write("ti.gz", gzip(idx_bytes({25, 7, 6}, pixels_)));
  const std::string tl = write("tl", idx_bytes({25}, labels_));
  std::vector<uint8_t> test_pixels(pixels_.begin(), pixels_.begin() + 5 * 42);
  const std::string vi = write("vi", idx_bytes({5, 7, 6}, test_pixels));
  const std::string vl = write("vl", idx_bytes({5}, {9, 0, 1, 2, 3}));
  const std::string out = dir_ + "/converted.h5";
  ConvertSummary summary = convert_idx_to_hdf5(ti, tl, vi, vl, out);
  EXPECT_EQ(summary.train_rows, 25);
  EXPECT_EQ(summary.test_rows, 5);
  EXPECT_EQ(summary.feature_shape, (std::vector<int64_t>{7, 6}));
  EXPECT_EQ(summary.num_classes, 10);  // the test labels reach 9
  EXPECT_EQ(summary.file_bytes, int64_t(fs::file_size(out)));
  EXPECT_NE(summary.to_string().find("train 25 and test 5"), std::string::npos) << summary.to_string();
  int64_t classes = 0;
  DatasetSplit train = load_hdf5_split(out, "train", &classes);
  EXPECT_EQ(classes, 10);
  EXPECT_EQ(std::vector<uint8_t>(train.x.bytes.begin(), train.x.bytes.end()), pixels_);
  for (int64_t i = 0; i < 25; ++i) EXPECT_EQ(train.y.as<int64_t>()[i], labels_[size_t(i)]);
  DatasetSplit test = load_hdf5_split(out, "test");
  EXPECT_EQ(std::vector<uint8_t>(test.x.bytes.begin(), test.x.bytes.end()), test_pixels);

  expect_error([&] { convert_idx_to_hdf5(ti, tl, vi, vl, out); }, out, "already exists");
  EXPECT_NO_THROW(convert_idx_to_hdf5(ti, tl, vi, vl, out, {.overwrite = true}));
  const std::string wrong = write("wrong", idx_bytes({5, 6, 7}, test_pixels));
  expect_error([&] { convert_idx_to_hdf5(ti, tl, wrong, vl, dir_ + "/x.h5"); }, wrong, "images are 6x7");
  EXPECT_FALSE(fs::exists(dir_ + "/x.h5"));
}

TEST_F(DataIdx, ConvertsTheRealFashionMnist) {
  const std::string d = "/usr/share/datasets/fashion-mnist/";
  const std::string files[4] = {d + "train-images-idx3-ubyte.gz", d + "train-labels-idx1-ubyte.gz",
                                d + "t10k-images-idx3-ubyte.gz", d + "t10k-labels-idx1-ubyte.gz"};
  for (const std::string& f : files)
    if (!fs::exists(f)) GTEST_SKIP() << "SKIPPED LOUDLY: Fashion-MNIST is not installed (" << f << " is absent)";
  const std::string out = dir_ + "/fashion_mnist.h5";
  ConvertSummary s = convert_idx_to_hdf5(files[0], files[1], files[2], files[3], out);
  EXPECT_EQ(s.train_rows, 60000);
  EXPECT_EQ(s.test_rows, 10000);
  EXPECT_EQ(s.feature_shape, (std::vector<int64_t>{28, 28}));
  EXPECT_EQ(s.num_classes, 10);
  auto test = open_dataset(out, "test", 1.0f / 255.0f);
  EXPECT_EQ(test->info().size, 10000);
  DatasetSplit raw = load_hdf5_split(out, "test");
  // Fashion-MNIST's test split holds exactly 1000 images of each class.
  std::vector<int64_t> per_class(10, 0);
  for (int64_t i = 0; i < 10000; ++i) per_class[size_t(raw.y.as<int64_t>()[i])]++;
  EXPECT_EQ(per_class, std::vector<int64_t>(10, 1000));
}

}  // namespace
}  // namespace lockstep
