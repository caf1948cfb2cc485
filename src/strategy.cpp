// MirroredStrategy: replica threads, their communicators, the bucketed gradient
// all-reduce and the identical update. Bucket boundaries depend only on the
// model layout, so every replica issues the same collectives in the same order.
#include "src/strategy.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "comm/local_communicator.h"
#include "comm/replica_group.h"
#include "comm/placement.h"
#include "comm/reduce.h"
#include "kernels/cpu/fpenv.h"
#include "kernels/cpu/ops.h"
#include "src/accelerator.h"
#include "src/cpu_replica.h"
#include "src/gpu_mapping.h"
#include "src/micro_batch.h"
#include "src/random.h"
#include "src/signals.h"
#include "src/step.h"
#include "src/step_times.h"

namespace lockstep {
namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

// strategy.overlap: a thread per replica that all-reduces the buckets backward
// hands it, in order, while backward goes on with earlier layers. Results are
// bitwise the same as reducing inline: same buckets, same order, same backend.
class BucketWorker {
 public:
  BucketWorker(Communicator* comm, bool flush_denormals)
      : comm_(comm), thread_([this, flush_denormals] {
          cpu::set_flush_denormals(flush_denormals);  // it sums gradients
          loop();
        }) {}
  ~BucketWorker() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  // trace: the reducer's track while the step is traced, else nullptr.
  void submit(float* data, int64_t count, TraceTrack* trace) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back({data, count, trace});
      ++pending_;
    }
    cv_.notify_all();
  }
  // Until every submitted bucket is reduced; rethrows the worker's failure.
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [this] { return pending_ == 0 || error_; });
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ with nothing left
      const auto [data, count, trace] = queue_.front();
      queue_.pop_front();
      lock.unlock();
      std::exception_ptr err;
      try {
        const auto t0 = Clock::now();
        comm_->allreduce(data, size_t(count));
        if (trace) trace->span("all-reduce", t0, Clock::now(), count * int64_t(sizeof(float)));
      } catch (...) {
        err = std::current_exception();
      }
      lock.lock();
      if (err && !error_) error_ = err;
      --pending_;
      done_cv_.notify_all();
    }
  }

  Communicator* comm_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  struct Job {
    float* data;
    int64_t count;
    TraceTrack* trace;
  };
  std::deque<Job> queue_;
  int64_t pending_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

CpuReplica::CpuReplica(MirroredStrategy& strategy, Replica& r, const Model& model,
                       const Config& config, int64_t max_rows)
    : grads(r.comm->allocate(size_t(model.num_params() + kExtras))), net(model, max_rows), strategy_(strategy) {
  net.writes_state = strategy.leads(r);  // one arena for many replicas: one writer of its state
  if (config.overlap) worker = std::make_unique<BucketWorker>(r.comm, config.flush_denormals);
  // Batch norm's statistics: after the buckets already handed to the reducer
  // thread, so every replica issues its collectives in the same order.
  net.sync = [this, rp = &r](double* x, int64_t n) {
    if (worker) worker->wait();
    const auto t0 = Clock::now();
    rp->comm->allreduce(x, size_t(n));
    rp->comm_seconds += seconds_since(t0);
  };
}
CpuReplica::~CpuReplica() = default;

StepResult CpuReplica::train_step(Replica& r, const ReplicaBatch& batch, float lr,
                                  uint64_t step_seed, bool stop_requested) {
  return strategy_.cpu_step(r, batch, lr, step_seed, stop_requested);
}
SliceStats CpuReplica::evaluate(Replica& r, const ReplicaBatch& batch) {
  return net.evaluate(params->data(), batch);
}

CpuReplica& MirroredStrategy::cpu(Replica& r) { return static_cast<CpuReplica&>(*r.step); }

CommOptions comm_options(const Config& config) {
  CommOptions o = CommOptions::from_seconds(config.comm_timeout_s, config.comm_verify);
  o.interrupted = [] { return SignalGuard::requested() != 0; };
  o.shared_memory = config.comm_shared_memory;
  o.shm_stores = config.comm_shm_stores;
  return o;
}

int resolve_local_replicas(const Config& config, int processes, int processes_on_node) {
  if (config.local_replicas > 0) return config.local_replicas;
  // GPUs: the node's processes split the visible GPUs (src/gpu_mapping.h).
  if (use_cuda(config)) {
    return auto_gpu_replicas(visible_cuda_devices(), processes_on_node, config.replicas_per_gpu);
  }
  // This process's CPUs: its affinity mask when a launcher bound it to fewer
  // than the node has, else an equal share of the node among its processes.
  const int allowed = int(allowed_cpus().size());
  const int node = int(std::thread::hardware_concurrency());
  int cpus = allowed < node ? allowed : allowed / std::max(1, processes_on_node);
  return auto_replica_count(cpus, config.batch_size, processes);
}

int auto_replica_count(int cpus, int64_t global_batch, int processes) {
  for (int k = std::max(1, cpus); k > 1; --k) {
    if (global_batch % (int64_t(k) * std::max(1, processes)) == 0) return k;
  }
  return 1;
}

bool resolve_gather(const Config& config, const Source& source) {
  switch (config.data_gather) {
    case GatherMode::kThread: return false;
    case GatherMode::kReplicas: return true;
    case GatherMode::kAuto: break;
  }
  return !use_cuda(config) && source.concurrent_reads();
}

// Floats from the start of a block to the next 64-byte line.
static size_t whole_lines(size_t n) { return (n + 15) / 16 * 16; }

// [begin, end) of each of `parts` parts of n floats, on 16-float (64-byte)
// boundaries: no two replicas write one line.
static std::vector<std::pair<int64_t, int64_t>> split_lines(int64_t n, int parts) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int i = 0; i < parts; ++i) {
    const auto edge = [&](int j) { return j == parts ? n : (n * j / parts) / 16 * 16; };
    out.emplace_back(edge(i), edge(i + 1));
  }
  return out;
}

MirroredStrategy::MirroredStrategy(const Model& model, const Config& config, World& world,
                                   int64_t max_rows)
    : model_(model), config_(config), world_(world) {
  const int local = resolve_local_replicas(config, world.size(), world.info.local_size);
  bucket_elems_ = bucket_elements(config.bucket_mb);
  local_group_ = std::make_unique<LocalGroup>(local, comm_options(config));
  group_ = make_replica_group({world.mpi_comm, world.comm, local, comm_options(config)});
  if (use_cuda(config)) devices_ = make_cuda_group(model, config, world, local, max_rows);
  const int64_t replicas = int64_t(local) * world.size();
  micro_rows_ = resolve_micro_batch(config, replicas);
  micro_batched_ = !devices_ && (config.deterministic || micro_rows_ * replicas < config.batch_size);
  own_grad_limit_ = replicas == 1 ? kGradientLimit : kGradientLimit / float(2 * replicas);
  if (micro_batched_ && model.has_batch_norm()) {
    throw ConfigError(std::string("model.layers: batch_norm normalizes over a replica's whole slice of a "
                      "step, which ") + (config.deterministic ? "train.deterministic" : "train.micro_batch_size") +
                      " cuts into micro-batches: leave train.deterministic false and "
                      "train.micro_batch_size unset (auto) for a model with batch_norm or residual layers");
  }
  for (const TensorSpec& t : model.trainable_tensors()) segments_.push_back({t.offset, t.offset + t.size()});
  if (!devices_ && config.share_weights) share_cpu_state(local);
  for (int i = 0; i < local; ++i) {
    auto r = std::make_unique<Replica>();
    r->local_index = i;
    r->global_index = world.rank() * local + i;
    r->local_comm = &local_group_->member(i);
    r->comm = &group_->member(i);
    if (devices_) {  // gradients and workspaces live on the device
      r->step = &devices_->replica(i);
    } else {
      cpus_.push_back(std::make_unique<CpuReplica>(*this, *r, model, config, max_rows));
      r->step = cpus_.back().get();
    }
    if (devices_ || !config.share_weights) {  // their own arena and slots (on their GPU, or not shared)
      r->step->params = std::make_shared<CommBuffer>(host_buffer(size_t(model.arena_size())));
      r->step->optimizer = std::make_shared<Optimizer>(config, model.num_params());
    } else {
      r->step->params = cpu_params_;
      r->step->optimizer = cpu_optimizer_;
    }
    replicas_.push_back(std::move(r));
  }
  batches_.resize(size_t(local));
  if (!devices_ && !config.share_weights && local > 1) split_finite_check(local);
  if (!devices_ && !config.share_weights && !config.overlap && !micro_batched_ &&
      ((world.size() == 1 && local > 1) || (world.size() > 1 && local == 1))) {
    sum_in_update();
  }
}

void MirroredStrategy::sum_in_update() {
  const int parts = num_replicas_in_sync();
  if (world_.size() > 1) {
    // One block every process maps, an arena per rank on whole lines; where the
    // processes cannot share memory (another node, comm.shared_memory false),
    // every rank learns it alike and the gradient is all-reduced.
    const size_t stride = whole_lines(cpus_[0]->grads.size());
    CommBuffer common = world_.comm->allocate_common(stride * size_t(parts));
    if (common.data() == nullptr) return;
    auto block = std::make_shared<CommBuffer>(std::move(common));
    CpuReplica& mine = *cpus_[0];
    mine.grads = CommBuffer(block->data() + stride * size_t(world_.rank()), mine.grads.size(), block);
    for (int j = 0; j < parts; ++j) gradient_parts_.push_back(block->data() + stride * size_t(j));
  } else {
    for (const auto& c : cpus_) gradient_parts_.push_back(c->grads.data());
  }
  sum_slices_ = split_lines(model_.num_params(), parts);
  for (const float* g : gradient_parts_) extras_parts_.push_back(g + model_.num_params());
  for (const auto& r : replicas_) {
    for (int j = 0; j < parts; ++j) {
      if (j != r->global_index) cpu(*r).sum_copies.push_back(gradient_parts_[size_t(j)]);
    }
  }
}

void MirroredStrategy::share_cpu_state(int local) {
  const size_t arena = size_t(model_.arena_size()), n = size_t(model_.num_params());
  // One block holds the arena, the slots and one line per sharer for the finite
  // flags: in memory every process of the node maps, or else this process's own.
  const auto floats = [&](int sharers) {
    return whole_lines(arena) + Optimizer::slot_count(config_.optimizer) * whole_lines(n) + 16 * size_t(sharers);
  };
  const int node_replicas = local * world_.size();
  CommBuffer common;
  if (world_.size() > 1) common = world_.comm->allocate_common(floats(node_replicas));
  node_shared_ = common.data() != nullptr;
  const int sharers = node_shared_ ? node_replicas : local;
  if (!node_shared_) common = host_buffer(floats(sharers));
  // Views into the block, each on whole lines, sharing its memory's owner.
  auto block = std::make_shared<CommBuffer>(std::move(common));
  size_t used = 0;
  const auto view = [&](size_t count) {
    if (used + count > block->size()) throw std::logic_error("share_cpu_state: the block is too small");
    CommBuffer v(block->data() + used, count, block);
    used += whole_lines(count);
    return v;
  };
  cpu_params_ = std::make_shared<CommBuffer>(view(arena));
  cpu_optimizer_ = std::make_shared<Optimizer>(config_, int64_t(n), view);
  finite_flags_ = view(16 * size_t(sharers));
  if (sharers == 1) return;
  shards_ = split_lines(int64_t(n), sharers);
  check_parts_ = shards_;
}

void MirroredStrategy::split_finite_check(int parts) {
  check_parts_ = split_lines(model_.num_params(), parts);
  finite_flags_ = host_buffer(16 * size_t(parts));
}

bool MirroredStrategy::leads(const Replica& r) const {
  if (shards_.empty()) return true;  // every replica holds an arena of its own
  return node_shared_ ? r.global_index == 0 : r.local_index == 0;
}

int MirroredStrategy::shard_index(const Replica& r) const {
  return node_shared_ ? r.global_index : r.local_index;
}

void MirroredStrategy::meet(Replica& r) {
  r.local_comm->barrier();
  if (!node_shared_) return;
  if (r.local_index == 0) world_.comm->barrier();
  r.local_comm->barrier();
}

MirroredStrategy::~MirroredStrategy() = default;

int MirroredStrategy::num_replicas_in_sync() const {
  return int(replicas_.size()) * world_.size();
}
int MirroredStrategy::first_replica() const { return world_.rank() * int(replicas_.size()); }
bool MirroredStrategy::is_chief() const { return world_.rank() == 0; }

void MirroredStrategy::run(const std::function<void(Replica&)>& fn) {
  // Each replica thread on a CPU of its own (slot local_rank*K + i), when this
  // node has one for every replica of every local process.
  const int k = int(replicas_.size());
  const bool pin = pinning_fits(k, world_.info.local_size);
  auto body = [&](int i) {
    Replica& r = *replicas_[size_t(i)];
    const ThreadPin pinned(world_.info.local_rank * k + r.local_index, pin);
    cpu::set_flush_denormals(config_.flush_denormals);  // train.flush_denormals
    r.step->bind_thread();
    fn(r);
  };
  // A failed replica releases the others from every group they may wait in.
  group_->run(body, [&](const std::string& why) {
    local_group_->fail(why);
    if (devices_) devices_->fail(why);
  });
}

const ReplicaBatch* MirroredStrategy::fetch(Replica& r, DistributedInput& input) {
  const auto t0 = Clock::now();
  ++r.fetches;
  ReplicaBatch& mine = batches_[size_t(r.local_index)];
  bool more = false;
  if (input.replica_gather()) {  // its own batch sequence and rows: no one to wait for
    more = input.next_own(r.local_index, mine);
  } else {
    // has_batch_ alternates between two slots: after an empty fetch (end of
    // epoch) no collective follows, so replica 0 may already be writing the next
    // fetch's flag while another replica still reads this one.
    const size_t slot = size_t(r.fetches & 1);
    if (r.local_index == 0) has_batch_[slot] = input.next(batches_);
    r.local_comm->barrier();  // publishes batches_ and has_batch_ to the other replicas
    more = has_batch_[slot];
  }
  const auto t1 = Clock::now();
  r.input_seconds += std::chrono::duration<double>(t1 - t0).count();
  if (!more) return nullptr;
  if (r.trace) r.trace->span("input wait", t0, t1);
  return &mine;
}

void MirroredStrategy::seek(Replica& r, DistributedInput& input, const InputPosition& position) {
  if (r.local_index == 0) input.seek(position);
  r.local_comm->barrier();
}

void MirroredStrategy::broadcast_initial_weights(Replica& r) {
  // Every process initialises from the same seed; restore makes rank 0's weights
  // authoritative even if another process computed something else (by broadcast,
  // or, where the node keeps one arena, because only rank 0 writes it).
  if (shards_.empty() || leads(r)) model_.init_params(r.step->params->data(), config_.seed);
  restore(r, nullptr, nullptr);
}

SliceStats MirroredStrategy::evaluate(Replica& r, const ReplicaBatch& batch) {
  return r.step->evaluate(r, batch);
}

std::string MirroredStrategy::device_plan() const {
  std::string plan;
  for (const auto& r : replicas_) {
    const std::string d = r->step->describe();
    if (d.empty()) continue;
    plan += (plan.empty() ? "devices: " : "; ") + std::string("replica ") +
            std::to_string(r->global_index) + " -> " + d;
  }
  return plan;
}

std::string MirroredStrategy::arena_plan() const {
  if (!sum_slices_.empty()) {
    return std::string("weights and optimizer slots: one copy per replica (strategy.share_weights: false); each "
                       "runs the whole update, summing its slice of the replicas' gradients in it (no all-reduce") +
           (world_.size() > 1 ? "; the gradients in memory the node's processes share)" : ")");
  }
  if (!config_.share_weights && !devices_ && num_replicas_in_sync() > 1) {
    return "weights and optimizer slots: one copy per replica (strategy.share_weights: false); each runs the "
           "whole update";
  }
  if (shards_.empty()) return "";
  const std::string n = std::to_string(shards_.size());
  return node_shared_ ? "weights and optimizer slots: one copy for the node's " + std::to_string(world_.size()) +
                            " processes (shared memory); each of the " + n + " replicas updates its shard"
                      : "weights and optimizer slots: one copy per process; each of its " + n +
                            " replicas updates its shard";
}

void MirroredStrategy::reduce_range(Replica& r, int64_t begin, int64_t end) {
  if (end <= begin) return;
  CpuReplica& c = cpu(r);
  if (c.worker) {
    c.worker->submit(c.grads.data() + begin, end - begin, r.trace ? r.reducer_trace : nullptr);
    return;
  }
  const auto t0 = Clock::now();
  r.comm->allreduce(c.grads.data() + begin, size_t(end - begin));
  const auto t1 = Clock::now();
  r.comm_seconds += std::chrono::duration<double>(t1 - t0).count();
  if (r.trace) r.trace->span("all-reduce", t0, t1, (end - begin) * int64_t(sizeof(float)));
}

// The CPU replica's side of run_step (src/step.h): host arenas, the reducer
// thread (strategy.overlap), the time accounting and the trace spans.
struct MirroredStrategy::CpuStep {
  MirroredStrategy* self;
  Replica* r;
  CpuReplica* c;
  float lr;
  Clock::time_point t0;
  TraceClock::time_point forward_end;  // an empty slice has no forward
  StepResult out;

  uint32_t widest = 0;  // the largest |element| of this replica's own gradient in [0, checked), as bits
  int64_t checked = 0;

  CpuNetwork& net() { return c->net; }
  float* params() { return c->params->data(); }
  float* grads() { return c->grads.data(); }
  void reduce(int64_t begin, int64_t end) {
    check_own(std::min(end, self->model_.num_params()));
    if (!self->sums_in_update()) self->reduce_range(*r, begin, end);
  }
  void extras(const SliceStats& s, bool stop_requested) {
    const int64_t n = self->model_.num_params();
    check_own(n);
    if (r->trace) {  // backward holds the bucket all-reduces it started inline, and the checks
      r->trace->span("forward", t0, forward_end);
      r->trace->span("backward", forward_end, Clock::now());
    }
    const bool over_bound = widest > std::bit_cast<uint32_t>(self->own_grad_limit_);
    write_extras(c->grads.data() + n, s, stop_requested, over_bound);
  }
  // The finite check, on this replica's gradient [checked, end) before it is
  // summed (src/step.h): a span whose bound is already within the limit
  // (CpuDevice::bounded) is not read.
  void check_own(int64_t end) {
    if (end <= checked) return;
    const CpuDevice::BoundedSpan& span = c->net.device().bounded;
    int64_t s0 = end, s1 = end;  // the bounded span within [checked, end)
    if (span.count > 0 && span.bound <= self->own_grad_limit_) {
      const int64_t at = span.begin - grads();
      s0 = std::clamp(at, checked, end), s1 = std::clamp(at + span.count, checked, end);
    }
    widen(cpu::max_abs(grads() + checked, s0 - checked));
    widen(cpu::max_abs(grads() + s1, end - s1));
    checked = end;
  }
  void widen(float x) { widest = std::max(widest, std::bit_cast<uint32_t>(x) & 0x7fffffffu); }
  void join() {
    if (!c->worker) return;
    const auto tw = Clock::now();  // the exposed part of the communication
    c->worker->wait();
    const auto tw1 = Clock::now();
    r->comm_seconds += std::chrono::duration<double>(tw1 - tw).count();
    if (r->trace) r->trace->span("all-reduce wait", tw, tw1);
  }
  // A meeting of every replica, counted as communication.
  void meet(const char* what) {
    const auto tw = Clock::now();
    r->comm->barrier();
    const auto tw1 = Clock::now();
    r->comm_seconds += std::chrono::duration<double>(tw1 - tw).count();
    if (r->trace) r->trace->span(what, tw, tw1);
  }
  // The replicas' extras summed in replica order, by the all-reduce's own sum.
  const float* summed_extras(float* sum) const {
    void* into = sum;
    const auto& parts = self->extras_parts_;
    reduce_fixed_order(parts.data(), int(parts.size()), &into, 1, size_t(kExtras), DType::kFloat32, ReduceOp::kSum);
    return sum;
  }
  // Where the replicas sum in the update (MirroredStrategy::sum_in_update):
  // once every gradient and its extras are written, each replica sums its slice
  // from all of them, updates that slice of its weights and stores the sum into
  // the other replicas' arenas; once all have, it updates the rest from its own.
  void update_summing() {
    meet("gradient wait");
    float sum[kExtras];
    out = read_extras(summed_extras(sum));
    const auto t_opt = Clock::now();
    out.finite_state = c->net.state_finite();
    out.finite = out.finite && out.finite_state;  // skipped alike: every replica read the same extras
    if (out.finite) self->update_slice(*r, lr);
    const auto t_mid = Clock::now();
    // After it no replica reads another's gradient or extras, nor (a step
    // later) writes its own before every replica has read them.
    meet("slice wait");
    const auto t_rest = Clock::now();
    if (out.finite) self->update(*r, lr);
    const auto t_end = Clock::now();
    r->optimizer_seconds += std::chrono::duration<double>((t_mid - t_opt) + (t_end - t_rest)).count();
    if (r->trace) {  // the update in two spans: its own slice (with the sum), then the rest
      r->trace->span("optimizer", t_opt, t_mid);
      r->trace->span("optimizer", t_rest, t_end);
    }
  }
  void update() {
    if (self->sums_in_update()) return update_summing();
    const int64_t n = self->model_.num_params();
    out = read_extras(c->grads.data() + n);
    // Every replica reads the same reduced extras, so all decide alike. A finite
    // loss does not imply a finite gradient (an overflow in backward, a huge input).
    const auto t_opt = Clock::now();
    out.finite_state = c->net.state_finite();
    out.finite = out.finite && out.finite_state;  // the extras hold every replica's own check
    if (out.finite) self->update(*r, lr);  // a non-finite step changes nothing
    const auto t_opt_end = Clock::now();
    r->optimizer_seconds += std::chrono::duration<double>(t_opt_end - t_opt).count();
    if (r->trace) r->trace->span("optimizer", t_opt, t_opt_end);
  }
};

StepResult MirroredStrategy::train_step(Replica& r, const ReplicaBatch& batch, float lr,
                                        uint64_t step_seed, bool stop_requested) {
  return r.step->train_step(r, batch, lr, step_seed, stop_requested);
}

StepResult MirroredStrategy::cpu_step(Replica& r, const ReplicaBatch& batch, float lr,
                                      uint64_t step_seed, bool stop_requested) {
  if (micro_batched_ && !r.trace) return micro_step(r, batch, lr, step_seed, stop_requested);
  const auto t0 = Clock::now();
  if (micro_batched_) {  // traced as one span (with its micro-batches and exact sums inside)
    const StepResult res = micro_step(r, batch, lr, step_seed, stop_requested);
    r.trace->span("micro-batched step", t0, Clock::now());
    return res;
  }
  CpuStep step{this, &r, &cpu(r), lr, t0, t0, {}};
  step.c->net.mark_forward = r.trace ? &step.forward_end : nullptr;
  step.c->net.device().bounded = {};
  run_step(step, batch, model_.num_params(), bucket_elems_, step_seed, stop_requested);
  r.step_seconds += seconds_since(t0);
  return step.out;
}


bool MirroredStrategy::grads_finite(Replica& r) {
  const float* grads = cpu(r).grads.data();
  if (check_parts_.empty()) return cpu::max_abs(grads, model_.num_params()) <= kGradientLimit;
  // Split: each replica looks at its part and the meeting publishes the
  // answers. A replica writes its flag again only after the next step's gradient
  // all-reduce, which no replica joins before it has read these.
  const auto [begin, end] = check_parts_[size_t(shard_index(r))];
  const bool within = cpu::max_abs(grads + begin, end - begin) <= kGradientLimit;
  finite_flags_[16 * size_t(shard_index(r))] = within ? 1.0f : 0.0f;
  meet(r);
  for (size_t i = 0; i < check_parts_.size(); ++i) {
    if (finite_flags_[16 * i] == 0.0f) return false;
  }
  return true;
}

void MirroredStrategy::update_slice(Replica& r, float lr) {
  const auto [begin, end] = sum_slices_[size_t(r.global_index)];
  CpuReplica& c = cpu(r);
  const cpu::GradientParts g{gradient_parts_.data(), int(gradient_parts_.size()), begin, c.sum_copies.data(),
                             int(c.sum_copies.size())};
  c.optimizer->apply(c.params->data(), g, end - begin, lr, r.updates);
}

void MirroredStrategy::update(Replica& r, float lr) {
  // Unsharded: the whole arena. Sharded: this replica's shard of the one arena.
  // Every replica sharing it has passed the step's last collective, so no one
  // reads params now; the meeting after the writes keeps the next forward from
  // starting on a half-updated arena.
  const auto [begin, end] = shards_.empty() ? std::pair<int64_t, int64_t>(0, model_.num_params())
                                            : shards_[size_t(shard_index(r))];
  CpuReplica& c = cpu(r);
  if (micro_batched_ && config_.deterministic) {
    apply_exact(r, lr, begin, end);
  } else if (!sum_slices_.empty()) {  // all but the slice update_slice did, from the sums now here
    const auto [own_begin, own_end] = sum_slices_[size_t(r.global_index)];
    c.optimizer->apply(c.params->data(), c.grads.data(), begin, own_begin, lr, r.updates);
    c.optimizer->apply(c.params->data(), c.grads.data(), own_end, end, lr, r.updates);
  } else {
    c.optimizer->apply(c.params->data(), c.grads.data(), begin, end, lr, r.updates);
  }
  c.net.commit_state(c.params->data());  // batch norm's moving statistics (the leader's net)
  ++r.updates;
  if (!shards_.empty()) meet(r);
}

void MirroredStrategy::snapshot(Replica& r, std::vector<float>& params, NamedSlots* slots) {
  r.step->download();
  params.assign(r.step->params->begin(), r.step->params->end());
  if (!slots) return;
  slots->clear();
  for (auto& [name, slot] : r.step->optimizer->slots()) slots->emplace_back(name, std::vector<float>(slot->begin(), slot->end()));
}

void MirroredStrategy::restore(Replica& r, const std::vector<float>* params,
                               const NamedSlots* slots) {
  const auto put = [](const std::vector<float>& from, CommBuffer& to) {
    if (from.size() != to.size()) {
      throw std::invalid_argument("restore: " + std::to_string(from.size()) + " values for an arena of " +
                                  std::to_string(to.size()));
    }
    std::copy(from.begin(), from.end(), to.begin());
  };
  if (leads(r) && params) put(*params, *r.step->params);
  if (leads(r) && slots) {
    for (auto& [name, slot] : r.step->optimizer->slots()) {
      for (const auto& [saved_name, data] : *slots) {
        if (saved_name == name) put(data, *slot);
      }
    }
  }
  // Unsharded, every replica holds its own arena and slots; sharded, one arena and
  // one Optimizer per process, and its local replica 0 takes rank 0's; shared by
  // the node, rank 0's are the only ones.
  if (!node_shared_ && (shards_.empty() || r.local_index == 0)) {
    Communicator* comm = shards_.empty() ? r.comm : world_.comm;
    comm->broadcast(r.step->params->data(), r.step->params->size(), 0);
    if (slots) {
      for (auto& [name, slot] : r.step->optimizer->slots()) comm->broadcast(slot->data(), slot->size(), 0);
    }
  }
  if (!shards_.empty()) meet(r);
  r.step->upload();
}

namespace {

// A 64-bit hash of n floats' bits, compared between replicas (never stored). Eight
// chains, each over every eighth 8-byte word, then folded: mix64 is a bijection,
// so a difference in any one word changes the result. The chains run side by side;
// a single chain waited on each multiply (0.2 ms per 100k parameters, every
// check_every steps: about 1% of a 2-replica step on the shipped MLP).
uint64_t weights_hash(const float* values, size_t n) {
  constexpr size_t kChains = 8;
  uint64_t chain[kChains];
  for (size_t c = 0; c < kChains; ++c) chain[c] = mix64(0x243f6a8885a308d3ULL + c);
  const size_t nbytes = n * sizeof(float);
  const auto* bytes = reinterpret_cast<const unsigned char*>(values);
  size_t i = 0;
  for (; i + 8 * kChains <= nbytes; i += 8 * kChains) {
    for (size_t c = 0; c < kChains; ++c) {
      uint64_t w;
      std::memcpy(&w, bytes + i + 8 * c, 8);
      chain[c] = mix64(chain[c] ^ w);
    }
  }
  for (; i < nbytes; ++i) chain[0] = mix64(chain[0] ^ bytes[i]);
  uint64_t h = mix64(nbytes);
  for (const uint64_t c : chain) h = mix64(h ^ c);
  return h;
}

}  // namespace

void MirroredStrategy::check_in_sync(Replica& r) {
  if (num_replicas_in_sync() == 1) return;
  const auto t0 = Clock::now();
  r.step->download();
  const uint64_t h = weights_hash(r.step->params->data(), r.step->params->size());
  const int n = num_replicas_in_sync();
  std::vector<int64_t> all(static_cast<size_t>(n));
  const int64_t mine = int64_t(h);
  r.comm->allgather(&mine, all.data(), 1);
  if (r.trace) r.trace->span("weight checksum", t0, Clock::now());
  if (std::all_of(all.begin(), all.end(), [&](int64_t x) { return x == all[0]; })) return;
  // The weights most replicas hold are taken as right; the others diverged. With
  // no majority (e.g. 2 replicas that differ) no replica can be blamed.
  int64_t common = all[0];
  int best = 0;
  for (const int64_t x : all) {
    const int c = int(std::count(all.begin(), all.end(), x));
    if (c > best) best = c, common = x;
  }
  const auto who = [&](int i) {
    return std::to_string(i) + " (process " + std::to_string(i / local_replicas()) + ")";
  };
  std::string odd;
  for (int i = 0; i < n; ++i) {
    if (2 * best <= n || all[size_t(i)] != common) odd += (odd.empty() ? "" : ", ") + who(i);
  }
  const std::string after = " after " + std::to_string(r.updates) + " steps";
  const std::string why = " (non-deterministic kernel, memory corruption or mismatched configuration)";
  if (2 * best > n) {
    throw std::runtime_error("replica(s) " + odd + " hold weights that differ from the other " +
                             std::to_string(best) + " of " + std::to_string(n) + " replicas" + after +
                             ": they diverged" + why);
  }
  throw std::runtime_error("the replicas' weights disagree" + after + " with no majority (replicas " +
                           odd + "; " + std::to_string(best) + " of " + std::to_string(n) +
                           " at most agree), so which diverged is unknown" + why);
}

}  // namespace lockstep
