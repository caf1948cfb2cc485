// The MPI backend: one member per MPI process, host buffers. Reductions use a
// fixed rank order (0, 1, ..., n-1) computed by lockstep itself, so results never
// depend on the MPI library's algorithm choice (nor on its reduction kernels).
#pragma once

#include <mpi.h>

#include <memory>

#include "comm/communicator.h"
#include "comm/options.h"

namespace lockstep {

// Collective over `comm`: every rank must call it together. The communicator is
// duplicated (lockstep traffic never mixes with the caller's) and set to
// MPI_ERRORS_RETURN, so failures become CommErrors. With a nonzero
// options.timeout, a collective that has not completed by then throws CommError;
// the job cannot continue after that and should be aborted (abort_job).
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, CommOptions options = {});

// The MPI datatype for a lockstep dtype.
MPI_Datatype mpi_datatype(DType dtype);

}  // namespace lockstep
