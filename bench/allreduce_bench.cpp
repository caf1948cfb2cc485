// All-reduce bandwidth benchmark that is also a correctness check, laid out like
// the usual collective benchmarks: '#' header lines, fixed-width columns with a
// units row, algbw/busbw, a #wrong column, a final "# OK"/"# FAILED" and exit code.
// Backends: local (threads), mpi, shm (processes of one node through shared
// memory), hierarchical (processes x threads), mpi-raw
// (plain MPI_Allreduce, the baseline to beat), and in a CUDA build nccl (device
// buffers, one replica thread per GPU or several sharing one).
#include <CLI/CLI.hpp>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "bench/machine.h"
#include "bench/run_main.h"
#include "comm/bootstrap.h"
#include "comm/hierarchical_communicator.h"
#include "comm/local_communicator.h"
#include "comm/mpi_check.h"
#include "comm/mpi_communicator.h"
#include "comm/shm_communicator.h"
#include "comm/placement.h"

#if defined(LOCKSTEP_HAVE_CUDA)
#include "comm/nccl_communicator.h"
#include "kernels/cuda/device.h"
#endif

namespace lockstep {
namespace {

struct Settings {
  std::string backend = "local";
  int replicas = 2;
  size_t min_bytes = 4096;
  size_t max_bytes = size_t{256} << 20;
  double factor = 2.0;
  int iters = 20;
  int warmup = 5;
  double timeout_s = 300.0;
  bool pin = true;
  int local_rank = 0;  // node-local process rank, for choosing CPUs
  std::string json_path;
  CommOptions::ShmStores shm_stores = CommOptions::ShmStores::kAuto;
  bool comm_buffers = true;  // the buffer from Communicator::allocate, as training's gradients
};

struct Row {
  size_t bytes = 0;
  size_t count = 0;
  double time_us = 0;  // median over iterations of the slowest member's time
  double algbw = 0;    // GB/s
  double busbw = 0;
  int64_t wrong = 0;
};

// The baseline: MPI_Allreduce on MPI_COMM_WORLD exactly as an application would
// call it, in place. Only what the benchmark needs is offered.
class RawMpiCommunicator final : public Communicator {
 public:
  explicit RawMpiCommunicator(MPI_Comm comm) : comm_(comm) {
    LOCKSTEP_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    LOCKSTEP_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi-raw"; }
  void do_allreduce(void* buf, size_t count, DType dtype, ReduceOp op) override {
    const MPI_Op mop = op == ReduceOp::kSum ? MPI_SUM : op == ReduceOp::kMax ? MPI_MAX : MPI_MIN;
    LOCKSTEP_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, static_cast<int>(count), mpi_datatype(dtype),
                                     mop, comm_));
  }
  void do_broadcast(void*, size_t, DType, int) override {
    throw CommError("mpi-raw: broadcast is not part of the baseline");
  }
  void do_allgather(const void*, void*, size_t, DType) override {
    throw CommError("mpi-raw: allgather is not part of the baseline");
  }
  void barrier() override { LOCKSTEP_MPI_CHECK(MPI_Barrier(comm_)); }

 private:
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};

// Small integers: every partial sum is exact in fp32, whatever the order.
float pattern(int rank, size_t i) {
  return static_cast<float>(static_cast<int>((i * 7 + static_cast<size_t>(rank) * 13) % 61) - 30);
}

int64_t check_size(Communicator& comm, float* buf, size_t count) {
  for (size_t i = 0; i < count; ++i) buf[i] = pattern(comm.rank(), i);
  comm.allreduce(buf, count, ReduceOp::kSum);
  int64_t wrong = 0;
  for (size_t i = 0; i < count; ++i) {
    double expect = 0;
    for (int r = 0; r < comm.size(); ++r) expect += pattern(r, i);
    if (buf[i] != static_cast<float>(expect)) ++wrong;
  }
  comm.allreduce(&wrong, 1, ReduceOp::kSum);
  return wrong;
}

double median_of_slowest(Communicator& comm, std::vector<double>& times) {
  comm.allreduce(times.data(), times.size(), ReduceOp::kMax);
  std::sort(times.begin(), times.end());
  const size_t n = times.size();
  return n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
}

Row measure_size(Communicator& comm, float* buf, size_t bytes, const Settings& s) {
  using Clock = std::chrono::steady_clock;
  Row row;
  row.bytes = bytes;
  row.count = bytes / sizeof(float);
  for (size_t i = 0; i < row.count; ++i) buf[i] = 1.0f;
  for (int w = 0; w < s.warmup; ++w) comm.allreduce(buf, row.count, ReduceOp::kSum);
  std::vector<double> times(s.iters);
  comm.barrier();
  for (int it = 0; it < s.iters; ++it) {
    const auto t0 = Clock::now();
    comm.allreduce(buf, row.count, ReduceOp::kSum);
    times[it] = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  }
  row.time_us = median_of_slowest(comm, times);
  const int n = comm.size();
  row.algbw = row.time_us > 0 ? static_cast<double>(bytes) / row.time_us / 1e3 : 0.0;
  row.busbw = row.algbw * 2.0 * (n - 1) / n;
  row.wrong = check_size(comm, buf, row.count);
  return row;
}

std::vector<size_t> sweep(const Settings& s) {
  std::vector<size_t> sizes;
  for (double b = static_cast<double>(s.min_bytes); b <= static_cast<double>(s.max_bytes) * 1.0000001;
       b *= s.factor) {
    sizes.push_back(static_cast<size_t>(b) / sizeof(float) * sizeof(float));
    if (s.factor <= 1.0) break;
  }
  return sizes;
}

void print_row(const Row& r) {
  std::printf("%12zu  %12zu  %8s  %10.2f  %8.2f  %8.2f  %7lld\n", r.bytes, r.count, "float32",
              r.time_us, r.algbw, r.busbw, static_cast<long long>(r.wrong));
  std::fflush(stdout);
}

// One member's whole run; rank 0 prints as it goes.
std::vector<Row> run_member(Communicator& comm, const Settings& s) {
  const std::vector<size_t> sizes = sweep(s);
  const size_t count = sizes.empty() ? 1 : sizes.back() / sizeof(float);
  // --buffers own: the base's ordinary memory, which every backend also takes.
  CommBuffer mem = s.comm_buffers ? comm.allocate(count) : comm.Communicator::allocate(count);
  float* buf = mem.data();
  std::vector<Row> rows;
  for (size_t bytes : sizes) {
    rows.push_back(measure_size(comm, buf, bytes, s));
    if (comm.rank() == 0) print_row(rows.back());
  }
  return rows;
}

// Pins the calling replica thread (see comm/placement.h); MPI ranks are left to mpirun.
void place_replica(const Settings& s, int replica, int replicas) {
  if (s.pin) pin_current_thread(s.local_rank * replicas + replica);
}

// Every member on its own thread (ReplicaGroup::run: the first exception fails the
// group and is rethrown); member 0's rows are printed.
std::vector<Row> run_threads(ReplicaGroup& group, const Settings& s) {
  std::vector<Row> rows;
  group.run([&](int i) {
    place_replica(s, i, group.local_size());
    std::vector<Row> mine = run_member(group.member(i), s);
    if (i == 0) rows = std::move(mine);
  });
  return rows;
}

void print_header(const Settings& s, const WorldInfo& w, int ranks, int local) {
  std::printf("# lockstep allreduce_bench\n# CPU: %s\n", lockstep::bench::cpu_description().c_str());
  std::printf("# backend: %s  ranks: %d  processes: %d  replicas per process: %d\n",
              s.backend.c_str(), ranks, w.size, local);
  std::printf("# host: %s  launcher: %s\n", w.host.c_str(), w.launcher.c_str());
  std::printf("# replica threads pinned to their own CPUs: %s\n",
              s.pin && s.backend != "mpi" && s.backend != "shm" && s.backend != "mpi-raw" && s.backend != "nccl"
                  ? "yes" : "no");
  std::printf("# buffer: %s\n", s.comm_buffers ? "the communicator's (Communicator::allocate, as "
              "training's gradients; shm: shared by the processes)" : "ordinary memory (--buffers own)");
  std::printf("# op: sum  in place  iters: %d  warmup: %d  time: median over iters of the "
              "slowest member\n#\n", s.iters, s.warmup);
  std::printf("#%11s  %12s  %8s  %10s  %8s  %8s  %7s\n", "size", "count", "type", "time", "algbw",
              "busbw", "#wrong");
  std::printf("#%11s  %12s  %8s  %10s  %8s  %8s  %7s\n", "(B)", "(elements)", "", "(us)", "(GB/s)",
              "(GB/s)", "");
  std::fflush(stdout);
}

void write_json(const std::string& path, const Settings& s, const WorldInfo& w, int ranks,
                const std::vector<Row>& rows, bool ok) {
  std::ofstream out(path);
  if (!out) throw std::runtime_error("--json: cannot write " + path);
  out << "{\n  \"backend\": \"" << s.backend << "\",\n  \"ranks\": " << ranks
      << ",\n  \"processes\": " << w.size << ",\n  \"host\": \"" << w.host
      << "\",\n  \"dtype\": \"float32\",\n  \"op\": \"sum\",\n  \"iters\": " << s.iters
      << ",\n  \"ok\": " << (ok ? "true" : "false") << ",\n  \"results\": [";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    out << (i ? ",\n" : "\n") << "    {\"bytes\": " << r.bytes << ", \"count\": " << r.count
        << ", \"time_us\": " << r.time_us << ", \"algbw_gbs\": " << r.algbw
        << ", \"busbw_gbs\": " << r.busbw << ", \"wrong\": " << r.wrong << "}";
  }
  out << "\n  ]\n}\n";
}

#if defined(LOCKSTEP_HAVE_CUDA)
// ---- nccl: device buffers; each timed call ends with a stream synchronisation,
// so the time is what the host sees for a complete all-reduce ----

// Host values through the device communicator (for times and error counts).
template <typename T>
void allreduce_host(Communicator& comm, cudaStream_t stream, T* values, size_t n, ReduceOp op) {
  cuda::DeviceBuffer<T> dev(n);
  LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(dev.data(), values, n * sizeof(T), cudaMemcpyHostToDevice, stream));
  comm.allreduce(dev.data(), n, op);
  LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(values, dev.data(), n * sizeof(T), cudaMemcpyDeviceToHost, stream));
  LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(stream));
}

int64_t check_size_device(Communicator& comm, cudaStream_t stream, float* dev, size_t count) {
  std::vector<float> host(count);
  for (size_t i = 0; i < count; ++i) host[i] = pattern(comm.rank(), i);
  LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(dev, host.data(), count * 4, cudaMemcpyHostToDevice, stream));
  comm.allreduce(dev, count, ReduceOp::kSum);
  LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(host.data(), dev, count * 4, cudaMemcpyDeviceToHost, stream));
  LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(stream));
  int64_t wrong = 0;
  for (size_t i = 0; i < count; ++i) {
    double expect = 0;
    for (int r = 0; r < comm.size(); ++r) expect += pattern(r, i);
    if (host[i] != static_cast<float>(expect)) ++wrong;
  }
  allreduce_host(comm, stream, &wrong, 1, ReduceOp::kSum);
  return wrong;
}

Row measure_size_device(Communicator& comm, cudaStream_t stream, float* dev, size_t bytes,
                        const Settings& s) {
  using Clock = std::chrono::steady_clock;
  Row row;
  row.bytes = bytes;
  row.count = bytes / sizeof(float);
  for (int w = 0; w < s.warmup; ++w) comm.allreduce(dev, row.count, ReduceOp::kSum);
  comm.barrier();
  LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<double> times(s.iters);
  for (int it = 0; it < s.iters; ++it) {
    const auto t0 = Clock::now();
    comm.allreduce(dev, row.count, ReduceOp::kSum);
    LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(stream));
    times[it] = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  }
  allreduce_host(comm, stream, times.data(), times.size(), ReduceOp::kMax);
  std::sort(times.begin(), times.end());
  const size_t n = times.size();
  row.time_us = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
  const int ranks = comm.size();
  row.algbw = row.time_us > 0 ? static_cast<double>(bytes) / row.time_us / 1e3 : 0.0;
  row.busbw = row.algbw * 2.0 * (ranks - 1) / ranks;
  row.wrong = check_size_device(comm, stream, dev, row.count);
  return row;
}

// Replica i of this process on a GPU: the node's replicas spread over its GPUs in
// contiguous blocks, so with more replicas than GPUs neighbours share one.
int nccl_device_for(const WorldInfo& w, int replica, int replicas) {
  const int count = cuda::device_count();
  if (count == 0) throw std::runtime_error("--backend nccl: no CUDA device is visible");
  const int64_t slot = int64_t(w.local_rank) * replicas + replica;
  const int64_t slots = int64_t(std::max(1, w.local_size)) * replicas;
  return static_cast<int>(slot * count / slots);
}

std::vector<Row> run_nccl(const Settings& s, const Bootstrap& boot, CommOptions options) {
  const WorldInfo& w = boot.info();
  std::vector<int> devices;
  for (int i = 0; i < s.replicas; ++i) devices.push_back(nccl_device_for(w, i, s.replicas));
  NcclGroup group(boot.world_comm(), devices, options);
  const std::vector<size_t> sizes = sweep(s);
  std::vector<Row> rows;
  group.run([&](int i) {
    cuda::set_device(devices[size_t(i)]);
    cuda::Stream stream;
    group.set_stream(i, stream.get());
    cuda::DeviceBuffer<float> buf(sizes.empty() ? 1 : sizes.back() / sizeof(float));
    std::vector<float> ones(buf.size(), 1.0f);
    buf.upload(ones.data(), ones.size());
    Communicator& comm = group.member(i);
    std::vector<Row> mine;
    for (size_t bytes : sizes) {
      mine.push_back(measure_size_device(comm, stream.get(), buf.data(), bytes, s));
      if (comm.rank() == 0) print_row(mine.back());
    }
    if (i == 0) rows = std::move(mine);
  });
  return rows;
}
#endif  // LOCKSTEP_HAVE_CUDA

std::vector<Row> run_backend(const Settings& s, const Bootstrap& boot, int* ranks, int* local) {
  CommOptions options{std::chrono::milliseconds(static_cast<int64_t>(s.timeout_s * 1000))};
  options.shm_stores = s.shm_stores;
  const WorldInfo& w = boot.info();
  if (s.backend == "local") {
    LocalGroup group(s.replicas, options);
    *ranks = s.replicas;
    *local = s.replicas;
    print_header(s, w, *ranks, *local);
    return run_threads(group, s);
  }
#if defined(LOCKSTEP_HAVE_CUDA)
  if (s.backend == "nccl") {  // MPI only when started by a launcher
    if (cuda::device_count() == 0) throw std::runtime_error("--backend nccl: no CUDA device is visible");
    *ranks = w.size * s.replicas;
    *local = s.replicas;
    if (w.rank == 0) print_header(s, w, *ranks, *local);
    return run_nccl(s, boot, options);
  }
#endif
  if (!w.mpi) throw std::runtime_error("--backend " + s.backend + " needs MPI: run it under mpirun");
  if (s.backend == "hierarchical") {
    HierarchicalGroup group(boot.world_comm(), s.replicas, options);
    *ranks = w.size * s.replicas;
    *local = s.replicas;
    if (w.rank == 0) print_header(s, w, *ranks, *local);
    return run_threads(group, s);
  }
  std::unique_ptr<Communicator> comm =
      s.backend == "mpi"   ? make_mpi_communicator(boot.world_comm(), options)
      : s.backend == "shm" ? make_shm_communicator(boot.world_comm(), options)
                           : std::unique_ptr<Communicator>(std::make_unique<RawMpiCommunicator>(boot.world_comm()));
  *ranks = w.size;
  *local = 1;
  if (w.rank == 0) {
    print_header(s, w, *ranks, *local);
    std::printf("# communicator: %s\n", comm->describe().c_str());
  }
  return run_member(*comm, s);
}

int run(int argc, char** argv) {
  Settings s;
  CLI::App app{"lockstep all-reduce benchmark (float32 sum, in place)"};
#if defined(LOCKSTEP_HAVE_CUDA)
  app.add_option("--backend", s.backend, "local | mpi | shm | hierarchical | mpi-raw | nccl")
      ->check(CLI::IsMember({"local", "mpi", "shm", "hierarchical", "mpi-raw", "nccl"}));
#else
  app.add_option("--backend", s.backend, "local | mpi | shm | hierarchical | mpi-raw")
      ->check(CLI::IsMember({"local", "mpi", "shm", "hierarchical", "mpi-raw"}));
#endif
  app.add_option("--shm-stores", s.shm_stores,
                 "shm: how data goes into the segment: auto (timed as it runs), plain or streaming")
      ->transform(CLI::CheckedTransformer(CommOptions::shm_store_names()));
  app.add_option("--replicas", s.replicas,
                 "replica threads per process (local, hierarchical, nccl: replicas beyond the "
                 "GPU count share GPUs)")
      ->check(CLI::Range(1, 1024));
  app.add_option("-b,--min-bytes", s.min_bytes, "smallest size in bytes")->transform(CLI::AsSizeValue(false));
  app.add_option("-e,--max-bytes", s.max_bytes, "largest size in bytes")->transform(CLI::AsSizeValue(false));
  app.add_option("-f,--factor", s.factor, "size multiplier between rows")->check(CLI::Range(1.01, 1024.0));
  app.add_option("-n,--iters", s.iters, "timed iterations per size")->check(CLI::Range(1, 1000000));
  app.add_option("-w,--warmup", s.warmup, "untimed iterations per size")->check(CLI::Range(0, 1000000));
  app.add_option("--timeout", s.timeout_s, "collective deadline in seconds (0 = none)")
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--pin", s.pin, "pin each replica thread to its own CPU (local, hierarchical)");
  app.add_option("--json", s.json_path, "also write the results as JSON to this file");
  std::string buffers = "comm";
  app.add_option("--buffers", buffers,
                 "comm: the buffer from the communicator's allocate, as training's gradients (shm: "
                 "memory every process maps, reduced in place); own: ordinary memory (shm copies it "
                 "through its segment)")
      ->check(CLI::IsMember({"comm", "own"}));
  app.final_callback([&] { s.comm_buffers = buffers == "comm"; });
  CLI11_PARSE(app, argc, argv);
  if (s.min_bytes < sizeof(float) || s.min_bytes > s.max_bytes) {
    std::fprintf(stderr, "allreduce_bench: --min-bytes must be >= 4 and <= --max-bytes\n");
    return 2;
  }
  const bool needs_mpi = s.backend != "local" && s.backend != "nccl";
  Bootstrap boot(&argc, &argv, BootstrapOptions{needs_mpi});
  s.local_rank = boot.info().local_rank;
  int ranks = 1;
  int local = 1;
  const std::vector<Row> rows = run_backend(s, boot, &ranks, &local);
  const bool ok = std::all_of(rows.begin(), rows.end(), [](const Row& r) { return r.wrong == 0; });
  if (boot.info().rank != 0) return ok ? 0 : 1;
  std::printf("# %s\n", ok ? "OK" : "FAILED");
  if (!s.json_path.empty()) write_json(s.json_path, s, boot.info(), ranks, rows, ok);
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace lockstep

int main(int argc, char** argv) { return lockstep::bench::run_main("allreduce_bench", lockstep::run, argc, argv); }
