// Shared by the multi-rank tests: the Bootstrap that tests/mpi/main.cpp created
// before running them (MPI is up for the whole binary, or the binary has failed).
#pragma once

#include "comm/bootstrap.h"

namespace lockstep {

const Bootstrap& test_bootstrap();

}  // namespace lockstep
