// CUDA replicas: each replica's arenas and workspaces allocated once on its device,
// the step (src/step.h, the one every device runs, over the CUDA device of
// gpu/cuda_device.h) enqueued on one compute stream with no host synchronisation
// until the step's extras come back, and optionally captured once per full-batch
// shape as a CUDA graph. Built only with CUDA.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <stdexcept>
#include <utility>
#include <vector>

#include "comm/mpi_check.h"
#include "gpu/cuda_device.h"
#include "gpu/extras.h"
#include "kernels/cuda/ops.h"
#include "src/accelerator.h"
#include "src/gpu_mapping.h"
#include "src/network.h"
#include "src/step.h"
#if defined(LOCKSTEP_HAVE_NCCL_GROUP)  // set by gpu/CMakeLists.txt when comm/ has it
#include "comm/nccl_communicator.h"
#endif

namespace lockstep {

int visible_cuda_devices() { return cuda::device_count(); }

bool use_cuda(const Config& config) {
  if (config.device == DeviceKind::kCpu) return false;
  const int n = visible_cuda_devices();
  if (config.device == DeviceKind::kAuto) return n > 0;
  if (n == 0) {
    throw ConfigError(config.where("strategy.device") + ": key 'strategy.device': cuda, but no CUDA device is "
                      "visible (check nvidia-smi and CUDA_VISIBLE_DEVICES, or use device: cpu "
                      "or auto)");
  }
  return true;
}

namespace {

// Page-locked host memory: H2D/D2H copies from it are truly asynchronous.
template <class T>
class PinnedBuffer {
 public:
  explicit PinnedBuffer(size_t n) {
    LOCKSTEP_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&ptr_), std::max<size_t>(n, 1) * sizeof(T)));
  }
  ~PinnedBuffer() { cudaFreeHost(ptr_); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  T* data() { return ptr_; }

 private:
  T* ptr_ = nullptr;
};

// An instantiated graph, destroyed with its graph.
struct Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  ~Graph() {
    if (exec != nullptr) cudaGraphExecDestroy(exec);
    if (graph != nullptr) cudaGraphDestroy(graph);
  }
};

constexpr size_t kCublasWorkspace = size_t(32) << 20;
constexpr int kBusIdChars = 32;  // "0000:3b:00.0" and room to spare

class CudaReplica final : public ReplicaStep {
 public:
  CudaReplica(const Model& model, const Config& config, int device, int64_t max_rows);
  // The all-reduce over every replica in sync (nullptr with one replica in total).
  void set_comm(Communicator* comm) { comm_ = comm; }
  // NCCL calls can be captured only when a replica has its GPU to itself.
  void set_gpu_shared(bool shared) { gpu_shared_ = shared; }
#if defined(LOCKSTEP_HAVE_NCCL_GROUP)
  // The group behind comm_, and this replica's index in it: the step waits on the
  // host through it (deadline-aware), and joins its deferred all-reduces.
  void set_group(NcclGroup* group, int index) {
    group_ = group;
    index_ = index;
  }
#endif
  cudaStream_t stream() const { return ctx_->get().stream; }

  std::string describe() const override {
    return "cuda:" + std::to_string(device_) + " " + cuda::device_name(device_) +
           (config_.cuda_graphs && gpu_shared_ ? " (GPU shared: steps not captured)" : "");
  }
  void bind_thread() override { cuda::set_device(device_); }
  void upload() override { copy_state(cudaMemcpyHostToDevice); }
  void download() override { copy_state(cudaMemcpyDeviceToHost); }
  StepResult train_step(Replica& r, const ReplicaBatch& b, float lr, uint64_t step_seed,
                        bool stop_requested) override;
  SliceStats evaluate(Replica& r, const ReplicaBatch& b) override;

  // The replica's side of run_step (src/step.h): all enqueued on the stream.
  Network<CudaDevice>& net() { return net_; }
  float* params() { return params_.data(); }
  float* grads() { return grads_.data(); }
  void reduce(int64_t begin, int64_t end);
  void extras(const SliceStats& s, bool stop_requested);
  void join();
  void update();

 private:
  void copy_state(cudaMemcpyKind kind);
  void stage_inputs(const ReplicaBatch& b);
  void stage_step_params(const Replica& r, const ReplicaBatch& b, float lr, uint64_t step_seed,
                         bool stop_requested);
  void enqueue_step(const ReplicaBatch& b);
  void run(const ReplicaBatch& b);
  void capture(Graph& g, const ReplicaBatch& b);
  void watch_replay();
  void wait_for_step();
  const kernels::StepParams* block() const {
    return reinterpret_cast<const kernels::StepParams*>(step_block_.data());
  }

  const Model& model_;
  const Config& config_;
  int device_;
  int64_t max_rows_, n_;
  Communicator* comm_ = nullptr;
  bool gpu_shared_ = false;
#if defined(LOCKSTEP_HAVE_NCCL_GROUP)
  NcclGroup* group_ = nullptr;
  int index_ = 0;
#endif
  std::unique_ptr<cuda::CudaContextOwner> ctx_;
  cuda::DeviceBuffer<char> cublas_workspace_;
  cuda::DeviceBuffer<float> params_, grads_, m_, v_;     // arena, n + kExtras + flag, slots
  cuda::DeviceBuffer<float> x_, targets_;                 // (max_rows, in), (max_rows, out)
  cuda::DeviceBuffer<int32_t> labels_;                    // (max_rows)
  cuda::DeviceBuffer<double> loss_sum_;
  cuda::DeviceBuffer<int64_t> correct_;
  cuda::DeviceBuffer<char> step_block_;                   // StepParams + layer seeds
  Network<CudaDevice> net_;                               // reads the buffers above
  PinnedBuffer<float> x_host_, targets_host_;
  PinnedBuffer<int32_t> labels_host_;
  PinnedBuffer<char> step_host_;
  PinnedBuffer<float> extras_host_;
  PinnedBuffer<double> loss_host_;
  PinnedBuffer<int64_t> correct_host_;
  // Full-batch shapes seen once (run eagerly, warming cuBLAS and NCCL) and the
  // graphs captured on their second occurrence, keyed by (rows, global_rows).
  std::map<std::pair<int64_t, int64_t>, int> seen_;
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Graph>> graphs_;
};

CudaReplica::CudaReplica(const Model& model, const Config& config, int device, int64_t max_rows)
    : model_(model), config_(config), device_(device), max_rows_(std::max<int64_t>(max_rows, 1)),
      n_(model.num_params()),
      ctx_((cuda::set_device(device), std::make_unique<cuda::CudaContextOwner>(
                                          config.tf32 ? cuda::GemmMath::kTf32 : cuda::GemmMath::kFp32))),
      cublas_workspace_(kCublasWorkspace), params_(size_t(model.arena_size())), grads_(size_t(n_ + kExtras + 1)),
      m_(size_t(n_)), v_(config.optimizer == OptimizerKind::kSgd ? 0 : size_t(n_)),
      x_(size_t(max_rows_ * model.input_dim())),
      targets_(size_t(max_rows_ * model.output_dim())), labels_(size_t(max_rows_)),
      loss_sum_(1), correct_(1), step_block_(step_block_bytes(model.layers().size())),
      net_(model, max_rows_,
           CudaDevice(&ctx_->get(), block(), {x_.data(), labels_.data(), targets_.data()},
                      loss_sum_.data(), correct_.data())),
      x_host_(size_t(max_rows_ * model.input_dim())),
      targets_host_(size_t(max_rows_ * model.output_dim())), labels_host_(size_t(max_rows_)),
      step_host_(step_block_.size()), extras_host_(kExtras + 1), loss_host_(1), correct_host_(1) {
  // A fixed cuBLAS workspace: captured and eager GEMMs see the same one, so they
  // pick the same algorithms (graphs on and off stay bitwise equal).
  LOCKSTEP_CUBLAS_CHECK(cublasSetWorkspace(ctx_->get().cublas, cublas_workspace_.data(),
                                           kCublasWorkspace));
  for (auto* b : {&grads_, &m_, &v_}) {
    if (b->size() > 0) LOCKSTEP_CUDA_CHECK(cudaMemset(b->data(), 0, b->size() * sizeof(float)));
  }
  LOCKSTEP_CUDA_CHECK(cudaDeviceSynchronize());  // the memsets above ran on the legacy stream
  // Batch norm's statistics: stream-ordered all-reduces of device doubles.
  net_.sync = [this](double* x, int64_t n) {
    if (comm_) comm_->allreduce(x, size_t(n));
  };
}

// Host params and optimizer slots to the device or back. Copies go on the compute
// stream (not the legacy default stream, which does not order with it), then the
// host waits: the arenas are consistent on return.
void CudaReplica::copy_state(cudaMemcpyKind kind) {
  bind_thread();
  const cudaStream_t s = stream();
  const bool up = kind == cudaMemcpyHostToDevice;
  const auto copy = [&](float* device, float* host, int64_t n) {
    LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(up ? device : host, up ? host : device,
                                        size_t(n) * sizeof(float), kind, s));
  };
  // The host mirror (ReplicaStep's; params() here is the device arena), with batch norm's state.
  copy(params_.data(), ReplicaStep::params->data(), model_.arena_size());
  const auto slots = optimizer->slots();
  copy(m_.data(), slots.at(0).second->data(), n_);
  if (slots.size() > 1) copy(v_.data(), slots.at(1).second->data(), n_);
  LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(s));
}

// Host slice -> pinned staging -> the fixed device buffers (asynchronous; the
// staging is reused only after the step's final synchronisation).
void CudaReplica::stage_inputs(const ReplicaBatch& b) {
  if (b.rows > max_rows_) {
    throw std::invalid_argument("device replica workspace holds " + std::to_string(max_rows_) +
                                " rows, asked for " + std::to_string(b.rows));
  }
  if (b.rows == 0) return;
  const auto stage = [s = stream()](auto* device, auto* pinned, const auto* host, size_t n) {
    std::memcpy(pinned, host, n * sizeof(*host));
    LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(device, pinned, n * sizeof(*host), cudaMemcpyHostToDevice, s));
  };
  stage(x_.data(), x_host_.data(), b.x, size_t(b.rows * model_.input_dim()));
  if (model_.loss() == LossKind::kSoftmaxCrossEntropy) {
    stage(labels_.data(), labels_host_.data(), b.labels, size_t(b.rows));
  } else {
    stage(targets_.data(), targets_host_.data(), b.targets, size_t(b.rows * model_.output_dim()));
  }
}

// Everything that changes from step to step goes to the device block, so the
// captured graph reads this step's values.
void CudaReplica::stage_step_params(const Replica& r, const ReplicaBatch& b, float lr,
                                    uint64_t step_seed, bool stop_requested) {
  auto* p = reinterpret_cast<kernels::StepParams*>(step_host_.data());
  *p = kernels::StepParams{};
  const Config& c = config_;
  if (c.optimizer != OptimizerKind::kSgd) {
    p->adam = kernels::adam_consts(lr, c.beta1, c.beta2, c.epsilon, r.updates + 1, c.weight_decay,
                                   c.optimizer == OptimizerKind::kAdamW);
  }
  p->lr = lr;
  p->stop = stop_requested ? 1.0f : 0.0f;
  set_dropout(p, model_.layers().size(), step_seed, b.sample_base + b.first_row);
  LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(step_block_.data(), step_host_.data(), step_block_.size(),
                                      cudaMemcpyHostToDevice, stream()));
}

void CudaReplica::reduce(int64_t begin, int64_t end) {
  if (end <= begin || comm_ == nullptr) return;
  comm_->allreduce(grads_.data() + begin, size_t(end - begin));  // stream-ordered (NcclGroup)
}

void CudaReplica::extras(const SliceStats& s, bool) {
  float* e = grads_.data() + n_;  // the stop flag was staged in the step block
  gpu::write_extras(stream(), {e + kLossSum, e + kCorrect, e + kRows, e + kStop, e + kOverBound},
                    loss_sum_.data(), correct_.data(), float(s.rows), block());
}

// The compute stream waits here, once, for every bucket's all-reduce (they ran
// alongside the rest of backward, which writes other parts of the arena).
void CudaReplica::join() {
#if defined(LOCKSTEP_HAVE_NCCL_GROUP)
  if (group_ != nullptr) group_->join(index_);
#endif
}

void CudaReplica::update() {
  const cuda::CudaContext& ctx = ctx_->get();
  const float* loss = grads_.data() + n_ + kLossSum;  // the reduced global loss
  // After the extras, outside the reduced range: 1 when the reduced gradient holds
  // NaN/Inf (the same on every replica, since all hold the same reduced values).
  float* nonfinite = grads_.data() + n_ + kExtras;
  cuda::all_finite(ctx, grads_.data(), n_, nonfinite);
  if (config_.optimizer == OptimizerKind::kSgd) {
    cuda::sgd_update(ctx, params_.data(), grads_.data(), m_.data(), n_, config_.momentum,
                     config_.nesterov, config_.weight_decay, block(), loss, nonfinite);
  } else {
    cuda::adam_update(ctx, params_.data(), grads_.data(), m_.data(), v_.data(), n_, block(), loss,
                      nonfinite);
  }
  net_.device().gate_state(loss, nonfinite);
  net_.commit_state(params_.data());  // batch norm's moving statistics, when the step applies
}

// A replayed graph's collectives record nothing the watchdog sees: watch the
// whole replay instead, so a peer that never comes ends it at the deadline.
void CudaReplica::watch_replay() {
#if defined(LOCKSTEP_HAVE_NCCL_GROUP)
  if (group_ != nullptr) group_->track_compute(index_, "replayed training step (CUDA graph)");
#endif
}

// The step's one host wait. With a group: polling, so a group that fails (a peer
// past the deadline, another replica's error) ends it; and a step whose reduction
// was aborted part-way throws rather than return results peers do not share.
void CudaReplica::wait_for_step() {
#if defined(LOCKSTEP_HAVE_NCCL_GROUP)
  if (group_ != nullptr) {
    group_->wait_compute(index_, "training step");
    return;
  }
#endif
  LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

// The whole step after the inputs and the step block are staged. Nothing in it
// waits for the host, so it can be captured.
void CudaReplica::enqueue_step(const ReplicaBatch& b) {
  run_step(*this, b, n_, bucket_elements(config_.bucket_mb), 0, false);
}

void CudaReplica::capture(Graph& g, const ReplicaBatch& b) {
  const cudaStream_t s = stream();
  // Thread-local mode: other replica threads may make unrelated CUDA calls meanwhile.
  LOCKSTEP_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue_step(b);
  } catch (...) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(s, &broken);
    if (broken != nullptr) cudaGraphDestroy(broken);
    throw;
  }
  const cudaError_t err = cudaStreamEndCapture(s, &g.graph);
  if (err != cudaSuccess) {
    throw cuda::CudaError(std::string("cuda:") + std::to_string(device_) +
                          ": capturing the training step as a CUDA graph failed: " +
                          cudaGetErrorString(err) +
                          " (set strategy.cuda_graphs: false to run the step uncaptured)");
  }
  LOCKSTEP_CUDA_CHECK(cudaGraphInstantiate(&g.exec, g.graph, 0));
}

void CudaReplica::run(const ReplicaBatch& b) {
  const bool full = b.global_rows == config_.batch_size;
  if (!config_.cuda_graphs || !full || (gpu_shared_ && comm_ != nullptr)) {
    enqueue_step(b);
    return;
  }
  const auto key = std::make_pair(b.rows, b.global_rows);
  if (seen_[key]++ == 0) {  // first time: eager, so cuBLAS and NCCL set up outside capture
    enqueue_step(b);
    return;
  }
  auto& slot = graphs_[key];
  if (!slot) {
    auto g = std::make_unique<Graph>();
    capture(*g, b);
    slot = std::move(g);
  }
  LOCKSTEP_CUDA_CHECK(cudaGraphLaunch(slot->exec, stream()));
  watch_replay();
}

StepResult CudaReplica::train_step(Replica& r, const ReplicaBatch& b, float lr,
                                   uint64_t step_seed, bool stop_requested) {
  const auto t0 = std::chrono::steady_clock::now();
  stage_inputs(b);
  stage_step_params(r, b, lr, step_seed, stop_requested);
  run(b);
  const cudaStream_t s = stream();
  LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(extras_host_.data(), grads_.data() + n_,
                                      (kExtras + 1) * sizeof(float), cudaMemcpyDeviceToHost, s));
  wait_for_step();
  StepResult out = read_extras(extras_host_.data());
  out.finite = out.finite && extras_host_.data()[kExtras] == 0.0f;  // the update ran iff both held
  if (out.finite) ++r.updates;
  const auto t1 = std::chrono::steady_clock::now();
  r.step_seconds += std::chrono::duration<double>(t1 - t0).count();
  if (r.trace) r.trace->span("device step", t0, t1);
  return out;
}

SliceStats CudaReplica::evaluate(Replica&, const ReplicaBatch& b) {
  if (b.rows == 0) return {};
  stage_inputs(b);
  net_.evaluate(params_.data(), b);
  const cudaStream_t s = stream();
  LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(loss_host_.data(), loss_sum_.data(), sizeof(double),
                                      cudaMemcpyDeviceToHost, s));
  LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(correct_host_.data(), correct_.data(), sizeof(int64_t),
                                      cudaMemcpyDeviceToHost, s));
  LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(s));
  const bool xent = model_.loss() == LossKind::kSoftmaxCrossEntropy;
  return {*loss_host_.data(), xent ? *correct_host_.data() : 0, b.rows};
}

class CudaGroup final : public DeviceGroup {
 public:
  CudaGroup(const Model& model, const Config& config, World& world, int local, int64_t max_rows);
  ReplicaStep& replica(int i) override { return *replicas_.at(size_t(i)); }
  void fail(const std::string& reason) override {
#if defined(LOCKSTEP_HAVE_NCCL_GROUP)
    if (nccl_) nccl_->fail(reason);
#endif
  }

 private:
#if defined(LOCKSTEP_HAVE_NCCL_GROUP)
  std::unique_ptr<ReplicaGroup> nccl_;  // make_replica_group's NcclGroup
#endif
  std::vector<std::unique_ptr<CudaReplica>> replicas_;
};

std::vector<std::string> visible_bus_ids() {
  std::vector<std::string> ids;
  for (int d = 0; d < cuda::device_count(); ++d) {
    char id[kBusIdChars] = {};
    LOCKSTEP_CUDA_CHECK(cudaDeviceGetPCIBusId(id, kBusIdChars - 1, d));
    ids.emplace_back(id);
  }
  return ids;
}

// Every process on this node's visible bus ids, by node rank (collective over
// `world`; just this process's without MPI). `node_rank` gets this process's index.
std::vector<std::vector<std::string>> node_bus_ids(MPI_Comm world, int* node_rank) {
  const std::vector<std::string> mine = visible_bus_ids();
  *node_rank = 0;
  if (world == MPI_COMM_NULL) return {mine};
  int rank = 0, size = 1;
  LOCKSTEP_MPI_CHECK(MPI_Comm_rank(world, &rank));
  MPI_Comm node = MPI_COMM_NULL;
  LOCKSTEP_MPI_CHECK(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
  struct Free {
    MPI_Comm* c;
    ~Free() { MPI_Comm_free(c); }
  } free_node{&node};
  LOCKSTEP_MPI_CHECK(MPI_Comm_rank(node, node_rank));
  LOCKSTEP_MPI_CHECK(MPI_Comm_size(node, &size));
  const int n = int(mine.size());
  const size_t processes = static_cast<size_t>(size);
  std::vector<int> counts(processes), offsets(processes), chars(processes);
  LOCKSTEP_MPI_CHECK(MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, node));
  int total = 0;
  for (int p = 0; p < size; ++p) {
    chars[size_t(p)] = counts[size_t(p)] * kBusIdChars;
    offsets[size_t(p)] = total;
    total += chars[size_t(p)];
  }
  std::vector<char> send(size_t(n) * kBusIdChars + 1, '\0'), all(size_t(total) + 1, '\0');
  for (int d = 0; d < n; ++d) mine[size_t(d)].copy(send.data() + size_t(d) * kBusIdChars, kBusIdChars - 1);
  LOCKSTEP_MPI_CHECK(MPI_Allgatherv(send.data(), n * kBusIdChars, MPI_CHAR, all.data(), chars.data(),
                                    offsets.data(), MPI_CHAR, node));
  std::vector<std::vector<std::string>> out(processes);
  for (int p = 0; p < size; ++p) {
    for (int d = 0; d < counts[size_t(p)]; ++d) {
      out[size_t(p)].emplace_back(all.data() + offsets[size_t(p)] + d * kBusIdChars);
    }
  }
  return out;
}

// The replicas' devices (src/gpu_mapping.h), after making sure no GPU of this node
// goes to two processes: NCCL would refuse it later with a far vaguer message.
std::vector<int> choose_devices(const Config& config, World& world, int local) {
  int node_rank = 0;
  const auto visible = node_bus_ids(world.mpi_comm, &node_rank);
  const std::string dup = find_duplicate_gpu(used_bus_ids(visible, local, config.replicas_per_gpu));
  if (!dup.empty()) {
    throw ConfigError(config.where("strategy.local_replicas") + ": key 'strategy.local_replicas': " +
                      dup + " (" + std::to_string(visible.size()) + " processes on this node), and "
                      "NCCL cannot give one GPU to two processes; run at most one process per GPU "
                      "on each node (or give each its own GPUs with CUDA_VISIBLE_DEVICES)");
  }
  return devices_for_process(visible, node_rank, local, config.replicas_per_gpu);
}

CudaGroup::CudaGroup(const Model& model, const Config& config, World& world, int local,
                     int64_t max_rows) {
  const std::vector<int> devices = choose_devices(config, world, local);
  // Bind before anything else touches a device, so contexts land where they belong.
  cuda::set_device(devices[0]);
  for (int i = 0; i < local; ++i) {
    replicas_.push_back(std::make_unique<CudaReplica>(model, config, devices[size_t(i)], max_rows));
    const bool shared = config.replicas_per_gpu > 1 ||
                        std::count(devices.begin(), devices.end(), devices[size_t(i)]) > 1;
    replicas_.back()->set_gpu_shared(shared);
  }
  if (int64_t(local) * world.size() == 1) return;  // nothing to reduce
#if defined(LOCKSTEP_HAVE_NCCL_GROUP)
  cuda::set_device(devices[0]);
  // The user's comm settings (comm.timeout_s or the adaptive deadline, long phases,
  // the grace after SIGTERM) apply to GPU collectives as to the CPU backends.
  GroupSpec spec{world.mpi_comm, world.comm, local, comm_options(config), devices};
  for (auto& r : replicas_) spec.streams.push_back(r->stream());
  spec.deferred_wait = true;  // all-reduce overlaps backward (own-GPU replicas)
  nccl_ = make_replica_group(spec);
  auto& nccl = dynamic_cast<NcclGroup&>(*nccl_);  // device replicas: NCCL (its step hooks)
  for (int i = 0; i < local; ++i) {
    replicas_[size_t(i)]->set_comm(&nccl.member(i));
    replicas_[size_t(i)]->set_group(&nccl, i);
  }
#else
  throw ConfigError(config.where("strategy.device") + ": key 'strategy.device': " + std::to_string(local * world.size()) +
                    " CUDA replicas need the NCCL group (comm/nccl_communicator.h), which this "
                    "build lacks; run one replica in total or use device: cpu");
#endif
}

}  // namespace

std::unique_ptr<DeviceGroup> make_cuda_group(const Model& model, const Config& config,
                                             World& world, int local_replicas, int64_t max_rows) {
  return std::make_unique<CudaGroup>(model, config, world, local_replicas, max_rows);
}

}  // namespace lockstep
