// The hierarchical backend for N processes x K local replicas (threads): a local
// reduce across the K replicas, an all-reduce across processes by the local leader
// (replica 0) over the process communicator (make_process_communicator: shared
// memory when every process is on one node, else MPI messages), then a local
// broadcast. Member i of process p has rank p*K + i in a group of N*K, so ranks
// are ordered process by process.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/options.h"
#include "comm/replica_group.h"

namespace lockstep {

class LocalFabric;

class HierarchicalGroup final : public ReplicaGroup {
 public:
  // Collective over `process_comm` (one call per process, all with the same
  // local_replicas). With K > 1 the leader's thread, not necessarily the main
  // thread, calls MPI, so MPI must provide MPI_THREAD_SERIALIZED (checked).
  HierarchicalGroup(MPI_Comm process_comm, int local_replicas, CommOptions options = {});
  ~HierarchicalGroup() override;
  HierarchicalGroup(const HierarchicalGroup&) = delete;
  HierarchicalGroup& operator=(const HierarchicalGroup&) = delete;

  // member(i): rank() == process_rank()*K + i, name() == "hierarchical".
  int local_size() const override;
  int process_rank() const;
  int process_count() const;
  // Ends the local group: its waiting members throw CommError with `reason`.
  void fail(const std::string& reason) override;

 private:
  Communicator& member_at(int i) override { return *members_[size_t(i)]; }
  std::unique_ptr<LocalFabric> fabric_;
  std::unique_ptr<Communicator> inter_;
  std::vector<std::unique_ptr<Communicator>> members_;
};

}  // namespace lockstep
