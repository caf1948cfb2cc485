// ReplicaGroup's shared parts (the member range check, running the replicas on
// threads) and the choice of backend: make_replica_group, make_process_communicator.
#include "comm/replica_group.h"

#include <cstdio>
#include <exception>
#include <mutex>
#include <thread>

#include "comm/hierarchical_communicator.h"
#include "comm/local_communicator.h"
#include "comm/mpi_check.h"
#include "comm/mpi_communicator.h"
#include "comm/shm_communicator.h"
#if defined(LOCKSTEP_HAVE_CUDA)
#include "comm/nccl_communicator.h"
#endif

namespace lockstep {
namespace {

// One replica per process: its communicator is the process communicator, and no
// other thread of this process can be waiting in it.
class ProcessGroup final : public ReplicaGroup {
 public:
  explicit ProcessGroup(Communicator& comm) : comm_(&comm) {}
  explicit ProcessGroup(std::unique_ptr<Communicator> owned) : owned_(std::move(owned)), comm_(owned_.get()) {}
  int local_size() const override { return 1; }
  void fail(const std::string&) override {}

 private:
  Communicator& member_at(int) override { return *comm_; }
  std::unique_ptr<Communicator> owned_;
  Communicator* comm_;
};

int process_count(MPI_Comm processes) {
  int size = 1;
  if (processes != MPI_COMM_NULL) LOCKSTEP_MPI_CHECK(MPI_Comm_size(processes, &size));
  return size;
}

std::unique_ptr<ReplicaGroup> make_device_group(const GroupSpec& spec) {
#if defined(LOCKSTEP_HAVE_CUDA)
  auto group = std::make_unique<NcclGroup>(spec.processes, spec.devices, spec.options, spec.streams);
  for (int i = 0; i < group->local_size(); ++i) group->set_deferred_wait(i, spec.deferred_wait);
  return group;
#else
  throw CommError("replica group: " + std::to_string(spec.devices.size()) +
                  " device replicas need NCCL, which this build lacks (hint: build with "
                  "-DLOCKSTEP_CUDA=ON, or run the replicas on the CPU)");
#endif
}

}  // namespace

Communicator& ReplicaGroup::member(int i) {
  if (i < 0 || i >= local_size()) {
    throw CommError("replica group: member " + std::to_string(i) + " is out of range for " +
                    std::to_string(local_size()) + " local replicas");
  }
  return member_at(i);
}

void ReplicaGroup::run(const std::function<void(int)>& fn,
                       const std::function<void(const std::string&)>& also_fail) {
  std::exception_ptr first;
  std::mutex mu;
  auto body = [&](int i) {
    try {
      fn(i);
    } catch (...) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!first) first = std::current_exception();
      }
      const std::string why = "local replica " + std::to_string(i) + " failed";
      fail(why);
      if (also_fail) also_fail(why);
    }
  };
  std::vector<std::thread> threads;
  for (int i = 1; i < local_size(); ++i) threads.emplace_back(body, i);
  body(0);
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

std::unique_ptr<ReplicaGroup> make_replica_group(const GroupSpec& spec) {
  if (!spec.devices.empty()) return make_device_group(spec);
  if (process_count(spec.processes) == 1) return std::make_unique<LocalGroup>(spec.local_replicas, spec.options);
  if (spec.local_replicas == 1) {
    if (spec.process_comm != nullptr) return std::make_unique<ProcessGroup>(*spec.process_comm);
    return std::make_unique<ProcessGroup>(make_process_communicator(spec.processes, spec.options));
  }
  return std::make_unique<HierarchicalGroup>(spec.processes, spec.local_replicas, spec.options);
}

std::unique_ptr<Communicator> make_process_communicator(MPI_Comm comm, CommOptions options) {
  int size = 1;
  LOCKSTEP_MPI_CHECK(MPI_Comm_size(comm, &size));
  if (!options.shared_memory || size == 1 || !on_one_node(comm)) return make_mpi_communicator(comm, options);
  try {
    return make_shm_communicator(comm, options);
  } catch (const ShmUnavailable& e) {
    // Every rank threw it (the status went to all): fall back together.
    int rank = 0;
    LOCKSTEP_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    if (rank == 0) std::fprintf(stderr, "lockstep: warning: %s; using MPI messages\n", e.what());
    return make_mpi_communicator(comm, options);
  }
}

}  // namespace lockstep
