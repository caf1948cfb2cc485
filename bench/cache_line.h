// How long a cache line takes to pass from one CPU to another: two threads
// pinned to the pair hand a counter back and forth through one line, and the
// one-way time is half a round trip. Tens of nanoseconds under one last-level
// cache; several times that across caches (another CCD, another socket, or vCPUs
// a VM's host placed apart), and so is everything replicas on those CPUs pass
// between them each step. core_latency measures every pair; train_bench the pair
// its first two replica threads run on, beside each row. Header-only; benchmarks
// only.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>

#include "comm/placement.h"

namespace lockstep::bench {

struct alignas(64) CacheLine {
  std::atomic<int64_t> value{0};
};

// One-way nanoseconds over `trips` round trips between CPUs a and b, after as
// many untimed ones (the threads settle on their CPUs). Both threads are pinned
// from here before the first handoff (the calling thread stays pinned to a); if
// either cannot be, the helper is told to stop (a negative value) and the error
// names the CPU. `ok` turns false if the line does not end at the count every
// handoff makes.
inline double one_way_ns(int a, int b, int64_t trips, bool& ok) {
  CacheLine line;
  const int64_t total = 2 * trips;
  std::thread answer([&] {
    for (int64_t i = 0; i < total; ++i) {
      int64_t seen;
      while ((seen = line.value.load(std::memory_order_acquire)) != 2 * i + 1) {
        if (seen < 0) return;
      }
      line.value.store(2 * i + 2, std::memory_order_release);
    }
  });
  // By CPU number: a thread started here inherits its parent's one-CPU mask, so
  // slots of allowed_cpus() (pin_current_thread) would not do.
  if (!pin_thread(answer.native_handle(), {b}) || !pin_thread(pthread_self(), {a})) {
    line.value.store(-1, std::memory_order_release);
    answer.join();
    throw std::runtime_error("cannot pin a thread to CPU " + std::to_string(a) + " or " + std::to_string(b));
  }
  std::chrono::steady_clock::time_point t0;
  for (int64_t i = 0; i < total; ++i) {
    if (i == trips) t0 = std::chrono::steady_clock::now();
    line.value.store(2 * i + 1, std::memory_order_release);
    while (line.value.load(std::memory_order_acquire) != 2 * i + 2) {
    }
  }
  const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  answer.join();
  ok = ok && line.value.load() == 2 * total;
  return ns / double(trips) / 2.0;
}

// The median of `reps` one-way times between the first two CPUs the calling
// thread may use (where comm/placement.h pins the first two replica threads),
// or -1 with fewer than two CPUs, or if a line did not end at its count. The
// calling thread gets its CPU set back.
inline double first_pair_ns(int64_t trips = 20000, int reps = 3) {
  const std::vector<int> cpus = allowed_cpus();
  if (cpus.size() < 2) return -1.0;
  bool ok = true;
  std::vector<double> ns;
  try {
    for (int k = 0; k < reps; ++k) ns.push_back(one_way_ns(cpus[0], cpus[1], trips, ok));
  } catch (...) {
    pin_thread(pthread_self(), cpus);
    throw;
  }
  pin_thread(pthread_self(), cpus);
  if (!ok || ns.empty()) return -1.0;
  std::sort(ns.begin(), ns.end());
  return ns[ns.size() / 2];
}

}  // namespace lockstep::bench
