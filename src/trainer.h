// The training story: build (data, model, strategy) -> train epoch by epoch
// (step, log, check) -> evaluate -> save. Also evaluation of a saved model.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/input.h"
#include "src/checkpoint.h"
#include "src/config.h"
#include "src/model.h"
#include "src/run_folder.h"
#include "src/step_times.h"
#include "src/strategy.h"

namespace lockstep {

class MetricsWriter;
class TensorBoardLog;
class Tracer;

// What `lockstep scale` measures of one layout (Trainer::measure).
struct Throughput {
  int replicas = 0;            // num_replicas_in_sync
  int64_t global_batch = 0;
  int64_t steps = 0;           // timed steps
  double seconds = 0;          // wall time of the timed steps
  double samples_per_sec = 0;  // rows trained / seconds
  int64_t gradient_bytes = 0;  // all-reduced per step (the gradient and the step's metrics)
  StepBreakdown breakdown;     // medians of the timed steps (local replica 0 of rank 0)
};

struct EvalResult {
  double loss = 0.0;
  double accuracy = 0.0;  // classification only
  int64_t count = 0;      // examples evaluated (each exactly once)
};

// Sums a replica accumulates and that are reduced across all replicas.
struct MetricSums {
  double loss_sum = 0.0, correct = 0.0, rows = 0.0;
  void add(const SliceStats& s) {
    loss_sum += s.loss_sum;
    correct += double(s.correct);
    rows += double(s.rows);
  }
};

class Trainer {
 public:
  Trainer(Config config, World& world);
  ~Trainer();

  // Trains for config.epochs; writes the final model if configured. Returns the
  // final evaluation on data.eval_split. resume: "" (fresh), "auto" (the newest
  // loadable checkpoint in checkpoint.dir, or fresh if there is none) or a path.
  // Throws Interrupted after writing a checkpoint when a signal stopped training.
  EvalResult fit(const std::string& metrics_out, const std::string& resume = "");
  // How fit treats output.dir (src/run_folder.h) and whether start-up prints the
  // whole config table (verbose) or only the keys that differ from their defaults.
  void set_run_options(const RunFolderOptions& options, bool verbose) {
    run_options_ = options;
    verbose_ = verbose;
  }
  // Loads a model file and evaluates it on data.eval_split.
  EvalResult evaluate_saved(const std::string& model_path, const std::string& metrics_out);
  // Before fit: write a timeline of `steps` steps (after a warm-up) to path
  // (Chrome trace-event JSON, written by rank 0 at the end of training).
  void set_trace(const std::string& path, int64_t steps);
  // Steady state for `lockstep scale`: trains `warmup` untimed then `steps` timed
  // steps from the initial weights (the real input pipeline, strategy and
  // optimizer; no evaluation, no files). Valid on the chief.
  Throughput measure(int64_t warmup, int64_t steps);

 private:
  // Where training stands; every replica keeps an identical copy.
  struct Position {
    int64_t epoch = 0;
    int64_t step_in_epoch = 0;
    int64_t global_step = 0;
    MetricSums epoch_sums;           // the epoch so far, over all replicas
    double epoch_train_seconds = 0;  // training time of the epoch before a resume
  };

  // training: also the training input; evaluation alone needs neither it nor a
  // global batch that divides by the replica count.
  void build(bool training);
  void check_deterministic() const;  // train.deterministic: micro-batches split, CPU replicas
  Position start_state(Replica& r);
  void train_epoch(Replica& r, Position& pos);
  void on_nonfinite(Replica& r, const Position& pos, const StepResult& res);
  SavedState snapshot(Replica& r, const Position& pos) const;
  // Chief only (others return ""): writes a checkpoint atomically, keeps the newest K.
  std::string save_checkpoint(Replica& r, const Position& pos);
  void report_schedule_change(const SavedState& s, const std::string& path) const;
  void refuse_past_end(const SavedState& s, const std::string& path) const;
  std::optional<SavedState> find_resume_point(const std::string& resume);
  std::string checkpoint_dir() const;
  std::string fingerprint() const;
  void check_same_everywhere();
  void print_plan() const;
  void print_config() const;
  void replica_fit(Replica& r);
  EvalResult evaluate(Replica& r, DistributedInput& input);
  MetricSums all_reduce(Replica& r, const MetricSums& local);
  void report_progress(int64_t epoch, int64_t step, const MetricSums& s, double seconds);
  void report_epoch(int64_t epoch, const MetricSums& s, double train_seconds, double lr,
                    const EvalResult& val, double epoch_seconds);

  Config config_;
  RunFolderOptions run_options_;
  bool verbose_ = false;
  bool auto_replicas_ = false;  // strategy.local_replicas was auto (resolved in build)
  World& world_;
  std::shared_ptr<Source> train_source_, eval_source_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<MirroredStrategy> strategy_;
  std::unique_ptr<DistributedInput> train_input_, eval_input_;
  std::unique_ptr<MetricsWriter> metrics_;
  double base_lr_ = 0.0;
  int64_t total_steps_ = 0;
  EvalResult last_eval_;
  std::optional<SavedState> resume_;  // chief: the checkpoint to continue from
  bool tty_ = false;
  // The slowest evaluation so far in this process (ms; 0 = none yet): later ones
  // get a budget that follows it instead of comm.long_phase_s.
  std::atomic<int64_t> slowest_eval_ms_{0};
  std::chrono::milliseconds evaluation_budget() const;
  std::atomic<int64_t> skipped_steps_{0};  // local replica 0 counts (all replicas skip alike)

  // Observability: output.tensorboard (chief), --trace, and the step breakdown
  // that local replica 0 samples every step.
  void trace_step(Replica& r, int64_t step);
  void write_trace();
  std::unique_ptr<TensorBoardLog> tensorboard_;
  std::unique_ptr<Tracer> tracer_;
  std::string trace_path_;
  int64_t trace_steps_ = 0;
  StepTimes step_times_;
  StepBreakdown last_breakdown_;
  std::string signal_checkpoint_;  // the checkpoint written on a signal, for every local replica
};

}  // namespace lockstep
