// Model files: round trip, architecture mismatch, and damaged files refused
// with a message naming the file; a failed write leaves the old file intact;
// pruning keeps the newest checkpoints and never the one just written.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <vector>

#include <hdf5.h>

#include "data/input.h"
#include "src/checkpoint.h"

namespace lockstep {
namespace {

namespace fs = std::filesystem;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("lockstep-ckpt-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const char* name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

SavedState state_for(const Model& m) {
  SavedState s;
  s.config_yaml = "data: {path: x}\n";
  s.params.resize(size_t(m.num_params()));
  for (size_t i = 0; i < s.params.size(); ++i) s.params[i] = 0.001f * float(i) - 0.5f;
  s.slots.emplace_back("m", std::vector<float>(s.params.size(), 0.25f));
  s.updates = 17;
  s.epoch = 2;
  s.step_in_epoch = 5;
  return s;
}

TEST_F(CheckpointTest, RoundTripIsExact) {
  Model m({{6, Activation::kGelu, 0.0f}}, 5, 3, LossKind::kSoftmaxCrossEntropy);
  const SavedState s = state_for(m);
  save_state(path("a.h5"), m, s);
  const SavedState r = load_state(path("a.h5"), &m);
  EXPECT_EQ(r.params, s.params);
  ASSERT_EQ(r.slots.size(), 1u);
  EXPECT_EQ(r.slots[0].first, "m");
  EXPECT_EQ(r.slots[0].second, s.slots[0].second);
  EXPECT_EQ(r.updates, 17);
  EXPECT_EQ(r.epoch, 2);
  EXPECT_EQ(r.step_in_epoch, 5);
  EXPECT_EQ(r.config_yaml, s.config_yaml);
}

TEST_F(CheckpointTest, DifferentModelIsRefusedNamingBoth) {
  Model m({{6, Activation::kRelu, 0.0f}}, 5, 3, LossKind::kSoftmaxCrossEntropy);
  Model other({{7, Activation::kRelu, 0.0f}}, 5, 3, LossKind::kSoftmaxCrossEntropy);
  save_state(path("a.h5"), m, state_for(m));
  try {
    load_state(path("a.h5"), &other);
    FAIL();
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("different model"), std::string::npos);
    EXPECT_NE(msg.find("6,relu"), std::string::npos);
    EXPECT_NE(msg.find("7,relu"), std::string::npos);
  }
}

TEST_F(CheckpointTest, DamagedFilesAreRefused) {
  Model m({{6, Activation::kRelu, 0.0f}}, 5, 3, LossKind::kSoftmaxCrossEntropy);
  save_state(path("good.h5"), m, state_for(m));
  const auto size = fs::file_size(path("good.h5"));
  for (uintmax_t keep : {uintmax_t(0), uintmax_t(8), uintmax_t(600), size / 2, size - 16}) {
    fs::copy_file(path("good.h5"), path("cut.h5"), fs::copy_options::overwrite_existing);
    fs::resize_file(path("cut.h5"), keep);
    EXPECT_THROW(load_state(path("cut.h5"), &m), DataError) << "kept " << keep << " bytes";
  }
  EXPECT_THROW(load_state(path("none.h5"), &m), DataError);
}

TEST_F(CheckpointTest, FailedWriteKeepsThePreviousFile) {
  Model m({{6, Activation::kRelu, 0.0f}}, 5, 3, LossKind::kSoftmaxCrossEntropy);
  const SavedState s = state_for(m);
  save_state(path("a.h5"), m, s);
  SavedState broken = s;
  broken.params.clear();  // a writer with nothing to write throws mid-way
  broken.params.shrink_to_fit();
  Model bigger({{600, Activation::kRelu, 0.0f}}, 500, 3, LossKind::kSoftmaxCrossEntropy);
  EXPECT_ANY_THROW(save_state(path("a.h5"), bigger, broken));
  EXPECT_EQ(load_state(path("a.h5"), &m).params, s.params);
  for (const auto& e : fs::directory_iterator(dir_)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  }
}

// A resumed run may write a checkpoint with a lower step than older files in the
// folder: it is the run's newest and must survive pruning, counting as one kept.
TEST_F(CheckpointTest, PruningKeepsTheCheckpointJustWritten) {
  for (int64_t step : {10, 20, 30, 40}) std::ofstream(checkpoint_path(dir_.string(), step)) << "x";
  const std::string current = checkpoint_path(dir_.string(), 15);
  std::ofstream(current) << "x";
  prune_checkpoints(dir_.string(), 1, current);
  EXPECT_EQ(list_checkpoints(dir_.string()), std::vector<std::string>{current});
  for (int64_t step : {10, 20, 30, 40}) std::ofstream(checkpoint_path(dir_.string(), step)) << "x";
  prune_checkpoints(dir_.string(), 3, current);  // the current one and the two newest others
  EXPECT_EQ(list_checkpoints(dir_.string()),
            (std::vector<std::string>{checkpoint_path(dir_.string(), 40), checkpoint_path(dir_.string(), 30), current}));
  prune_checkpoints(dir_.string(), 2);  // no protected file: the newest two
  EXPECT_EQ(list_checkpoints(dir_.string()),
            (std::vector<std::string>{checkpoint_path(dir_.string(), 40), checkpoint_path(dir_.string(), 30)}));
}

// Weights must be finite, as features must (a transposed kernel: bad_input_test.sh).
TEST_F(CheckpointTest, NonFiniteWeightsAreRefused) {
  Model m({{6, Activation::kRelu, 0.0f}}, 5, 3, LossKind::kSoftmaxCrossEntropy);
  SavedState s = state_for(m);
  s.params[3] = std::numeric_limits<float>::quiet_NaN();
  save_state(path("nan.h5"), m, s);
  try {
    load_state(path("nan.h5"), &m);
    ADD_FAILURE() << "NaN weights accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("holds NaN"), std::string::npos) << e.what();
  }
}

// Opens `file` for writing and runs f on its root (HDF5 C API), to damage a
// written file the way a bad disk or an edit would.
template <typename F>
void edit_file(const std::string& file, F&& f) {
  const hid_t h = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(h, 0) << file;
  f(h);
  H5Fclose(h);
}

// Finite values changed after lockstep wrote them pass every value check; the
// checksum refuses them, naming the file. A file written before checksums (no
// attribute) still loads.
TEST_F(CheckpointTest, ChangedValuesAreRefusedByTheChecksum) {
  Model m({{6, Activation::kRelu, 0.0f}}, 5, 3, LossKind::kSoftmaxCrossEntropy);
  const SavedState s = state_for(m);
  const auto refused = [&](const char* file, const std::string& what) {
    try {
      load_state(path(file), &m);
      ADD_FAILURE() << what << " was accepted";
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(path(file) + ": checksum mismatch"), std::string::npos)
          << what << ": " << e.what();
    }
  };
  const float big[2] = {1e30f, -7.0f};
  save_state(path("w.h5"), m, s);
  edit_file(path("w.h5"), [&](hid_t root) {
    const hid_t ds = H5Dopen2(root, "weights/dense_1/kernel", H5P_DEFAULT);
    ASSERT_GE(ds, 0);
    const hsize_t start[2] = {1, 2}, count[2] = {1, 2};
    const hid_t space = H5Dget_space(ds);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
    const hid_t mem = H5Screate_simple(2, count, nullptr);
    EXPECT_GE(H5Dwrite(ds, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, big), 0);
    H5Sclose(mem), H5Sclose(space), H5Dclose(ds);
  });
  refused("w.h5", "a changed weight");
  save_state(path("m.h5"), m, s);
  edit_file(path("m.h5"), [&](hid_t root) {
    const hid_t ds = H5Dopen2(root, "optimizer/m", H5P_DEFAULT);
    ASSERT_GE(ds, 0);
    std::vector<float> all(s.slots[0].second);
    all[4] = 0.5f;
    EXPECT_GE(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, all.data()), 0);
    H5Dclose(ds);
  });
  refused("m.h5", "a changed optimizer slot");
  save_state(path("e.h5"), m, s);
  edit_file(path("e.h5"), [](hid_t root) {
    const hid_t a = H5Aopen(root, "epoch", H5P_DEFAULT);
    const int64_t later = 9;
    EXPECT_GE(H5Awrite(a, H5T_NATIVE_INT64, &later), 0);
    H5Aclose(a);
  });
  refused("e.h5", "a changed training position");

  save_state(path("old.h5"), m, s);
  edit_file(path("old.h5"), [](hid_t root) { EXPECT_GE(H5Adelete(root, "checksum"), 0); });
  EXPECT_EQ(load_state(path("old.h5"), &m).params, s.params) << "a file without a checksum";
}

// Variances are never negative: a file whose moving_variance or Adam v says
// otherwise is corrupt (the first sqrt would make NaN), and is refused by name.
TEST_F(CheckpointTest, NegativeVariancesAreRefused) {
  LayerConfig bn;
  bn.type = LayerType::kBatchNorm;
  Model m({bn}, 4, 3, LossKind::kSoftmaxCrossEntropy);
  SavedState s = state_for(m);
  s.params.assign(size_t(m.arena_size()), 0.5f);
  const auto expect_refused = [&](const char* file, const char* name) {
    save_state(path(file), m, s);
    try {
      load_state(path(file), &m);
      ADD_FAILURE() << "a negative " << name << " was accepted";
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find("'" + std::string(name) + "' holds a negative variance"),
                std::string::npos) << e.what();
    }
  };
  for (const auto& [layer, t] : m.all_tensors()) {
    if (t.name == "moving_variance") s.params[size_t(t.offset + 1)] = -5.0f;
  }
  expect_refused("bn.h5", "moving_variance");
  s.params.assign(size_t(m.arena_size()), 0.5f);
  s.slots = {{"m", std::vector<float>(size_t(m.num_params()), 0.0f)},
             {"v", std::vector<float>(size_t(m.num_params()), 0.25f)}};
  s.slots[1].second[2] = -1e-3f;
  expect_refused("v.h5", "v");
}

}  // namespace
}  // namespace lockstep
