// lockstep export --format onnx: a trained model as an ONNX graph (opset 13) that
// takes float32 rows of raw dataset values ("inputs", (N, features)); the input
// scale (data.scale) is the graph's first node, then one Gemm per Dense layer and
// its activation, then Softmax ("probabilities") for classifiers or the output
// layer itself ("outputs") for regression. Dropout is absent (inference).
#pragma once

#include <string>

#include "src/saved_model.h"

namespace lockstep {

// The serialized ModelProto. graph_name names the graph (e.g. the config's stem).
std::string onnx_model_bytes(const SavedModel& model, const std::string& graph_name);

// Writes onnx_model_bytes() to `path` atomically; refuses an existing file unless
// overwrite. Throws OutputPathError for the path, IoError when writing fails,
// naming the file.
void export_onnx(const SavedModel& model, const std::string& graph_name, const std::string& path,
                 bool overwrite);

// The graph's input and output names, also used by lockstep serve's signature.
inline constexpr const char* kOnnxInputName = "inputs";
const char* output_name(const SavedModel& model);  // "probabilities" or "outputs"

}  // namespace lockstep
