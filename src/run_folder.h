// The run folder (output.dir): what a run leaves there besides its model and
// checkpoints — manifest.json (run id, config hash, environment, command line,
// start time), config.yaml (the resolved config) and metrics.jsonl — and the rule
// that a fresh run never writes over another run's work (README "Run folders").
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "src/config.h"

namespace lockstep {

struct RunFolderOptions {
  bool resume = false;     // --resume: the folder's earlier work is this run's to continue
  bool overwrite = false;  // --overwrite: the earlier run's files are removed first
  std::string command_line;  // this process's (mpirun's own arguments are not seen)
  int processes = 1;         // the run's layout, recorded in the manifest
  int64_t replicas_in_sync = 1;
};

// Files of an earlier run in output.dir and the checkpoint folder (model.h5,
// manifest.json, config.yaml, metrics.jsonl, ckpt-*.h5), relative to output.dir
// where they lie inside it.
std::vector<std::string> earlier_work(const Config& c, const std::string& checkpoint_dir);

// A file the user named for lockstep to write beside a run: --metrics-out (a
// stream written in place: a pipe or /dev/stdout is fine) or --trace (replaced
// by a rename, so it must be a regular file or none).
struct SideOutput {
  std::string flag;       // "--metrics-out"
  std::string path;       // empty: nothing to check
  std::string example;    // a file name for the "is a folder" hint
  bool replaced = false;  // written by AtomicOutput (a rename), not in place
  bool run_makes_output_dir = false;  // train: output.dir may not exist yet
  std::vector<std::pair<std::string, std::string>> others;  // (file, what it is) also not to touch
};

// Checks a SideOutput before anything is written. Throws ConfigError (a usage
// error) naming the flag for a folder, a missing folder (but output.dir when the
// run makes it), a file the run reads or writes itself (the config, data.path,
// output.dir and its files, checkpoint.dir and checkpoints, TensorBoard logs,
// `others`), an existing regular file that does not hold JSON, which is all these
// write (a typo never replaces a model, a dataset or a config), and, when
// `replaced`, anything but a regular file (a device, a pipe, or a link to one).
void check_side_output(const SideOutput& o, const Config& c, const std::string& checkpoint_dir);

// Makes output.dir usable for a run. Throws ConfigError naming output.dir when it
// is a file or cannot be created, or when it holds earlier work and neither
// resume nor overwrite is set; with overwrite, removes exactly that earlier work
// (nothing else in the folder) and says so on stdout.
void prepare_run_folder(const Config& c, const std::string& checkpoint_dir, const RunFolderOptions& o);

// Writes OUTPUT_DIR/manifest.json and OUTPUT_DIR/config.yaml atomically. On a
// resume the earlier manifest's run id and start time are kept and the resume is
// appended to its "resumes" list. processes and replicas_in_sync describe the
// latest start (a resume may change them), each resume entry its own.
void write_run_record(const Config& c, const RunFolderOptions& o);

// (key, value) rows of the config that decide a run's numbers: every key except
// where files go (output.*, checkpoint.*, data.path) and what does not change a
// result (train.progress, data.prefetch, data.gather, comm.*).
std::vector<std::pair<std::string, std::string>> result_config_rows(const Config& c);
// A 16-hex-digit hash of result_config_rows.
std::string config_hash(const Config& c);
// FNV-1a 64, fed piece by piece; hex() is 16 hex digits.
class Fnv1a {
 public:
  void add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h_ = (h_ ^ p[i]) * 1099511628211ULL;
  }
  std::string hex() const;
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 1469598103934665603ULL;
};
// FNV-1a 64 of bytes, as 16 hex digits (weights, predictions, configs).
std::string hash_bytes(const void* data, size_t n);

}  // namespace lockstep
