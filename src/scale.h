// lockstep scale: the job a config describes, run to steady state at several
// layouts (replica threads in this process; ranks x threads under mpirun when it
// is on PATH), and a report of throughput, scaling efficiency and where each
// step's time went: DIR/scaling.md, DIR/scaling.json and DIR/scaling.png.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/config.h"
#include "src/trainer.h"
#include "src/world.h"

namespace lockstep {

struct ScaleOptions {
  std::string config_path;
  std::vector<Override> overrides;  // --set, applied to every layout
  std::vector<int> replicas{1, 2};  // replica threads per process
  std::vector<int> ranks{1};        // processes (> 1: under mpirun)
  bool weak = false;    // weak: the per-replica batch stays; strong: the global batch stays
  int64_t steps = 2000;  // timed steps per layout
  int64_t warmup = 200;  // untimed steps before them
  std::string out_dir;
  std::string projection;  // --project FILE: alpha-beta parameters (see AlphaBeta)
};

// One measured layout.
struct ScalePoint {
  int ranks = 1, local_replicas = 1;
  Throughput t;
  double speedup = 1, efficiency = 1;  // against the layout with the fewest replicas
};

// A model of a ring all-reduce of n bytes over p replicas: 2(p-1) messages of
// latency alpha and 2(p-1)/p x n bytes at the bus bandwidth beta. Read from a
// YAML file: {alpha_us: 5, bandwidth_gbps: 100, replicas: [8, 16, 64]}.
struct AlphaBeta {
  double alpha_us = 0;        // per message
  double bandwidth_gbps = 0;  // GB/s (1e9 bytes) per replica link
  std::vector<int> replicas;  // cluster sizes to project to
  std::string source;         // the file
};
AlphaBeta load_alpha_beta(const std::string& path);
double ring_allreduce_ms(const AlphaBeta& m, int replicas, int64_t bytes);

// A projected layout: the measured step of the largest layout with its
// all-reduce wait replaced by the model's (compute shrinks with the
// per-replica batch under strong scaling), marked as a model.
struct Projection {
  int replicas = 0;
  int64_t global_batch = 0;
  double step_ms = 0, allreduce_ms = 0, samples_per_sec = 0, efficiency = 0;
};
std::vector<Projection> project(const ScaleOptions& o, const AlphaBeta& m, const std::vector<ScalePoint>& points);

// Measures every layout and writes the report. Under mpirun (world.size() > 1)
// only the layouts with world.size() ranks are measured; a single process runs
// the others through mpirun itself. Throws ConfigError for bad options.
void run_scale(const ScaleOptions& options, World& world);

// Fills speedup and efficiency: samples/s per replica against the first point
// after sorting by replicas (then ranks).
void rate_points(std::vector<ScalePoint>& points);
// The report bodies (pure; tests check them).
std::string scaling_markdown(const ScaleOptions& o, const std::vector<ScalePoint>& points,
                             const std::string& notes, const std::vector<Projection>& projected = {},
                             const AlphaBeta* model = nullptr);
std::string scaling_json(const ScaleOptions& o, const std::vector<ScalePoint>& points,
                         const std::vector<Projection>& projected = {}, const AlphaBeta* model = nullptr);

}  // namespace lockstep
