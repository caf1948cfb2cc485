// The training story, top to bottom: build the data, model and strategy; every
// replica runs the same loop (epochs -> steps -> log -> check) on its own thread;
// evaluate exactly once per epoch; the chief reports and saves.
#include "src/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <sstream>

#include "comm/deadline.h"
#include "data/hdf5_util.h"
#include "kernels/cpu/fpenv.h"
#include "kernels/cpu/ops.h"
#include "src/accelerator.h"
#include "src/metrics.h"
#include "src/random.h"
#include "src/signals.h"
#include "src/tensorboard.h"
#include "src/trace.h"

namespace lockstep {
namespace {

using Clock = std::chrono::steady_clock;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

StepCounters counters(const Replica& r) {
  return StepCounters{r.input_seconds, r.step_seconds, r.comm_seconds, r.optimizer_seconds};
}

// "rows of shape (4, 4), 3 classes": what a split holds, for error messages.
std::string split_shape(const DatasetInfo& d) {
  std::string s = "rows of shape (";
  for (size_t i = 0; i < d.feature_shape.size(); ++i) s += (i ? ", " : "") + std::to_string(d.feature_shape[i]);
  s += d.feature_shape.size() == 1 ? ",)" : ")";
  if (d.num_classes > 0) return s + ", " + std::to_string(d.num_classes) + " classes";
  return s + ", " + std::to_string(d.target_dim) + " targets";
}

// How long peers may wait for one rank's long phase (start-up, evaluation, a
// checkpoint write) before they take it for stuck: comm.long_phase_s.
std::chrono::milliseconds long_phase_budget(const Config& c) {
  return std::chrono::milliseconds(int64_t(c.comm_long_phase_s * 1000.0));
}

// A multi-line table value (model.layers) on one line: its lines joined by "; ".
std::string one_line(std::string v) {
  for (size_t at = 0; (at = v.find('\n', at)) != std::string::npos;) v.replace(at, 1, "; ");
  return v;
}

// Rank root's `text` on every process (its length first).
std::string broadcast_text(Communicator& comm, std::string text, int root) {
  int64_t len = int64_t(text.size());
  comm.broadcast(&len, 1, root);
  text.resize(size_t(len));
  comm.broadcast(reinterpret_cast<uint8_t*>(text.data()), text.size(), root);
  return text;
}

}  // namespace

Trainer::Trainer(Config config, World& world) : config_(std::move(config)), world_(world) {
  tty_ = isatty(STDOUT_FILENO) != 0;
}

Trainer::~Trainer() = default;

// ---- build: data -> model -> strategy -> input pipelines ----
void Trainer::build(bool training) {
  const Config& c = config_;
  // Opening data and, just after, a checkpoint to resume take unequal time on each rank.
  const LongPhase phase("start-up", long_phase_budget(c));
  train_source_ = open_dataset(c.data_path, c.data_train_split, c.data_scale);
  eval_source_ = open_dataset(c.data_path, c.data_eval_split, c.data_scale);
  const DatasetInfo& ti = train_source_->info();
  const DatasetInfo& ei = eval_source_->info();
  if (ti.feature_dim != ei.feature_dim || ti.num_classes != ei.num_classes ||
      ti.target_dim != ei.target_dim) {
    throw DataError(c.data_path + ": splits '" + c.data_train_split + "' (" + split_shape(ti) + ") and '" +
                    c.data_eval_split + "' (" + split_shape(ei) + ") differ; a model needs one row shape "
                    "and one label set for both (data.train_split, data.eval_split)");
  }
  const bool classification = ti.num_classes > 0;
  if (classification && c.loss != LossKind::kSoftmaxCrossEntropy) {
    throw ConfigError(c.where("model.loss") + ": key 'model.loss': mse needs float targets, but " +
                      ti.description + " has class labels (use softmax_cross_entropy)");
  }
  if (!classification && c.loss != LossKind::kMeanSquaredError) {
    throw ConfigError(c.where("model.loss") + ": key 'model.loss': softmax_cross_entropy needs class labels, but " +
                      ti.description + " has float targets (use mse)");
  }
  try {
    model_ = std::make_unique<Model>(c.layers, ti.feature_shape,
                                     classification ? ti.num_classes : ti.target_dim, c.loss);
  } catch (const ConfigError& e) {  // "model.layers[i]: ...": say where the list is
    throw ConfigError(c.where("model.layers") + ": " + e.what());
  }

  check_same_everywhere();
  int local = resolve_local_replicas(c, world_.size(), world_.info.local_size);
  if (c.local_replicas == 0) {
    auto_replicas_ = true;
    if (world_.size() > 1) {  // nodes may differ: every process takes the smallest count
      std::vector<int64_t> all(size_t(world_.size()));
      const int64_t mine = local;
      world_.comm->allgather(&mine, all.data(), 1);
      local = int(*std::min_element(all.begin(), all.end()));
    }
    config_.local_replicas = local;  // the strategy and checkpoints see the count in use
  }
  const int64_t replicas = int64_t(local) * world_.size();
  if (training && c.batch_size % replicas != 0) {
    throw ConfigError(c.where("train.batch_size") + ": key 'train.batch_size': the global batch " +
                      std::to_string(c.batch_size) + " does not divide by num_replicas_in_sync " +
                      std::to_string(replicas) + " (" + std::to_string(world_.size()) +
                      " processes x " + std::to_string(local) +
                      " local replicas" + (auto_replicas_ ? "" : ", strategy.local_replicas at " +
                                                   c.where("strategy.local_replicas")) +
                      "); use a multiple of " + std::to_string(replicas) +
                      (auto_replicas_ ? "" : ", or a strategy.local_replicas that divides it"));
  }
  if (training && ti.size < c.batch_size) {
    throw ConfigError(c.where("train.batch_size") + ": key 'train.batch_size': " + ti.description + " has only " +
                      std::to_string(ti.size) + " examples, fewer than one global batch of " +
                      std::to_string(c.batch_size));
  }
  // Evaluation keeps a short batch: a split smaller than train.eval_batch_size is one batch.
  const int64_t eval_batch = std::min(c.eval_batch_size, ei.size);
  const int64_t max_rows = std::max(training ? ceil_div(c.batch_size, replicas) : 1,
                                    ceil_div(eval_batch, replicas));
  strategy_ = std::make_unique<MirroredStrategy>(*model_, c, world_, max_rows);

  InputOptions in;
  in.global_batch = c.batch_size;
  in.num_replicas = int(replicas);
  in.first_replica = strategy_->first_replica();
  in.local_replicas = local;
  in.shuffle = c.data_shuffle;
  in.seed = c.seed;
  in.drop_remainder = c.drop_remainder;
  in.prefetch = c.data_prefetch;
  in.replica_gather = resolve_gather(c, *train_source_);
  in.on_thread_start = [flush = c.flush_denormals] { cpu::set_flush_denormals(flush); };
  in.whole_shares = c.deterministic && c.batch_size % replicas == 0;  // whole micro-batches per replica
  if (training) train_input_ = std::make_unique<DistributedInput>(train_source_, in);
  InputOptions ev = for_evaluation(in);
  ev.global_batch = eval_batch;
  eval_input_ = std::make_unique<DistributedInput>(eval_source_, ev);

  base_lr_ = c.learning_rate * (c.scale_lr ? double(replicas) : 1.0);
  total_steps_ = training ? train_input_->steps_per_epoch() * c.epochs : 0;
}

// Every process must train the same thing: compare a hash of the resolved
// config, the architecture and the data each process opened. On a mismatch,
// rank 0's config is broadcast so each process can name the keys that differ.
std::string Trainer::fingerprint() const {
  const DatasetInfo& ti = train_source_->info();
  const DatasetInfo& ei = eval_source_->info();
  Config c = config_;
  c.progress = true;  // cosmetic keys may differ between ranks
  std::string text;  // a line per key (model.layers' entries joined), so a diff pairs keys
  for (const auto& row : c.table()) text += row[0] + " = " + one_line(row[1]) + "\n";
  return text + "model: " + model_->signature() + "\ntrain data: " +
         std::to_string(ti.size) + " x " + std::to_string(ti.feature_dim) + ", classes " +
         std::to_string(ti.num_classes) + "\neval data: " + std::to_string(ei.size) + "\n";
}

void Trainer::check_same_everywhere() {
  if (world_.size() == 1) return;
  const std::string mine = fingerprint();
  Fnv1a h;
  h.add(mine.data(), mine.size());
  std::vector<int64_t> all(static_cast<size_t>(world_.size()));
  const int64_t hv = int64_t(h.value());
  world_.comm->allgather(&hv, all.data(), 1);
  std::vector<int> differ;
  for (int i = 1; i < world_.size(); ++i) {
    if (all[size_t(i)] != all[0]) differ.push_back(i);
  }
  if (differ.empty()) return;
  // Everyone gets rank 0's text and the first differing rank's, so the message
  // every process prints (whichever MPI_Abort wins) names the keys.
  const std::string ref = broadcast_text(*world_.comm, mine, 0);
  const std::string other = broadcast_text(*world_.comm, mine, differ[0]);
  std::string diff;
  std::istringstream a(other), b(ref);
  std::string la, lb;
  while (std::getline(a, la)) {
    if (!std::getline(b, lb)) lb.clear();
    if (la != lb) diff += (diff.empty() ? "" : "; ") + la + " (rank 0 has " + lb + ")";
  }
  std::string ranks;
  for (int r : differ) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
  throw ConfigError("every process must train the same config, model and data, but rank(s) " +
                    ranks + " differ from rank 0; rank " + std::to_string(differ[0]) + ": " + diff);
}

void Trainer::print_plan() const {
  if (!strategy_->is_chief()) return;
  const Config& c = config_;
  const int R = strategy_->num_replicas_in_sync();
  std::printf("lockstep: %d process(es) x %d local replica(s) = %d replicas in sync (%s%s)\n",
              world_.size(), strategy_->local_replicas(), R, strategy_->replica(0).comm->name().c_str(),
              world_.size() > 1 ? ("; between processes: " + world_.comm->describe() + " on " +
                                   std::to_string(world_.info.nodes) +
                                   (world_.info.nodes == 1 ? " node" : " nodes")).c_str() : "");
  if (auto_replicas_) {
    std::printf("strategy.local_replicas auto -> %d per process (%s)\n", strategy_->local_replicas(),
                use_cuda(c) ? "its share of the node's GPUs x strategy.replicas_per_gpu"
                            : "one per CPU of the process, the most that divide the global batch");
  }
  if (const std::string d = strategy_->device_plan(); !d.empty()) std::printf("%s\n", d.c_str());
  std::printf("data: %s (%lld examples, %lld features) -> eval %s (%lld examples)\n",
              train_source_->info().description.c_str(), (long long)train_source_->info().size,
              (long long)train_source_->info().feature_dim, eval_source_->info().description.c_str(),
              (long long)eval_source_->info().size);
  std::printf("batch: global %lld = %d x %lld per replica; %lld steps/epoch (%s remainder); %s\n",
              (long long)c.batch_size, R, (long long)(c.batch_size / R),
              (long long)train_input_->steps_per_epoch(), c.drop_remainder ? "dropping" : "keeping",
              train_source_->reads_rows_from_file()
                  ? "each process reads only its replicas' rows from the file"
                  : "the training split is held in memory (read whole at start, as it is small), "
                    "and each process gathers only its replicas' rows");
  if (const std::string m = micro_batch_plan(c, R); !m.empty()) std::printf("%s\n", m.c_str());
  const bool per_replica = train_input_->replica_gather();
  std::printf("input: %s\n",
              per_replica ? "each replica reads its own rows on its own thread (data.gather)"
              : c.data_prefetch > 0 ? ("a prefetch thread reads the process's rows, " +
                                       std::to_string(c.data_prefetch) + " global batches ahead").c_str()
                                    : "local replica 0 reads the process's rows when a step needs them");
  std::printf("optimizer: %s, learning rate %g%s, schedule %s, warm-up %lld steps\n",
              optimizer_name(c.optimizer), base_lr_, c.scale_lr ? " (scaled by replicas)" : "",
              schedule_name(c.schedule), (long long)c.warmup_steps);
  if (const std::string a = strategy_->arena_plan(); !a.empty()) std::printf("%s\n", a.c_str());
  std::printf("\n");
  std::printf("%s\n", model_->summary().c_str());
  print_config();
  std::fflush(stdout);
}

// The whole table with --verbose; else the keys whose value is not the default
// (the full resolved config is OUTPUT_DIR/config.yaml).
void Trainer::print_config() const {
  std::map<std::string, std::string> defaults;
  if (!verbose_) {
    for (const auto& row : parse_config("data: {path: none}", "defaults").table()) defaults[row[0]] = row[1];
  }
  if (verbose_) {
    std::printf("%-26s %-34s %s\n", "config key", "value", "meaning");
  } else {
    std::printf("config keys that differ from their defaults (all of them: %s/config.yaml, or --verbose):\n",
                config_.output_dir.c_str());
  }
  for (const auto& row : config_.table()) {
    const auto it = defaults.find(row[0]);
    if (!verbose_ && row[0] != "data.path" && it != defaults.end() && it->second == row[1]) continue;
    std::string value = row[1];  // model.layers: an entry a line, under the first
    for (size_t at = 0; (at = value.find('\n', at)) != std::string::npos; at += 28) value.insert(at + 1, 27, ' ');
    if (verbose_) {
      std::printf("%-26s %-34s %s\n", row[0].c_str(), value.c_str(), row[2].c_str());
    } else {
      std::printf("%-26s %s\n", row[0].c_str(), value.c_str());
    }
  }
  std::printf("\n");
}

// ---- train ----
EvalResult Trainer::fit(const std::string& metrics_out, const std::string& resume) {
  if (world_.rank() == 0) {  // the chief's files, checked before the data is opened
    check_side_output({"--metrics-out", metrics_out, "metrics.jsonl", false, true, {}}, config_, checkpoint_dir());
    check_side_output({"--trace", trace_path_, "trace.json", true, true, {{metrics_out, "the --metrics-out file"}}},
                      config_, checkpoint_dir());
  }
  build(true);
  check_deterministic();
  if (strategy_->is_chief()) {
    run_options_.resume = !resume.empty();
    prepare_run_folder(config_, checkpoint_dir(), run_options_);
    // The checkpoint first: a resume refused here leaves no file behind (an empty
    // metrics.jsonl would make the folder look like an earlier run's).
    if (!resume.empty()) resume_ = find_resume_point(resume);
    metrics_ = std::make_unique<MetricsWriter>(metrics_out);
    metrics_->also((std::filesystem::path(config_.output_dir) / "metrics.jsonl").string(),
                   /*append=*/run_options_.resume);
    run_options_.processes = world_.size();
    run_options_.replicas_in_sync = strategy_->num_replicas_in_sync();
    write_run_record(config_, run_options_);
    if (config_.tensorboard) tensorboard_ = std::make_unique<TensorBoardLog>(config_.output_dir);
  }
  if (!trace_path_.empty()) {
    tracer_ = std::make_unique<Tracer>(world_.rank(), strategy_->local_replicas(), trace_steps_);
    for (int i = 0; i < strategy_->local_replicas(); ++i) {
      strategy_->replica(i).reducer_trace = &tracer_->reducer(i);
      tracer_->replica(i).set_backend(strategy_->replica(i).comm->name());
      tracer_->reducer(i).set_backend(strategy_->replica(i).comm->name());
    }
  }
  print_plan();
  SignalGuard signals;  // SIGINT/SIGTERM: stop at a step boundary, everywhere alike
  const auto t0 = Clock::now();
  strategy_->run([&](Replica& r) { replica_fit(r); });
  const double seconds = seconds_since(t0);
  if (strategy_->is_chief() && last_breakdown_.steps > 0) {
    std::printf("where the time went: %s\n",
                where_time_went(last_breakdown_, strategy_->num_replicas_in_sync(),
                                strategy_->sums_in_update() ? "meeting wait" : "all-reduce wait")
                    .c_str());
  }
  if (strategy_->is_chief()) {
    nlohmann::json rec = {{"final", true}, {"test_loss", last_eval_.loss},
                          {"seconds", seconds}, {"examples", last_eval_.count}};
    if (model_->loss() == LossKind::kSoftmaxCrossEntropy) rec["test_accuracy"] = last_eval_.accuracy;
    std::printf("test: loss %.4f", last_eval_.loss);
    if (model_->loss() == LossKind::kSoftmaxCrossEntropy) {
      std::printf(" - accuracy %.4f", last_eval_.accuracy);
    }
    std::printf(" (%lld examples, %.1f s total)\n", (long long)last_eval_.count, seconds);
    if (config_.save_model) {
      const std::string path = (std::filesystem::path(config_.output_dir) / "model.h5").string();
      try {
        save_state(path, *model_, snapshot(strategy_->replica(0), Position{config_.epochs, 0, 0, {}, 0}));
      } catch (const IoError& e) {
        throw IoError("cannot write the model " + path + ": " + e.reason() + "; the checkpoints in " +
                      checkpoint_dir() + " hold the trained state");
      }
      std::printf("saved model: %s\n", path.c_str());
    }
    metrics_->write(rec);  // after the model: a metrics file that cannot be written loses nothing else
    std::fflush(stdout);
  }
  if (tracer_) write_trace();  // after the model: a failed trace write loses nothing else
  return last_eval_;
}

// Training in deterministic mode needs whole micro-batches per replica and CPU
// replicas; evaluation and prediction need neither.
void Trainer::check_deterministic() const {
  const Config& c = config_;
  check_micro_batches(c, strategy_->num_replicas_in_sync());
  if (c.deterministic && use_cuda(c)) {
    throw ConfigError(c.where("train.deterministic") + ": key 'train.deterministic': not available on CUDA "
                      "replicas yet (strategy.device resolved to cuda); use strategy.device: cpu");
  }
}

// ---- steady-state throughput (lockstep scale) ----
Throughput Trainer::measure(int64_t warmup, int64_t steps) {
  build(true);
  check_deterministic();
  Throughput out;
  out.replicas = strategy_->num_replicas_in_sync();
  out.global_batch = config_.batch_size;
  out.steps = steps;
  out.gradient_bytes = (model_->num_params() + kExtras) * int64_t(sizeof(float));
  strategy_->run([&](Replica& r) {
    strategy_->broadcast_initial_weights(r);
    strategy_->seek(r, *train_input_, InputPosition{});
    const bool timing = r.local_index == 0;
    StepTimes times;
    if (timing) times.begin_epoch(steps);
    double rows = 0;
    auto t0 = Clock::now();
    for (int64_t step = 0; step < warmup + steps;) {
      if (step == warmup) t0 = Clock::now();
      const StepCounters before = counters(r);
      const ReplicaBatch* batch = strategy_->fetch(r, *train_input_);
      if (!batch) continue;  // the end of an epoch: the next fetch starts the next one
      const float lr = float(learning_rate_at(config_, base_lr_, step, total_steps_));
      const StepResult res = strategy_->train_step(r, *batch, lr, mix_seed(config_.seed, 0xd7090u + uint64_t(step)));
      if (step >= warmup) {
        rows += double(res.global.rows);
        if (timing) times.add(before, counters(r));
      }
      ++step;
      if (config_.check_every > 0 && step % config_.check_every == 0) strategy_->check_in_sync(r);
    }
    if (!timing) return;
    out.seconds = seconds_since(t0);
    out.samples_per_sec = rows / std::max(1e-9, out.seconds);
    out.breakdown = times.summary();
  });
  return out;
}

// Weights and position from rank 0 to every replica: a fresh start (seeded
// initial weights) or the checkpoint rank 0 loaded.
Trainer::Position Trainer::start_state(Replica& r) {
  int64_t head[4] = {0, 0, 0, 0};  // resuming, updates, epoch, step_in_epoch
  double sums[4] = {0, 0, 0, 0};   // the resumed epoch's loss, correct, rows, seconds so far
  if (r.local_index == 0 && resume_) {
    head[0] = 1, head[1] = resume_->updates, head[2] = resume_->epoch, head[3] = resume_->step_in_epoch;
    std::copy(resume_->progress, resume_->progress + 4, sums);
  }
  r.comm->broadcast(head, 4, 0);
  r.comm->broadcast(sums, 4, 0);
  if (!head[0]) {
    strategy_->broadcast_initial_weights(r);
    return Position{};
  }
  // Where resume_ is absent (other ranks) rank 0's state arrives by broadcast.
  static const NamedSlots kNoSlots;
  strategy_->restore(r, resume_ ? &resume_->params : nullptr, resume_ ? &resume_->slots : &kNoSlots);
  r.updates = head[1];
  Position p;
  p.epoch = head[2];
  p.step_in_epoch = head[3];
  p.global_step = p.epoch * train_input_->steps_per_epoch() + p.step_in_epoch;
  p.epoch_sums = MetricSums{sums[0], sums[1], sums[2]};
  p.epoch_train_seconds = sums[3];
  return p;
}

void Trainer::replica_fit(Replica& r) {
  Position pos = start_state(r);
  if (tracer_) tracer_->start_at(pos.global_step);
  strategy_->seek(r, *train_input_, InputPosition{pos.epoch, pos.step_in_epoch});
  if (pos.epoch >= config_.epochs) {
    // Resumed from the end of training: nothing to train, but the final record
    // and the saved model still report the model's real test result.
    // (One past the end was refused before the run began: refuse_past_end.)
    if (r.local_index == 0 && strategy_->is_chief()) {
      std::printf("the checkpoint is at the end of training (all %lld epochs done): nothing left to "
                  "train; evaluating it (raise train.epochs to train further)\n",
                  (long long)config_.epochs);
      std::fflush(stdout);
    }
    const EvalResult val = evaluate(r, *eval_input_);
    if (r.local_index == 0 && strategy_->is_chief()) last_eval_ = val;
  }
  for (; pos.epoch < config_.epochs; ++pos.epoch) {
    const auto t0 = Clock::now();
    train_epoch(r, pos);
    const double train_seconds = pos.epoch_train_seconds + seconds_since(t0);
    const EvalResult val = evaluate(r, *eval_input_);
    const double epoch_seconds = seconds_since(t0);
    const MetricSums sums = pos.epoch_sums;
    pos.step_in_epoch = 0;
    pos.epoch_sums = MetricSums{};
    pos.epoch_train_seconds = 0;
    // The checkpoint before the record: a metrics file that cannot be written
    // (exit 5) never costs the epoch's trained state.
    if (config_.checkpoint_epochs) save_checkpoint(r, Position{pos.epoch + 1, 0, pos.global_step, {}, 0});
    if (r.local_index == 0 && strategy_->is_chief()) {
      const double lr = learning_rate_at(config_, base_lr_, std::max<int64_t>(0, pos.global_step - 1),
                                         total_steps_);
      report_epoch(pos.epoch, sums, train_seconds, lr, val, epoch_seconds);
      last_eval_ = val;
    }
  }
}

void Trainer::train_epoch(Replica& r, Position& pos) {
  const int64_t steps = train_input_->steps_per_epoch();
  const int64_t log_every = std::max<int64_t>(1, steps / 50);
  const auto t0 = Clock::now();
  const bool timing = r.local_index == 0;  // local replica 0 samples the step breakdown
  if (timing) step_times_.begin_epoch(steps - pos.step_in_epoch);
  for (;;) {
    if (tracer_) trace_step(r, pos.global_step + 1);
    const StepCounters before = counters(r);
    const ReplicaBatch* batch = strategy_->fetch(r, *train_input_);
    if (!batch) break;
    const float lr = float(learning_rate_at(config_, base_lr_, pos.global_step, total_steps_));
    const StepResult res =
        strategy_->train_step(r, *batch, lr, mix_seed(config_.seed, 0xd7090u + uint64_t(pos.global_step)),
                              r.local_index == 0 && SignalGuard::requested() != 0);
    if (timing) step_times_.add(before, counters(r));
    if (tensorboard_ && timing && config_.tensorboard_every_steps > 0 &&
        (pos.global_step + 1) % config_.tensorboard_every_steps == 0) {
      tensorboard_->batch_loss(pos.global_step + 1,
                               res.global.loss_sum / double(std::max<int64_t>(1, res.global.rows)));
    }
    if (res.finite) {
      pos.epoch_sums.add(res.global);
    } else {
      on_nonfinite(r, pos, res);  // throws, or counts a skipped step
    }
    ++pos.global_step;
    ++pos.step_in_epoch;
    if (config_.check_every > 0 && pos.global_step % config_.check_every == 0) {
      strategy_->check_in_sync(r);
    }
    if (config_.progress && pos.step_in_epoch % log_every == 0 && pos.step_in_epoch < steps &&
        r.local_index == 0) {
      report_progress(pos.epoch, pos.step_in_epoch, pos.epoch_sums, seconds_since(t0));
    }
    if (config_.checkpoint_every > 0 && pos.global_step % config_.checkpoint_every == 0) {
      Position at = pos;
      at.epoch_train_seconds += seconds_since(t0);
      save_checkpoint(r, at);
    }
    if (res.stop) {
      Position at = pos;
      at.epoch_train_seconds += seconds_since(t0);
      std::string where;
      if (config_.checkpoint_on_signal) {
        // Replica 0 writes; every local replica's Interrupted names the file (the
        // first one thrown is the one reported).
        where = save_checkpoint(r, at);
        if (r.local_index == 0) signal_checkpoint_ = where;
        r.local_comm->barrier();
        where = signal_checkpoint_;
      }
      throw Interrupted(SignalGuard::requested(), pos.global_step, where);
    }
  }
  r.trace = nullptr;  // evaluation is traced as one span, not as steps
  if (timing) last_breakdown_ = step_times_.summary();
}

void Trainer::on_nonfinite(Replica& r, const Position& pos, const StepResult& res) {
  char loss[32];
  std::snprintf(loss, sizeof loss, "%g", res.global.loss_sum / double(std::max<int64_t>(1, res.global.rows)));
  const std::string what =
      !res.finite_loss  ? std::string("the loss is NaN or infinite")
      : res.finite_state ? "the gradient holds NaN, Inf or an element beyond 2^63, about 9.2e18 (on the CPU, "
                           "a replica's own gradient beyond its share of that; the loss, " + std::string(loss) +
                               ", is finite)"
                         : "batch norm's batch statistics overflowed float32 (the loss, " + std::string(loss) +
                               ", is finite; an activation beyond about 1e19)";
  if (config_.nonfinite == NonFinitePolicy::kSkip) {
    if (r.local_index != 0) return;  // every replica skips alike; one counts
    ++skipped_steps_;
    if (strategy_->is_chief() && skipped_steps_ <= 5) {
      std::printf("\nwarning: step %lld (epoch %lld, step %lld): %s; the "
                  "update was skipped (train.on_nonfinite: skip)%s\n",
                  (long long)pos.global_step + 1, (long long)pos.epoch + 1,
                  (long long)pos.step_in_epoch + 1, what.c_str(),
                  skipped_steps_ == 5 ? "; further skips are only counted" : "");
    }
    return;
  }
  throw std::runtime_error(
      "step " + std::to_string(pos.global_step + 1) + " (epoch " + std::to_string(pos.epoch + 1) +
      ", step " + std::to_string(pos.step_in_epoch + 1) + "): " + what + "; "
      "stopped before the update, and no checkpoint holds it (lower the learning rate, check "
      "the data, or set train.on_nonfinite: skip)");
}

// ---- checkpoints ----
std::string Trainer::checkpoint_dir() const {
  if (!config_.checkpoint_dir.empty()) return config_.checkpoint_dir;
  return (std::filesystem::path(config_.output_dir) / "checkpoints").string();
}

SavedState Trainer::snapshot(Replica& r, const Position& pos) const {
  SavedState s;
  s.config_yaml = config_.to_yaml();
  strategy_->snapshot(r, s.params, &s.slots);
  s.updates = r.updates;
  s.epoch = pos.epoch;
  s.step_in_epoch = pos.step_in_epoch;
  s.progress[0] = pos.epoch_sums.loss_sum;
  s.progress[1] = pos.epoch_sums.correct;
  s.progress[2] = pos.epoch_sums.rows;
  s.progress[3] = pos.epoch_train_seconds;
  s.replicas = strategy_->num_replicas_in_sync();
  return s;
}

namespace {
// "cannot write checkpoint P: No space left on device; Q kept": the system's
// reason and what survives.
std::string write_failure(const std::string& path, const std::string& reason,
                          const std::vector<std::string>& before) {
  std::string kept = "no earlier checkpoint to keep";
  for (const auto& p : before) {
    if (p != path) {
      kept = p + " kept";
      break;
    }
  }
  return "cannot write checkpoint " + path + ": " + reason + "; " + kept;
}

// Names the first tensor holding NaN or Inf, and what moving statistics mean.
std::string nonfinite_tensor(const Model& model, const std::vector<float>& params) {
  for (const auto& [layer, t] : model.all_tensors()) {
    const float* p = params.data() + t.offset;
    if (std::all_of(p, p + t.size(), [](float v) { return std::isfinite(v); })) continue;
    std::string what = "the weights hold NaN or Inf (" + layer + "/" + t.name + ")";
    if (!t.trainable) {
      what += ": batch norm's moving statistics overflowed float32, which an input or activation "
              "beyond about 1e19 does (check the data and data.scale)";
    }
    return what;
  }
  return "the weights hold NaN or Inf";
}
}  // namespace

std::string Trainer::save_checkpoint(Replica& r, const Position& pos) {
  // On every replica: the others' next collective waits for the chief's write.
  const LongPhase phase("checkpoint write", long_phase_budget(config_));
  if (r.local_index != 0 || !strategy_->is_chief()) return "";
  const SavedState state = snapshot(r, pos);
  // Never save NaN/Inf: a checkpoint must always be a state worth resuming.
  const double norm = cpu::sum_squares(state.params.data(), int64_t(state.params.size()));
  if (!std::isfinite(norm)) {
    throw std::runtime_error("step " + std::to_string(pos.global_step) + ": " +
                             nonfinite_tensor(*model_, state.params) + "; no checkpoint written");
  }
  const auto t0 = Clock::now();
  const std::string dir = checkpoint_dir();
  std::filesystem::create_directories(dir);
  const std::string path = checkpoint_path(dir, pos.global_step);
  const std::vector<std::string> before = list_checkpoints(dir);
  try {
    save_state(path, *model_, state);
  } catch (const IoError& e) {
    throw IoError(write_failure(path, e.reason(), before));
  }
  prune_checkpoints(dir, config_.checkpoint_keep, path);
  if (tracer_) tracer_->replica(r.local_index).span("checkpoint write", t0, Clock::now());
  return path;
}

// The keys the schedule depends on may not change on resume, but two inputs to it
// may: train.epochs (a cosine decay spans the whole run) and, with
// optimizer.scale_lr, the replica count. Say so, with the rate before and after.
void Trainer::report_schedule_change(const SavedState& s, const std::string& path) const {
  const Config saved = parse_config(s.config_yaml, path + " (its saved config)");
  const int64_t spe = train_input_->steps_per_epoch();
  const int64_t replicas = s.replicas > 0 ? s.replicas : strategy_->num_replicas_in_sync();
  const double saved_base = config_.learning_rate * (config_.scale_lr ? double(replicas) : 1.0);
  const int64_t saved_total = spe * saved.epochs;
  const int64_t step = s.epoch * spe + s.step_in_epoch;
  const bool spans_run = config_.schedule == ScheduleKind::kCosine && config_.decay_steps == 0;
  std::string why;
  if (saved_base != base_lr_) {
    why = "optimizer.scale_lr with " + std::to_string(replicas) + " -> " +
          std::to_string(strategy_->num_replicas_in_sync()) + " replicas moves the base rate";
  }
  if (spans_run && saved_total != total_steps_) {
    why += std::string(why.empty() ? "" : "; ") + "train.epochs " + std::to_string(saved.epochs) +
           " -> " + std::to_string(config_.epochs) + " stretches the cosine decay over " +
           std::to_string(total_steps_) + " steps instead of " + std::to_string(saved_total);
  }
  if (why.empty()) return;
  std::printf("resume: the learning-rate schedule changes (%s): the rate at step %lld is %g, "
              "%g in the run that wrote the checkpoint\n",
              why.c_str(), (long long)step + 1, learning_rate_at(config_, base_lr_, step, total_steps_),
              learning_rate_at(config_, saved_base, step, saved_total));
}

// A checkpoint beyond train.epochs: continuing would record (config.yaml, the
// manifest, model.h5) a run of fewer epochs than the model had. A usage error,
// before anything is written; at exactly the end, the run only evaluates.
void Trainer::refuse_past_end(const SavedState& s, const std::string& path) const {
  const int64_t done = s.epoch + (s.step_in_epoch > 0 ? 1 : 0);  // epochs begun
  if (done <= config_.epochs) return;
  const std::string at = s.step_in_epoch == 0 ? "after epoch " + std::to_string(s.epoch)
                                              : "in epoch " + std::to_string(s.epoch + 1);
  // Mid-epoch, `done` epochs finish the one begun; after an epoch, only more train further.
  const std::string raise = s.step_in_epoch > 0 ? "to at least " + std::to_string(done) + " to continue it"
                                                : "above " + std::to_string(done) + " to train further";
  throw ConfigError("--resume " + path + ": the checkpoint is " + at + ", past the end of this run (" +
                    config_.where("train.epochs") + ": train.epochs is " + std::to_string(config_.epochs) +
                    "); raise train.epochs " + raise + ", or evaluate it: lockstep evaluate CONFIG --checkpoint " +
                    path);
}

std::optional<SavedState> Trainer::find_resume_point(const std::string& resume) {
  std::vector<std::string> candidates;
  if (resume == "auto") {
    candidates = list_checkpoints(checkpoint_dir());
    if (candidates.empty()) {
      std::printf("resume: no checkpoint in %s yet: starting from scratch\n", checkpoint_dir().c_str());
      return std::nullopt;
    }
  } else {
    candidates = {resume};
  }
  for (size_t i = 0; i < candidates.size(); ++i) {
    try {
      SavedState s = load_state(candidates[i], model_.get());
      const std::string changed = check_resume_compatible(s.config_yaml, config_, candidates[i]);
      refuse_past_end(s, candidates[i]);
      const int now = strategy_->num_replicas_in_sync();
      if (s.step_in_epoch == 0) {
        std::printf("resume: %s (after epoch %lld, %lld updates)\n", candidates[i].c_str(),
                    (long long)s.epoch, (long long)s.updates);
      } else {
        std::printf("resume: %s (epoch %lld, step %lld of the epoch, %lld updates)\n",
                    candidates[i].c_str(), (long long)s.epoch + 1, (long long)s.step_in_epoch,
                    (long long)s.updates);
      }
      if (s.replicas != 0 && s.replicas != now) {
        const bool per_slice = std::any_of(config_.layers.begin(), config_.layers.end(), [](const LayerConfig& l) {
          return (l.type == LayerType::kBatchNorm || l.type == LayerType::kResidual) && !l.sync;
        });
        std::printf("resume: written with %lld replicas in sync, continuing with %d: the global "
                    "batch of %lld still divides; %s\n",
                    (long long)s.replicas, now, (long long)config_.batch_size,
                    config_.deterministic ? "train.deterministic: bitwise the weights of either count"
                    : per_slice ? "batch_norm with sync: false normalizes each replica's slice, so from "
                                  "here on the weights follow the new count's slices"
                                : "weights agree up to fp32 summation order");
      }
      if (!changed.empty()) std::printf("resume: settings changed since the checkpoint: %s\n", changed.c_str());
      report_schedule_change(s, candidates[i]);
      return s;
    } catch (const DataError& e) {
      if (resume != "auto" || i + 1 == candidates.size()) throw;
      std::string why = e.what();  // "PATH: problem"; the line names the path once
      if (why.rfind(candidates[i] + ": ", 0) == 0) why.erase(0, candidates[i].size() + 2);
      std::printf("resume: skipping %s: %s\n", candidates[i].c_str(), why.c_str());
    }
  }
  return std::nullopt;
}

// ---- evaluate: every example exactly once, summed over all replicas ----
// The first evaluation may take comm.long_phase_s (nothing is known of its cost);
// every later one costs the same work, so peers wait what comm's deadline policy
// allows for it (repeat_phase_budget: 20x the slowest evaluation so far, at least
// the collective floor). A rank frozen in the 2nd evaluation is then named within
// seconds, not after the long-phase budget.
std::chrono::milliseconds Trainer::evaluation_budget() const {
  return repeat_phase_budget(comm_options(config_), std::chrono::milliseconds(slowest_eval_ms_.load()),
                             long_phase_budget(config_));
}

EvalResult Trainer::evaluate(Replica& r, DistributedInput& input) {
  const auto t0 = Clock::now();
  const LongPhase phase("evaluation", evaluation_budget());  // slices may be uneven
  strategy_->seek(r, input, InputPosition{});
  MetricSums sums;
  for (;;) {
    const ReplicaBatch* batch = strategy_->fetch(r, input);
    if (!batch) break;
    sums.add(strategy_->evaluate(r, *batch));
    strategy_->release(r, input);  // no collective per batch: wait before replica 0 refills
  }
  const MetricSums total = all_reduce(r, sums);
  if (r.local_index == 0) {
    const auto ms = int64_t(seconds_since(t0) * 1000.0) + 1;
    if (ms > slowest_eval_ms_.load()) slowest_eval_ms_.store(ms);
  }
  if (tracer_) tracer_->replica(r.local_index).span("evaluation", t0, Clock::now());
  const double rows = std::max(1.0, total.rows);  // an empty split: all zeros
  return EvalResult{total.loss_sum / rows, total.correct / rows, int64_t(total.rows)};
}

MetricSums Trainer::all_reduce(Replica& r, const MetricSums& local) {
  double v[3] = {local.loss_sum, local.correct, local.rows};
  r.comm->allreduce(v, 3);
  return MetricSums{v[0], v[1], v[2]};
}

// ---- reporting (chief only) ----
void Trainer::report_progress(int64_t epoch, int64_t step, const MetricSums& s, double seconds) {
  if (!strategy_->is_chief() || !tty_) return;
  const int64_t steps = train_input_->steps_per_epoch();
  std::printf("\rEpoch %lld/%lld %6lld/%lld - %.0fs - loss: %.4f", (long long)epoch + 1,
              (long long)config_.epochs, (long long)step, (long long)steps, seconds,
              s.loss_sum / std::max(1.0, s.rows));
  if (model_->loss() == LossKind::kSoftmaxCrossEntropy) {
    std::printf(" - accuracy: %.4f", s.correct / std::max(1.0, s.rows));
  }
  std::fflush(stdout);
}

void Trainer::report_epoch(int64_t epoch, const MetricSums& s, double train_seconds, double lr,
                           const EvalResult& val, double epoch_seconds) {
  const bool cls = model_->loss() == LossKind::kSoftmaxCrossEntropy;
  // An epoch whose every step was skipped (train.on_nonfinite: skip) trained on no
  // rows: its loss and accuracy are unknown (NaN; null in metrics.jsonl), not 0.
  const double none = std::numeric_limits<double>::quiet_NaN();
  const double loss = s.rows > 0 ? s.loss_sum / s.rows : none;
  const double acc = s.rows > 0 ? s.correct / s.rows : none;
  const int64_t steps = train_input_->steps_per_epoch();
  const double sps = s.rows / std::max(1e-9, train_seconds);
  std::printf("%sEpoch %lld/%lld %lld/%lld - %.1fs %.2fms/step - loss: %.4f", tty_ ? "\r" : "",
              (long long)epoch + 1, (long long)config_.epochs, (long long)steps, (long long)steps,
              epoch_seconds, 1e3 * train_seconds / double(std::max<int64_t>(1, steps)), loss);
  if (cls) std::printf(" - accuracy: %.4f", acc);
  std::printf(" - val_loss: %.4f", val.loss);
  if (cls) std::printf(" - val_accuracy: %.4f", val.accuracy);
  std::printf(" - %.0f samples/s", sps);
  if (skipped_steps_ > 0) std::printf(" - %lld steps skipped (non-finite)", (long long)skipped_steps_.load());
  std::printf("\n");
  std::fflush(stdout);
  const StepBreakdown& b = last_breakdown_;  // median ms per step of this epoch's steps on the chief replica
  nlohmann::json rec = {{"epoch", epoch + 1},  {"loss", loss},
                        {"val_loss", val.loss}, {"samples_per_sec", sps},
                        {"seconds", epoch_seconds}, {"train_seconds", train_seconds},
                        {"learning_rate", lr},  {"steps", steps},
                        {"skipped_steps", skipped_steps_.load()},
                        {"step_ms", b.step_ms}, {"compute_ms", b.compute_ms},
                        {"allreduce_wait_ms", b.allreduce_ms}, {"input_wait_ms", b.input_ms},
                        {"optimizer_ms", b.optimizer_ms}};
  if (cls) {
    rec["accuracy"] = acc;
    rec["val_accuracy"] = val.accuracy;
  }
  metrics_->write(rec);
  if (tensorboard_) {
    tensorboard_->epoch(EpochScalars{epoch, loss, val.loss, acc, val.accuracy, cls, lr, sps});
  }
}

// ---- timeline (--trace) ----
void Trainer::set_trace(const std::string& path, int64_t steps) {
  trace_path_ = path;
  trace_steps_ = steps;  // the path is checked in fit(), beside --metrics-out
}

void Trainer::trace_step(Replica& r, int64_t step) {
  if (!tracer_->traces_step(step)) {
    r.trace = nullptr;
    return;
  }
  r.trace = &tracer_->replica(r.local_index);
  r.trace->set_step(step);
  tracer_->reducer(r.local_index).set_step(step);
}

// Every rank's tracks go to rank 0 (each in turn broadcasts its text), which
// writes the file.
void Trainer::write_trace() {
  std::vector<std::string> ranks;
  ranks.push_back(tracer_->json());
  for (int root = 1; root < world_.size(); ++root) {
    std::string text = broadcast_text(*world_.comm, ranks[0], root);
    if (world_.rank() == 0) ranks.push_back(std::move(text));
  }
  int64_t dropped = tracer_->dropped();
  world_.comm->allreduce(&dropped, 1);
  if (!strategy_->is_chief()) return;
  const nlohmann::json meta = {{"processes", world_.size()},
                               {"replicas", strategy_->num_replicas_in_sync()},
                               {"first_step", tracer_->first_step()},
                               {"last_step", std::min(tracer_->last_step(), total_steps_)},
                               {"dropped_spans", dropped}};
  write_trace_file(trace_path_, ranks, meta.dump());
  std::printf("trace: %s (steps %lld-%lld, every rank and replica; open it in https://ui.perfetto.dev "
              "or chrome://tracing)\n",
              trace_path_.c_str(), (long long)tracer_->first_step(),
              (long long)std::min(tracer_->last_step(), total_steps_));
}

// ---- evaluate a saved model ----
EvalResult Trainer::evaluate_saved(const std::string& model_path, const std::string& metrics_out) {
  if (world_.rank() == 0) {
    check_side_output({"--metrics-out", metrics_out, "metrics.jsonl", false, false,
                       {{model_path, "the model being evaluated"}}},
                      config_, checkpoint_dir());
  }
  build(false);
  const SavedState saved = load_state(model_path, model_.get());
  if (strategy_->is_chief()) metrics_ = std::make_unique<MetricsWriter>(metrics_out);
  EvalResult result;
  strategy_->run([&](Replica& r) {
    strategy_->restore(r, &saved.params, nullptr);
    const EvalResult e = evaluate(r, *eval_input_);
    if (r.local_index == 0) result = e;
  });
  if (strategy_->is_chief()) {
    const bool cls = model_->loss() == LossKind::kSoftmaxCrossEntropy;
    std::printf("evaluate %s on %s: loss %.4f", model_path.c_str(),
                eval_source_->info().description.c_str(), result.loss);
    if (cls) std::printf(" - accuracy %.4f", result.accuracy);
    std::printf(" (%lld examples)\n", (long long)result.count);
    nlohmann::json rec = {{"final", true}, {"test_loss", result.loss}, {"examples", result.count}};
    if (cls) rec["test_accuracy"] = result.accuracy;
    metrics_->write(rec);
  }
  return result;
}

}  // namespace lockstep
