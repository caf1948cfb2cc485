// One process's replicas as one group, whatever the backend: member(i) is local
// replica i's communicator across every replica of every process, fail() releases
// members waiting in it, run() runs the replicas on threads. make_replica_group and
// make_process_communicator are the one place that picks backends (local,
// hierarchical, one per process over shm or MPI, NCCL).
#pragma once

#include <mpi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/options.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*; no CUDA header needed here

namespace lockstep {

class ReplicaGroup {
 public:
  virtual ~ReplicaGroup() = default;

  // This process's replicas in the group (K); member i has rank process*K + i.
  virtual int local_size() const = 0;
  // Local replica i's communicator; call it only from replica i's thread. Throws
  // CommError when i is outside 0..local_size()-1.
  Communicator& member(int i);
  // Ends the group: members waiting now or calling later throw CommError with
  // `reason`. For a replica that failed and will never call again.
  virtual void fail(const std::string& reason) = 0;
  // Runs fn(i) for every local replica i at once (replica 0 on the calling thread,
  // the others on threads of their own) and returns when all are done. The first
  // exception fails the group ("local replica i failed"; also_fail, when given,
  // releases the caller's other groups too), so no replica waits forever for one
  // that threw, and is rethrown once every replica has returned.
  void run(const std::function<void(int)>& fn,
           const std::function<void(const std::string&)>& also_fail = {});

 protected:
  // member(i) after the range check.
  virtual Communicator& member_at(int i) = 0;
};

// What make_replica_group needs from the bootstrap (comm/bootstrap.h) and the caller.
struct GroupSpec {
  MPI_Comm processes = MPI_COMM_NULL;    // every process of the job; MPI_COMM_NULL: this one alone
  Communicator* process_comm = nullptr;  // over `processes` (the world communicator), or nullptr
  int local_replicas = 1;                // K, the same in every process
  CommOptions options;
  // Device replicas: one CUDA device id per local replica (the same id twice for
  // replicas that share a GPU) and each replica's compute stream, which its
  // communicator orders against; deferred_wait: see NcclGroup::set_deferred_wait.
  // Empty devices: host buffers.
  std::vector<int> devices;
  std::vector<CUstream_st*> streams;
  bool deferred_wait = false;
};

// Collective over spec.processes (every process calls it, before its replica
// threads start). The backend, by the first rule that applies:
//   devices given      -> NcclGroup (comm/nccl_communicator.h; CUDA builds only)
//   one process        -> LocalGroup (comm/local_communicator.h)
//   one local replica  -> the process communicator itself (spec.process_comm, or
//                         make_process_communicator: shm on one node, else MPI)
//   otherwise          -> HierarchicalGroup (comm/hierarchical_communicator.h)
// A new backend adds its group type and one line here. Throws CommError when the
// backend cannot be had (NCCL in a build without CUDA).
std::unique_ptr<ReplicaGroup> make_replica_group(const GroupSpec& spec);

// The communicator between processes (one member per process): shared memory
// when options.shared_memory is set and every process of `comm` is on this node
// (on_one_node), else MPI (also when the segment cannot be had: a warning says
// why). Collective over comm. The world communicator and the hierarchical
// backend's inter-process phase come from here.
std::unique_ptr<Communicator> make_process_communicator(MPI_Comm comm, CommOptions options = {});

}  // namespace lockstep
