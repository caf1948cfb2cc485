// Metrics as JSON lines (one object per line, Keras names), written only by the
// chief replica, flushed after every record so a crash loses nothing written.
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace lockstep {

class MetricsWriter {
 public:
  // Empty path: records are dropped. Throws std::runtime_error if the file
  // cannot be created.
  explicit MetricsWriter(const std::string& path);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  void write(const nlohmann::json& record);

 private:
  std::FILE* file_ = nullptr;
};

}  // namespace lockstep
