// Experiment configuration: every key lockstep reads is a field of Config (its
// default is the initializer here) and one typed descriptor in config.cpp (the
// field, range or allowed names, meaning), validated on load, overridable with
// --set key=value, listed by --help and printed by rank 0 as a table at start.
// A new key is one field here and one entry in config.cpp's kKeys.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/options.h"
#include "kernels/cpu/cnn.h"
#include "kernels/cpu/ops.h"

namespace lockstep {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class LayerType {
  kDense, kConv2d, kMaxPool2d, kAvgPool2d, kGlobalAvgPool2d, kFlatten, kBatchNorm, kDropout,
  kResidual
};

// One entry of model.layers; which fields a type reads is in config.cpp's
// kLayerFields (the one table that parses, checks, prints and documents them).
struct LayerConfig {
  int64_t units = 0;                          // dense
  Activation activation = Activation::kRelu;  // dense, conv2d
  float dropout = 0.0f;  // dense: applied to its output in training; dropout: the rate
  LayerType type = LayerType::kDense;
  int64_t filters = 0, kernel_size = 3, strides = 1;  // conv2d, residual
  Padding padding = Padding::kSame;                   // conv2d
  int64_t pool_size = 2, pool_strides = 0;            // max/avg_pool2d (0: pool_size)
  bool sync = true;                                   // batch_norm: statistics over all replicas
  float momentum = 0.99f, epsilon = 1e-3f;            // batch_norm (and a residual's)
};

// One layer as a one-line YAML map, every field its type takes: {type: conv2d, filters: 8, ...}.
std::string describe_layer(const LayerConfig& l);

enum class LossKind { kSoftmaxCrossEntropy, kMeanSquaredError };
enum class OptimizerKind { kSgd, kAdam, kAdamW };
enum class ScheduleKind { kConstant, kStep, kCosine };
enum class NonFinitePolicy { kStop, kSkip };
enum class DeviceKind { kCpu, kCuda, kAuto };  // auto: cuda when built with it and a GPU is visible
enum class GatherMode { kAuto, kThread, kReplicas };  // who reads a batch's rows (resolve_gather)

struct Config {
  std::string source;  // the file it was loaded from ("" for defaults)
  std::vector<std::string> overridden;  // keys whose value came from --set
  std::map<std::string, int> lines;     // the line of source each key was read from
  // Where key's value came from, to start an error: "--set", "file:line", or the
  // file alone for a key it left at its default.
  std::string where(const std::string& key) const;

  // data
  std::string data_path;
  std::string data_train_split = "train";
  std::string data_eval_split = "test";
  float data_scale = 1.0f;
  bool data_shuffle = true;
  int data_prefetch = 2;
  GatherMode data_gather = GatherMode::kAuto;

  // model: hidden layers; the output Dense layer is added from the dataset
  // (num_classes or target_dim units, linear, the loss applies softmax).
  std::vector<LayerConfig> layers;
  LossKind loss = LossKind::kSoftmaxCrossEntropy;

  // optimizer and learning-rate schedule
  OptimizerKind optimizer = OptimizerKind::kAdam;
  float learning_rate = 1e-3f;
  float beta1 = 0.9f, beta2 = 0.999f, epsilon = 1e-7f;
  float momentum = 0.0f;
  bool nesterov = false;
  float weight_decay = 0.0f;
  ScheduleKind schedule = ScheduleKind::kConstant;
  int64_t warmup_steps = 0;
  int64_t decay_steps = 0;   // step: every decay_steps; cosine: over decay_steps (0 = whole run)
  float decay_rate = 0.1f;   // step decay factor
  float min_lr_ratio = 0.0f; // cosine floor as a fraction of learning_rate
  bool scale_lr = false;     // linear LR scaling by num_replicas_in_sync

  // training
  int64_t epochs = 10;
  int64_t batch_size = 64;   // the GLOBAL batch
  uint64_t seed = 42;
  bool drop_remainder = false;
  int64_t eval_batch_size = 1000;
  bool progress = true;
  NonFinitePolicy nonfinite = NonFinitePolicy::kStop;  // a NaN/Inf loss: stop, or skip the step
  bool flush_denormals = true;  // kernels/cpu/fpenv.h; README: Configs
  bool deterministic = false;    // src/micro_batch.h; README: Deterministic mode
  int64_t micro_batch_size = 0;  // rows per micro-batch; 0 = auto (resolve_micro_batch)

  // checkpoints
  std::string checkpoint_dir;     // "" = OUTPUT_DIR/checkpoints
  int64_t checkpoint_every = 0;   // steps between checkpoints (0 = only at epoch ends)
  bool checkpoint_epochs = true;  // also at the end of every epoch
  int64_t checkpoint_keep = 3;    // newest K kept
  bool checkpoint_on_signal = true;  // SIGINT/SIGTERM: write one before exiting

  // communication (comm/options.h, comm/deadline.h)
  double comm_timeout_s = 0;        // collective deadline; 0 = adaptive (>= 10 s, 20x slowest step)
  double comm_long_phase_s = 600;   // start-up, evaluation and checkpoint writes may take this long
  bool comm_verify = false;         // debug: every rank must issue the same collectives
  using ShmStores = CommOptions::ShmStores;  // comm/shm_communicator.cpp
  ShmStores comm_shm_stores = ShmStores::kAuto;
  bool comm_shared_memory = true;   // processes on one node all-reduce through shared memory

  // strategy
  int local_replicas = 1;    // 0 = auto (all cores / all GPUs)
  double bucket_mb = 4.0;    // gradient fusion bucket size
  bool overlap = false;      // reduce buckets on a helper thread during backward
  bool share_weights = true; // CPU replicas keep one weight arena and split the update
  int64_t check_every = 100; // steps between cross-replica weight checksums (0 = off)
  DeviceKind device = DeviceKind::kCpu;  // where replicas compute (src/accelerator.h)
  int replicas_per_gpu = 1;  // cuda: logical replicas sharing one GPU (> 1 for tests)
  bool cuda_graphs = true;   // cuda: replay each full-batch step as one captured graph
  bool tf32 = false;         // cuda: TF32 tensor-core GEMMs (about 1e-3 relative error)

  // output
  std::string output_dir = "runs/default";
  bool save_model = true;
  bool tensorboard = false;             // OUTPUT_DIR/tensorboard/{train,validation} event files
  int64_t tensorboard_every_steps = 100;  // batch-level loss every N steps (0 = epochs only)

  // The resolved configuration as YAML (stored in model files and checkpoints).
  std::string to_yaml() const;
  // Rows of (key, value, meaning) for the start-up table.
  std::vector<std::vector<std::string>> table() const;
};

// Parse "key=value" overrides (value is YAML: 3, 0.1, true, relu, [{units: 64}]).
struct Override {
  std::string key;
  std::string value;
};
Override parse_override(const std::string& text);

// Load a YAML file, apply overrides in order, validate. Throws ConfigError naming
// the file:line (or --set) and key on any problem: unknown or duplicate key,
// wrong type, value out of range or not one of the allowed names, keys that
// contradict each other.
Config load_config(const std::string& path, const std::vector<Override>& overrides = {});
// The same from YAML text (tests, checkpoints); `origin` names it in errors.
Config parse_config(const std::string& yaml_text, const std::string& origin,
                    const std::vector<Override>& overrides = {});

// Every declared key, in table order (--help, and tests that check the docs).
struct ConfigKeyHelp {
  std::string name;
  std::string default_text;          // the value when the key is left out
  std::string meaning;
  std::vector<std::string> choices;  // the names an enum key (or a layer's activation) takes
};
std::vector<ConfigKeyHelp> config_key_help();

const char* activation_name(Activation a);
const char* layer_type_name(LayerType t);
const char* loss_name(LossKind k);
const char* optimizer_name(OptimizerKind k);
const char* schedule_name(ScheduleKind k);

}  // namespace lockstep
