// lockstep scale: layouts measured with Trainer::measure (in this process, or
// in an mpirun child that writes its own scaling.json), rated against the
// smallest layout, and written as Markdown, JSON and a gnuplot PNG.
#include "src/scale.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "data/hdf5_util.h"

namespace lockstep {
namespace {

namespace fs = std::filesystem;

std::string self_exe() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error(std::string("scale: cannot find the lockstep binary: ") + std::strerror(errno));
  return std::string(buf, size_t(n));
}

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  for (std::string d; std::getline(dirs, d, ':');) {
    if (!d.empty() && access((fs::path(d) / program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

// The global batch of a layout: strong keeps train.batch_size; weak keeps the
// per-replica batch that train.batch_size gives the smallest layout.
int64_t layout_batch(const ScaleOptions& o, const Config& base, int replicas, int min_replicas) {
  if (!o.weak) return base.batch_size;
  if (base.batch_size % min_replicas != 0) {
    throw ConfigError("scale --mode weak: train.batch_size " + std::to_string(base.batch_size) +
                      " does not divide by the smallest layout's " + std::to_string(min_replicas) +
                      " replicas (the per-replica batch must be whole)");
  }
  return base.batch_size / min_replicas * replicas;
}

ScalePoint measure_layout(const ScaleOptions& o, World& world, int local, int64_t batch) {
  std::vector<Override> ov = o.overrides;
  ov.push_back({"strategy.local_replicas", std::to_string(local)});
  if (o.weak) ov.push_back({"train.batch_size", std::to_string(batch)});
  ov.push_back({"train.progress", "false"});
  const Config c = load_config(o.config_path, ov);
  Trainer trainer(c, world);
  ScalePoint p;
  p.ranks = world.size();
  p.local_replicas = local;
  p.t = trainer.measure(o.warmup, o.steps);
  return p;
}

nlohmann::json point_json(const ScalePoint& p) {
  const StepBreakdown& b = p.t.breakdown;
  return {{"ranks", p.ranks},           {"local_replicas", p.local_replicas},
          {"replicas", p.t.replicas},   {"global_batch", p.t.global_batch},
          {"steps", p.t.steps},         {"seconds", p.t.seconds},
          {"gradient_bytes", p.t.gradient_bytes},
          {"samples_per_sec", p.t.samples_per_sec},
          {"speedup", p.speedup},       {"efficiency", p.efficiency},
          {"step_ms", b.step_ms},       {"compute_ms", b.compute_ms},
          {"allreduce_wait_ms", b.allreduce_ms}, {"input_wait_ms", b.input_ms},
          {"optimizer_ms", b.optimizer_ms}};
}

ScalePoint point_from_json(const nlohmann::json& j) {
  ScalePoint p;
  p.ranks = j.at("ranks").get<int>();
  p.local_replicas = j.at("local_replicas").get<int>();
  p.t.replicas = j.at("replicas").get<int>();
  p.t.global_batch = j.at("global_batch").get<int64_t>();
  p.t.steps = j.at("steps").get<int64_t>();
  p.t.seconds = j.at("seconds").get<double>();
  p.t.samples_per_sec = j.at("samples_per_sec").get<double>();
  p.t.gradient_bytes = j.at("gradient_bytes").get<int64_t>();
  p.t.breakdown = StepBreakdown{p.t.steps, j.at("step_ms").get<double>(), j.at("compute_ms").get<double>(),
                                j.at("allreduce_wait_ms").get<double>(), j.at("input_wait_ms").get<double>(),
                                j.at("optimizer_ms").get<double>()};
  return p;
}

// --out: made if missing (parents too); a usage error naming the flag when a file
// is in the way or it cannot be made.
void make_out_dir(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
    throw ConfigError("scale --out " + dir.string() + ": is a file, not a folder (choose a folder for the report)");
  }
  fs::create_directories(dir, ec);
  if (ec) throw ConfigError("scale --out " + dir.string() + ": cannot create the folder: " + ec.message());
}

// The same scale command for `ranks` processes, under mpirun, into DIR/ranks-R;
// returns its measured points.
std::vector<ScalePoint> run_under_mpirun(const ScaleOptions& o, int ranks) {
  const fs::path dir = fs::path(o.out_dir) / ("ranks-" + std::to_string(ranks));
  make_out_dir(dir);
  std::string reps;
  for (int k : o.replicas) reps += (reps.empty() ? "" : ",") + std::to_string(k);
  std::vector<std::string> args = {"mpirun", "--oversubscribe", "-np", std::to_string(ranks), self_exe(),
                                   "scale", o.config_path, "--replicas", reps, "--ranks", std::to_string(ranks),
                                   "--mode", o.weak ? "weak" : "strong", "--steps", std::to_string(o.steps),
                                   "--warmup", std::to_string(o.warmup), "--out", dir.string()};
  for (const auto& ov : o.overrides) {
    args.push_back("--set");
    args.push_back(ov.key + "=" + ov.value);
  }
  const std::string log = (dir / "mpirun.log").string();
  std::printf("scale: %d ranks: mpirun -np %d ... (output in %s)\n", ranks, ranks, log.c_str());
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("scale: cannot start mpirun: ") + std::strerror(errno));
  if (pid == 0) {
    if (std::freopen(log.c_str(), "w", stdout) && dup2(fileno(stdout), STDERR_FILENO) >= 0) {
      setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
      setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp("mpirun", argv.data());
    }
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("scale: the " + std::to_string(ranks) + "-rank layouts failed under mpirun (exit " +
                             std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) +
                             "); see " + log);
  }
  std::ifstream f(dir / "scaling.json");
  const nlohmann::json report = nlohmann::json::parse(f);
  std::vector<ScalePoint> out;
  for (const auto& j : report.at("layouts")) out.push_back(point_from_json(j));
  return out;
}

std::string gnuplot_script(const std::vector<ScalePoint>& points, const std::string& png) {
  std::string s = "# lockstep scale: throughput and efficiency against replicas\n$data << EOD\n";
  char line[160];
  for (const auto& p : points) {
    std::snprintf(line, sizeof line, "%d %.3f %.4f %.3f %dx%d\n", p.t.replicas, p.t.samples_per_sec, p.efficiency,
                  points[0].t.samples_per_sec / points[0].t.replicas * p.t.replicas, p.ranks, p.local_replicas);
    s += line;
  }
  s += "EOD\nset terminal pngcairo size 1100,450 font ',10'\nset output '" + png + "'\n"
       "set multiplot layout 1,2 title 'lockstep scale (measured)'\nset grid\nset key top left\n"
       "set xlabel 'replicas in sync'\nset ylabel 'samples/s'\nset xrange [0:*]\nset yrange [0:*]\n"
       "plot $data using 1:2 with linespoints lw 2 pt 7 title 'measured', "
       "$data using 1:4 with lines dt 2 title 'linear from the first layout', "
       "$data using 1:2:5 with labels offset 0,1 notitle\n"
       "set ylabel 'scaling efficiency'\nset yrange [0:1.2]\n"
       "plot $data using 1:3 with linespoints lw 2 pt 7 title 'efficiency', 1 dt 2 title 'ideal'\n"
       "unset multiplot\n";
  return s;
}

// Returns a note for the report when the PNG could not be drawn.
std::string draw_png(const std::vector<ScalePoint>& points, const fs::path& dir) {
  if (!on_path("gnuplot")) return "scaling.png not drawn: gnuplot is not on PATH (apt-get install gnuplot-nox)";
  const fs::path script = dir / "scaling.gp";
  AtomicOutput::replace(script.string(), gnuplot_script(points, (dir / "scaling.png").string()));
  const std::string cmd = "gnuplot '" + script.string() + "' 2>'" + (dir / "gnuplot.log").string() + "'";
  if (script.string().find('\'') != std::string::npos || std::system(cmd.c_str()) != 0) {
    return "scaling.png not drawn: gnuplot failed (see " + (dir / "gnuplot.log").string() + ")";
  }
  fs::remove(dir / "gnuplot.log");
  return "";
}

}  // namespace

AlphaBeta load_alpha_beta(const std::string& path) {
  AlphaBeta m;
  m.source = path;
  const auto bad = [&](const std::string& what) {
    return ConfigError("--project " + path + ": " + what +
                       " (expected e.g. {alpha_us: 5, bandwidth_gbps: 100, replicas: [8, 16, 64]})");
  };
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw bad(std::string("cannot read it: ") + e.what());
  }
  if (!root.IsMap()) throw bad("not a YAML map");
  try {
    for (const auto& kv : root) {
      const std::string key = kv.first.as<std::string>();
      if (key == "alpha_us") {
        m.alpha_us = kv.second.as<double>();
      } else if (key == "bandwidth_gbps") {
        m.bandwidth_gbps = kv.second.as<double>();
      } else if (key == "replicas") {
        m.replicas = kv.second.as<std::vector<int>>();
      } else {
        throw bad("unknown key '" + key + "'");
      }
    }
  } catch (const YAML::Exception& e) {
    throw bad(std::string("a value is not a number: ") + e.what());
  }
  if (!(m.alpha_us >= 0)) throw bad("alpha_us must be >= 0");
  if (!(m.bandwidth_gbps > 0)) throw bad("bandwidth_gbps must be > 0");
  if (m.replicas.empty()) throw bad("replicas must list the cluster sizes to project to");
  for (int r : m.replicas) {
    if (r < 1) throw bad("replicas must be >= 1");
  }
  return m;
}

double ring_allreduce_ms(const AlphaBeta& m, int replicas, int64_t bytes) {
  if (replicas <= 1) return 0.0;
  const double p = replicas;
  const double latency_s = 2.0 * (p - 1.0) * m.alpha_us * 1e-6;
  const double transfer_s = 2.0 * (p - 1.0) / p * double(bytes) / (m.bandwidth_gbps * 1e9);
  return 1e3 * (latency_s + transfer_s);
}

std::vector<Projection> project(const ScaleOptions& o, const AlphaBeta& m, const std::vector<ScalePoint>& points) {
  std::vector<Projection> out;
  if (points.empty()) return out;
  const ScalePoint& base = points.front();
  const ScalePoint& big = points.back();  // the largest measured layout
  const StepBreakdown& b = big.t.breakdown;
  const double base_rate = double(base.t.global_batch) / std::max(1e-12, base.t.breakdown.step_ms) / base.t.replicas;
  for (int n : m.replicas) {
    Projection p;
    p.replicas = n;
    // Strong: the global batch stays and each replica's compute shrinks with its
    // rows; weak: the per-replica batch and its compute stay.
    p.global_batch = o.weak ? big.t.global_batch / big.t.replicas * n : big.t.global_batch;
    if (p.global_batch < n) continue;  // fewer rows than replicas: nothing to project
    const double compute = o.weak ? b.compute_ms : b.compute_ms * big.t.replicas / n;
    p.allreduce_ms = ring_allreduce_ms(m, n, big.t.gradient_bytes);
    p.step_ms = compute + b.input_ms + b.optimizer_ms + p.allreduce_ms;
    p.samples_per_sec = 1e3 * double(p.global_batch) / p.step_ms;
    p.efficiency = p.samples_per_sec / n / (1e3 * base_rate);
    out.push_back(p);
  }
  return out;
}

void rate_points(std::vector<ScalePoint>& points) {
  std::sort(points.begin(), points.end(), [](const ScalePoint& a, const ScalePoint& b) {
    return a.t.replicas != b.t.replicas ? a.t.replicas < b.t.replicas : a.ranks < b.ranks;
  });
  if (points.empty()) return;
  const double base = points[0].t.samples_per_sec / points[0].t.replicas;
  for (auto& p : points) {
    p.speedup = p.t.samples_per_sec / std::max(1e-12, points[0].t.samples_per_sec);
    p.efficiency = p.t.samples_per_sec / p.t.replicas / std::max(1e-12, base);
  }
}

std::string scaling_json(const ScaleOptions& o, const std::vector<ScalePoint>& points,
                         const std::vector<Projection>& projected, const AlphaBeta* model) {
  nlohmann::json j = {{"config", o.config_path}, {"mode", o.weak ? "weak" : "strong"},
                      {"steps", o.steps},        {"warmup", o.warmup},
                      {"layouts", nlohmann::json::array()}};
  for (const auto& p : points) j["layouts"].push_back(point_json(p));
  if (model) {
    nlohmann::json proj = {{"kind", "model, not a measurement"},
                           {"model", "ring all-reduce: 2(p-1) alpha + 2(p-1)/p bytes / bandwidth"},
                           {"parameters", {{"file", model->source}, {"alpha_us", model->alpha_us},
                                           {"bandwidth_gbps", model->bandwidth_gbps}}},
                           {"layouts", nlohmann::json::array()}};
    for (const auto& p : projected) {
      proj["layouts"].push_back({{"replicas", p.replicas}, {"global_batch", p.global_batch},
                                 {"step_ms", p.step_ms}, {"allreduce_ms", p.allreduce_ms},
                                 {"samples_per_sec", p.samples_per_sec}, {"efficiency", p.efficiency}});
    }
    j["projection"] = proj;
  }
  return j.dump(2) + "\n";
}

std::string scaling_markdown(const ScaleOptions& o, const std::vector<ScalePoint>& points,
                             const std::string& notes, const std::vector<Projection>& projected,
                             const AlphaBeta* model) {
  std::string s = "# Scaling of " + o.config_path + "\n\n";
  s += std::string(o.weak ? "Weak scaling (the per-replica batch stays fixed)"
                          : "Strong scaling (the global batch stays fixed)") +
       "; every layout trained " + std::to_string(o.steps) + " timed steps after " +
       std::to_string(o.warmup) + " warm-up steps (measured, not modelled). Efficiency = samples/s "
       "per replica against the first row; step times are medians over the timed steps of rank 0's "
       "replica 0.\n\n";
  s += "| layout (ranks x threads) | replicas | global batch | samples/s | speed-up | efficiency | "
       "step ms | compute ms | all-reduce wait ms | input wait ms | optimizer ms |\n"
       "|---|---|---|---|---|---|---|---|---|---|---|\n";
  char row[512];
  for (const auto& p : points) {
    const StepBreakdown& b = p.t.breakdown;
    std::snprintf(row, sizeof row, "| %d x %d | %d | %lld | %.0f | %.2fx | %.2f | %.3f | %.3f | %.3f | %.3f | %.3f |\n",
                  p.ranks, p.local_replicas, p.t.replicas, (long long)p.t.global_batch, p.t.samples_per_sec,
                  p.speedup, p.efficiency, b.step_ms, b.compute_ms, b.allreduce_ms, b.input_ms, b.optimizer_ms);
    s += row;
  }
  if (!points.empty()) {
    s += "\nAt " + std::to_string(points.back().t.replicas) + " replicas: " +
         where_time_went(points.back().t.breakdown, points.back().t.replicas) + ".\n";
  }
  if (model) {
    char head[4096];
    std::snprintf(head, sizeof head,
                  "\n## Projection: a MODEL, not a measurement\n\nThe step of the largest measured layout with "
                  "its all-reduce replaced by a ring all-reduce of %lld bytes modelled as 2(p-1) x %g us + "
                  "2(p-1)/p x bytes / %g GB/s (parameters from %s)%s. Efficiency from median step times "
                  "against the first measured layout.\n\n",
                  (long long)(points.empty() ? 0 : points.back().t.gradient_bytes), model->alpha_us,
                  model->bandwidth_gbps, model->source.c_str(),
                  o.weak ? "" : "; compute shrinks with the per-replica batch");
    s += head;
    s += "| replicas (model) | global batch | step ms | all-reduce ms | samples/s | efficiency |\n"
         "|---|---|---|---|---|---|\n";
    char row[256];
    for (const auto& p : projected) {
      std::snprintf(row, sizeof row, "| %d | %lld | %.3f | %.3f | %.0f | %.2f |\n", p.replicas,
                    (long long)p.global_batch, p.step_ms, p.allreduce_ms, p.samples_per_sec, p.efficiency);
      s += row;
    }
  }
  if (!notes.empty()) s += "\n" + notes + "\n";
  return s;
}

void run_scale(const ScaleOptions& o, World& world) {
  if (o.replicas.empty() || o.ranks.empty()) throw ConfigError("scale: --replicas and --ranks need at least one count");
  AlphaBeta model;
  if (!o.projection.empty()) model = load_alpha_beta(o.projection);  // bad files fail before any run
  const bool child = world.size() > 1;
  if (child && (o.ranks.size() != 1 || o.ranks[0] != world.size())) {
    throw ConfigError("scale: under mpirun with " + std::to_string(world.size()) + " ranks, give --ranks " +
                      std::to_string(world.size()) + " (or run 'lockstep scale' without mpirun: it starts "
                      "mpirun for each rank count itself)");
  }
  const Config base = load_config(o.config_path, o.overrides);
  int min_replicas = INT_MAX;
  for (int r : o.ranks) {
    for (int k : o.replicas) min_replicas = std::min(min_replicas, r * k);
  }
  if (world.rank() == 0) make_out_dir(o.out_dir);
  std::vector<ScalePoint> points;
  std::string notes;
  for (int ranks : o.ranks) {
    if (ranks != world.size()) {
      if (!on_path("mpirun")) {
        notes += "Layouts with " + std::to_string(ranks) + " ranks were skipped: mpirun is not on PATH.\n";
        continue;
      }
      for (auto& p : run_under_mpirun(o, ranks)) points.push_back(p);
      continue;
    }
    for (int k : o.replicas) {
      const int64_t batch = layout_batch(o, base, ranks * k, min_replicas);
      ScalePoint p = measure_layout(o, world, k, batch);
      if (world.rank() != 0) continue;
      std::printf("scale: %d rank(s) x %d replica thread(s) = %d replicas, global batch %lld: %.0f samples/s "
                  "(median step %.3f ms)\n",
                  ranks, k, p.t.replicas, (long long)batch, p.t.samples_per_sec, p.t.breakdown.step_ms);
      std::fflush(stdout);
      points.push_back(p);
    }
  }
  if (world.rank() != 0) return;
  if (points.empty()) throw std::runtime_error("scale: no layout could be measured (" + notes + ")");
  rate_points(points);
  const fs::path dir(o.out_dir);
  fs::remove(dir / "scaling.png");  // never leave an old picture beside new numbers
  if (!child) notes += draw_png(points, dir);
  const AlphaBeta* m = o.projection.empty() || child ? nullptr : &model;
  const std::vector<Projection> projected = m ? project(o, *m, points) : std::vector<Projection>{};
  AtomicOutput::replace((dir / "scaling.json").string(), scaling_json(o, points, projected, m));
  AtomicOutput::replace((dir / "scaling.md").string(), scaling_markdown(o, points, notes, projected, m));
  std::printf("scale: wrote %s, %s%s\n", (dir / "scaling.md").c_str(), (dir / "scaling.json").c_str(),
              child || !fs::exists(dir / "scaling.png") ? "" : (", " + (dir / "scaling.png").string()).c_str());
  if (!notes.empty()) std::printf("scale: %s\n", notes.c_str());
}

}  // namespace lockstep
