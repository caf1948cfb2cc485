// Where replica threads run. The local backend's speed depends on each replica
// having a core of its own: two replicas time-sharing one core meet at every
// barrier only after a context switch. The scheduler does not guarantee that
// under load, so callers pin each replica thread to its own CPU.
#pragma once

#include <vector>

namespace lockstep {

// The CPUs the calling thread may run on (its affinity mask, inherited from the
// thread that started it: the process's, unless pinned), in ascending order.
std::vector<int> allowed_cpus();

// Pins the calling thread to allowed CPU number `slot` (modulo their count) and
// returns that CPU id, or -1 if the system refused (the thread then stays free;
// pinning is a speed matter, never a correctness one). For replica r of K in the
// process with node-local rank L, pass slot = L*K + r.
int pin_current_thread(int slot);

// Pins `thread` (a pthread_t, given as its native handle) to the CPUs in `cpus`;
// false if the system refused. The one place lockstep sets an affinity mask.
bool pin_thread(unsigned long thread, const std::vector<int>& cpus);

// RAII pin for a replica thread: pins the calling thread to slot `slot` (as
// pin_current_thread) when `enabled`, and gives the thread its previous CPU set
// back at the end (replica 0 runs on the caller's thread, which must not stay
// pinned after the replicas are done). Threads started while pinned inherit it.
class ThreadPin {
 public:
  ThreadPin(int slot, bool enabled);
  ~ThreadPin();
  ThreadPin(const ThreadPin&) = delete;
  ThreadPin& operator=(const ThreadPin&) = delete;

 private:
  std::vector<int> previous_;
  int cpu_ = -1;
};

// Whether `replicas_per_process` x `processes_on_node` replica threads each get
// a CPU of their own here (the rule MirroredStrategy pins by): pinning more
// threads than allowed CPUs would stack replicas, which is worse than letting
// the scheduler move them.
bool pinning_fits(int replicas_per_process, int processes_on_node);

}  // namespace lockstep
