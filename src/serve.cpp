// lockstep serve: the HTTP side (cpp-httplib: routes, limits, timeouts, the
// TF Serving JSON), the compute side (a pool of forward workspaces, used through
// a Batcher or, without batching, by each HTTP thread) and the signal watcher.
#include "src/serve.h"

#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "kernels/cpu/ops.h"
#include "src/batcher.h"
#include "src/onnx_export.h"
#include "src/network.h"
#include "src/saved_model.h"
#include "src/serve_request.h"
#include "src/signals.h"

namespace lockstep {
namespace {

using nlohmann::json;

// One forward workspace: scaled inputs, the replica's activations.
struct Workspace {
  Workspace(const Model& model, int64_t rows) : replica(model, rows) {}
  CpuNetwork replica;
  std::vector<float> scaled;
};

// Runs the model on raw rows: scale, forward in chunks, softmax for classifiers.
class Engine {
 public:
  Engine(const SavedModel& m, const ServeOptions& o)
      : m_(m), workspace_rows_(std::max<int64_t>(64, o.max_batch_size)) {
    if (o.max_batch_size > 0) {
      // One lane per core: a request runs at once while a core is free, and
      // batches form once every core is busy.
      const int lanes = int(std::max(1u, std::thread::hardware_concurrency()));
      batcher_ = std::make_unique<Batcher>(
          m.model->input_dim(), m.model->output_dim(), o.max_batch_size,
          std::chrono::microseconds(o.batch_timeout_us),
          [this](const float* x, int64_t rows, float* y) { run_pooled(x, rows, y); }, lanes);
    }
  }

  void infer(const float* x, int64_t rows, float* y) {
    if (batcher_) return batcher_->infer(x, rows, y);
    run_pooled(x, rows, y);
  }

  std::string stats() const {
    if (!batcher_) return "no batching";
    const int64_t b = batcher_->batches(), r = batcher_->rows_done();
    char s[96];
    std::snprintf(s, sizeof s, "%lld forward passes, %.2f rows each", (long long)b, b ? double(r) / b : 0.0);
    return s;
  }

 private:
  // A workspace from the pool (a new one when all are in use) for one run.
  void run_pooled(const float* x, int64_t rows, float* y) {
    std::unique_ptr<Workspace> ws;
    {
      std::lock_guard<std::mutex> lock(pool_mu_);
      if (!pool_.empty()) {
        ws = std::move(pool_.back());
        pool_.pop_back();
      }
    }
    if (!ws) ws = std::make_unique<Workspace>(*m_.model, workspace_rows_);
    compute(*ws, x, rows, y);  // a throw loses this workspace, nothing else
    std::lock_guard<std::mutex> lock(pool_mu_);
    pool_.push_back(std::move(ws));
  }

  void compute(Workspace& ws, const float* x, int64_t rows, float* y) const {
    const int64_t in = m_.model->input_dim(), out = m_.model->output_dim();
    const int64_t chunk = ws.replica.max_rows();
    ws.scaled.resize(size_t(chunk * in));
    for (int64_t begin = 0; begin < rows; begin += chunk) {
      const int64_t n = std::min(chunk, rows - begin);
      const float* xb = x + begin * in;
      for (int64_t i = 0; i < n * in; ++i) ws.scaled[size_t(i)] = xb[i] * m_.input_scale;
      const float* logits = ws.replica.predict(m_.params.data(), ws.scaled.data(), n);
      std::copy(logits, logits + n * out, y + begin * out);
    }
    if (m_.classifier) softmax_rows(y, rows, out);
  }

  const SavedModel& m_;
  const int64_t workspace_rows_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<Workspace>> pool_;
  std::unique_ptr<Batcher> batcher_;  // last: its threads stop before the pool goes
};

json tensor_info(const std::string& name, int64_t width) {
  return {{"dtype", "DT_FLOAT"},
          {"tensor_shape", {{"dim", json::array({{{"size", "-1"}, {"name", ""}},
                                                 {{"size", std::to_string(width)}, {"name", ""}}})},
                            {"unknown_rank", false}}},
          {"name", name}};
}

// The routes and their handlers; owns the httplib server.
class RestApi {
 public:
  RestApi(const SavedModel& m, const ServeOptions& o, Engine& engine)
      : m_(m), o_(o), engine_(engine) {
    const std::string base = R"(/v1/models/([^/:]+)(?:/versions/([^/:]+))?)";
    svr_.Get(base, [this](const auto& req, auto& res) { status(req, res); });
    svr_.Get(base + "/metadata", [this](const auto& req, auto& res) { metadata(req, res); });
    // Read through a ContentReader: the body is JSON whatever the Content-Type says
    // (curl -d and urllib send x-www-form-urlencoded, which httplib would otherwise
    // parse as a form and refuse past 8 KiB).
    svr_.Post(base + ":predict", [this](const httplib::Request& req, httplib::Response& res,
                                        const httplib::ContentReader& read) {
      std::string body;
      const bool whole = read([&](const char* data, size_t n) {
        body.append(data, n);
        return true;
      });
      if (!whole) {  // over --max-body-bytes (413, worded by error()) or a broken read
        if (res.status < 400) res.status = 400;
        return;
      }
      predict(req, body, res);
    });
    svr_.set_error_handler(httplib::Server::HandlerWithResponse(
        [this](const httplib::Request& req, httplib::Response& res) { return error(req, res); }));
    svr_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      res.status = 500;
      std::string what = "internal error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      res.set_content(error_body(what), "application/json");
    });
    const int threads = o.threads;
    svr_.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
    svr_.set_payload_max_length(size_t(o.max_body_bytes));
    svr_.set_read_timeout(o.read_timeout_s, 0);
    svr_.set_write_timeout(o.read_timeout_s, 0);
    svr_.set_keep_alive_max_count(1000000);
    svr_.set_keep_alive_timeout(2);
    svr_.set_tcp_nodelay(true);
    // httplib's default sets SO_REUSEPORT, which lets a second server bind a port
    // already served; SO_REUSEADDR alone allows a restart, never a shared port.
    svr_.set_socket_options([this](int sock) {
      const int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
      listen_fd_ = sock;
    });
  }

  httplib::Server& server() { return svr_; }
  // httplib listens with a backlog of 5: 16 clients connecting at once overflow
  // it and some connections die on their first request. Linux lets a second
  // listen() on the bound socket raise the backlog.
  void widen_backlog() const {
    if (listen_fd_ >= 0) ::listen(listen_fd_, SOMAXCONN);
  }
  int64_t requests() const { return requests_.load(); }

 private:
  // False (and a 404 written) unless the path names this model and version 1.
  bool known(const httplib::Request& req, httplib::Response& res) const {
    const std::string name = req.matches[1], version = req.matches[2];
    if (name == o_.model_name && (version.empty() || version == "1")) return true;
    res.status = 404;
    const std::string which = version.empty() ? "Latest(" + name + ")" : "Specific(" + name + ", " + version + ")";
    res.set_content(error_body("Servable not found for request: " + which + " (this server has model '" +
                               o_.model_name + "', version 1)"), "application/json");
    return false;
  }

  void status(const httplib::Request& req, httplib::Response& res) const {
    if (!known(req, res)) return;
    const json body = {{"model_version_status", json::array({{{"version", "1"}, {"state", "AVAILABLE"},
        {"status", {{"error_code", "OK"}, {"error_message", ""}}}}})}};
    res.set_content(body.dump(), "application/json");
  }

  void metadata(const httplib::Request& req, httplib::Response& res) const {
    if (!known(req, res)) return;
    const json signature = {
        {"inputs", {{kOnnxInputName, tensor_info(kOnnxInputName, m_.model->input_dim())}}},
        {"outputs", {{output_name(m_), tensor_info(output_name(m_), m_.model->output_dim())}}},
        {"method_name", "tensorflow/serving/predict"}};
    const json body = {{"model_spec", {{"name", o_.model_name}, {"signature_name", ""}, {"version", "1"}}},
                       {"metadata", {{"signature_def", {{"signature_def", {{"serving_default", signature}}}}}}}};
    res.set_content(body.dump(), "application/json");
  }

  void predict(const httplib::Request& req, const std::string& body, httplib::Response& res) {
    ++requests_;
    if (!known(req, res)) return;
    PredictRequest p;
    try {
      p = parse_predict_request(body, m_.model->input_dim(), kOnnxInputName);
    } catch (const BadRequest& e) {
      res.status = 400;
      res.set_content(error_body(e.what()), "application/json");
      return;
    }
    const int64_t k = m_.model->output_dim();
    std::vector<float> y(size_t(p.rows * k));
    engine_.infer(p.x.data(), p.rows, y.data());
    res.set_content(predict_response(y.data(), p.rows, k, p.columnar), "application/json");
  }

  // Gives every error without a body of its own TF Serving's {"error": ...} form.
  httplib::Server::HandlerResponse error(const httplib::Request& req, httplib::Response& res) const {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string what;
    if (res.status == 413) {
      what = "request body too large: the limit is " + std::to_string(o_.max_body_bytes) +
             " bytes (lockstep serve --max-body-bytes)";
    } else if (res.status == 404) {
      what = "Not found: " + req.method + " " + req.path +
             " (try GET /v1/models/" + o_.model_name + ", GET .../metadata, POST .../" + o_.model_name + ":predict)";
    } else {
      what = "HTTP " + std::to_string(res.status) + " for " + req.method + " " + req.path;
    }
    res.set_content(error_body(what), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }

  const SavedModel& m_;
  const ServeOptions& o_;
  Engine& engine_;
  httplib::Server svr_;
  std::atomic<int64_t> requests_{0};
  int listen_fd_ = -1;
};

void check_options(const ServeOptions& o) {
  const auto bad = [](const std::string& flag, const std::string& why) {
    throw ConfigError("serve: " + flag + " " + why);
  };
  if (o.port < 0 || o.port > 65535) bad("--port", "must be in [0, 65535] (0 = any free port)");
  if (o.model_name.empty() || o.model_name.find_first_of("/:") != std::string::npos) {
    bad("--model-name", "must be non-empty without '/' or ':' (it is part of the URL)");
  }
  if (o.max_batch_size < 0 || o.max_batch_size > 65536) bad("--max-batch-size", "must be in [0, 65536] (0 = no batching)");
  if (o.batch_timeout_us < 0 || o.batch_timeout_us > 10000000) bad("--batch-timeout-micros", "must be in [0, 10000000]");
  if (o.threads < 1 || o.threads > 4096) bad("--threads", "must be in [1, 4096]");
  if (o.max_body_bytes < 1024) bad("--max-body-bytes", "must be at least 1024");
  if (o.read_timeout_s < 1) bad("--read-timeout", "must be at least 1 second");
}

}  // namespace

int serve(const Config& config, const ServeOptions& options) {
  check_options(options);
  const SavedModel model = load_saved_model(config, options.model_path);
  cpu::init_kernels();
  // SIGTERM/SIGINT: recorded, never delivered to the server's threads (made after
  // the guard, they block them; signals.h says why); the watcher below acts on them.
  SignalGuard signals;
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up mid-response is not fatal

  Engine engine(model, options);
  RestApi api(model, options, engine);
  httplib::Server& svr = api.server();
  const int port = options.port == 0 ? svr.bind_to_any_port(options.host)
                                     : (svr.bind_to_port(options.host, options.port) ? options.port : -1);
  if (port <= 0) {
    throw std::runtime_error("serve: cannot listen on " + options.host + ":" + std::to_string(options.port) +
                             " (in use, or not an address of this machine): pick another --port or --host");
  }
  api.widen_backlog();
  std::atomic<bool> done{false};
  std::atomic<int> signal_number{0};
  std::thread watcher([&] {
    while (!done.load()) {
      if (const int s = SignalGuard::requested(); s > 0) {
        signal_number = s;
        // stop() only acts once listen has started; a signal may come first.
        while (!svr.is_running() && !done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        svr.stop();  // no new connections; requests being handled still finish
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  // An IPv6 address goes in brackets in a URL (http://[::1]:8501/...).
  const std::string host = options.host.find(':') == std::string::npos ? options.host : "[" + options.host + "]";
  std::printf("serving model '%s' (%s) on http://%s:%d/v1/models/%s, %s\n", options.model_name.c_str(),
              model.model->signature().c_str(), host.c_str(), port, options.model_name.c_str(),
              options.max_batch_size > 0
                  ? ("batching up to " + std::to_string(options.max_batch_size) + " rows, " +
                     std::to_string(options.batch_timeout_us) + " us").c_str()
                  : "no batching");
  std::fflush(stdout);
  const bool listened = svr.listen_after_bind();
  done = true;
  watcher.join();
  if (signal_number == 0) throw std::runtime_error(std::string("serve: the server stopped accepting connections") +
                                                   (listened ? "" : " (accept failed)"));
  std::printf("stopped on signal %d after %lld predict requests (%s)\n", signal_number.load(),
              (long long)api.requests(), engine.stats().c_str());
  std::fflush(stdout);
  return signal_number;
}

}  // namespace lockstep
