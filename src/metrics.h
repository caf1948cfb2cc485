// Metrics as JSON lines (one object per line, Keras names), written only by the
// chief replica, unbuffered so a crash loses nothing written;
// to --metrics-out and to the run folder's metrics.jsonl alike.
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace lockstep {

class MetricsWriter {
 public:
  // Empty path: records are dropped. Throws IoError (exit 5) if the file cannot
  // be created; the caller checks the path first (check_side_output).
  explicit MetricsWriter(const std::string& path);
  // Writes every record to a second file too (the run folder's metrics.jsonl,
  // which check_side_output keeps apart from the first), appended to (a resumed
  // run) or started afresh.
  void also(const std::string& path, bool append);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  // Throws IoError (naming the file and the system's reason) when a record cannot
  // be written whole (a full disk, a file-size limit); the file then ends with the
  // last whole record.
  void write(const nlohmann::json& record);

 private:
  std::FILE* file_ = nullptr;
  std::FILE* second_ = nullptr;
  std::string path_;
  std::string second_path_;
};

}  // namespace lockstep
