// Fault injection for the failure tests: LOCKSTEP_FAULT="RANK:POINT:SIGNAL" makes
// world rank RANK send itself SIGNAL (KILL or STOP; SLEEPn: sleep n seconds
// instead, a slow disk or step) at POINT, which is
// "phase=NAME" (entering a LongPhase: start-up, evaluation, checkpoint write;
// or "shared buffer", entering the shm backend's allocate; "phase=NAME@K": its
// K-th entry in this process) or "collective=N" (the N-th
// collective of an MPI communicator). Deterministic
// points, where a signal from outside would land wherever the rank happens to be.
// Unset, it costs one predictable branch per collective.
#pragma once

#include <cstdint>
#include <string>

namespace lockstep {

// Raise the configured signal if this rank's fault point is `phase`.
void inject_fault_at_phase(const std::string& phase);
// Raise the configured signal if this rank's fault point is collective `seq`.
void inject_fault_at_collective(uint64_t seq);

}  // namespace lockstep
