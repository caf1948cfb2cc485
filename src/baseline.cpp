// Baseline record and comparison. The record holds plain JSON numbers (doubles
// round-trip exactly through nlohmann's printer), so "exact" means bitwise for the
// metrics and the fixed-example predictions, and equal hashes for the weights.
#include "src/baseline.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>
#include <vector>

#include "data/hdf5_util.h"
#include "data/input.h"
#include "src/checkpoint.h"
#include "src/config.h"
#include "src/environment.h"
#include "src/model.h"
#include "src/network.h"
#include "src/saved_model.h"
#include "src/run_folder.h"

namespace lockstep {
namespace fs = std::filesystem;
namespace {

constexpr int64_t kFixedExamples = 16;  // the first rows of the eval split

std::string read_text(const fs::path& path, const std::string& hint) {
  std::ifstream in(path);
  if (!in) throw DataError(path.string() + ": missing (" + hint + ")");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json read_json(const fs::path& path, const std::string& hint) {
  const std::string text = read_text(path, hint);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw DataError(path.string() + ": not valid JSON (parse error at byte " + std::to_string(e.byte) + ")");
  }
}

const char* const kRunHint = "a run folder written by 'lockstep train' holds manifest.json, config.yaml and metrics.jsonl";

// The last record of each epoch and the last final record (a resumed run appends).
void read_metrics(const fs::path& path, nlohmann::json& epochs, nlohmann::json& final_rec) {
  std::istringstream in(read_text(path, kRunHint));
  std::map<int64_t, nlohmann::json> by_epoch;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    nlohmann::json r;
    try {
      r = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      throw DataError(path.string() + ": line " + std::to_string(n) + " is not a JSON record");
    }
    if (r.value("final", false)) {
      final_rec = nlohmann::json::object();
      for (const char* k : {"test_loss", "test_accuracy", "examples"}) {
        if (r.contains(k)) final_rec[k] = r[k];
      }
    } else if (r.contains("epoch")) {
      nlohmann::json e;
      for (const char* k : {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "steps", "skipped_steps"}) {
        if (r.contains(k)) e[k] = r[k];
      }
      by_epoch[r["epoch"].get<int64_t>()] = e;
    }
  }
  if (final_rec.is_null()) {
    throw DataError(path.string() + ": no final record: the run did not finish (train it to the end, "
                    "or resume it with --resume)");
  }
  epochs = nlohmann::json::array();
  for (auto& [epoch, e] : by_epoch) epochs.push_back(e);
}

// model.h5, else the newest checkpoint (output.save_model: false).
std::string model_file(const fs::path& dir, const Config& c) {
  if (fs::exists(dir / "model.h5")) return (dir / "model.h5").string();
  const fs::path ckpts = c.checkpoint_dir.empty() ? dir / "checkpoints" : fs::path(c.checkpoint_dir);
  const auto all = list_checkpoints(ckpts.string());
  if (all.empty()) {
    throw DataError((dir / "model.h5").string() + ": missing, and no checkpoint in " + ckpts.string() +
                    " (the run saved no weights)");
  }
  return all.front();
}

// A relative data.path is relative to the folder the run ran in.
std::string data_file(const Config& c, const nlohmann::json& manifest) {
  const fs::path p(c.data_path);
  if (p.is_absolute() || fs::exists(p)) return p.string();
  const fs::path there = fs::path(manifest.value("working_directory", ".")) / p;
  return fs::exists(there) ? there.string() : p.string();
}

// Weights hash and norm, optimizer hash, and the model's outputs on the first
// examples of the eval split.
void model_record(const Config& c, const std::string& data, const std::string& file, nlohmann::json& rec) {
  auto source = open_dataset(data, c.data_eval_split, c.data_scale);
  const DatasetInfo& info = source->info();
  const bool cls = c.loss == LossKind::kSoftmaxCrossEntropy;
  const int64_t k = cls ? info.num_classes : info.target_dim;
  Model model(c.layers, info.feature_shape, k, c.loss);
  const SavedState s = load_state(file, &model);
  rec["replicas"] = s.replicas;  // in sync (processes x local replicas); 0 in older files
  std::vector<float> slots;
  for (const auto& [name, v] : s.slots) slots.insert(slots.end(), v.begin(), v.end());
  const double sq = std::inner_product(s.params.begin(), s.params.end(), s.params.begin(), 0.0);
  rec["weights"] = {{"file", fs::path(file).filename().string()}, {"count", s.params.size()},
                    {"hash", hash_bytes(s.params.data(), s.params.size() * sizeof(float))},
                    {"optimizer_hash", hash_bytes(slots.data(), slots.size() * sizeof(float))},
                    {"norm", std::sqrt(sq)}};
  const int64_t m = std::min(kFixedExamples, info.size);
  std::vector<int64_t> rows(static_cast<size_t>(m));
  std::iota(rows.begin(), rows.end(), 0);
  std::vector<float> x(size_t(m * info.feature_dim));
  std::vector<int32_t> labels(static_cast<size_t>(m));
  std::vector<float> targets(size_t(m * std::max<int64_t>(info.target_dim, 1)));
  source->read(rows.data(), m, x.data(), info.num_classes > 0 ? labels.data() : nullptr,
               info.target_dim > 0 ? targets.data() : nullptr);
  CpuNetwork replica(model, std::max<int64_t>(m, 1));
  const float* y = replica.predict(s.params.data(), x.data(), m);
  std::vector<float> out(y, y + m * k);
  if (cls) softmax_rows(out.data(), m, k);
  nlohmann::json values = nlohmann::json::array();
  for (int64_t r = 0; r < m; ++r) values.push_back(std::vector<float>(out.begin() + r * k, out.begin() + (r + 1) * k));
  rec["predictions"] = {{"split", c.data_eval_split}, {"rows", m},
                        {"digest", hash_bytes(out.data(), out.size() * sizeof(float))}, {"values", values}};
}

}  // namespace

nlohmann::json make_baseline(const std::string& run_dir) {
  const fs::path dir(run_dir);
  if (!fs::is_directory(dir)) throw DataError(run_dir + ": not a folder (" + kRunHint + ")");
  const nlohmann::json manifest = read_json(dir / "manifest.json", kRunHint);
  const fs::path cfg_path = dir / "config.yaml";
  const Config c = parse_config(read_text(cfg_path, kRunHint), cfg_path.string());
  nlohmann::json rec = {{"format", "lockstep-baseline"}, {"version", 1},
                        {"run_id", manifest.value("run_id", "")},
                        {"deterministic", manifest.value("deterministic", false)},
                        {"config_hash", config_hash(c)},
                        {"environment", manifest.value("environment", nlohmann::json::object())}};
  nlohmann::json config = nlohmann::json::object();
  for (const auto& [key, value] : result_config_rows(c)) config[key] = value;
  rec["config"] = config;
  nlohmann::json epochs, final_rec;
  read_metrics(dir / "metrics.jsonl", epochs, final_rec);
  rec["epochs"] = epochs;
  rec["final"] = final_rec;
  model_record(c, data_file(c, manifest), model_file(dir, c), rec);
  return rec;
}

void write_baseline(const std::string& run_dir, const std::string& out_path, bool overwrite) {
  AtomicOutput target(out_path, overwrite, "baseline.json");  // refuses a folder, a missing folder, an existing file
  const nlohmann::json rec = make_baseline(run_dir);
  target.write(rec.dump(1) + "\n");
  target.commit();
  std::printf("baseline of %s (run %s, %zu epoch(s), weights %s) -> %s\n", run_dir.c_str(),
              rec["run_id"].get<std::string>().c_str(), rec["epochs"].size(),
              rec["weights"]["hash"].get<std::string>().c_str(), out_path.c_str());
}

// ---- verify ----
namespace {

struct Row {
  std::string what, baseline, run, diff, allowed;
  bool ok = true;
};

std::string num(const nlohmann::json& v) {
  if (v.is_null()) return "-";
  if (v.is_number_float()) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.9g", v.get<double>());
    return buf;
  }
  return v.is_string() ? v.get<std::string>() : v.dump();
}

class Comparison {
 public:
  Comparison(bool exact, const BaselineTolerance& tol) : exact_(exact), tol_(tol) {}
  // Evaluation metrics (val_*, test_*) of an exact comparison within this relative
  // amount instead of bitwise (deterministic runs with another replica count).
  void set_evaluation_tolerance(double rel) { eval_rel_ = rel; }

  // A metric: exact, or within the tolerance of its kind.
  void metric(const std::string& what, const std::string& key, const nlohmann::json& b, const nlohmann::json& r) {
    const nlohmann::json bv = b.contains(key) ? b[key] : nlohmann::json(), rv = r.contains(key) ? r[key] : nlohmann::json();
    if (bv.is_null() && rv.is_null()) return;
    Row row{what + " " + key, num(bv), num(rv), "", ""};
    if (!bv.is_number() || !rv.is_number()) {
      row.ok = false;
      row.diff = "missing";
    } else if (eval_rel_ > 0 && (key.rfind("val_", 0) == 0 || key.rfind("test_", 0) == 0) && exact_) {
      const double d = rv.get<double>() - bv.get<double>();
      const double allowed = eval_rel_ * std::max(1.0, std::fabs(bv.get<double>()));
      row.ok = std::fabs(d) <= allowed;
      row.diff = d == 0 ? "0" : num(d);
      row.allowed = "±" + num(allowed) + " (eval)";
    } else if (bv.is_number_integer() || exact_) {
      row.ok = bv == rv || bv.get<double>() == rv.get<double>();
      row.allowed = "exact";
      row.diff = row.ok ? "0" : num(rv.get<double>() - bv.get<double>());
    } else {
      const double d = rv.get<double>() - bv.get<double>();
      const bool acc = key.find("accuracy") != std::string::npos;
      const double allowed = acc ? tol_.accuracy_abs : tol_.loss_abs + tol_.loss_rel * std::fabs(bv.get<double>());
      row.ok = std::fabs(d) <= allowed;
      row.diff = num(d);
      row.allowed = "±" + num(allowed);
    }
    rows_.push_back(row);
  }

  void equal(const std::string& what, const nlohmann::json& b, const nlohmann::json& r, bool compared) {
    Row row{what, num(b), num(r), b == r ? "0" : "differs", compared ? "exact" : "not compared"};
    row.ok = !compared || b == r;
    rows_.push_back(row);
  }

  void within(const std::string& what, double b, double r, double allowed, bool relative) {
    const double d = relative ? (r - b) / std::max(1e-30, std::fabs(b)) : r - b;
    Row row{what, num(b), num(r), num(d), (relative ? "rel ±" : "±") + num(allowed)};
    row.ok = std::fabs(d) <= allowed;
    rows_.push_back(row);
  }

  bool print() const {
    size_t w = 10, moved = 0;
    for (const auto& r : rows_) w = std::max(w, r.what.size());
    std::printf("%-*s %-18s %-18s %-14s %-16s %s\n", int(w), "value", "baseline", "run", "diff", "allowed", "status");
    for (const auto& r : rows_) {
      std::printf("%-*s %-18s %-18s %-14s %-16s %s\n", int(w), r.what.c_str(), r.baseline.c_str(),
                  r.run.c_str(), r.diff.c_str(), r.allowed.c_str(), r.ok ? "ok" : "MOVED");
      moved += r.ok ? 0 : 1;
    }
    if (moved > 0) std::printf("%zu of %zu values moved\n", moved, rows_.size());
    return moved == 0;
  }

 private:
  double eval_rel_ = 0.0;
  bool exact_;
  BaselineTolerance tol_;
  std::vector<Row> rows_;
};

// Config keys that differ, a key absent on one side counting as its default
// (a newer lockstep may add keys).
std::vector<std::string> config_changes(const nlohmann::json& b, const nlohmann::json& r) {
  std::map<std::string, std::string> defaults;
  for (const auto& row : parse_config("data: {path: none}", "defaults").table()) defaults[row[0]] = row[1];
  std::vector<std::string> out;
  auto value = [&](const nlohmann::json& j, const std::string& k) {
    if (j.contains(k)) return j[k].is_string() ? j[k].get<std::string>() : j[k].dump();
    const auto d = defaults.find(k);
    return d == defaults.end() ? std::string("(unset)") : d->second;
  };
  std::map<std::string, bool> keys;
  for (auto& [k, v] : b.items()) keys[k] = true;
  for (auto& [k, v] : r.items()) keys[k] = true;
  for (auto& [k, unused] : keys) {
    if (value(b, k) != value(r, k)) out.push_back(k + ": " + value(b, k) + " -> " + value(r, k));
  }
  return out;
}

// Prints the environment entries that changed; returns whether a numeric one did.
bool environment_changes(const nlohmann::json& b, const nlohmann::json& r) {
  const auto& numeric = numeric_environment_keys();
  std::map<std::string, bool> keys;
  for (auto& [k, v] : b.items()) keys[k] = true;
  for (auto& [k, v] : r.items()) keys[k] = true;
  bool numeric_changed = false, header = false;
  for (auto& [k, unused] : keys) {
    const std::string bv = b.contains(k) ? num(b[k]) : "(unset)", rv = r.contains(k) ? num(r[k]) : "(unset)";
    if (bv == rv) continue;
    const bool num_key = std::find(numeric.begin(), numeric.end(), k) != numeric.end();
    numeric_changed = numeric_changed || num_key;
    if (!header) std::printf("environment entries that changed:\n");
    header = true;
    std::printf("  %-17s %s\n  %-17s -> %s%s\n", k.c_str(), bv.c_str(), "", rv.c_str(),
                num_key ? "   (affects numerics)" : "");
  }
  if (!header) std::printf("environment: unchanged\n");
  return numeric_changed;
}

}  // namespace

bool verify_baseline(const std::string& baseline_path, const std::string& run_dir, const BaselineTolerance& tol) {
  const nlohmann::json b = read_json(baseline_path, "write one with 'lockstep baseline RUN_DIR --out FILE'");
  if (!b.is_object() || b.value("format", "") != "lockstep-baseline") {
    throw DataError(baseline_path + ": not a lockstep baseline (format '" +
                    (b.is_object() ? b.value("format", "") : std::string()) + "')");
  }
  for (const char* k : {"environment", "config", "epochs", "final", "predictions", "weights"}) {
    if (!b.contains(k)) throw DataError(baseline_path + ": not a complete baseline (no '" + std::string(k) + "')");
  }
  const nlohmann::json r = make_baseline(run_dir);
  const bool numeric_changed = environment_changes(b["environment"], r["environment"]);
  const bool exact = !numeric_changed;
  std::printf("comparison: %s\n", exact ? "exact (the numeric environment matches)"
                                        : "within tolerances (the numeric environment changed)");
  bool ok = true;
  // A deterministic run promises the same training for every replica count that
  // divides its micro-batches: another strategy.local_replicas is no change, and
  // evaluation (sums in double, ordered by the replica split) agrees to 1e-12.
  const auto is_det = [](const nlohmann::json& cfg) {
    return cfg.contains("train.deterministic") && cfg["train.deterministic"].dump() == "\"true\"";
  };
  const bool deterministic = is_det(b["config"]) && is_det(r["config"]);
  // The gradient is summed over every replica in sync, so their number decides
  // the result; how they are laid out (threads or processes) does not.
  const int64_t b_replicas = b.value("replicas", int64_t{0}), r_replicas = r.value("replicas", int64_t{0});
  const bool same_replicas = b_replicas > 0 && b_replicas == r_replicas;
  if (b_replicas > 0 && r_replicas > 0 && b_replicas != r_replicas) {
    std::printf("replicas in sync differ: %lld -> %lld%s\n", static_cast<long long>(b_replicas),
                static_cast<long long>(r_replicas), deterministic ? " (a deterministic run: allowed)"
                : " (the gradient sums run over another number of replicas: another run)");
    if (!deterministic) ok = false;
  }
  for (const auto& c : config_changes(b["config"], r["config"])) {
    const bool layout = c.rfind("strategy.local_replicas:", 0) == 0;
    // The cross-replica weight checksum only reads the weights (and stops a run
    // whose replicas diverged), so how often it ran cannot change a result.
    const bool check_only = c.rfind("strategy.check_every:", 0) == 0;
    const bool allowed = check_only || (layout && (deterministic || same_replicas));
    const char* why = check_only ? " (a check that only reads the weights: allowed)"
                      : !layout ? " (it can change the results: not allowed)"
                      : deterministic ? " (a deterministic run: allowed)"
                      : same_replicas ? " (the same replicas in sync, laid out otherwise: allowed)"
                      : " (another number of replicas in sync: not allowed)";
    std::printf("config differs: %s%s\n", c.c_str(), why);
    if (!allowed) ok = false;
  }
  Comparison cmp(exact, tol);
  cmp.set_evaluation_tolerance(deterministic ? 1e-12 : 0.0);
  const auto& be = b["epochs"];
  const auto& re = r["epochs"];
  if (be.size() != re.size()) {
    cmp.equal("epochs", be.size(), re.size(), true);
  }
  for (size_t i = 0; i < std::min(be.size(), re.size()); ++i) {
    const std::string what = "epoch " + num(be[i]["epoch"]);
    for (const char* k : {"loss", "accuracy", "val_loss", "val_accuracy", "steps", "skipped_steps"}) cmp.metric(what, k, be[i], re[i]);
  }
  for (const char* k : {"test_loss", "test_accuracy", "examples"}) cmp.metric("final", k, b["final"], r["final"]);
  const auto& bp = b["predictions"];
  const auto& rp = r["predictions"];
  cmp.equal("predictions rows", bp["rows"], rp["rows"], true);
  cmp.equal("predictions digest", bp["digest"], rp["digest"], exact);
  if (!exact && bp["values"].size() == rp["values"].size()) {
    double worst = 0;
    for (size_t i = 0; i < bp["values"].size(); ++i) {
      const auto& x = bp["values"][i];
      const auto& y = rp["values"][i];
      for (size_t j = 0; j < std::min(x.size(), y.size()); ++j) {
        worst = std::max(worst, std::fabs(x[j].get<double>() - y[j].get<double>()));
      }
    }
    cmp.within("predictions max |diff|", 0.0, worst, tol.prediction_abs, false);
  }
  cmp.equal("weights count", b["weights"]["count"], r["weights"]["count"], true);
  cmp.equal("weights hash", b["weights"]["hash"], r["weights"]["hash"], exact);
  cmp.equal("optimizer hash", b["weights"]["optimizer_hash"], r["weights"]["optimizer_hash"], exact);
  if (!exact) {
    cmp.within("weights norm", b["weights"]["norm"].get<double>(), r["weights"]["norm"].get<double>(),
               tol.weight_norm_rel, true);
  }
  ok = cmp.print() && ok;
  if (!ok) std::printf("verify: FAILED: %s does not match %s\n", run_dir.c_str(), baseline_path.c_str());
  if (ok) std::printf("verify: OK: %s matches %s (%s)\n", run_dir.c_str(), baseline_path.c_str(), exact ? "exactly" : "within tolerances");
  return ok;
}

}  // namespace lockstep
