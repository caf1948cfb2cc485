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
#include "bench/cache_line.h"
#include "bench/machine.h"
#include "bench/run_main.h"
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
  for (const auto& l : model.layers()) acts.emplace_back(size_t(rows * l.out_size()), 0.1f);
  auto once = [&] {
    const float* in = x.data();
    const auto& L = model.layers();
    for (size_t l = 0; l < L.size(); ++l) {
      cpu::gemm(false, false, rows, L[l].out_size(), L[l].in_size(), 1.0f, in, L[l].in_size(),
                params.data() + L[l].weight_offset, L[l].out_size(), 0.0f, acts[l].data(), L[l].out_size());
      in = acts[l].data();
    }
    for (size_t l = L.size(); l-- > 0;) {
      const float* lin = l == 0 ? x.data() : acts[l - 1].data();
      cpu::gemm(true, false, L[l].in_size(), L[l].out_size(), rows, 1.0f, lin, L[l].in_size(), acts[l].data(), L[l].out_size(),
                0.0f, grads.data() + L[l].weight_offset, L[l].out_size());
      if (l > 0) {
        cpu::gemm(false, true, rows, L[l].in_size(), L[l].out_size(), 1.0f, acts[l].data(), L[l].out_size(),
                  params.data() + L[l].weight_offset, L[l].out_size(), 0.0f, a.data(), L[l].in_size());
      }
    }
  };
  for (int i = 0; i < 20; ++i) once();
  const auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) once();
  return std::chrono::duration<double>(Clock::now() - t0).count() / iters;
}

struct StepTimes {
  // Seconds per step (replica 0 of rank 0): the whole step, forward+backward,
  // inside gradient collectives, the finite check + optimizer, waiting for input.
  double step = 0, compute = 0, comm = 0, optimizer = 0, input = 0;
};

// FLOPs of one example's training step through a Dense stack: forward and the
// weight gradient of every layer, the input gradient of every layer but the first.
double flops_per_example(const Model& model) {
  double f = 0;
  for (size_t l = 0; l < model.layers().size(); ++l) {
    const auto& L = model.layers()[l];
    f += 2.0 * double(L.in_size()) * double(L.out_size()) * (l == 0 ? 2 : 3);
  }
  return f;
}

// Times training steps through the strategy (this process's `replicas` threads
// x all MPI ranks), on the real input pipeline with prefetch, after `warmup`
// steps (the weights then hold what they hold after that much training).
StepTimes time_steps(const Model& model, Config cfg, World& world, std::shared_ptr<Source> src,
                     int steps, int warmup) {
  const int local = resolve_local_replicas(cfg);
  const int R = local * world.size();
  MirroredStrategy strategy(model, cfg, world, cfg.batch_size / R + 1);
  InputOptions in;
  in.global_batch = cfg.batch_size;
  in.num_replicas = R;
  in.first_replica = strategy.first_replica();
  in.local_replicas = local;
  in.seed = cfg.seed;
  in.prefetch = cfg.data_prefetch;
  in.replica_gather = resolve_gather(cfg, *src);
  DistributedInput input(src, in);
  StepTimes t;
  strategy.run([&](Replica& r) {
    strategy.broadcast_initial_weights(r);
    auto loop = [&](int n) {
      for (int s = 0; s < n; ++s) {
        const ReplicaBatch* b = strategy.fetch(r, input);
        if (!b) b = strategy.fetch(r, input);  // epoch boundary: start the next
        strategy.train_step(r, *b, 1e-3f, uint64_t(s));
      }
    };
    loop(warmup);  // caches, page faults, the prefetch queue, and the weights' first epoch
    r.comm->barrier();
    r.input_seconds = r.comm_seconds = r.optimizer_seconds = r.step_seconds = 0;
    const auto t0 = Clock::now();
    loop(steps);
    r.comm->barrier();
    if (r.local_index == 0) {
      t.step = std::chrono::duration<double>(Clock::now() - t0).count() / steps;
      t.comm = r.comm_seconds / steps;
      t.optimizer = r.optimizer_seconds / steps;
      t.compute = r.step_seconds / steps - t.comm - t.optimizer;
      t.input = r.input_seconds / steps;
    }
  });
  return t;
}

}  // namespace

static int run_bench(int argc, char** argv) {
  CLI::App app{"lockstep training benchmark: throughput, GEMM bound and scaling (Fashion-MNIST MLP)"};
  std::vector<int64_t> batches = {64, 256};
  std::vector<int> replica_counts = {1};
  int steps = 400, reps = 5, prefetch = 2, warmup = -1;
  std::string gather = "auto";
  bool shared_memory = true, share_weights = true;
  CommOptions::ShmStores shm_stores = CommOptions::ShmStores::kAuto;
  std::string json_path, scaling = "weak", data_path;
  app.add_option("--batch", batches, "batch sizes: per replica (weak scaling) or global (strong)")
      ->delimiter(',');
  app.add_option("--replicas", replica_counts, "local replica counts (threads) to sweep")->delimiter(',');
  app.add_option("--scaling", scaling, "weak: fixed per-replica batch; strong: fixed global batch")
      ->check(CLI::IsMember({"weak", "strong"}));
  app.add_option("--steps", steps, "timed steps per repetition");
  app.add_option("--reps", reps, "repetitions (the median is reported)");
  app.add_option("--warmup", warmup, "untimed steps first (default: one epoch of the data at the batch, "
                 "so the weights are past the first epoch, as in the steady state of a real job)");
  app.add_option("--prefetch", prefetch, "global batches prepared ahead (data.prefetch; 0 = none)");
  app.add_option("--gather", gather, "data.gather: who reads the rows (auto, thread, replicas)")
      ->check(CLI::IsMember({"auto", "thread", "replicas"}));
  app.add_option("--data", data_path,
                 "an HDF5 dataset in lockstep's layout (its train split, pixels scaled by 1/255; "
                 "e.g. datasets/fashion_mnist.h5 from launch/run.sh) instead of synthetic data");
  app.add_option("--shm-stores", shm_stores, "comm.shm_stores: auto, plain or streaming")
      ->transform(CLI::CheckedTransformer(CommOptions::shm_store_names()));
  app.add_option("--shared-memory", shared_memory,
                 "comm.shared_memory: ranks on one node all-reduce through shared memory (false: MPI)");
  app.add_option("--share-weights", share_weights,
                 "strategy.share_weights: CPU replicas keep one arena and split the update (false: a copy "
                 "each, each runs the whole update)");
  app.add_option("--json", json_path, "also write the results as JSON");
  CLI11_PARSE(app, argc, argv);

  Bootstrap boot(&argc, &argv);
  cpu::init_kernels();
  CommOptions comm_opts;
  comm_opts.shared_memory = shared_memory;
  comm_opts.shm_stores = shm_stores;
  auto comm = boot.make_world_communicator(comm_opts);
  World world{boot.info(), boot.world_comm(), comm.get()};
  const bool chief = world.rank() == 0;

  std::shared_ptr<Source> src;
  if (data_path.empty()) {
    SyntheticOptions so;
    so.size = 60000;
    so.feature_shape = {28, 28};
    so.num_classes = 10;
    src = make_synthetic(so);
  } else {
    src = open_dataset(data_path, "train", 1.0f / 255.0f);
  }
  const DatasetInfo& info = src->info();
  if (info.feature_dim != 784 || info.num_classes != 10) {
    std::fprintf(stderr, "train_bench: %s has %lld features and %lld classes; the benchmark's MLP "
                 "needs 784 and 10 (Fashion-MNIST or MNIST)\n", info.description.c_str(),
                 (long long)info.feature_dim, (long long)info.num_classes);
    return 2;
  }
  Model model({{128, Activation::kRelu, 0.0f}}, 784, 10, LossKind::kSoftmaxCrossEntropy);

  const double peak512 = bench::fma_peak_best(512), peak256 = bench::fma_peak_best(256);
  const double peak = std::max(peak512, peak256);
  if (chief) {
    std::printf("# CPU: %s\n# single-core FMA peak measured here: %.0f GFLOP/s (512-bit), %.0f GFLOP/s "
                "(256-bit)\n", bench::cpu_description().c_str(), peak512, peak256);
    std::printf("# lockstep train_bench: MLP 784-128-10, Adam, %s (%lld x 784), gemm: %s\n",
                info.description.c_str(), (long long)info.size, cpu::gemm_backend());
    std::printf("# %s scaling, %d process(es), median of %d repetitions x %d steps, strategy.share_weights: %s\n",
                scaling.c_str(), world.size(), reps, steps, share_weights ? "true" : "false");
    std::printf("# warm-up before timing: %s\n", warmup < 0 ? "one epoch of the data at each batch"
                                                            : (std::to_string(warmup) + " steps").c_str());
    std::printf("# compute = forward + backward; comm = inside gradient collectives; opt = finite check +"
                " optimizer; input = waiting for the batch\n");
    std::printf("# gemm = the 5 layer GEMMs of one replica's step alone (same shapes, same run);"
                " eff = samples/s / (replicas x samples/s of the first row of the same batch);"
                " peak = GFLOP/s per replica / single-core FMA peak\n");
    std::printf("# line = one-way time for a cache line between the first two CPUs (where the first two"
                " replicas run), just before the row: tens of ns under one last-level cache, several times"
                " that under two, which a VM's host may switch between ('-': several processes, or one CPU)\n");
    std::printf("#%6s %6s %5s %5s %11s %8s %8s %8s %8s %8s %8s %6s %6s %7s %5s %6s\n", "global", "per", "procs",
                "repl", "samples/s", "step", "compute", "comm", "opt", "input", "gemm", "g/step", "eff",
                "GF/s", "peak", "line");
    std::printf("#%6s %6s %5s %5s %11s %8s %8s %8s %8s %8s %8s %6s %6s %7s %5s %6s\n", "batch", "repl", "", "",
                "", "(ms)", "(ms)", "(ms)", "(ms)", "(ms)", "(ms)", "", "", "(repl)", "", "(ns)");
  }
  nlohmann::json out = nlohmann::json::array();
  for (int64_t b : batches) {
    double base = 0;
    for (int local : replica_counts) {
      const int R = local * world.size();
      const int64_t global = scaling == "weak" ? b * R : b;
      if (global % R != 0) continue;
      Config cfg;
      cfg.batch_size = global;
      cfg.local_replicas = local;
      cfg.seed = 1;
      cfg.data_prefetch = prefetch;
      cfg.comm_shared_memory = shared_memory;
      cfg.comm_shm_stores = shm_stores;
      cfg.share_weights = share_weights;
      cfg.data_gather = gather == "thread" ? GatherMode::kThread
                        : gather == "replicas" ? GatherMode::kReplicas : GatherMode::kAuto;
      // Alone on the node only: other ranks would spin in a collective meanwhile.
      const double line = world.size() == 1 ? bench::first_pair_ns() : -1.0;
      std::vector<double> step_t, comp_t, comm_t, opt_t, in_t, gemm_t;
      const int warm = warmup >= 0 ? warmup : int(std::max<int64_t>(30, info.size / global));
      for (int i = 0; i < reps; ++i) {
        gemm_t.push_back(gemm_step_seconds(model, global / R, steps));
        const StepTimes t = time_steps(model, cfg, world, src, steps, warm);
        step_t.push_back(t.step), comp_t.push_back(t.compute), comm_t.push_back(t.comm),
            opt_t.push_back(t.optimizer), in_t.push_back(t.input);
      }
      const double st = median(step_t), gt = median(gemm_t);
      const double sps = double(global) / st;
      if (base == 0) base = sps / R;
      const double eff = sps / (R * base);
      const double gflops = sps / R * flops_per_example(model) / 1e9;  // per replica
      if (chief) {
        const std::string line_col = line > 0 ? std::to_string(int64_t(line + 0.5)) : "-";
        std::printf("%7lld %6lld %5d %5d %11.0f %8.4f %8.4f %8.4f %8.4f %8.4f %8.4f %6.3f %6.3f %7.1f %5.3f %6s\n",
                    (long long)global, (long long)(global / R), world.size(), local, sps, st * 1e3,
                    median(comp_t) * 1e3, median(comm_t) * 1e3, median(opt_t) * 1e3, median(in_t) * 1e3,
                    gt * 1e3, gt / st, eff, gflops, peak > 0 ? gflops / peak : 0.0, line_col.c_str());
        std::fflush(stdout);
      }
      out.push_back({{"global_batch", global}, {"processes", world.size()}, {"local_replicas", local},
                     {"samples_per_sec", sps}, {"ms_per_step", st * 1e3},
                     {"compute_ms", median(comp_t) * 1e3}, {"comm_ms", median(comm_t) * 1e3},
                     {"optimizer_ms", median(opt_t) * 1e3}, {"gflops_per_replica", gflops},
                     {"fma_peak_gflops", peak}, {"cpu", bench::cpu_description()},
                     {"input_ms", median(in_t) * 1e3}, {"gemm_ms", gt * 1e3},
                     {"gemm_fraction", gt / st}, {"efficiency", eff}, {"scaling", scaling},
                     {"share_weights", share_weights},
                     {"line_ns", line > 0 ? nlohmann::json(line) : nlohmann::json(nullptr)}});
    }
  }
  if (chief && !json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}

int main(int argc, char** argv) { return lockstep::bench::run_main("train_bench", run_bench, argc, argv); }
