// Loads a model file for inference: sizes are read back from the signature
// ("input=784 dense_1(784x128,relu) dense_2(128x10,linear) loss=...") and the
// config must rebuild exactly that signature.
#include "src/saved_model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "data/input.h"
#include "src/checkpoint.h"

namespace lockstep {
namespace {

// The integer after `key` in `text` (from `from`), or -1.
int64_t number_after(const std::string& text, const std::string& key, size_t from = 0) {
  const size_t at = text.find(key, from);
  if (at == std::string::npos) return -1;
  const char* begin = text.c_str() + at + key.size();
  char* end = nullptr;
  const long long v = std::strtoll(begin, &end, 10);
  return end == begin ? -1 : int64_t(v);
}

// Input size and output size as the file's signature states them.
std::pair<int64_t, int64_t> signature_sizes(const std::string& sig, const std::string& path) {
  const int64_t input = number_after(sig, "input=");
  const size_t last = sig.rfind('(');  // the output layer: "(INxOUT,"
  const int64_t output = last == std::string::npos ? -1 : number_after(sig, "x", last);
  if (input <= 0 || output <= 0) {
    throw DataError(path + ": the model file's architecture signature [" + sig +
                    "] gives no input and output size (not a file written by lockstep train?)");
  }
  return {input, output};
}

}  // namespace

SavedModel load_saved_model(const Config& config, const std::string& path) {
  const SavedState head = load_state(path, nullptr);
  const auto [input, output] = signature_sizes(head.signature, path);
  SavedModel m;
  std::vector<int64_t> shape = signature_input_shape(head.signature);  // "input=1x28x28"
  if (shape.empty()) shape = {input};
  m.model = std::make_unique<Model>(config.layers, shape, output, config.loss);
  if (head.signature != m.model->signature()) {
    throw DataError(path + ": holds a different model: the file has [" + head.signature +
                    "], the config describes [" + m.model->signature() +
                    "] (pass the config the model was trained with)");
  }
  m.params = load_state(path, m.model.get()).params;
  m.input_scale = config.data_scale;
  m.classifier = config.loss == LossKind::kSoftmaxCrossEntropy;
  return m;
}

void softmax_rows(float* x, int64_t rows, int64_t k) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * k;
    const float mx = *std::max_element(row, row + k);
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += std::exp(double(row[j] - mx));
    for (int64_t j = 0; j < k; ++j) row[j] = float(std::exp(double(row[j] - mx)) / sum);
  }
}

}  // namespace lockstep
