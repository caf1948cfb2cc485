// Where replica threads run. The local backend's speed depends on each replica
// having a core of its own: two replicas time-sharing one core meet at every
// barrier only after a context switch. The scheduler does not guarantee that
// under load, so callers pin each replica thread to its own CPU.
#pragma once

#include <vector>

namespace lockstep {

// The CPUs this process may run on (its affinity mask), in ascending order.
std::vector<int> allowed_cpus();

// Pins the calling thread to allowed CPU number `slot` (modulo their count) and
// returns that CPU id, or -1 if the system refused (the thread then stays free;
// pinning is a speed matter, never a correctness one). For replica r of K in the
// process with node-local rank L, pass slot = L*K + r.
int pin_current_thread(int slot);

}  // namespace lockstep
