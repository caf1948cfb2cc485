// Predictions of a saved model for every example of a dataset split, written to
// HDF5 (/probabilities or /outputs, /classes) or JSON lines.
#pragma once

#include <string>

#include "src/config.h"

namespace lockstep {

struct PredictArgs {
  std::string model_path;   // a model file or checkpoint
  std::string input_path;   // an HDF5 dataset (lockstep layout)
  std::string split = "test";
  std::string output_path;  // *.h5 / *.hdf5 -> HDF5, anything else -> JSON lines
  bool overwrite = false;
};

// Returns the number of examples predicted. Throws DataError/ConfigError with
// the file and the problem, OutputPathError for the output path, IoError when
// writing it fails.
int64_t predict(const Config& config, const PredictArgs& args);

}  // namespace lockstep
