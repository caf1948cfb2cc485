// What the timeline (--trace) and TensorBoard files cost per training step, on
// the real step path (input pipeline, strategy, bucketed all-reduce, optimizer)
// of the reference MLP: rounds of blocks of steps with tracing off, on, and with
// a TensorBoard batch_loss record written every step (100x the default rate),
// the order rotated every round so every mode sees the same machine. Reports
// median step times per mode. Also a check: the trace must hold exactly the
// spans of the traced steps and the event file every record, else FAILED.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "comm/bootstrap.h"
#include "bench/run_main.h"
#include "data/sources.h"
#include "kernels/cpu/ops.h"
#include "src/step_times.h"
#include "src/strategy.h"
#include "src/tensorboard.h"
#include "src/trace.h"
#include "src/world.h"

namespace {

using namespace lockstep;
using Clock = std::chrono::steady_clock;
enum Mode { kOff, kTrace, kTensorBoard, kModes };
const char* const kModeNames[kModes] = {"off", "trace", "tensorboard"};

// Median ns per call of fn over 21 samples of n calls each (reset between samples).
template <typename Fn, typename Reset>
double direct_ns(int n, Fn&& fn, Reset&& reset) {
  std::vector<double> samples;
  for (int k = 0; k < 21; ++k) {
    reset();
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) fn();
    samples.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / n);
  }
  return median(samples);
}

}  // namespace

static int run_bench(int argc, char** argv) {
  CLI::App app{"lockstep observability benchmark: step time with tracing off/on and TensorBoard records"};
  int replicas = 2, rounds = 40, block = 50, batch = 64;
  std::string data_path;
  app.add_option("--replicas", replicas, "local replica threads (default 2)");
  app.add_option("--batch", batch, "global batch (default 64)");
  app.add_option("--rounds", rounds, "rounds; each runs a block of steps in every mode (default 40)");
  app.add_option("--block", block, "steps per block (default 50)");
  app.add_option("--data", data_path, "HDF5 dataset (train split, /255), e.g. datasets/fashion_mnist.h5")
      ->required();
  CLI11_PARSE(app, argc, argv);

  Bootstrap boot(&argc, &argv);
  cpu::init_kernels();
  auto comm = boot.make_world_communicator(CommOptions{});
  World world{boot.info(), boot.world_comm(), comm.get()};
  auto src = open_dataset(data_path, "train", 1.0f / 255.0f);
  Model model({{128, Activation::kRelu, 0.0f}}, src->info().feature_dim, src->info().num_classes,
              LossKind::kSoftmaxCrossEntropy);
  Config cfg;
  cfg.batch_size = batch;
  cfg.local_replicas = replicas;
  cfg.seed = 1;
  MirroredStrategy strategy(model, cfg, world, batch / replicas + 1);
  InputOptions in;
  in.global_batch = batch;
  in.num_replicas = replicas;
  in.local_replicas = replicas;
  in.seed = 1;
  in.replica_gather = resolve_gather(cfg, *src);
  DistributedInput input(src, in);

  const std::string tb_dir = std::filesystem::temp_directory_path() / ("lockstep-obs-bench-" + std::to_string(getpid()));
  Tracer tracer(0, replicas, int64_t(rounds) * block);
  tracer.start_at(-Tracer::kWarmupSteps);  // every step may be traced
  std::vector<double> times[kModes];
  int64_t traced_steps = 0, tb_records = 0;
  {
    TensorBoardLog tb(tb_dir);
    strategy.run([&](Replica& r) {
      strategy.broadcast_initial_weights(r);
      r.reducer_trace = &tracer.reducer(r.local_index);
      tracer.replica(r.local_index).set_backend(r.comm->name());
      int64_t step = 0;
      auto one = [&](Mode m) {
        const StepCounters before{r.input_seconds, r.step_seconds, 0, 0};
        r.trace = m == kTrace ? &tracer.replica(r.local_index) : nullptr;
        if (r.trace) r.trace->set_step(step + 1);
        const ReplicaBatch* b = strategy.fetch(r, input);
        if (!b) b = strategy.fetch(r, input);  // epoch boundary
        const StepResult res = strategy.train_step(r, *b, 1e-3f, uint64_t(step));
        if (m == kTensorBoard && r.local_index == 0) {
          tb.batch_loss(step + 1, res.global.loss_sum / double(std::max<int64_t>(1, res.global.rows)));
        }
        ++step;
        if (r.local_index != 0) return;
        times[m].push_back((r.input_seconds - before.input) + (r.step_seconds - before.step));
        traced_steps += m == kTrace;
        tb_records += m == kTensorBoard;
      };
      for (int i = 0; i < 100; ++i) one(kOff);  // warm-up
      for (auto& t : times) t.clear();
      for (int round = 0; round < rounds; ++round) {
        for (int k = 0; k < kModes; ++k) {
          const Mode m = Mode((round + k) % kModes);
          for (int s = 0; s < block; ++s) one(m);
        }
      }
      r.trace = nullptr;
    });
  }
  // The check: 5 spans per traced step on each replica (input wait, forward,
  // backward, the one bucket's all-reduce, optimizer), one record per TB step
  // plus the version record and none lost.
  bool ok = tracer.dropped() == 0;
  for (int i = 0; i < replicas; ++i) ok = ok && int64_t(tracer.replica(i).spans().size()) == 5 * traced_steps;
  int64_t records = 0;  // TFRecords in the train/ file: walk the length fields
  for (const auto& f : std::filesystem::directory_iterator(std::filesystem::path(tb_dir) / "tensorboard" / "train")) {
    std::FILE* fp = std::fopen(f.path().c_str(), "rb");
    uint64_t len = 0;
    while (fp && std::fread(&len, 8, 1, fp) == 1 && std::fseek(fp, long(4 + len + 4), SEEK_CUR) == 0) ++records;
    if (fp) std::fclose(fp);
  }
  ok = ok && records == tb_records + 1;  // + the file_version record
  std::filesystem::remove_all(tb_dir);

  std::printf("# lockstep observability_bench: MLP %lld-128-%lld, Adam, global batch %d, %d replica threads, %s\n",
              (long long)src->info().feature_dim, (long long)src->info().num_classes, batch, replicas,
              data_path.c_str());
  std::printf("# %d rounds x %d steps per mode, order rotated each round; step = input wait + train_step of replica 0\n",
              rounds, block);
  std::printf("# tensorboard writes a batch_loss record every step (the default is every 100 steps)\n");
  std::printf("%-12s %8s %12s %10s %12s\n", "mode", "steps", "median", "vs off", "mean");
  std::printf("%-12s %8s %12s %10s %12s\n", "", "", "ms/step", "", "ms/step");
  const double off = median(times[kOff]);
  for (int m = 0; m < kModes; ++m) {
    double mean = 0;
    for (double t : times[m]) mean += t;
    mean /= double(std::max<size_t>(1, times[m].size()));
    std::printf("%-12s %8zu %12.4f %10.4f %12.4f\n", kModeNames[m], times[m].size(), 1e3 * median(times[m]),
                median(times[m]) / off, 1e3 * mean);
  }
  // The instrumentation alone, away from the step: a span record, a clock read
  // and a TensorBoard record (medians of 21 samples), and what a traced step adds.
  std::unique_ptr<TraceTrack> track;
  const auto t0 = TraceClock::now();
  const double span_ns = direct_ns(10000, [&] { track->span("forward", t0, t0, 668); },
                                   [&] { track = std::make_unique<TraceTrack>("bench", 0, 10000); });
  const double clock_ns = direct_ns(10000, [] {
    static volatile int64_t sink = 0;
    sink = sink + TraceClock::now().time_since_epoch().count();
  }, [] {});
  const std::string tb2 = tb_dir + "-2";
  double tb_ns = 0;
  {
    TensorBoardLog log(tb2);
    int64_t k = 0;
    tb_ns = direct_ns(1000, [&] { log.batch_loss(++k, 0.5); }, [] {});
  }
  std::filesystem::remove_all(tb2);
  // A traced step of the MLP: 5 spans and 2 clock reads of its own (the end of
  // forward and of backward); the other times are read with tracing off too.
  const double per_step_us = (5 * span_ns + 2 * clock_ns) / 1e3;
  std::printf("# alone: span record %.1f ns, clock read %.1f ns, TensorBoard record %.2f us\n", span_ns, clock_ns,
              tb_ns / 1e3);
  std::printf("# a traced step adds %.3f us = %.3f%% of the off median step; batch_loss every 100 steps adds "
              "%.4f us per step = %.4f%%\n",
              per_step_us, 100.0 * per_step_us / (off * 1e6),
              tb_ns / 1e3 / 100.0, 100.0 * (tb_ns / 1e3 / 100.0) / (off * 1e6));
  std::printf("%s\n", ok ? "OK" : "FAILED: the trace or the event file lost records");
  return ok ? 0 : 1;
}

int main(int argc, char** argv) { return lockstep::bench::run_main("observability_bench", run_bench, argc, argv); }
