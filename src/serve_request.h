// The JSON bodies of TensorFlow Serving's REST predict API, as lockstep serve
// reads and writes them. Pure functions (no sockets), so they are tested alone.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace lockstep {

// A request TF Serving would answer with 400; what() is the message for {"error": ...}.
class BadRequest : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct PredictRequest {
  std::vector<float> x;   // (rows, width) raw values as sent
  int64_t rows = 0;
  bool columnar = false;  // came as "inputs": answer with "outputs"
};

// Parses and checks a predict body against the signature (input name, width):
//   {"instances": [row, ...]}  row = [v, ...] or {"inputs": [v, ...]}   (row format)
//   {"inputs": [row, ...]}  or  {"inputs": {"inputs": [row, ...]}}     (columnar)
//   optionally "signature_name": "serving_default".
// Throws BadRequest for malformed JSON, a missing or empty batch, a row of the
// wrong length, a value that is not a finite number, an unknown signature.
PredictRequest parse_predict_request(const std::string& body, int64_t width,
                                     const std::string& input_name);

// The response body for y (rows, width), as TF Serving answers: {"predictions":
// [[...], ...]} for the row format, {"outputs": [[...], ...]} for the columnar
// one; shortest round-trip decimal floats, null for a non-finite value.
std::string predict_response(const float* y, int64_t rows, int64_t width, bool columnar);

// {"error": "message"} with the message JSON-escaped.
std::string error_body(const std::string& message);

}  // namespace lockstep
