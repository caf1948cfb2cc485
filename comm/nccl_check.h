// Checked NCCL calls. Every NCCL call in lockstep goes through LOCKSTEP_NCCL_CHECK,
// which turns a failure into a CommError naming the rank, the device, the call,
// file:line, NCCL's own error text (and its last-error detail) and a hint.
// Compiled only with LOCKSTEP_HAVE_CUDA.
#pragma once

#include <nccl.h>

#include <string>

#include "comm/communicator.h"

namespace lockstep {

// Throws CommError for NCCL result `rc` from `call` at file:line; `where` names the
// rank and device ("NCCL rank 3 (device 1)"). `comm` may be null (before init).
[[noreturn]] void throw_nccl_error(ncclResult_t rc, ncclComm_t comm, const std::string& where,
                                   const char* call, const char* file, int line);
// What to try for each NCCL result code.
const char* nccl_hint(ncclResult_t rc);

}  // namespace lockstep

#define LOCKSTEP_NCCL_CHECK(where, comm, call)                                            \
  do {                                                                                    \
    const ncclResult_t lockstep_nccl_rc_ = (call);                                        \
    if (lockstep_nccl_rc_ != ncclSuccess && lockstep_nccl_rc_ != ncclInProgress) {        \
      ::lockstep::throw_nccl_error(lockstep_nccl_rc_, (comm), (where), #call, __FILE__, __LINE__); \
    }                                                                                     \
  } while (0)
