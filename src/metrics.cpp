// JSON-lines metrics file.
#include "src/metrics.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "src/config.h"

namespace lockstep {

MetricsWriter::MetricsWriter(const std::string& path) {
  if (path.empty()) return;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty() && !std::filesystem::is_directory(parent)) {
    // A usage error (exit 2), like a bad flag: nothing was trained yet.
    throw ConfigError("--metrics-out " + path + ": folder " + parent.string() +
                      " does not exist (create it first, or choose another path)");
  }
  file_ = std::fopen(path.c_str(), "w");
  if (!file_) {
    throw std::runtime_error("--metrics-out " + path + ": cannot create: " + std::strerror(errno));
  }
}

MetricsWriter::~MetricsWriter() {
  if (file_) std::fclose(file_);
}

void MetricsWriter::write(const nlohmann::json& record) {
  if (!file_) return;
  const std::string line = record.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

}  // namespace lockstep
