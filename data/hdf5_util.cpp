// HDF5 helpers shared by datasets and checkpoints: one process-wide lock, quiet
// error handling translated into DataError, RAII handles, attributes, and
// write-to-temp-then-rename output.
#include "data/hdf5_util.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LOCKSTEP_ASAN 1
#endif
#elif defined(__SANITIZE_ADDRESS__)
#define LOCKSTEP_ASAN 1
#endif
#ifdef LOCKSTEP_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace lockstep {

namespace fs = std::filesystem;

namespace {

// A pointer, so that a child forked by hdf5_trial_read can swap in a fresh lock:
// the parent's lock is held, in the child, by a thread that no longer exists.
std::recursive_mutex*& mutex_slot() {
  static std::recursive_mutex* slot = new std::recursive_mutex;
  return slot;
}

}  // namespace

std::recursive_mutex& hdf5_mutex() {
  // Set up once, during the first use of the lock: no HDF5 call can run before
  // it (they all take the lock), and no lock is needed while the static is built.
  // Silenced, and without HDF5's exit-time cleanup: lockstep closes what it opens,
  // and a file whose close failed (its disk full) stays in HDF5's table, where the
  // cleanup at exit closed it again and crashed inside HDF5 (a write error ended
  // in a segmentation fault instead of its exit code).
  static const bool quiet = [] {
    H5dont_atexit();
    return H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) >= 0;
  }();
  (void)quiet;
  return *mutex_slot();
}

void hdf5_quiet() { hdf5_mutex(); }

namespace {

herr_t collect_error(unsigned, const H5E_error2_t* err, void* data) {
  auto* lines = static_cast<std::vector<std::string>*>(data);
  if (err == nullptr || err->desc == nullptr || err->desc[0] == '\0') return 0;
  // A failed file write describes itself over lines ("file write failed: time =
  // ..., filename = ..., errno = 27, error message = 'File too large', buf = ...");
  // keep its head and the system's message.
  std::string desc = err->desc;
  const size_t time = desc.find(": time = "), msg = desc.find("error message = '");
  if (time != std::string::npos && msg != std::string::npos) {
    const size_t begin = msg + 17, end = desc.find('\'', begin);
    desc = desc.substr(0, time) + ": " + desc.substr(begin, end == std::string::npos ? end : end - begin);
  }
  lines->push_back(desc);
  return 0;
}

}  // namespace

std::string hdf5_error_text() {
  Hdf5Lock lock(hdf5_mutex());
  std::vector<std::string> lines;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &lines);
  H5Eclear2(H5E_DEFAULT);
  if (lines.empty()) return "";
  // The outermost line says what failed, the innermost why.
  if (lines.size() == 1 || lines.front() == lines.back()) return lines.front();
  return lines.front() + ": " + lines.back();
}

H5Handle::~H5Handle() { reset(); }

H5Handle& H5Handle::operator=(H5Handle&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

void H5Handle::reset(hid_t id) {
  if (id_ >= 0) {
    Hdf5Lock lock(hdf5_mutex());
    switch (H5Iget_type(id_)) {
      case H5I_FILE: H5Fclose(id_); break;
      case H5I_GROUP: H5Gclose(id_); break;
      case H5I_DATASET: H5Dclose(id_); break;
      case H5I_DATASPACE: H5Sclose(id_); break;
      case H5I_DATATYPE: H5Tclose(id_); break;
      case H5I_ATTR: H5Aclose(id_); break;
      case H5I_GENPROP_LST: H5Pclose(id_); break;
      default: H5Idec_ref(id_); break;
    }
    H5Eclear2(H5E_DEFAULT);
  }
  id_ = id;
}

H5Handle h5_check_id(hid_t id, const std::string& context) {
  h5_check_status(id < 0 ? -1 : 0, context);
  return H5Handle(id);
}

void h5_check_status(herr_t status, const std::string& context) {
  if (status < 0) {
    std::string why = hdf5_error_text();
    throw DataError(context + (why.empty() ? std::string(": HDF5 call failed") : ": " + why));
  }
}

bool h5_has_attr(hid_t object, const std::string& name) {
  Hdf5Lock lock(hdf5_mutex());
  htri_t exists = H5Aexists(object, name.c_str());
  H5Eclear2(H5E_DEFAULT);
  return exists > 0;
}

std::optional<int64_t> h5_read_attr_int(hid_t object, const std::string& name,
                                        const std::string& context) {
  Hdf5Lock lock(hdf5_mutex());
  if (!h5_has_attr(object, name)) return std::nullopt;
  H5Handle attr = h5_check_id(H5Aopen(object, name.c_str(), H5P_DEFAULT),
                              context + ": cannot open attribute '" + name + "'");
  H5Handle type = h5_check_id(H5Aget_type(attr.get()), context + ": attribute '" + name + "'");
  H5Handle space = h5_check_id(H5Aget_space(attr.get()), context + ": attribute '" + name + "'");
  if (H5Tget_class(type.get()) != H5T_INTEGER || H5Sget_simple_extent_npoints(space.get()) != 1)
    throw DataError(context + ": attribute '" + name + "' must be one integer");
  int64_t value = 0;
  h5_check_status(H5Aread(attr.get(), H5T_NATIVE_INT64, &value),
                  context + ": cannot read attribute '" + name + "'");
  return value;
}

std::optional<std::string> h5_read_attr_string(hid_t object, const std::string& name,
                                               const std::string& context) {
  Hdf5Lock lock(hdf5_mutex());
  if (!h5_has_attr(object, name)) return std::nullopt;
  H5Handle attr = h5_check_id(H5Aopen(object, name.c_str(), H5P_DEFAULT),
                              context + ": cannot open attribute '" + name + "'");
  H5Handle type = h5_check_id(H5Aget_type(attr.get()), context + ": attribute '" + name + "'");
  if (H5Tget_class(type.get()) != H5T_STRING)
    throw DataError(context + ": attribute '" + name + "' must be a string");
  // The file's character set (h5py writes UTF-8): HDF5 converts no ASCII <-> UTF-8.
  const H5T_cset_t cset = H5Tget_cset(type.get());
  if (H5Tis_variable_str(type.get()) > 0) {
    char* text = nullptr;
    H5Handle mem(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), cset);
    h5_check_status(H5Aread(attr.get(), mem.get(), &text),
                    context + ": cannot read attribute '" + name + "'");
    std::string value = text != nullptr ? text : "";
    H5free_memory(text);
    return value;
  }
  size_t size = H5Tget_size(type.get());
  std::vector<char> buffer(size + 1, '\0');
  H5Handle mem(H5Tcopy(H5T_C_S1));
  H5Tset_size(mem.get(), size + 1);
  H5Tset_cset(mem.get(), cset);
  h5_check_status(H5Aread(attr.get(), mem.get(), buffer.data()),
                  context + ": cannot read attribute '" + name + "'");
  return std::string(buffer.data());
}

void h5_write_attr_int(hid_t object, const std::string& name, int64_t value,
                       const std::string& context) {
  Hdf5Lock lock(hdf5_mutex());
  H5Handle space = h5_check_id(H5Screate(H5S_SCALAR), context);
  H5Handle attr = h5_check_id(
      H5Acreate2(object, name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
      context + ": cannot create attribute '" + name + "'");
  h5_check_status(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value),
                  context + ": cannot write attribute '" + name + "'");
}

void h5_write_attr_string(hid_t object, const std::string& name, const std::string& value,
                          const std::string& context) {
  Hdf5Lock lock(hdf5_mutex());
  H5Handle type = h5_check_id(H5Tcopy(H5T_C_S1), context);
  h5_check_status(H5Tset_size(type.get(), value.empty() ? 1 : value.size()), context);
  H5Handle space = h5_check_id(H5Screate(H5S_SCALAR), context);
  H5Handle attr = h5_check_id(
      H5Acreate2(object, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
      context + ": cannot create attribute '" + name + "'");
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  h5_check_status(H5Awrite(attr.get(), type.get(), padded.data()),
                  context + ": cannot write attribute '" + name + "'");
}

bool has_hdf5_signature(const std::string& path) {
  static const unsigned char kSignature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  // A user block pushes the superblock to 512, 1024, 2048, ... bytes.
  for (std::streamoff offset = 0; offset <= (std::streamoff(1) << 20);
       offset = offset == 0 ? 512 : offset * 2) {
    unsigned char head[8] = {};
    in.clear();
    in.seekg(offset);
    if (!in.read(reinterpret_cast<char*>(head), 8)) return false;
    if (std::memcmp(head, kSignature, 8) == 0) return true;
  }
  return false;
}

namespace {

// Writes all of bytes to fd, again after an interruption or a short write: 0, or
// the errno of the failure (ENOSPC when the system accepted nothing).
int write_fully(int fd, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : ENOSPC;
    done += size_t(n);
  }
  return 0;
}

// The child's side: run `read`, report "ok" or "error:<message>", and leave
// without running anything of the parent's (atexit handlers, buffered output).
[[noreturn]] void trial_child(int fd, const std::string& path, const std::function<void()>& read) {
  mutex_slot() = new std::recursive_mutex;
  // A crash must end the child by its signal, not in handlers inherited from the
  // parent (crash reporters, fuzzers) that could write files or exit "cleanly".
  for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL}) std::signal(sig, SIG_DFL);
#ifdef LOCKSTEP_ASAN
  // Likewise a sanitizer report (HDF5 reading out of bounds): it still prints,
  // then the child exits, without the parent's death callback (a fuzzer would
  // save the input as a crash of the parent).
  __sanitizer_set_death_callback(nullptr);
#endif
  const rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);
  std::string reply = "ok";
  try {
    read();
  } catch (const DataError& e) {
    reply = std::string("error:") + e.what();
  } catch (const std::exception& e) {
    reply = "error:" + path + ": cannot read it: " + e.what();
  }
  write_fully(fd, reply);
  ::_exit(0);
}

// Collects the child's reply until it closes the pipe; false on timeout.
bool read_reply(int fd, int timeout_s, std::string& reply) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  char buffer[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, int(std::min<long long>(left, 1000)));
    if (ready < 0 && errno != EINTR) return false;
    if (ready <= 0) continue;
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return true;  // closed: the child exited or died
    reply.append(buffer, size_t(n));
  }
}

#ifdef LOCKSTEP_ASAN
// Threads of this process other than the caller (entries of /proc/self/task).
bool other_threads_running() {
  std::error_code ec;
  int threads = 0;
  for (auto it = fs::directory_iterator("/proc/self/task", ec); !ec && it != fs::directory_iterator();
       it.increment(ec))
    ++threads;
  return threads != 1;
}
#endif

}  // namespace

void hdf5_trial_read(const std::string& path, const std::function<void()>& read, int timeout_s) {
#ifdef LOCKSTEP_ASAN
  // This sanitizer's allocator takes no locks around fork(): a child forked
  // while another thread is inside malloc deadlocks in its first malloc (seen
  // under mpirun). With other threads running, sanitizer builds skip the trial
  // and the caller reads in-process (the fuzz targets are single-threaded).
  if (other_threads_running()) return;
#endif
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw DataError(path + ": cannot create a pipe to check the file: " + std::strerror(errno));
  pid_t pid = -1;
  {
    Hdf5Lock lock(hdf5_mutex());  // no other thread is inside HDF5 at the fork
    pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      trial_child(fds[1], path, read);
    }
  }
  const int fork_errno = errno;
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    throw DataError(path + ": cannot fork a process to check the file: " + std::strerror(fork_errno));
  }
  std::string reply;
  const bool finished = read_reply(fds[0], timeout_s, reply);
  ::close(fds[0]);
  if (!finished) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const std::string corrupt = path + " is corrupt: the HDF5 library failed reading it";
  if (!finished)
    throw DataError(path + " is corrupt: the HDF5 library did not finish reading it within " +
                    std::to_string(timeout_s) + " s");
  if (reply == "ok") return;
  if (reply.rfind("error:", 0) == 0) throw DataError(reply.substr(6));
  if (WIFSIGNALED(status))
    throw DataError(corrupt + " (" + strsignal(WTERMSIG(status)) + " in the checking process)");
  throw DataError(corrupt + " (the checking process exited with status " +
                  std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")");
}

namespace {
// Anything at the path, a symbolic link included even when it points nowhere.
bool entry_exists(const fs::path& p) {
  std::error_code ec;
  return fs::symlink_status(p, ec).type() != fs::file_type::not_found && !ec;
}
}  // namespace

void AtomicOutput::check_place(const std::string& path, const std::string& example_name) {
  std::error_code ec;
  const fs::path target(path);
  const fs::path folder = target.parent_path();
  if (path.empty()) throw OutputPathError("the output path is empty: name the file to write (e.g. " + example_name + ")");
  if (!folder.empty() && !fs::is_directory(folder, ec)) {
    throw OutputPathError(path + (entry_exists(folder) ? ": " + folder.string() + " is not a folder"
                                                       : ": folder " + folder.string() + " does not exist"));
  }
  if (fs::is_directory(target, ec))
    throw OutputPathError(path + ": is a folder; name a file to write (e.g. " + (target / example_name).string() + ")");
}

void AtomicOutput::check(const std::string& path, bool overwrite, const std::string& example_name) {
  check_place(path, example_name);
  // A rename would put a file where a device or a pipe was, or a link to one
  // (/dev/stdout); a link to a regular file, or a dangling one, is replaced.
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (fs::exists(st) && !fs::is_regular_file(st)) {
    throw OutputPathError(path + ": is not a regular file (a device, a pipe or a socket, or a link to one); "
                          "name a file to write");
  }
  if (entry_exists(path) && !overwrite)
    throw OutputPathError(path + ": already exists; refusing to overwrite it (pass --overwrite to replace it)");
}

AtomicOutput::AtomicOutput(std::string path, bool overwrite, const std::string& example_name)
    : path_(std::move(path)), overwrite_(overwrite) {
  check(path_, overwrite_, example_name);
  static std::atomic<uint64_t> counter{0};
  temp_path_ = path_ + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

void AtomicOutput::replace(const std::string& path, std::string_view bytes) {
  AtomicOutput out(path, /*overwrite=*/true, fs::path(path).filename().string());
  out.write(bytes);
  out.commit();
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    std::error_code ec;
    fs::remove(temp_path_, ec);
  }
}

void AtomicOutput::write(std::string_view bytes) {
  const auto fail = [&](int err) {
    throw IoError(path_ + ": cannot finish writing: " + std::strerror(err), std::strerror(err));
  };
  const int fd = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(errno);
  if (const int err = write_fully(fd, bytes); err != 0) {
    ::close(fd);
    fail(err);
  }
  if (::close(fd) != 0) fail(errno);
}

void AtomicOutput::commit() {
  // Flush the bytes to disk before the rename makes them visible under the real name.
  int fd = ::open(temp_path_.c_str(), O_RDONLY);
  if (fd < 0) throw IoError(path_ + ": temporary file " + temp_path_ + " vanished before commit");
  const int synced = ::fsync(fd);
  const int sync_errno = errno;
  ::close(fd);
  if (synced != 0) {
    throw IoError(path_ + ": cannot flush " + temp_path_ + " to disk: " + std::strerror(sync_errno) +
                      " (the previous " + path_ + ", if any, is untouched)",
                  std::strerror(sync_errno));
  }
  std::error_code ec;
  if (!overwrite_ && entry_exists(path_))
    throw OutputPathError(path_ + ": appeared while it was being written; refusing to overwrite it");
  fs::rename(temp_path_, path_, ec);
  if (ec) throw IoError(path_ + ": cannot move " + temp_path_ + " into place: " + ec.message(), ec.message());
  committed_ = true;
  // Make the rename itself durable.
  const std::string dir = fs::path(path_).parent_path().empty() ? "." : fs::path(path_).parent_path().string();
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace lockstep
