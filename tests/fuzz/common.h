// Shared by the fuzz targets: hostile bytes become a file on disk (every reader
// under test takes a path), and the errors lockstep raises on purpose are told
// apart from everything else, which is a bug the fuzzer must record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include "src/model.h"

namespace lockstep::fuzz {

// Writes `size` bytes to a fresh file (a new name every time) in a scratch folder
// of this process; the file is removed when the TempFile goes out of scope.
class TempFile {
 public:
  TempFile(const uint8_t* data, size_t size, const std::string& suffix);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// An exception that is not lockstep's own error type escaped a reader: print it
// and abort, so the fuzzer saves the input (and a replay fails).
[[noreturn]] void unexpected_exception(const char* target, const std::exception& e);

// The model the model-file seeds are written for (and the target reads them with):
// Dense(6, relu) + Dense(3) over 5 inputs.
Model model_file_model();

// Every HDF5 object a reader opened must be closed once it returned or threw
// (and its sources are gone); crashes otherwise, naming what stayed open.
void check_hdf5_closed(const char* target);

// Crashes on purpose when a property that must hold for every input does not.
[[noreturn]] void property_failed(const char* target, const std::string& what);

}  // namespace lockstep::fuzz
