// The device seam of the replica step: a device is a plain struct whose members
// forward to one backend's kernels under their common names (kernels/cpu,
// kernels/cuda); the network (src/network.h) and the layer kinds (src/layers/)
// are templates over it, so the CPU hot path makes direct calls. CpuDevice is
// here; the CUDA device (gpu/cuda_device.h) is built only with CUDA. A device D has
//   Buffer<T>(n): an owning array (data(), size()) in the device's memory;
//   gemm, bias_activation_forward, activation_backward, bias_grad as kernels/cpu;
//   InputIndex, input_gemm, input_gemm_weights: a Dense layer's two GEMMs on the
//     network's input (the CPU skips its zeros where that pays);
//   dropout_forward/backward(x, rows, cols, rate, layer), the layer's seed and the
//     slice's first row read from the step block (kernels::StepParams);
//   the convolution, pooling and batch norm kernels of kernels/cpu/cnn.h (same
//     names and arguments), axpy(n, alpha, x, y) (LOCKSTEP_DEVICE_KERNELS below);
//   copy(dst, src, n), zero(x, n) of floats or doubles; inputs(batch): where its kernels read the slice;
//   loss(kind, out, inputs, rows, cols, d_out, scale) (d_out null: evaluation) and
//     empty_slice(): a slice's stats; begin_slice(step_seed, first_row): the step
//     block's dropout fields for a slice (CUDA stages the whole block before a step).
#pragma once

#include <cfloat>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "data/input.h"
#include "data/aligned.h"
#include "kernels/cpu/cnn.h"
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

// The kernels both devices forward under one name with the caller's arguments
// (the CUDA device adds its context first): X(name) for each.
#define LOCKSTEP_DEVICE_KERNELS(X)                                                            \
  X(gemm) X(bias_activation_forward) X(activation_backward) X(bias_grad) X(axpy)              \
  X(conv2d_forward) X(conv2d_backward_data) X(conv2d_backward_weights) X(max_pool2d_forward) \
  X(max_pool2d_backward) X(avg_pool2d_forward) X(avg_pool2d_backward)                        \
  X(global_avg_pool2d_forward) X(global_avg_pool2d_backward) X(batch_norm_stats)             \
  X(batch_norm_moments) X(batch_norm_forward) X(batch_norm_inference)                        \
  X(batch_norm_backward_stats) X(batch_norm_backward_data)

// The CPU: kernels/cpu on host memory; the step block in host memory.
class CpuDevice {
 public:
  template <class T>
  using Buffer = AlignedVector<T>;

  explicit CpuDevice(size_t layers = 0)
      : layers_(layers), block_((step_block_bytes(layers) + 7) / 8, 0) {}
  kernels::StepParams* step() { return reinterpret_cast<kernels::StepParams*>(block_.data()); }

  void dropout_forward(float* x, int64_t rows, int64_t cols, float rate, int layer) {
    cpu::dropout_forward(x, rows, cols, rate, kernels::layer_seeds(step())[layer],
                         step()->first_row);
  }
  void dropout_backward(float* dx, int64_t rows, int64_t cols, float rate, int layer) {
    cpu::dropout_backward(dx, rows, cols, rate, kernels::layer_seeds(step())[layer],
                          step()->first_row);
  }
  template <class T>
  void copy(T* dst, const T* src, int64_t n) { std::memcpy(dst, src, sizeof(T) * size_t(n)); }
  template <class T>
  void zero(T* x, int64_t n) { std::fill(x, x + n, T(0)); }

#define LOCKSTEP_CPU_KERNEL(name) \
  template <class... A>           \
  auto name(A... a) { return cpu::name(a...); }
  LOCKSTEP_DEVICE_KERNELS(LOCKSTEP_CPU_KERNEL)
  LOCKSTEP_CPU_KERNEL(conv2d_workspace_size)
  LOCKSTEP_CPU_KERNEL(batch_norm_update_moving)
  LOCKSTEP_CPU_KERNEL(all_finite)
#undef LOCKSTEP_CPU_KERNEL

  // The two GEMMs of a Dense layer that reads the network's input x (rows, in):
  // z = x W, and after it dW = x^T dz, each skipping x's zeros when that pays
  // (cpu::ZeroIndex: images are often half zeros), else gemm(). The forward
  // builds the index; the backward, which must follow its own forward (x
  // unchanged), reuses it. Then it records in `bounded` a bound on |dW| from
  // x's (which the index found) and the largest |dz| (in L1 now): where that
  // bound is small enough, the step's finite check need not read dW again.
  using InputIndex = cpu::ZeroIndex;
  struct BoundedSpan {
    const float* begin = nullptr;
    int64_t count = 0;   // 0: nothing recorded
    float bound = 0.0f;  // every |element| is at most this (Inf or NaN: no bound known)
  };
  BoundedSpan bounded;  // the step that reads it clears it before each train()
  void input_gemm(InputIndex& ix, int64_t rows, int64_t out, int64_t in, const float* x,
                  const float* w, float* z) {
    if (InputIndex::vectorized()) ix.build(x, rows, in, in);
    if (ix.forward_pays()) return cpu::gemm_nonzeros(ix, w, out, out, z, out);
    cpu::gemm(false, false, rows, out, in, 1.0f, x, in, w, out, 0.0f, z, out);
  }
  void input_gemm_weights(InputIndex& ix, int64_t rows, int64_t out, int64_t in, const float* x,
                          const float* dz, float* dw) {
    const bool indexed = ix.matrix() == x && ix.rows() == rows && ix.cols() == in;
    if (indexed && ix.weights_pays()) {
      cpu::gemm_nonzeros_t(ix, dz, out, out, dw, out);
      // Each element sums `rows` products of an |x| and a |dz|; twice that leaves
      // room for the rounding of the sum (a factor under 1.07 up to 2^20 rows).
      const double dz_max = cpu::max_abs(dz, rows * out);
      const double bound = 2.0 * double(rows) * double(ix.magnitude_bound()) * dz_max;
      bounded = {dw, in * out, bound < double(FLT_MAX) ? float(bound) : std::numeric_limits<float>::infinity()};
      return;
    }
    cpu::gemm(true, false, in, out, rows, 1.0f, x, in, dz, out, 0.0f, dw, out);
  }

  DeviceInputs inputs(const ReplicaBatch& b) const { return {b.x, b.labels, b.targets}; }
  SliceStats loss(LossKind kind, const float* out, const DeviceInputs& in, int64_t rows,
                  int64_t k, float* d_out, float scale) {
    SliceStats s{0.0, 0, rows};
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
