// A trained model loaded for inference outside the trainer (lockstep export and
// lockstep serve): the architecture from the config, its input and output sizes
// from the model file's signature (no dataset needed), and the weights.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "src/config.h"
#include "src/model.h"

namespace lockstep {

struct SavedModel {
  std::unique_ptr<Model> model;  // heap: CpuNetwork keeps a reference to it
  std::vector<float> params;     // the flat arena (model->num_params())
  float input_scale = 1.0f;      // data.scale: raw dataset values -> model inputs
  bool classifier = false;       // softmax output (else regression outputs)
};

// Loads `path` (a model file or checkpoint written by train). Throws DataError
// naming the file when it cannot be read or holds another architecture than the
// config's model.layers / model.loss describe.
SavedModel load_saved_model(const Config& config, const std::string& path);

// Softmax over each row of (rows, k), in place, in double as `lockstep predict` does.
void softmax_rows(float* x, int64_t rows, int64_t k);

}  // namespace lockstep
