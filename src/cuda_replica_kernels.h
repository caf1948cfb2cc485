// The few kernels a captured CUDA training step needs beyond kernels/cuda: they
// read what changes every step (learning rate, Adam constants, dropout seeds, the
// stop flag) from a device block the host refreshes before each launch, so one
// captured graph replays exactly. Only with LOCKSTEP_HAVE_CUDA; plain C++17.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernels/host_device.h"

namespace lockstep::cuda_step {

// What a step reads from device memory. Followed in the same allocation by one
// uint64_t dropout seed per layer (layer_seeds below).
struct alignas(8) StepParams {
  kernels::AdamConsts adam;  // adam/adamw: this step's constants (adam_consts on the host)
  float lr = 0.0f;           // sgd: this step's learning rate
  float stop = 0.0f;         // 1 when this replica asks every replica to stop
  int64_t first_row = 0;     // dropout: global id of the slice's first row
};

LOCKSTEP_HD const uint64_t* layer_seeds(const StepParams* p) {
  return reinterpret_cast<const uint64_t*>(p + 1);
}
LOCKSTEP_HD uint64_t* layer_seeds(StepParams* p) { return reinterpret_cast<uint64_t*>(p + 1); }

// Indices into the extras that follow the gradient arena (StepExtra in strategy.h,
// repeated here because this header must stay free of the trunk's headers).
constexpr int kExtraLoss = 0, kExtraCorrect = 1, kExtraRows = 2, kExtraStop = 3;

// extras[loss, correct, rows, stop] = (float(*loss_sum), float(*correct), rows, p->stop).
void write_extras(cudaStream_t s, float* extras, const double* loss_sum, const int64_t* correct,
                  float rows, const StepParams* p);
// As cuda::dropout_forward/backward, with the seed (seeds[layer]) and first row read
// from the step block.
void dropout(cudaStream_t s, float* x, int64_t rows, int64_t cols, float rate,
             const StepParams* p, int layer);
// *nonfinite = 1 if any of grad[0, n) is NaN or Inf, else 0 (zeroed here first).
void check_finite(cudaStream_t s, const float* grad, int64_t n, float* nonfinite);
// One fused optimizer pass, skipped entirely when the reduced loss (*loss, the
// gradient arena's extras) is not finite or the reduced gradient holds NaN/Inf
// (*nonfinite from check_finite), as on the CPU.
void adam(cudaStream_t s, float* param, const float* grad, float* m, float* v, int64_t n,
          const StepParams* p, const float* loss, const float* nonfinite);
void sgd(cudaStream_t s, float* param, const float* grad, float* velocity, int64_t n,
         float momentum, bool nesterov, float weight_decay, const StepParams* p,
         const float* loss, const float* nonfinite);

}  // namespace lockstep::cuda_step
