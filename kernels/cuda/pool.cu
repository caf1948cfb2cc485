// Pooling on CUDA: one thread per output for the forward passes, one thread per
// input element for the backward passes (it gathers the windows that hold it, in
// order), so nothing needs atomics and the sums are reproducible.
#include "kernels/cuda/cnn.h"

#include "kernels/cuda/common.cuh"

namespace lockstep::cuda {
namespace {

using detail::first_index;
using detail::grid_stride;

__global__ void max_pool_forward_kernel(Pool2dGeometry g, const float* x, float* y,
                                        int32_t* argmax) {
  const int64_t out_size = g.out_h * g.out_w, total = g.batch * g.channels * out_size;
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t plane = i / out_size, oh = (i % out_size) / g.out_w, ow = i % g.out_w;
    const float* xp = x + plane * g.height * g.width;
    const int64_t top = oh * g.stride_h * g.width + ow * g.stride_w;
    int64_t best = top;
    for (int64_t a = 0; a < g.pool_h; ++a) {
      for (int64_t b = 0; b < g.pool_w; ++b) {
        const int64_t at = top + a * g.width + b;
        if (xp[at] > xp[best]) best = at;  // the first maximum wins, as on the CPU
      }
    }
    y[i] = xp[best];
    if (argmax != nullptr) argmax[i] = static_cast<int32_t>(best);
  }
}

// The outputs along one axis whose window holds input index `in`: [lo, hi).
__device__ void windows_holding(int64_t in, int64_t pool, int64_t stride, int64_t out,
                                int64_t* lo, int64_t* hi) {
  const int64_t first = in - pool + 1;
  *lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  *hi = min(out, in / stride + 1);
}

// mode 0: max (argmax must name this element), mode 1: average.
__global__ void pool_backward_kernel(Pool2dGeometry g, const float* dy, const int32_t* argmax,
                                     float* dx, int mode) {
  const int64_t in_size = g.height * g.width, out_size = g.out_h * g.out_w;
  const int64_t total = g.batch * g.channels * in_size;
  const float inv = 1.0f / static_cast<float>(g.pool_h * g.pool_w);
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t plane = i / in_size, at = i % in_size, ih = at / g.width, iw = at % g.width;
    int64_t h_lo, h_hi, w_lo, w_hi;
    windows_holding(ih, g.pool_h, g.stride_h, g.out_h, &h_lo, &h_hi);
    windows_holding(iw, g.pool_w, g.stride_w, g.out_w, &w_lo, &w_hi);
    float sum = 0.0f;
    for (int64_t oh = h_lo; oh < h_hi; ++oh) {
      for (int64_t ow = w_lo; ow < w_hi; ++ow) {
        const int64_t o = plane * out_size + oh * g.out_w + ow;
        if (mode == 0) {
          if (argmax[o] == at) sum += dy[o];
        } else {
          sum += dy[o] * inv;
        }
      }
    }
    dx[i] = sum;
  }
}

__global__ void avg_pool_forward_kernel(Pool2dGeometry g, const float* x, float* y) {
  const int64_t out_size = g.out_h * g.out_w, total = g.batch * g.channels * out_size;
  const float inv = 1.0f / static_cast<float>(g.pool_h * g.pool_w);
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t plane = i / out_size, oh = (i % out_size) / g.out_w, ow = i % g.out_w;
    const float* top = x + plane * g.height * g.width + oh * g.stride_h * g.width + ow * g.stride_w;
    float sum = 0.0f;
    for (int64_t a = 0; a < g.pool_h; ++a) {
      for (int64_t b = 0; b < g.pool_w; ++b) sum += top[a * g.width + b];
    }
    y[i] = sum * inv;
  }
}

__global__ void global_avg_forward_kernel(const float* x, float* y, int64_t planes,
                                          int64_t pixels) {
  for (int64_t p = first_index(); p < planes; p += grid_stride()) {
    double sum = 0.0;
    for (int64_t i = 0; i < pixels; ++i) sum += x[p * pixels + i];
    y[p] = static_cast<float>(sum / static_cast<double>(pixels));
  }
}

__global__ void global_avg_backward_kernel(const float* dy, float* dx, int64_t planes,
                                           int64_t pixels) {
  const float inv = 1.0f / static_cast<float>(pixels);
  for (int64_t i = first_index(); i < planes * pixels; i += grid_stride()) {
    dx[i] = dy[i / pixels] * inv;
  }
}

int64_t outputs(const Pool2dGeometry& g) { return g.batch * g.channels * g.out_h * g.out_w; }
int64_t inputs(const Pool2dGeometry& g) { return g.batch * g.channels * g.height * g.width; }

}  // namespace

void max_pool2d_forward(const CudaContext& ctx, const Pool2dGeometry& g, const float* x, float* y,
                        int32_t* argmax) {
  LOCKSTEP_CUDA_LAUNCH(ctx, outputs(g), "max_pool_forward_kernel", max_pool_forward_kernel, g, x, y, argmax);
}

void max_pool2d_backward(const CudaContext& ctx, const Pool2dGeometry& g, const float* dy,
                         const int32_t* argmax, float* dx) {
  LOCKSTEP_CUDA_LAUNCH(ctx, inputs(g), "pool_backward_kernel (max)", pool_backward_kernel, g, dy, argmax, dx, 0);
}

void avg_pool2d_forward(const CudaContext& ctx, const Pool2dGeometry& g, const float* x, float* y) {
  LOCKSTEP_CUDA_LAUNCH(ctx, outputs(g), "avg_pool_forward_kernel", avg_pool_forward_kernel, g, x, y);
}

void avg_pool2d_backward(const CudaContext& ctx, const Pool2dGeometry& g, const float* dy,
                         float* dx) {
  LOCKSTEP_CUDA_LAUNCH(ctx, inputs(g), "pool_backward_kernel (avg)", pool_backward_kernel, g, dy, nullptr, dx, 1);
}

void global_avg_pool2d_forward(const CudaContext& ctx, const float* x, float* y, int64_t batch,
                               int64_t channels, int64_t pixels) {
  LOCKSTEP_CUDA_LAUNCH(ctx, batch * channels, "global_avg_forward_kernel", global_avg_forward_kernel, x, y,
                       batch * channels, pixels);
}

void global_avg_pool2d_backward(const CudaContext& ctx, const float* dy, float* dx, int64_t batch,
                                int64_t channels, int64_t pixels) {
  LOCKSTEP_CUDA_LAUNCH(ctx, batch * channels * pixels, "global_avg_backward_kernel",
                       global_avg_backward_kernel, dy, dx, batch * channels, pixels);
}

}  // namespace lockstep::cuda
