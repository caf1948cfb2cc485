// Checked MPI calls. Every MPI call in lockstep goes through LOCKSTEP_MPI_CHECK,
// which (with MPI_ERRORS_RETURN set on our communicators) turns a failure into a
// CommError naming the rank, host, call, file:line, MPI's own error text and a hint.
#pragma once

#include <mpi.h>

#include <string>

#include "comm/communicator.h"

namespace lockstep {

// Throws CommError for MPI return code `rc` from `call` at file:line.
[[noreturn]] void throw_mpi_error(int rc, const char* call, const char* file, int line);
// MPI's text for an error code ("MPI_ERR_ROOT: invalid root").
std::string mpi_error_string(int rc);
// This machine's host name ("unknown-host" if it cannot be read).
std::string host_name();
// True between MPI_Init and MPI_Finalize: MPI calls are allowed.
bool mpi_active();
// "rank R" for MPI_COMM_WORLD when MPI is up, "rank ?" otherwise.
std::string world_rank_label();

}  // namespace lockstep

#define LOCKSTEP_MPI_CHECK(call)                                               \
  do {                                                                         \
    const int lockstep_mpi_rc_ = (call);                                       \
    if (lockstep_mpi_rc_ != MPI_SUCCESS) {                                     \
      ::lockstep::throw_mpi_error(lockstep_mpi_rc_, #call, __FILE__, __LINE__); \
    }                                                                          \
  } while (0)
