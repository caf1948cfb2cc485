// The error path of LOCKSTEP_NCCL_CHECK: one message that says who failed (rank,
// device, host), what was called, where, what NCCL said, and what to try next.
#include "comm/nccl_check.h"

#include <sstream>

#include "comm/mpi_check.h"

namespace lockstep {

const char* nccl_hint(ncclResult_t rc) {
  switch (rc) {
    case ncclUnhandledCudaError:
      return "a CUDA call inside NCCL failed: check the device (nvidia-smi), the driver, and "
             "that the buffers are device memory of this rank's GPU";
    case ncclSystemError:
      return "a system call failed (sockets, shared memory, /dev/shm size): rerun with "
             "NCCL_DEBUG=WARN to see which";
    case ncclInternalError:
      return "NCCL hit an internal check: rerun with NCCL_DEBUG=INFO and report the log";
    case ncclInvalidArgument:
      return "an argument is invalid: check counts (elements, not bytes), root ranks and "
             "that every pointer is device memory of this rank's GPU";
    case ncclInvalidUsage:
      return "NCCL was used wrongly: two ranks on one GPU, mismatched collectives, or a "
             "communicator used after abort";
    case ncclRemoteError:
      return "a peer process failed or its network went away: check the other ranks' logs";
    default:
      return "rerun with NCCL_DEBUG=WARN for NCCL's own account";
  }
}

void throw_nccl_error(ncclResult_t rc, ncclComm_t comm, const std::string& where,
                      const char* call, const char* file, int line) {
  std::ostringstream msg;
  msg << where << " on host " << host_name() << ": " << call << " failed at " << file << ":"
      << line << ": " << ncclGetErrorString(rc);
  const char* detail = ncclGetLastError(comm);
  if (detail != nullptr && detail[0] != '\0') msg << " (" << detail << ")";
  msg << "; hint: " << nccl_hint(rc);
  throw CommError(msg.str());
}

}  // namespace lockstep
