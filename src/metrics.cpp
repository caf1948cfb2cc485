// JSON-lines metrics file.
#include "src/metrics.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "data/input.h"

namespace lockstep {

namespace {

// Unbuffered: a record reaches the file when write() returns, and nothing of a
// failed one is left in a buffer for fclose to add later.
std::FILE* open_for(const std::string& path, const char* mode, const std::string& what) {
  std::FILE* f = std::fopen(path.c_str(), mode);
  if (!f) {
    const int err = errno;
    throw IoError(what + ": cannot create: " + std::strerror(err), std::strerror(err));
  }
  std::setvbuf(f, nullptr, _IONBF, 0);
  return f;
}

// A record is appended whole or not at all: when a write fails (a full disk, a
// file-size limit) the file is cut back to its last whole record and the run ends
// (IoError: exit 5) rather than going on without its metrics.
void append_record(std::FILE* f, const std::string& path, const std::string& line) {
  if (!f) return;
  struct stat st {};
  const bool sized = ::fstat(::fileno(f), &st) == 0;
  if (std::fwrite(line.data(), 1, line.size(), f) == line.size()) return;
  const int err = errno;
  if (sized) {
    const int cut = ::ftruncate(::fileno(f), st.st_size);  // the message names the file either way
    (void)cut;
  }
  throw IoError(path + ": cannot write a metrics record: " + std::strerror(err), std::strerror(err));
}

}  // namespace

MetricsWriter::MetricsWriter(const std::string& path) : path_(path) {
  if (path.empty()) return;
  file_ = open_for(path, "w", "--metrics-out " + path);
}

void MetricsWriter::also(const std::string& path, bool append) {
  second_ = open_for(path, append ? "a" : "w", path);
  second_path_ = path;
}

MetricsWriter::~MetricsWriter() {
  if (file_) std::fclose(file_);
  if (second_) std::fclose(second_);
}

void MetricsWriter::write(const nlohmann::json& record) {
  const std::string line = record.dump() + "\n";
  append_record(file_, path_, line);
  append_record(second_, second_path_, line);
}

}  // namespace lockstep
