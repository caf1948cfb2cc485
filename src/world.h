// The processes of a job as the trunk sees them: who we are (rank, size, host)
// and the communicator over all processes. Made once in main() from comm's
// Bootstrap; a plain run is a world of one.
#pragma once

#include <mpi.h>

#include "comm/bootstrap.h"
#include "comm/communicator.h"

namespace lockstep {

struct World {
  WorldInfo info;
  MPI_Comm mpi_comm = MPI_COMM_NULL;  // all processes (MPI_COMM_NULL without MPI)
  Communicator* comm = nullptr;       // all processes (single-rank without MPI)

  int rank() const { return info.rank; }
  int size() const { return info.size; }
};

}  // namespace lockstep
