// Metrics as JSON lines (one object per line, Keras names), written only by the
// chief replica, flushed after every record so a crash loses nothing written;
// to --metrics-out and to the run folder's metrics.jsonl alike.
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace lockstep {

class MetricsWriter {
 public:
  // Empty path: records are dropped. Throws ConfigError (a usage error) when the
  // path is a folder or lies in a missing one, std::runtime_error if the file
  // cannot be created.
  explicit MetricsWriter(const std::string& path);
  // The constructor's usage checks alone, to run before anything is written.
  static void check_path(const std::string& path);
  // Writes every record to a second file too (the run folder's metrics.jsonl),
  // appended to (a resumed run) or started afresh; nothing when it is the same
  // file as the first.
  void also(const std::string& path, bool append);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  void write(const nlohmann::json& record);

 private:
  std::FILE* file_ = nullptr;
  std::FILE* second_ = nullptr;
  std::string path_;
};

}  // namespace lockstep
