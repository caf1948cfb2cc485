// Process start-up: find out whether a launcher (mpirun, a PMI/PMIx process
// manager, Slurm's srun) started us; if so bring MPI up, else stay a single-rank
// world with no MPI at all. Bootstrap is the RAII owner of MPI's lifetime.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "comm/communicator.h"
#include "comm/options.h"

namespace lockstep {

struct WorldInfo {
  bool mpi = false;          // MPI is initialised and used
  std::string launcher;      // "openmpi", "pmix", "pmi", "slurm", "forced" or "none"
  int rank = 0;              // in MPI_COMM_WORLD
  int size = 1;
  int local_rank = 0;        // among processes on this node (MPI_COMM_TYPE_SHARED)
  int local_size = 1;
  int nodes = 1;             // nodes the job spans (split_nodes)
  std::string host;
  int thread_level = MPI_THREAD_SINGLE;  // what MPI provided (meaningful when mpi)
};

struct BootstrapOptions {
  // Initialise MPI even without a launcher (a singleton MPI world); used by
  // programs that must run under MPI, such as the multi-rank tests.
  bool require_mpi = false;
};

// Tests only: LOCKSTEP_TEST_RANKS_PER_NODE=K makes every node split treat each K
// consecutive world ranks as one node, so one machine runs the inter-node path
// (`mpirun -np 4` with K=2 is 2 nodes of 2). Returns 0 when unset; throws
// CommError unless K is a positive integer that divides `world_size`.
int test_ranks_per_node(int world_size);

// The processes of `comm` that share this node (collective over comm; free the
// result with MPI_Comm_free): MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), or the
// K-rank blocks of MPI_COMM_WORLD under LOCKSTEP_TEST_RANKS_PER_NODE=K.
MPI_Comm split_nodes(MPI_Comm comm);

// The launcher that started this process, from its environment variables
// ("openmpi", "pmix", "pmi", "slurm"), or "" when none did.
std::string detect_launcher();

class Bootstrap {
 public:
  // Requests MPI_THREAD_SERIALIZED: replica threads may call MPI, one at a time
  // (the hierarchical leader is not necessarily the main thread). Throws CommError
  // if MPI fails to start, provides less than that, or a Bootstrap already exists.
  Bootstrap(int* argc, char*** argv, BootstrapOptions options = {});
  // Frees lockstep's communicators and calls MPI_Finalize if this object started MPI.
  ~Bootstrap();
  Bootstrap(const Bootstrap&) = delete;
  Bootstrap& operator=(const Bootstrap&) = delete;

  const WorldInfo& info() const { return info_; }
  // A duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN (MPI_COMM_NULL without MPI).
  MPI_Comm world_comm() const { return world_; }
  // The communicator over all processes (shared memory when they are all on this
  // node and options.shared_memory, else MPI), or a single-rank one without MPI.
  std::unique_ptr<Communicator> make_world_communicator(CommOptions options = {}) const;

 private:
  void start_mpi(int* argc, char*** argv);
  void read_topology();

  WorldInfo info_;
  bool started_mpi_ = false;
  MPI_Comm world_ = MPI_COMM_NULL;
};

// Prints "lockstep: fatal on rank R (host H): message" to stderr and ends the
// whole job: MPI_Abort when MPI is up (so no peer hangs), std::exit otherwise.
[[noreturn]] void abort_job(const std::string& message, int exit_code = 1);

}  // namespace lockstep
