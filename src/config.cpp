// Config keys are declared once, in kKeys below: name, default shown in --help
// and the start-up table, meaning, and the parser that validates and stores the
// value. YAML files are flattened to dotted keys, so `train: {epochs: 3}` and
// `--set train.epochs=3` are the same key.
#include "src/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

namespace lockstep {
namespace {

struct Ctx {
  const std::string& origin;
  const std::string& key;
  [[noreturn]] void fail(const std::string& what) const {
    throw ConfigError(origin + ": key '" + key + "': " + what);
  }
};

std::string node_text(const YAML::Node& n) {
  YAML::Emitter out;
  out << YAML::Flow << n;
  return out.c_str();
}

int64_t get_int(const YAML::Node& n, const Ctx& c, int64_t lo, int64_t hi) {
  if (!n.IsScalar()) c.fail("expected an integer, got " + node_text(n));
  int64_t v = 0;
  try {
    v = n.as<int64_t>();
  } catch (const YAML::Exception&) {
    c.fail("expected an integer, got '" + n.Scalar() + "'");
  }
  if (v < lo || v > hi) {
    c.fail("value " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
           (hi == std::numeric_limits<int64_t>::max() ? std::string("inf") : std::to_string(hi)) +
           "]");
  }
  return v;
}

double get_float(const YAML::Node& n, const Ctx& c, double lo, double hi, bool lo_open = false) {
  if (!n.IsScalar()) c.fail("expected a number, got " + node_text(n));
  double v = 0;
  try {
    v = n.as<double>();
  } catch (const YAML::Exception&) {
    c.fail("expected a number, got '" + n.Scalar() + "'");
  }
  if (!std::isfinite(v) || v < lo || v > hi || (lo_open && v == lo)) {
    std::ostringstream os;
    os << "value " << n.Scalar() << " is out of range " << (lo_open ? "(" : "[") << lo << ", "
       << hi << "]";
    c.fail(os.str());
  }
  return v;
}

bool get_bool(const YAML::Node& n, const Ctx& c) {
  if (!n.IsScalar()) c.fail("expected true or false, got " + node_text(n));
  try {
    return n.as<bool>();
  } catch (const YAML::Exception&) {
    c.fail("expected true or false, got '" + n.Scalar() + "'");
  }
}

// Byte offset of the first invalid UTF-8 sequence, or npos.
size_t invalid_utf8_at(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char b = static_cast<unsigned char>(s[i]);
    const size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xe ? 3 : (b >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > s.size()) return i;
    for (size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return i;
    i += len;
  }
  return std::string::npos;
}

// Names and paths must survive to_yaml (stored in model files) unchanged: the
// emitter escapes control bytes and invalid UTF-8, which read back differently.
std::string get_string(const YAML::Node& n, const Ctx& c, bool allow_empty = false) {
  if (!n.IsScalar()) c.fail("expected a string, got " + node_text(n));
  const std::string& s = n.Scalar();
  if (!allow_empty && s.empty()) c.fail("must not be empty");
  for (unsigned char ch : s)
    if (ch < 0x20 || ch == 0x7f) c.fail("holds control character " + std::to_string(ch) + " (names and paths must be printable)");
  if (const size_t at = invalid_utf8_at(s); at != std::string::npos)
    c.fail("is not valid UTF-8 (byte " + std::to_string(at) + ")");
  return s;
}

template <typename E>
E get_enum(const YAML::Node& n, const Ctx& c, const std::vector<std::pair<std::string, E>>& names) {
  const std::string s = get_string(n, c);
  std::string choices;
  for (const auto& [name, value] : names) {
    if (name == s) return value;
    choices += (choices.empty() ? "" : ", ") + name;
  }
  c.fail("unknown value '" + s + "' (choose one of: " + choices + ")");
}

const std::vector<std::pair<std::string, Activation>> kActivations = {
    {"relu", Activation::kRelu},       {"tanh", Activation::kTanh},
    {"sigmoid", Activation::kSigmoid}, {"gelu", Activation::kGelu},
    {"linear", Activation::kLinear}};

std::vector<LayerConfig> get_layers(const YAML::Node& n, const Ctx& c) {
  if (!n.IsSequence()) {
    c.fail("expected a list of layers like [{units: 128, activation: relu}], got " +
           node_text(n));
  }
  std::vector<LayerConfig> layers;
  for (size_t i = 0; i < n.size(); ++i) {
    const YAML::Node& l = n[i];
    const std::string where = c.key + "[" + std::to_string(i) + "]";
    if (!l.IsMap()) Ctx{c.origin, where}.fail("expected {units: N, activation: A, dropout: P}");
    LayerConfig layer;
    bool has_units = false;
    for (const auto& kv : l) {
      const std::string k = kv.first.Scalar();
      const std::string sub = where + "." + k;
      const Ctx sc{c.origin, sub};
      if (k == "units") {
        layer.units = get_int(kv.second, sc, 1, 1 << 20);
        has_units = true;
      } else if (k == "activation") {
        layer.activation = get_enum(kv.second, sc, kActivations);
      } else if (k == "dropout") {
        layer.dropout = static_cast<float>(get_float(kv.second, sc, 0.0, 0.95));
      } else {
        sc.fail("unknown layer field (layers take units, activation, dropout)");
      }
    }
    if (!has_units) Ctx{c.origin, where}.fail("a layer needs 'units'");
    layers.push_back(layer);
  }
  return layers;
}

using Setter = std::function<void(Config&, const YAML::Node&, const Ctx&)>;
struct KeyDef {
  const char* name;
  const char* fallback;  // default, as shown to the user
  const char* meaning;
  Setter set;
};

// clang-format off
const std::vector<KeyDef> kKeys = {
  {"data.path", "(required)", "HDF5 dataset file (lockstep layout, see data/README.md)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.data_path = get_string(n, x); }},
  {"data.train_split", "train", "group of the training examples",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.data_train_split = get_string(n, x); }},
  {"data.eval_split", "test", "group evaluated after every epoch and at the end (val_*, test_*)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.data_eval_split = get_string(n, x); }},
  {"data.scale", "1.0", "every input feature is multiplied by this (1/255 for pixels)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.data_scale = float(get_float(n, x, 0, 1e6, true)); }},
  {"data.shuffle", "true", "reshuffle the training set every epoch (seeded by train.seed)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.data_shuffle = get_bool(n, x); }},
  {"data.prefetch", "2", "global batches prepared ahead on a background thread (0 = off)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.data_prefetch = int(get_int(n, x, 0, 64)); }},
  {"data.gather", "auto", "who reads a batch's rows: thread (one prefetch thread), replicas (each replica its own, in parallel) or auto (replicas when every core runs a replica)",
   [](Config& c, const YAML::Node& n, const Ctx& x) {
     c.data_gather = get_enum<GatherMode>(n, x, {{"auto", GatherMode::kAuto}, {"thread", GatherMode::kThread},
                                                 {"replicas", GatherMode::kReplicas}}); }},
  {"model.layers", "[{units: 128, activation: relu}]", "hidden Dense layers, each {units: N, activation: relu|tanh|sigmoid|gelu|linear (default relu), dropout: P (default 0)}; the output layer is added from the dataset",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.layers = get_layers(n, x); }},
  {"model.loss", "softmax_cross_entropy", "softmax_cross_entropy (class labels) or mse (float targets)",
   [](Config& c, const YAML::Node& n, const Ctx& x) {
     c.loss = get_enum<LossKind>(n, x, {{"softmax_cross_entropy", LossKind::kSoftmaxCrossEntropy},
                                         {"mse", LossKind::kMeanSquaredError}}); }},
  {"optimizer.name", "adam", "sgd, adam or adamw",
   [](Config& c, const YAML::Node& n, const Ctx& x) {
     c.optimizer = get_enum<OptimizerKind>(n, x, {{"sgd", OptimizerKind::kSgd}, {"adam", OptimizerKind::kAdam},
                                                  {"adamw", OptimizerKind::kAdamW}}); }},
  {"optimizer.learning_rate", "0.001", "base learning rate",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.learning_rate = float(get_float(n, x, 0, 1e3, true)); }},
  {"optimizer.beta1", "0.9", "Adam first-moment decay",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.beta1 = float(get_float(n, x, 0, 0.999999)); }},
  {"optimizer.beta2", "0.999", "Adam second-moment decay",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.beta2 = float(get_float(n, x, 0, 0.999999999)); }},
  {"optimizer.epsilon", "1e-7", "Adam epsilon (Keras default)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.epsilon = float(get_float(n, x, 0, 1, true)); }},
  {"optimizer.momentum", "0.0", "SGD momentum",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.momentum = float(get_float(n, x, 0, 0.999999)); }},
  {"optimizer.nesterov", "false", "SGD Nesterov momentum",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.nesterov = get_bool(n, x); }},
  {"optimizer.weight_decay", "0.0", "L2 (sgd, adam) or decoupled (adamw) weight decay",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.weight_decay = float(get_float(n, x, 0, 1)); }},
  {"optimizer.schedule", "constant", "learning-rate schedule: constant, step or cosine",
   [](Config& c, const YAML::Node& n, const Ctx& x) {
     c.schedule = get_enum<ScheduleKind>(n, x, {{"constant", ScheduleKind::kConstant}, {"step", ScheduleKind::kStep},
                                                {"cosine", ScheduleKind::kCosine}}); }},
  {"optimizer.warmup_steps", "0", "linear warm-up: step s < N runs at learning_rate x (s+1)/N",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.warmup_steps = get_int(n, x, 0, int64_t(1) << 40); }},
  {"optimizer.decay_steps", "0", "step: decay every N steps; cosine: decay over N steps (0 = the whole run)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.decay_steps = get_int(n, x, 0, int64_t(1) << 40); }},
  {"optimizer.decay_rate", "0.1", "step decay: multiply the rate by this every decay_steps",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.decay_rate = float(get_float(n, x, 0, 1, true)); }},
  {"optimizer.min_lr_ratio", "0.0", "cosine decay floor, as a fraction of the learning rate",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.min_lr_ratio = float(get_float(n, x, 0, 1)); }},
  {"optimizer.scale_lr", "false", "multiply the learning rate by num_replicas_in_sync",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.scale_lr = get_bool(n, x); }},
  {"train.epochs", "10", "passes over the training set",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.epochs = get_int(n, x, 1, 1000000); }},
  {"train.batch_size", "64", "GLOBAL batch, split evenly across all replicas",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.batch_size = get_int(n, x, 1, int64_t(1) << 24); }},
  {"train.seed", "42", "seed of weights, shuffling and dropout",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.seed = uint64_t(get_int(n, x, 0, std::numeric_limits<int64_t>::max())); }},
  {"train.drop_remainder", "false", "skip the last, short batch of every epoch",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.drop_remainder = get_bool(n, x); }},
  {"train.eval_batch_size", "1000", "global batch for evaluation",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.eval_batch_size = get_int(n, x, 1, int64_t(1) << 24); }},
  {"train.progress", "true", "print a Keras-style progress line during each epoch",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.progress = get_bool(n, x); }},
  {"train.on_nonfinite", "stop", "a NaN/Inf loss or gradient: stop naming the step, or skip the step's update",
   [](Config& c, const YAML::Node& n, const Ctx& x) {
     c.nonfinite = get_enum<NonFinitePolicy>(n, x, {{"stop", NonFinitePolicy::kStop}, {"skip", NonFinitePolicy::kSkip}}); }},
  {"train.flush_denormals", "true", "flush denormal floats to zero on every compute thread (false: IEEE gradual underflow, 2-3x slower steps once values get tiny)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.flush_denormals = get_bool(n, x); }},
  {"train.deterministic", "false", "bitwise the same weights and optimizer slots for every replica count that divides the micro-batches of a global batch (fixed micro-batches, exact integer gradient sum)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.deterministic = get_bool(n, x); }},
  {"train.micro_batch_size", "auto", "rows per micro-batch, a divisor of train.batch_size; each micro-batch's gradient is computed on its own, and fewer rows than a replica's share is gradient accumulation; auto: the replica's share, or with deterministic the global batch cut into the most of 8, 4 or 2 micro-batches of at least 16 rows (else 1)",
   [](Config& c, const YAML::Node& n, const Ctx& x) {
     if (n.IsScalar() && n.Scalar() == "auto") { c.micro_batch_size = 0; return; }
     c.micro_batch_size = get_int(n, x, 1, int64_t(1) << 24); }},
  {"comm.timeout_s", "0", "seconds a collective may wait for a peer before the job ends naming it (0 = adaptive: 10 s or 20x the slowest recent step)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.comm_timeout_s = get_float(n, x, 0.0, 1e6); }},
  {"comm.long_phase_s", "600", "seconds peers may wait for start-up, the first evaluation or a checkpoint write (later evaluations: 20x the slowest so far, at least the collective floor)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.comm_long_phase_s = get_float(n, x, 0.0, 1e6, true); }},
  {"comm.verify", "false", "debug: check that every rank issues the same collectives, naming the first difference",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.comm_verify = get_bool(n, x); }},
  {"comm.shared_memory", "true", "processes on one node all-reduce through shared memory (false: MPI messages)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.comm_shared_memory = get_bool(n, x); }},
  {"comm.shm_stores", "auto", "shared memory: how a rank writes into the segment: plain, streaming (non-temporal) or auto (whichever its timing finds cheaper lately)",
   [](Config& c, const YAML::Node& n, const Ctx& x) {
     const auto names = CommOptions::shm_store_names();
     c.comm_shm_stores = get_enum<Config::ShmStores>(n, x, {names.begin(), names.end()}); }},
  {"checkpoint.dir", "OUTPUT_DIR/checkpoints", "folder of the training checkpoints",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.checkpoint_dir = get_string(n, x); }},
  {"checkpoint.every_steps", "0", "write a checkpoint every N steps (0 = off)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.checkpoint_every = get_int(n, x, 0, int64_t(1) << 40); }},
  {"checkpoint.every_epoch", "true", "write a checkpoint at the end of every epoch",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.checkpoint_epochs = get_bool(n, x); }},
  {"checkpoint.keep", "3", "how many of the newest checkpoints to keep",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.checkpoint_keep = get_int(n, x, 1, 1000000); }},
  {"checkpoint.on_signal", "true", "on SIGINT/SIGTERM finish the step, write a checkpoint, exit",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.checkpoint_on_signal = get_bool(n, x); }},
  {"strategy.local_replicas", "1", "replicas in this process: a number, or auto (one per CPU, the most that divide the global batch; with device cuda this process's share of the node's GPUs x replicas_per_gpu)",
   [](Config& c, const YAML::Node& n, const Ctx& x) {
     if (n.IsScalar() && n.Scalar() == "auto") { c.local_replicas = 0; return; }
     c.local_replicas = int(get_int(n, x, 1, 4096)); }},
  {"strategy.bucket_mb", "4", "gradient fusion bucket size in MiB",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.bucket_mb = get_float(n, x, 0, 1024, true); }},
  {"strategy.overlap", "false", "reduce gradient buckets on a helper thread while backward continues (wants a spare core per replica)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.overlap = get_bool(n, x); }},
  {"strategy.check_every", "100", "steps between cross-replica weight checksums (0 = off)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.check_every = get_int(n, x, 0, int64_t(1) << 40); }},
  {"strategy.device", "cpu", "where replicas compute: cpu, cuda, or auto (cuda when built with CUDA and a GPU is visible)",
   [](Config& c, const YAML::Node& n, const Ctx& x) {
     c.device = get_enum<DeviceKind>(n, x, {{"cpu", DeviceKind::kCpu}, {"cuda", DeviceKind::kCuda},
                                            {"auto", DeviceKind::kAuto}}); }},
  {"strategy.replicas_per_gpu", "1", "cuda: replicas sharing one GPU (logical devices; > 1 mainly for tests)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.replicas_per_gpu = int(get_int(n, x, 1, 64)); }},
  {"strategy.cuda_graphs", "true", "cuda: capture each full-batch training step once and replay it",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.cuda_graphs = get_bool(n, x); }},
  {"strategy.tf32", "false", "cuda: TF32 tensor-core GEMMs (faster, about 1e-3 relative error)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.tf32 = get_bool(n, x); }},
  {"output.dir", "runs/default", "folder for the final model (model.h5) and, unless checkpoint.dir says otherwise, checkpoints/",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.output_dir = get_string(n, x); }},
  {"output.save_model", "true", "write OUTPUT_DIR/model.h5 at the end of training",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.save_model = get_bool(n, x); }},
  {"output.tensorboard", "false", "write TensorBoard event files to OUTPUT_DIR/tensorboard/{train,validation} (epoch_loss, epoch_accuracy, learning_rate, samples_per_sec)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.tensorboard = get_bool(n, x); }},
  {"output.tensorboard_every_steps", "100", "with output.tensorboard: the global batch's loss (batch_loss) every N steps (0 = epoch scalars only)",
   [](Config& c, const YAML::Node& n, const Ctx& x) { c.tensorboard_every_steps = get_int(n, x, 0, int64_t(1) << 40); }},
};
// clang-format on

const KeyDef* find_key(const std::string& name) {
  for (const auto& k : kKeys) {
    if (name == k.name) return &k;
  }
  return nullptr;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

[[noreturn]] void unknown_key(const std::string& origin, const std::string& key) {
  std::string best;
  size_t best_d = 4;
  for (const auto& k : kKeys) {
    const size_t d = edit_distance(key, k.name);
    if (d < best_d) best_d = d, best = k.name;
  }
  throw ConfigError(origin + ": unknown key '" + key + "'" +
                    (best.empty() ? std::string(" (see 'lockstep train --help' for the keys)")
                                  : " (did you mean '" + best + "'?)"));
}

// Walk a YAML map into dotted leaf keys. Sequences are leaves (model.layers).
void flatten(const YAML::Node& node, const std::string& prefix, const std::string& origin,
             std::vector<std::pair<std::string, YAML::Node>>& out) {
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) throw ConfigError(origin + ": keys must be plain names");
    const std::string key = prefix.empty() ? kv.first.Scalar() : prefix + "." + kv.first.Scalar();
    if (kv.second.IsMap() && !find_key(key)) {
      flatten(kv.second, key, origin, out);
    } else {
      if (!find_key(key)) unknown_key(origin, key);
      if (kv.second.IsNull()) throw ConfigError(origin + ": key '" + key + "' has no value");
      out.emplace_back(key, kv.second);
    }
  }
}

void validate(const Config& c) {
  if (c.data_path.empty()) {
    throw ConfigError(c.where("data.path") + ": key 'data.path' is required (an HDF5 dataset; make one with "
                               "'lockstep convert idx ...')");
  }
  if (c.schedule == ScheduleKind::kStep && c.decay_steps == 0) {
    const std::string from = c.where("optimizer.decay_steps") == "--set" ? "--set" : c.where("optimizer.schedule");
    throw ConfigError(from + ": key 'optimizer.decay_steps' must be > 0 with schedule: step");
  }
  if (c.micro_batch_size > 0 && c.batch_size % c.micro_batch_size != 0) {
    const bool cli = c.where("train.micro_batch_size") == "--set" || c.where("train.batch_size") == "--set";
    std::string msg = cli ? "--set" : c.where("train.micro_batch_size");
    msg += ": key 'train.micro_batch_size': " + std::to_string(c.micro_batch_size) +
           " does not divide the global batch " + std::to_string(c.batch_size) +
           " (train.batch_size); use a divisor of it, or auto";
    throw ConfigError(msg);
  }
  if (c.deterministic && c.device == DeviceKind::kCuda) {
    throw ConfigError(c.where("train.deterministic") + ": key 'train.deterministic': not available with "
                      "strategy.device cuda yet (the exact gradient sum runs on CPU replicas); use device: cpu");
  }
#if !defined(LOCKSTEP_HAVE_CUDA)
  if (c.device == DeviceKind::kCuda) {
    throw ConfigError(c.where("strategy.device") + ": key 'strategy.device': cuda, but this lockstep was built without "
                               "CUDA (rebuild with -DLOCKSTEP_CUDA=ON, or use device: cpu or auto)");
  }
#endif
}

}  // namespace

std::string Config::where(const std::string& key) const {
  for (const auto& k : overridden) {
    if (k == key) return "--set";
  }
  return source.empty() ? std::string("config") : source;
}

Override parse_override(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError("--set '" + text + "': expected key=value, e.g. --set train.epochs=3");
  }
  Override o{text.substr(0, eq), text.substr(eq + 1)};
  if (!find_key(o.key)) unknown_key("--set", o.key);
  return o;
}

Config parse_config(const std::string& yaml_text, const std::string& origin,
                    const std::vector<Override>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(origin + ": not valid YAML: " + e.what());
  }
  std::vector<std::pair<std::string, YAML::Node>> values;
  if (root.IsMap()) {
    flatten(root, "", origin, values);
  } else if (!root.IsNull()) {
    throw ConfigError(origin + ": the top level must be a mapping of sections (data, model, ...)");
  }
  Config c;
  c.source = origin;
  for (const auto& [key, node] : values) find_key(key)->set(c, node, Ctx{origin, key});
  for (const auto& o : overrides) {
    YAML::Node node;
    try {
      node = YAML::Load(o.value);
    } catch (const YAML::Exception& e) {
      throw ConfigError("--set " + o.key + ": value '" + o.value + "' is not valid YAML");
    }
    if (node.IsNull()) throw ConfigError("--set " + o.key + ": empty value");
    const KeyDef* def = find_key(o.key);
    if (!def) unknown_key("--set", o.key);
    def->set(c, node, Ctx{"--set", o.key});
    c.overridden.push_back(o.key);
  }
  validate(c);
  return c;
}

Config load_config(const std::string& path, const std::vector<Override>& overrides) {
  std::ifstream in(path);
  if (!in) {
    throw ConfigError(path + ": cannot open the config file (does it exist? try configs/fashion_mnist_mlp.yaml)");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path, overrides);
}

const char* activation_name(Activation a) {
  for (const auto& [name, value] : kActivations) {
    if (value == a) return name.c_str();
  }
  return "?";
}
const char* loss_name(LossKind k) {
  return k == LossKind::kSoftmaxCrossEntropy ? "softmax_cross_entropy" : "mse";
}
const char* optimizer_name(OptimizerKind k) {
  switch (k) {
    case OptimizerKind::kSgd: return "sgd";
    case OptimizerKind::kAdam: return "adam";
    case OptimizerKind::kAdamW: return "adamw";
  }
  return "?";
}
const char* schedule_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::kConstant: return "constant";
    case ScheduleKind::kStep: return "step";
    case ScheduleKind::kCosine: return "cosine";
  }
  return "?";
}

const char* device_kind_name(DeviceKind k) {
  switch (k) {
    case DeviceKind::kCpu: return "cpu";
    case DeviceKind::kCuda: return "cuda";
    case DeviceKind::kAuto: return "auto";
  }
  return "?";
}

std::string Config::to_yaml() const {
  YAML::Emitter e;
  e.SetFloatPrecision(7);  // fp32 values print as written (0.001, not 0.00100000005)
  e.SetDoublePrecision(15);
  e << YAML::BeginMap;
  e << YAML::Key << "data" << YAML::Value << YAML::BeginMap
    << YAML::Key << "path" << YAML::Value << data_path
    << YAML::Key << "train_split" << YAML::Value << data_train_split
    << YAML::Key << "eval_split" << YAML::Value << data_eval_split
    << YAML::Key << "scale" << YAML::Value << data_scale
    << YAML::Key << "shuffle" << YAML::Value << data_shuffle
    << YAML::Key << "prefetch" << YAML::Value << data_prefetch
    << YAML::Key << "gather" << YAML::Value
    << (data_gather == GatherMode::kAuto ? "auto" : data_gather == GatherMode::kThread ? "thread" : "replicas")
    << YAML::EndMap;
  e << YAML::Key << "model" << YAML::Value << YAML::BeginMap << YAML::Key << "layers"
    << YAML::Value << YAML::BeginSeq;
  for (const auto& l : layers) {
    e << YAML::Flow << YAML::BeginMap << YAML::Key << "units" << YAML::Value << l.units
      << YAML::Key << "activation" << YAML::Value << activation_name(l.activation)
      << YAML::Key << "dropout" << YAML::Value << l.dropout << YAML::EndMap;
  }
  e << YAML::EndSeq << YAML::Key << "loss" << YAML::Value << loss_name(loss) << YAML::EndMap;
  e << YAML::Key << "optimizer" << YAML::Value << YAML::BeginMap
    << YAML::Key << "name" << YAML::Value << optimizer_name(optimizer)
    << YAML::Key << "learning_rate" << YAML::Value << learning_rate
    << YAML::Key << "beta1" << YAML::Value << beta1
    << YAML::Key << "beta2" << YAML::Value << beta2
    << YAML::Key << "epsilon" << YAML::Value << epsilon
    << YAML::Key << "momentum" << YAML::Value << momentum
    << YAML::Key << "nesterov" << YAML::Value << nesterov
    << YAML::Key << "weight_decay" << YAML::Value << weight_decay
    << YAML::Key << "schedule" << YAML::Value << schedule_name(schedule)
    << YAML::Key << "warmup_steps" << YAML::Value << warmup_steps
    << YAML::Key << "decay_steps" << YAML::Value << decay_steps
    << YAML::Key << "decay_rate" << YAML::Value << decay_rate
    << YAML::Key << "min_lr_ratio" << YAML::Value << min_lr_ratio
    << YAML::Key << "scale_lr" << YAML::Value << scale_lr << YAML::EndMap;
  e << YAML::Key << "train" << YAML::Value << YAML::BeginMap
    << YAML::Key << "epochs" << YAML::Value << epochs
    << YAML::Key << "batch_size" << YAML::Value << batch_size
    << YAML::Key << "seed" << YAML::Value << seed
    << YAML::Key << "drop_remainder" << YAML::Value << drop_remainder
    << YAML::Key << "eval_batch_size" << YAML::Value << eval_batch_size
    << YAML::Key << "progress" << YAML::Value << progress
    << YAML::Key << "on_nonfinite" << YAML::Value
    << (nonfinite == NonFinitePolicy::kStop ? "stop" : "skip")
    << YAML::Key << "flush_denormals" << YAML::Value << flush_denormals
    << YAML::Key << "deterministic" << YAML::Value << deterministic
    << YAML::Key << "micro_batch_size" << YAML::Value;
  if (micro_batch_size == 0) e << "auto"; else e << micro_batch_size;
  e << YAML::EndMap;
  e << YAML::Key << "comm" << YAML::Value << YAML::BeginMap
    << YAML::Key << "timeout_s" << YAML::Value << comm_timeout_s
    << YAML::Key << "long_phase_s" << YAML::Value << comm_long_phase_s
    << YAML::Key << "verify" << YAML::Value << comm_verify
    << YAML::Key << "shared_memory" << YAML::Value << comm_shared_memory
    << YAML::Key << "shm_stores" << YAML::Value
    << [this] {
         for (const auto& [name, value] : CommOptions::shm_store_names())
           if (value == comm_shm_stores) return name;
         return std::string("auto");
       }()
    << YAML::EndMap;
  e << YAML::Key << "checkpoint" << YAML::Value << YAML::BeginMap;
  if (!checkpoint_dir.empty()) e << YAML::Key << "dir" << YAML::Value << checkpoint_dir;
  e << YAML::Key << "every_steps" << YAML::Value << checkpoint_every
    << YAML::Key << "every_epoch" << YAML::Value << checkpoint_epochs
    << YAML::Key << "keep" << YAML::Value << checkpoint_keep
    << YAML::Key << "on_signal" << YAML::Value << checkpoint_on_signal << YAML::EndMap;
  e << YAML::Key << "strategy" << YAML::Value << YAML::BeginMap
    << YAML::Key << "local_replicas" << YAML::Value;
  if (local_replicas == 0) e << "auto"; else e << local_replicas;
  e << YAML::Key << "bucket_mb" << YAML::Value << bucket_mb
    << YAML::Key << "overlap" << YAML::Value << overlap
    << YAML::Key << "check_every" << YAML::Value << check_every
    << YAML::Key << "device" << YAML::Value << device_kind_name(device)
    << YAML::Key << "replicas_per_gpu" << YAML::Value << replicas_per_gpu
    << YAML::Key << "cuda_graphs" << YAML::Value << cuda_graphs
    << YAML::Key << "tf32" << YAML::Value << tf32 << YAML::EndMap;
  e << YAML::Key << "output" << YAML::Value << YAML::BeginMap
    << YAML::Key << "dir" << YAML::Value << output_dir
    << YAML::Key << "save_model" << YAML::Value << save_model
    << YAML::Key << "tensorboard" << YAML::Value << tensorboard
    << YAML::Key << "tensorboard_every_steps" << YAML::Value << tensorboard_every_steps << YAML::EndMap;
  e << YAML::EndMap;
  return e.c_str();
}

std::vector<std::vector<std::string>> Config::table() const {
  // Re-read the resolved YAML so the table shows exactly what will be used.
  std::vector<std::pair<std::string, YAML::Node>> values;
  flatten(YAML::Load(to_yaml()), "", "resolved config", values);
  std::vector<std::vector<std::string>> rows;
  for (const auto& [key, node] : values) {
    rows.push_back({key, node.IsScalar() ? node.Scalar() : node_text(node), find_key(key)->meaning});
  }
  return rows;
}

std::vector<std::vector<std::string>> config_key_help() {
  std::vector<std::vector<std::string>> rows;
  for (const auto& k : kKeys) rows.push_back({k.name, k.fallback, k.meaning});
  return rows;
}

}  // namespace lockstep
