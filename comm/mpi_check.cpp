// Formatting of MPI failures: who (rank, host), what (the call as written, MPI's
// error string), where (file:line) and what to look at next (a hint by error class).
#include "comm/mpi_check.h"

#include <unistd.h>

namespace lockstep {
namespace {

const char* hint_for(int error_class) {
  switch (error_class) {
    case MPI_ERR_ROOT: return "the root rank is outside the communicator";
    case MPI_ERR_COUNT: return "a count is negative or does not fit MPI's int";
    case MPI_ERR_TRUNCATE:
      return "ranks called the collective with different counts; every rank must pass the "
             "same count and dtype";
    case MPI_ERR_COMM: return "the communicator is invalid or was already freed";
    case MPI_ERR_BUFFER: return "a buffer pointer is invalid";
    case MPI_ERR_TYPE: return "the datatype is invalid";
    case MPI_ERR_OP: return "the reduction op is invalid for this datatype";
    default:
      return "check that every rank calls the same collectives in the same order; if a peer "
             "died, its own log holds the first error";
  }
}

}  // namespace

std::string mpi_error_string(int rc) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) return "MPI error code " + std::to_string(rc);
  return std::string(text, len);
}

std::string host_name() {
  char name[256] = {0};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

bool mpi_active() {
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

std::string world_rank_label() {
  if (!mpi_active()) return "rank ?";
  int rank = -1;
  if (MPI_Comm_rank(MPI_COMM_WORLD, &rank) != MPI_SUCCESS) return "rank ?";
  return "rank " + std::to_string(rank);
}

void throw_mpi_error(int rc, const char* call, const char* file, int line) {
  int error_class = rc;
  if (MPI_Error_class(rc, &error_class) != MPI_SUCCESS) error_class = MPI_ERR_OTHER;
  throw CommError("MPI error on " + world_rank_label() + " (host " + host_name() + "): " + call +
                  " failed at " + file + ":" + std::to_string(line) + ": " + mpi_error_string(rc) +
                  " (hint: " + hint_for(error_class) + ")");
}

}  // namespace lockstep
