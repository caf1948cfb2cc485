// Run folder bookkeeping: refuse to mix two runs' files, write the manifest and
// the resolved config. Only the chief calls these (the Trainer makes sure).
#include "src/run_folder.h"

#include <cctype>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "data/hdf5_util.h"
#include "src/checkpoint.h"
#include "src/environment.h"
#include "src/tensorboard.h"

namespace lockstep {
namespace fs = std::filesystem;
namespace {

const char* const kRunFiles[] = {"model.h5", "manifest.json", "config.yaml", "metrics.jsonl"};

// The current time (UTC) in strftime's `format`.
std::string utc_now(const char* format) {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[48];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

// Time of day plus 32 random bits: unique enough to tell two runs apart.
std::string new_run_id() {
  char tail[16];
  std::snprintf(tail, sizeof tail, "-%08x", unsigned(std::random_device{}()));
  return utc_now("%Y%m%d-%H%M%S") + tail;
}

std::string shown(const fs::path& p, const fs::path& base) {
  const std::string rel = p.lexically_relative(base).string();
  return rel.empty() || rel.rfind("..", 0) == 0 ? p.string() : rel;
}

// An absolute path with links resolved as far as it exists, no trailing "/";
// empty if it cannot be had.
fs::path normal(const fs::path& p) {
  std::error_code ec;
  fs::path n = fs::weakly_canonical(fs::absolute(p, ec), ec);
  if (ec) return {};
  return n.has_filename() ? n : n.parent_path();
}

// The same file, whether or not it exists yet.
bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  if (fs::equivalent(a, b, ec)) return true;
  const fs::path na = normal(a);
  return !na.empty() && na == normal(b);
}

bool inside(const fs::path& p, const fs::path& folder) {
  const fs::path np = normal(p), nf = normal(folder);
  if (np.empty() || nf.empty()) return false;
  const std::string rel = np.lexically_relative(nf).string();
  return !rel.empty() && rel != "." && rel.rfind("..", 0) != 0;
}

// What `path` is to the run, or "" when it is none of its files.
std::string own_file(const fs::path& path, const Config& c, const std::string& checkpoint_dir,
                     const std::vector<std::pair<std::string, std::string>>& others) {
  if (!c.source.empty() && same_file(path, c.source)) return "the config file";
  if (!c.data_path.empty() && same_file(path, c.data_path)) return "the dataset (data.path)";
  for (const auto& [file, what] : others) {
    if (!file.empty() && same_file(path, file)) return what;
  }
  if (same_file(path, c.output_dir)) return "output.dir, the run's folder";
  if (same_file(path, checkpoint_dir)) return "checkpoint.dir, the run's checkpoint folder";
  if (same_file(path, fs::path(c.output_dir) / "tensorboard")) return "the run's TensorBoard folder";
  for (const char* name : kRunFiles) {
    if (same_file(path, fs::path(c.output_dir) / name)) {
      return std::string("the run folder's ") + name + " (output.dir), which lockstep writes itself";
    }
  }
  if (inside(path, checkpoint_dir) && path.filename().string().rfind("ckpt-", 0) == 0) {
    return "a checkpoint's name in checkpoint.dir";
  }
  if (inside(path, fs::path(c.output_dir) / "tensorboard")) return "inside the run's TensorBoard logs";
  return "";
}

}  // namespace

void check_side_output(const SideOutput& o, const Config& c, const std::string& checkpoint_dir) {
  if (o.path.empty()) return;
  const std::string head = o.flag + " " + o.path + ": ";
  const std::string what = own_file(o.path, c, checkpoint_dir, o.others);
  if (!what.empty()) throw ConfigError(head + "is " + what + "; choose another path");
  std::error_code ec;
  const fs::path folder = fs::path(o.path).parent_path();
  if (o.run_makes_output_dir && !fs::exists(folder, ec) && same_file(folder, c.output_dir)) return;
  try {
    if (o.replaced) {
      AtomicOutput::check(o.path, /*overwrite=*/true, o.example);
    } else {
      AtomicOutput::check_place(o.path, o.example);
    }
  } catch (const OutputPathError& e) {
    throw ConfigError(o.flag + " " + e.what());
  }
  if (!fs::is_regular_file(o.path, ec)) return;  // new, or a stream written in place (/dev/stdout)
  std::ifstream in(o.path, std::ios::binary);
  char first = 0;
  while (in.get(first) && std::isspace(static_cast<unsigned char>(first))) {
  }
  if (in && first != '{' && first != '[') {
    throw ConfigError(head + "already exists and does not hold JSON (what " + o.flag +
                      " writes), so lockstep will not replace it; remove it or choose another path");
  }
}

std::string Fnv1a::hex() const {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h_);
  return buf;
}

std::string hash_bytes(const void* data, size_t n) {
  Fnv1a h;
  h.add(data, n);
  return h.hex();
}

std::vector<std::pair<std::string, std::string>> result_config_rows(const Config& c) {
  std::vector<std::pair<std::string, std::string>> rows;
  for (const auto& row : c.table()) {
    const std::string& key = row[0];
    bool skip = false;
    for (const char* prefix : {"output.", "checkpoint.", "comm.", "data.path", "data.prefetch",
                               "data.gather", "train.progress"}) {
      skip = skip || key.rfind(prefix, 0) == 0;
    }
    if (!skip) rows.emplace_back(key, row[1]);
  }
  return rows;
}

std::string config_hash(const Config& c) {
  std::string text;
  for (const auto& [key, value] : result_config_rows(c)) text += key + " = " + value + "\n";
  return hash_bytes(text.data(), text.size());
}

std::vector<std::string> earlier_work(const Config& c, const std::string& checkpoint_dir) {
  std::vector<std::string> found;
  const fs::path dir(c.output_dir);
  std::error_code ec;
  for (const char* name : kRunFiles) {
    if (fs::exists(dir / name, ec)) found.push_back(name);
  }
  for (const auto& ckpt : list_checkpoints(checkpoint_dir)) found.push_back(shown(ckpt, dir));
  for (const auto& events : tensorboard_files(c.output_dir)) found.push_back(shown(events, dir));
  return found;
}

void prepare_run_folder(const Config& c, const std::string& checkpoint_dir, const RunFolderOptions& o) {
  const std::string key = c.where("output.dir") + ": key 'output.dir': ";
  std::error_code ec;
  for (const std::string& d : {c.output_dir, checkpoint_dir}) {
    if (fs::exists(d, ec) && !fs::is_directory(d, ec)) {
      throw ConfigError((d == c.output_dir ? key : c.where("checkpoint.dir") + ": key 'checkpoint.dir': ") +
                        d + " is a file, not a folder (choose a folder for the run)");
    }
  }
  const std::vector<std::string> work = earlier_work(c, checkpoint_dir);
  if (!work.empty() && !o.resume && !o.overwrite) {
    std::string list;
    for (size_t i = 0; i < work.size() && i < 4; ++i) list += (i ? ", " : "") + work[i];
    if (work.size() > 4) list += " and " + std::to_string(work.size() - 4) + " more";
    // Only checkpoints, in a checkpoint.dir outside output.dir: that folder is the one to change.
    const size_t ckpts = list_checkpoints(checkpoint_dir).size();
    if (ckpts == work.size() && !inside(checkpoint_dir, c.output_dir)) {
      throw ConfigError(c.where("checkpoint.dir") + ": key 'checkpoint.dir': " + checkpoint_dir +
                        " holds an earlier run's checkpoints (" + list + "); continue that run with "
                        "--resume, replace them with --overwrite, or choose another checkpoint.dir "
                        "(each run needs its own)");
    }
    throw ConfigError(key + c.output_dir + " holds an earlier run's work (" + list +
                      "); continue it with --resume, replace it with --overwrite, or choose "
                      "another output.dir");
  }
  if (!work.empty() && o.overwrite && !o.resume) {
    for (const char* name : kRunFiles) fs::remove(fs::path(c.output_dir) / name, ec);
    for (const auto& ckpt : list_checkpoints(checkpoint_dir)) fs::remove(ckpt, ec);
    for (const auto& events : tensorboard_files(c.output_dir)) fs::remove(events, ec);
    std::printf("--overwrite: removed the earlier run's %zu file(s) from %s\n", work.size(),
                c.output_dir.c_str());
  }
  fs::create_directories(c.output_dir, ec);
  if (ec) throw ConfigError(key + "cannot create " + c.output_dir + ": " + ec.message());
}

void write_run_record(const Config& c, const RunFolderOptions& o) {
  const fs::path dir(c.output_dir);
  nlohmann::json m;
  std::ifstream old(dir / "manifest.json");
  if (o.resume && old) {
    try {
      m = nlohmann::json::parse(old);
    } catch (const nlohmann::json::exception&) {
      m = nlohmann::json::object();  // unreadable: start a new record
    }
  }
  const nlohmann::json now = {{"time", utc_now("%Y-%m-%dT%H:%M:%SZ")}, {"command_line", o.command_line},
                              {"processes", o.processes}, {"replicas_in_sync", o.replicas_in_sync}};
  if (m.contains("run_id")) {
    m["resumes"].push_back(now);
  } else {
    m = {{"format", "lockstep-run"}, {"version", 1}, {"run_id", new_run_id()},
         {"start_time", now["time"]}, {"command_line", o.command_line}};
  }
  std::error_code ec;
  m["processes"] = o.processes;
  m["replicas_in_sync"] = o.replicas_in_sync;
  m["config_hash"] = config_hash(c);
  m["working_directory"] = fs::current_path(ec).string();
  m["deterministic"] = c.deterministic;
  m["environment"] = run_environment();
  AtomicOutput::replace((dir / "manifest.json").string(), m.dump(2) + "\n");
  AtomicOutput::replace((dir / "config.yaml").string(), c.to_yaml());
}

}  // namespace lockstep
