// Model files and checkpoints in HDF5: the weights per layer (Keras-like names),
// optionally the optimizer slots and training position, and the resolved config
// and architecture signature, so a file from a different model is refused with a
// message naming the difference. Files are written atomically (temp + rename).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

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
};

// Writes `path` atomically; overwrites an existing file only through the rename.
void save_state(const std::string& path, const Model& model, const SavedState& state);
// Reads a file written by save_state. Throws DataError naming the file on any
// problem; when `model` is given, checks that the file holds this architecture.
SavedState load_state(const std::string& path, const Model* model);

}  // namespace lockstep
