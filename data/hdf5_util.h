// Small shared helpers for the HDF5 C API: the process-wide mutex (the installed
// HDF5 is not thread-safe, so every HDF5 call goes through it), RAII handles,
// error translation into one-line messages, attributes, and atomic file output.
// Used by the dataset sources/writers here and by checkpoints in src/.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "data/input.h"

namespace lockstep {

// Every HDF5 call in the process must hold this lock. It is recursive so that a
// helper called under an outer lock can lock again.
std::recursive_mutex& hdf5_mutex();
using Hdf5Lock = std::lock_guard<std::recursive_mutex>;

// Runs `read` (code that reads `path` through HDF5, e.g. opening a split) first
// in a forked child process, because HDF5 1.10 itself can crash (segfault,
// abort) or hang on a crafted or damaged file, and no check done beforehand can
// rule that out. The child's outcome decides:
//   - it crashed: DataError "<path> is corrupt: the HDF5 library failed reading
//     it (<signal>)"; no HDF5 call in this process touches the file;
//   - it threw: the same error is thrown here (a DataError with the child's
//     message), again without this process touching the file;
//   - it ran past timeout_s: the child is killed, DataError "... did not finish";
//   - it succeeded: returns, and the caller runs `read` itself, safely.
// The child is forked while hdf5_mutex() is held (no other thread is inside
// HDF5), takes a fresh lock of its own, and leaves with _exit (no atexit
// handlers, no MPI, no flushing of the parent's files). Costs one fork plus one
// extra run of `read` (data/README.md has the measurements). AddressSanitizer
// builds skip the child while other threads run (their allocator deadlocks a
// child forked mid-malloc) and simply return.
void hdf5_trial_read(const std::string& path, const std::function<void()>& read, int timeout_s = 600);

// Turns off HDF5's own error-stack printing (done once per process, on the first
// use of hdf5_mutex(), so taking the lock is enough); the helpers below translate
// failures into exceptions instead. Safe to call often, with or without the lock.
void hdf5_quiet();

// The current thread's HDF5 error stack as one line ("outer: innermost cause"),
// or "" when the stack is empty. Call under hdf5_mutex().
std::string hdf5_error_text();

// Owns one HDF5 identifier (file, group, dataset, dataspace, datatype, attribute,
// property list) and closes it, under the mutex, when it goes out of scope.
class H5Handle {
 public:
  H5Handle() = default;
  explicit H5Handle(hid_t id) : id_(id) {}
  ~H5Handle();
  H5Handle(H5Handle&& other) noexcept : id_(other.release()) {}
  H5Handle& operator=(H5Handle&& other) noexcept;
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;

  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }
  hid_t release() {
    hid_t id = id_;
    id_ = -1;
    return id;
  }
  void reset(hid_t id = -1);

 private:
  hid_t id_ = -1;
};

// Throw DataError("<context>: <HDF5's reason>") when an HDF5 call failed.
// h5_check_id returns the identifier wrapped in a handle.
H5Handle h5_check_id(hid_t id, const std::string& context);
void h5_check_status(herr_t status, const std::string& context);

// Attributes on any object (file root, group, dataset). Reading returns nullopt
// when the attribute is absent, and throws DataError when it has the wrong kind.
bool h5_has_attr(hid_t object, const std::string& name);
std::optional<int64_t> h5_read_attr_int(hid_t object, const std::string& name,
                                        const std::string& context);
std::optional<std::string> h5_read_attr_string(hid_t object, const std::string& name,
                                               const std::string& context);
void h5_write_attr_int(hid_t object, const std::string& name, int64_t value,
                       const std::string& context);
void h5_write_attr_string(hid_t object, const std::string& name, const std::string& value,
                          const std::string& context);

// Whether `path` starts with the HDF5 file signature (at offset 0, or at a
// user-block offset 512, 1024, ...). False when it cannot be read.
bool has_hdf5_signature(const std::string& path);

// Writes a file atomically, the one way lockstep writes a whole file: the
// writer fills temp_path() (same folder as the target), or write() does it in one
// go, and commit() flushes it to disk and renames it over the target (IoError
// when either fails). Without commit() (an exception on the way), the temp file
// is removed and the target is untouched.
// check() and the constructor throw OutputPathError when the path is empty, when
// anything is there (a symbolic link too, even a dangling one) and overwrite is
// false, when it is a folder (the message suggests folder/example_name), when it
// is a device, a pipe or a socket or a link to one, or when its folder does not
// exist. With overwrite, a symbolic link is replaced, never its target.
class AtomicOutput {
 public:
  // The constructor's checks alone, for a command to run before any work.
  static void check(const std::string& path, bool overwrite, const std::string& example_name);
  // Only where the path points: not empty, not a folder, in a folder that exists
  // (for a file written in place, such as a metrics stream).
  static void check_place(const std::string& path, const std::string& example_name);
  AtomicOutput(std::string path, bool overwrite, const std::string& example_name = "out.h5");
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }
  // The whole temp file, with plain system calls so that a failure reports the
  // system's reason (ENOSPC, EFBIG, EDQUOT): IoError "PATH: cannot finish writing: REASON".
  void write(std::string_view bytes);
  void commit();
  // write() and commit() at once, replacing whatever file is at path.
  static void replace(const std::string& path, std::string_view bytes);

 private:
  std::string path_;
  std::string temp_path_;
  bool overwrite_ = false;
  bool committed_ = false;
};

}  // namespace lockstep
