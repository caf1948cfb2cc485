// Thread placement through the Linux affinity calls.
#include "comm/placement.h"

#include <pthread.h>
#include <sched.h>

namespace lockstep {

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

int pin_current_thread(int slot) {
  const std::vector<int> cpus = allowed_cpus();
  if (cpus.empty() || slot < 0) return -1;
  const int cpu = cpus[static_cast<size_t>(slot) % cpus.size()];
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) return -1;
  return cpu;
}

ThreadPin::ThreadPin(int slot, bool enabled) {
  if (!enabled) return;
  previous_ = allowed_cpus();  // this thread's mask (sched_getaffinity(0) is the calling thread)
  cpu_ = pin_current_thread(slot);
}

ThreadPin::~ThreadPin() {
  if (cpu_ < 0 || previous_.empty()) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : previous_) CPU_SET(c, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);  // best effort, like pinning
}

bool pinning_fits(int replicas_per_process, int processes_on_node) {
  const int threads = replicas_per_process * processes_on_node;
  return threads > 1 && static_cast<int>(allowed_cpus().size()) >= threads;
}

}  // namespace lockstep
