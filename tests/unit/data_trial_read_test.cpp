// hdf5_trial_read: a reader that crashes, hangs or throws in the checking child
// ends in one DataError in the parent, which never runs the reader itself; a
// reader that succeeds runs in the child first. Also the storage check that
// stops a tiny file from declaring gigabytes of never-written rows.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "data/hdf5_dataset.h"
#include "data/hdf5_util.h"

namespace lockstep {
namespace {

std::string error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const DataError& e) {
    return e.what();
  }
  return "(no DataError)";
}

TEST(DataTrialRead, CrashInTheChildIsACorruptFileError) {
  int runs_here = 0;
  const std::string msg = error_of([&] {
    hdf5_trial_read("/data/f.h5", [&] {
      ++runs_here;
      std::raise(SIGSEGV);
    });
  });
  EXPECT_EQ(msg.rfind("/data/f.h5 is corrupt: the HDF5 library failed reading it (", 0), 0u) << msg;
  EXPECT_NE(msg.find("Segmentation fault"), std::string::npos) << msg;
  EXPECT_EQ(runs_here, 0);  // it ran in the child only
  EXPECT_NE(error_of([] { hdf5_trial_read("a.h5", [] { std::abort(); }); }).find("Aborted"), std::string::npos);
}

TEST(DataTrialRead, ErrorInTheChildIsRethrownWithItsMessage) {
  int runs_here = 0;
  const std::string msg = error_of([&] {
    hdf5_trial_read("a.h5", [&] {
      ++runs_here;
      throw DataError("a.h5:/train/y: label 12 in row 3 is outside [0, 10)");
    });
  });
  EXPECT_EQ(msg, "a.h5:/train/y: label 12 in row 3 is outside [0, 10)");
  EXPECT_EQ(runs_here, 0);
  const std::string other = error_of([] { hdf5_trial_read("b.h5", [] { throw std::bad_alloc(); }); });
  EXPECT_EQ(other.rfind("b.h5: cannot read it: ", 0), 0u) << other;
}

TEST(DataTrialRead, HangIsKilledAfterTheTimeout) {
  const auto start = std::chrono::steady_clock::now();
  const std::string msg = error_of([] {
    hdf5_trial_read("slow.h5", [] { std::this_thread::sleep_for(std::chrono::seconds(30)); }, 1);
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(msg, "slow.h5 is corrupt: the HDF5 library did not finish reading it within 1 s");
  EXPECT_LT(seconds, 10.0);
}

TEST(DataTrialRead, SuccessReturnsAndTheChildCanTakeTheHdf5Lock) {
  // The parent holds the lock on another thread's behalf at the fork; the child
  // must still be able to lock (a fresh lock of its own).
  EXPECT_NO_THROW(hdf5_trial_read("ok.h5", [] {
    Hdf5Lock lock(hdf5_mutex());
    if (H5open() < 0) throw DataError("H5open failed");
  }));
  std::thread other([] { Hdf5Lock lock(hdf5_mutex()); });
  other.join();
}

TEST(DataTrialRead, NeverWrittenChunksAreRefusedBeforeAnyAllocation) {
  char pattern[] = "/tmp/lockstep-trial-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::string path = std::string(pattern) + "/sparse.h5";
  {
    Hdf5Lock lock(hdf5_mutex());
    H5Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    h5_write_attr_int(file.get(), "num_classes", 2, path);
    H5Handle group(H5Gcreate2(file.get(), "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    // 2^30 rows of 64 bytes (64 GiB) declared, one chunk written: a 10 KiB file.
    const hsize_t dims[2] = {hsize_t(1) << 30, 64}, chunk[2] = {16, 64};
    H5Handle space(H5Screate_simple(2, dims, nullptr));
    H5Handle create(H5Pcreate(H5P_DATASET_CREATE));
    H5Pset_chunk(create.get(), 2, chunk);
    H5Handle x(H5Dcreate2(group.get(), "x", H5T_STD_U8LE, space.get(), H5P_DEFAULT, create.get(), H5P_DEFAULT));
    const hsize_t y_dims[1] = {dims[0]}, y_chunk[1] = {16};
    H5Handle y_space(H5Screate_simple(1, y_dims, nullptr));
    H5Handle y_create(H5Pcreate(H5P_DATASET_CREATE));
    H5Pset_chunk(y_create.get(), 1, y_chunk);
    H5Handle y(H5Dcreate2(group.get(), "y", H5T_STD_U8LE, y_space.get(), H5P_DEFAULT, y_create.get(), H5P_DEFAULT));
    std::vector<uint8_t> rows(16 * 64, 1);
    const hsize_t start[2] = {0, 0};
    H5Handle file_space(H5Dget_space(x.get()));
    H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, chunk, nullptr);
    H5Handle mem(H5Screate_simple(2, chunk, nullptr));
    ASSERT_GE(H5Dwrite(x.get(), H5T_NATIVE_UINT8, mem.get(), file_space.get(), H5P_DEFAULT, rows.data()), 0);
  }
  const std::string msg = error_of([&] { open_dataset(path, "train"); });
  EXPECT_NE(msg.find(path + ":/train/x: declares shape 1073741824x64 (68719476736 bytes) but the file stores only 1024 bytes"),
            std::string::npos) << msg;
  std::filesystem::remove_all(pattern);
}

}  // namespace
}  // namespace lockstep
