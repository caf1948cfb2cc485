// Config keys are declared once, in kKeys below: one typed descriptor per key
// (the Config field it sets, its range or name table, its meaning). Parsing,
// validation of each value, --set, to_yaml, the start-up table and --help all
// walk that table; the defaults are the initializers in config.h. YAML files are
// flattened to dotted keys, so `train: {epochs: 3}` and `--set train.epochs=3`
// are the same key.
#include "src/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>

namespace lockstep {
namespace {

// Where a value came from, to start its errors: "cfg.yaml:12: key 'k': ...".
struct Ctx {
  std::string origin;  // the file, or "--set"
  std::string key;
  int line = 0;        // 1-based line in origin; 0 = none (--set, unknown)
  std::string at() const { return line > 0 ? origin + ":" + std::to_string(line) : origin; }
  [[noreturn]] void fail(const std::string& what) const {
    throw ConfigError(at() + ": key '" + key + "': " + what);
  }
  // The same origin for a part of this value (a layer's field), on its own line.
  Ctx part(const std::string& sub_key, const YAML::Node& n) const {
    return Ctx{origin, sub_key, line > 0 ? n.Mark().line + 1 : 0};
  }
};

std::string node_text(const YAML::Node& n) {
  YAML::Emitter out;
  out << YAML::Flow << n;
  return out.c_str();
}

// The scalar n as a T, or "expected <what>, got ...".
template <typename T>
T get_scalar(const YAML::Node& n, const Ctx& c, const std::string& what) {
  if (!n.IsScalar()) c.fail("expected " + what + ", got " + node_text(n));
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    c.fail("expected " + what + ", got '" + n.Scalar() + "'");
  }
}

int64_t get_int(const YAML::Node& n, const Ctx& c, int64_t lo, int64_t hi) {
  const int64_t v = get_scalar<int64_t>(n, c, "an integer");
  if (v < lo || v > hi) {
    c.fail("value " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
           (hi == std::numeric_limits<int64_t>::max() ? std::string("inf") : std::to_string(hi)) +
           "]");
  }
  return v;
}

double get_float(const YAML::Node& n, const Ctx& c, double lo, double hi, bool lo_open = false) {
  const double v = get_scalar<double>(n, c, "a number");
  if (!std::isfinite(v) || v < lo || v > hi || (lo_open && v == lo)) {
    std::ostringstream os;
    os << "value " << n.Scalar() << " is out of range " << (lo_open ? "(" : "[") << lo << ", "
       << hi << "]";
    c.fail(os.str());
  }
  return v;
}

bool get_bool(const YAML::Node& n, const Ctx& c) { return get_scalar<bool>(n, c, "true or false"); }

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

// An enum's YAML names, in the order errors list them.
template <typename E>
using Names = std::vector<std::pair<std::string, E>>;

template <typename E>
E get_enum(const YAML::Node& n, const Ctx& c, const Names<E>& names) {
  const std::string s = get_string(n, c);
  std::string choices;
  for (const auto& [name, value] : names) {
    if (name == s) return value;
    choices += (choices.empty() ? "" : ", ") + name;
  }
  c.fail("unknown value '" + s + "' (choose one of: " + choices + ")");
}

template <typename E>
const char* name_of(const Names<E>& names, E value) {
  for (const auto& [name, v] : names) {
    if (v == value) return name.c_str();
  }
  return "?";
}

const Names<Activation> kActivations = {
    {"relu", Activation::kRelu},       {"tanh", Activation::kTanh},
    {"sigmoid", Activation::kSigmoid}, {"gelu", Activation::kGelu},
    {"linear", Activation::kLinear}};
const Names<LossKind> kLosses = {{"softmax_cross_entropy", LossKind::kSoftmaxCrossEntropy},
                                 {"mse", LossKind::kMeanSquaredError}};
const Names<OptimizerKind> kOptimizers = {
    {"sgd", OptimizerKind::kSgd}, {"adam", OptimizerKind::kAdam}, {"adamw", OptimizerKind::kAdamW}};
const Names<ScheduleKind> kSchedules = {
    {"constant", ScheduleKind::kConstant}, {"step", ScheduleKind::kStep}, {"cosine", ScheduleKind::kCosine}};
const Names<NonFinitePolicy> kNonFinite = {{"stop", NonFinitePolicy::kStop}, {"skip", NonFinitePolicy::kSkip}};
const Names<GatherMode> kGatherModes = {
    {"auto", GatherMode::kAuto}, {"thread", GatherMode::kThread}, {"replicas", GatherMode::kReplicas}};
const Names<DeviceKind> kDevices = {{"cpu", DeviceKind::kCpu}, {"cuda", DeviceKind::kCuda}, {"auto", DeviceKind::kAuto}};
const Names<Config::ShmStores> kShmStores = [] {
  const auto names = CommOptions::shm_store_names();
  return Names<Config::ShmStores>(names.begin(), names.end());
}();

template <typename T>
void put(YAML::Emitter& e, const std::string& leaf, const T& value) {
  e << YAML::Key << leaf << YAML::Value << value;
}

const Names<LayerType> kLayerTypes = {
    {"dense", LayerType::kDense}, {"conv2d", LayerType::kConv2d},
    {"max_pool2d", LayerType::kMaxPool2d}, {"avg_pool2d", LayerType::kAvgPool2d},
    {"global_avg_pool2d", LayerType::kGlobalAvgPool2d}, {"flatten", LayerType::kFlatten},
    {"batch_norm", LayerType::kBatchNorm}, {"dropout", LayerType::kDropout},
    {"residual", LayerType::kResidual}};
const Names<Padding> kPaddings = {{"same", Padding::kSame}, {"valid", Padding::kValid}};

// One field of a model.layers entry: the types that take it, how it is read and
// written back. The one table for parsing, checking, to_yaml and --help.
struct LayerField {
  const char* name;
  std::vector<LayerType> types;
  bool required;
  std::function<void(LayerConfig&, const YAML::Node&, const Ctx&)> read;
  std::function<void(const LayerConfig&, YAML::Emitter&)> write;
};

// A field written back as stored; `get` reads and checks it.
template <typename T, typename Get>
LayerField field(const char* name, std::vector<LayerType> types, T LayerConfig::*f, Get get, bool required = false) {
  return {name, std::move(types), required,
          [=](LayerConfig& l, const YAML::Node& n, const Ctx& c) { l.*f = static_cast<T>(get(n, c)); },
          [=](const LayerConfig& l, YAML::Emitter& e) { put(e, name, l.*f); }};
}
auto ints(int64_t lo, int64_t hi) {
  return [=](const YAML::Node& n, const Ctx& c) { return get_int(n, c, lo, hi); };
}
auto reals(double lo, double hi, bool lo_open = false) {
  return [=](const YAML::Node& n, const Ctx& c) { return get_float(n, c, lo, hi, lo_open); };
}

using LT = LayerType;
using LC = LayerConfig;
const std::vector<LayerField> kLayerFields = {
  field("units", {LT::kDense}, &LC::units, ints(1, 1 << 20), true),
  {"filters", {LT::kConv2d, LT::kResidual}, false,
   [](LayerConfig& l, const YAML::Node& n, const Ctx& c) { l.filters = get_int(n, c, 1, 1 << 16); },
   [](const LayerConfig& l, YAML::Emitter& e) { if (l.filters > 0) put(e, "filters", l.filters); }},
  field("kernel_size", {LT::kConv2d}, &LC::kernel_size, ints(1, 64)),
  field("strides", {LT::kConv2d, LT::kResidual}, &LC::strides, ints(1, 64)),
  {"padding", {LT::kConv2d}, false,
   [](LayerConfig& l, const YAML::Node& n, const Ctx& c) { l.padding = get_enum(n, c, kPaddings); },
   [](const LayerConfig& l, YAML::Emitter& e) { put(e, "padding", name_of(kPaddings, l.padding)); }},
  field("pool_size", {LT::kMaxPool2d, LT::kAvgPool2d}, &LC::pool_size, ints(1, 64)),
  {"strides", {LT::kMaxPool2d, LT::kAvgPool2d}, false,
   [](LayerConfig& l, const YAML::Node& n, const Ctx& c) { l.pool_strides = get_int(n, c, 1, 64); },
   [](const LayerConfig& l, YAML::Emitter& e) { put(e, "strides", l.pool_strides > 0 ? l.pool_strides : l.pool_size); }},
  {"activation", {LT::kDense, LT::kConv2d, LT::kResidual}, false,
   [](LayerConfig& l, const YAML::Node& n, const Ctx& c) { l.activation = get_enum(n, c, kActivations); },
   [](const LayerConfig& l, YAML::Emitter& e) { put(e, "activation", name_of(kActivations, l.activation)); }},
  field("dropout", {LT::kDense}, &LC::dropout, reals(0.0, 0.95)),
  field("rate", {LT::kDropout}, &LC::dropout, reals(0.0, 0.95), true),
  field("sync", {LT::kBatchNorm, LT::kResidual}, &LC::sync, get_bool),
  field("momentum", {LT::kBatchNorm, LT::kResidual}, &LC::momentum, reals(0.0, 0.999999)),
  field("epsilon", {LT::kBatchNorm, LT::kResidual}, &LC::epsilon, reals(0.0, 1.0, true)),
};

bool takes(const LayerField& f, LayerType t) {
  return std::find(f.types.begin(), f.types.end(), t) != f.types.end();
}

// "units, activation, dropout" for a type.
std::string fields_of(LayerType t) {
  std::string out;
  for (const auto& f : kLayerFields) {
    if (takes(f, t)) out += (out.empty() ? "" : ", ") + std::string(f.name);
  }
  return out.empty() ? "no other fields" : out;
}

LayerConfig get_layer(const YAML::Node& l, const Ctx& lc) {
  if (!l.IsMap()) lc.fail("expected a map like {type: conv2d, filters: 32} or {units: N, activation: A}");
  LayerConfig layer;
  if (l["type"]) layer.type = get_enum(l["type"], lc.part(lc.key + ".type", l["type"]), kLayerTypes);
  const char* type = name_of(kLayerTypes, layer.type);
  std::vector<std::string> seen;
  for (const auto& kv : l) {
    const std::string k = kv.first.Scalar();
    const Ctx sc = lc.part(lc.key + "." + k, kv.first);
    if (std::find(seen.begin(), seen.end(), k) != seen.end()) sc.fail("given twice in one layer");
    seen.push_back(k);
    if (k == "type") continue;
    const auto f = std::find_if(kLayerFields.begin(), kLayerFields.end(), [&](const LayerField& x) {
      return x.name == k && takes(x, layer.type);
    });
    if (f == kLayerFields.end()) {
      sc.fail(std::string("unknown field for a ") + type + " layer (it takes " + fields_of(layer.type) + ")");
    }
    f->read(layer, kv.second, sc);
  }
  for (const auto& f : kLayerFields) {
    if (f.required && takes(f, layer.type) &&
        std::find(seen.begin(), seen.end(), f.name) == seen.end()) {
      lc.fail(std::string("a ") + type + " layer needs '" + f.name + "'");
    }
  }
  if (layer.type == LayerType::kConv2d && layer.filters == 0) lc.fail("a conv2d layer needs 'filters'");
  return layer;
}

std::vector<LayerConfig> get_layers(const YAML::Node& n, const Ctx& c) {
  if (!n.IsSequence()) {
    c.fail("expected a list of layers like [{units: 128, activation: relu}], got " +
           node_text(n));
  }
  std::vector<LayerConfig> layers;
  for (size_t i = 0; i < n.size(); ++i) {
    layers.push_back(get_layer(n[i], c.part(c.key + "[" + std::to_string(i) + "]", n[i])));
  }
  return layers;
}

void put_layer(YAML::Emitter& e, const LayerConfig& l) {
  e << YAML::Flow << YAML::BeginMap;
  if (l.type != LayerType::kDense) put(e, "type", name_of(kLayerTypes, l.type));
  for (const auto& f : kLayerFields) {
    if (takes(f, l.type)) f.write(l, e);
  }
  e << YAML::EndMap;
}

}  // namespace

std::string describe_layer(const LayerConfig& l) {
  YAML::Emitter e;
  e.SetFloatPrecision(7);  // as to_yaml
  put_layer(e, l);
  return e.c_str();
}

namespace {

// One config key: the Config field it sets, read from YAML with its checks and
// written back by to_yaml; made by the typed builders below.
struct KeyDef {
  const char* name;
  const char* meaning;
  std::function<void(Config&, const YAML::Node&, const Ctx&)> read;
  // Writes "leaf: value" into the open section, or nothing for an unset value.
  std::function<void(const Config&, YAML::Emitter&, const std::string& leaf)> write;
  std::vector<std::string> choices = {};  // the names a choice key (or a layer's activation) takes
  const char* unset = nullptr;       // text keys: what leaving it out means, for --help
};

struct IntRange {
  int64_t lo, hi;
};
struct RealRange {
  double lo, hi;
  bool lo_open = false;  // lo itself is not allowed
};
constexpr bool kAboveLo = true;  // RealRange{0, 1, kAboveLo}: (0, 1]
constexpr int64_t kBig = int64_t(1) << 40;

// An integer in [lo, hi]; `zero_word` (e.g. "auto") is stored as 0 and written back as the word.
template <typename T>
KeyDef integer(const char* name, T Config::*f, IntRange r, const char* meaning, const char* zero_word = nullptr) {
  return {name, meaning,
          [=](Config& c, const YAML::Node& n, const Ctx& x) {
            const bool word = zero_word && n.IsScalar() && n.Scalar() == zero_word;
            c.*f = word ? T(0) : static_cast<T>(get_int(n, x, r.lo, r.hi));
          },
          [=](const Config& c, YAML::Emitter& e, const std::string& leaf) {
            if (zero_word && c.*f == 0) return put(e, leaf, zero_word);
            put(e, leaf, c.*f);
          }};
}

template <typename T>
KeyDef real(const char* name, T Config::*f, RealRange r, const char* meaning) {
  return {name, meaning,
          [=](Config& c, const YAML::Node& n, const Ctx& x) {
            c.*f = static_cast<T>(get_float(n, x, r.lo, r.hi, r.lo_open));
          },
          [=](const Config& c, YAML::Emitter& e, const std::string& leaf) { put(e, leaf, c.*f); }};
}

KeyDef flag(const char* name, bool Config::*f, const char* meaning) {
  return {name, meaning, [=](Config& c, const YAML::Node& n, const Ctx& x) { c.*f = get_bool(n, x); },
          [=](const Config& c, YAML::Emitter& e, const std::string& leaf) { put(e, leaf, c.*f); }};
}

// A name or path; with `unset` ("(required)", "OUTPUT_DIR/checkpoints") an empty
// field means the key was left out, and to_yaml leaves it out too.
KeyDef text(const char* name, std::string Config::*f, const char* meaning, const char* unset = nullptr) {
  return {name, meaning, [=](Config& c, const YAML::Node& n, const Ctx& x) { c.*f = get_string(n, x); },
          [=](const Config& c, YAML::Emitter& e, const std::string& leaf) {
            if (!(unset && (c.*f).empty())) put(e, leaf, c.*f);
          },
          {}, unset};
}

template <typename E>
KeyDef choice(const char* name, E Config::*f, const Names<E>& names, const char* meaning) {
  std::vector<std::string> choices;
  for (const auto& entry : names) choices.push_back(entry.first);
  return {name, meaning, [=](Config& c, const YAML::Node& n, const Ctx& x) { c.*f = get_enum(n, x, names); },
          [=](const Config& c, YAML::Emitter& e, const std::string& leaf) { put(e, leaf, name_of(names, c.*f)); },
          choices};
}

KeyDef layer_list(const char* name, const char* meaning) {
  KeyDef k{name, meaning, [](Config& c, const YAML::Node& n, const Ctx& x) { c.layers = get_layers(n, x); },
           [](const Config& c, YAML::Emitter& e, const std::string& leaf) {
             e << YAML::Key << leaf << YAML::Value << YAML::BeginSeq;
             for (const auto& l : c.layers) put_layer(e, l);
             e << YAML::EndSeq;
           }};
  for (const auto& entry : kActivations) k.choices.push_back(entry.first);
  return k;
}

// The order here is the order of to_yaml, the start-up table and --help.
// clang-format off
const std::vector<KeyDef> kKeys = {
  text("data.path", &Config::data_path, "HDF5 dataset file (lockstep layout, see data/README.md)", "(required)"),
  text("data.train_split", &Config::data_train_split, "group of the training examples"),
  text("data.eval_split", &Config::data_eval_split, "group evaluated after every epoch and at the end (val_*, test_*)"),
  real("data.scale", &Config::data_scale, {0, 1e6, kAboveLo}, "every input feature is multiplied by this (1/255 for pixels)"),
  flag("data.shuffle", &Config::data_shuffle, "reshuffle the training set every epoch (seeded by train.seed)"),
  integer("data.prefetch", &Config::data_prefetch, {0, 64}, "global batches prepared ahead on a background thread (0 = off)"),
  choice("data.gather", &Config::data_gather, kGatherModes, "who reads a batch's rows: thread (one prefetch thread), replicas (each replica its own, in parallel) or auto (replicas for a cached split on the CPU)"),
  layer_list("model.layers", "hidden layers in order; the output Dense layer is added from the dataset. Each is {type: T, ...}: dense (the default type; units, activation relu|tanh|sigmoid|gelu|linear (default relu), dropout P), conv2d (filters, kernel_size 3, strides 1, padding same|valid, activation relu), max_pool2d / avg_pool2d (pool_size 2, strides = pool_size), global_avg_pool2d, flatten, batch_norm (sync true: statistics over all replicas, momentum 0.99, epsilon 0.001), dropout (rate), residual (filters (default: input channels), strides 1; two 3x3 conv2d + batch_norm, identity or 1x1 projection shortcut; sync, momentum, epsilon). Inputs (N, H, W) are one channel, (N, C, H, W) as stored"),
  choice("model.loss", &Config::loss, kLosses, "softmax_cross_entropy (class labels) or mse (float targets)"),
  choice("optimizer.name", &Config::optimizer, kOptimizers, "sgd, adam or adamw"),
  real("optimizer.learning_rate", &Config::learning_rate, {0, 1e3, kAboveLo}, "base learning rate"),
  real("optimizer.beta1", &Config::beta1, {0, 0.999999}, "Adam first-moment decay"),
  real("optimizer.beta2", &Config::beta2, {0, 0.999999999}, "Adam second-moment decay"),
  real("optimizer.epsilon", &Config::epsilon, {0, 1, kAboveLo}, "Adam epsilon (Keras default)"),
  real("optimizer.momentum", &Config::momentum, {0, 0.999999}, "SGD momentum"),
  flag("optimizer.nesterov", &Config::nesterov, "SGD Nesterov momentum"),
  real("optimizer.weight_decay", &Config::weight_decay, {0, 1}, "L2 (sgd, adam) or decoupled (adamw) weight decay"),
  choice("optimizer.schedule", &Config::schedule, kSchedules, "learning-rate schedule: constant, step or cosine"),
  integer("optimizer.warmup_steps", &Config::warmup_steps, {0, kBig}, "linear warm-up: step s < N runs at learning_rate x (s+1)/N"),
  integer("optimizer.decay_steps", &Config::decay_steps, {0, kBig}, "step: decay every N steps; cosine: decay over N steps (0 = the whole run)"),
  real("optimizer.decay_rate", &Config::decay_rate, {0, 1, kAboveLo}, "step decay: multiply the rate by this every decay_steps"),
  real("optimizer.min_lr_ratio", &Config::min_lr_ratio, {0, 1}, "cosine decay floor, as a fraction of the learning rate"),
  flag("optimizer.scale_lr", &Config::scale_lr, "multiply the learning rate by num_replicas_in_sync"),
  integer("train.epochs", &Config::epochs, {1, 1000000}, "passes over the training set"),
  integer("train.batch_size", &Config::batch_size, {1, 1 << 24}, "GLOBAL batch, split evenly across all replicas"),
  integer("train.seed", &Config::seed, {0, std::numeric_limits<int64_t>::max()}, "seed of weights, shuffling and dropout"),
  flag("train.drop_remainder", &Config::drop_remainder, "skip the last, short batch of every epoch"),
  integer("train.eval_batch_size", &Config::eval_batch_size, {1, 1 << 24}, "global batch for evaluation"),
  flag("train.progress", &Config::progress, "print a Keras-style progress line during each epoch"),
  choice("train.on_nonfinite", &Config::nonfinite, kNonFinite, "a NaN/Inf loss or gradient (on the CPU also a gradient element beyond 2^63): stop naming the step, or skip the step's update"),
  flag("train.flush_denormals", &Config::flush_denormals, "flush denormal floats to zero on every compute thread (false: IEEE gradual underflow, 2-3x slower steps once values get tiny)"),
  flag("train.deterministic", &Config::deterministic, "bitwise the same weights and optimizer slots for every replica count that divides the micro-batches of a global batch (fixed micro-batches, exact integer gradient sum)"),
  integer("train.micro_batch_size", &Config::micro_batch_size, {1, 1 << 24}, "rows per micro-batch, a divisor of train.batch_size; each micro-batch's gradient is computed on its own, and fewer rows than a replica's share is gradient accumulation; auto: the replica's share, or with deterministic the global batch cut into the most of 8, 4 or 2 micro-batches of at least 16 rows (else 1)", "auto"),
  real("comm.timeout_s", &Config::comm_timeout_s, {0, 1e6}, "seconds a collective may wait for a peer before the job ends naming it (0 = adaptive: 10 s or 20x the slowest recent step)"),
  real("comm.long_phase_s", &Config::comm_long_phase_s, {0, 1e6, kAboveLo}, "seconds peers may wait for start-up, the first evaluation or a checkpoint write (later evaluations: 20x the slowest so far, at least the collective floor)"),
  flag("comm.verify", &Config::comm_verify, "debug: check that every rank issues the same collectives, naming the first difference"),
  flag("comm.shared_memory", &Config::comm_shared_memory, "processes on one node all-reduce through shared memory (false: MPI messages)"),
  choice("comm.shm_stores", &Config::comm_shm_stores, kShmStores, "shared memory: how a rank copies a buffer into the segment (the gradients are shared, never copied; BN statistics and other buffers are): plain, streaming (non-temporal) or auto (whichever its timing finds cheaper lately)"),
  text("checkpoint.dir", &Config::checkpoint_dir, "folder of the training checkpoints", "OUTPUT_DIR/checkpoints"),
  integer("checkpoint.every_steps", &Config::checkpoint_every, {0, kBig}, "write a checkpoint every N steps (0 = off)"),
  flag("checkpoint.every_epoch", &Config::checkpoint_epochs, "write a checkpoint at the end of every epoch"),
  integer("checkpoint.keep", &Config::checkpoint_keep, {1, 1000000}, "how many of the newest checkpoints to keep"),
  flag("checkpoint.on_signal", &Config::checkpoint_on_signal, "on SIGINT/SIGTERM finish the step, write a checkpoint, exit"),
  integer("strategy.local_replicas", &Config::local_replicas, {1, 4096}, "replicas in this process: a number, or auto (one per CPU, the most that divide the global batch; with device cuda this process's share of the node's GPUs x replicas_per_gpu)", "auto"),
  real("strategy.bucket_mb", &Config::bucket_mb, {0, 1024, kAboveLo}, "gradient fusion bucket size in MiB"),
  flag("strategy.share_weights", &Config::share_weights, "CPU replicas of a process (and, with comm.shared_memory, all processes of a job that runs on one node) keep one copy of the weights and optimizer slots and each updates a shard; false: each replica keeps its own copy and runs the whole update (more memory and update work, but no weight lines pass between cores: faster where the cores do not share a last-level cache); replicas that reach each other's memory (the replica threads of one process, or one-replica processes on one node) then sum the gradient inside the update, each its slice, instead of all-reducing it (strategy.overlap keeps the all-reduce)"),
  flag("strategy.overlap", &Config::overlap, "reduce gradient buckets on a helper thread while backward continues (wants a spare core per replica)"),
  integer("strategy.check_every", &Config::check_every, {0, kBig}, "steps between cross-replica weight checksums (0 = off; replicas that share one arena cannot differ: it checks across nodes, GPUs and replicas with copies of their own)"),
  choice("strategy.device", &Config::device, kDevices, "where replicas compute: cpu, cuda, or auto (cuda when built with CUDA and a GPU is visible)"),
  integer("strategy.replicas_per_gpu", &Config::replicas_per_gpu, {1, 64}, "cuda: replicas sharing one GPU (logical devices; > 1 mainly for tests)"),
  flag("strategy.cuda_graphs", &Config::cuda_graphs, "cuda: capture each full-batch training step once and replay it"),
  flag("strategy.tf32", &Config::tf32, "cuda: TF32 tensor-core GEMMs (faster, about 1e-3 relative error)"),
  text("output.dir", &Config::output_dir, "folder for the final model (model.h5) and, unless checkpoint.dir says otherwise, checkpoints/"),
  flag("output.save_model", &Config::save_model, "write OUTPUT_DIR/model.h5 at the end of training"),
  flag("output.tensorboard", &Config::tensorboard, "write TensorBoard event files to OUTPUT_DIR/tensorboard/{train,validation} (epoch_loss, epoch_accuracy, learning_rate, samples_per_sec)"),
  integer("output.tensorboard_every_steps", &Config::tensorboard_every_steps, {0, kBig}, "with output.tensorboard: the global batch's loss (batch_loss) every N steps (0 = epoch scalars only)"),
};
// clang-format on

const KeyDef* find_key(const std::string& name) {
  const auto k = std::find_if(kKeys.begin(), kKeys.end(), [&](const KeyDef& d) { return name == d.name; });
  return k == kKeys.end() ? nullptr : &*k;
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

// The part after the last dot: "shuffle" of "train.shuffle".
std::string leaf(const std::string& key) { return key.substr(key.rfind('.') + 1); }

// The first key under `key.` when key is a section (data, train, ...), else null.
const KeyDef* first_in_section(const std::string& key) {
  const auto k = std::find_if(kKeys.begin(), kKeys.end(),
                              [&](const KeyDef& d) { return std::string(d.name).rfind(key + ".", 0) == 0; });
  return k == kKeys.end() ? nullptr : &*k;
}

[[noreturn]] void unknown_key(const std::string& origin, const std::string& key) {
  std::string best;
  size_t best_d = 4;
  for (const auto& k : kKeys) {
    const size_t d = edit_distance(key, k.name);
    if (d < best_d) best_d = d, best = k.name;
  }
  if (best.empty()) {  // else the same name, or one a letter off, in another section
    size_t leaf_d = leaf(key).size() >= 4 ? 2 : 1;
    for (const auto& k : kKeys) {
      const size_t d = edit_distance(leaf(key), leaf(k.name));
      if (d < leaf_d) leaf_d = d, best = k.name;
    }
  }
  throw ConfigError(origin + ": unknown key '" + key + "'" +
                    (best.empty() ? std::string(" (see 'lockstep train --help' for the keys)")
                                  : " (did you mean '" + best + "'?)"));
}

[[noreturn]] void duplicate_key(const Ctx& at, int first_line) {
  const std::string lines = first_line == at.line ? "on line " + std::to_string(at.line)
                                                  : "(lines " + std::to_string(first_line) + " and " +
                                                        std::to_string(at.line) + ")";
  throw ConfigError(at.at() + ": key '" + at.key + "' is given twice " + lines + "; keep one of them");
}

// One value of a config file: its dotted key and the line the key is on.
struct Entry {
  std::string key;
  YAML::Node value;
  int line;
};

// Walk a YAML map into dotted leaf keys. Sequences are leaves (model.layers).
void flatten(const YAML::Node& node, const std::string& prefix, const std::string& origin,
             std::vector<Entry>& out) {
  std::map<std::string, int> seen;  // this map's keys and their lines
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) throw ConfigError(origin + ": keys must be plain names");
    const std::string key = prefix.empty() ? kv.first.Scalar() : prefix + "." + kv.first.Scalar();
    const Ctx at{origin, key, kv.first.Mark().line + 1};
    if (const auto [first, fresh] = seen.emplace(key, at.line); !fresh) duplicate_key(at, first->second);
    if (kv.second.IsMap() && !find_key(key)) {
      flatten(kv.second, key, origin, out);
    } else {
      const KeyDef* first = find_key(key) ? nullptr : first_in_section(key);
      if (first) {
        throw ConfigError(at.at() + ": '" + key + "' is a section: give its keys as a mapping (e.g. " + key +
                          ": {" + leaf(first->name) + ": ...})");
      }
      if (!find_key(key)) unknown_key(at.at(), key);
      if (kv.second.IsNull()) throw ConfigError(at.at() + ": key '" + key + "' has no value");
      out.push_back({key, kv.second, at.line});
    }
  }
}

// (key, value as text) for every key to_yaml writes, in table order.
std::vector<std::pair<std::string, std::string>> resolved_values(const Config& c) {
  std::vector<Entry> values;
  flatten(YAML::Load(c.to_yaml()), "", "resolved config", values);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& v : values) out.emplace_back(v.key, v.value.IsScalar() ? v.value.Scalar() : node_text(v.value));
  return out;
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
  if (std::find(overridden.begin(), overridden.end(), key) != overridden.end()) return "--set";
  const std::string file = source.empty() ? std::string("config") : source;
  const auto line = lines.find(key);
  return line == lines.end() ? file : file + ":" + std::to_string(line->second);
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
  std::vector<Entry> values;
  if (root.IsMap()) {
    flatten(root, "", origin, values);
  } else if (!root.IsNull()) {
    throw ConfigError(origin + ": the top level must be a mapping of sections (data, model, ...)");
  }
  Config c;
  c.source = origin;
  for (const auto& v : values) {
    find_key(v.key)->read(c, v.value, Ctx{origin, v.key, v.line});
    c.lines[v.key] = v.line;
  }
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
    def->read(c, node, Ctx{"--set", o.key});
    c.overridden.push_back(o.key);
  }
  validate(c);
  return c;
}

Config load_config(const std::string& path, const std::vector<Override>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {  // an ifstream opens a folder and reads nothing
    throw ConfigError(path + ": is a folder; name the config file (e.g. configs/fashion_mnist_mlp.yaml)");
  }
  std::ifstream in(path);
  if (!in) {
    throw ConfigError(path + ": cannot open the config file (does it exist? try configs/fashion_mnist_mlp.yaml)");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path, overrides);
}

const char* activation_name(Activation a) { return name_of(kActivations, a); }
const char* layer_type_name(LayerType t) { return name_of(kLayerTypes, t); }
const char* loss_name(LossKind k) { return name_of(kLosses, k); }
const char* optimizer_name(OptimizerKind k) { return name_of(kOptimizers, k); }
const char* schedule_name(ScheduleKind k) { return name_of(kSchedules, k); }

std::string Config::to_yaml() const {
  YAML::Emitter e;
  e.SetFloatPrecision(7);  // fp32 values print as written (0.001, not 0.00100000005)
  e.SetDoublePrecision(15);
  e << YAML::BeginMap;
  std::string section;
  for (const auto& k : kKeys) {
    const std::string name = k.name;
    const size_t dot = name.find('.');
    if (name.substr(0, dot) != section) {  // the keys of a section are consecutive
      if (!section.empty()) e << YAML::EndMap;
      section = name.substr(0, dot);
      e << YAML::Key << section << YAML::Value << YAML::BeginMap;
    }
    k.write(*this, e, name.substr(dot + 1));
  }
  e << YAML::EndMap << YAML::EndMap;
  return e.c_str();
}

std::vector<std::vector<std::string>> Config::table() const {
  // Re-read the resolved YAML so the table shows exactly what will be used.
  std::vector<std::vector<std::string>> rows;
  for (const auto& [key, value] : resolved_values(*this)) rows.push_back({key, value, find_key(key)->meaning});
  return rows;
}

std::vector<ConfigKeyHelp> config_key_help() {
  std::vector<ConfigKeyHelp> out;
  const auto defaults = resolved_values(Config{});
  for (const auto& k : kKeys) {
    ConfigKeyHelp h{k.name, k.unset ? k.unset : "", k.meaning, k.choices};
    for (const auto& [key, value] : defaults) {
      if (key == k.name) h.default_text = value;
    }
    out.push_back(std::move(h));
  }
  return out;
}

}  // namespace lockstep
