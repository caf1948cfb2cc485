// Training throughput of the Fashion-MNIST MLP (784-128-10, Adam) on the real
// engine path (input pipeline with prefetch, strategy step, optimizer), beside
// the time of the same layer GEMMs alone measured in the same run: the fraction
// step_gemm / step_time says how close a step is to the GEMM bound.
// Output in the nccl-tests habit: '#' header lines, fixed columns, units row.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "comm/bootstrap.h"
#include "data/sources.h"
#include "kernels/cpu/ops.h"
#include "src/strategy.h"
#include "src/world.h"

using namespace lockstep;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The GEMMs of one training step of a Dense stack, alone, on the same shapes.
double gemm_step_seconds(const Model& model, int64_t rows, int iters) {
  std::vector<float> params(size_t(model.num_params()), 0.01f), grads(params.size());
  const int64_t w = std::max(model.max_width(), model.input_dim());
  std::vector<float> x(size_t(rows * model.input_dim()), 0.5f), a(size_t(rows * w)), b(size_t(rows * w));
  std::vector<std::vector<float>> acts;
  for (const auto& l : model.layers()) acts.emplace_back(size_t(rows * l.out), 0.1f);
  auto once = [&] {
    const float* in = x.data();
    const auto& L = model.layers();
    for (size_t l = 0; l < L.size(); ++l) {
      cpu::gemm(false, false, rows, L[l].out, L[l].in, 1.0f, in, L[l].in,
                params.data() + L[l].weight_offset, L[l].out, 0.0f, acts[l].data(), L[l].out);
      in = acts[l].data();
    }
    for (size_t l = L.size(); l-- > 0;) {
      const float* lin = l == 0 ? x.data() : acts[l - 1].data();
      cpu::gemm(true, false, L[l].in, L[l].out, rows, 1.0f, lin, L[l].in, acts[l].data(), L[l].out,
                0.0f, grads.data() + L[l].weight_offset, L[l].out);
      if (l > 0) {
        cpu::gemm(false, true, rows, L[l].in, L[l].out, 1.0f, acts[l].data(), L[l].out,
                  params.data() + L[l].weight_offset, L[l].out, 0.0f, a.data(), L[l].in);
      }
    }
  };
  for (int i = 0; i < 20; ++i) once();
  const auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) once();
  return std::chrono::duration<double>(Clock::now() - t0).count() / iters;
}

// Seconds per training step through the strategy (1 process, `replicas` threads).
double train_step_seconds(const Model& model, Config cfg, World& world, std::shared_ptr<Source> src,
                          int steps) {
  const int local = resolve_local_replicas(cfg);
  MirroredStrategy strategy(model, cfg, world, cfg.batch_size / local + 1);
  InputOptions in;
  in.global_batch = cfg.batch_size;
  in.num_replicas = local;
  in.local_replicas = local;
  in.seed = cfg.seed;
  in.prefetch = cfg.data_prefetch;
  DistributedInput input(src, in);
  double seconds = 0;
  strategy.run([&](Replica& r) {
    strategy.broadcast_initial_weights(r);
    auto loop = [&](int n) {
      for (int s = 0; s < n; ++s) {
        const ReplicaBatch* b = strategy.fetch(r, input);
        if (!b) b = strategy.fetch(r, input);  // epoch boundary: start the next
        strategy.train_step(r, *b, 1e-3f, uint64_t(s));
      }
    };
    loop(30);  // warm-up: caches, page faults, prefetch queue
    r.local_comm->barrier();
    const auto t0 = Clock::now();
    loop(steps);
    r.local_comm->barrier();
    if (r.local_index == 0) seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  });
  return seconds / steps;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lockstep training-throughput benchmark (Fashion-MNIST MLP shapes)"};
  std::vector<int64_t> batches = {64, 256};
  std::vector<int> replica_counts = {1};
  int steps = 400, reps = 5;
  std::string json_path, hidden = "128";
  app.add_option("--batch", batches, "global batch sizes")->delimiter(',');
  app.add_option("--replicas", replica_counts, "local replica counts (threads)")->delimiter(',');
  app.add_option("--steps", steps, "timed steps per repetition");
  app.add_option("--reps", reps, "repetitions (the median is reported)");
  app.add_option("--json", json_path, "also write the results as JSON");
  CLI11_PARSE(app, argc, argv);

  Bootstrap boot(&argc, &argv);
  cpu::init_kernels();
  auto comm = boot.make_world_communicator();
  World world{boot.info(), boot.world_comm(), comm.get()};

  SyntheticOptions so;
  so.size = 60000;
  so.feature_shape = {28, 28};
  so.num_classes = 10;
  auto src = make_synthetic(so);
  Model model({{128, Activation::kRelu, 0.0f}}, 784, 10, LossKind::kSoftmaxCrossEntropy);

  std::printf("# lockstep train_bench: MLP 784-128-10, Adam, synthetic data (60000 x 784), gemm: %s\n",
              cpu::gemm_backend());
  std::printf("# median of %d repetitions x %d steps; gemm = the step's 5 layer GEMMs alone, same shapes\n",
              reps, steps);
  std::printf("#%9s %8s %12s %10s %10s %10s\n", "batch", "replicas", "samples/s", "step", "gemm", "gemm/step");
  std::printf("#%9s %8s %12s %10s %10s %10s\n", "(global)", "", "", "(ms)", "(ms)", "");
  nlohmann::json out = nlohmann::json::array();
  for (int R : replica_counts) {
    for (int64_t b : batches) {
      Config cfg;
      cfg.batch_size = b;
      cfg.local_replicas = R;
      cfg.seed = 1;
      std::vector<double> step_t, gemm_t;
      for (int i = 0; i < reps; ++i) {
        gemm_t.push_back(gemm_step_seconds(model, b / R, steps));
        step_t.push_back(train_step_seconds(model, cfg, world, src, steps));
      }
      const double st = median(step_t), gt = median(gemm_t);
      std::printf("%10lld %8d %12.0f %10.4f %10.4f %10.3f\n", (long long)b, R, double(b) / st,
                  st * 1e3, gt * 1e3, gt / st);
      out.push_back({{"batch", b}, {"replicas", R}, {"samples_per_sec", double(b) / st},
                     {"ms_per_step", st * 1e3}, {"gemm_ms", gt * 1e3}, {"gemm_fraction", gt / st}});
    }
  }
  std::fflush(stdout);
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}
