// Load on a running `lockstep serve` over loopback: N client threads, each with
// one keep-alive connection, send single-row predict requests back to back for a
// bounded time; requests/s and p50/p99 latency per round, then the median round.
// Every answer is checked (status 200, one row of predictions within 1e-5 of the
// first request's): the #wrong column, and a final OK/FAILED line.
#include <CLI/CLI.hpp>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/run_main.h"

using Clock = std::chrono::steady_clock;

namespace {

struct Round {
  double requests_per_s = 0, p50_ms = 0, p99_ms = 0;
  int64_t requests = 0, wrong = 0;
};

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, size_t(q * double(v.size())));
  std::nth_element(v.begin(), v.begin() + long(k), v.end());
  return v[k];
}

// The input width from the model's signature (GET .../metadata).
int64_t input_width(const std::string& host, int port, const std::string& model) {
  httplib::Client cli(host, port);
  auto res = cli.Get(("/v1/models/" + model + "/metadata").c_str());
  if (!res || res->status != 200) {
    std::fprintf(stderr, "serve_bench: no model '%s' at %s:%d (is lockstep serve running?)\n", model.c_str(),
                 host.c_str(), port);
    std::exit(1);
  }
  const auto doc = nlohmann::json::parse(res->body);
  const auto& in = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"];
  return std::stoll(in.begin().value()["tensor_shape"]["dim"][1]["size"].get<std::string>());
}

// The same predictions to 1e-5 (batches of different sizes may round differently).
bool same_answer(const std::string& body, const std::vector<double>& expect) {
  if (body.rfind("{\"predictions\": [[", 0) != 0) return false;
  const auto doc = nlohmann::json::parse(body, nullptr, false);
  if (doc.is_discarded() || doc["predictions"].size() != 1 || doc["predictions"][0].size() != expect.size()) return false;
  for (size_t j = 0; j < expect.size(); ++j) {
    if (std::abs(doc["predictions"][0][j].get<double>() - expect[j]) > 1e-5) return false;
  }
  return true;
}

Round run_round(const std::string& host, int port, const std::string& path, const std::string& body,
                const std::vector<double>& expect, int clients, double seconds) {
  std::vector<std::vector<double>> lat(static_cast<size_t>(clients));
  std::atomic<int64_t> wrong{0};
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client cli(host, port);
      cli.set_keep_alive(true);
      cli.set_tcp_nodelay(true);
      cli.set_read_timeout(10, 0);
      while (Clock::now() < end) {
        const auto t0 = Clock::now();
        auto res = cli.Post(path.c_str(), body, "application/json");
        lat[size_t(c)].push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        if (!res || res->status != 200 || !same_answer(res->body, expect)) {
          if (wrong++ < 3) {
            std::fprintf(stderr, "serve_bench: wrong answer (%.3f s before the end, request %zu of this client): %s\n",
                         std::chrono::duration<double>(end - Clock::now()).count(), lat[size_t(c)].size(),
                         !res ? httplib::to_string(res.error()).c_str()
                              : (std::to_string(res->status) + " " + res->body.substr(0, 200)).c_str());
          }
        }
      }
    });
  }
  const auto t0 = Clock::now();
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  std::vector<double> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  Round r;
  r.requests = int64_t(all.size());
  r.wrong = wrong;
  r.requests_per_s = double(all.size()) / elapsed;
  r.p50_ms = percentile(all, 0.50);
  r.p99_ms = percentile(all, 0.99);
  return r;
}

}  // namespace

static int run_bench(int argc, char** argv) {
  CLI::App app{"serve_bench: requests/s and latency of a running lockstep serve (loopback)"};
  int port = 8501, clients = 16, rounds = 3;
  double seconds = 3;
  std::string model = "default", label = "";
  app.add_option("--port", port, "the server's port on 127.0.0.1 (default 8501)");
  app.add_option("--model-name", model, "the model's NAME (default 'default')");
  app.add_option("--clients", clients, "concurrent clients, one connection each (default 16)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--seconds", seconds, "length of a round (default 3)")->check(CLI::Range(0.1, 60.0));
  app.add_option("--rounds", rounds, "rounds; the median is reported (default 3)")->check(CLI::Range(1, 20));
  app.add_option("--label", label, "a name for this configuration in the output");
  CLI11_PARSE(app, argc, argv);

  const std::string host = "127.0.0.1";
  const int64_t width = input_width(host, port, model);
  std::string row = "[";
  for (int64_t i = 0; i < width; ++i) row += (i ? "," : "") + std::to_string((i * 37) % 256);
  const std::string body = "{\"instances\": [" + row + "]]}";
  const std::string path = "/v1/models/" + model + ":predict";
  httplib::Client first(host, port);
  auto res = first.Post(path.c_str(), body, "application/json");
  if (!res || res->status != 200) {
    std::fprintf(stderr, "serve_bench: the first request failed\n");
    return 1;
  }
  const auto expect = nlohmann::json::parse(res->body)["predictions"][0].get<std::vector<double>>();

  std::printf("# serve_bench %s: %d clients, single-row requests (%lld values), %d rounds of %.1f s, 127.0.0.1:%d\n",
              label.c_str(), clients, (long long)width, rounds, seconds, port);
  std::printf("# %5s %10s %12s %9s %9s %7s\n", "round", "requests", "requests/s", "p50", "p99", "#wrong");
  std::printf("# %5s %10s %12s %9s %9s %7s\n", "", "", "", "(ms)", "(ms)", "");
  std::vector<Round> all;
  int64_t wrong = 0;
  for (int r = 0; r < rounds; ++r) {
    all.push_back(run_round(host, port, path, body, expect, clients, seconds));
    const Round& x = all.back();
    wrong += x.wrong;
    std::printf("  %5d %10lld %12.0f %9.3f %9.3f %7lld\n", r + 1, (long long)x.requests, x.requests_per_s,
                x.p50_ms, x.p99_ms, (long long)x.wrong);
  }
  std::sort(all.begin(), all.end(), [](const Round& a, const Round& b) { return a.requests_per_s < b.requests_per_s; });
  const Round& m = all[all.size() / 2];
  std::printf("  %5s %10lld %12.0f %9.3f %9.3f %7lld   (the median round by requests/s)\n", "median",
              (long long)m.requests, m.requests_per_s, m.p50_ms, m.p99_ms, (long long)m.wrong);
  std::printf("%s\n", wrong == 0 ? "OK" : "FAILED: some answers were not 200 with the expected predictions");
  return wrong == 0 ? 0 : 1;
}

int main(int argc, char** argv) { return lockstep::bench::run_main("serve_bench", run_bench, argc, argv); }
