// Processes on one node: the all-reduce goes through a shared-memory segment that
// every process maps, instead of MPI messages. Each rank copies its buffer into
// its own slab, reduces its slice of every rank's slab in rank order (the MPI
// backend's order, so results are bitwise the same), and copies the reduced
// slices back: about a tenth of OpenMPI's time for the 0.4 MB gradient of the
// reference MLP (bench/README.md). Broadcast, allgather and barrier go through
// the MPI backend. Waits spin, then yield, and honour the same deadlines as
// every backend, naming the ranks that did not arrive.
#pragma once

#include <mpi.h>

#include <memory>

#include "comm/communicator.h"
#include "comm/options.h"

namespace lockstep {

// Whether every process of `comm` runs on this node (collective over comm; the
// node split of split_nodes, comm/bootstrap.h).
bool on_one_node(MPI_Comm comm);

// Collective over `comm`, whose processes must all be on this node. The segment
// is a POSIX shared-memory object that rank 0 creates and unlinks as soon as
// every rank has mapped it, so nothing is left behind in /dev/shm; tearing down
// is local (munmap), so a failed job never blocks in a collective free. Throws
// ShmUnavailable if the segment cannot be created or reserved (a full /dev/shm).
std::unique_ptr<Communicator> make_shm_communicator(MPI_Comm comm, CommOptions options = {});

// The segment cannot be had; every rank learns it at once, so all may fall back.
class ShmUnavailable : public CommError {
 public:
  using CommError::CommError;
};

}  // namespace lockstep
