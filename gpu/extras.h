// The one CUDA kernel of the step that is not a kernels/cuda operation: it
// gathers the step's extras (src/step.h StepExtra) from device scalars, so the
// step never waits for the host before its last all-reduce.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernels/host_device.h"

namespace lockstep::gpu {

// Where the step's extras go in the gradient arena (extras + StepExtra).
struct ExtraSlots {
  float *loss, *correct, *rows, *stop, *over_bound;
};
// *loss = float(*loss_sum), *correct = float(*correct), *rows = rows, *stop = p->stop,
// *over_bound = 0 (the CUDA step checks the reduced gradient itself).
void write_extras(cudaStream_t s, ExtraSlots to, const double* loss_sum, const int64_t* correct,
                  float rows, const kernels::StepParams* p);

}  // namespace lockstep::gpu
