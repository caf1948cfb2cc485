// How long a cache line takes to pass from one core to another, for every pair
// of CPUs this process may use: two threads pinned to the pair hand a counter
// back and forth through one line, and the one-way time is half a round trip
// (bench/cache_line.h, which train_bench uses too).
// Cores under one last-level cache pass a line in tens of nanoseconds; across
// caches (another CCD, another socket, or vCPUs the host placed apart) it takes
// several times longer, and so does everything that replicas sharing one weight
// arena pass between them each step (strategy.share_weights, README "Speed on
// CPUs"). A virtual machine's vCPUs may move on the host while this runs: the
// repetitions show the spread. Checks that the line ends at the count of all
// the handoffs. Every pair is measured: restrict the CPUs with taskset.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/cache_line.h"
#include "bench/machine.h"
#include "bench/run_main.h"
#include "comm/placement.h"

namespace {

using lockstep::bench::one_way_ns;

int run_bench(int argc, char** argv) {
  CLI::App app{"core_latency: one-way time for a cache line between every pair of CPUs this process may use"};
  int64_t trips = 100000;
  int reps = 5;
  std::string json_path;
  app.add_option("--trips", trips, "timed round trips per measurement (after as many untimed)")->check(CLI::Range(int64_t{100}, int64_t{100000000}));
  app.add_option("--reps", reps, "measurements per pair (median, min and max reported)")->check(CLI::Range(1, 1000));
  app.add_option("--json", json_path, "also write the results as JSON");
  CLI11_PARSE(app, argc, argv);

  const std::vector<int> cpus = lockstep::allowed_cpus();
  std::printf("# CPU: %s\n", lockstep::bench::cpu_description().c_str());
  std::printf("# core_latency: %zu allowed CPUs, %lld round trips x %d repetitions per pair\n", cpus.size(),
              (long long)trips, reps);
  if (cpus.size() < 2) {
    std::printf("# one CPU: no pair to measure\n# OK\n");
    return 0;
  }
  std::printf("#%5s %5s %9s %9s %9s\n", "cpu", "cpu", "one-way", "min", "max");
  std::printf("#%5s %5s %9s %9s %9s\n", "", "", "(ns)", "(ns)", "(ns)");
  bool ok = true;
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < cpus.size(); ++i) {
    for (size_t j = i + 1; j < cpus.size(); ++j) {
      std::vector<double> ns;
      for (int k = 0; k < reps; ++k) ns.push_back(one_way_ns(cpus[i], cpus[j], trips, ok));
      std::sort(ns.begin(), ns.end());
      const double median = ns[ns.size() / 2];
      std::printf("%6d %5d %9.1f %9.1f %9.1f\n", cpus[i], cpus[j], median, ns.front(), ns.back());
      std::fflush(stdout);
      out.push_back({{"cpu_a", cpus[i]}, {"cpu_b", cpus[j]}, {"one_way_ns", median},
                     {"min_ns", ns.front()}, {"max_ns", ns.back()}});
    }
  }
  std::printf("# %s\n", ok ? "OK" : "FAILED: the line did not end at the count of the handoffs");
  if (!json_path.empty()) {
    std::ofstream file(json_path);
    file << out.dump(2) << "\n";
    if (!file) throw std::runtime_error(json_path + ": cannot write the JSON results");
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) { return lockstep::bench::run_main("core_latency", run_bench, argc, argv); }
