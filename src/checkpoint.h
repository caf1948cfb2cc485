// Model files and checkpoints in HDF5: the weights per layer (Keras-like names),
// optionally the optimizer slots and training position, and the resolved config
// and architecture signature, so a file from a different model is refused with a
// message naming the difference. Files are written atomically (temp + rename).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/input.h"
#include "src/model.h"

namespace lockstep {

struct SavedState {
  std::string signature;    // Model::signature() of the writer
  std::string config_yaml;  // the resolved config of the writer
  std::vector<float> params;
  std::vector<std::pair<std::string, std::vector<float>>> slots;  // optimizer
  int64_t updates = 0;      // optimizer steps applied
  int64_t epoch = 0;        // input position
  int64_t step_in_epoch = 0;
  double progress[4] = {0, 0, 0, 0};  // the epoch so far: loss sum, correct, rows, seconds
  int64_t replicas = 0;     // num_replicas_in_sync of the writer
};

// Writes `path` atomically; overwrites an existing file only through the rename.
void save_state(const std::string& path, const Model& model, const SavedState& state);
// Reads a file written by save_state. Throws DataError naming the file on any
// problem; when `model` is given, checks that the file holds this architecture.
SavedState load_state(const std::string& path, const Model* model);

// Training checkpoints in a folder: ckpt-<global step, 10 digits>.h5.
std::string checkpoint_path(const std::string& dir, int64_t global_step);
// Newest first.
std::vector<std::string> list_checkpoints(const std::string& dir);
// Deletes all but the newest `keep`, never `protect` (the checkpoint just
// written: a resumed run's new checkpoint may have a lower step than older files).
void prune_checkpoints(const std::string& dir, int64_t keep, const std::string& protect = "");
// Throws ConfigError naming every key whose value differs between the saved
// config and `now`, except keys that may change on resume (epochs, strategy,
// output, checkpoint, progress, prefetch, eval batch, non-finite policy, data
// path). Returns those that did change ("key old -> new; ..."), for the user to
// see; the replica count is left out (it has a message of its own).
std::string check_resume_compatible(const std::string& saved_yaml, const Config& now,
                                    const std::string& path);

}  // namespace lockstep
