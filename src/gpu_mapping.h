// Which GPU each replica of each process uses, as pure host logic (no CUDA here, so
// the CPU build tests it): the processes of a node split the visible GPUs into
// disjoint blocks, and a check over every process's PCI bus ids names any GPU that
// two processes would both take (NCCL refuses that with "Duplicate GPU").
#pragma once

#include <string>
#include <vector>

namespace lockstep {

// The visible devices one process may use: ids first .. first + count - 1.
struct GpuShare {
  int first = 0;
  int count = 0;
};

// Process `local_rank` of `processes_on_node` that sees `device_count` GPUs. When
// the processes see the same GPUs, each takes a block of device_count /
// processes_on_node of them (the rest stay idle); when the launcher already gave
// each process GPUs of its own (`launcher_split`: no bus id seen by two processes,
// e.g. CUDA_VISIBLE_DEVICES per rank), or there are fewer GPUs than processes,
// each process uses all it sees (the duplicate check below then decides).
GpuShare gpu_share(int device_count, int processes_on_node, int local_rank, bool launcher_split);

// strategy.local_replicas: auto on GPUs: one replica per GPU of the process's
// share (as gpu_share with launcher_split false) times replicas_per_gpu; at least 1.
int auto_gpu_replicas(int device_count, int processes_on_node, int replicas_per_gpu);

// The device of local replica `index`: replicas_per_gpu consecutive replicas per
// GPU, wrapping within the process's own share only (never onto another process's
// GPUs), so replicas beyond share.count x replicas_per_gpu share GPUs in-process.
// -1 when the share is empty.
int device_for_replica(const GpuShare& share, int index, int replicas_per_gpu);

// True when no bus id appears in the lists of two different processes.
bool visibility_disjoint(const std::vector<std::vector<std::string>>& bus_ids_by_process);

// Given, per process on the node, the bus ids its replicas use (repeats within a
// process are fine: same-GPU replicas are reduced in-process), "" when no GPU is
// used by two processes, else one sentence naming the first such GPU and both
// processes, e.g. "GPU 0000:3b:00.0 is used by local processes 0 and 1".
std::string find_duplicate_gpu(const std::vector<std::vector<std::string>>& used_by_process);

// The devices (visible ids) of every replica of process `local_rank`, for
// `local_replicas` replicas, from every process's visible bus ids (same order as
// the device ids): the mapping above, applied the same way on every process.
std::vector<int> devices_for_process(const std::vector<std::vector<std::string>>& visible_by_process,
                                     int local_rank, int local_replicas, int replicas_per_gpu);

// Every process's used bus ids under devices_for_process (for find_duplicate_gpu).
std::vector<std::vector<std::string>> used_bus_ids(
    const std::vector<std::vector<std::string>>& visible_by_process, int local_replicas,
    int replicas_per_gpu);

}  // namespace lockstep
