// Processes on one node: the all-reduce goes through shared memory that every
// process maps, instead of MPI messages. On buffers from allocate() (shared by
// the processes: the strategy's gradient arenas) each rank reduces its slice of
// every rank's buffer in rank order, into all of them, as threads do; other
// buffers are copied into a slab of the segment, reduced there slice by slice
// in the same order and copied back. Either way the result is bitwise the MPI
// backend's. Barriers meet in the segment too; broadcast and allgather go
// through the MPI backend. allocate_common() gives one mapping that every rank
// uses whole (the node's one weight arena). Waits spin, then yield, and honour
// the same deadlines as every backend, naming the ranks that did not arrive.
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
// (and every buffer from allocate()) is an anonymous shared-memory file that
// rank 0 makes and the others open through /proc/<rank 0's pid>/fd/N: no name
// in /dev/shm, so nothing is left behind however the job ends; tearing down is
// local (munmap), so a failed job never blocks in a collective free. Throws
// ShmUnavailable if the segment cannot be made or reserved (short of memory),
// or a rank cannot open it (ranks in different PID namespaces).
std::unique_ptr<Communicator> make_shm_communicator(MPI_Comm comm, CommOptions options = {});

// The segment cannot be had; every rank learns it at once, so all may fall back.
class ShmUnavailable : public CommError {
 public:
  using CommError::CommError;
};

}  // namespace lockstep
