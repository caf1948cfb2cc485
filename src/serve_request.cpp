// TF Serving request parsing (nlohmann::json) and response writing (straight
// to text with std::to_chars, without building a JSON tree for the floats).
#include "src/serve_request.h"

#include <charconv>
#include <cmath>

#include <nlohmann/json.hpp>

namespace lockstep {
namespace {

using nlohmann::json;

// Appends one row of `width` finite numbers.
void read_row(const json& row, int64_t width, const std::string& input_name, int64_t index,
              std::vector<float>& out) {
  const json* values = &row;
  if (row.is_object()) {
    if (row.size() != 1 || !row.contains(input_name)) {
      throw BadRequest("instance " + std::to_string(index) + " must be a list of " +
                       std::to_string(width) + " numbers or {\"" + input_name + "\": [...]}");
    }
    values = &row[input_name];
  }
  if (!values->is_array() || int64_t(values->size()) != width) {
    const std::string got = values->is_array() ? "a list of " + std::to_string(values->size())
                                               : std::string("a ") + values->type_name();
    throw BadRequest("instance " + std::to_string(index) + " has the wrong shape: expected a list of " +
                     std::to_string(width) + " numbers (input shape [-1, " + std::to_string(width) +
                     "]), got " + got);
  }
  for (size_t j = 0; j < values->size(); ++j) {
    const json& v = (*values)[j];
    const double d = v.is_number() ? v.get<double>() : NAN;
    if (!std::isfinite(d) || !std::isfinite(float(d))) {
      throw BadRequest("instance " + std::to_string(index) + ", value " + std::to_string(j) +
                       " is not a finite float32 number: " + v.dump());
    }
    out.push_back(float(d));
  }
}

const json& batch_of(const json& doc, const std::string& input_name, bool& columnar) {
  if (!doc.is_object()) throw BadRequest("the request body must be a JSON object");
  if (doc.contains("signature_name") &&
      (!doc["signature_name"].is_string() || doc["signature_name"] != "serving_default")) {
    throw BadRequest("unknown signature_name " + doc["signature_name"].dump() +
                     ": this model has \"serving_default\" only");
  }
  const bool has_instances = doc.contains("instances"), has_inputs = doc.contains("inputs");
  if (has_instances == has_inputs) {
    throw BadRequest("the request must have exactly one of \"instances\" (row format) or \"inputs\" "
                     "(columnar format)");
  }
  columnar = has_inputs;
  const json& batch = has_inputs ? doc["inputs"] : doc["instances"];
  if (columnar && batch.is_object()) {
    if (batch.size() != 1 || !batch.contains(input_name)) {
      throw BadRequest("\"inputs\" names unknown inputs: this model has one input, \"" + input_name + "\"");
    }
    return batch[input_name];
  }
  return batch;
}

void append_float(std::string& s, float v) {
  if (!std::isfinite(v)) {  // JSON has no NaN or Inf
    s += "null";
    return;
  }
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  s.append(buf, r.ptr);
}

}  // namespace

PredictRequest parse_predict_request(const std::string& body, int64_t width,
                                     const std::string& input_name) {
  json doc;
  try {
    doc = json::parse(body);
  } catch (const json::exception& e) {
    throw BadRequest(std::string("JSON Parse error: ") + e.what());
  }
  PredictRequest req;
  const json& batch = batch_of(doc, input_name, req.columnar);
  if (!batch.is_array() || batch.empty()) {
    throw BadRequest(std::string(req.columnar ? "\"inputs\"" : "\"instances\"") +
                     " must be a non-empty list of rows of " + std::to_string(width) + " numbers");
  }
  req.x.reserve(batch.size() * size_t(width));
  for (size_t i = 0; i < batch.size(); ++i) read_row(batch[i], width, input_name, int64_t(i), req.x);
  req.rows = int64_t(batch.size());
  return req;
}

std::string predict_response(const float* y, int64_t rows, int64_t width, bool columnar) {
  std::string s = columnar ? "{\"outputs\": [" : "{\"predictions\": [";
  s.reserve(s.size() + size_t(rows * width) * 14 + 8);
  for (int64_t i = 0; i < rows; ++i) {
    s += i ? ", [" : "[";
    for (int64_t j = 0; j < width; ++j) {
      if (j) s += ", ";
      append_float(s, y[i * width + j]);
    }
    s += ']';
  }
  s += "]}";
  return s;
}

std::string error_body(const std::string& message) {
  return json{{"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace lockstep
