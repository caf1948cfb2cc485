// Thread placement through the Linux affinity calls.
#include "comm/placement.h"

#include <pthread.h>
#include <sched.h>

#include <type_traits>

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

static_assert(std::is_same_v<pthread_t, unsigned long>, "placement.h passes a pthread_t as unsigned long");

bool pin_thread(unsigned long thread, const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) CPU_SET(c, &set);
  return pthread_setaffinity_np(static_cast<pthread_t>(thread), sizeof(set), &set) == 0;
}

int pin_current_thread(int slot) {
  const std::vector<int> cpus = allowed_cpus();
  if (cpus.empty() || slot < 0) return -1;
  const int cpu = cpus[static_cast<size_t>(slot) % cpus.size()];
  return pin_thread(pthread_self(), {cpu}) ? cpu : -1;
}

ThreadPin::ThreadPin(int slot, bool enabled) {
  if (!enabled) return;
  previous_ = allowed_cpus();  // this thread's mask (sched_getaffinity(0) is the calling thread)
  cpu_ = pin_current_thread(slot);
}

ThreadPin::~ThreadPin() {
  if (cpu_ < 0 || previous_.empty()) return;
  pin_thread(pthread_self(), previous_);  // best effort, like pinning
}

bool pinning_fits(int replicas_per_process, int processes_on_node) {
  const int threads = replicas_per_process * processes_on_node;
  return threads > 1 && static_cast<int>(allowed_cpus().size()) >= threads;
}

}  // namespace lockstep
