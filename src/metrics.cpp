// JSON-lines metrics file.
#include "src/metrics.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "src/config.h"

namespace lockstep {

namespace {

std::FILE* open_for(const std::string& path, const char* mode, const std::string& what) {
  std::FILE* f = std::fopen(path.c_str(), mode);
  if (!f) throw std::runtime_error(what + ": cannot create: " + std::strerror(errno));
  return f;
}

}  // namespace

void MetricsWriter::check_path(const std::string& path) {
  if (path.empty()) return;
  if (std::filesystem::is_directory(path)) {
    throw ConfigError("--metrics-out " + path + ": is a folder; name a file (e.g. " +
                      (std::filesystem::path(path) / "metrics.jsonl").string() + ")");
  }
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty() && !std::filesystem::is_directory(parent)) {
    // A usage error (exit 2), like a bad flag: nothing was trained yet.
    throw ConfigError("--metrics-out " + path + ": folder " + parent.string() +
                      " does not exist (create it first, or choose another path)");
  }
}

MetricsWriter::MetricsWriter(const std::string& path) : path_(path) {
  if (path.empty()) return;
  check_path(path);
  file_ = open_for(path, "w", "--metrics-out " + path);
}

void MetricsWriter::also(const std::string& path, bool append) {
  std::error_code ec;
  if (!path_.empty() && std::filesystem::equivalent(path, path_, ec)) return;
  second_ = open_for(path, append ? "a" : "w", path);
}

MetricsWriter::~MetricsWriter() {
  if (file_) std::fclose(file_);
  if (second_) std::fclose(second_);
}

void MetricsWriter::write(const nlohmann::json& record) {
  const std::string line = record.dump() + "\n";
  for (std::FILE* f : {file_, second_}) {
    if (!f) continue;
    std::fwrite(line.data(), 1, line.size(), f);
    std::fflush(f);
  }
}

}  // namespace lockstep
