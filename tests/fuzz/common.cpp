// Temp files for fuzz inputs and the abort paths that turn an unexpected
// exception or a broken property into a crash the fuzzer records.
#include "tests/fuzz/common.h"

#include <hdf5.h>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "data/hdf5_util.h"

namespace lockstep::fuzz {

namespace fs = std::filesystem;

namespace {

const fs::path& scratch_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("lockstep-fuzz-" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

}  // namespace

TempFile::TempFile(const uint8_t* data, size_t size, const std::string& suffix) {
  // A new name per input: nothing cached per file (by HDF5 or by lockstep) can
  // carry over from one input to the next.
  static std::atomic<uint64_t> counter{0};
  path_ = (scratch_dir() / ("input-" + std::to_string(counter++) + suffix)).string();
  std::ofstream out(path_, std::ios::binary | std::ios::trunc);
  if (size > 0) out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path_.c_str());
    std::abort();
  }
}

TempFile::~TempFile() {
  std::error_code ec;
  fs::remove(path_, ec);
}

void unexpected_exception(const char* target, const std::exception& e) {
  std::fprintf(stderr, "fuzz %s: unexpected exception (not lockstep's own error type): %s\n", target,
               e.what());
  std::abort();
}

Model model_file_model() {
  return Model({{6, Activation::kRelu, 0.0f}}, 5, 3, LossKind::kSoftmaxCrossEntropy);
}

void check_hdf5_closed(const char* target) {
  Hdf5Lock lock(hdf5_mutex());
  const ssize_t open = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  if (open != 0) property_failed(target, std::to_string(open) + " HDF5 objects are still open after the input");
}

void property_failed(const char* target, const std::string& what) {
  std::fprintf(stderr, "fuzz %s: property failed: %s\n", target, what.c_str());
  std::abort();
}

}  // namespace lockstep::fuzz
