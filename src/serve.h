// lockstep serve: a trained model behind TensorFlow Serving's REST API, so
// existing TF Serving clients work unchanged; cpp-httplib does the HTTP, a
// Batcher (batcher.h) groups concurrent requests, SIGTERM/SIGINT drain it.
#pragma once

#include <cstdint>
#include <string>

#include "src/config.h"

namespace lockstep {

struct ServeOptions {
  std::string model_path;        // model file or checkpoint
  std::string model_name = "default";
  std::string host = "127.0.0.1";
  int port = 8501;               // 0: any free port (printed)
  int64_t max_batch_size = 64;   // rows per forward pass; 0 = no batching (each request on its own thread)
  int64_t batch_timeout_us = 0;  // the most a first request waits for its batch to fill (0: run what is queued)
  int threads = 64;              // HTTP worker threads (one per open connection)
  int64_t max_body_bytes = 16 << 20;
  int read_timeout_s = 5;        // a client that sends nothing for this long is dropped
};

// Serves until SIGTERM/SIGINT; returns the signal number that ended it. Prints one
// line "serving model 'NAME' ... on http://HOST:PORT/..." once it accepts
// connections. Routes (NAME = model_name; "/versions/1" may follow NAME):
//   GET  /v1/models/NAME             version status ("state": "AVAILABLE")
//   GET  /v1/models/NAME/metadata    signature: input/output names, dtype, shape
//   POST /v1/models/NAME:predict     {"instances": ...} or {"inputs": ...} (serve_request.h)
// Errors are {"error": "..."} with 400 (bad body), 404 (unknown model, version or
// path), 413 (body over max_body_bytes). On SIGTERM/SIGINT it stops accepting,
// lets requests being handled finish and be answered, then returns.
// Throws DataError (model file), ConfigError (options), std::runtime_error (bind).
int serve(const Config& config, const ServeOptions& options);

}  // namespace lockstep
