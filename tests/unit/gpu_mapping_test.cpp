// The replica -> GPU rule over every small node shape (1-4 processes x 1-8 GPUs x
// 1-3 replicas per GPU) and the duplicate-GPU check over PCI bus ids. Pure host
// logic: it runs in every build, GPU or not.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "src/gpu_mapping.h"

namespace lockstep {
namespace {

using BusIds = std::vector<std::vector<std::string>>;

// Every process sees the same GPUs "bus0", "bus1", ... (no CUDA_VISIBLE_DEVICES split).
BusIds same_gpus(int processes, int gpus) {
  std::vector<std::string> ids;
  for (int g = 0; g < gpus; ++g) ids.push_back("bus" + std::to_string(g));
  return BusIds(size_t(processes), ids);
}

TEST(gpu_mapping, EveryShapeGivesEachProcessItsOwnGpus) {
  for (int processes = 1; processes <= 4; ++processes) {
    for (int gpus = 1; gpus <= 8; ++gpus) {
      for (int per_gpu = 1; per_gpu <= 3; ++per_gpu) {
        const std::string shape = std::to_string(processes) + " processes, " +
                                  std::to_string(gpus) + " GPUs, " + std::to_string(per_gpu) +
                                  " per GPU";
        const BusIds visible = same_gpus(processes, gpus);
        const int k = auto_gpu_replicas(gpus, processes, per_gpu);
        const std::string dup = find_duplicate_gpu(used_bus_ids(visible, k, per_gpu));
        if (gpus < processes) {  // cannot be given disjoint GPUs: must be refused
          EXPECT_NE(dup, "") << shape;
          continue;
        }
        EXPECT_EQ(dup, "") << shape;
        EXPECT_EQ(k, gpus / processes * per_gpu) << shape;
        std::set<int> taken;  // GPUs of all processes so far
        for (int p = 0; p < processes; ++p) {
          std::map<int, int> load;  // this process's replicas per GPU
          for (int d : devices_for_process(visible, p, k, per_gpu)) {
            ASSERT_GE(d, 0) << shape;
            ASSERT_LT(d, gpus) << shape;
            ++load[d];
          }
          EXPECT_EQ(int(load.size()), gpus / processes) << shape << ", process " << p;
          for (const auto& [d, n] : load) {
            EXPECT_EQ(n, per_gpu) << shape << ", process " << p << ", GPU " << d;
            EXPECT_TRUE(taken.insert(d).second) << shape << ": GPU " << d << " given twice";
          }
        }
      }
    }
  }
}

TEST(gpu_mapping, HandWorkedLayouts) {
  // The case that used to break: 2 processes on a 2-GPU node took {0,1} each.
  EXPECT_EQ(auto_gpu_replicas(2, 2, 1), 1);
  EXPECT_EQ(devices_for_process(same_gpus(2, 2), 0, 1, 1), (std::vector<int>{0}));
  EXPECT_EQ(devices_for_process(same_gpus(2, 2), 1, 1, 1), (std::vector<int>{1}));
  // 3 GPUs over 2 processes: one each, GPU 2 idle.
  EXPECT_EQ(devices_for_process(same_gpus(2, 3), 1, 1, 1), (std::vector<int>{1}));
  // 3 processes, 8 GPUs, 2 replicas per GPU: 2 GPUs (4 replicas) each.
  EXPECT_EQ(auto_gpu_replicas(8, 3, 2), 4);
  EXPECT_EQ(devices_for_process(same_gpus(3, 8), 2, 4, 2), (std::vector<int>{4, 4, 5, 5}));
  // More replicas than the share holds wrap within the process's own GPUs.
  EXPECT_EQ(devices_for_process(same_gpus(2, 4), 1, 5, 1), (std::vector<int>{2, 3, 2, 3, 2}));
  // One process, one GPU, 2 replicas on it (the test layout).
  EXPECT_EQ(devices_for_process(same_gpus(1, 1), 0, 2, 1), (std::vector<int>{0, 0}));
  EXPECT_EQ(device_for_replica(GpuShare{0, 0}, 0, 1), -1);
  EXPECT_EQ(auto_gpu_replicas(0, 1, 1), 1);
}

TEST(gpu_mapping, LauncherSplitGpusAreAllUsed) {
  // CUDA_VISIBLE_DEVICES per rank: each process sees its own two GPUs as 0 and 1.
  const BusIds visible{{"0000:3b:00.0", "0000:5e:00.0"}, {"0000:86:00.0", "0000:af:00.0"}};
  EXPECT_TRUE(visibility_disjoint(visible));
  EXPECT_EQ(devices_for_process(visible, 0, 2, 1), (std::vector<int>{0, 1}));
  EXPECT_EQ(devices_for_process(visible, 1, 2, 1), (std::vector<int>{0, 1}));
  EXPECT_EQ(find_duplicate_gpu(used_bus_ids(visible, 2, 1)), "");
  // One GPU each, fewer visible than processes: still each its own.
  const BusIds one_each{{"0000:3b:00.0"}, {"0000:5e:00.0"}, {"0000:86:00.0"}};
  EXPECT_EQ(find_duplicate_gpu(used_bus_ids(one_each, 1, 1)), "");
}

TEST(gpu_mapping, DuplicateNamesTheGpuAndBothProcesses) {
  EXPECT_EQ(find_duplicate_gpu({{"0000:3b:00.0", "0000:3b:00.0"}, {"0000:5e:00.0"}}), "")
      << "replicas of one process may share a GPU";
  EXPECT_EQ(find_duplicate_gpu({{"0000:3b:00.0"}, {"0000:5e:00.0"}, {"0000:3b:00.0"}}),
            "GPU 0000:3b:00.0 is used by local processes 0 and 2");
  // Overlapping visibility (process 1 sees GPU b as its device 0): not a split, so
  // both take the first GPU of their lists and the second process collides on b.
  const BusIds overlap{{"b", "c"}, {"b"}};
  EXPECT_FALSE(visibility_disjoint(overlap));
  EXPECT_EQ(find_duplicate_gpu(used_bus_ids(overlap, 1, 1)),
            "GPU b is used by local processes 0 and 1");
  // 4 processes on 2 shared GPUs cannot all have GPUs of their own.
  EXPECT_EQ(find_duplicate_gpu(used_bus_ids(same_gpus(4, 2), auto_gpu_replicas(2, 4, 1), 1)),
            "GPU bus0 is used by local processes 0 and 1");
}

}  // namespace
}  // namespace lockstep
