// GPU replicas benchmark that is also a check: step time and samples/s of whole
// CUDA training steps (MirroredStrategy, graphs on and off) for the Fashion-MNIST
// MLP shape and a large MLP, the GEMM share of the large step against the same
// GEMMs alone on cuBLAS, and the all-reduce across this process's GPU replicas.
#include <CLI/CLI.hpp>

#include <cstdio>

#if !defined(LOCKSTEP_HAVE_CUDA)

int main(int argc, char** argv) {
  std::printf("# gpu_bench: lockstep was built without CUDA; nothing to measure "
              "(configure with -DLOCKSTEP_CUDA=ON)\n");
  return 0;
}

#else

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/machine.h"
#include "kernels/cuda/ops.h"
#include "src/accelerator.h"
#include "src/gpu_mapping.h"
#if defined(LOCKSTEP_HAVE_NCCL_GROUP)  // set by src/CMakeLists.txt when comm/ has it
#include "comm/nccl_communicator.h"
#endif

namespace lockstep {
namespace {

using Clock = std::chrono::steady_clock;

struct Settings {
  int replicas = 1;        // local GPU replicas for the training steps
  int replicas_per_gpu = 1;
  int steps = 50;          // timed steps (after warm-up)
  int warmup = 5;
  bool tf32 = false;
  size_t max_bytes = size_t{256} << 20;  // all-reduce sweep
};

struct MlpCase {
  const char* name;
  std::vector<int64_t> hidden;
  int64_t in, classes, batch;
};

// Random inputs and labels for one global batch; values do not change the time.
struct HostBatch {
  std::vector<float> x;
  std::vector<int32_t> labels;
};

HostBatch random_batch(const MlpCase& mc) {
  HostBatch h;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  h.x.resize(size_t(mc.batch * mc.in));
  for (float& v : h.x) v = u(rng);
  h.labels.resize(size_t(mc.batch));
  for (size_t i = 0; i < h.labels.size(); ++i) h.labels[i] = int32_t(rng() % uint32_t(mc.classes));
  return h;
}

// Mean seconds per synchronous step, measured on local replica 0.
double time_steps(const MlpCase& mc, const Settings& s, bool graphs) {
  std::unique_ptr<Communicator> single = make_single_communicator();
  World world{WorldInfo{}, MPI_COMM_NULL, single.get()};
  Config cfg;
  cfg.data_path = "synthetic";
  cfg.batch_size = mc.batch;
  cfg.device = DeviceKind::kCuda;
  cfg.local_replicas = s.replicas;
  cfg.replicas_per_gpu = s.replicas_per_gpu;
  cfg.cuda_graphs = graphs;
  cfg.tf32 = s.tf32;
  std::vector<LayerConfig> hidden;
  for (int64_t u : mc.hidden) hidden.push_back({u, Activation::kRelu, 0.0f});
  Model model(hidden, mc.in, mc.classes, LossKind::kSoftmaxCrossEntropy);
  const int64_t rows = mc.batch / s.replicas;
  MirroredStrategy strategy(model, cfg, world, rows);
  const HostBatch hb = random_batch(mc);
  double seconds = 0;
  strategy.run([&](Replica& r) {
    strategy.broadcast_initial_weights(r);
    ReplicaBatch b;
    b.rows = rows;
    b.first_row = rows * r.local_index;
    b.global_rows = mc.batch;
    b.x = hb.x.data() + b.first_row * mc.in;
    b.labels = hb.labels.data() + b.first_row;
    Clock::time_point t0;
    for (int i = 0; i < s.warmup + s.steps; ++i) {
      if (i == s.warmup) t0 = Clock::now();
      b.sample_base = int64_t(i) * mc.batch;
      strategy.train_step(r, b, 1e-4f, uint64_t(i));
    }
    if (r.local_index == 0) {
      seconds = std::chrono::duration<double>(Clock::now() - t0).count() / s.steps;
    }
  });
  return seconds;
}

// The step's GEMMs alone (forward, dW, dX per layer) on one cuBLAS context:
// mean seconds per step's worth, timed with events.
double time_gemms(const MlpCase& mc, const Settings& s) {
  cuda::set_device(0);
  cuda::CudaContextOwner owner(s.tf32 ? cuda::GemmMath::kTf32 : cuda::GemmMath::kFp32);
  const cuda::CudaContext& ctx = owner.get();
  const int64_t rows = mc.batch / s.replicas;
  std::vector<int64_t> dims = {mc.in};
  for (int64_t u : mc.hidden) dims.push_back(u);
  dims.push_back(mc.classes);
  int64_t widest = 0, weights = 0;
  for (size_t l = 0; l + 1 < dims.size(); ++l) {
    widest = std::max({widest, dims[l], dims[l + 1]});
    weights = std::max(weights, dims[l] * dims[l + 1]);
  }
  cuda::DeviceBuffer<float> a(static_cast<size_t>(rows * widest)),
      b(static_cast<size_t>(rows * widest)), w(static_cast<size_t>(weights)),
      g(static_cast<size_t>(weights));
  LOCKSTEP_CUDA_CHECK(cudaMemset(a.data(), 0, a.size() * 4));
  LOCKSTEP_CUDA_CHECK(cudaMemset(b.data(), 0, b.size() * 4));
  LOCKSTEP_CUDA_CHECK(cudaMemset(w.data(), 0, w.size() * 4));
  LOCKSTEP_CUDA_CHECK(cudaDeviceSynchronize());  // legacy-stream memsets before ctx.stream work
  auto one_step = [&] {
    for (size_t l = 0; l + 1 < dims.size(); ++l) {
      const int64_t in = dims[l], out = dims[l + 1];
      cuda::gemm(ctx, false, false, rows, out, in, 1.0f, a.data(), in, w.data(), out, 0.0f,
                 b.data(), out);
      cuda::gemm(ctx, true, false, in, out, rows, 1.0f, a.data(), in, b.data(), out, 0.0f,
                 g.data(), out);
      if (l > 0) {
        cuda::gemm(ctx, false, true, rows, in, out, 1.0f, b.data(), out, w.data(), out, 0.0f,
                   a.data(), in);
      }
    }
  };
  for (int i = 0; i < s.warmup; ++i) one_step();
  cuda::Event start(true), stop(true);
  start.record(ctx.stream);
  for (int i = 0; i < s.steps; ++i) one_step();
  stop.record(ctx.stream);
  stop.synchronize();
  float ms = 0;
  LOCKSTEP_CUDA_CHECK(cudaEventElapsedTime(&ms, start.get(), stop.get()));
  return double(ms) * 1e-3 / s.steps;
}

void print_steps(const Settings& s) {
  const MlpCase cases[] = {
      {"fmnist_mlp", {128}, 784, 10, 64},
      {"mlp_4x4096", {4096, 4096, 4096, 4096}, 4096, 10, 4096},
  };
  std::printf("#\n# training steps: %d local replica(s), %d per GPU, %s GEMMs, %d timed steps\n",
              s.replicas, s.replicas_per_gpu, s.tf32 ? "TF32" : "FP32", s.steps);
  std::printf("# %12s %8s %7s %10s %12s %10s %9s\n", "model", "batch", "graphs", "step",
              "throughput", "gemms", "gemm_frac");
  std::printf("# %12s %8s %7s %10s %12s %10s %9s\n", "", "(rows)", "", "(ms)", "(samples/s)",
              "(ms)", "(%)");
  for (const MlpCase& mc : cases) {
    const bool large = mc.batch >= 4096;
    const double gemm = large ? time_gemms(mc, s) : 0.0;
    for (bool graphs : {false, true}) {
      const double t = time_steps(mc, s, graphs);
      char gemm_ms[32] = "-", frac[32] = "-";
      if (large) {
        std::snprintf(gemm_ms, sizeof gemm_ms, "%.3f", gemm * 1e3);
        std::snprintf(frac, sizeof frac, "%.1f", 100.0 * gemm / t);
      }
      std::printf("  %12s %8lld %7s %10.3f %12.0f %10s %9s\n", mc.name, (long long)mc.batch,
                  graphs ? "on" : "off", t * 1e3, double(mc.batch) / t, gemm_ms, frac);
      std::fflush(stdout);
    }
  }
}

#if defined(LOCKSTEP_HAVE_NCCL_GROUP)
// All-reduce across the local GPU replicas; member i contributes i + 1 everywhere,
// so every element of the result must be exactly K (K + 1) / 2 (#wrong counts others).
int sweep_allreduce(const Settings& s) {
  const int k = s.replicas;
  const int count = cuda::device_count();
  std::vector<int> devices;
  for (int i = 0; i < k; ++i) devices.push_back(device_for_replica(gpu_share(count, 1, 0, false), i, s.replicas_per_gpu));
  cuda::set_device(devices[0]);
  NcclGroup group(MPI_COMM_NULL, devices);
  std::printf("#\n# all-reduce (sum, float) across %d local GPU replica(s)\n", k);
  std::printf("# %12s %12s %6s %10s %10s %10s %7s\n", "size", "count", "type", "time", "algbw",
              "busbw", "#wrong");
  std::printf("# %12s %12s %6s %10s %10s %10s %7s\n", "(B)", "(elements)", "", "(us)", "(GB/s)",
              "(GB/s)", "");
  int64_t total_wrong = 0;
  for (size_t bytes = 1 << 20; bytes <= s.max_bytes; bytes *= 4) {
    const size_t n = bytes / sizeof(float);
    std::vector<double> seconds(static_cast<size_t>(k));
    std::vector<int64_t> wrong(static_cast<size_t>(k));
    group.run([&](int i) {
      cuda::set_device(devices[size_t(i)]);
      cuda::Stream stream;
      group.set_stream(i, stream.get());
      cuda::DeviceBuffer<float> buf(n);
      std::vector<float> host(n, float(i + 1));
      Communicator& c = group.member(i);
      for (int it = 0; it < s.warmup; ++it) c.allreduce(buf.data(), n);
      stream.synchronize();
      const auto t0 = Clock::now();
      for (int it = 0; it < s.steps; ++it) c.allreduce(buf.data(), n);
      stream.synchronize();
      seconds[size_t(i)] = std::chrono::duration<double>(Clock::now() - t0).count() / s.steps;
      LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(buf.data(), host.data(), n * sizeof(float),
                                          cudaMemcpyHostToDevice, stream.get()));
      c.allreduce(buf.data(), n);
      LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(host.data(), buf.data(), n * sizeof(float),
                                          cudaMemcpyDeviceToHost, stream.get()));
      stream.synchronize();
      const float want = float(k * (k + 1) / 2);
      for (float v : host) wrong[size_t(i)] += v != want;
    });
    const double t = *std::max_element(seconds.begin(), seconds.end());
    int64_t bad = 0;
    for (int64_t w : wrong) bad += w;
    total_wrong += bad;
    const double algbw = double(bytes) / t / 1e9;
    const double busbw = algbw * 2.0 * (k - 1) / std::max(1, k);
    std::printf("  %12zu %12zu %6s %10.1f %10.2f %10.2f %7lld\n", bytes, n, "float", t * 1e6,
                algbw, busbw, (long long)bad);
    std::fflush(stdout);
  }
  return total_wrong == 0 ? 0 : 1;
}
#else
int sweep_allreduce(const Settings&) {
  std::printf("#\n# all-reduce: skipped, this build has no NCCL group (comm/nccl_communicator.h)\n");
  return 0;
}
#endif

}  // namespace
}  // namespace lockstep

int main(int argc, char** argv) {
  using namespace lockstep;
  Settings s;
  CLI::App app{"lockstep GPU replicas benchmark (training steps, GEMM share, all-reduce)"};
  app.add_option("--replicas", s.replicas, "local GPU replicas (default 1)")->check(CLI::Range(1, 64));
  app.add_option("--replicas-per-gpu", s.replicas_per_gpu, "replicas sharing one GPU")->check(CLI::Range(1, 64));
  app.add_option("--steps", s.steps, "timed steps per measurement")->check(CLI::Range(1, 100000));
  app.add_option("--warmup", s.warmup, "untimed steps first")->check(CLI::Range(0, 100000));
  app.add_flag("--tf32", s.tf32, "TF32 tensor-core GEMMs");
  app.add_option("--max-bytes", s.max_bytes, "largest all-reduce (bytes)");
  CLI11_PARSE(app, argc, argv);
  const int devices = cuda::device_count();
  if (devices == 0) {
    std::printf("# gpu_bench: no CUDA device visible; nothing measured\n# OK (skipped)\n");
    return 0;
  }
  try {
    std::printf("# CPU: %s\n", lockstep::bench::cpu_description().c_str());
    std::printf("# lockstep gpu_bench: %d visible device(s); device 0: %s\n", devices,
                cuda::device_name(0).c_str());
    print_steps(s);
    const int rc = sweep_allreduce(s);
    std::printf("#\n# %s\n", rc == 0 ? "OK" : "FAILED: wrong all-reduce results");
    return rc;
  } catch (const std::exception& e) {
    std::printf("#\n# FAILED: %s\n", e.what());
    return 1;
  }
}

#endif  // LOCKSTEP_HAVE_CUDA
