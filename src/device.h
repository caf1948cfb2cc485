// The device seam of the replica step: what a device type offers the step
// (src/network.h) and the layer kinds (src/layers/). A device is a plain struct
// whose members forward to the kernels of one backend under the same names
// (kernels/cpu, kernels/cuda); the step is a template over it, so the CPU hot
// path makes direct calls (no virtual call per kernel). CpuDevice is here; the
// CUDA device (gpu/cuda_device.h) is built only with CUDA.
//
// A device type D provides:
//   template <class T> using Buffer: an owning array, Buffer<T>(n), data(), size()
//   gemm, bias_activation_forward, activation_backward, bias_grad: as kernels/cpu/ops.h
//   dropout_forward/backward(x, rows, cols, rate, layer): the layer's seed and the
//     slice's first row come from the step block (kernels::StepParams)
//   copy(dst, src, n), zero(x, n): float arrays in the device's memory
//   inputs(batch): the slice's x, labels, targets as the device's kernels read them
//   loss(kind, out, inputs, rows, cols, d_out, scale): the slice's loss (d_out null:
//     evaluation); empty_slice(): the stats of a slice without rows
//   begin_slice(step_seed, first_row): makes the step block describe this slice
//     (CUDA stages the block itself before a step, so the call does nothing there)
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "data/input.h"
#include "kernels/cpu/ops.h"
#include "kernels/host_device.h"
#include "src/config.h"
#include "src/random.h"

namespace lockstep {

struct SliceStats {
  double loss_sum = 0.0;  // sum of per-example losses (unscaled)
  int64_t correct = 0;    // classification: argmax == label
  int64_t rows = 0;
};

// A slice's inputs where the device's kernels read them.
struct DeviceInputs {
  const float* x = nullptr;
  const int32_t* labels = nullptr;
  const float* targets = nullptr;
};

// The step block bytes for a model of `layers` layers (StepParams + layer seeds).
inline size_t step_block_bytes(size_t layers) {
  return sizeof(kernels::StepParams) + sizeof(uint64_t) * layers;
}
// Fills the block's dropout fields for one slice of a step.
inline void set_dropout(kernels::StepParams* p, size_t layers, uint64_t step_seed,
                        int64_t first_row) {
  p->first_row = first_row;
  uint64_t* seeds = kernels::layer_seeds(p);
  for (size_t l = 0; l < layers; ++l) seeds[l] = mix_seed(step_seed, l);
}

// The CPU: kernels/cpu on host memory; the step block in host memory.
class CpuDevice {
 public:
  template <class T>
  using Buffer = std::vector<T>;

  explicit CpuDevice(size_t layers = 0)
      : layers_(layers), block_((step_block_bytes(layers) + 7) / 8, 0) {}
  kernels::StepParams* step() { return reinterpret_cast<kernels::StepParams*>(block_.data()); }

  void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
            int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    cpu::gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  void bias_activation_forward(float* z, const float* bias, float* out, int64_t rows,
                               int64_t cols, Activation act) {
    cpu::bias_activation_forward(z, bias, out, rows, cols, act);
  }
  void activation_backward(const float* d_out, const float* z, const float* out, float* dz,
                           int64_t n, Activation act) {
    cpu::activation_backward(d_out, z, out, dz, n, act);
  }
  void bias_grad(const float* dz, float* db, int64_t rows, int64_t cols, float beta) {
    cpu::bias_grad(dz, db, rows, cols, beta);
  }
  void dropout_forward(float* x, int64_t rows, int64_t cols, float rate, int layer) {
    cpu::dropout_forward(x, rows, cols, rate, kernels::layer_seeds(step())[layer],
                         step()->first_row);
  }
  void dropout_backward(float* dx, int64_t rows, int64_t cols, float rate, int layer) {
    cpu::dropout_backward(dx, rows, cols, rate, kernels::layer_seeds(step())[layer],
                          step()->first_row);
  }
  void copy(float* dst, const float* src, int64_t n) {
    std::memcpy(dst, src, sizeof(float) * size_t(n));
  }
  void zero(float* x, int64_t n) { std::fill(x, x + n, 0.0f); }

  DeviceInputs inputs(const ReplicaBatch& b) const { return {b.x, b.labels, b.targets}; }
  SliceStats loss(LossKind kind, const float* out, const DeviceInputs& in, int64_t rows,
                  int64_t k, float* d_out, float scale) {
    SliceStats s;
    s.rows = rows;
    if (kind == LossKind::kSoftmaxCrossEntropy) {
      s.loss_sum = d_out ? cpu::softmax_xent(out, in.labels, d_out, rows, k, scale, &s.correct)
                         : cpu::softmax_xent_loss(out, in.labels, rows, k, &s.correct);
    } else {
      s.loss_sum = d_out ? cpu::mse(out, in.targets, d_out, rows, k, scale)
                         : cpu::mse_loss(out, in.targets, rows, k);
    }
    return s;
  }
  SliceStats empty_slice() { return {}; }
  void begin_slice(uint64_t step_seed, int64_t first_row) {
    set_dropout(step(), layers_, step_seed, first_row);
  }

 private:
  size_t layers_;
  std::vector<uint64_t> block_;  // StepParams + layer seeds, 8-byte aligned
};

}  // namespace lockstep
