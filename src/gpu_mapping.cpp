// The replica -> GPU rule and the duplicate-GPU check (see gpu_mapping.h). Kept
// free of CUDA and MPI: gpu/cuda_step.cpp gathers the bus ids and applies these.
#include "src/gpu_mapping.h"

#include <algorithm>
#include <map>

namespace lockstep {

GpuShare gpu_share(int device_count, int processes_on_node, int local_rank, bool launcher_split) {
  if (device_count <= 0) return {0, 0};
  const int processes = std::max(1, processes_on_node);
  if (launcher_split || device_count < processes) return {0, device_count};
  const int per = device_count / processes;
  return {local_rank * per, per};
}

int auto_gpu_replicas(int device_count, int processes_on_node, int replicas_per_gpu) {
  const GpuShare share = gpu_share(device_count, processes_on_node, 0, false);
  return std::max(1, share.count * std::max(1, replicas_per_gpu));
}

int device_for_replica(const GpuShare& share, int index, int replicas_per_gpu) {
  if (share.count <= 0) return -1;
  return share.first + (index / std::max(1, replicas_per_gpu)) % share.count;
}

bool visibility_disjoint(const std::vector<std::vector<std::string>>& bus_ids_by_process) {
  return find_duplicate_gpu(bus_ids_by_process).empty();
}

std::string find_duplicate_gpu(const std::vector<std::vector<std::string>>& used_by_process) {
  std::map<std::string, size_t> owner;
  for (size_t p = 0; p < used_by_process.size(); ++p) {
    for (const std::string& id : used_by_process[p]) {
      const auto [it, fresh] = owner.emplace(id, p);
      if (!fresh && it->second != p) {
        return "GPU " + id + " is used by local processes " + std::to_string(it->second) +
               " and " + std::to_string(p);
      }
    }
  }
  return "";
}

std::vector<int> devices_for_process(const std::vector<std::vector<std::string>>& visible_by_process,
                                     int local_rank, int local_replicas, int replicas_per_gpu) {
  const bool split = visibility_disjoint(visible_by_process);
  const int processes = static_cast<int>(visible_by_process.size());
  const int count = static_cast<int>(visible_by_process.at(size_t(local_rank)).size());
  const GpuShare share = gpu_share(count, processes, local_rank, split);
  std::vector<int> devices;
  for (int i = 0; i < local_replicas; ++i) {
    devices.push_back(device_for_replica(share, i, replicas_per_gpu));
  }
  return devices;
}

std::vector<std::vector<std::string>> used_bus_ids(
    const std::vector<std::vector<std::string>>& visible_by_process, int local_replicas,
    int replicas_per_gpu) {
  std::vector<std::vector<std::string>> used(visible_by_process.size());
  for (size_t p = 0; p < visible_by_process.size(); ++p) {
    for (int d : devices_for_process(visible_by_process, int(p), local_replicas, replicas_per_gpu)) {
      if (d >= 0) used[p].push_back(visible_by_process[p][size_t(d)]);
    }
  }
  return used;
}

}  // namespace lockstep
